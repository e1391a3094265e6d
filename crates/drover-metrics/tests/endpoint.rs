//! The endpoint over a real socket, against a real supervisor running real processes.

use drover_metrics::{Exporter, serve};
use drover_supervisor::{Control, Processes, Supervisor};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request; the status code and the body.
async fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response[9..12].parse().expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn metrics_health_and_readiness_over_http() {
    let yaml = "settings: { log: { service_output: discard } }
services:
  app: { command: [sleep, \"60\"] }
  gated: { command: [sleep, \"60\"], readiness_probe: { exec: { command: [\"false\"] }, period: 50ms } }
";
    let manifest = drover_spec::load_str(yaml, Path::new("/t/drover.yaml")).expect("valid");
    let processes = Processes::start().expect("processes");
    let (supervisor, done) = Supervisor::start(manifest, processes.clone()).expect("start");
    let exporter = Exporter::new(supervisor.clone(), processes).expect("exporter");
    let _probes = exporter.record_probes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(serve(listener, exporter));

    // Wait (polling, with a deadline) until the failing probe has been counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, body) = request(port, "GET", "/metrics").await;
        assert_eq!(status, 200);
        if body.contains(
            r#"drover_probe_results_total{probe="readiness",result="failure",service="gated"} 1"#,
        ) || body.contains(
            r#"drover_probe_results_total{probe="readiness",result="failure",service="gated"} 2"#,
        ) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe failure counted:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for line in [
        r#"drover_service_up{service="app"} 1"#,
        r#"drover_service_ready{service="app"} 1"#,
        r#"drover_service_ready{service="gated"} 0"#,
        r#"drover_service_state{service="app",state="ready"} 1"#,
        r#"drover_service_state{service="gated",state="running"} 1"#,
        r#"drover_service_starts_total{service="app"} 1"#,
        r#"drover_service_restarts_total{reason="liveness",service="app"} 0"#,
        r#"drover_service_exits_total{outcome="signal",service="app"} 0"#,
        r#"drover_probe_results_total{probe="readiness",result="timeout",service="gated"} 0"#,
        r#"drover_manifest_reloads_total{result="failure"} 0"#,
        "drover_zombies_reaped_total 0",
        "# TYPE drover_service_restarts_total counter",
        "# HELP drover_service_up ",
        "process_resident_memory_bytes ",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"drover_build_info{version=""#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"drover_probe_duration_seconds_bucket{probe="readiness",service="gated",le="1"}"#
        ),
        "{metrics}"
    );

    assert_eq!(request(port, "GET", "/healthz").await, (200, "ok\n".into()));
    let (status, body) = request(port, "GET", "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready:\ngated running\n")
    );
    assert_eq!(request(port, "GET", "/nope").await.0, 404);
    assert_eq!(request(port, "POST", "/metrics").await.0, 405);

    supervisor.send(Control::Kill);
    done.await.expect("join");
    assert_eq!(request(port, "GET", "/healthz").await.0, 503);
    server.abort();
}
