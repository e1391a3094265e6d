//! drover under a service manager: this test process stands in for systemd, with a real
//! datagram socket as `NOTIFY_SOCKET`, and reads what drover tells it: `READY=1`, `WATCHDOG=1`
//! and `STOPPING=1`.

use crate::util::*;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A manager's socket: what drover sends it, read with a deadline.
struct Manager(UnixDatagram);

impl Manager {
    /// The next message, or a panic naming `what` after 15 s.
    fn recv(&self, what: &str) -> String {
        self.0.set_read_timeout(Some(SECS(15))).expect("timeout");
        let mut buffer = [0u8; 4096];
        let n = self
            .0
            .recv(&mut buffer)
            .unwrap_or_else(|err| panic!("{what} within 15 s: {err}"));
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    /// Reads messages until one has the line `line`; returns the messages read before it.
    fn recv_until(&self, line: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let message = self.recv(line);
            if message.lines().any(|l| l == line) {
                return before;
            }
            before.push(message);
        }
    }
}

/// A service whose readiness drover must wait for, that records what it inherited.
const MANIFEST: &str = "services:
  app:
    command: [sh, -c, \"echo ${NOTIFY_SOCKET:-none} ${WATCHDOG_USEC:-none} > seen.txt; exec sleep 1000\"]
    readiness_probe: { exec: { command: [test, -f, seen.txt] }, period: 50ms }
";

#[test]
fn drover_tells_its_service_manager_ready_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("manager.sock");
    let manager = Manager(UnixDatagram::bind(&socket_path).expect("bind"));
    std::fs::write(dir.path().join("drover.yaml"), MANIFEST).expect("write manifest");
    let socket = socket_path.to_string_lossy().into_owned();
    let mut drover = Drover::start_with_env(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        &[("NOTIFY_SOCKET", &socket)],
    );
    manager.recv_until("READY=1");
    // Its readiness probe passed (the log line is written before READY=1 is sent).
    wait_until(SECS(10), "the probe's log line", || {
        drover.stderr().contains("readiness probe passed")
    });
    // The service does not see drover's own socket.
    assert_eq!(drover.wait_file("seen.txt", SECS(5)).trim(), "none none");
    drover.signal(SIGTERM);
    manager.recv_until("STOPPING=1");
    assert_eq!(drover.wait(SECS(10)), 0);
}

/// `WatchdogSec=`: systemd sets `WATCHDOG_USEC`; drover answers with `WATCHDOG=1` every half
/// period while its loop runs, from the start to the drain. The socket is in the abstract
/// namespace (`@name`), which systemd and other managers may use.
#[test]
fn drover_feeds_the_service_managers_watchdog_through_an_abstract_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!(
        "drover-test-manager-{}-{:?}",
        std::process::id(),
        Instant::now()
    );
    let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let manager = Manager(UnixDatagram::bind_addr(&address).expect("bind"));
    std::fs::write(dir.path().join("drover.yaml"), MANIFEST).expect("write manifest");
    let notify_socket = format!("@{name}");
    let mut drover = Drover::start_with_env(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        &[
            ("NOTIFY_SOCKET", &notify_socket),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    // Pings come before READY=1 (the watchdog runs from the start), and go on after it.
    let mut pings = 0;
    let mut ready = false;
    while pings < 5 || !ready {
        let message = manager.recv("five WATCHDOG=1 and READY=1");
        pings += message.lines().filter(|l| *l == "WATCHDOG=1").count();
        ready |= message.lines().any(|l| l == "READY=1");
    }
    wait_until(SECS(10), "the watchdog's log line", || {
        drover
            .stderr()
            .contains("feeding the service manager's watchdog")
    });
    // Neither the socket nor the watchdog reach the service.
    assert_eq!(drover.wait_file("seen.txt", SECS(5)).trim(), "none none");
    drover.signal(SIGTERM);
    manager.recv_until("STOPPING=1");
    assert_eq!(drover.wait(SECS(10)), 0);
    assert!(
        !drover.stderr().contains("not feeding the watchdog"),
        "{}",
        drover.stderr()
    );
}

/// `WATCHDOG_PID` names another process: the watchdog is not drover's, and it is not fed.
#[test]
fn a_watchdog_meant_for_another_process_is_not_fed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("manager.sock");
    let manager = Manager(UnixDatagram::bind(&socket_path).expect("bind"));
    std::fs::write(dir.path().join("drover.yaml"), MANIFEST).expect("write manifest");
    let socket = socket_path.to_string_lossy().into_owned();
    let mut drover = Drover::start_with_env(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        &[
            ("NOTIFY_SOCKET", &socket),
            ("WATCHDOG_USEC", "100000"),
            // pid 1 is never drover's pid here.
            ("WATCHDOG_PID", "1"),
        ],
    );
    // READY=1 takes at least one 50 ms probe period: two would-be pings.
    let before = manager.recv_until("READY=1");
    drover.signal(SIGTERM);
    let after = manager.recv_until("STOPPING=1");
    assert_eq!(drover.wait(SECS(10)), 0);
    for message in before.iter().chain(&after) {
        assert!(!message.contains("WATCHDOG=1"), "{message}");
    }
    assert!(
        !drover
            .stderr()
            .contains("feeding the service manager's watchdog")
    );
}
