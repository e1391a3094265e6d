//! drover's own log lines: `tracing` to stderr, text or JSON per `settings.log.format` (which a
//! reload may change), level from `RUST_LOG` (default `info`); and, when traces are exported,
//! the layer that hands drover's own `tracing` spans to OpenTelemetry.
//!
//! **Invariant**: writing a log line never blocks the thread that logs it. Lines go to a queue
//! bounded in bytes ([`QUEUE_BYTES`]); one thread, `drover-log`, does the blocking writes to
//! stderr. When stderr is a pipe nobody reads, lines are dropped and counted, and the count is
//! written once stderr drains again: supervision, `/healthz` and SIGTERM go on regardless.

use drover_spec::model::LogFormat;
use drover_supervisor::ratelimit::ByteBudget;
use opentelemetry_sdk::trace::SdkTracer;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, fmt, reload};

type LogLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Switches the format of drover's log lines while it runs (the default switches nothing).
#[derive(Clone, Default)]
pub(crate) struct LogFormatHandle(Option<reload::Handle<LogLayer, Registry>>);

impl LogFormatHandle {
    /// Writes the next lines in `format`.
    pub(crate) fn set(&self, format: LogFormat) {
        if let Some(handle) = &self.0
            && let Err(err) = handle.reload(log_layer(format))
        {
            tracing::warn!(error = %err, "cannot change the log format");
        }
    }
}

/// Bytes of log lines waiting for stderr before new lines are dropped.
pub(crate) const QUEUE_BYTES: usize = 1 << 20;
/// What a queued line costs beside its bytes (its `Vec` and channel slot): 16 384 empty lines
/// at most.
const LINE_COST: usize = 64;

/// The queue to the `drover-log` thread, shared by every format's layer.
#[derive(Clone)]
pub(crate) struct LogQueue(Arc<QueueShared>);

struct QueueShared {
    lines: mpsc::Sender<Vec<u8>>,
    queued_bytes: ByteBudget,
    dropped: AtomicU64,
}

static QUEUE: OnceLock<Option<LogQueue>> = OnceLock::new();

impl LogQueue {
    /// The queue, its thread started on first use; `None` if no thread could be started (then
    /// lines are written directly, as before).
    fn get() -> Option<LogQueue> {
        QUEUE.get_or_init(LogQueue::start).clone()
    }

    fn start() -> Option<LogQueue> {
        // Many short lines or a few long ones: the byte bound holds, each line counted with
        // its slot (LINE_COST). An unbounded channel grows with its lines; one bounded in lines
        // would hold every slot from the start (512 KiB for 16 384).
        let (lines, queue) = mpsc::channel::<Vec<u8>>();
        let shared = Arc::new(QueueShared {
            lines,
            queued_bytes: ByteBudget::new(QUEUE_BYTES),
            dropped: AtomicU64::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("drover-log".into())
            .spawn(move || {
                // Its writes to a closed stderr must not raise a SIGPIPE that `drover -- CMD`
                // would take for one sent to drover, and forward.
                let _ = drover_supervisor::block_sigpipe_on_this_thread();
                write_lines(&queue, &writer);
            })
            .ok()?;
        Some(LogQueue(shared))
    }

    /// Waits until the queue is empty or `limit` has passed (at exit: a blocked stderr must
    /// not keep drover from exiting).
    pub(crate) fn flush(limit: std::time::Duration) {
        let Some(Some(queue)) = QUEUE.get() else {
            return;
        };
        let step = std::time::Duration::from_millis(5);
        let mut waited = std::time::Duration::ZERO;
        while queue.0.queued_bytes.used() > 0 && waited < limit {
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// Writes `text` (a line of its own) to stderr through the queue when there is one, so that
    /// an error at exit cannot block on a stderr nobody reads; directly otherwise.
    pub(crate) fn print(text: &str) {
        match QUEUE.get() {
            Some(Some(queue)) => queue.push(format!("{text}\n").into_bytes()),
            _ => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("{text}");
                }
            }
        }
    }

    fn push(&self, line: Vec<u8>) {
        let shared = &self.0;
        let size = line.len().saturating_add(LINE_COST);
        if !shared.queued_bytes.reserve(size) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if shared.lines.send(line).is_err() {
            shared.queued_bytes.release(size);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `drover-log` thread: blocking writes to stderr, and the count of dropped lines once
/// they can be written again.
fn write_lines(queue: &mpsc::Receiver<Vec<u8>>, shared: &QueueShared) {
    let mut reported = 0u64;
    for line in queue {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&line);
        shared
            .queued_bytes
            .release(line.len().saturating_add(LINE_COST));
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            let _ = writeln!(
                stderr,
                "drover: {} log lines dropped: stderr was not being read",
                dropped - reported
            );
            reported = dropped;
        }
    }
}

/// One event's text, queued whole when the layer is done with it.
pub(crate) struct QueuedLine {
    text: Vec<u8>,
    queue: LogQueue,
}

impl Write for QueuedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if !self.text.is_empty() {
            self.queue.push(std::mem::take(&mut self.text));
        }
    }
}

/// Where a layer writes: the queue, or stderr itself when there is no queue thread.
#[derive(Clone)]
struct LogWriter(Option<LogQueue>);

impl<'a> fmt::MakeWriter<'a> for LogWriter {
    type Writer = Box<dyn Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match &self.0 {
            Some(queue) => Box::new(QueuedLine {
                text: Vec::new(),
                queue: queue.clone(),
            }),
            None => Box::new(std::io::stderr()),
        }
    }
}

fn log_layer(format: LogFormat) -> LogLayer {
    let ansi = std::io::stderr().is_terminal() && drover_supervisor::colour_allowed();
    let layer = fmt::layer()
        .with_writer(LogWriter(LogQueue::get()))
        .with_ansi(ansi)
        .with_target(false);
    match format {
        LogFormat::Text => layer.fmt_fields(ServiceFirst).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    }
}

/// Text lines about a service start with its name (`web: ready after 1.2s (...)`), read at a
/// glance; the fields follow as `tracing` writes them, `service=` too, so that what greps
/// for the fields still finds them. JSON lines keep the message as logged: their `service`
/// field names it.
struct ServiceFirst;

impl<'writer> fmt::FormatFields<'writer> for ServiceFirst {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut found = ServiceAndMessage::default();
        fields.record(&mut found);
        if let (Some(service), true) = (found.service, found.message)
            && !service.is_empty()
        {
            write!(writer, "{service}: ")?;
        }
        fmt::format::DefaultFields::new().format_fields(writer, fields)
    }
}

/// Whether an event has a message, and its `service` field.
#[derive(Default)]
struct ServiceAndMessage {
    service: Option<String>,
    message: bool,
}

impl tracing::field::Visit for ServiceAndMessage {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "service" {
            self.service = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = true,
            // A `%`-field is a `Display` seen through `Debug`: its text as written.
            "service" => self.service = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

/// Which of drover's lines are written.
pub(crate) enum Level<'a> {
    /// `RUST_LOG`'s filter; `default` when it is unset or invalid.
    FromEnv { default: &'a str },
    /// This level whatever `RUST_LOG` says (`--log-level`).
    Fixed(&'a str),
}

/// Installs the subscriber, its filter from `level`. With `tracer`, drover's own spans (those
/// whose target is a module of drover, never a library's) are exported too.
pub(crate) fn init(
    format: LogFormat,
    level: Level<'_>,
    tracer: Option<SdkTracer>,
) -> LogFormatHandle {
    let filter = match level {
        Level::FromEnv { default } => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
        }
        Level::Fixed(level) => EnvFilter::new(level),
    };
    let (log, handle) = reload::Layer::new(log_layer(format));
    // Only drover's spans: the exporter's HTTP client must never trace its own exports.
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target("drover", tracing::Level::INFO))
    });
    match tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(spans)
        .try_init()
    {
        Ok(()) => LogFormatHandle(Some(handle)),
        Err(_) => LogFormatHandle(None),
    }
}
