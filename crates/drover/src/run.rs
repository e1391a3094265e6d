//! `drover run`: supervise a manifest until told to stop, then drain.
//!
//! Signals, per the contract: SIGTERM, SIGINT and SIGQUIT drain within
//! `settings.shutdown_timeout`, and a second one of them kills everything at once; SIGHUP asks
//! for a reload; SIGUSR1, SIGUSR2 and SIGWINCH go to every running service's process group.

use anyhow::Context as _;
use drover_spec::model::{Manifest, Signal};
use drover_supervisor::{Control, Processes, Supervisor};
use std::sync::PoisonError;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long descendants that outlived their services get between SIGTERM and SIGKILL when
/// drover exits.
const DESCENDANT_GRACE: Duration = Duration::from_secs(2);

/// Runs `manifest` to the end, serving metrics on `metrics` if given and tracing the services'
/// lifecycles with `tracer` if given; returns drover's exit code.
pub(crate) async fn run(
    manifest: Manifest,
    metrics: Option<std::net::TcpListener>,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> anyhow::Result<i32> {
    if !drover_supervisor::is_pid1() {
        // Without it, grandchildren of services whose parent dies go to the host's init, and
        // drover could neither reap them nor stop them.
        if let Err(err) = drover_supervisor::become_subreaper() {
            tracing::warn!(error = %err, "cannot become child subreaper; orphans of services will not be reaped by drover");
        }
    }
    // Signal handlers before the first fork, so that no signal is lost (and, as PID 1, none is
    // ignored for lack of a handler).
    let signals = Signals::install().context("cannot install signal handlers")?;
    let processes = Processes::start().context("cannot start the process reaper")?;
    let (supervisor, done) =
        Supervisor::start(manifest, processes.clone()).context("cannot start the supervisor")?;
    let endpoint = match metrics {
        Some(listener) => Some(serve_metrics(listener, &supervisor, &processes)?),
        None => None,
    };
    let lifecycle = tracer.map(|tracer| crate::telemetry::trace_lifecycle(&supervisor, tracer));
    let drain = DrainSpan::default();
    let relay = tokio::spawn(signals.relay(supervisor.clone(), drain.clone()));
    let announce = crate::systemd::announce_ready(&supervisor);
    let code = done.await.context("the supervisor task failed")?;
    drain.end(code);
    relay.abort();
    if let Some((task, stop)) = lifecycle {
        let _ = stop.send(());
        let _ = task.await;
    }
    if let Some(announce) = announce {
        announce.abort();
    }
    for task in endpoint.into_iter().flatten() {
        task.abort();
    }
    let leftovers = processes.end_descendants(DESCENDANT_GRACE).await;
    if leftovers > 0 {
        tracing::info!(
            count = leftovers,
            "ended processes that outlived their services"
        );
    }
    tracing::info!(code, orphans_reaped = processes.orphans_reaped(), "exiting");
    Ok(code)
}

/// Starts the metrics endpoint on `listener`: its server task and its probe-counting task.
fn serve_metrics(
    listener: std::net::TcpListener,
    supervisor: &Supervisor,
    processes: &Processes,
) -> anyhow::Result<[tokio::task::JoinHandle<()>; 2]> {
    let exporter = drover_metrics::Exporter::new(supervisor.clone(), processes.clone())
        .context("cannot set up the metrics")?;
    listener
        .set_nonblocking(true)
        .context("cannot set up the metrics listener")?;
    let address = listener.local_addr().context("metrics listener")?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("cannot set up the metrics listener")?;
    tracing::info!(%address, "metrics on http://{address}/metrics");
    let probes = exporter.record_probes();
    let server = tokio::spawn(drover_metrics::serve(listener, exporter));
    Ok([server, probes])
}

struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
    window: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
            window: signal(SignalKind::window_change())?,
        })
    }

    async fn relay(mut self, supervisor: Supervisor, drain: DrainSpan) {
        let mut stops = 0u32;
        loop {
            let stop = tokio::select! {
                _ = self.terminate.recv() => Signal::SIGTERM,
                _ = self.interrupt.recv() => Signal::SIGINT,
                _ = self.quit.recv() => Signal::SIGQUIT,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the manifest is not implemented yet; nothing changed");
                    continue;
                }
                _ = self.user1.recv() => { supervisor.send(Control::Forward(Signal::SIGUSR1)); continue; }
                _ = self.user2.recv() => { supervisor.send(Control::Forward(Signal::SIGUSR2)); continue; }
                _ = self.window.recv() => { supervisor.send(Control::Forward(Signal::SIGWINCH)); continue; }
            };
            stops += 1;
            if stops == 1 {
                drain.begin(stop);
                tracing::info!(signal = stop.as_str(), "draining: stopping every service");
                crate::systemd::stopping();
                supervisor.send(Control::Shutdown);
            } else {
                tracing::warn!(signal = stop.as_str(), "told again: killing every service");
                supervisor.send(Control::Kill);
            }
        }
    }
}

/// The `drain` span: from the first stop signal to the supervisor's exit.
#[derive(Clone, Default)]
struct DrainSpan(std::sync::Arc<std::sync::Mutex<Option<tracing::Span>>>);

impl DrainSpan {
    fn begin(&self, signal: Signal) {
        let span = tracing::info_span!(
            "drain",
            signal = signal.as_str(),
            exit_code = tracing::field::Empty
        );
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(span);
    }

    /// Ends the span, if a drain began, with drover's exit code.
    fn end(&self, code: i32) {
        if let Some(span) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            span.record("exit_code", code);
        }
    }
}
