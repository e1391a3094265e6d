//! The metrics endpoint of the real binary: values that track what really happened to real
//! processes, and an address in use refusing the start.

use crate::util::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// `GET path` on drover's endpoint: status and body; `None` while it does not answer.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(SECS(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_string()))
}

/// The value of the series `series` (name and labels, exactly as exposed).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn with_metrics(manifest: &str) -> (Drover, u16) {
    let port = free_port();
    (with_metrics_on(manifest, port), port)
}

/// `drover run` of `manifest` in a new temp dir, serving metrics on loopback `port`.
fn with_metrics_on(manifest: &str, port: u16) -> Drover {
    with_metrics_in(tempfile::tempdir().expect("tempdir"), manifest, port)
}

/// `drover run` of `manifest` in `dir`, serving metrics on loopback `port`.
pub(crate) fn with_metrics_in(dir: tempfile::TempDir, manifest: &str, port: u16) -> Drover {
    std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
    let listen = format!("127.0.0.1:{port}");
    Drover::start(
        dir,
        &[
            env!("CARGO_BIN_EXE_drover"),
            "run",
            "--metrics-listen",
            &listen,
            "drover.yaml",
        ],
        None,
    )
}

/// Polls `/metrics` until `series` has a value satisfying `wanted`; that value.
fn wait_value(port: u16, series: &str, wanted: impl Fn(f64) -> bool) -> f64 {
    let mut last = String::new();
    let mut found = None;
    wait_until(SECS(15), &format!("{series} as wanted"), || {
        if let Some((200, body)) = get(port, "/metrics") {
            found = value(&body, series).filter(|v| wanted(*v));
            last = body;
        }
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("{series} in:\n{last}"))
}

#[test]
fn restarts_readiness_and_memory_track_reality() {
    let (drover, port) = with_metrics(
        "services:
  victim:
    command: [sh, -c, \"echo $$ > victim.pid; exec sleep 1000\"]
    restart: { policy: always, backoff: { initial: 0s } }
  gated:
    command: [sleep, \"1000\"]
    readiness_probe: { exec: { command: [test, -f, ready] }, period: 50ms, failure_threshold: 1 }
  hog:
    command: [python3, -c, \"import time; b = b'x' * (50 * 1024 * 1024); open('hog.txt', 'w').write('1\\\\n'); time.sleep(1000)\"]
",
    );
    // Kill the victim three times: three restarts, by signal.
    for round in 1..=3 {
        let pid = drover.pid_file("victim.pid");
        std::fs::remove_file(drover.path("victim.pid")).expect("rm");
        send(pid, nix::sys::signal::Signal::SIGKILL as i32);
        let series = r#"drover_service_restarts_total{reason="signal",service="victim"}"#;
        wait_value(port, series, |v| v == f64::from(round));
    }
    // The restart is counted when decided, the start once the spawn is done: wait for it.
    wait_value(
        port,
        r#"drover_service_starts_total{service="victim"}"#,
        |v| v == 4.0,
    );
    let (_, metrics) = get(port, "/metrics").expect("metrics");
    assert_eq!(
        value(
            &metrics,
            r#"drover_service_exits_total{outcome="signal",service="victim"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &metrics,
            r#"drover_service_last_exit_code{service="victim"}"#
        ),
        Some(137.0)
    );
    // Readiness flips both ways.
    assert_eq!(
        value(&metrics, r#"drover_service_ready{service="gated"}"#),
        Some(0.0)
    );
    assert_eq!(get(port, "/readyz").map(|r| r.0), Some(503));
    std::fs::write(drover.path("ready"), "").expect("write");
    wait_value(port, r#"drover_service_ready{service="gated"}"#, |v| {
        v == 1.0
    });
    wait_until(SECS(10), "/readyz 200", || {
        get(port, "/readyz").map(|r| r.0) == Some(200)
    });
    std::fs::remove_file(drover.path("ready")).expect("rm");
    wait_value(port, r#"drover_service_ready{service="gated"}"#, |v| {
        v == 0.0
    });
    // The hog holds 50 MiB.
    drover.wait_file("hog.txt", SECS(15));
    let rss = wait_value(
        port,
        r#"drover_service_memory_rss_bytes{service="hog"}"#,
        |v| v > 0.0,
    );
    assert!(rss >= 50.0 * 1024.0 * 1024.0, "rss {rss}");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
}

#[test]
fn an_address_in_use_refuses_the_start_and_starts_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut drover = with_metrics_on(
        "services:\n  a: { command: [sh, -c, \"echo started > started.txt; exec sleep 1000\"] }\n",
        port,
    );
    let listen = format!("127.0.0.1:{port}");
    assert_eq!(drover.wait(SECS(10)), 1);
    assert!(
        drover
            .stderr()
            .contains(&format!("cannot listen for metrics on {listen}")),
        "{}",
        drover.stderr()
    );
    assert!(!drover.path("started.txt").exists(), "a service started");
}

/// `drover run` of `manifest` in a new temp dir with the metrics address the manifest says
/// (the harness's `--metrics-listen ''` left out).
fn run_as_written(manifest: &str) -> Drover {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
    Drover::start_exactly(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        &[],
    )
}

/// The default address (nobody asked for it) taken, as by a second drover on the host: drover
/// serves on another port of 127.0.0.1, says which, and `drover status` names it. A manifest
/// that asks for the taken address is refused, as above.
#[test]
fn a_taken_default_address_moves_to_another_port() {
    // Held by this test, or by someone else on the machine: taken either way.
    let _held = TcpListener::bind("127.0.0.1:9464");
    let busy = TcpListener::bind("127.0.0.1:9464").is_err();
    assert!(busy, "127.0.0.1:9464 should be taken now");
    let drover = run_as_written("services:\n  a: { command: [sleep, \"1000\"] }\n");
    let instead = "serving on 127.0.0.1:";
    wait_until(SECS(10), "the move to another port", || {
        drover.stderr().contains(instead)
    });
    let log = drover.stderr();
    let port: u16 = log
        .split_once(instead)
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert_ne!(port, 9464);
    assert!(
        log.contains("the default address 127.0.0.1:9464 is in use"),
        "{log}"
    );
    let (status, body) = get(port, "/metrics").expect("the endpoint answers");
    assert_eq!(status, 200);
    assert!(body.contains("drover_service_up{service=\"a\"}"), "{body}");
    let socket = drover.path("drover.sock");
    wait_until(SECS(10), "the control socket", || socket.exists());
    let (code, table, err) = crate::control::cli(&socket, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains(&format!("metrics: http://127.0.0.1:{port}/metrics")),
        "{table}"
    );

    // Asked for in the manifest: refused.
    let mut asked = run_as_written(
        "settings: { metrics: { listen: 127.0.0.1:9464 } }\nservices:\n  a: { command: [sleep, \"1000\"] }\n",
    );
    assert_eq!(asked.wait(SECS(10)), 1);
    assert!(
        asked
            .stderr()
            .contains("cannot listen for metrics on 127.0.0.1:9464"),
        "{}",
        asked.stderr()
    );
}

/// Whether `tool` is on PATH; says so when it is not (the setup script installs it).
fn have(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        skip(
            test,
            &format!("{tool} is not installed (scripts/setup.sh installs it)"),
        );
    }
    found
}

#[allow(clippy::print_stderr)] // the skip must be visible in the test output
fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

#[test]
fn the_output_passes_promtool_check_metrics() {
    if !have("promtool", "the_output_passes_promtool_check_metrics") {
        return;
    }
    let (_drover, port) = with_metrics(
        "services:
  probed:
    command: [sleep, \"1000\"]
    readiness_probe: { tcp: { port: 1 }, period: 50ms }
  once: { command: [\"true\"], restart: { policy: never } }
",
    );
    wait_value(
        port,
        r#"drover_probe_results_total{probe="readiness",result="failure",service="probed"}"#,
        |v| v >= 1.0,
    );
    let (_, metrics) = get(port, "/metrics").expect("metrics");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let output = promtool.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus server scraping drover every second, in `dir`; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: drover
    static_configs: [{{ targets: ['127.0.0.1:{target}'] }}]
"
            ),
        )
        .expect("config");
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus");
        Prometheus { child, port }
    }

    /// The first sample of an instant query, once there is one.
    fn query(&self, query: &str) -> Option<f64> {
        let encoded = encode(query);
        let (status, body) = get(self.port, &format!("/api/v1/query?query={encoded}"))?;
        if status != 200 {
            return None;
        }
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[t,"v"]}]}}
        let value = body.split("\"value\":[").nth(1)?;
        let number = value
            .split(',')
            .nth(1)?
            .trim_matches(|c| c == '"' || c == ']' || c == '}');
        number.parse().ok()
    }
}

impl Prometheus {
    /// The `service` labels of an instant query's result, sorted.
    fn services(&self, query: &str) -> Vec<String> {
        let encoded = encode(query);
        let Some((200, body)) = get(self.port, &format!("/api/v1/query?query={encoded}")) else {
            panic!("the query failed: {query}");
        };
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let mut services: Vec<String> = answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .filter_map(|r| r["metric"]["service"].as_str().map(str::to_string))
            .collect();
        services.sort();
        services
    }
}

/// The expression of the dashboard's panel `title`, for every instance.
fn dashboard_query(title: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let panel = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"));
    panel["targets"][0]["expr"]
        .as_str()
        .expect("expr")
        .replace("$instance", ".*")
}

/// The expression of alert `name` in deploy/prometheus/alerts.yml (a `|` block after `expr:`).
fn alert_query(name: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/alerts.yml"
    );
    let text = std::fs::read_to_string(path).expect("alerts");
    let (_, rule) = text
        .split_once(&format!("- alert: {name}\n"))
        .unwrap_or_else(|| panic!("no alert {name}"));
    let (_, expr) = rule.split_once("expr: |\n").expect("a block expr");
    let (expr, _) = expr.split_once("\n        for:").expect("for: after expr");
    expr.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// The dashboard's "Not ready" panel shows what the DroverServiceNotReady alert fires on,
/// evaluated by a real Prometheus: the service that waits for readiness, not the one-shot that
/// finished nor the ready one.
#[test]
fn the_not_ready_panel_shows_what_the_alert_fires_on() {
    if !have(
        "prometheus",
        "the_not_ready_panel_shows_what_the_alert_fires_on",
    ) {
        return;
    }
    let (drover, port) = with_metrics(
        "services:
  done: { command: [\"true\"], restart: never }
  waiting: { command: [sleep, \"1000\"], readiness_probe: { exec: { command: [\"false\"] }, period: 1s } }
  up: { command: [sleep, \"1000\"] }
",
    );
    wait_value(
        port,
        r#"drover_service_state{service="done",state="exited"}"#,
        |v| v == 1.0,
    );
    let prometheus = Prometheus::start(drover.dir.path(), port);
    wait_until(SECS(60), "Prometheus to see the one-shot exited", || {
        prometheus.query("drover_service_state{service=\"done\",state=\"exited\"}") == Some(1.0)
    });
    let panel = dashboard_query("Not ready");
    let alert = alert_query("DroverServiceNotReady");
    assert_eq!(prometheus.services(&alert), ["waiting"], "{alert}");
    assert_eq!(prometheus.services(&panel), ["waiting"], "{panel}");
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_drover() {
    if !have("prometheus", "a_real_prometheus_scrapes_drover") {
        return;
    }
    let (drover, port) = with_metrics(
        "services:
  crash:
    command: [\"false\"]
    restart: { policy: always, backoff: { initial: 100ms, max: 100ms }, max_retries: 5 }
  keep: { command: [sleep, \"1000\"] }
",
    );
    // The crashing service gives up after 5 restarts: a value that then stays put (and `keep`
    // keeps drover running).
    let ours = wait_value(
        port,
        r#"drover_service_restarts_total{reason="exit",service="crash"}"#,
        |v| v == 5.0,
    );
    let prometheus = Prometheus::start(drover.dir.path(), port);
    let mut up = None;
    let mut restarts = None;
    wait_until(SECS(60), "Prometheus to scrape drover (up == 1)", || {
        up = prometheus.query("up{job=\"drover\"}");
        restarts = prometheus.query("sum(drover_service_restarts_total{service=\"crash\"})");
        up == Some(1.0) && restarts.is_some()
    });
    assert_eq!(
        restarts,
        Some(ours),
        "Prometheus saw {restarts:?}, drover reports {ours}"
    );
}

#[test]
fn an_invalid_metrics_address_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("drover.yaml"),
        "services:\n  a: { command: [sh, -c, \"echo started > started.txt; exec sleep 1000\"] }\n",
    )
    .expect("write manifest");
    let mut drover = Drover::start(
        dir,
        &[
            env!("CARGO_BIN_EXE_drover"),
            "run",
            "--metrics-listen",
            "nowhere",
            "drover.yaml",
        ],
        None,
    );
    assert_eq!(drover.wait(SECS(10)), 2);
    assert!(
        drover
            .stderr()
            .contains("--metrics-listen: invalid listen address `nowhere`"),
        "{}",
        drover.stderr()
    );
    assert!(!drover.path("started.txt").exists(), "a service started");
}

#[test]
fn reloads_are_counted_and_the_endpoint_follows_its_address() {
    // Both held until both are known, so that they differ. The second is later bound on every
    // address: it is picked free on every address (a port free on 127.0.0.1 may be a client's
    // local port on another address, and 0.0.0.0 could never be bound there: CI saw it).
    let (first, second) = {
        let one = TcpListener::bind("127.0.0.1:0").expect("bind");
        let two = TcpListener::bind("0.0.0.0:0").expect("bind");
        (
            one.local_addr().expect("addr").port(),
            two.local_addr().expect("addr").port(),
        )
    };
    // Metrics on `listen`; service a, and b (sleeping `b` seconds) if given.
    let manifest = |listen: String, b: Option<&str>| {
        let b = b
            .map(|b| format!("  b: {{ command: [sleep, \"{b}\"] }}\n"))
            .unwrap_or_default();
        format!(
            "settings: {{ metrics: {{ listen: \"{listen}\" }} }}
services:
  a: {{ command: [sleep, \"1000\"] }}
{b}"
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("drover.yaml"),
        manifest(format!("127.0.0.1:{first}"), Some("1000")),
    )
    .expect("write");
    // No --metrics-listen: the manifest's address, which a reload may move.
    let drover = Drover::start_exactly(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        &[],
    );
    wait_value(first, r#"drover_service_up{service="b"}"#, |v| v == 1.0);
    let path = drover.path("drover.yaml");
    std::fs::write(&path, "services: [").expect("write");
    wait_value(
        first,
        r#"drover_manifest_reloads_total{result="failure"}"#,
        // (2 if a read caught the file empty, between its truncation and its write)
        |v| v >= 1.0,
    );
    // b's command changes: a restart by reload.
    std::fs::write(&path, manifest(format!("127.0.0.1:{first}"), Some("999"))).expect("write");
    wait_value(
        first,
        r#"drover_service_restarts_total{reason="reload",service="b"}"#,
        |v| v == 1.0,
    );
    wait_value(
        first,
        r#"drover_manifest_reloads_total{result="success"}"#,
        |v| v == 1.0,
    );
    // b removed and the endpoint moved: b's series are gone, and the old port is closed.
    std::fs::write(&path, manifest(format!("127.0.0.1:{second}"), None)).expect("write");
    wait_value(
        second,
        r#"drover_manifest_reloads_total{result="success"}"#,
        |v| v == 2.0,
    );
    wait_until(SECS(10), "b's series gone", || {
        get(second, "/metrics").is_some_and(|(_, body)| {
            !body.contains(r#"service="b""#) && body.contains(r#"service="a""#)
        })
    });
    assert!(
        get(first, "/metrics").is_none(),
        "the old address still answers"
    );
    // The same port on every interface: the old listener holds the port, and is closed first.
    std::fs::write(&path, manifest(format!("0.0.0.0:{second}"), None)).expect("write");
    wait_value(
        second,
        r#"drover_manifest_reloads_total{result="success"}"#,
        |v| v == 3.0,
    );
    assert!(
        drover
            .stderr()
            .contains(&format!("metrics on http://0.0.0.0:{second}/metrics")),
        "{}",
        drover.stderr()
    );
}

/// A shell that runs busy commands one after another: each takes its CPU time with it when it
/// exits, yet `drover_service_cpu_seconds_total` never goes down during the run (so `rate()`
/// sees no false reset) and grows by what the commands used.
#[test]
fn the_cpu_counter_never_goes_down_while_children_come_and_go() {
    let (_drover, port) = with_metrics(
        "settings: { log: { service_output: discard } }
services:
  busy: { command: \"while :; do sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done'; done\" }
",
    );
    let series = "drover_service_cpu_seconds_total{service=\"busy\"}";
    let mut seen = vec![wait_value(port, series, |_| true)];
    let deadline = std::time::Instant::now() + SECS(30);
    while seen.last().copied().unwrap_or_default() < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {seen:?} in 30 s"
        );
        if let Some((200, body)) = get(port, "/metrics")
            && let Some(v) = value(&body, series)
        {
            seen.push(v);
        }
    }
    for pair in seen.windows(2) {
        assert!(pair[1] >= pair[0], "it went down: {seen:?}");
    }
}
