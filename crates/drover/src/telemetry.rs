//! OpenTelemetry traces: the OTLP exporter, built only when an endpoint is configured, and the
//! spans of the services' lifecycles, rebuilt from the supervisor's events.
//!
//! Two sources feed one tracer provider:
//! - the lifecycle ([`trace_lifecycle`]): one `run SERVICE` span per run of a service, from its
//!   start to its end (pid, exit status, restart reason), with a `probe KIND` child span per
//!   probe check. They are rebuilt from [`Event`]s as they arrive (on the same thread, right
//!   after the change), and a probe span starts its measured duration before its event, so it
//!   covers the check itself; the supervisor does not know they exist.
//! - drover's own operations (`drain`, and the reload when it exists) are `tracing` spans,
//!   exported through `tracing-opentelemetry` (the layer is installed by `crate::logging`).
//!
//! **Invariant**: a collector that is down never slows supervision. Spans go to the SDK's batch
//! processor, a bounded queue drained by its own thread (spans beyond `OTEL_BSP_MAX_QUEUE_SIZE`,
//! default 2048, are dropped and counted by the SDK), and drover's exit waits at most
//! [`FLUSH_LIMIT`] for the last export.

use drover_supervisor::{Event, ExitStatus, HookEvent, ProbeEvent, State, StateChange, Supervisor};
use opentelemetry::trace::{Span as _, Status, TraceContextExt as _, Tracer as _, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::oneshot;

/// How long drover's exit waits for spans still queued to be exported.
pub(crate) const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The instrumentation scope of drover's spans.
const SCOPE: &str = "drover";

/// The span exporter, when one is configured.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
}

/// Why no exporter is built although an endpoint is set.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl Telemetry {
    /// The exporter the standard `OTEL_*` variables ask for, or `None` when they ask for none:
    /// no `OTEL_EXPORTER_OTLP_ENDPOINT` nor `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`. Without one, nothing is built
    /// and no connection is ever attempted.
    ///
    /// Call it before the tokio runtime starts: the HTTP client it builds is a blocking one.
    pub(crate) fn from_env() -> Result<Option<Telemetry>, Refused> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if var("OTEL_TRACES_EXPORTER")
            .is_some_and(|v| !v.split(',').any(|e| e.trim().eq_ignore_ascii_case("otlp")))
        {
            return Ok(None);
        }
        if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
            && var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_default();
        let protocol = match protocol.trim().to_ascii_lowercase().as_str() {
            "" | "http/protobuf" => Protocol::HttpBinary,
            "http/json" => Protocol::HttpJson,
            _ => {
                return Err(Refused(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: drover exports OTLP over HTTP only \
                     (http/protobuf, the default, or http/json; the collector's port 4318)"
                )));
            }
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build()
            .map_err(|err| Refused(format!("cannot build the OTLP exporter: {err}")))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        Ok(Some(Telemetry { provider }))
    }

    /// The tracer for drover's spans.
    pub(crate) fn tracer(&self) -> SdkTracer {
        self.provider.tracer(SCOPE)
    }

    /// Exports what is still queued, waiting at most [`FLUSH_LIMIT`]. Blocking: call it outside
    /// the runtime.
    pub(crate) fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(FLUSH_LIMIT) {
            tracing::warn!(error = %err, "spans still queued at exit were not all exported");
        }
    }
}

/// The resource every span carries: `service.name` from `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES`, else `drover`; `service.version`; the rest of
/// `OTEL_RESOURCE_ATTRIBUTES`.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    let builder = Resource::builder();
    let builder = if named {
        builder
    } else {
        builder.with_service_name("drover")
    };
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Turns the supervisor's events into run and probe spans, until told to stop (once the
/// supervisor has ended): it then reads the events still queued and ends the open runs.
pub(crate) fn trace_lifecycle(
    supervisor: &Supervisor,
    tracer: SdkTracer,
) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
    let mut events = supervisor.subscribe();
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut lifecycle = Lifecycle {
            tracer,
            runs: HashMap::new(),
            stops: HashMap::new(),
        };
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = &mut stopped => break,
            };
            lifecycle.event(event);
        }
        loop {
            match events.try_recv() {
                Ok(event) => lifecycle.event(Ok(event)),
                Err(TryRecvError::Lagged(missed)) => {
                    lifecycle.event(Err(RecvError::Lagged(missed)))
                }
                Err(_) => break,
            }
        }
        for (_, stop) in lifecycle.stops.drain() {
            stop.span().end();
        }
        for (_, run) in lifecycle.runs.drain() {
            run.span().end();
        }
    });
    (task, stop)
}

/// The open run span of each service, as a context that holds it, and the stop span inside it
/// while drover stops the run.
struct Lifecycle {
    tracer: SdkTracer,
    runs: HashMap<Arc<str>, Context>,
    stops: HashMap<Arc<str>, Context>,
}

impl Lifecycle {
    fn event(&mut self, event: Result<Event, RecvError>) {
        match event {
            Ok(Event::State(change)) => self.state(&change),
            Ok(Event::Probe(probe)) => self.probe(&probe),
            Ok(Event::Hook(hook)) => self.hook(&hook),
            // The reload span is the reloader's own (`crate::reload`).
            Ok(Event::Reload(_)) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "tracing fell behind the supervisor's events; some spans are incomplete"
                );
            }
            Err(RecvError::Closed) => {}
        }
    }

    fn state(&mut self, change: &StateChange) {
        if change.to == State::Starting {
            if let Some(previous) = self.runs.remove(&change.service) {
                previous.span().end();
            }
            let span = self
                .tracer
                .span_builder(format!("run {}", change.service))
                .with_attributes([KeyValue::new("drover.service", change.service.to_string())])
                .start_with_context(&self.tracer, &Context::new());
            self.runs
                .insert(change.service.clone(), Context::new().with_span(span));
            return;
        }
        self.stop_step(change);
        let Some(run) = self.runs.get(&change.service) else {
            return;
        };
        let span = run.span();
        // Its pid is known from the spawn on, which ends `starting`.
        if change.from == State::Starting
            && let Some(pid) = change.pid
        {
            span.set_attribute(KeyValue::new("process.pid", i64::from(pid)));
        }
        span.add_event(
            change.to.as_str(),
            vec![KeyValue::new("drover.reason", change.reason.clone())],
        );
        if !matches!(
            change.to,
            State::Backoff | State::Exited | State::Failed | State::Pending | State::Stopped
        ) {
            return;
        }
        span.set_attribute(KeyValue::new("drover.end_state", change.to.as_str()));
        span.set_attribute(KeyValue::new("drover.reason", change.reason.clone()));
        match change.exit {
            Some(ExitStatus::Exited(code)) => {
                span.set_attribute(KeyValue::new("process.exit.code", i64::from(code)));
            }
            Some(ExitStatus::Signaled(signal)) => {
                span.set_attribute(KeyValue::new("process.exit.signal", i64::from(signal)));
            }
            None => {}
        }
        if let Some(restart) = change.restart {
            span.set_attribute(KeyValue::new("drover.restart.reason", restart.as_str()));
        }
        let succeeded = change.exit.is_some_and(ExitStatus::success) && change.to != State::Failed;
        // A run that drover stopped (a drain, a reload) did not fail, whatever its signal.
        if !succeeded && !change.requested {
            span.set_status(Status::error(change.reason.clone()));
        }
        span.end();
        self.runs.remove(&change.service);
    }

    /// A stop drover began (from `running` or `ready`, not an exit) opens a `stop NAME` span
    /// under the run; each step of it (`stop.drain`, `pre_stop`, the signal, SIGKILL) is an
    /// event; the end of the run ends it.
    fn stop_step(&mut self, change: &StateChange) {
        let began = change.to == State::Stopping
            && matches!(change.from, State::Running | State::Ready)
            && change.exit.is_none();
        if began && let Some(run) = self.runs.get(&change.service) {
            let span = self
                .tracer
                .span_builder(format!("stop {}", change.service))
                .with_attributes([
                    KeyValue::new("drover.service", change.service.to_string()),
                    KeyValue::new("drover.reason", change.reason.clone()),
                ])
                .start_with_context(&self.tracer, run);
            self.stops
                .insert(change.service.clone(), run.with_span(span));
            return;
        }
        let Some(stop) = self.stops.get(&change.service) else {
            return;
        };
        if change.to == State::Stopping {
            stop.span().add_event(
                "step",
                vec![KeyValue::new("drover.reason", change.reason.clone())],
            );
        } else if let Some(stop) = self.stops.remove(&change.service) {
            stop.span().end();
        }
    }

    /// The innermost open span of `service` (its stop, else its run), or a fresh root.
    fn parent(&self, service: &str) -> Context {
        self.stops
            .get(service)
            .or_else(|| self.runs.get(service))
            .cloned()
            .unwrap_or_else(Context::new)
    }

    fn hook(&mut self, hook: &HookEvent) {
        let ended = SystemTime::now();
        let started = ended.checked_sub(hook.duration).unwrap_or(ended);
        let parent = self.parent(&hook.service);
        let mut span = self
            .tracer
            .span_builder(format!("{} {}", hook.kind.as_str(), hook.index))
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("drover.service", hook.service.to_string()),
                KeyValue::new("drover.hook", hook.kind.as_str()),
                KeyValue::new("drover.hook.index", hook.index as i64),
                KeyValue::new("drover.hook.result", hook.outcome.as_str()),
                KeyValue::new("drover.hook.message", hook.message.clone()),
            ])
            .start_with_context(&self.tracer, &parent);
        if hook.outcome != drover_supervisor::HookOutcome::Success {
            span.set_status(Status::error(hook.message.clone()));
        }
        span.end_with_timestamp(ended);
    }

    fn probe(&mut self, probe: &ProbeEvent) {
        let ended = SystemTime::now();
        let started = ended.checked_sub(probe.duration).unwrap_or(ended);
        let parent = self.parent(&probe.service);
        let mut span = self
            .tracer
            .span_builder(format!("probe {}", probe.kind.as_str()))
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("drover.service", probe.service.to_string()),
                KeyValue::new("drover.probe", probe.kind.as_str()),
                KeyValue::new("drover.probe.result", probe.outcome.as_str()),
                KeyValue::new("drover.probe.message", probe.message.clone()),
            ])
            .start_with_context(&self.tracer, &parent);
        if probe.outcome != drover_supervisor::CheckOutcome::Success {
            span.set_status(Status::error(probe.message.clone()));
        }
        span.end_with_timestamp(ended);
    }
}
