//! The endpoint's limits against hostile clients, over a real socket. One test, so that one
//! process table (one reaper) serves this whole binary: a second `Processes` in the same
//! process would reap the first one's children.

use drover_metrics::{Exporter, Limits};
use drover_supervisor::{Processes, Supervisor};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An endpoint with short limits over a supervisor with one service; its port.
async fn limited_endpoint(
    processes: &Processes,
    limits: Limits,
) -> (u16, tokio::task::JoinHandle<()>) {
    let yaml = "settings: { log: { service_output: discard } }
services:
  app: { command: [sleep, \"60\"] }
";
    let manifest = drover_spec::load_str(yaml, Path::new("/t/drover.yaml")).expect("valid");
    let (supervisor, _done) = Supervisor::start(manifest, processes.clone()).expect("start");
    let exporter = Exporter::new(supervisor, processes.clone()).expect("exporter");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(drover_metrics::serve_with(listener, exporter, limits));
    (port, server)
}

/// Reads until the server closes the connection (or `limit` passes: `None`); what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

async fn a_client_that_sends_no_headers_is_let_go(processes: &Processes) {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (port, server) = limited_endpoint(processes, limits).await;
    // Nothing at all, and half a request line: both closed after the timeout.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert!(
        read_until_closed(&mut half, Duration::from_secs(10))
            .await
            .is_some()
    );
    server.abort();
}

async fn unfinished_headers_are_bounded_in_bytes(processes: &Processes) {
    let (port, server) = limited_endpoint(processes, Limits::default()).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ")
        .await
        .expect("write");
    // Far more than the buffer, never ending the header: hyper buffered 400 KB of it per
    // connection before; now it answers 431 or closes after 8 KiB.
    let filler = vec![b'a'; 4096];
    for _ in 0..32 {
        if stream.write_all(&filler).await.is_err() {
            break;
        }
    }
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the connection is answered or closed, not kept waiting");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    server.abort();
}

async fn connections_past_the_cap_are_closed_and_slots_come_back(processes: &Processes) {
    // One peer here (127.0.0.1): its own cap is the one reached.
    let limits = Limits {
        max_connections: 64,
        max_per_peer: 8,
        ..Default::default()
    };
    let (port, server) = limited_endpoint(processes, limits).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        held.push(stream);
    }
    // The ninth is closed at once, unanswered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        if read_until_closed(&mut extra, Duration::from_secs(2))
            .await
            .is_some_and(|text| text.is_empty())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a ninth connection was kept"
        );
    }
    // Another address is still served: one client cannot take the endpoint from everyone.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let mut other = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut other, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Closing the held ones frees their slots.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if stream.write_all(head).await.is_ok()
            && read_until_closed(&mut stream, Duration::from_secs(2))
                .await
                .is_some_and(|text| text.starts_with("HTTP/1.1 200"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.abort();
}

#[tokio::test]
async fn hostile_clients_hold_bounded_resources() {
    let processes = Processes::start().expect("processes");
    a_client_that_sends_no_headers_is_let_go(&processes).await;
    unfinished_headers_are_bounded_in_bytes(&processes).await;
    connections_past_the_cap_are_closed_and_slots_come_back(&processes).await;
}
