//! The signal state children start with: services get every signal at its default and an empty
//! mask, whatever drover started with; `drover -- CMD` hands on what drover started with.
//! drover is started by a python wrapper that ignores SIGHUP and blocks SIGUSR2, then execs it.

use crate::util::*;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Ignores SIGHUP, blocks SIGUSR2, then execs its arguments: both survive exec.
const WRAPPER: &str = "import os, signal, sys\n\
signal.signal(signal.SIGHUP, signal.SIG_IGN)\n\
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])\n\
os.execv(sys.argv[1], sys.argv[1:])\n";

/// Prints the `SigIgn` and `SigBlk` lines of its own status. No shell: dash clears its mask.
const REPORT: [&str; 3] = ["grep", "^Sig[IB]", "/proc/self/status"];

fn wrapped(dir: tempfile::TempDir, drover_args: &[&str]) -> Drover {
    let mut argv = vec!["python3", "-c", WRAPPER, env!("CARGO_BIN_EXE_drover")];
    argv.extend_from_slice(drover_args);
    Drover::start(dir, &argv, None)
}

/// The hexadecimal value of `name` (`SigIgn:` or `SigBlk:`) in the reported lines.
fn field(output: &str, name: &str) -> u64 {
    let value = output
        .lines()
        .find_map(|line| line.split_once(name).map(|(_, value)| value.trim()))
        .unwrap_or_else(|| panic!("no {name} in {output:?}"));
    u64::from_str_radix(value, 16).expect("hex")
}

const fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

#[test]
fn services_start_with_default_dispositions_and_an_empty_mask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = format!(
        "services:\n  report:\n    command: {REPORT:?}\n    restart: {{ policy: never }}\n"
    );
    std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
    let mut drover = wrapped(dir, &["run", "drover.yaml"]);
    // The only service exits 0 and is not restarted: drover exits 0 once it has.
    assert_eq!(drover.wait(SECS(10)), 0, "{}", drover.stderr());
    let output = drover.stdout();
    // drover ran with SIGHUP ignored and SIGUSR2 blocked (and whatever the test harness had
    // ignored); the service has nothing ignored and nothing blocked.
    assert_eq!(field(&output, "SigIgn:"), 0, "{output}");
    assert_eq!(field(&output, "SigBlk:"), 0, "{output}");
}

#[test]
fn cmd_inherits_what_drover_started_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut argv = vec!["--"];
    argv.extend_from_slice(&REPORT);
    let mut drover = wrapped(dir, &argv);
    assert_eq!(drover.wait(SECS(10)), 0, "{}", drover.stderr());
    let output = drover.stdout();
    let ignored = field(&output, "SigIgn:");
    assert_ne!(
        ignored & bit(libc_signal::SIGHUP),
        0,
        "SIGHUP not ignored: {output}"
    );
    // SIGPIPE's original disposition is lost to Rust's runtime: it starts at its default.
    assert_eq!(ignored & bit(libc_signal::SIGPIPE), 0, "{output}");
    assert_eq!(
        field(&output, "SigBlk:"),
        bit(libc_signal::SIGUSR2),
        "{output}"
    );
}

mod libc_signal {
    use nix::sys::signal::Signal;
    pub(super) const SIGHUP: i32 = Signal::SIGHUP as i32;
    pub(super) const SIGPIPE: i32 = Signal::SIGPIPE as i32;
    pub(super) const SIGUSR2: i32 = Signal::SIGUSR2 as i32;
}
