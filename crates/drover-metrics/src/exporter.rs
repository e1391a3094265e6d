//! Every metric drover exports, and the scrape: rebuild the per-service series from the
//! supervisor's snapshot, then encode the registry in the Prometheus text format.

use crate::Error;
use crate::usage;
use drover_supervisor::{
    CheckOutcome, Event, ProbeKind, Processes, RestartReason, ServiceSnapshot, State, Supervisor,
};
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// Buckets of `drover_probe_duration_seconds`: 1 ms to 10 s.
const PROBE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics of one drover, and what they are read from.
pub struct Exporter {
    registry: Registry,
    supervisor: Supervisor,
    processes: Processes,
    service: ServiceMetrics,
    probe_results: IntCounterVec,
    probe_duration: HistogramVec,
    zombies: IntCounter,
    dropped_lines: IntCounterVec,
    reloads: IntCounterVec,
    last_reload: Gauge,
    /// Scrapes rebuild series: one at a time.
    scrape: Mutex<HashSet<String>>,
}

/// The series rebuilt from the snapshot at every scrape.
struct ServiceMetrics {
    up: IntGaugeVec,
    ready: IntGaugeVec,
    state: IntGaugeVec,
    starts: IntCounterVec,
    restarts: IntCounterVec,
    exits: IntCounterVec,
    last_exit_code: IntGaugeVec,
    start_time: GaugeVec,
    backoff: GaugeVec,
    cpu: CounterVec,
    rss: IntGaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Exporter {
    /// The metrics of `supervisor`, whose processes are `processes`. Call
    /// [`Exporter::record_probes`] to count probe results.
    pub fn new(supervisor: Supervisor, processes: Processes) -> Result<Arc<Exporter>, Error> {
        let registry = Registry::new();
        let service = ServiceMetrics {
            up: IntGaugeVec::new(
                opts(
                    "drover_service_up",
                    "1 while the service has a running main process.",
                ),
                &["service"],
            )?,
            ready: IntGaugeVec::new(
                opts("drover_service_ready", "1 while the service is ready."),
                &["service"],
            )?,
            state: IntGaugeVec::new(
                opts(
                    "drover_service_state",
                    "The service's state: 1 for the current one.",
                ),
                &["service", "state"],
            )?,
            starts: IntCounterVec::new(
                opts(
                    "drover_service_starts_total",
                    "Times the service was started.",
                ),
                &["service"],
            )?,
            restarts: IntCounterVec::new(
                opts(
                    "drover_service_restarts_total",
                    "Restarts decided, by reason.",
                ),
                &["service", "reason"],
            )?,
            exits: IntCounterVec::new(
                opts("drover_service_exits_total", "Runs that ended, by outcome."),
                &["service", "outcome"],
            )?,
            last_exit_code: IntGaugeVec::new(
                opts(
                    "drover_service_last_exit_code",
                    "Exit code of the last run (128+N when killed by signal N).",
                ),
                &["service"],
            )?,
            start_time: GaugeVec::new(
                opts(
                    "drover_service_start_time_seconds",
                    "Unix time the current or last run started.",
                ),
                &["service"],
            )?,
            backoff: GaugeVec::new(
                opts(
                    "drover_service_backoff_seconds",
                    "Delay of the restart the service waits for; 0 when not in backoff.",
                ),
                &["service"],
            )?,
            cpu: CounterVec::new(
                opts(
                    "drover_service_cpu_seconds_total",
                    "User and system CPU time of the service's live process group.",
                ),
                &["service"],
            )?,
            rss: IntGaugeVec::new(
                opts(
                    "drover_service_memory_rss_bytes",
                    "Resident memory of the service's live process group.",
                ),
                &["service"],
            )?,
        };
        let probe_results = IntCounterVec::new(
            opts("drover_probe_results_total", "Probe checks, by result."),
            &["service", "probe", "result"],
        )?;
        let probe_duration = HistogramVec::new(
            HistogramOpts::new("drover_probe_duration_seconds", "Duration of probe checks.")
                .buckets(PROBE_BUCKETS.to_vec()),
            &["service", "probe"],
        )?;
        let zombies = IntCounter::new(
            "drover_zombies_reaped_total",
            "Orphaned processes reaped that were not drover's own services.",
        )?;
        let dropped_lines = IntCounterVec::new(
            opts(
                "drover_log_lines_dropped_total",
                "Service output lines dropped because drover's output could not keep up.",
            ),
            &["service"],
        )?;
        let reloads = IntCounterVec::new(
            opts(
                "drover_manifest_reloads_total",
                "Manifest reloads, by result.",
            ),
            &["result"],
        )?;
        let last_reload = Gauge::new(
            "drover_manifest_last_reload_success_timestamp_seconds",
            "Unix time the running manifest was loaded.",
        )?;
        let build_info = IntGaugeVec::new(
            opts("drover_build_info", "drover's version; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        last_reload.set(unix_seconds(SystemTime::now()));
        let s = &service;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(s.up.clone()),
            Box::new(s.ready.clone()),
            Box::new(s.state.clone()),
            Box::new(s.starts.clone()),
            Box::new(s.restarts.clone()),
            Box::new(s.exits.clone()),
            Box::new(s.last_exit_code.clone()),
            Box::new(s.start_time.clone()),
            Box::new(s.backoff.clone()),
            Box::new(s.cpu.clone()),
            Box::new(s.rss.clone()),
            Box::new(probe_results.clone()),
            Box::new(probe_duration.clone()),
            Box::new(zombies.clone()),
            Box::new(dropped_lines.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        Ok(Arc::new(Exporter {
            registry,
            supervisor,
            processes,
            service,
            probe_results,
            probe_duration,
            zombies,
            dropped_lines,
            reloads,
            last_reload,
            scrape: Mutex::new(HashSet::new()),
        }))
    }

    /// Counts every probe check the supervisor publishes, until it stops.
    pub fn record_probes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut events = self.supervisor.subscribe();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Probe(probe)) => {
                        let service = &*probe.service;
                        this.probe_results
                            .with_label_values(&[
                                service,
                                probe.kind.as_str(),
                                probe.outcome.as_str(),
                            ])
                            .inc();
                        this.probe_duration
                            .with_label_values(&[service, probe.kind.as_str()])
                            .observe(probe.duration.as_secs_f64());
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "metrics fell behind the probe events");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// The Prometheus text exposition of every metric, as of now.
    pub fn render(&self) -> String {
        let services = self.supervisor.snapshot();
        {
            let mut probed = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
            self.refresh(&services, &mut probed);
        }
        let mut text = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(error = %err, "cannot encode the metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The services that should run and are not ready, with their states; empty when all are.
    pub fn not_ready(&self) -> Vec<(String, State)> {
        self.supervisor
            .snapshot()
            .into_iter()
            .filter(|s| !counts_as_ready(s))
            .map(|s| (s.name.to_string(), s.state))
            .collect()
    }

    /// Whether the supervisor's loop still runs.
    pub fn healthy(&self) -> bool {
        self.supervisor.is_running()
    }

    /// The reload counters, for the reload issue.
    pub fn reload_recorded(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        if success {
            self.last_reload.set(unix_seconds(SystemTime::now()));
        }
    }

    fn refresh(&self, services: &[ServiceSnapshot], probed: &mut HashSet<String>) {
        let m = &self.service;
        for vec in [&m.up, &m.ready, &m.state, &m.last_exit_code, &m.rss] {
            vec.reset();
        }
        for vec in [&m.starts, &m.restarts, &m.exits] {
            vec.reset();
        }
        for vec in [&m.start_time, &m.backoff] {
            vec.reset();
        }
        m.cpu.reset();
        self.dropped_lines.reset();
        let groups: Vec<i32> = services
            .iter()
            .filter_map(|s| s.pid.and_then(|p| i32::try_from(p).ok()))
            .collect();
        let usage = usage::by_group(&groups);
        let now = SystemTime::now();
        let mut present = HashSet::with_capacity(services.len());
        for s in services {
            let name = &*s.name;
            present.insert(name.to_string());
            let running = s.pid.is_some() && s.state != State::Exited;
            m.up.with_label_values(&[name]).set(i64::from(running));
            m.ready
                .with_label_values(&[name])
                .set(i64::from(s.state == State::Ready));
            for state in State::ALL {
                m.state
                    .with_label_values(&[name, state.as_str()])
                    .set(i64::from(s.state == state));
            }
            m.starts.with_label_values(&[name]).inc_by(s.starts);
            for (reason, count) in RestartReason::ALL.iter().zip(s.restarts_by_reason) {
                m.restarts
                    .with_label_values(&[name, reason.as_str()])
                    .inc_by(count);
            }
            for (outcome, count) in [
                ("success", s.exits.success),
                ("failure", s.exits.failure),
                ("signal", s.exits.signal),
            ] {
                m.exits.with_label_values(&[name, outcome]).inc_by(count);
            }
            if let Some(exit) = s.last_exit {
                m.last_exit_code
                    .with_label_values(&[name])
                    .set(i64::from(exit.code()));
            }
            if let Some(started) = s.started_at {
                let wall = now.checked_sub(started.elapsed()).unwrap_or(now);
                m.start_time
                    .with_label_values(&[name])
                    .set(unix_seconds(wall));
            }
            m.backoff
                .with_label_values(&[name])
                .set(s.backoff.unwrap_or(Duration::ZERO).as_secs_f64());
            let used = s
                .pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(|g| usage.get(&g).copied())
                .unwrap_or_default();
            m.cpu.with_label_values(&[name]).inc_by(used.cpu_seconds);
            m.rss
                .with_label_values(&[name])
                .set(i64::try_from(used.rss_bytes).unwrap_or(i64::MAX));
            // Probe series exist from the first scrape, at 0.
            for kind in &s.probes {
                self.probe_duration
                    .with_label_values(&[name, kind.as_str()]);
                for outcome in CheckOutcome::ALL {
                    self.probe_results
                        .with_label_values(&[name, kind.as_str(), outcome.as_str()]);
                }
            }
        }
        for (name, dropped) in self.supervisor.dropped_lines() {
            self.dropped_lines
                .with_label_values(&[&name])
                .inc_by(dropped);
        }
        // Probe series of services that are gone.
        for gone in probed.difference(&present) {
            for kind in ProbeKind::ALL {
                let _ = self
                    .probe_duration
                    .remove_label_values(&[gone, kind.as_str()]);
                for outcome in CheckOutcome::ALL {
                    let _ = self.probe_results.remove_label_values(&[
                        gone,
                        kind.as_str(),
                        outcome.as_str(),
                    ]);
                }
            }
        }
        *probed = present;
        self.zombies.reset();
        self.zombies.inc_by(self.processes.orphans_reaped());
    }
}

/// Ready for `/readyz`: `ready`, or a one-shot that exited 0.
fn counts_as_ready(s: &ServiceSnapshot) -> bool {
    match s.state {
        State::Ready => true,
        State::Exited => s.last_exit.is_some_and(|e| e.success()),
        _ => false,
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
