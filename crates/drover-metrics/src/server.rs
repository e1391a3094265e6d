//! The HTTP endpoint: `GET /metrics`, `GET /healthz`, `GET /readyz`. Any other path is 404, any
//! other method 405. HTTP/1.1 on the runtime, one task per connection.

use crate::Exporter;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `exporter` on `listener` until the task is dropped, which also ends every connection
/// it accepted (a scraper's keep-alive connection must not outlive a moved endpoint).
pub async fn serve(listener: TcpListener, exporter: Arc<Exporter>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics endpoint: cannot accept");
                    continue;
                }
            },
            // Reap finished connections as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let exporter = exporter.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let exporter = exporter.clone();
                async move { Ok::<_, Infallible>(respond(exporter, request).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics endpoint: connection ended");
            }
        });
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
        "/healthz" if exporter.healthy() => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the supervisor has stopped\n",
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
