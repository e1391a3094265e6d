//! `drover run`, by manifest section: restart, dependencies, stop, exit codes, and what must
//! never happen (survivors, leaked descriptors). Workloads are small shell scripts that leave
//! timestamps and pids in files.

use crate::util::*;
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A shell command that appends a nanosecond timestamp to `file`.
fn stamp(file: &str) -> String {
    format!("date +%s%N >> {file}")
}

#[test]
fn restart_on_crash_backs_off_within_bounds_then_gives_up() {
    let mut drover = Drover::run(&format!(
        "services:
  crash:
    command: \"{}; exit 3\"
    restart: {{ backoff: {{ initial: 200ms, factor: 2, jitter: 0 }}, max_retries: 3 }}
",
        stamp("starts")
    ));
    assert_eq!(
        drover.wait(SECS(20)),
        1,
        "a failed service makes the exit code 1"
    );
    let starts = stamps(&drover.path("starts"));
    assert_eq!(starts.len(), 4, "max_retries: 3 means 4 starts");
    for (i, expected_ms) in [200u128, 400, 800].into_iter().enumerate() {
        let gap_ms = (starts[i + 1] - starts[i]) / 1_000_000;
        // The gap also holds two spawns and a reap; a loaded machine may stall for a while.
        assert!(
            gap_ms >= expected_ms && gap_ms < expected_ms + 1000,
            "restart {i}: {gap_ms} ms after the previous start, backoff {expected_ms} ms"
        );
    }
    assert!(
        drover.stderr().contains("gave up after 3 restarts"),
        "{}",
        drover.stderr()
    );
}

#[test]
fn policy_never_does_not_restart() {
    let mut drover = Drover::run(&format!(
        "services:\n  once:\n    command: \"{}; exit 1\"\n    restart: {{ policy: never }}\n",
        stamp("starts")
    ));
    assert_eq!(drover.wait(SECS(10)), 1);
    assert_eq!(stamps(&drover.path("starts")).len(), 1);
}

#[test]
fn on_failure_does_not_restart_after_exit_zero_and_drover_exits_zero() {
    let mut drover = Drover::run(&format!(
        "services:\n  job:\n    command: \"{}; exit 0\"\n    restart: {{ policy: on-failure, backoff: {{ initial: 10ms }} }}\n",
        stamp("starts")
    ));
    assert_eq!(drover.wait(SECS(10)), 0, "every service exited 0");
    assert_eq!(stamps(&drover.path("starts")).len(), 1);
}

#[test]
fn policy_always_restarts_after_exit_zero() {
    let mut drover = Drover::run(&format!(
        "services:\n  job:\n    command: \"{}; exit 0\"\n    restart: {{ policy: always, backoff: {{ initial: 10ms }}, max_retries: 2 }}\n",
        stamp("starts")
    ));
    assert_eq!(
        drover.wait(SECS(10)),
        1,
        "it ends `failed` after max_retries, even on exit 0"
    );
    assert_eq!(stamps(&drover.path("starts")).len(), 3);
}

#[test]
fn dependencies_start_in_order() {
    // Timestamps written by the services can only prove order across edges that wait for an
    // end (`completed_successfully`): `started` promises the spawn, not that the dependency's
    // first command ran first. Spawn order for `started` is unit-tested in the core.
    let mut drover = Drover::run(&format!(
        "services:
  web:
    command: \"{}; exec sleep 30\"
    depends_on: {{ migrate: {{ condition: completed_successfully }} }}
  migrate:
    command: \"{}; sleep 0.3; {}\"
    depends_on: {{ prepare: {{ condition: completed_successfully }} }}
  prepare:
    command: \"{}\"
",
        stamp("web"),
        stamp("migrate"),
        stamp("migrate.end"),
        stamp("prepare")
    ));
    drover.wait_file("web", SECS(10));
    let first = |name: &str| stamps(&drover.path(name))[0];
    assert!(
        first("prepare") < first("migrate"),
        "migrate waits for prepare"
    );
    assert!(
        first("migrate.end") < first("web"),
        "web waits for migrate to complete"
    );
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0, "a clean drain exits 0");
}

#[test]
fn a_dependency_that_fails_blocks_its_dependents() {
    let mut drover = Drover::run(
        "services:
  job: { command: \"exit 3\", restart: { policy: never } }
  app:
    command: \"touch app-started\"
    depends_on: { job: { condition: completed_successfully } }
",
    );
    assert_eq!(drover.wait(SECS(10)), 1);
    assert!(!drover.path("app-started").exists());
    assert!(
        drover
            .stderr()
            .contains("blocked: dependency `job` ended with exit code 3"),
        "{}",
        drover.stderr()
    );
}

#[test]
fn drain_stops_in_reverse_dependency_order() {
    let service = |name: &str| {
        format!(
            // The marker comes after the fork: a sleep forked after the drain's SIGTERM would
            // outlive its shell, and the stop would wait out stop.timeout.
            "\"trap '{}; exit 0' TERM; sleep 30 & touch {name}.up; wait\"",
            stamp(&format!("{name}.stop"))
        )
    };
    let mut drover = Drover::run(&format!(
        "services:
  a: {{ command: {} }}
  b: {{ command: {}, depends_on: [a] }}
  c: {{ command: {}, depends_on: [b] }}
",
        service("a"),
        service("b"),
        service("c")
    ));
    wait_until(SECS(10), "c to start", || drover.path("c.up").exists());
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
    let stop = |name: &str| stamps(&drover.path(&format!("{name}.stop")))[0];
    assert!(
        stop("c") < stop("b") && stop("b") < stop("a"),
        "stops c, b, a"
    );
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_after_stop_timeout() {
    let mut drover = Drover::run(
        "services:
  stubborn:
    command: \"trap '' TERM; echo $$ > pid; sleep 30 & wait\"
    stop: { timeout: 500ms }
",
    );
    let pid = drover.pid_file("pid");
    let asked = Instant::now();
    drover.signal(SIGTERM);
    assert_eq!(
        drover.wait(SECS(10)),
        1,
        "a drain that needed SIGKILL exits 1"
    );
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "waited the stop.timeout: {took:?}"
    );
    assert!(!alive(pid));
    assert!(
        drover.stderr().contains("sending SIGKILL"),
        "{}",
        drover.stderr()
    );
}

#[test]
fn grandchildren_are_stopped_with_their_service() {
    let mut drover = Drover::run(
        "services:
  parent:
    command: \"sleep 300 & echo $! > grandchild; exec sleep 300\"
  leaves-one-behind:
    command: \"sleep 300 & echo $! > orphan; exit 0\"
",
    );
    // A main process that exits has the rest of its process group stopped at once.
    let orphan = drover.pid_file("orphan");
    wait_until(SECS(10), "the orphan to be stopped", || !alive(orphan));
    // A drain stops the whole group of each service.
    let grandchild = drover.pid_file("grandchild");
    assert!(alive(grandchild));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
    assert!(!alive(grandchild));
}

#[test]
fn on_exit_shutdown_passes_the_exit_code() {
    let mut drover = Drover::run(
        "services:
  main: { command: \"touch main.up; sleep 0.2; exit 42\", on_exit: shutdown, restart: { policy: never } }
  side: { command: \"exec sleep 300\" }
",
    );
    assert_eq!(drover.wait(SECS(10)), 42);
}

#[test]
fn on_exit_shutdown_of_a_killed_service_exits_128_plus_signal() {
    let mut drover = Drover::run(
        "services:
  main: { command: \"kill -9 $$\", on_exit: shutdown, restart: { policy: never } }
  side: { command: \"exec sleep 300\" }
",
    );
    assert_eq!(drover.wait(SECS(10)), 137);
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let mut drover = Drover::run(
        "services:
  stubborn:
    command: \"trap '' TERM; echo $$ > pid; sleep 30 & wait\"
    stop: { timeout: 60s }
",
    );
    let pid = drover.pid_file("pid");
    drover.signal(SIGTERM);
    wait_until(SECS(10), "the drain to start", || {
        drover.stderr().contains("stopping with SIGTERM")
    });
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 1);
    assert!(!alive(pid));
}

#[test]
fn sigkill_to_drover_leaves_no_service_alive() {
    // As root, one service also switches user: a credentials change clears the parent-death
    // signal, so drover must arm it after the switch.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let mut manifest = String::from(
        "services:
  a: { command: \"echo $$ > a; exec sleep 300\" }
  b: { command: [sh, -c, \"echo $$ > b; exec sleep 300\"] }
  c: { command: \"echo $$ > c; exec sleep 300\", restart: { policy: always } }
",
    );
    let mut names = vec!["a", "b", "c"];
    if nix_is_root() {
        manifest.push_str("  d: { command: \"echo $$ > d; exec sleep 300\", user: nobody }\n");
        names.push("d");
    }
    let mut drover = Drover::run_in(dir, &manifest);
    let pids: Vec<i32> = names.iter().map(|f| drover.pid_file(f)).collect();
    assert!(pids.iter().all(|&p| alive(p)));
    drover.signal(SIGKILL);
    assert_eq!(drover.wait(SECS(10)), 137);
    wait_until(SECS(5), "every service to die with drover", || {
        pids.iter().all(|&p| !alive(p))
    });
}

#[test]
fn signals_usr1_usr2_winch_reach_every_service() {
    let script = "trap 'echo USR1 >> got' USR1; trap 'echo USR2 >> got' USR2; \
                  trap 'echo WINCH >> got' WINCH; touch up; while :; do sleep 0.05; done";
    let mut drover = Drover::run(&format!("services:\n  s: {{ command: \"{script}\" }}\n"));
    wait_until(SECS(10), "the service", || drover.path("up").exists());
    for (signal, name) in [(10, "USR1"), (12, "USR2"), (28, "WINCH")] {
        drover.signal(signal);
        wait_until(SECS(5), name, || {
            std::fs::read_to_string(drover.path("got"))
                .unwrap_or_default()
                .contains(name)
        });
    }
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn service_output_is_prefixed_per_stream() {
    let mut drover = Drover::run(
        "services:
  web: { command: \"echo to-out; echo to-err >&2; printf 'no newline'\", restart: { policy: never } }
  database: { command: \"echo db\", restart: { policy: never } }
",
    );
    assert_eq!(drover.wait(SECS(10)), 0);
    let out = drover.stdout();
    assert!(out.contains("web      | to-out\n"), "{out}");
    assert!(out.contains("web      | no newline\n"), "{out}");
    assert!(out.contains("database | db\n"), "{out}");
    assert!(drover.stderr().contains("web      | to-err\n"));
}

#[test]
fn no_descriptor_leaks_over_500_restarts() {
    let mut drover = Drover::run(
        "services:
  crash:
    command: \"if [ -e first ]; then echo x >> runs; exit 1; fi; touch first; sleep 1; exit 1\"
    restart: { backoff: { initial: 0s }, max_retries: 500 }
  keep-alive: { command: \"exec sleep 300\" }
",
    );
    wait_until(SECS(10), "the first run", || drover.path("first").exists());
    let before = fd_count(drover.pid());
    wait_until(SECS(60), "500 restarts", || {
        drover.stderr().contains("gave up after 500 restarts")
    });
    let runs = std::fs::read_to_string(drover.path("runs")).unwrap_or_default();
    assert_eq!(runs.lines().count(), 500);
    // The services write into the manifest's directory, so drover's watcher reads the manifest
    // now and then: its descriptors come and go. A leak would be 500 that never go.
    wait_until(SECS(10), "no more descriptors than before", || {
        fd_count(drover.pid()) <= before
    });
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn a_missing_command_is_a_failed_start_with_a_clear_reason() {
    let mut drover = Drover::run(
        "services:\n  ghost: { command: [/nonexistent/ghost], restart: { policy: never }, on_exit: shutdown }\n",
    );
    assert_eq!(drover.wait(SECS(10)), 127);
    assert!(
        drover
            .stderr()
            .contains("cannot start: /nonexistent/ghost: not found"),
        "{}",
        drover.stderr()
    );
}

#[test]
fn a_program_found_on_path_keeps_its_name_as_argv0() {
    // drover looks the program up on PATH itself; the process must still see the name it was
    // given, as execvp would pass it (`sh -c` reports its argv[0] as $0).
    let mut drover = Drover::run(
        "services:\n  name: { command: [sh, -c, 'echo \"$0\" > argv0.txt'], restart: { policy: never } }\n",
    );
    assert_eq!(drover.wait(SECS(10)), 0, "{}", drover.stderr());
    assert_eq!(
        std::fs::read_to_string(drover.path("argv0.txt")).expect("argv0.txt"),
        "sh\n"
    );
}

#[test]
fn user_switches_uid_gid_and_groups() {
    if nix_is_root() {
        // The services write their ids into the temp dir as `nobody` and as uid 4321.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let mut drover = Drover::run_in(
            dir,
            "services:
  as-nobody:
    command: \"echo $(id -u):$(id -g):$(id -G) > id\"
    user: nobody
    restart: { policy: never }
  as-numbers:
    command: \"echo $(id -u):$(id -g) > id2\"
    user: \"4321:4322\"
    restart: { policy: never }
",
        );
        assert_eq!(drover.wait(SECS(10)), 0, "{}", drover.stderr());
        let id = std::fs::read_to_string(drover.path("id")).expect("id");
        assert!(id.starts_with("65534:65534:"), "{id}");
        assert!(
            !id.contains(":0 ") && !id.trim_end().ends_with(" 0"),
            "root's groups dropped: {id}"
        );
        assert_eq!(
            std::fs::read_to_string(drover.path("id2")).expect("id2"),
            "4321:4322\n"
        );
    } else {
        let mut drover = Drover::run(
            "services:\n  s: { command: \"true\", user: nobody, restart: { policy: never } }\n",
        );
        assert_eq!(drover.wait(SECS(10)), 1);
        assert!(
            drover.stderr().contains("needs drover to run as root"),
            "{}",
            drover.stderr()
        );
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// `2026-12-03T15:58:14.611601Z`: RFC 3339 in UTC with microseconds, drover's own precision.
fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 27
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'.',
            26 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

#[test]
fn json_log_format_writes_service_lines_as_objects() {
    let mut drover = Drover::run(
        "settings: { log: { format: json } }\nservices:\n  web: { command: \"echo hello; echo oops >&2\", restart: { policy: never } }\n",
    );
    assert_eq!(drover.wait(SECS(10)), 0);
    let object = |line: &str| -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("not a JSON object: {line}: {other:?}"),
        }
    };
    let text = |map: &serde_json::Map<String, serde_json::Value>, key: &str| {
        map.get(key).and_then(|v| v.as_str()).map(str::to_string)
    };
    let out = drover.stdout();
    let service_line = object(
        out.lines()
            .find(|l| l.contains("hello"))
            .expect("the service line"),
    );
    let err = drover.stderr();
    let service_err = object(
        err.lines()
            .find(|l| l.contains("oops"))
            .expect("its stderr line"),
    );
    let own = object(
        err.lines()
            .find(|l| l.contains(r#""to":"ready""#))
            .expect("drover's own line about web"),
    );
    // The same names, level and timestamp precision in both kinds of line.
    for (map, message) in [
        (&service_line, "hello"),
        (&service_err, "oops"),
        (&own, "ready after"),
    ] {
        let stamp = text(map, "timestamp").expect("timestamp");
        assert!(is_timestamp(&stamp), "{stamp}");
        assert_eq!(text(map, "level").as_deref(), Some("INFO"), "{map:?}");
        assert_eq!(text(map, "service").as_deref(), Some("web"), "{map:?}");
        assert!(
            text(map, "message").expect("message").starts_with(message),
            "{map:?}"
        );
    }
    assert_eq!(text(&service_line, "stream").as_deref(), Some("stdout"));
    assert_eq!(text(&service_err, "stream").as_deref(), Some("stderr"));
    // The message is as logged: the `service` field names the service.
    assert!(
        !text(&own, "message").expect("message").starts_with("web:"),
        "{own:?}"
    );
}

/// A text line about a service starts with its name; a ready one says how long it took.
#[test]
fn text_lines_about_a_service_read_at_a_glance() {
    let mut drover = Drover::run(
        "services:\n  web: { command: \"sleep 0.3; touch up; exec sleep 100\", readiness_probe: { exec: { command: [test, -e, up] }, period: 50ms } }\n",
    );
    wait_until(SECS(10), "web ready", || {
        drover.stderr().contains("to=ready")
    });
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
    let log = drover.stderr();
    let ready = log
        .lines()
        .find(|l| l.contains("to=ready"))
        .expect("the ready line");
    let (_, message) = ready.split_once(" INFO ").expect("an INFO line");
    let after = message
        .strip_prefix("web: ready after ")
        .unwrap_or_else(|| panic!("{ready}"));
    // At least the 0.3 s the service slept: `3xxms` or `1.2s`, never `0ms`.
    let took = after.split_once(':').expect("the reason follows").0;
    let seconds = match took.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().expect("ms") / 1000.0,
        None => took.trim_end_matches('s').parse::<f64>().expect("s"),
    };
    assert!(seconds >= 0.3, "{ready}");
    assert!(
        after.contains(": readiness probe passed (exit code 0) service=web"),
        "{ready}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO web: stopping with SIGTERM service=web")),
        "{log}"
    );
}

/// `settings.log.timestamps`: service lines are stamped when asked, and by default when
/// drover's stdout is a file; not by default on a pipe (a container runtime stamps those).
#[test]
fn service_lines_are_stamped_when_asked_and_in_files() {
    let manifest = |settings: &str| {
        format!("{settings}services:\n  job: {{ command: \"echo hello\", restart: never }}\n")
    };
    let line_of = |out: &str| {
        out.lines()
            .find(|l| l.ends_with("job | hello"))
            .unwrap_or_else(|| panic!("no service line in {out:?}"))
            .to_string()
    };
    // A pipe, by default: no stamp.
    let mut drover = Drover::run(&manifest(""));
    assert_eq!(drover.wait(SECS(10)), 0);
    assert_eq!(line_of(&drover.stdout()), "job | hello");
    // A pipe, asked for.
    let mut drover = Drover::run(&manifest("settings: { log: { timestamps: true } }\n"));
    assert_eq!(drover.wait(SECS(10)), 0);
    let line = line_of(&drover.stdout());
    let (stamp, rest) = line.split_once(' ').expect("a stamp");
    assert!(is_timestamp(stamp) && rest == "job | hello", "{line}");
    // A file, by default: stamped; and `false` turns that off.
    for (settings, stamped) in [
        ("", true),
        ("settings: { log: { timestamps: false } }\n", false),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("drover.yaml"), manifest(settings)).expect("write");
        let drover_bin = env!("CARGO_BIN_EXE_drover");
        let script = format!("exec {drover_bin} run --metrics-listen '' drover.yaml > out.log");
        let mut drover = Drover::start(dir, &["/bin/sh", "-c", &script], None);
        assert_eq!(drover.wait(SECS(10)), 0);
        let out = std::fs::read_to_string(drover.path("out.log")).expect("out.log");
        let line = line_of(&out);
        let first = line.split_once(' ').map_or("", |(first, _)| first);
        assert_eq!(is_timestamp(first), stamped, "{settings:?}: {line}");
    }
}

#[test]
fn a_blocked_stdout_never_stalls_supervision() {
    // drover's stdout is a pipe nobody reads: it fills after 64 KiB. A service floods it while
    // another crashes and restarts; the restarts must go on, and the flood must be dropped.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("drover.yaml"),
        "services:
  flood: { command: [yes, a-line-of-output] }
  crash:
    command: \"echo x >> runs; exit 1\"
    restart: { backoff: { initial: 0s }, max_retries: 50 }
",
    )
    .expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "--metrics-listen", "", "drover.yaml"])
        // Its control socket (and notify sockets) in the test's directory.
        .env("RUNTIME_DIRECTORY", dir.path())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let runs = dir.path().join("runs");
    let result = std::panic::catch_unwind(|| {
        wait_until(SECS(30), "51 runs of the crashing service", || {
            std::fs::read_to_string(&runs)
                .unwrap_or_default()
                .lines()
                .count()
                >= 51
        });
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A web server behind a readiness probe, with `stop.drain: 1s`; drover gets SIGTERM. A client
/// that sends requests while `/readyz` answers 200 (as a load balancer would) sees none fail,
/// and `/readyz` turned 503 at least 1 s before the server got its signal.
#[test]
fn a_stop_drain_turns_readyz_503_a_drain_before_the_signal_and_no_request_fails() {
    let web_port = crate::metrics::free_port();
    let metrics_port = crate::metrics::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    write_term_recording_server(dir.path(), web_port);
    let mut drover = crate::metrics::with_metrics_in(
        dir,
        &format!(
            "settings: {{ log: {{ service_output: discard }} }}
services:
  web:
    command: [python3, server.py]
    readiness_probe: {{ http: {{ url: \"http://127.0.0.1:{web_port}/\" }}, period: 100ms }}
    stop: {{ drain: 1s }}
"
        ),
        metrics_port,
    );
    let ready = || crate::metrics::get(metrics_port, "/readyz").map(|(code, _)| code);
    wait_until(SECS(30), "/readyz 200", || ready() == Some(200));
    drover.signal(SIGTERM);
    let (mut served, mut unready_at) = (0, None);
    let deadline = std::time::Instant::now() + SECS(20);
    while unready_at.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never turned 503"
        );
        if ready() == Some(200) {
            let answer = crate::metrics::get(web_port, "/");
            assert_eq!(
                answer.map(|(code, _)| code),
                Some(200),
                "a request failed while ready"
            );
            served += 1;
        } else {
            #[allow(clippy::disallowed_methods)]
            let now = std::time::SystemTime::now();
            unready_at = Some(now);
        }
    }
    // During the drain a client that still sends requests (a load balancer slow to notice)
    // loses none: every request until the server's signal is answered.
    let term_file = drover.path("term");
    let mut during_drain = 0;
    while !term_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no stop signal reached the server"
        );
        let answer = crate::metrics::get(web_port, "/");
        if term_file.exists() {
            break;
        }
        assert_eq!(
            answer.map(|(code, _)| code),
            Some(200),
            "a request failed during the drain"
        );
        during_drain += 1;
    }
    assert!(
        during_drain >= 5,
        "only {during_drain} requests during the drain"
    );
    let term = drover.wait_file("term", SECS(20));
    let term: f64 = term.trim().parse().expect("a time");
    let unready = unready_at
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .expect("a time")
        .as_secs_f64();
    assert!(
        term - unready >= 0.9,
        "the signal came {:.3} s after /readyz turned 503",
        term - unready
    );
    assert_eq!(drover.wait(SECS(20)), 0, "{}", drover.stderr());
    println!(
        "stop.drain 1s: {served} requests while ready and {during_drain} during the drain, none failed; the signal came {:.3} s after /readyz 503",
        term - unready
    );
}

/// `settings.shutdown_delay: 1s`: on SIGTERM `/readyz` answers 503 at once, and the services
/// get their stop signal a second later.
#[test]
fn a_shutdown_delay_turns_readyz_503_before_anything_stops() {
    let metrics_port = crate::metrics::free_port();
    let web_port = crate::metrics::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    write_term_recording_server(dir.path(), web_port);
    let mut drover = crate::metrics::with_metrics_in(
        dir,
        "settings: { shutdown_delay: 1s, log: { service_output: discard } }
services:
  web: { command: [python3, server.py] }
",
        metrics_port,
    );
    let ready = || crate::metrics::get(metrics_port, "/readyz");
    wait_until(SECS(30), "/readyz 200", || {
        ready().is_some_and(|(code, _)| code == 200)
    });
    drover.signal(SIGTERM);
    wait_until(SECS(10), "/readyz 503", || {
        ready().is_some_and(|(code, _)| code == 503)
    });
    #[allow(clippy::disallowed_methods)]
    let unready = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a time")
        .as_secs_f64();
    let (_, body) = ready().expect("an answer during the delay");
    assert!(body.contains("web running"), "{body}");
    let term: f64 = drover
        .wait_file("term", SECS(20))
        .trim()
        .parse()
        .expect("a time");
    assert!(
        term - unready >= 0.9,
        "the signal came {:.3} s after /readyz turned 503",
        term - unready
    );
    assert_eq!(drover.wait(SECS(20)), 0, "{}", drover.stderr());
}

/// Writes `server.py` in `dir`: a web server on loopback `port` that, on SIGTERM, writes the
/// time (and a newline) to `term` and exits 0.
fn write_term_recording_server(dir: &std::path::Path, port: u16) {
    let server = format!(
        "import http.server, signal, sys, time
def term(*_):
    open('term', 'w').write(repr(time.time()) + '\\n')
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
http.server.ThreadingHTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler).serve_forever()
"
    );
    std::fs::write(dir.join("server.py"), server).expect("write server.py");
}

/// `drover restart web` and a reload that replaces web drain too: `/readyz` turns 503 and the
/// server's stop signal comes `stop.drain` (1 s) later, each time.
#[test]
fn a_restart_by_hand_and_a_reload_restart_drain_before_the_signal() {
    let web_port = crate::metrics::free_port();
    let metrics_port = crate::metrics::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    write_term_recording_server(dir.path(), web_port);
    let manifest = |value: &str| {
        format!(
            "settings: {{ log: {{ service_output: discard }} }}
services:
  web:
    command: [python3, server.py]
    environment: {{ VALUE: {value} }}
    readiness_probe: {{ http: {{ url: \"http://127.0.0.1:{web_port}/\" }}, period: 100ms }}
    stop: {{ drain: 1s }}
"
        )
    };
    let drover = crate::metrics::with_metrics_in(dir, &manifest("a"), metrics_port);
    let socket = drover.path("drover.sock");
    let ready = || crate::metrics::get(metrics_port, "/readyz").map(|(code, _)| code);
    let wall_clock = || {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .expect("a time")
            .as_secs_f64()
    };
    let restart_by_hand = || {
        let (code, out, err) = crate::control::cli(&socket, &["restart", "web"]);
        assert_eq!(code, 0, "{out}{err}");
    };
    let reload = || {
        std::fs::write(drover.path("drover.yaml"), manifest("b")).expect("write");
    };
    for (how, restart) in [
        ("drover restart", &restart_by_hand as &(dyn Fn() + Sync)),
        ("a reload", &reload),
    ] {
        let _ = std::fs::remove_file(drover.path("term"));
        wait_until(SECS(30), "/readyz 200", || ready() == Some(200));
        // (`drover restart` answers once the new run is up: it runs beside the watch.)
        let unready = std::thread::scope(|scope| {
            scope.spawn(restart);
            wait_until(SECS(10), "/readyz 503", || ready() == Some(503));
            wall_clock()
        });
        let term: f64 = drover
            .wait_file("term", SECS(20))
            .trim()
            .parse()
            .expect("a time");
        assert!(
            term - unready >= 0.9,
            "{how}: the signal came {:.3} s after /readyz turned 503",
            term - unready
        );
    }
}

/// Failures are warnings and giving up is an error, so `--log-level warn` (or an alert on
/// WARN) sees each of them and no routine line; `--log-level` wins over `RUST_LOG`.
#[test]
fn failures_are_warnings_giving_up_is_an_error_and_log_level_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("drover.yaml"),
        "services:
  crash: { command: \"exit 3\", restart: { backoff: { initial: 0s }, max_retries: 1 } }
  fine: { command: [sleep, \"600\"] }
",
    )
    .expect("write");
    let drover = Drover::start_with_env(
        dir,
        &[
            env!("CARGO_BIN_EXE_drover"),
            "run",
            "--log-level",
            "warn",
            "drover.yaml",
        ],
        None,
        &[("RUST_LOG", "debug")],
    );
    wait_until(SECS(20), "crash failed", || {
        drover.stderr().contains("to=failed")
    });
    let log = drover.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("service=")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains("restarting in 0s service=crash")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" ERROR ") && l.contains("gave up after 1 restarts")),
        "{log}"
    );
    assert!(
        !log.contains(" INFO ") && !log.contains(" DEBUG "),
        "routine lines at warn:\n{log}"
    );
}
