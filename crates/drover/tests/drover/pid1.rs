//! drover as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`, as root in CI).
//! Where that is impossible, the test says so on stderr and skips; it never passes silently
//! without having run.

use crate::util::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Whether a PID namespace can be made here; prints why `test` skips when not.
// A skip must be visible in the test output.
#[allow(clippy::print_stderr)]
pub(crate) fn unshare_works(test: &str) -> bool {
    let works = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!(
            "SKIPPED {test}: `unshare --pid --fork --mount-proc` is not permitted here (it needs root)"
        );
    }
    works
}

/// `drover run drover.yaml` as PID 1 of a new PID namespace, in `dir`; also drover's pid as
/// seen from outside (the child `unshare --fork` started).
pub(crate) fn run_as_pid1(dir: tempfile::TempDir, manifest: &str) -> (Drover, i32) {
    std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
    // No cgroup subtree: these tests end drover by SIGKILL, and a PID 1 has no guard to remove
    // it (in a container the cgroup namespace goes with the container; here it would stay in
    // the host's hierarchy).
    let unshare = Drover::start_with_env(
        dir,
        &[
            "unshare",
            "--pid",
            "--fork",
            // Killing unshare (as a failed test's drop does) kills drover, and with it the
            // namespace: nothing is left running.
            "--kill-child",
            "--mount-proc",
            env!("CARGO_BIN_EXE_drover"),
            "run",
            "drover.yaml",
        ],
        None,
        &[("DROVER_NO_CGROUPS", "1")],
    );
    let mut drover = 0;
    wait_until(SECS(10), "drover under unshare", || {
        drover = children_of(unshare.pid()).first().map_or(0, |c| c.0);
        drover != 0
    });
    (unshare, drover)
}

/// Forks 1000 children that each fork a grandchild and exit at once; the grandchildren, now
/// orphans of PID 1, all block on one pipe and exit together when it closes.
const ORPHAN_STORM: &str = r#"
import os, time
read_end, write_end = os.pipe()
for _ in range(1000):
    if os.fork() == 0:
        if os.fork() == 0:
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        os._exit(0)
    os.wait()
os.close(read_end)
open("orphans-ready", "w").write("ready\n")
time.sleep(0.2)
os.close(write_end)
open("orphans-released", "w").write("released\n")
time.sleep(300)
"#;

#[test]
fn as_pid1_a_thousand_orphans_leave_no_zombie_and_no_status_is_lost() {
    if !unshare_works("as_pid1_a_thousand_orphans_leave_no_zombie_and_no_status_is_lost") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("storm.py"), ORPHAN_STORM).expect("write script");
    let (mut unshare, drover) = run_as_pid1(
        dir,
        "services:
  storm: { command: [python3, storm.py] }
  crash:
    command: \"echo x >> crashes; exit 1\"
    restart: { backoff: { initial: 0s }, max_retries: 300 }
",
    );
    unshare.wait_file("orphans-released", SECS(60));
    wait_until(SECS(30), "the crashing service to give up", || {
        unshare.stderr().contains("gave up after 300 restarts")
    });
    // Every restart was seen: 301 starts, each counted once.
    let crashes = std::fs::read_to_string(unshare.path("crashes")).expect("crashes");
    assert_eq!(crashes.lines().count(), 301);
    // Zero zombies: only the storm's python process remains a child of drover.
    wait_until(
        SECS(10),
        "drover's children to be only the storm service",
        || {
            let children = children_of(drover);
            children.len() == 1 && children.iter().all(|&(_, state)| state != 'Z')
        },
    );
    send(drover, SIGTERM);
    assert_eq!(unshare.wait(SECS(20)), 0, "{}", unshare.stderr());
    assert!(
        unshare.stderr().contains("orphans_reaped=1000"),
        "drover reports the orphans it reaped:\n{}",
        unshare.stderr()
    );
}

#[test]
fn as_pid1_sigterm_drains_and_exits() {
    if !unshare_works("as_pid1_sigterm_drains_and_exits") {
        return;
    }
    let (mut unshare, drover) = run_as_pid1(
        tempfile::tempdir().expect("tempdir"),
        "services:\n  s: { command: \"touch up; exec sleep 300\" }\n",
    );
    wait_until(SECS(10), "the service", || unshare.path("up").exists());
    send(drover, SIGTERM);
    assert_eq!(unshare.wait(SECS(10)), 0, "{}", unshare.stderr());
}

#[test]
fn as_pid1_a_sigkill_from_outside_leaves_no_process_of_any_service() {
    if !unshare_works("as_pid1_a_sigkill_from_outside_leaves_no_process_of_any_service") {
        return;
    }
    let (unshare, pid1) = run_as_pid1(
        tempfile::tempdir().expect("tempdir"),
        "services:
  app:
    command: \"sleep 1000 & setsid sleep 1001 & echo $$ > main; wait\"
",
    );
    unshare.wait_file("main", SECS(10));
    // Pids inside the namespace differ from ours: find the sleeps among drover's descendants.
    let mut sleeps = Vec::new();
    wait_until(SECS(10), "both sleeps", || {
        sleeps = descendants_of(pid1);
        sleeps.len() >= 3
    });
    send(pid1, SIGKILL);
    wait_until(
        SECS(10),
        "every process of the namespace to be gone",
        || sleeps.iter().all(|&pid| !alive(pid)),
    );
}

/// Every descendant of `root`.
fn descendants_of(root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(children_of(parent).into_iter().map(|(pid, _)| pid));
        next += 1;
    }
    found.remove(0);
    found
}

#[test]
fn as_pid1_tini_options_and_byte_arguments_hold() {
    use std::os::unix::ffi::OsStrExt;
    if !unshare_works("as_pid1_tini_options_and_byte_arguments_hold") {
        return;
    }
    let under_unshare = |args: &[&std::ffi::OsStr]| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("unshare")
    };
    // -e: CMD's 3 is drover's 0, as PID 1 too.
    let run = under_unshare(&[
        "-e".as_ref(),
        "3".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "exit 3".as_ref(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Bytes and drover-like words reach CMD unchanged.
    let run = under_unshare(&[
        "printf".as_ref(),
        "%s\\0".as_ref(),
        std::ffi::OsStr::from_bytes(b"\xff"),
        "--help".as_ref(),
        "".as_ref(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.stdout, b"\xff\0--help\0\0");
}

#[test]
fn as_pid1_every_forwarded_signal_reaches_cmd() {
    if !unshare_works("as_pid1_every_forwarded_signal_reaches_cmd") {
        return;
    }
    let mut unshare = Drover::start(
        tempfile::tempdir().expect("tempdir"),
        &[
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            env!("CARGO_BIN_EXE_drover"),
            "--",
            "python3",
            "-c",
            crate::init::REPORTER,
        ],
        None,
    );
    let mut drover = 0;
    wait_until(SECS(10), "drover under unshare", || {
        drover = children_of(unshare.pid()).first().map_or(0, |c| c.0);
        drover != 0
    });
    // A PID 1 gets from outside only the signals it has a handler for: drover has one for each.
    crate::init::each_forwarded_signal_reaches_cmd(&unshare, drover);
    send(drover, SIGTERM);
    assert_eq!(unshare.wait(SECS(10)), 0, "{}", unshare.stderr());
    assert!(unshare.stdout().ends_with("\n15\n"));
}
