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

/// A python child that reports every signal it gets, and exits 0 on TERM.
const REPORTER: &str = r#"
import os, signal, sys, time
def report(number, frame):
    print(signal.Signals(number).name, flush=True)
    if number == signal.SIGTERM:
        sys.exit(0)
for name in ["SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTERM"]:
    signal.signal(getattr(signal, name), report)
print("ready", flush=True)
while True:
    time.sleep(1)
"#;

#[test]
fn signals_are_forwarded_to_cmd() {
    let mut drover = init(&["python3", "-c", REPORTER], None);
    wait_until(SECS(10), "the child to be ready", || {
        drover.stdout().contains("ready")
    });
    for (number, name) in [
        (1, "SIGHUP"),
        (2, "SIGINT"),
        (3, "SIGQUIT"),
        (10, "SIGUSR1"),
        (12, "SIGUSR2"),
        (28, "SIGWINCH"),
    ] {
        drover.signal(number);
        wait_until(SECS(5), name, || {
            drover.stdout().contains(&format!("{name}\n"))
        });
    }
    drover.signal(SIGTERM);
    assert_eq!(
        drover.wait(SECS(10)),
        0,
        "the child handled SIGTERM and exited 0"
    );
    assert!(drover.stdout().ends_with("SIGTERM\n"));
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
