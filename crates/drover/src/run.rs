//! `drover run`: supervise a manifest until told to stop, then drain.
//!
//! Signals, per the contract: SIGTERM, SIGINT and SIGQUIT drain within
//! `settings.shutdown_timeout`, and a second one of them kills everything at once; SIGHUP asks
//! for a reload; SIGUSR1, SIGUSR2 and SIGWINCH go to every running service's process group.

use crate::logging::LogFormatHandle;
use crate::reload::Reloader;
use anyhow::Context as _;
use drover_spec::model::{Manifest, Signal};
use drover_supervisor::{Control, Processes, Supervisor};
use std::sync::PoisonError;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How long descendants that outlived their services get between SIGTERM and SIGKILL when
/// drover exits.
const DESCENDANT_GRACE: Duration = Duration::from_secs(2);

/// What `drover run` starts with.
pub(crate) struct Start {
    /// The manifest as named (a file or a directory), for reloads.
    pub(crate) path: std::path::PathBuf,
    /// The services named on the command line (all when empty): reloads keep to them.
    pub(crate) services: Vec<String>,
    pub(crate) manifest: Manifest,
    /// The metrics listener, bound before anything starts.
    pub(crate) metrics: Option<std::net::TcpListener>,
    /// `--metrics-listen` was given: reloads leave the address alone.
    pub(crate) metrics_pinned: bool,
    /// Traces the services' lifecycles, when traces are exported.
    pub(crate) tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    pub(crate) log_format: LogFormatHandle,
}

/// Runs the manifest to the end, reloading it on changes and SIGHUP; returns drover's exit
/// code.
pub(crate) async fn run(start: Start) -> anyhow::Result<i32> {
    let Start {
        path,
        services,
        manifest,
        metrics,
        metrics_pinned,
        tracer,
        log_format,
    } = start;
    if !drover_supervisor::is_pid1() {
        // Without it, grandchildren of services whose parent dies go to the host's init, and
        // drover could neither reap them nor stop them.
        if let Err(err) = drover_supervisor::become_subreaper() {
            tracing::warn!(error = %err, "cannot become child subreaper; orphans of services will not be reaped by drover");
        }
    }
    match drover_supervisor::raise_open_file_limit() {
        Ok((_, limit)) => {
            let needed = descriptors_needed(manifest.services.len());
            if needed > limit {
                tracing::warn!(
                    limit,
                    needed,
                    "the open-file limit is too low for this many services; raise it (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=)"
                );
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
    // Signal handlers before the first fork, so that no signal is lost (and, as PID 1, none is
    // ignored for lack of a handler).
    let signals = Signals::install().context("cannot install signal handlers")?;
    // Before any service starts: a second drover on a live socket refuses to run at all.
    let control = bind_control(&manifest.settings.control).await?;
    let processes = Processes::start().context("cannot start the process reaper")?;
    let (supervisor, done) = Supervisor::start(manifest.clone(), processes.clone())
        .context("cannot start the supervisor")?;
    let mut endpoint = drover_metrics::Endpoint::new(
        supervisor.clone(),
        processes.clone(),
        manifest.settings.metrics_listen,
        metrics_pinned,
    );
    let control_stats = std::sync::Arc::new(drover_control::Stats::default());
    if control.is_some() {
        let stats = control_stats.clone();
        endpoint.export(drover_metrics::CounterFamily {
            name: "drover_control_requests_total",
            help: "Requests to the control socket, by operation and result.",
            read: std::sync::Arc::new(move || {
                stats
                    .snapshot()
                    .into_iter()
                    .map(|((operation, result), count)| {
                        ([("operation", operation), ("result", result)], count)
                    })
                    .collect()
            }),
        });
    }
    if let Some(listener) = metrics {
        endpoint.serve(listener)?;
    }
    let metrics_address: drover_control::MetricsAddress =
        std::sync::Arc::new(endpoint.bound_address());
    let lifecycle = tracer.map(|tracer| crate::telemetry::trace_lifecycle(&supervisor, tracer));
    let drain = DrainSpan::default();
    // One channel for every reload trigger: the watcher's, SIGHUP's (and, next, requests').
    let (triggers_tx, triggers) = mpsc::unbounded_channel();
    let reloader = Reloader::new(
        path,
        services,
        manifest,
        supervisor.clone(),
        endpoint,
        log_format,
        triggers_tx.clone(),
    );
    let reloads = tokio::spawn(reloader.run(triggers));
    let control = control.map(|listener| {
        serve_control(
            listener,
            &supervisor,
            triggers_tx.clone(),
            control_stats,
            metrics_address,
        )
    });
    let manager = crate::systemd::ServiceManager::from_env();
    let relay = tokio::spawn(signals.relay(
        supervisor.clone(),
        drain.clone(),
        triggers_tx,
        manager.clone(),
    ));
    let announce = manager.as_ref().map(|m| m.announce_ready(&supervisor));
    let watchdog = manager.as_ref().and_then(|m| m.feed_watchdog(&supervisor));
    release_start_up_code();
    let code = done.await.context("the supervisor task failed")?;
    relay.abort();
    // Once STOPPING=1 is sent the manager stops enforcing its watchdog: sent here for an exit
    // that no signal began (every service ended), before the cleanup below takes its time.
    for task in [announce, watchdog].into_iter().flatten() {
        task.abort();
    }
    if let Some(manager) = &manager {
        manager.stopping().await;
    }
    // The control socket goes first: nothing can be asked of a drover that has ended.
    if let Some(control) = control {
        control.abort();
        let _ = control.await;
    }
    // Dropping the reloader closes the metrics endpoint and stops the watcher.
    reloads.abort();
    let _ = reloads.await;
    if let Some((task, stop)) = lifecycle {
        let _ = stop.send(());
        let _ = task.await;
    }
    let leftovers = processes.end_descendants(DESCENDANT_GRACE).await;
    if leftovers > 0 {
        tracing::info!(
            count = leftovers,
            "ended processes that outlived their services"
        );
    }
    // The last span: it covers everything up to the exit (but the flush of the spans).
    drain.end(code);
    tracing::info!(code, orphans_reaped = processes.orphans_reaped(), "exiting");
    Ok(code)
}

/// The descriptors drover holds for `services` services: up to eight each (four ends of its
/// output pipes, a notify socket, a probe's connection, its cgroup's directory and
/// `cgroup.procs` while it spawns; four seen with 100 plain services), plus drover's own few
/// dozen.
pub(crate) fn descriptors_needed(services: usize) -> u64 {
    8 * services as u64 + 64
}

/// How long after the start drover gives back the code it ran only to start: the manifest's
/// parsing and validation, the set-up of logs, sockets and cgroups. The first start's spawns
/// may still be going on; the code they need is mapped again as it runs.
const START_UP_OVER: std::time::Duration = std::time::Duration::from_secs(1);

/// Unmaps the start-up code ([`drover_supervisor::release_read_only_pages`]) after
/// [`START_UP_OVER`], on a thread of its own: it reads `/proc/self/smaps`.
fn release_start_up_code() {
    let started = std::thread::Builder::new()
        .name("drover-trim".into())
        .spawn(|| {
            std::thread::sleep(START_UP_OVER);
            match drover_supervisor::release_read_only_pages(drover_supervisor::Released::Program) {
                Ok(bytes) => tracing::debug!(bytes, "start-up code unmapped"),
                Err(err) => tracing::debug!(error = %err, "cannot unmap the start-up code"),
            }
        });
    if let Err(err) = started {
        tracing::debug!(error = %err, "cannot start the thread that unmaps the start-up code");
    }
}

/// Binds the control socket `settings` ask for: `None` when disabled, or when the default
/// place cannot be used (a read-only `/run`: drover runs on, and says so). A socket a live
/// drover answers on, or an explicit path that cannot be bound, is an error.
async fn bind_control(
    settings: &drover_spec::model::ControlSettings,
) -> anyhow::Result<Option<(drover_control::ControlListener, Option<u32>)>> {
    use drover_spec::model::ControlSocket;
    let (path, explicit) = match &settings.socket {
        ControlSocket::Disabled => return Ok(None),
        ControlSocket::Path(path) => (path.clone(), true),
        ControlSocket::Default => match drover_control::default_socket() {
            Some(path) => (path, std::env::var_os("DROVER_SOCKET").is_some()),
            None => {
                tracing::warn!("{}; running without one", drover_control::no_default());
                return Ok(None);
            }
        },
    };
    let group = match &settings.group {
        None => None,
        Some(group) => Some(
            drover_supervisor::group_id(group)
                .with_context(|| {
                    format!("settings.control.group: cannot read /etc/group for `{group}`")
                })?
                .with_context(|| {
                    format!("settings.control.group: no group `{group}` in /etc/group")
                })?,
        ),
    };
    match drover_control::ControlListener::bind(&path, group).await {
        Ok(listener) => {
            tracing::info!(path = %path.display(), "control socket listening");
            Ok(Some((listener, group)))
        }
        Err(err @ drover_control::Error::InUse(_)) => Err(err.into()),
        Err(err) if explicit => Err(err.into()),
        Err(err) => {
            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(err)), "no control socket: drover status and friends will not reach this drover");
            Ok(None)
        }
    }
}

/// Serves the control socket; its reloads go through the reloader's trigger channel.
fn serve_control(
    (listener, group): (drover_control::ControlListener, Option<u32>),
    supervisor: &Supervisor,
    triggers: mpsc::UnboundedSender<crate::reload::Asked>,
    stats: std::sync::Arc<drover_control::Stats>,
    metrics_address: drover_control::MetricsAddress,
) -> tokio::task::JoinHandle<()> {
    let (reloads, mut asked) = mpsc::unbounded_channel::<drover_control::ReloadRequest>();
    let access = drover_control::Access::this_user_and(group);
    let server = std::sync::Arc::new(
        drover_control::Server::new(supervisor.clone(), Some(reloads), access, stats)
            .with_metrics_address(metrics_address),
    );
    tokio::spawn(async move {
        let forward = async move {
            while let Some(answer) = asked.recv().await {
                let request = crate::reload::Asked {
                    trigger: crate::reload::Trigger::Request,
                    answer: Some(answer),
                };
                if triggers.send(request).is_err() {
                    break;
                }
            }
        };
        tokio::join!(drover_control::serve(listener, server), forward);
    })
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

    async fn relay(
        mut self,
        supervisor: Supervisor,
        drain: DrainSpan,
        reloads: mpsc::UnboundedSender<crate::reload::Asked>,
        manager: Option<crate::systemd::ServiceManager>,
    ) {
        let mut stops = 0u32;
        loop {
            let stop = tokio::select! {
                _ = self.terminate.recv() => Signal::SIGTERM,
                _ = self.interrupt.recv() => Signal::SIGINT,
                _ = self.quit.recv() => Signal::SIGQUIT,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the manifest");
                    let _ = reloads.send(crate::reload::Trigger::Hangup.into());
                    continue;
                }
                _ = self.user1.recv() => { supervisor.send(Control::Forward(Signal::SIGUSR1)); continue; }
                _ = self.user2.recv() => { supervisor.send(Control::Forward(Signal::SIGUSR2)); continue; }
                _ = self.window.recv() => { supervisor.send(Control::Forward(Signal::SIGWINCH)); continue; }
            };
            // The supervisor's core decides what each one does (the first drains, a second
            // kills at once: `Input::Shutdown`); here only the drain's span and the logs.
            stops = stops.saturating_add(1);
            if stops == 1 {
                drain.begin(stop);
                tracing::info!(signal = stop.as_str(), "draining: stopping every service");
                if let Some(manager) = manager.clone() {
                    // Its own task: a full manager queue delays neither the drain nor the
                    // handling of a second signal.
                    tokio::spawn(async move { manager.stopping().await });
                }
            } else {
                tracing::warn!(signal = stop.as_str(), "told again: killing every service");
            }
            supervisor.send(Control::Shutdown);
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
