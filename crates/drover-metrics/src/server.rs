//! The HTTP endpoint: `GET /metrics`, `GET /healthz`, `GET /readyz`. Any other path is 404, any
//! other method 405. HTTP/1.1 on the runtime, one task per connection.
//!
//! Every resource a client can hold is bounded, because anyone who can reach the port is a
//! client: at most [`MAX_CONNECTIONS`] at once and [`MAX_CONNECTIONS_PER_PEER`] from one
//! address (more are closed at once), request headers
//! within [`HEADER_READ_TIMEOUT`] and [`MAX_HEADER_BYTES`], and a connection lives at most
//! [`CONNECTION_LIFETIME`]: then it is closed once its current response is written, or
//! [`WRITE_TIMEOUT`] later if the client does not read it (a scraper reconnects). A failing `accept`
//! (EMFILE) backs off instead of spinning, and is logged at a bounded rate.

use crate::Exporter;
use drover_supervisor::ratelimit::LogRateLimit;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Connections served at once; a scraper needs one, a few people with curl a few more.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections served at once from one address: one client holding idle sockets must not take
/// the endpoint (and a liveness probe on `/healthz`) away from everyone else.
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// Time for a request's headers, from the connection's start or the previous response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of request buffered per connection (hyper's smallest allowed buffer).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The longest a connection is kept, however busy.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// After [`CONNECTION_LIFETIME`], the time its last response has to be written.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits after a failed `accept`: from the first to the longest.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `exporter` on `listener` until the task is dropped, which also ends every connection
/// it accepted (a scraper's keep-alive connection must not outlive a moved endpoint).
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>) {
    serve_with(listener, exporter, Limits::default()).await;
}

/// What one client may hold of the endpoint; [`Limits::default`] is what drover uses (tests
/// shorten the times).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed as they come.
    pub max_connections: usize,
    /// Connections served at once from one peer address.
    pub max_per_peer: usize,
    /// Time for a request's headers.
    pub header_read_timeout: Duration,
    /// The longest a connection is kept.
    pub connection_lifetime: Duration,
    /// After that, the time its last response has to be written.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_per_peer: MAX_CONNECTIONS_PER_PEER,
            header_read_timeout: HEADER_READ_TIMEOUT,
            connection_lifetime: CONNECTION_LIFETIME,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// As [`serve`], with `limits`.
pub async fn serve_with(listener: TcpListener, exporter: Arc<Exporter>, limits: Limits) {
    let mut connections = tokio::task::JoinSet::new();
    let mut accept_errors = LogRateLimit::new(3, Duration::from_secs(10));
    let mut refusals = LogRateLimit::new(3, Duration::from_secs(10));
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF.0;
                    (stream, peer.ip())
                }
                Err(err) => {
                    // EMFILE and ENFILE stay until something closes: retrying at once spun at
                    // 100% CPU. Wait, longer each time, and say so now and then.
                    if let Some(held) = accept_errors.allow(tokio::time::Instant::now()) {
                        tracing::warn!(error = %err, held_back = held, retry_in_ms = backoff.as_millis() as u64, "metrics endpoint: cannot accept");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
            // Reap finished connections as they end, so the set stays small.
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                release(&mut per_peer, ended);
                continue;
            }
        };
        let (stream, peer) = stream;
        // Connections that have ended free their slots first.
        while let Some(ended) = connections.try_join_next() {
            release(&mut per_peer, ended);
        }
        let from_peer = per_peer.get(&peer).copied().unwrap_or(0);
        if connections.len() >= limits.max_connections || from_peer >= limits.max_per_peer {
            if let Some(held) = refusals.allow(tokio::time::Instant::now()) {
                tracing::warn!(
                    limit = limits.max_connections,
                    held_back = held,
                    "metrics endpoint: too many connections; closing a new one"
                );
            }
            drop(stream);
            continue;
        }
        *per_peer.entry(peer).or_default() += 1;
        let exporter = exporter.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let exporter = exporter.clone();
                async move { Ok::<_, Infallible>(respond(exporter, request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = tokio::time::sleep(limits.connection_lifetime) => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(limits.write_timeout, connection.as_mut()).await {
                        Ok(ended) => ended,
                        Err(_) => return peer,
                    }
                }
            };
            if let Err(err) = ended {
                tracing::debug!(error = %err, "metrics endpoint: connection ended");
            }
            peer
        });
    }
}

/// Frees the per-peer slot of an ended connection.
fn release(per_peer: &mut HashMap<IpAddr, usize>, ended: Result<IpAddr, tokio::task::JoinError>) {
    if let Ok(peer) = ended
        && let Some(count) = per_peer.get_mut(&peer)
    {
        *count = count.saturating_sub(1);
        if *count == 0 {
            per_peer.remove(&peer);
        }
    }
}

async fn respond(exporter: Arc<Exporter>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            // Rendering 1000 services takes milliseconds: on a blocking thread, so that the
            // supervisor's loop (the same runtime thread) never waits for a scrape.
            let body = match tokio::task::spawn_blocking(move || exporter.render()).await {
                Ok(body) => body,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics: rendering failed");
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot render the metrics\n",
                    );
                }
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(PROMETHEUS_TEXT),
            );
            response
        }
        "/healthz" if exporter.healthy().await => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the supervisor has stopped or does not answer\n",
        ),
        _ => {
            let waiting = exporter.not_ready();
            if waiting.is_empty() {
                text(StatusCode::OK, "ready\n")
            } else {
                let mut body = String::from("not ready:\n");
                for (name, state) in waiting {
                    body.push_str(&format!("{name} {state}\n"));
                }
                text(StatusCode::SERVICE_UNAVAILABLE, &body)
            }
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
