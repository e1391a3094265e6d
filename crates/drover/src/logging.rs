//! drover's own log lines: `tracing` to stderr, text or JSON per `settings.log.format` (which a
//! reload may change), level from `RUST_LOG` (default `info`); and, when traces are exported,
//! the layer that hands drover's own `tracing` spans to OpenTelemetry.

use drover_spec::model::LogFormat;
use opentelemetry_sdk::trace::SdkTracer;
use std::io::IsTerminal;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, fmt, reload};

type LogLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Switches the format of drover's log lines while it runs.
#[derive(Clone)]
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

fn log_layer(format: LogFormat) -> LogLayer {
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    match format {
        LogFormat::Text => text.boxed(),
        LogFormat::Json => text.json().flatten_event(true).boxed(),
    }
}

/// Installs the subscriber. `default_level` applies when `RUST_LOG` is unset or invalid.
/// With `tracer`, drover's own spans (those whose target is a module of drover, never a
/// library's) are exported too.
pub(crate) fn init(
    format: LogFormat,
    default_level: &str,
    tracer: Option<SdkTracer>,
) -> LogFormatHandle {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
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
