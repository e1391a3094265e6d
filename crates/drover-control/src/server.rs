//! The control socket's server: HTTP/1.1 over the Unix socket, JSON bodies, under `/v1/`.
//!
//! Every connection's peer is checked first (`SO_PEERCRED`): root, drover's own user, or a
//! member of `settings.control.group`; anyone else gets `403` on every request, and a log
//! line. What a client can hold is bounded: [`MAX_CONNECTIONS`] at once (more wait to be
//! accepted), [`MAX_STREAMS`] of them event streams, request headers within
//! [`HEADER_READ_TIMEOUT`] and [`MAX_HEADER_BYTES`], bodies within [`MAX_BODY_BYTES`]. Nothing
//! here waits on the supervisor's loop without a deadline, and the loop never waits on a
//! client: operations go in as `Control` messages and answers come back on channels; a
//! client that does not read its event stream only loses events (counted in a `lagged` line).

use crate::api::{ErrorAnswer, OperationAnswer, ReloadAnswer, ServiceStatus, Status};
use crate::listen::ControlListener;
use drover_supervisor::ratelimit::LogRateLimit;
use drover_supervisor::{Control, Event, HandOp, OpAnswer, ServiceSnapshot, State, Supervisor};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Connections served at once; more wait in the listen queue until one ends.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Event streams served at once (each holds a connection for as long as its client likes).
const MAX_STREAMS: usize = 64;
/// `logs` answers served at once, followed or not (each holds up to [`MAX_LOG_ANSWER_BYTES`]
/// until its client has read it).
const MAX_LOG_ANSWERS: usize = 16;
/// The most text one `logs` answer copies out of the rings (its newest lines).
const MAX_LOG_ANSWER_BYTES: usize = 2 << 20;
/// Time for a request's body, once its headers are in.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection serving no stream is kept (a client that does not read its answer
/// holds nothing longer).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Time for a request's headers, from the connection's start or the previous response.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of request buffered per connection (hyper's smallest allowed buffer).
pub(crate) const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The largest request body read.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long an operation is waited for when the request does not say (`timeout=`).
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// How long a reload's answer is waited for.
const RELOAD_WAIT: Duration = Duration::from_secs(120);
/// Chunks of an event stream queued for a client that reads slowly.
const STREAM_QUEUE: usize = 64;

/// A reload asked through the socket; answered once it is over.
pub type ReloadRequest = oneshot::Sender<ReloadAnswer>;

/// Who may use the socket, besides root.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    /// drover's own (effective) uid.
    pub uid: u32,
    /// `settings.control.group`, resolved.
    pub group: Option<u32>,
}

impl Access {
    /// Root, this process's user, and members of `group`.
    pub fn this_user_and(group: Option<u32>) -> Access {
        Access {
            uid: drover_sys::effective_uid(),
            group,
        }
    }
}

/// Requests served, by operation and result: `drover_control_requests_total`.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Stats {
    /// Counts one request.
    pub fn count(&self, operation: &'static str, result: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry((operation, result)).or_default();
        *count = count.saturating_add(1);
    }

    /// Every (operation, result) with its count.
    pub fn snapshot(&self) -> Vec<((&'static str, &'static str), u64)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().map(|(key, count)| (*key, *count)).collect()
    }
}

/// What the server needs of the rest of drover.
pub struct Server {
    supervisor: Supervisor,
    reload: Option<mpsc::UnboundedSender<ReloadRequest>>,
    access: Access,
    stats: Arc<Stats>,
    /// Event streams open now.
    streams: Arc<std::sync::atomic::AtomicUsize>,
    /// `logs` answers being sent now.
    log_answers: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the metrics endpoint listens now, for `status`.
    metrics_address: MetricsAddress,
}

/// Reads where the metrics endpoint listens now.
pub type MetricsAddress = Arc<dyn Fn() -> Option<std::net::SocketAddr> + Send + Sync>;

impl Server {
    /// A server for `supervisor`; `reload` carries `POST /v1/reload` to whoever reloads (none:
    /// the endpoint answers 503).
    pub fn new(
        supervisor: Supervisor,
        reload: Option<mpsc::UnboundedSender<ReloadRequest>>,
        access: Access,
        stats: Arc<Stats>,
    ) -> Server {
        Server {
            supervisor,
            reload,
            access,
            stats,
            streams: Arc::default(),
            log_answers: Arc::default(),
            metrics_address: Arc::new(|| None),
        }
    }

    /// `status` names the metrics endpoint's URL, read from `address` at each request.
    #[must_use]
    pub fn with_metrics_address(mut self, address: MetricsAddress) -> Server {
        self.metrics_address = address;
        self
    }

    /// The request counts.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

/// The peer of one connection.
#[derive(Clone, Copy, Debug)]
struct Peer {
    uid: u32,
    pid: Option<i32>,
    allowed: bool,
}

/// Serves `listener` until the task is dropped (which ends every connection it accepted).
pub async fn serve(listener: ControlListener, server: Arc<Server>) {
    let mut connections = tokio::task::JoinSet::new();
    let mut accept_errors = LogRateLimit::new(3, Duration::from_secs(10));
    let mut refusals = LogRateLimit::new(3, Duration::from_secs(10));
    let mut backoff = Duration::from_millis(10);
    loop {
        // At the limit, the next connection waits in the kernel's queue for one to end.
        if connections.len() >= MAX_CONNECTIONS {
            let _ = connections.join_next().await;
            continue;
        }
        let stream = tokio::select! {
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(10);
                    stream
                }
                Err(err) => {
                    if let Some(held) = accept_errors.allow(tokio::time::Instant::now()) {
                        tracing::warn!(error = %err, held_back = held, "control socket: cannot accept");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(Duration::from_secs(1));
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        while connections.try_join_next().is_some() {}
        let peer = peer_of(&stream, server.access);
        if !peer.allowed && refusals.allow(tokio::time::Instant::now()).is_some() {
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "control socket: refused a client that is neither root, drover's user nor in settings.control.group"
            );
        }
        let server = server.clone();
        connections.spawn(async move {
            // Set once this connection answers with a stream: it may then live as long as its
            // client reads.
            let streaming = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let marks = streaming.clone();
            let service = service_fn(move |request| {
                let (server, marks) = (server.clone(), marks.clone());
                async move {
                    let response = respond(&server, peer, request).await;
                    if matches!(response.body(), Body::Stream(_)) {
                        marks.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let ended = loop {
                tokio::select! {
                    ended = connection.as_mut() => break ended,
                    () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                        if !streaming.load(std::sync::atomic::Ordering::Relaxed) {
                            // Closed once its current answer is out, or soon after if the
                            // client does not read it.
                            connection.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, connection.as_mut()).await;
                            return;
                        }
                    }
                }
            };
            if let Err(err) = ended {
                tracing::debug!(error = %err, "control socket: connection ended");
            }
        });
    }
}

/// Who is on the other end, and whether they may use the socket.
fn peer_of(stream: &tokio::net::UnixStream, access: Access) -> Peer {
    let Ok(cred) = stream.peer_cred() else {
        return Peer {
            uid: u32::MAX,
            pid: None,
            allowed: false,
        };
    };
    let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
    let in_group = access.group.is_some_and(|group| {
        gid == group || pid.is_some_and(|pid| supplementary_groups(pid).contains(&group))
    });
    Peer {
        uid,
        pid,
        allowed: uid == 0 || uid == access.uid || in_group,
    }
}

/// The supplementary groups of process `pid`, from the `Groups:` line of
/// `/proc/<pid>/status` (bounded read; empty when it cannot be read).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|file| file.take(16 * 1024).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_ascii_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A response body: whole, or a stream of chunks from a channel.
enum Body {
    Whole(Full<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Whole(full) => Pin::new(full).poll_frame(cx),
            Body::Stream(chunks) => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut response = Response::new(Body::Whole(Full::new(json_line(value))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &ErrorAnswer {
            error: message.into(),
        },
    )
}

async fn respond(server: &Server, peer: Peer, request: Request<Incoming>) -> Response<Body> {
    if !peer.allowed {
        server.stats.count("any", "forbidden");
        return error(
            StatusCode::FORBIDDEN,
            "not allowed: only root, drover's user and settings.control.group may use this socket",
        );
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = query_pairs(request.uri().query().unwrap_or(""));
    // Bodies are not used yet; a client may send one, bounded in size and time.
    let body = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, body).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(BODY_READ_TIMEOUT)
                ),
            );
        }
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (parts.as_slice(), &method) {
        (["v1", "status"], &Method::GET) => status(server, &query),
        (["v1", "services", name, "signal"], &Method::POST) => {
            signal(server, peer, name, &query).await
        }
        (["v1", "services", name, op], &Method::POST) => match hand_op(op) {
            Some(op) => operate(server, peer, name, op, &query).await,
            None => error(
                StatusCode::NOT_FOUND,
                format!("unknown operation `{op}`: start, stop, restart or signal"),
            ),
        },
        (["v1", "events"], &Method::GET) => events(server),
        (["v1", "logs"], &Method::GET) => logs(server, &query),
        (["v1", "reload"], &Method::POST) => reload(server, peer).await,
        (["v1", "status"] | ["v1", "events"] | ["v1", "logs"], _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "only GET here")
        }
        (["v1", "reload"] | ["v1", "services", _, _], _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "only POST here")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no endpoint `{path}`: /v1/status, /v1/services/NAME/(start|stop|restart|signal), /v1/logs, /v1/events, /v1/reload"
            ),
        ),
    }
}

fn hand_op(op: &str) -> Option<HandOp> {
    match op {
        "start" => Some(HandOp::Start),
        "stop" => Some(HandOp::Stop),
        "restart" => Some(HandOp::Restart),
        _ => None,
    }
}

/// `a=1&b=x%20y` as pairs, percent-decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|&c| char::from(c).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn query_bool(query: &[(String, String)], key: &str, default: bool) -> Result<bool, String> {
    match query_value(query, key) {
        None => Ok(default),
        Some("" | "true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(format!("`{key}={other}`: expected true or false")),
    }
}

/// Whether `name` is a service now; if not, the error answer names the closest one.
fn known(server: &Server, name: &str) -> Result<(), Box<Response<Body>>> {
    let names: Vec<String> = server
        .supervisor
        .snapshot()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    if names.iter().any(|n| n == name) {
        return Ok(());
    }
    let mut message = format!("no service `{name}`");
    if let Some(close) = drover_spec::did_you_mean(name, names.iter().map(String::as_str)) {
        message.push_str(&format!("; did you mean `{close}`?"));
    }
    Err(Box::new(error(StatusCode::NOT_FOUND, message)))
}

fn status(server: &Server, query: &[(String, String)]) -> Response<Body> {
    let wanted: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str())
        .collect();
    for name in &wanted {
        if let Err(response) = known(server, name) {
            server.stats.count("status", "unknown");
            return *response;
        }
    }
    let services = server
        .supervisor
        .snapshot()
        .iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&&*s.name))
        .map(service_status)
        .collect();
    server.stats.count("status", "done");
    let metrics = (server.metrics_address)().map(|address| format!("http://{address}/metrics"));
    json(StatusCode::OK, &Status { services, metrics })
}

fn service_status(s: &ServiceSnapshot) -> ServiceStatus {
    let runs = matches!(s.state, State::Running | State::Ready | State::Stopping);
    ServiceStatus {
        name: s.name.to_string(),
        state: s.state.to_string(),
        reason: s.reason.clone(),
        pid: s.pid,
        uptime_seconds: s
            .started_at
            .filter(|_| runs)
            .map(|at| at.elapsed().as_secs_f64()),
        starts: s.starts,
        restarts: s.restarts,
        ready: s.state == State::Ready,
        last_exit: s.last_exit.map(|e| e.to_string()),
        status: s.status.clone(),
    }
}

/// `timeout=` of a request: a duration (`10s`, `500ms`), at most an hour.
fn wait_limit(query: &[(String, String)]) -> Result<Duration, String> {
    let Some(text) = query_value(query, "timeout") else {
        return Ok(DEFAULT_WAIT);
    };
    match humantime::parse_duration(text) {
        Ok(limit) if limit <= MAX_WAIT => Ok(limit),
        Ok(_) => Err(format!("`timeout={text}`: at most 1h")),
        Err(err) => Err(format!("`timeout={text}`: {err}")),
    }
}

async fn operate(
    server: &Server,
    peer: Peer,
    name: &str,
    op: HandOp,
    query: &[(String, String)],
) -> Response<Body> {
    let operation = op.as_str();
    if let Err(response) = known(server, name) {
        server.stats.count(operation, "unknown");
        return *response;
    }
    let (wait, limit) = match (query_bool(query, "wait", true), wait_limit(query)) {
        (Ok(wait), Ok(limit)) => (wait, limit),
        (Err(why), _) | (_, Err(why)) => return error(StatusCode::BAD_REQUEST, why),
    };
    let span = tracing::info_span!("control", operation, service = name, uid = peer.uid);
    tracing::info!(
        parent: &span,
        uid = peer.uid,
        pid = peer.pid,
        "control: {operation} {name}, asked by uid {} (pid {})",
        peer.uid,
        peer.pid.map_or_else(|| "?".to_string(), |p| p.to_string())
    );
    let (answers, mut answered) = mpsc::unbounded_channel();
    server.supervisor.send(Control::Operate {
        service: name.to_string(),
        op,
        answers,
    });
    let answer = |result: &str, message: String| OperationAnswer {
        service: name.to_string(),
        operation: operation.to_string(),
        result: result.to_string(),
        message,
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, answered.recv()).await;
        match next {
            Ok(Some(OpAnswer::Accepted)) if !wait => {
                server.stats.count(operation, "accepted");
                return json(StatusCode::ACCEPTED, &answer("accepted", "accepted".into()));
            }
            Ok(Some(OpAnswer::Accepted)) => continue,
            Ok(Some(OpAnswer::Done(message))) => {
                server.stats.count(operation, "done");
                return json(StatusCode::OK, &answer("done", message));
            }
            Ok(Some(OpAnswer::Failed(message))) => {
                server.stats.count(operation, "failed");
                return json(StatusCode::CONFLICT, &answer("failed", message));
            }
            Ok(None) => {
                server.stats.count(operation, "failed");
                return error(StatusCode::SERVICE_UNAVAILABLE, "drover has stopped");
            }
            Err(_) => {
                server.stats.count(operation, "timeout");
                let message = format!(
                    "not done within {}; it goes on",
                    humantime::format_duration(limit)
                );
                return json(StatusCode::GATEWAY_TIMEOUT, &answer("timeout", message));
            }
        }
    }
}

async fn signal(
    server: &Server,
    peer: Peer,
    name: &str,
    query: &[(String, String)],
) -> Response<Body> {
    if let Err(response) = known(server, name) {
        server.stats.count("signal", "unknown");
        return *response;
    }
    let Some(text) = query_value(query, "signal") else {
        return error(StatusCode::BAD_REQUEST, "which signal? `signal=TERM`");
    };
    let Some(number) = parse_signal(text) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown signal `{text}`: a name (TERM, SIGHUP) or a number"),
        );
    };
    let group = match query_bool(query, "group", false) {
        Ok(group) => group,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let span = tracing::info_span!(
        "control",
        operation = "signal",
        service = name,
        uid = peer.uid
    );
    tracing::info!(
        parent: &span,
        uid = peer.uid,
        pid = peer.pid,
        "control: signal {text} to {name}{}, asked by uid {}",
        if group { " (its process group)" } else { "" },
        peer.uid
    );
    let (answer, answered) = oneshot::channel();
    server.supervisor.send(Control::Signal {
        service: name.to_string(),
        signal: number,
        group,
        answer,
    });
    let reply = |result: &str, message: String| OperationAnswer {
        service: name.to_string(),
        operation: "signal".into(),
        result: result.to_string(),
        message,
    };
    match tokio::time::timeout(DEFAULT_WAIT, answered).await {
        Ok(Ok(Ok(message))) => {
            server.stats.count("signal", "done");
            json(StatusCode::OK, &reply("done", message))
        }
        Ok(Ok(Err(message))) => {
            server.stats.count("signal", "failed");
            json(StatusCode::CONFLICT, &reply("failed", message))
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "drover has stopped"),
    }
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (1 to 64).
pub fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return (1..=64).contains(&number).then_some(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    drover_spec::model::Signal::from_name(&name).map(|s| s.number())
}

fn events(server: &Server) -> Response<Body> {
    use std::sync::atomic::Ordering;
    let streams = server.streams.clone();
    if streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::Relaxed);
        server.stats.count("events", "refused");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already"),
        );
    }
    server.stats.count("events", "done");
    let mut events = server.supervisor.subscribe();
    let (chunks, body) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        // Counted out however the stream ends.
        let _open = OpenStream(streams);
        loop {
            // A client that has gone is noticed at once, not at the next event.
            let received = tokio::select! {
                biased;
                () = chunks.closed() => break,
                received = events.recv() => received,
            };
            let chunk = match received {
                Ok(event) => json_line(&event_json(&event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => lagged(missed),
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if chunks.send(chunk).await.is_err() {
                break;
            }
        }
    });
    ndjson(body)
}

/// A streamed answer of JSON lines.
fn ndjson(body: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::Stream(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// `value` as one JSON line.
fn json_line(value: &impl serde::Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The line telling a stream's client how many items it missed for reading too slowly.
fn lagged(missed: u64) -> Bytes {
    json_line(&serde_json::json!({ "type": "lagged", "missed": missed }))
}

/// Lines `drover logs` shows per service when it does not say.
const DEFAULT_LOG_LINES: usize = 100;

/// `GET /v1/logs?service=web&lines=N&follow=true`: the last lines of each service asked for
/// (every one without `service=`), then, with `follow`, every new line; JSON lines.
fn logs(server: &Server, query: &[(String, String)]) -> Response<Body> {
    use std::sync::atomic::Ordering;
    let services: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .collect();
    for name in &services {
        if let Err(response) = known(server, name) {
            server.stats.count("logs", "unknown");
            return *response;
        }
    }
    let lines = match query_value(query, "lines").map(str::parse::<usize>) {
        None => DEFAULT_LOG_LINES,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "`lines=` is a number"),
    };
    let follow = match query_bool(query, "follow", false) {
        Ok(follow) => follow,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    // Subscribed before the recent lines are read: no line falls between the two.
    let followed = if follow {
        server.supervisor.follow_output()
    } else {
        None
    };
    let answers = server.log_answers.clone();
    if answers.fetch_add(1, Ordering::Relaxed) >= MAX_LOG_ANSWERS {
        answers.fetch_sub(1, Ordering::Relaxed);
        server.stats.count("logs", "refused");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_LOG_ANSWERS} logs answers are being sent already"),
        );
    }
    let answer_slot = OpenStream(answers);
    let Some(recent) = server
        .supervisor
        .recent_output(&services, lines, MAX_LOG_ANSWER_BYTES)
    else {
        server.stats.count("logs", "failed");
        return error(
            StatusCode::CONFLICT,
            "drover does not read the services' output (settings.log.service_output is not prefix): no logs are kept",
        );
    };
    let streams = server.streams.clone();
    if follow && streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::Relaxed);
        server.stats.count("logs", "refused");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} streams are open already"),
        );
    }
    server.stats.count("logs", "done");
    let (chunks, body) = mpsc::channel(STREAM_QUEUE);
    tokio::spawn(async move {
        let _answer = answer_slot;
        let _open = follow.then(|| OpenStream(streams));
        let mut last = None;
        for line in recent {
            last = Some(line.seq);
            if chunks.send(line_json(&line)).await.is_err() {
                return;
            }
        }
        let Some(mut followed) = followed else { return };
        loop {
            // A client that has gone is noticed at once, not at the next line.
            let received = tokio::select! {
                biased;
                () = chunks.closed() => return,
                received = followed.recv() => received,
            };
            let chunk = match received {
                Ok(line) if last.is_some_and(|seq| line.seq <= seq) => continue,
                Ok(line)
                    if services.is_empty() || services.iter().any(|s| **s == *line.service) =>
                {
                    line_json(&line)
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => lagged(missed),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if chunks.send(chunk).await.is_err() {
                return;
            }
        }
    });
    ndjson(body)
}

/// One output line as the JSON line `drover logs` reads.
fn line_json(line: &drover_supervisor::OutputLine) -> Bytes {
    json_line(&serde_json::json!({
        "service": &*line.service,
        "stream": if line.stderr { "stderr" } else { "stdout" },
        "line": line.text,
    }))
}

/// An open event stream, counted out when it ends.
struct OpenStream(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One event as the JSON line `drover events` prints.
fn event_json(event: &Event) -> serde_json::Value {
    match event {
        Event::State(change) => serde_json::json!({
            "type": "state",
            "service": &*change.service,
            "from": change.from.as_str(),
            "to": change.to.as_str(),
            "pid": change.pid,
            "exit": change.exit.map(|e| e.to_string()),
            "restart": change.restart.map(|r| r.as_str()),
            "reason": change.reason,
        }),
        Event::Probe(probe) => serde_json::json!({
            "type": "probe",
            "service": &*probe.service,
            "probe": probe.kind.as_str(),
            "outcome": probe.outcome.as_str(),
            "duration_ms": probe.duration.as_secs_f64() * 1000.0,
            "message": probe.message,
        }),
        Event::Reload(plan) => serde_json::json!({
            "type": "reload",
            "plan": plan.to_string(),
        }),
        Event::Hook(hook) => serde_json::json!({
            "type": "hook",
            "service": &*hook.service,
            "hook": hook.kind.as_str(),
            "index": hook.index,
            "outcome": hook.outcome.as_str(),
            "duration_ms": hook.duration.as_secs_f64() * 1000.0,
            "message": hook.message,
        }),
    }
}

async fn reload(server: &Server, peer: Peer) -> Response<Body> {
    let Some(reloads) = &server.reload else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reload is not available here",
        );
    };
    tracing::info!(
        uid = peer.uid,
        pid = peer.pid,
        "control: reload, asked by uid {}",
        peer.uid
    );
    let (answer, answered) = oneshot::channel();
    if reloads.send(answer).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "drover has stopped");
    }
    match tokio::time::timeout(RELOAD_WAIT, answered).await {
        Ok(Ok(answer)) if answer.applied => {
            server.stats.count("reload", "done");
            json(StatusCode::OK, &answer)
        }
        Ok(Ok(answer)) => {
            server.stats.count("reload", "failed");
            json(StatusCode::UNPROCESSABLE_ENTITY, &answer)
        }
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reload was not answered",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_signals_parse_by_name_or_number() {
        let pairs = query_pairs("service=a&service=b%2Dc&wait=false&x");
        assert_eq!(query_value(&pairs, "wait"), Some("false"));
        assert_eq!(query_value(&pairs, "x"), Some(""));
        let services: Vec<_> = pairs
            .iter()
            .filter(|(k, _)| k == "service")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(services, ["a", "b-c"]);
        assert_eq!(
            percent_decode("%zz%4"),
            "%zz%4",
            "bad escapes stay as they are"
        );
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sighup"), Some(1));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("NOPE"), None);
    }
}
