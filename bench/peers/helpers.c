/* The floors and the orphan maker of the peer benchmark (bench/peers/run.py builds this).
 *
 *   helpers restart          fork+exec /bin/sleep 3601, wait for it, again, for ever: the bare
 *                            restart loop, measured as every supervisor is (kill -> exec)
 *   helpers start N          fork+exec N /bin/sleep 3601 in a row, then wait for SIGTERM and
 *                            end them: the bare start of N
 *   helpers orphans N        make N orphans (a child forks a grandchild and exits; the
 *                            grandchild exits at once and is left to PID 1), then wait until
 *                            no zombie is left in this PID namespace (at most 10 s) and print
 *                            "made N, zombies left Z, seconds S"
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *const sleep_argv[] = {"/bin/sleep", "3601", NULL};

static pid_t start_sleep(void) {
    pid_t pid = fork();
    if (pid == 0) {
        execv("/bin/sleep", sleep_argv);
        _exit(127);
    }
    return pid;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int zombies(void) {
    int count = 0;
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    if (!proc) return -1;
    while ((entry = readdir(proc))) {
        char path[300], text[512];
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = 0;
        char *close = strrchr(text, ')');
        if (close && close[1] == ' ' && close[2] == 'Z') count++;
    }
    closedir(proc);
    return count;
}

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "restart") == 0) {
        for (;;) {
            pid_t pid = start_sleep();
            if (pid < 0) return 1;
            while (waitpid(pid, NULL, 0) < 0) {}
        }
    }
    if (argc >= 3 && strcmp(argv[1], "start") == 0) {
        int n = atoi(argv[2]);
        pid_t *pids = calloc(n, sizeof *pids);
        signal(SIGTERM, on_term);
        for (int i = 0; i < n; i++) pids[i] = start_sleep();
        while (!stop) pause();
        for (int i = 0; i < n; i++) kill(pids[i], SIGKILL);
        while (wait(NULL) > 0) {}
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "orphans") == 0) {
        int n = atoi(argv[2]);
        double started = now();
        for (int i = 0; i < n; i++) {
            pid_t child = fork();
            if (child == 0) {
                if (fork() == 0) _exit(0);
                _exit(0);
            }
            if (child > 0) waitpid(child, NULL, 0);
        }
        int left = zombies();
        while (left > 0 && now() - started < 10) {
            usleep(1000);
            left = zombies();
        }
        printf("made %d, zombies left %d, seconds %.3f\n", n, left, now() - started);
        return 0;
    }
    fprintf(stderr, "usage: helpers restart | start N | orphans N\n");
    return 2;
}
