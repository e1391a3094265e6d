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

/// The longest any test here reads from its manager.
const READ_LIMIT: Duration = Duration::from_secs(20);

impl Manager {
    /// The next message, waiting until `deadline` at most (then a panic naming `what`).
    fn recv_by(&self, deadline: Instant, what: &str) -> String {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .unwrap_or_else(|| panic!("{what}: not within {READ_LIMIT:?}"));
        self.0.set_read_timeout(Some(left)).expect("timeout");
        let mut buffer = [0u8; 4096];
        let n = self
            .0
            .recv(&mut buffer)
            .unwrap_or_else(|err| panic!("{what}: not within {READ_LIMIT:?}: {err}"));
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    /// Reads messages until one has the line `line` (within [`READ_LIMIT`] in all); returns
    /// the messages read before it.
    fn recv_until(&self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + READ_LIMIT;
        let mut before = Vec::new();
        loop {
            let message = self.recv_by(deadline, line);
            if message.lines().any(|l| l == line) {
                return before;
            }
            before.push(message);
        }
    }
}

/// A manager's socket bound at `manager.sock` in `dir`, and its path for `NOTIFY_SOCKET`.
fn manager_in(dir: &tempfile::TempDir) -> (Manager, std::path::PathBuf) {
    let path = dir.path().join("manager.sock");
    (Manager(UnixDatagram::bind(&path).expect("bind")), path)
}

/// `drover run` on `manifest` in `dir`, with `NOTIFY_SOCKET=socket` and `env`.
fn run_notified(
    dir: tempfile::TempDir,
    manifest: &str,
    socket: &str,
    env: &[(&str, &str)],
) -> Drover {
    std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
    let mut all = vec![("NOTIFY_SOCKET", socket)];
    all.extend_from_slice(env);
    Drover::start_with_env(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        &all,
    )
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
    let (manager, socket_path) = manager_in(&dir);
    let socket = socket_path.to_string_lossy().into_owned();
    let mut drover = run_notified(dir, MANIFEST, &socket, &[]);
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

/// `WatchdogSec=`: systemd sets `WATCHDOG_USEC`; drover answers with `WATCHDOG=1` every quarter
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
    let notify_socket = format!("@{name}");
    // 2 s: a ping every half second, and room for a busy machine's stalls.
    let mut drover = run_notified(
        dir,
        MANIFEST,
        &notify_socket,
        &[("WATCHDOG_USEC", "2000000")],
    );
    // Pings come before READY=1 (the watchdog runs from the start), and go on after it.
    let deadline = Instant::now() + READ_LIMIT;
    let mut pings = 0;
    let mut ready = false;
    while pings < 3 || !ready {
        let message = manager.recv_by(deadline, "three WATCHDOG=1 and READY=1");
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
    let (manager, socket_path) = manager_in(&dir);
    let socket = socket_path.to_string_lossy().into_owned();
    // pid 1 is never drover's pid here.
    let mut drover = run_notified(
        dir,
        MANIFEST,
        &socket,
        &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")],
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

/// The manager's queue (`net.unix.max_dgram_qlen` datagrams) is full when the service
/// becomes ready: `READY=1` waits for room rather than being lost, or systemd would time the
/// start out and kill drover.
#[test]
fn ready_is_not_lost_to_a_full_manager_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, socket_path) = manager_in(&dir);
    // Filled by another sender before drover starts, and read only once drover says it waits.
    let filler = UnixDatagram::unbound().expect("socket");
    filler.set_nonblocking(true).expect("nonblocking");
    let mut queued = 0;
    loop {
        match filler.send_to(b"X-FILLER=1", &socket_path) {
            Ok(_) => queued += 1,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => panic!("fill the queue: {err}"),
        }
        assert!(queued < 100_000, "the queue never filled");
    }
    let socket = socket_path.to_string_lossy().into_owned();
    let mut drover = run_notified(dir, MANIFEST, &socket, &[]);
    wait_until(SECS(10), "READY=1 waiting for room", || {
        drover.stderr().contains("waiting for room")
    });
    let before = manager.recv_until("READY=1");
    assert_eq!(before.len(), queued, "{before:?}");
    drover.signal(SIGTERM);
    manager.recv_until("STOPPING=1");
    assert_eq!(drover.wait(SECS(10)), 0);
}

/// No signal: the services ended on their own (`on_exit: shutdown`). The manager still hears
/// `STOPPING=1` before drover exits.
#[test]
fn stopping_is_sent_when_the_services_end_on_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, socket_path) = manager_in(&dir);
    let socket = socket_path.to_string_lossy().into_owned();
    let mut drover = run_notified(
        dir,
        "services:
  job:
    command: \"sleep 0.3\"
    on_exit: shutdown
    restart: { policy: never }
",
        &socket,
        &[],
    );
    let before = manager.recv_until("STOPPING=1");
    assert_eq!(drover.wait(SECS(10)), 0);
    assert!(before.iter().all(|m| !m.contains("STOPPING")), "{before:?}");
}
