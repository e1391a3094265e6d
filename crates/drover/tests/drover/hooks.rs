//! `post_start` and `pre_stop` hooks, end to end: real commands that record when they ran,
//! real signals, the metrics they leave.

use crate::control::cli;
use crate::util::SIGTERM;
use crate::util::{Drover, alive, wait_until};
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A wall-clock time written by `date +%s.%N` into file `name`.
fn time_in(drover: &Drover, name: &str) -> f64 {
    let text = drover.wait_file(name, SECS(20));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}: not a time: {text:?}"))
}

fn wall_clock_now() -> f64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A service that ignores SIGTERM (it records its time) under `stop.timeout: 2s`, with a
/// `pre_stop` of 1.5 s: the signal comes after the hook, and SIGKILL 2 s after the hook began
/// (not 2 s after the signal).
#[test]
fn pre_stop_runs_before_the_signal_and_its_time_counts_against_stop_timeout() {
    let mut drover = Drover::run(
        "services:
  web:
    command: \"trap 'date +%s.%N > term' TERM; while :; do sleep 0.05; done\"
    stop: { timeout: 2s }
    pre_stop:
      - command: \"date +%s.%N > hook-start; echo draining; sleep 1.5; date +%s.%N > hook-end\"
",
    );
    wait_until(SECS(20), "web ready", || {
        drover.stderr().contains("to=ready")
    });
    drover.signal(SIGTERM);
    let code = drover.wait(SECS(20));
    let exited = wall_clock_now();
    let (start, end, term) = (
        time_in(&drover, "hook-start"),
        time_in(&drover, "hook-end"),
        time_in(&drover, "term"),
    );
    assert!(
        term >= end,
        "the signal ({term}) came before pre_stop ended ({end})"
    );
    assert!(
        exited - start < 3.0,
        "SIGKILL came {:.2} s after pre_stop began: stop.timeout (2 s) did not count from it",
        exited - start
    );
    assert_eq!(
        code,
        1,
        "a stop that needed SIGKILL exits 1\n{}",
        drover.stderr()
    );
    assert!(
        drover.stdout().contains("web/pre_stop | draining\n"),
        "{}",
        drover.stdout()
    );
}

/// A `pre_stop` hook that hangs is killed at its own `timeout` (its process group with it),
/// and the stop goes on: the service gets its signal and exits cleanly.
#[test]
fn a_hanging_pre_stop_is_killed_at_its_deadline_and_the_stop_goes_on() {
    let mut drover = Drover::run(
        "services:
  web:
    command: \"trap 'exit 0' TERM; while :; do sleep 0.05; done\"
    pre_stop:
      - { command: \"echo $$ > hook.pid; exec sleep 100\", timeout: 1s }
",
    );
    wait_until(SECS(20), "web ready", || {
        drover.stderr().contains("to=ready")
    });
    drover.signal(SIGTERM);
    let hook = drover.pid_file("hook.pid");
    assert_eq!(drover.wait(SECS(20)), 0, "{}", drover.stderr());
    wait_until(SECS(5), "the hook killed", || !alive(hook));
    let log = drover.stderr();
    assert!(
        log.contains("pre_stop[0] failed: still running after 1000ms; killed"),
        "{log}"
    );
    assert!(log.contains("pre_stop failed (pre_stop[0]: still running after 1000ms; killed); stopping with SIGTERM"), "{log}");
}

/// A failing `post_start` fails the run: the service is restarted (for `post_start`), and
/// once the hook passes it becomes ready. `drover stop` runs `pre_stop` too, and the metrics
/// count the hooks and the stop.
#[test]
fn a_failing_post_start_fails_the_run_and_hooks_and_stops_are_counted() {
    let port = crate::metrics::free_port();
    let drover = crate::metrics::with_metrics_in(
        tempfile::tempdir().expect("tempdir"),
        "services:
  web:
    command: \"echo $$ >> pids; exec sleep 100\"
    restart: { backoff: { initial: 100ms, jitter: 0 } }
    stop: { drain: 200ms }
    post_start:
      - command: \"echo warming; test -f ok\"
    pre_stop:
      - command: \"echo bye\"
",
        port,
    );
    wait_until(SECS(20), "a failed post_start", || {
        drover
            .stderr()
            .contains("post_start failed (post_start[0]: exit code 1)")
    });
    std::fs::write(drover.path("ok"), "").expect("write ok");
    wait_until(SECS(20), "web ready", || {
        drover.stderr().contains("to=ready")
    });
    let runs = std::fs::read_to_string(drover.path("pids")).expect("pids");
    assert!(
        runs.lines().count() >= 2,
        "restarted after the failure: {runs}"
    );
    let socket = drover.path("drover.sock");
    let (code, out, err) = cli(&socket, &["stop", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    // The metrics count from the events, a moment after the stop is done: the second stop's
    // observation comes after everything else this test looks at.
    let drains = "drover_service_drain_seconds_count{service=\"web\"} 2\n";
    let mut metrics = String::new();
    wait_until(SECS(10), drains, || {
        metrics = crate::metrics::get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        metrics.contains(drains)
    });
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(value("drover_service_restarts_total{reason=\"post_start\",service=\"web\"}") >= 1.0);
    assert!(
        value(
            "drover_service_hook_results_total{hook=\"post_start\",result=\"failure\",service=\"web\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(
            "drover_service_hook_results_total{hook=\"post_start\",result=\"success\",service=\"web\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            "drover_service_hook_results_total{hook=\"pre_stop\",result=\"success\",service=\"web\"}"
        ),
        2.0,
        "pre_stop ran for each stop: the failed run's and drover stop's"
    );
    // Each stop took the 200 ms drain at least.
    assert_eq!(
        value("drover_service_drain_seconds_bucket{service=\"web\",le=\"0.1\"}"),
        0.0
    );
    let out = drover.stdout();
    assert!(out.contains("web/post_start | warming\n"), "{out}");
    assert!(out.contains("web/pre_stop | bye\n"), "{out}");
}
