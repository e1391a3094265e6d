//! drover's own log lines: `tracing` to stderr, text or JSON per `settings.log.format`, level
//! from `RUST_LOG` (default `info`); and, when traces are exported, the layer that hands
//! drover's own `tracing` spans to OpenTelemetry.

use drover_spec::model::LogFormat;
use opentelemetry_sdk::trace::SdkTracer;
use std::io::IsTerminal;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// Installs the subscriber. `default_level` applies when `RUST_LOG` is unset or invalid.
/// With `tracer`, drover's own spans (those whose target is a module of drover, never a
/// library's) are exported too.
pub(crate) fn init(format: LogFormat, default_level: &str, tracer: Option<SdkTracer>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let log = match format {
        LogFormat::Text => text.boxed(),
        LogFormat::Json => text.json().flatten_event(true).boxed(),
    };
    // Only drover's spans: the exporter's HTTP client must never trace its own exports.
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target("drover", tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(spans)
        .try_init();
}
