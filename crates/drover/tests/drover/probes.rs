//! Probes against real targets: exec commands, an HTTP server and TCP listeners in this test
//! process, and sd_notify datagrams from a real service. Periods are short (50–100 ms) so that
//! thresholds are crossed quickly; every wait polls with a deadline.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

impl Drover {
    /// Waits until drover's log has a line containing `text`.
    fn wait_log(&self, text: &str) {
        wait_until(
            SECS(15),
            &format!("log line {text:?}\nstderr:\n{}", self.stderr()),
            || self.stderr().contains(text),
        );
    }

    fn logged(&self, text: &str) -> bool {
        self.stderr().contains(text)
    }
}

/// A listener on a free loopback port, and the port.
fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// An HTTP server that answers every request with `status`, on a thread of this test.
fn http_server(status: u16) -> u16 {
    let (listener, port) = listener();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = "ok";
            let location = if (300..400).contains(&status) {
                "Location: /elsewhere\r\n"
            } else {
                ""
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A server that answers 200 only to requests carrying `X-Probe: yes`, else 400, followed by
/// a body that never ends (no Content-Length, never closed): a probe passes only if it stops
/// reading at its limit (64 KiB) instead of waiting for the end.
fn endless_server() -> u16 {
    let (listener, port) = listener();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let n = stream.read(&mut request).unwrap_or(0);
                let text = String::from_utf8_lossy(&request[..n]);
                let status = if text.contains("\r\nX-Probe: yes\r\n") {
                    200
                } else {
                    400
                };
                let _ = write!(stream, "HTTP/1.1 {status} X\r\n\r\n");
                let chunk = vec![b'x'; 16 * 1024];
                while stream.write_all(&chunk).is_ok() {}
            });
        }
    });
    port
}

/// A server that accepts connections and never answers.
fn silent_server() -> u16 {
    let (listener, port) = listener();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

/// A service with a readiness `probe` that decides on its first check. The check timeout is
/// long enough that a slow check on a loaded machine still gets its own verdict.
fn probed(probe: &str) -> String {
    probed_within(probe, "5s")
}

/// As [`probed`], with the check timeout `timeout`: for the tests of timeouts.
fn probed_within(probe: &str, timeout: &str) -> String {
    format!(
        "services:
  app:
    command: [sleep, \"1000\"]
    readiness_probe: {{ {probe}, period: 50ms, timeout: {timeout}, failure_threshold: 1 }}
"
    )
}

#[test]
fn http_probes_pass_on_2xx_and_3xx_and_fail_otherwise() {
    for (status, ready) in [(200, true), (302, true), (404, false), (500, false)] {
        let port = http_server(status);
        let drover = Drover::run(&probed(&format!(
            "http: {{ port: {port}, path: /healthz }}"
        )));
        if ready {
            drover.wait_log("readiness probe passed (HTTP");
            assert!(
                drover.logged(&format!("(HTTP {status})")),
                "{}",
                drover.stderr()
            );
        } else {
            drover.wait_log(&format!("readiness probe failing (HTTP {status})"));
            assert!(!drover.logged("to=ready"), "{}", drover.stderr());
        }
    }
}

#[test]
fn http_probes_send_their_headers_and_stop_reading_an_endless_body() {
    let port = endless_server();
    let drover = Drover::run(&probed(&format!(
        "http: {{ url: \"http://127.0.0.1:{port}/\", headers: {{ X-Probe: \"yes\" }} }}"
    )));
    drover.wait_log("readiness probe passed (HTTP 200)");
    let drover = Drover::run(&probed(&format!("http: {{ port: {port} }}")));
    drover.wait_log("readiness probe failing (HTTP 400)");
}

#[test]
fn http_probes_time_out_on_a_silent_server_and_fail_when_refused() {
    let port = silent_server();
    let drover = Drover::run(&probed_within(
        &format!("http: {{ port: {port} }}"),
        "300ms",
    ));
    drover.wait_log("readiness probe failing (no answer within 300ms)");
    // A port with no listener: bind one, note the port, close it.
    let closed = listener().1;
    let drover = Drover::run(&probed(&format!("http: {{ port: {closed} }}")));
    drover.wait_log(&format!(
        "readiness probe failing (127.0.0.1:{closed}: Connection refused"
    ));
}

#[test]
fn tcp_probes_pass_while_listening_only() {
    let (_listening, port) = listener();
    let drover = Drover::run(&probed(&format!("tcp: {{ port: {port} }}")));
    drover.wait_log("readiness probe passed (connected to 127.0.0.1:");
    let closed = listener().1;
    let drover = Drover::run(&probed(&format!("tcp: {{ port: {closed} }}")));
    drover.wait_log(&format!(
        "readiness probe failing (127.0.0.1:{closed}: Connection refused"
    ));
}

#[test]
fn exec_probes_pass_on_0_fail_otherwise_and_a_slow_one_is_killed_with_its_children() {
    let drover = Drover::run(&probed("exec: { command: [\"true\"] }"));
    drover.wait_log("readiness probe passed (exit code 0)");
    let drover = Drover::run(&probed("exec: { command: [sh, -c, \"exit 3\"] }"));
    drover.wait_log("readiness probe failing (exit code 3)");
    // The probe starts a child and waits: both must be gone once it times out.
    let drover = Drover::run(&probed_within(
        "exec: { command: [sh, -c, \"sleep 60 & echo $! > child.pid; echo $$ > probe.pid; wait\"] }",
        "300ms",
    ));
    drover.wait_log("readiness probe failing (still running after 300ms; killed)");
    let probe = drover.pid_file("probe.pid");
    let child = drover.pid_file("child.pid");
    wait_until(
        SECS(5),
        "the timed-out probe and its child to be gone",
        || !alive(probe) && !alive(child),
    );
}

#[test]
fn exec_probes_run_in_the_service_environment_and_working_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("work")).expect("mkdir");
    let drover = Drover::run_in(
        dir,
        "services:
  app:
    command: [sleep, \"1000\"]
    working_dir: work
    environment: { PROBE_MARK: here }
    readiness_probe:
      exec: { command: [sh, -c, \"echo $PROBE_MARK > seen.txt\"] }
      period: 50ms
",
    );
    drover.wait_log("readiness probe passed");
    // Each check rewrites the file (truncate, then write): poll for its whole text.
    let seen = drover.path("work/seen.txt");
    wait_until(SECS(10), "work/seen.txt holding \"here\"", || {
        std::fs::read_to_string(&seen).is_ok_and(|text| text == "here\n")
    });
}

/// A probe command that plays `script` (`+` pass, `-` fail), one character per check, and
/// then repeats its last character; `checks` counts the checks so far (replaced by a rename,
/// so a service reading it never sees it empty).
fn scripted(script: &str) -> String {
    format!(
        "[sh, -c, \"n=$(cat checks 2>/dev/null || echo 0); n=$((n+1)); echo $n > checks.tmp; mv checks.tmp checks; s={script}; i=$n; [ $i -gt ${{#s}} ] && i=${{#s}}; c=$(printf %s \\\"$s\\\" | cut -c$i); [ \\\"$c\\\" = + ]\"]"
    )
}

#[test]
fn success_threshold_counts_consecutive_successes() {
    // Two successes in a row are needed: after -+-+ there were two, but never in a row.
    let drover = Drover::run(&format!(
        "services:
  app:
    command: [sleep, \"1000\"]
    readiness_probe: {{ exec: {{ command: {} }}, period: 100ms, success_threshold: 2 }}
  after:
    command: [sh, -c, \"cat checks > seen.txt; exec sleep 1000\"]
    depends_on: {{ app: {{ condition: ready }} }}
",
        scripted("-+-++")
    ));
    let seen: u32 = drover
        .wait_file("seen.txt", SECS(15))
        .trim()
        .parse()
        .expect("count");
    assert!(
        seen >= 5,
        "ready after check {seen}, before two successes in a row"
    );
}

#[test]
fn failure_threshold_counts_consecutive_failures_and_liveness_restarts() {
    // Three failures in a row restart it: --+--+ never has them; the 9th check completes ---.
    let drover = Drover::run(&format!(
        "services:
  app:
    command: [sh, -c, \"cat checks 2>/dev/null >> starts.txt || echo 0 >> starts.txt; exec sleep 1000\"]
    restart: {{ policy: always, backoff: {{ initial: 0s }} }}
    liveness_probe: {{ exec: {{ command: {} }}, period: 50ms, failure_threshold: 3 }}
",
        scripted("--+--+---+")
    ));
    drover.wait_log("liveness probe failed (exit code 1); stopping with SIGTERM");
    drover.wait_log("liveness probe failed; exited with signal SIGTERM; restarting");
    let starts = drover.wait_file("starts.txt", SECS(5));
    wait_until(SECS(10), "the second start", || {
        std::fs::read_to_string(drover.path("starts.txt")).is_ok_and(|s| s.lines().count() >= 2)
    });
    let restarted_after: u32 = std::fs::read_to_string(drover.path("starts.txt"))
        .expect("starts")
        .lines()
        .nth(1)
        .expect("second line")
        .trim()
        .parse()
        .expect("count");
    assert!(
        restarted_after >= 9,
        "restarted after check {restarted_after}: {starts}"
    );
}

#[test]
fn readiness_failure_never_kills() {
    let drover = Drover::run(
        "services:
  app:
    command: [sh, -c, \"echo $$ > app.pid; exec sleep 1000\"]
    readiness_probe: { exec: { command: [sh, -c, \"echo x >> checks.log; exit 1\"] }, period: 50ms, failure_threshold: 1 }
",
    );
    let pid = drover.pid_file("app.pid");
    drover.wait_log("readiness probe failing (exit code 1)");
    // Ten failing checks later, it is the same process, never stopped.
    wait_until(SECS(10), "ten failing checks", || {
        std::fs::read_to_string(drover.path("checks.log")).is_ok_and(|s| s.lines().count() >= 10)
    });
    assert!(alive(pid), "the service was killed");
    assert!(!drover.logged("to=stopping"), "{}", drover.stderr());
}

#[test]
fn a_startup_probe_holds_the_others_back_then_lets_them_run() {
    let drover = Drover::run(
        "services:
  app:
    command: [sleep, \"1000\"]
    startup_probe: { exec: { command: [sh, -c, \"echo s >> startup.log; test -f started\"] }, period: 50ms, failure_threshold: 1000 }
    readiness_probe: { exec: { command: [sh, -c, \"echo r >> readiness.log\"] }, period: 50ms }
",
    );
    drover.wait_log("waiting for the startup probe");
    // Five startup checks fail; the readiness probe has not run once.
    wait_until(SECS(10), "five startup checks", || {
        std::fs::read_to_string(drover.path("startup.log")).is_ok_and(|s| s.lines().count() >= 5)
    });
    assert!(
        !drover.path("readiness.log").exists(),
        "readiness ran before startup passed"
    );
    std::fs::write(drover.path("started"), "").expect("write");
    drover.wait_log("startup probe passed");
    drover.wait_log("readiness probe passed");
    assert!(drover.path("readiness.log").exists());
}

#[test]
fn a_failed_startup_probe_kills_and_restarts_the_service() {
    let drover = Drover::run(
        "services:
  app:
    command: [sh, -c, \"echo $$ >> pids.txt; exec sleep 1000\"]
    restart: { policy: on-failure, backoff: { initial: 0s } }
    startup_probe: { exec: { command: [\"false\"] }, period: 50ms, failure_threshold: 2 }
",
    );
    drover.wait_log("startup probe failed (exit code 1); stopping with SIGTERM");
    wait_until(SECS(10), "a second start", || {
        std::fs::read_to_string(drover.path("pids.txt")).is_ok_and(|s| s.lines().count() >= 2)
    });
    let pids = std::fs::read_to_string(drover.path("pids.txt")).expect("pids");
    let first: i32 = pids.lines().next().expect("first").parse().expect("pid");
    wait_until(SECS(5), "the first run to be gone", || !alive(first));
}

/// A service that names its socket, waits for `go`, then says READY=1 and STATUS=warm.
const NOTIFY_SERVICE: &str = "import os, socket, time
path = os.environ['NOTIFY_SOCKET']
open('socket.txt.tmp', 'w').write(path + '\\n')
os.rename('socket.txt.tmp', 'socket.txt')
while not os.path.exists('go'):
    time.sleep(0.02)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'STATUS=warm\\nREADY=1', path)
while not os.path.exists('bye'):
    time.sleep(0.02)
s.sendto(b'STOPPING=1', path)
time.sleep(1000)
";

#[test]
fn notify_ready_counts_only_from_the_service_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("service.py"), NOTIFY_SERVICE).expect("write");
    let drover = Drover::run_in(
        dir,
        "services:
  app:
    command: [python3, service.py]
    readiness_probe: { notify: {} }
",
    );
    let socket = drover.wait_file("socket.txt", SECS(10));
    // This test process is not in the service's process group: ignored.
    let stranger = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    stranger.send_to(b"READY=1", socket.trim()).expect("send");
    drover.wait_log("sd_notify message from outside the service's process group; ignored");
    assert!(!drover.logged("to=ready"), "{}", drover.stderr());
    std::fs::write(drover.path("go"), "").expect("write");
    drover.wait_log("readiness probe passed (READY=1)");
    drover.wait_log("sd_notify status service=app status=\"warm\"");
    // STOPPING=1: not ready any more, and not killed for it.
    std::fs::write(drover.path("bye"), "").expect("write");
    drover.wait_log("not ready: readiness probe failed (STOPPING=1)");
    assert!(!drover.logged("to=stopping"), "{}", drover.stderr());
}

#[test]
fn a_missed_watchdog_restarts_the_service() {
    let drover = Drover::run(
        "services:
  app:
    command: [sh, -c, \"echo $$ >> pids.txt; echo $WATCHDOG_USEC > usec.txt; exec sleep 1000\"]
    restart: { policy: always, backoff: { initial: 0s } }
    readiness_probe: { notify: { watchdog: 300ms } }
",
    );
    assert_eq!(drover.wait_file("usec.txt", SECS(10)).trim(), "300000");
    drover.wait_log("watchdog expired (no WATCHDOG=1 within 300ms)");
    wait_until(SECS(10), "a second start", || {
        std::fs::read_to_string(drover.path("pids.txt")).is_ok_and(|s| s.lines().count() >= 2)
    });
}
