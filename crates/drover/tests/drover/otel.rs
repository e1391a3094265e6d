//! OpenTelemetry traces of the real binary: spans reach a real OTLP receiver (`oteltap`,
//! installed by `scripts/setup.sh`) with the expected names, attributes and parents; the
//! standard `OTEL_*` variables are honoured; nothing is exported, and no connection is made,
//! without an endpoint; a collector that is down slows neither supervision nor the exit.

use crate::util::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A crash-looping service and one whose readiness probe passes every 100 ms.
const LIFECYCLE: &str = "services:
  crash:
    command: [sh, -c, \"sleep 0.1; exit 3\"]
    restart: { policy: always, backoff: { initial: 50ms, max: 50ms } }
  web:
    command: [sleep, \"1000\"]
    readiness_probe: { exec: { command: [\"true\"] }, period: 100ms }
";

/// `oteltap`, a real OTLP/HTTP receiver, writing every span it receives as a JSON line.
struct Receiver {
    child: Child,
    port: u16,
    spans: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts oteltap on a free loopback port; `None` (with a visible SKIPPED) where it is not
    /// installed, except in CI, where that is a failure.
    #[allow(clippy::print_stderr)] // the skip must be visible in the test output
    fn start() -> Option<Receiver> {
        let Some(program) = oteltap() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "oteltap is not installed: scripts/setup.sh installs it"
            );
            eprintln!("SKIPPED: oteltap is not installed; run scripts/setup.sh");
            return None;
        };
        // A free port may be taken again before oteltap binds it: then it exits, and another
        // port is tried.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let spans = dir.path().join("spans.ndjson");
            let port = free_port();
            let child = Command::new(&program)
                .args(["--port", &port.to_string()])
                .stdout(std::fs::File::create(&spans).expect("spans file"))
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn oteltap");
            let mut receiver = Receiver {
                child,
                port,
                spans,
                _dir: dir,
            };
            let mut exited = false;
            wait_until(SECS(20), "oteltap listening", || {
                exited = !matches!(receiver.child.try_wait(), Ok(None));
                exited
                    || std::fs::read_to_string(&receiver.spans)
                        .is_ok_and(|out| out.contains("Listening"))
            });
            if !exited {
                return Some(receiver);
            }
        }
        panic!("oteltap could not listen on any of 5 free ports");
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|span| span.get("spanId").is_some())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The oteltap command: `$DROVER_OTELTAP`, the one `scripts/setup.sh` installs, or one on PATH.
fn oteltap() -> Option<PathBuf> {
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/otel/bin/oteltap");
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("oteltap"))
            .find(|p| p.is_file())
    });
    std::env::var_os("DROVER_OTELTAP")
        .map(PathBuf::from)
        .into_iter()
        .chain([installed])
        .chain(on_path)
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// The value of attribute `key` of `span`, whatever its type, as text.
fn attribute(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"].as_object()?.values().next().cloned())
        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string()))
}

/// Start and end of `span`, in Unix nanoseconds.
fn times(span: &Value) -> (u64, u64) {
    let at = |key: &str| {
        span[key]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {span:#}"))
    };
    (at("startTimeUnixNano"), at("endTimeUnixNano"))
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// `drover run` of `manifest` in a new temp dir, with `env` added.
fn drover_with(manifest: &str, env: &[(&str, &str)]) -> Drover {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
    Drover::start_with_env(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
        env,
    )
}

/// Restarts of `service` logged so far.
fn restarts(drover: &Drover, service: &str) -> usize {
    drover
        .stderr()
        .lines()
        .filter(|l| l.contains(&format!("service={service}")) && l.contains("restarting in"))
        .count()
}

#[test]
fn spans_reach_a_real_otlp_receiver() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let endpoint = receiver.endpoint();
    let mut drover = drover_with(
        LIFECYCLE,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    wait_until(SECS(15), "three restarts of crash", || {
        restarts(&drover, "crash") >= 3
    });
    // web's first run must have been ready before the reload replaces it.
    wait_until(SECS(10), "web's first run ready", || {
        drover
            .stderr()
            .contains("readiness probe passed (exit code 0) service=web")
    });
    // A reload that changes web's command, saved as editors do (a new file renamed over).
    let temporary = drover.path("drover.yaml.tmp");
    std::fs::write(
        &temporary,
        LIFECYCLE.replace("[sleep, \"1000\"]", "[sleep, \"1001\"]"),
    )
    .expect("write");
    std::fs::rename(&temporary, drover.path("drover.yaml")).expect("rename");
    wait_until(SECS(10), "web's second run ready", || {
        drover
            .stderr()
            .matches("readiness probe passed (exit code 0) service=web")
            .count()
            >= 2
    });
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0, "stderr:\n{}", drover.stderr());

    // Everything was flushed at exit: the drain span is the last to end.
    let mut spans = Vec::new();
    wait_until(SECS(10), "the drain span at the receiver", || {
        spans = receiver.spans();
        !named(&spans, "drain").is_empty()
    });
    let reload = named(&spans, "reload");
    assert_eq!(reload.len(), 1, "{reload:#?}");
    assert_eq!(
        attribute(reload[0], "trigger").as_deref(),
        Some("file change")
    );
    assert_eq!(attribute(reload[0], "plan").as_deref(), Some("~web =crash"));
    assert_eq!(attribute(reload[0], "result").as_deref(), Some("success"));
    assert!(attribute(reload[0], "read_ms").is_some());
    let drain = named(&spans, "drain")[0];
    assert_eq!(attribute(drain, "signal").as_deref(), Some("SIGTERM"));
    assert_eq!(attribute(drain, "exit_code").as_deref(), Some("0"));

    // One span per run of crash, each ended by exit code 3 and followed by a restart.
    let crashes = named(&spans, "run crash");
    assert!(crashes.len() >= 3, "{} runs of crash", crashes.len());
    let restarted: Vec<_> = crashes
        .iter()
        .filter(|s| attribute(s, "drover.restart.reason").as_deref() == Some("exit"))
        .collect();
    assert!(restarted.len() >= 3, "{crashes:#?}");
    let mut pids = std::collections::HashSet::new();
    for run in &restarted {
        assert_eq!(attribute(run, "process.exit.code").as_deref(), Some("3"));
        assert_eq!(
            attribute(run, "drover.end_state").as_deref(),
            Some("backoff")
        );
        assert_eq!(run["status"]["code"], 2, "an error status: {run:#}");
        let pid: i32 = attribute(run, "process.pid")
            .and_then(|p| p.parse().ok())
            .expect("a pid");
        assert!(pid > 0);
        pids.insert(pid);
        let (start, end) = times(run);
        // Each run sleeps 0.1 s before it exits; both ends are stamped when drover handles
        // the events, so a late start shortens the span a little.
        assert!(end - start >= 50_000_000, "a run of {} ns", end - start);
    }
    assert_eq!(pids.len(), restarted.len(), "one pid per run");

    // web ran twice: until the reload replaced it, then until the drain; neither is an error.
    let webs = named(&spans, "run web");
    assert_eq!(webs.len(), 2, "{webs:#?}");
    let events = |span: &Value| -> Vec<String> {
        span["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| Some(e["name"].as_str()?.to_string()))
            .collect()
    };
    let (replaced, drained) =
        if attribute(webs[0], "drover.end_state").as_deref() == Some("pending") {
            (webs[0], webs[1])
        } else {
            (webs[1], webs[0])
        };
    assert_eq!(
        attribute(replaced, "drover.restart.reason").as_deref(),
        Some("reload")
    );
    assert_eq!(
        events(replaced),
        ["running", "ready", "stopping", "pending"]
    );
    assert_eq!(
        attribute(drained, "drover.end_state").as_deref(),
        Some("exited")
    );
    assert_eq!(events(drained), ["running", "ready", "stopping", "exited"]);
    for web in [replaced, drained] {
        assert_eq!(attribute(web, "process.exit.signal").as_deref(), Some("15"));
        assert_ne!(web["status"]["code"], 2, "{web:#}");
    }
    assert_ne!(replaced["traceId"], drained["traceId"], "a trace per run");
    // Each stop drover began is a span inside its run, ending before it.
    let stops = named(&spans, "stop web");
    assert_eq!(stops.len(), 2, "{stops:#?}");
    for stop in &stops {
        let run = [replaced, drained]
            .into_iter()
            .find(|web| stop["parentSpanId"] == web["spanId"])
            .unwrap_or_else(|| panic!("no parent run: {stop:#}"));
        assert_eq!(stop["traceId"], run["traceId"]);
        assert!(times(stop).1 <= times(run).1, "{stop:#}");
    }

    // Probe checks are children of the run they checked, in its trace, each with the time the
    // check took.
    let probes = named(&spans, "probe readiness");
    assert!(probes.len() >= 3, "{} probe spans", probes.len());
    for probe in &probes {
        let run = [replaced, drained]
            .into_iter()
            .find(|web| probe["parentSpanId"] == web["spanId"])
            .unwrap_or_else(|| panic!("no parent run: {probe:#}"));
        assert_eq!(probe["traceId"], run["traceId"]);
        assert_eq!(attribute(probe, "drover.service").as_deref(), Some("web"));
        assert_eq!(
            attribute(probe, "drover.probe.result").as_deref(),
            Some("success")
        );
        let (start, end) = times(probe);
        // An exec of `true` takes more than nothing.
        assert!(end > start, "{probe:#}");
    }
}

/// One HTTP request as received: request line and headers (lower-cased names), and body.
struct Request {
    head: String,
    body: Vec<u8>,
}

/// A loopback HTTP server that answers 200 to every request and hands each one over.
fn capture_server() -> (u16, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, &tx));
        }
    });
    (port, rx)
}

fn serve(stream: TcpStream, requests: &mpsc::Sender<Request>) {
    let _ = stream.set_read_timeout(Some(SECS(10)));
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        if requests.send(Request { head, body }).is_err() {
            return;
        }
    }
}

/// Runs the lifecycle manifest with `env` until crash has restarted twice, then drains it.
fn run_lifecycle(env: &[(&str, &str)]) -> Drover {
    let mut drover = drover_with(LIFECYCLE, env);
    wait_until(SECS(15), "two restarts of crash", || {
        restarts(&drover, "crash") >= 2
    });
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0, "stderr:\n{}", drover.stderr());
    drover
}

#[test]
fn standard_otel_variables_are_honoured() {
    // http/protobuf by default: the traces path, headers, and the service name in the resource.
    let (port, requests) = capture_server();
    let endpoint = format!("http://127.0.0.1:{port}");
    run_lifecycle(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-drover-test=token42"),
        ("OTEL_SERVICE_NAME", "edge-box-7"),
    ]);
    let request = requests.recv_timeout(SECS(10)).expect("an export");
    assert!(
        request.head.starts_with("post /v1/traces "),
        "{}",
        request.head
    );
    assert!(
        request.head.contains("x-drover-test: token42"),
        "{}",
        request.head
    );
    assert!(
        request
            .head
            .contains("content-type: application/x-protobuf")
    );
    let contains = |needle: &[u8]| request.body.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(b"edge-box-7"),
        "the service name is in the resource"
    );
    assert!(contains(b"run crash"));

    // http/json on a traces-specific endpoint; without OTEL_SERVICE_NAME, the service is drover.
    let (port, requests) = capture_server();
    let endpoint = format!("http://127.0.0.1:{port}/custom/path");
    run_lifecycle(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ]);
    let request = requests.recv_timeout(SECS(10)).expect("an export");
    assert!(
        request.head.starts_with("post /custom/path "),
        "{}",
        request.head
    );
    assert!(request.head.contains("content-type: application/json"));
    let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    let resource = body["resourceSpans"][0]["resource"].to_string();
    assert!(resource.contains("\"drover\""), "{resource}");

    // OTEL_SDK_DISABLED wins over an endpoint; so does OTEL_TRACES_EXPORTER=none.
    for off in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let (port, requests) = capture_server();
        let endpoint = format!("http://127.0.0.1:{port}");
        run_lifecycle(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), off]);
        assert!(
            requests.recv_timeout(Duration::from_millis(500)).is_err(),
            "{off:?} exported"
        );
    }

    // gRPC is refused with a reason, and supervision goes on without traces.
    let drover = run_lifecycle(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);
    assert!(
        drover
            .stderr()
            .contains("drover exports OTLP over HTTP only"),
        "{}",
        drover.stderr()
    );
}

#[test]
#[allow(clippy::print_stderr)] // the skip must be visible in the test output
fn without_an_endpoint_no_connection_is_attempted() {
    // The exporter's default address is localhost:4318: listen there and see that nobody comes.
    let listener = match TcpListener::bind("127.0.0.1:4318") {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("SKIPPED: cannot listen on 127.0.0.1:4318 to watch for connections: {err}");
            return;
        }
    };
    listener.set_nonblocking(true).expect("nonblocking");
    let drover = run_lifecycle(&[]);
    match listener.accept() {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection to 4318: {other:?}\n{}", drover.stderr()),
    }
}

#[test]
fn a_collector_that_is_down_slows_neither_supervision_nor_the_exit() {
    // A collector that accepts connections and never answers: each export hangs for its whole
    // timeout (60 s here), while probes every 10 ms fill the span queue.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let mut drover = drover_with(
        "services:
  crash:
    command: [sh, -c, \"exit 3\"]
    restart: { policy: always, backoff: { initial: 10ms, max: 10ms, jitter: 0 } }
  web:
    command: [sleep, \"1000\"]
    readiness_probe: { exec: { command: [\"true\"] }, period: 10ms }
",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ],
    );
    // Restarts go on at their pace although every export hangs.
    wait_until(SECS(20), "100 restarts of crash", || {
        restarts(&drover, "crash") >= 100
    });
    let asked = Instant::now();
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(30)), 0, "stderr:\n{}", drover.stderr());
    let exit = asked.elapsed();
    // The flush at exit gives up after 2 s instead of waiting out the 60 s export timeout.
    assert!(exit < SECS(6), "drover took {exit:?} to exit");
    assert!(
        drover.stderr().contains("not all exported"),
        "{}",
        drover.stderr()
    );
    drop(silent);
}
