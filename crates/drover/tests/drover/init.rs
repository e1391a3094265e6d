//! `drover -- CMD`: the tini-compatible single-command init.

use crate::util::*;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn init(argv: &[&str], stdin: Option<&[u8]>) -> Drover {
    let mut full = vec![env!("CARGO_BIN_EXE_drover"), "--"];
    full.extend_from_slice(argv);
    Drover::start(tempfile::tempdir().expect("tempdir"), &full, stdin)
}

#[test]
fn exit_codes_pass_through() {
    for code in [0, 1, 42, 255] {
        let mut drover = init(&["sh", "-c", &format!("exit {code}")], None);
        assert_eq!(drover.wait(SECS(10)), code);
    }
}

#[test]
fn death_by_signal_exits_128_plus_n() {
    for (signal, code) in [("TERM", 143), ("KILL", 137), ("INT", 130)] {
        let mut drover = init(&["sh", "-c", &format!("kill -{signal} $$")], None);
        assert_eq!(drover.wait(SECS(10)), code, "SIG{signal}");
    }
}

#[test]
fn a_missing_command_exits_127_and_a_non_executable_one_126() {
    let mut drover = init(&["/nonexistent/cmd"], None);
    assert_eq!(drover.wait(SECS(10)), 127);
    assert!(
        drover
            .stderr()
            .contains("drover: /nonexistent/cmd: not found"),
        "{}",
        drover.stderr()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    let mut drover = init(&[script.to_str().expect("utf-8")], None);
    assert_eq!(drover.wait(SECS(10)), 126);
}

#[test]
fn stdin_and_stdout_pass_through() {
    let mut drover = init(&["cat"], Some(b"hello through drover\n"));
    assert_eq!(drover.wait(SECS(10)), 0);
    assert_eq!(drover.stdout(), "hello through drover\n");
}

/// A python child that reports every signal it gets by number, and exits 0 on TERM.
pub(crate) const REPORTER: &str = r#"
import signal, sys, time
def report(number, frame):
    print(number, flush=True)
    if number == signal.SIGTERM:
        sys.exit(0)
numbers = [1, 2, 3, 10, 12, 13, 14, 15, 16, 18, 20, 23, 24, 25, 26, 27, 28, 29, 30]
numbers += range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
for number in numbers:
    signal.signal(number, report)
print("ready", flush=True)
while True:
    time.sleep(1)
"#;

/// Every signal tini forwards (all but SIGCHLD, the faults SIGFPE, SIGILL, SIGSEGV, SIGBUS,
/// SIGABRT, SIGTRAP, SIGSYS, the terminal SIGTTIN and SIGTTOU, and the uncatchable SIGKILL and
/// SIGSTOP), real-time ones included, sent to `pid` one by one, each seen by the [`REPORTER`]
/// whose output `drover` captures before the next is sent.
pub(crate) fn each_forwarded_signal_reaches_cmd(drover: &Drover, pid: i32) {
    wait_until(SECS(10), "the child to be ready", || {
        drover.stdout().contains("ready")
    });
    let mut numbers = vec![
        1,  // SIGHUP
        2,  // SIGINT
        3,  // SIGQUIT
        10, // SIGUSR1
        12, // SIGUSR2
        13, // SIGPIPE
        14, // SIGALRM
        16, // SIGSTKFLT
        18, // SIGCONT
        20, // SIGTSTP
        23, // SIGURG
        24, // SIGXCPU
        25, // SIGXFSZ
        26, // SIGVTALRM
        27, // SIGPROF
        28, // SIGWINCH
        29, // SIGIO
        30, // SIGPWR
    ];
    numbers.extend(nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX());
    let mut expected = String::from("ready\n");
    for number in numbers {
        send(pid, number);
        expected.push_str(&format!("{number}\n"));
        wait_until(SECS(5), &format!("signal {number} at CMD"), || {
            drover.stdout() == expected
        });
    }
}

#[test]
fn signals_are_forwarded_to_cmd() {
    let mut drover = init(&["python3", "-c", REPORTER], None);
    each_forwarded_signal_reaches_cmd(&drover, drover.pid());
    drover.signal(SIGTERM);
    assert_eq!(
        drover.wait(SECS(10)),
        0,
        "the child handled SIGTERM and exited 0"
    );
    assert!(drover.stdout().ends_with("\n15\n"));
}

#[test]
fn descendants_left_behind_are_ended_when_cmd_exits() {
    let mut drover = init(&["sh", "-c", "sleep 300 & echo $! > left; exit 0"], None);
    assert_eq!(drover.wait(SECS(10)), 0);
    let left: i32 = std::fs::read_to_string(drover.path("left"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        !alive(left),
        "the left-behind sleep must be gone when drover has exited"
    );
}

/// `drover ARGS...` (no `--` added) in a new temp dir.
fn drover_plain(argv: &[&std::ffi::OsStr]) -> Drover {
    let mut command = vec![std::ffi::OsStr::new(env!("CARGO_BIN_EXE_drover"))];
    command.extend_from_slice(argv);
    let words: Vec<String> = command
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    // Drover::start takes text; arguments that are not UTF-8 go through a script instead.
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Drover::start(tempfile::tempdir().expect("tempdir"), &words, None)
}

#[test]
fn arguments_reach_cmd_as_bytes_verbatim() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "x".repeat(10_000);
    // printf writes each argument NUL-terminated: what CMD got, byte for byte.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            std::ffi::OsStr::new("printf"),
            std::ffi::OsStr::new("%s\\0"),
            std::ffi::OsStr::from_bytes(b"\xff\xfe"),
            std::ffi::OsStr::new(""),
            std::ffi::OsStr::new("--help"),
            std::ffi::OsStr::new("-v"),
            std::ffi::OsStr::new("--"),
            std::ffi::OsStr::new(&long),
        ])
        .current_dir(dir.path())
        .output()
        .expect("run drover");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut expected = b"\xff\xfe\0\0--help\0-v\0--\0".to_vec();
    expected.extend_from_slice(long.as_bytes());
    expected.push(0);
    assert_eq!(output.stdout, expected);
}

#[test]
fn tini_options_remap_exit_codes_and_signal_the_group() {
    // (30 s waits: under a loaded CI machine, the flood tests share the two cores.)
    // -e: 3 becomes 0, other codes pass.
    let mut drover = drover_plain(&[
        "-e".as_ref(),
        "3".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "exit 3".as_ref(),
    ]);
    assert_eq!(drover.wait(SECS(30)), 0, "{}", drover.stderr());
    let mut drover = drover_plain(&[
        "-e3".as_ref(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "exit 4".as_ref(),
    ]);
    assert_eq!(drover.wait(SECS(30)), 4, "{}", drover.stderr());
    // -g: a forwarded SIGTERM reaches CMD's child too, which plain forwarding would not.
    let mut drover = drover_plain(&[
        "-g".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        // A handler, not an ignore: an ignored TERM would be inherited by `sleep`.
        "trap 'true' TERM; sleep 1000 & echo $! > child; wait; wait".as_ref(),
    ]);
    let child = drover.pid_file("child");
    drover.signal(SIGTERM);
    wait_until(SECS(30), "CMD's child to get SIGTERM", || !alive(child));
    drover.signal(SIGKILL);
    drover.wait(SECS(30));
}

/// The descriptors `ls` sees, run by `sh -c` with descriptor 9 open on `through.txt`, through
/// `via` (drover, or nothing).
fn descriptors_seen(dir: &std::path::Path, via: Option<&str>) -> Vec<i32> {
    let inner = "ls /proc/self/fd > fds; echo through >> through.txt >&9";
    let script = match via {
        Some(_) => format!("exec 9> through.txt; exec \"$0\" sh -c '{inner}'"),
        None => format!("exec 9> through.txt; exec sh -c '{inner}'"),
    };
    let status = std::process::Command::new("sh")
        .args(["-c", &script, via.unwrap_or("sh")])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run");
    assert!(status.success());
    let fds = std::fs::read_to_string(dir.join("fds")).expect("fds");
    let mut fds: Vec<i32> = fds
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn inherited_descriptors_reach_cmd_and_drovers_own_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The caller opens descriptor 9 (as socket activation or a pipe from a parent would),
    // then becomes drover: CMD sees exactly what it would have seen without drover.
    let without = descriptors_seen(dir.path(), None);
    let with = descriptors_seen(dir.path(), Some(env!("CARGO_BIN_EXE_drover")));
    assert!(with.contains(&9), "{with:?}");
    assert_eq!(with, without, "nothing of drover's own reaches CMD");
    assert!(
        std::fs::read_to_string(dir.path().join("through.txt"))
            .expect("through")
            .contains("through"),
        "fd 9 was usable"
    );
}

#[test]
fn drovers_own_writes_to_a_closed_stderr_raise_no_sigpipe_for_cmd() {
    let dir = tempfile::tempdir().expect("tempdir");
    // drover's stderr: a pipe whose reader is gone. `-w` makes drover write a line for the
    // orphan below, and that write fails with EPIPE.
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "-w",
            "-vvv",
            "sh",
            "-c",
            "trap 'echo piped > piped' PIPE; (sleep 0.1 &); sleep 1; exit 0",
        ])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(writer))
        .status()
        .expect("run drover");
    assert_eq!(status.code(), Some(0));
    assert!(
        !dir.path().join("piped").exists(),
        "CMD got a SIGPIPE that drover's own write raised"
    );
}
