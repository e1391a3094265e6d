//! The control socket and its commands, end to end: a real `drover run`, the real client
//! commands, raw HTTP over the Unix socket, other users through `setpriv`.

use crate::pid1::{run_as_pid1, unshare_works};
use crate::util::{Drover, alive, children_of, wait_until};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A client command against `socket`, bounded by `timeout(1)`: (exit code, stdout, stderr).
pub(crate) fn cli(socket: &Path, args: &[&str]) -> (i32, String, String) {
    cli_as(None, socket, args)
}

/// As [`drover`], as `uid:gid` (through `setpriv`, no supplementary groups) when given.
fn cli_as(user: Option<(u32, u32)>, socket: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new("timeout");
    command.arg("30");
    if let Some((uid, gid)) = user {
        command.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ]);
    }
    let output = command
        .arg(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("DROVER_SOCKET")
        .output()
        .expect("run the client");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The status of every service as JSON.
fn status(socket: &Path) -> serde_json::Value {
    let (code, out, err) = cli(socket, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("JSON status")
}

/// Service `name` in a status.
fn service<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn pid_of(socket: &Path, name: &str) -> Option<i32> {
    service(&status(socket), name)["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
}

/// Waits until service `name` is `state`.
fn wait_state(socket: &Path, name: &str, state: &str) {
    wait_until(SECS(20), &format!("{name} {state}"), || {
        service(&status(socket), name)["state"] == state
    });
}

/// `drover run` of `manifest`, its control socket where the tests' harness puts it
/// (`$RUNTIME_DIRECTORY/drover.sock`); waits until it answers.
fn start(manifest: &str) -> (Drover, PathBuf) {
    let drover = Drover::run(manifest);
    let socket = drover.path("drover.sock");
    wait_until(SECS(20), "the control socket", || {
        UnixStream::connect(&socket).is_ok()
    });
    (drover, socket)
}

/// One raw HTTP/1.1 request; the whole answer (the server closes after it).
fn raw(socket: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(SECS(30))).expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

const TWO: &str = "settings: { log: { service_output: discard } }
services:
  web: { command: [sleep, \"600\"], restart: { policy: always } }
  worker: { command: [sleep, \"601\"], depends_on: [web] }
";

#[test]
fn status_stop_start_restart_signal_and_reload_from_the_command_line() {
    let (drover, socket) = start(TWO);
    wait_state(&socket, "worker", "ready");
    let (code, table, _) = cli(&socket, &["status"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("NAME") && table.contains("web ") && table.contains("ready"),
        "{table}"
    );

    // Stopped by hand: its process ends, no policy brings it back, its dependent runs on.
    let web = pid_of(&socket, "web").expect("web runs");
    let worker = pid_of(&socket, "worker").expect("worker runs");
    let (code, out, err) = cli(&socket, &["stop", "web"]);
    assert_eq!((code, out.trim()), (0, "web: stopped"), "{err}");
    assert!(!alive(web), "web's process has ended");
    assert_eq!(service(&status(&socket), "web")["state"], "stopped");
    assert_eq!(pid_of(&socket, "worker"), Some(worker));

    let (code, out, _) = cli(&socket, &["start", "web"]);
    assert_eq!(code, 0);
    let new_web = pid_of(&socket, "web").expect("web runs again");
    assert_eq!(out.trim(), format!("web: running as pid {new_web}"));
    assert_ne!(new_web, web);

    let (code, _, _) = cli(&socket, &["restart", "worker"]);
    assert_eq!(code, 0);
    let restarted = pid_of(&socket, "worker").expect("worker runs");
    assert!(restarted != worker && !alive(worker));
    assert_eq!(service(&status(&socket), "worker")["restarts"], 1);

    // A signal to the main process; a TERM-killed `sleep` restarts (policy always).
    let (code, out, _) = cli(&socket, &["signal", "web", "TERM"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("web: sent SIGTERM to pid {new_web}").as_str())
    );
    wait_until(SECS(10), "web restarted by its policy", || {
        pid_of(&socket, "web").is_some_and(|p| p != new_web)
    });

    // Unknown names: a "did you mean", nothing changes; bad usage is 2.
    let (code, _, err) = cli(&socket, &["stop", "wbe"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no service `wbe`; did you mean `web`?"),
        "{err}"
    );
    let (code, _, err) = cli(&socket, &["signal", "web", "NOPE"]);
    assert_eq!(code, 2, "{err}");

    // Reload: what was applied, or the errors with file:line:col.
    let manifest = drover.path("drover.yaml");
    std::fs::write(&manifest, TWO.replace("601", "602")).expect("write");
    let (code, out, err) = cli(&socket, &["reload"]);
    assert_eq!((code, out.trim()), (0, "reload: ~worker =web"), "{err}");
    std::fs::write(
        &manifest,
        format!("{TWO}  bad: {{ command: x, restart: {{ policy: sometimes }} }}\n"),
    )
    .expect("write");
    let (code, _, err) = cli(&socket, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("drover.yaml:5:") && err.contains("restart.policy"),
        "{err}"
    );
    assert!(err.contains("the running one is kept"), "{err}");
}

#[test]
fn without_a_drover_the_exit_code_is_3_and_names_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("none.sock");
    let (code, _, err) = cli(&socket, &["status"]);
    assert_eq!(code, 3);
    assert!(err.contains(&socket.display().to_string()), "{err}");
}

/// The live (not zombie) children of `parent` whose command line holds `word`.
fn live_children_running(parent: i32, word: &str) -> usize {
    children_of(parent)
        .into_iter()
        .filter(|&(pid, state)| {
            state != 'Z'
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(word))
        })
        .count()
}

#[test]
fn a_hundred_clients_restarting_one_service_at_once_never_make_two_processes() {
    let (running, socket) = start(TWO);
    wait_state(&socket, "web", "ready");
    let old = pid_of(&socket, "web").expect("web runs");
    // Watches drover's children all along: never two `sleep 600` at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, drover) = (stop.clone(), running.pid());
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(live_children_running(drover, "600"));
            }
            most
        })
    };
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || raw(&socket, &post("/v1/services/web/restart")))
        })
        .collect();
    let answers: Vec<String> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        watcher.join().expect("watcher"),
        1,
        "two web processes at once"
    );
    // Every client is answered, each with the run its restart brought (requests that came
    // during one stop share its new run; later ones restart again).
    for answer in &answers {
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("running as pid"),
            "{answer}"
        );
    }
    let web = service(&status(&socket), "web").clone();
    let starts = web["starts"].as_u64().expect("starts");
    assert!((2..=101).contains(&starts), "{web}");
    assert_eq!(web["restarts"].as_u64(), Some(starts - 1), "{web}");
    assert!(!alive(old));
}

#[test]
fn bad_requests_get_clear_answers_and_a_silent_client_holds_nobody_up() {
    let (_drover, socket) = start(TWO);
    let get = |path: &str| {
        raw(
            &socket,
            format!("GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    assert!(get("/v2/nothing").starts_with("HTTP/1.1 404"));
    assert!(get("/v1/reload").starts_with("HTTP/1.1 405"));
    assert!(raw(&socket, &post("/v1/status")).starts_with("HTTP/1.1 405"));
    assert!(raw(&socket, &post("/v1/services/web/explode")).starts_with("HTTP/1.1 404"));
    let big = format!(
        "POST /v1/reload HTTP/1.1\r\nHost: d\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n{}",
        "x".repeat(100_000)
    );
    assert!(raw(&socket, big.as_bytes()).starts_with("HTTP/1.1 413"));
    let garbage = raw(&socket, b"\x00\x01 not http at all\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );
    // Connected and silent: others are served meanwhile, and it is closed after the header
    // timeout (5 s).
    let mut silent = UnixStream::connect(&socket).expect("connect");
    silent.set_read_timeout(Some(SECS(20))).expect("timeout");
    assert!(get("/v1/status").starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    let started = std::time::Instant::now();
    let _ = silent.read_to_end(&mut rest);
    assert!(
        started.elapsed() < SECS(15),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn only_root_drovers_user_and_the_control_group_get_in() {
    let (_drover, socket) = start(TWO);
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    // Another user: the file's mode turns it away at connect.
    let nobody = Some((65534, 65534));
    let (code, _, err) = cli_as(nobody, &socket, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not allowed to use the control socket"),
        "{err}"
    );
    // Were the modes opened up, the peer check still answers 403.
    let parent = socket.parent().expect("dir");
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, _, err) = cli_as(nobody, &socket, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not allowed"), "{err}");

    // With settings.control.group, its members are let in (the socket is 0660, of that group).
    let (_drover, socket) =
        start(&TWO.replace("settings: {", "settings: { control: { group: \"65534\" },"));
    assert_eq!(mode(&socket), 0o660);
    let parent = socket.parent().expect("dir");
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, out, err) = cli_as(nobody, &socket, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("web"), "{out}");
    let (code, _, err) = cli_as(Some((65533, 65533)), &socket, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not allowed"), "{err}");
}

#[test]
fn a_live_socket_is_never_taken_and_a_stale_one_is_replaced() {
    let (mut first, socket) = start(TWO);
    let manifest = format!(
        "settings: {{ log: {{ service_output: discard }}, control: {{ socket: {} }} }}\nservices:\n  x: {{ command: [sleep, \"600\"] }}\n",
        socket.display()
    );
    let mut second = Drover::run(&manifest);
    assert_eq!(second.wait(SECS(20)), 1);
    assert!(
        second.stderr().contains(&format!(
            "another drover is running with its control socket at {}",
            socket.display()
        )),
        "{}",
        second.stderr()
    );
    assert_eq!(
        status(&socket)["services"].as_array().map(Vec::len),
        Some(2)
    );
    // The first dies without cleaning up: its socket file stays, and the next drover takes it.
    first.signal(9);
    first.wait(SECS(20));
    assert!(socket.exists());
    let third = Drover::run(&manifest);
    wait_until(SECS(20), "the third drover's socket", || {
        cli(&socket, &["status"]).0 == 0
    });
    assert!(
        third.stderr().contains("replacing a stale control socket"),
        "{}",
        third.stderr()
    );
}

#[test]
fn events_stream_state_changes_as_they_happen() {
    let (_drover, socket) = start(TWO);
    wait_state(&socket, "worker", "ready");
    let mut events = Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_drover"), "events", "--socket"])
        .arg(&socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("drover events");
    let mut lines = std::io::BufReader::new(events.stdout.take().expect("stdout"));
    // The stream is subscribed once the response has begun: a stop after a first status is
    // seen.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cli(&socket, &["stop", "worker"]).0, 0);
    let mut seen = Vec::new();
    let found = loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut lines, &mut line).unwrap_or(0) == 0 {
            break false;
        }
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        seen.push(event.clone());
        if event["type"] == "state" && event["service"] == "worker" && event["to"] == "stopped" {
            break true;
        }
    };
    let _ = events.kill();
    let _ = events.wait();
    assert!(found, "{seen:?}");
}

#[test]
fn status_works_against_drover_as_pid_1() {
    if !unshare_works("status_works_against_drover_as_pid_1") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("drover.sock");
    let (_unshare, _drover) = run_as_pid1(dir, TWO);
    wait_until(SECS(20), "drover's socket", || {
        cli(&socket, &["status"]).0 == 0
    });
    wait_state(&socket, "worker", "ready");
    let (code, out, _) = cli(&socket, &["restart", "web"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("web: running as pid "), "{out}");
}

#[test]
fn requests_are_counted_in_the_metrics() {
    let port = crate::metrics::free_port();
    let running = crate::metrics::with_metrics_in(tempfile::tempdir().expect("tempdir"), TWO, port);
    let socket = running.path("drover.sock");
    wait_until(SECS(20), "the control socket", || {
        cli(&socket, &["status"]).0 == 0
    });
    wait_state(&socket, "web", "ready");
    assert_eq!(cli(&socket, &["restart", "web"]).0, 0);
    assert_eq!(cli(&socket, &["stop", "nope"]).0, 1);
    let (_, metrics) = crate::metrics::get(port, "/metrics").expect("metrics");
    for line in [
        "drover_control_requests_total{operation=\"restart\",result=\"done\"} 1",
        "drover_control_requests_total{operation=\"stop\",result=\"unknown\"} 1",
        "drover_service_restarts_total{reason=\"manual\",service=\"web\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

/// A child killed (by its pid) and reaped when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn logs_show_recent_lines_and_stay_bounded_after_a_gibibyte() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("drover.yaml"),
        "settings: { metrics: { listen: null } }
services:
  talker: { command: [sh, -c, \"for i in 1 2 3; do echo out $i; echo err $i >&2; done; exec sleep 600\"] }
  flood: { command: [sh, -c, \"yes $(head -c 1000 /dev/zero | tr '\\\\0' x) | head -c 1073741824; echo; echo done; exec sleep 600\"] }
",
    )
    .expect("write");
    // drover's own output (the gibibyte, prefixed) goes to /dev/null, not into this test.
    let running = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "drover.yaml"])
            .current_dir(dir.path())
            .env("RUNTIME_DIRECTORY", dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("drover run"),
    );
    let socket = dir.path().join("drover.sock");
    // The flood's gibibyte has gone through drover's reader.
    wait_until(SECS(120), "the flood's last line", || {
        cli(&socket, &["logs", "flood", "-n", "1"]).1 == "flood stdout | done\n"
    });
    // Each line with its service and stream; a stream's lines in their order (the two
    // streams are two pipes: how they interleave is up to the reads).
    let (code, out, err) = cli(&socket, &["logs", "talker", "-n", "10"]);
    assert_eq!(code, 0, "{err}");
    let of = |stream: &str| -> Vec<&str> {
        out.lines()
            .filter(|l| l.starts_with(&format!("talker {stream} | ")))
            .collect()
    };
    assert_eq!(
        of("stdout"),
        [
            "talker stdout | out 1",
            "talker stdout | out 2",
            "talker stdout | out 3"
        ]
    );
    assert_eq!(
        of("stderr"),
        [
            "talker stderr | err 1",
            "talker stderr | err 2",
            "talker stderr | err 3"
        ]
    );
    assert_eq!(out.lines().count(), 6, "{out}");
    let (_, last, _) = cli(&socket, &["logs", "talker", "-n", "2"]);
    assert_eq!(last.lines().count(), 2, "{last}");
    // Kept lines are bounded (1000 per service of at most 1 KiB): drover's memory too.
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", running.0.id()))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS");
    println!("drover's RSS after a service printed 1 GiB: {rss_kib} KiB");
    assert!(
        rss_kib < 64 * 1024,
        "drover's RSS is {rss_kib} KiB after 1 GiB of output"
    );
    let (_, out, _) = cli(&socket, &["logs", "flood", "-n", "5000", "--json"]);
    assert!(
        out.lines().count() <= 1000,
        "{} lines kept",
        out.lines().count()
    );
    // Unknown service: a "did you mean".
    let (code, _, err) = cli(&socket, &["logs", "talkr"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `talker`?"), "{err}");
}

#[test]
fn logs_follow_prints_lines_as_they_come() {
    let (running, socket) = start(
        "services:
  ticker: { command: [sh, -c, \"while true; do echo tick; sleep 0.05; done\"] }
",
    );
    let _ = &running;
    let mut follow = Command::new("timeout")
        .args([
            "20",
            env!("CARGO_BIN_EXE_drover"),
            "logs",
            "-f",
            "-n",
            "0",
            "--socket",
        ])
        .arg(&socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("drover logs -f");
    let mut lines = std::io::BufReader::new(follow.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut lines, &mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push(line);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen.iter().all(|l| l == "ticker stdout | tick\n"),
        "{seen:?}"
    );
}

#[test]
fn a_stopped_service_stays_stopped_across_a_reload_and_starts_with_the_new_spec() {
    let (running, socket) = start(TWO);
    wait_state(&socket, "worker", "ready");
    assert_eq!(cli(&socket, &["stop", "worker"]).0, 0);
    std::fs::write(running.path("drover.yaml"), TWO.replace("601", "603")).expect("write");
    let (code, out, err) = cli(&socket, &["reload"]);
    assert_eq!((code, out.trim()), (0, "reload: ~worker =web"), "{err}");
    assert_eq!(service(&status(&socket), "worker")["state"], "stopped");
    assert_eq!(cli(&socket, &["start", "worker"]).0, 0);
    let pid = pid_of(&socket, "worker").expect("worker runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("603"),
        "the new spec runs"
    );
}

#[test]
fn a_hand_restart_of_a_crash_looping_service_starts_it_at_once() {
    let (_running, socket) = start(
        "settings: { log: { service_output: discard } }
services:
  crashy:
    command: [sh, -c, \"sleep 0.2; exit 1\"]
    restart: { backoff: { initial: 10s, jitter: 0 } }
",
    );
    wait_state(&socket, "crashy", "backoff");
    let started = std::time::Instant::now();
    let (code, out, err) = cli(&socket, &["restart", "crashy"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("crashy: running as pid "), "{out}");
    assert!(
        started.elapsed() < SECS(5),
        "it did not wait out the 10 s backoff"
    );
}

#[test]
fn a_real_time_signal_that_kills_a_service_is_seen_and_it_restarts() {
    let (_running, socket) = start(TWO);
    wait_state(&socket, "web", "ready");
    let old = pid_of(&socket, "web").expect("web runs");
    // Signal 40 has no name in nix's table: its exit status must not be lost in the reaper.
    let (code, out, err) = cli(&socket, &["signal", "web", "40"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("sent signal 40 to pid {old}")),
        "{out}"
    );
    wait_until(SECS(10), "web restarted", || {
        pid_of(&socket, "web").is_some_and(|p| p != old)
    });
    assert_eq!(service(&status(&socket), "web")["last_exit"], "signal 40");
}

#[test]
fn a_client_that_holds_back_its_body_or_leaves_a_stream_holds_nothing() {
    let (running, socket) = start(TWO);
    // A body announced and never sent: 408 after the body timeout (5 s).
    let started = std::time::Instant::now();
    let answer = raw(
        &socket,
        b"POST /v1/reload HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < SECS(15));
    // 70 event streams opened and dropped at once: their slots come back without any event.
    for _ in 0..70 {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream
            .write_all(b"GET /v1/events HTTP/1.1\r\nHost: d\r\n\r\n")
            .expect("write");
        let mut head = [0u8; 12];
        let _ = stream.read(&mut head);
    }
    wait_until(SECS(10), "an event stream slot", || {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream.set_read_timeout(Some(SECS(5))).expect("timeout");
        stream
            .write_all(b"GET /v1/events HTTP/1.1\r\nHost: d\r\n\r\n")
            .expect("write");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    });
    // Its socket deleted under it, a running drover still holds the path: a second one
    // refuses instead of binding beside it.
    std::fs::remove_file(&socket).expect("rm");
    let manifest = format!(
        "settings: {{ log: {{ service_output: discard }}, control: {{ socket: {} }} }}\nservices:\n  x: {{ command: [sleep, \"600\"] }}\n",
        socket.display()
    );
    let mut second = Drover::run(&manifest);
    assert_eq!(second.wait(SECS(20)), 1, "{}", second.stderr());
    assert!(
        second.stderr().contains("another drover is running"),
        "{}",
        second.stderr()
    );
    let _ = &running;
}

#[test]
fn restart_true_restarts_the_dependent_after_its_dependency_is_ready_again() {
    let (_running, socket) = start(
        "settings: { log: { service_output: discard } }
services:
  db:
    command: [sleep, \"600\"]
    readiness_probe: { exec: { command: [\"true\"] }, period: 100ms }
    restart: { backoff: { initial: 0s } }
  web: { command: [sleep, \"601\"], depends_on: { db: { condition: ready, restart: true } } }
  other: { command: [sleep, \"602\"], depends_on: { db: { condition: ready } } }
",
    );
    wait_state(&socket, "web", "ready");
    wait_state(&socket, "other", "ready");
    let (db, web, other) = (
        pid_of(&socket, "db").expect("db"),
        pid_of(&socket, "web").expect("web"),
        pid_of(&socket, "other").expect("other"),
    );
    crate::util::send(db, 9);
    wait_until(SECS(20), "web restarted", || {
        pid_of(&socket, "web").is_some_and(|p| p != web)
    });
    wait_state(&socket, "web", "ready");
    assert!(pid_of(&socket, "db").is_some_and(|p| p != db));
    assert_eq!(
        pid_of(&socket, "other"),
        Some(other),
        "without restart: true it keeps its pid"
    );
    assert!(!alive(web));
}

/// `drover restart db` with a `restart: true` dependent: web gets its stop signal first, db
/// only once web is gone (each records when its TERM came), and web starts again after db.
#[test]
fn a_restart_by_hand_stops_the_restart_true_dependent_first() {
    let (running, socket) = start(
        "settings: { log: { service_output: discard } }
services:
  db: { command: \"trap 'date +%s%N >> db.term; exit 0' TERM; echo $$ >> db.pids; while :; do sleep 0.05; done\" }
  web:
    command: \"trap 'sleep 0.3; date +%s%N >> web.term; exit 0' TERM; while :; do sleep 0.05; done\"
    depends_on: { db: { condition: ready, restart: true } }
",
    );
    wait_state(&socket, "web", "ready");
    let web = pid_of(&socket, "web").expect("web");
    let (code, out, err) = cli(&socket, &["restart", "db"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_until(SECS(20), "web restarted", || {
        pid_of(&socket, "web").is_some_and(|p| p != web)
    });
    let stamp = |name: &str| -> u128 {
        let text = running.wait_file(name, SECS(10));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {text:?}"))
    };
    // web took 0.3 s to exit after its TERM; db's came after that.
    assert!(
        stamp("db.term") > stamp("web.term"),
        "db was signalled before web had stopped"
    );
    let runs = std::fs::read_to_string(running.path("db.pids")).expect("pids");
    assert_eq!(runs.lines().count(), 2, "db ran twice: {runs}");
}
