"""How each supervisor of the peer benchmark is configured, started and drained.

Every peer runs the same services, written as each one's configuration wants them:
- `long`: `/bin/sleep 3601` (the service the start, footprint and restart scenarios count);
- `ignore_term`: a shell that ignores SIGTERM and execs `/bin/sleep 3601`;
- `crash`: `/bin/false`.
Each is configured to restart for ever at its smallest restart delay (except in the crash loop,
where each keeps its own default policy, as a user gets it), and to stop with SIGTERM and a 2 s
timeout before SIGKILL where it has one."""

import json
import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

LONG = ["/bin/sleep", "3601"]
IGNORE_TERM = ["/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 3601"]
CRASH = ["/bin/false"]
COMMANDS = {"long": LONG, "ignore_term": IGNORE_TERM, "crash": CRASH}


def is_service(cmdline):
    """A service process of the benchmark (what supervisors start), not a supervisor's own."""
    return bool(cmdline) and os.path.basename(cmdline[0]) == "sleep" and cmdline[-1] == "3601"


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0][:80] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def dpkg_version(package):
    return version_of(["dpkg-query", "-W", "-f=${Version}", package])


def pip_version(package):
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001 - any failure means "not installed"
        return None


class Peer:
    """One supervisor. `start(kind, n, workdir, policy)` returns the Popen of its top process.
    `policy`: "fast" (restart for ever, smallest delay) or "default" (the peer's own)."""

    name = "?"
    drain_signal = signal.SIGTERM
    # Restarts closer together than this are throttled by the peer itself (s6, runit: 1 s).
    min_uptime = 0.0
    # It has a stop timeout after which it sends SIGKILL.
    stop_timeout = True

    def available(self):
        """None when it can run here, else why not."""
        return None

    def version(self):
        return "?"

    def start(self, kind, n, workdir, policy="fast"):
        raise NotImplementedError

    def popen(self, argv, workdir, env=None):
        log = open(os.path.join(workdir, "peer.log"), "ab")
        return subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(os.environ, **(env or {})),
            start_new_session=True,
        )


class Drover(Peer):
    name = "drover"

    def __init__(self, binary):
        self.binary = binary

    def available(self):
        return None if os.access(self.binary, os.X_OK) else f"{self.binary} is not built"

    def version(self):
        return version_of([self.binary, "--version"])

    def start(self, kind, n, workdir, policy="fast"):
        restart = (
            "{ policy: always, backoff: { initial: 0s, max: 0s, jitter: 0 } }"
            if policy == "fast"
            else "on-failure"
        )
        lines = [
            "settings:",
            '  metrics: { listen: "127.0.0.1:0" }',
            f"  control: {{ socket: {workdir}/drover.sock }}",
            "services:",
        ]
        command = json.dumps(COMMANDS[kind])
        for i in range(n):
            lines.append(
                f"  s{i}: {{ command: {command}, restart: {restart}, stop: {{ timeout: 2s }} }}"
            )
        path = os.path.join(workdir, "drover.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.popen([self.binary, "run", path], workdir, {"RUST_LOG": "warn"})


class Supervisord(Peer):
    name = "supervisord"

    def available(self):
        return None if shutil.which("supervisord") else "supervisord not installed (apt-get install supervisor)"

    def version(self):
        return version_of(["supervisord", "--version"])

    def start(self, kind, n, workdir, policy="fast"):
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={workdir}/supervisord.log",
            f"pidfile={workdir}/supervisord.pid",
            f"childlogdir={workdir}",
            "minfds=16384",
            "minprocs=2000",
        ]
        for i in range(n):
            lines += [
                f"[program:s{i}]",
                "command=" + " ".join(_shell_quote(a) for a in COMMANDS[kind]),
                "stdout_logfile=NONE",
                "stderr_logfile=NONE",
                "stopwaitsecs=2",
            ]
            if policy == "fast":
                lines += ["autorestart=true", "startsecs=0", "startretries=1000000"]
        path = os.path.join(workdir, "supervisord.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.popen(["supervisord", "-n", "-c", path], workdir)


class Simpervisor(Peer):
    name = "simpervisor"

    def available(self):
        return None if pip_version("simpervisor") else "simpervisor not installed (pip install simpervisor)"

    def version(self):
        return pip_version("simpervisor") or "?"

    def start(self, kind, n, workdir, policy="fast"):
        argv = [sys.executable, os.path.join(HERE, "simpervisor_driver.py"), str(n)]
        argv += ["always" if policy == "fast" else "never", "--"] + COMMANDS[kind]
        return self.popen(argv, workdir)


class Circus(Peer):
    name = "circus"

    def available(self):
        return None if shutil.which("circusd") else "circus not installed (pip install circus)"

    def version(self):
        return pip_version("circus") or "?"

    def start(self, kind, n, workdir, policy="fast"):
        lines = [
            "[circus]",
            f"endpoint = ipc://{workdir}/endpoint",
            f"pubsub_endpoint = ipc://{workdir}/pubsub",
            "statsd = false",
            "check_delay = 1",
        ]
        command = COMMANDS[kind]
        for i in range(n):
            lines += [
                f"[watcher:s{i}]",
                "cmd = " + command[0],
                "args = " + " ".join(_shell_quote(a) for a in command[1:]),
                "numprocesses = 1",
                "graceful_timeout = 2",
                "warmup_delay = 0",
                "copy_env = true",
            ]
            if policy == "fast":
                lines += ["respawn = true", "max_retry = -1"]
        path = os.path.join(workdir, "circus.ini")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.popen([shutil.which("circusd"), path], workdir)


class Pm2(Peer):
    name = "pm2"

    def available(self):
        return None if shutil.which("pm2-runtime") else "pm2 not installed (npm install -g pm2)"

    def version(self):
        # `pm2 --version` would start pm2's daemon: read the package instead.
        try:
            root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=20).stdout.strip()
            with open(os.path.join(root, "pm2", "package.json")) as f:
                return json.load(f).get("version", "?")
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return "?"

    def start(self, kind, n, workdir, policy="fast"):
        command = COMMANDS[kind]
        apps = []
        for i in range(n):
            app = {
                "name": f"s{i}",
                "script": command[0],
                "args": command[1:],
                "interpreter": "none",
                "kill_timeout": 2000,
                "autorestart": True,
            }
            if policy == "fast":
                app.update({"restart_delay": 0, "min_uptime": 0, "max_restarts": 1000000})
            apps.append(app)
        path = os.path.join(workdir, "ecosystem.json")
        with open(path, "w") as f:
            json.dump({"apps": apps}, f)
        home = os.path.join(workdir, "pm2")
        return self.popen(["pm2-runtime", "start", path], workdir, {"PM2_HOME": home})


def _service_dirs(root, n, command, extra=None):
    """`root/s0` ... `root/s{n-1}`, each with a `run` script that execs `command`, and the
    files of `extra` (name -> content): the service directories of s6 and runit."""
    os.makedirs(root, exist_ok=True)
    script = "#!/bin/sh\nexec " + " ".join(_shell_quote(a) for a in command) + "\n"
    for i in range(n):
        service = os.path.join(root, f"s{i}")
        os.makedirs(service)
        for name, content in {"run": script, **(extra or {})}.items():
            with open(os.path.join(service, name), "w") as f:
                f.write(content)
        os.chmod(os.path.join(service, "run"), 0o755)


class S6(Peer):
    name = "s6"
    min_uptime = 1.0

    def available(self):
        return None if shutil.which("s6-svscan") else "s6 not installed (apt-get install s6)"

    def version(self):
        return dpkg_version("s6")

    def start(self, kind, n, workdir, policy="fast"):
        scan = os.path.join(workdir, "scan")
        _service_dirs(scan, n, COMMANDS[kind], {"timeout-kill": "2000\n"})
        return self.popen(["s6-svscan", "-c", str(max(500, 2 * n + 10)), scan], workdir)


class Runit(Peer):
    name = "runit"
    min_uptime = 1.0
    drain_signal = signal.SIGHUP
    stop_timeout = False

    def available(self):
        return None if shutil.which("runsvdir") else "runit not installed (apt-get install runit)"

    def version(self):
        return dpkg_version("runit")

    def start(self, kind, n, workdir, policy="fast"):
        services = os.path.join(workdir, "service")
        _service_dirs(services, n, COMMANDS[kind])
        return self.popen(["runsvdir", "-P", services], workdir)


class Horust(Peer):
    name = "horust"

    def available(self):
        if shutil.which("horust"):
            return None
        return "horust not installed (cargo install horust takes minutes to build; --with-horust installs it)"

    def version(self):
        return version_of(["horust", "--version"])

    def start(self, kind, n, workdir, policy="fast"):
        services = os.path.join(workdir, "services")
        os.makedirs(services, exist_ok=True)
        command = " ".join(_shell_quote(a) for a in COMMANDS[kind])
        for i in range(n):
            strategy = "always" if policy == "fast" else "on-failure"
            with open(os.path.join(services, f"s{i}.toml"), "w") as f:
                f.write(
                    f'command = "{command}"\n[restart]\nstrategy = "{strategy}"\nbackoff = "0s"\nattempts = 0\n'
                    '[termination]\nsignal = "TERM"\nwait = "2s"\n'
                )
        return self.popen(["horust", "--services-path", services], workdir)


class Floor(Peer):
    """Not a supervisor: the bare loops every figure is held against."""

    name = "floor"

    def __init__(self, helpers):
        self.helpers = helpers

    def version(self):
        return "fork+exec+waitpid in C"

    def start(self, kind, n, workdir, policy="fast"):
        if kind != "long":
            raise NotImplementedError
        if n == 1 and policy == "fast":
            return self.popen([self.helpers, "restart"], workdir)
        return self.popen([self.helpers, "start", str(n)], workdir)


def _shell_quote(arg):
    if arg and all(c.isalnum() or c in "/._-=" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


def all_peers(drover_binary, helpers):
    return [
        Drover(drover_binary),
        Supervisord(),
        Simpervisor(),
        Circus(),
        Pm2(),
        S6(),
        Runit(),
        Horust(),
    ], Floor(helpers)
