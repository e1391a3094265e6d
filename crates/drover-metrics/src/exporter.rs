//! Every metric drover exports, and the scrape. Per-service series are written straight from
//! the supervisor's snapshot into the Prometheus text format at each scrape (a registry of
//! 44,000 series rebuilt every scrape cost 90 ms for 1000 services; writing them costs a few),
//! probe results are counted from the supervisor's events, and drover's own `process_*`
//! metrics come from the prometheus crate's process collector.

use crate::Error;
use crate::stops::StopStats;
use crate::usage;
use drover_supervisor::{
    CheckOutcome, Event, ProbeKind, Processes, ServiceSnapshot, State, Supervisor,
};
use prometheus::{Encoder, Registry, TextEncoder};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// Upper bounds of the `drover_probe_duration_seconds` buckets: 1 ms to 10 s.
/// How long `/healthz` waits for the supervisor's loop to answer (a Kubernetes probe's
/// default timeout is 1 s too).
pub const HEALTH_PING: Duration = Duration::from_secs(1);

const PROBE_BUCKETS: Buckets = Buckets {
    bounds: &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    labels: &[
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "10",
    ],
};

/// A histogram's upper bounds, and the same as their `le` labels (written once rather than
/// formatted at each scrape).
pub(crate) struct Buckets {
    pub(crate) bounds: &'static [f64],
    pub(crate) labels: &'static [&'static str],
}

/// One histogram series.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    /// Per bucket, not cumulative.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub(crate) fn new(buckets: &Buckets) -> Histogram {
        Histogram {
            counts: vec![0; buckets.bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub(crate) fn observe(&mut self, buckets: &Buckets, seconds: f64) {
        let index = buckets.bounds.iter().position(|le| seconds <= *le);
        if let Some(count) = index.and_then(|i| self.counts.get_mut(i)) {
            *count = count.saturating_add(1);
        }
        self.sum += seconds;
        self.count = self.count.saturating_add(1);
    }

    /// Its `_bucket`, `_sum` and `_count` lines.
    pub(crate) fn write(
        &self,
        out: &mut String,
        name: &str,
        buckets: &Buckets,
        labels: &[(&str, &str)],
    ) {
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (le, count) in buckets.labels.iter().zip(&self.counts) {
            cumulative = cumulative.saturating_add(*count);
            bucket(out, &bucket_name, labels, le, cumulative);
        }
        bucket(out, &bucket_name, labels, "+Inf", self.count);
        sample(out, &format!("{name}_sum"), labels, self.sum);
        sample(out, &format!("{name}_count"), labels, self.count as f64);
    }
}

/// Results and durations of one probe of one service.
#[derive(Clone, Debug)]
struct ProbeStats {
    /// Indexed as [`CheckOutcome::ALL`].
    results: [u64; 3],
    durations: Histogram,
}

impl Default for ProbeStats {
    fn default() -> Self {
        ProbeStats {
            results: [0; 3],
            durations: Histogram::new(&PROBE_BUCKETS),
        }
    }
}

impl ProbeStats {
    fn record(&mut self, outcome: CheckOutcome, duration: Duration) {
        let index = CheckOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(1);
        if let Some(result) = self.results.get_mut(index) {
            *result = result.saturating_add(1);
        }
        self.durations
            .observe(&PROBE_BUCKETS, duration.as_secs_f64());
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Reloads {
    success: u64,
    failure: u64,
    last_success: f64,
}

/// Labels and count of each series of a [`CounterFamily`].
pub type CounterSeries = Vec<([(&'static str, &'static str); 2], u64)>;

/// A counter family that another part of drover keeps (the control socket's requests): read at
/// each scrape, so the metrics crate needs to know nothing of it.
#[derive(Clone)]
pub struct CounterFamily {
    /// Its name (`drover_control_requests_total`).
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Each series now: its two labels (name, value) and its count.
    pub read: Arc<dyn Fn() -> CounterSeries + Send + Sync>,
}

/// The metrics of one drover, and what they are read from.
pub struct Exporter {
    supervisor: Supervisor,
    processes: Processes,
    /// drover's own `process_*` metrics.
    process: Registry,
    probes: Mutex<HashMap<(Arc<str>, ProbeKind), ProbeStats>>,
    reloads: Mutex<Reloads>,
    /// Stops and hooks.
    stops: Mutex<StopStats>,
    /// The CPU counter of each service's current run: (run, highest value written).
    cpu_marks: Mutex<HashMap<Arc<str>, (u64, f64)>>,
    /// Reads the services' CPU and memory, keeping their `/proc` files open between scrapes.
    usage: usage::UsageReader,
    /// Counters kept elsewhere.
    families: Vec<CounterFamily>,
}

impl Exporter {
    /// The metrics of `supervisor`, whose processes are `processes`. Call
    /// [`Exporter::record_probes`] to count probe results.
    pub fn new(supervisor: Supervisor, processes: Processes) -> Result<Arc<Exporter>, Error> {
        Exporter::with_families(supervisor, processes, Vec::new())
    }

    /// As [`Exporter::new`], with `families` kept elsewhere exported too.
    pub fn with_families(
        supervisor: Supervisor,
        processes: Processes,
        families: Vec<CounterFamily>,
    ) -> Result<Arc<Exporter>, Error> {
        let process = Registry::new();
        process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Arc::new(Exporter {
            supervisor,
            processes,
            process,
            probes: Mutex::new(HashMap::new()),
            stops: Mutex::new(StopStats::default()),
            cpu_marks: Mutex::new(HashMap::new()),
            reloads: Mutex::new(Reloads {
                last_success: unix_seconds(SystemTime::now()),
                ..Reloads::default()
            }),
            usage: usage::UsageReader::start(),
            families,
        }))
    }

    /// Counts every probe check, stop and hook the supervisor publishes, until it stops.
    pub fn record_probes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut events = self.supervisor.subscribe();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Probe(probe)) => {
                        this.probes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry((probe.service, probe.kind))
                            .or_default()
                            .record(probe.outcome, probe.duration);
                    }
                    Ok(Event::State(change)) => {
                        lock(&this.stops).on_state(&change, tokio::time::Instant::now());
                    }
                    Ok(Event::Hook(hook)) => lock(&this.stops).on_hook(&hook),
                    Ok(Event::Reload(_)) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "metrics fell behind the probe events");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Counts a manifest reload (for the reload issue).
    pub fn reload_recorded(&self, success: bool) {
        let mut reloads = self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        if success {
            reloads.success += 1;
            reloads.last_success = unix_seconds(SystemTime::now());
        } else {
            reloads.failure += 1;
        }
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

    /// Whether the supervisor's loop runs and answers a ping within [`HEALTH_PING`]: false once
    /// it has ended, and while it is wedged.
    pub async fn healthy(&self) -> bool {
        self.supervisor.responsive(HEALTH_PING).await
    }

    /// The Prometheus text exposition of every metric, as of now.
    pub fn render(&self) -> String {
        let services = self.supervisor.snapshot();
        let mut out = String::with_capacity(64 * 1024 + services.len() * 3 * 1024);
        self.write_services(&mut out, &services);
        self.write_probes(&mut out, &services);
        lock(&self.stops).write(&mut out, &services);
        self.write_drover(&mut out);
        for family in &self.families {
            header(&mut out, family.name, "counter", family.help);
            for (labels, count) in (family.read)() {
                sample(&mut out, family.name, &labels, count as f64);
            }
        }
        let mut text = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.process.gather(), &mut text) {
            tracing::warn!(error = %err, "cannot encode the process metrics");
        }
        out.push_str(&String::from_utf8_lossy(&text));
        out
    }

    /// Each service's CPU counter: what its group uses now, but never less than what was
    /// written before for the same run (a process of the group that exited took its time
    /// along); a new run starts from its own usage (a counter reset).
    fn cpu_counters(
        &self,
        services: &[ServiceSnapshot],
        now: impl Fn(&ServiceSnapshot) -> f64,
    ) -> Vec<f64> {
        let mut marks = lock(&self.cpu_marks);
        let present: std::collections::HashSet<&str> = services.iter().map(|s| &*s.name).collect();
        marks.retain(|name, _| present.contains(&**name));
        services
            .iter()
            .map(|s| {
                let mark = marks.entry(s.name.clone()).or_insert((s.starts, 0.0));
                if mark.0 != s.starts {
                    *mark = (s.starts, 0.0);
                }
                mark.1 = mark.1.max(now(s));
                mark.1
            })
            .collect()
    }

    fn write_services(&self, out: &mut String, services: &[ServiceSnapshot]) {
        let groups: Vec<i32> = services.iter().filter_map(group_of).collect();
        let usage = self.usage.by_group(&groups);
        let now = SystemTime::now();
        let mut family = |name: &str, kind: &str, help: &str, series: &dyn Fn(&mut String)| {
            header(out, name, kind, help);
            series(out);
        };
        family(
            "drover_service_up",
            "gauge",
            "1 while the service has a running main process.",
            &|out| {
                for s in services {
                    let up = s.pid.is_some() && s.state != State::Exited;
                    sample(
                        out,
                        "drover_service_up",
                        &[("service", &s.name)],
                        f64::from(u8::from(up)),
                    );
                }
            },
        );
        family(
            "drover_service_ready",
            "gauge",
            "1 while the service is ready.",
            &|out| {
                for s in services {
                    let ready = s.state == State::Ready;
                    sample(
                        out,
                        "drover_service_ready",
                        &[("service", &s.name)],
                        f64::from(u8::from(ready)),
                    );
                }
            },
        );
        family(
            "drover_service_state",
            "gauge",
            "The service's state: 1 for the current one.",
            &|out| {
                for s in services {
                    for state in State::ALL {
                        let value = f64::from(u8::from(s.state == state));
                        sample(
                            out,
                            "drover_service_state",
                            &[("service", &s.name), ("state", state.as_str())],
                            value,
                        );
                    }
                }
            },
        );
        family(
            "drover_service_starts_total",
            "counter",
            "Times the service was started.",
            &|out| {
                for s in services {
                    sample(
                        out,
                        "drover_service_starts_total",
                        &[("service", &s.name)],
                        s.starts as f64,
                    );
                }
            },
        );
        family(
            "drover_service_restarts_total",
            "counter",
            "Restarts decided, by reason.",
            &|out| {
                for s in services {
                    for (reason, count) in s.restarts_by_reason.iter() {
                        sample(
                            out,
                            "drover_service_restarts_total",
                            &[("reason", reason.as_str()), ("service", &s.name)],
                            count as f64,
                        );
                    }
                }
            },
        );
        family(
            "drover_service_exits_total",
            "counter",
            "Runs that ended, by outcome.",
            &|out| {
                for s in services {
                    for (outcome, count) in [
                        ("failure", s.exits.failure),
                        ("signal", s.exits.signal),
                        ("success", s.exits.success),
                    ] {
                        sample(
                            out,
                            "drover_service_exits_total",
                            &[("outcome", outcome), ("service", &s.name)],
                            count as f64,
                        );
                    }
                }
            },
        );
        family(
            "drover_service_last_exit_code",
            "gauge",
            "Exit code of the last run (128+N when killed by signal N).",
            &|out| {
                for s in services {
                    if let Some(exit) = s.last_exit {
                        sample(
                            out,
                            "drover_service_last_exit_code",
                            &[("service", &s.name)],
                            f64::from(exit.code()),
                        );
                    }
                }
            },
        );
        family(
            "drover_service_start_time_seconds",
            "gauge",
            "Unix time the current or last run started.",
            &|out| {
                for s in services {
                    if let Some(started) = s.started_at {
                        let wall = now.checked_sub(started.elapsed()).unwrap_or(now);
                        sample(
                            out,
                            "drover_service_start_time_seconds",
                            &[("service", &s.name)],
                            unix_seconds(wall),
                        );
                    }
                }
            },
        );
        family(
            "drover_service_backoff_seconds",
            "gauge",
            "Delay of the restart the service waits for; 0 when not in backoff.",
            &|out| {
                for s in services {
                    let delay = s.backoff.unwrap_or(Duration::ZERO).as_secs_f64();
                    sample(
                        out,
                        "drover_service_backoff_seconds",
                        &[("service", &s.name)],
                        delay,
                    );
                }
            },
        );
        let used = |s: &ServiceSnapshot| {
            group_of(s)
                .and_then(|g| usage.get(&g).copied())
                .unwrap_or_default()
        };
        let cpu = self.cpu_counters(services, |s| used(s).cpu_seconds);
        family(
            "drover_service_cpu_seconds_total",
            "counter",
            "User and system CPU time of the service's current run: its process group's, and that of the children they waited for; it never goes down during a run.",
            &|out| {
                for (s, seconds) in services.iter().zip(&cpu) {
                    sample(
                        out,
                        "drover_service_cpu_seconds_total",
                        &[("service", &s.name)],
                        *seconds,
                    );
                }
            },
        );
        family(
            "drover_service_memory_rss_bytes",
            "gauge",
            "Resident memory of the service's live process group.",
            &|out| {
                for s in services {
                    sample(
                        out,
                        "drover_service_memory_rss_bytes",
                        &[("service", &s.name)],
                        used(s).rss_bytes as f64,
                    );
                }
            },
        );
        family(
            "drover_log_lines_dropped_total",
            "counter",
            "Service output lines dropped because drover's output could not keep up.",
            &|out| {
                for (name, dropped) in self.supervisor.dropped_lines() {
                    sample(
                        out,
                        "drover_log_lines_dropped_total",
                        &[("service", &name)],
                        dropped as f64,
                    );
                }
            },
        );
    }

    fn write_probes(&self, out: &mut String, services: &[ServiceSnapshot]) {
        let mut probes = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        // Series of services (and probes) that are gone disappear; those of every probe exist
        // from the start.
        let present: std::collections::HashSet<(&str, ProbeKind)> = services
            .iter()
            .flat_map(|s| s.probes.iter().map(|kind| (&*s.name, *kind)))
            .collect();
        probes.retain(|(service, kind), _| present.contains(&(&**service, *kind)));
        for s in services {
            for kind in &s.probes {
                probes.entry((s.name.clone(), *kind)).or_default();
            }
        }
        let mut keys: Vec<&(Arc<str>, ProbeKind)> = probes.keys().collect();
        keys.sort_by(|a, b| (&*a.0, a.1.as_str()).cmp(&(&*b.0, b.1.as_str())));
        header(
            out,
            "drover_probe_results_total",
            "counter",
            "Probe checks, by result.",
        );
        for key in &keys {
            let stats = &probes[*key];
            for (outcome, count) in CheckOutcome::ALL.iter().zip(stats.results) {
                sample(
                    out,
                    "drover_probe_results_total",
                    &[
                        ("probe", key.1.as_str()),
                        ("result", outcome.as_str()),
                        ("service", &key.0),
                    ],
                    count as f64,
                );
            }
        }
        header(
            out,
            "drover_probe_duration_seconds",
            "histogram",
            "Duration of probe checks.",
        );
        for key in &keys {
            let labels = [("probe", key.1.as_str()), ("service", &*key.0)];
            probes[*key].durations.write(
                out,
                "drover_probe_duration_seconds",
                &PROBE_BUCKETS,
                &labels,
            );
        }
    }

    fn write_drover(&self, out: &mut String) {
        header(
            out,
            "drover_build_info",
            "gauge",
            "drover's version; always 1.",
        );
        sample(
            out,
            "drover_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        header(
            out,
            "drover_zombies_reaped_total",
            "counter",
            "Orphaned processes reaped that were not drover's own services.",
        );
        sample(
            out,
            "drover_zombies_reaped_total",
            &[],
            self.processes.orphans_reaped() as f64,
        );
        let reloads = *self.reloads.lock().unwrap_or_else(PoisonError::into_inner);
        header(
            out,
            "drover_manifest_reloads_total",
            "counter",
            "Manifest reloads, by result.",
        );
        sample(
            out,
            "drover_manifest_reloads_total",
            &[("result", "failure")],
            reloads.failure as f64,
        );
        sample(
            out,
            "drover_manifest_reloads_total",
            &[("result", "success")],
            reloads.success as f64,
        );
        header(
            out,
            "drover_manifest_last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time the running manifest was loaded.",
        );
        sample(
            out,
            "drover_manifest_last_reload_success_timestamp_seconds",
            &[],
            reloads.last_success,
        );
    }
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line; `labels` in the order given (keep them sorted by name).
pub(crate) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    write_labels(out, labels, None);
    // Whole numbers (most values: counts, codes, flags) print as integers, which is cheaper.
    if value.fract() == 0.0 && value.abs() < 1e15 {
        out.push(' ');
        if value < 0.0 {
            out.push('-');
        }
        push_integer(out, value.abs() as u64);
        out.push('\n');
    } else {
        let _ = writeln!(out, " {value}");
    }
}

fn bucket(out: &mut String, name: &str, labels: &[(&str, &str)], le: &str, count: u64) {
    out.push_str(name);
    write_labels(out, labels, Some(le));
    out.push(' ');
    push_integer(out, count);
    out.push('\n');
}

/// `n` in decimal, without the formatting machinery: a scrape writes 40,000 of them.
fn push_integer(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (i, (name, value)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        // Service names rarely hold a character to escape: copy them whole when they do not.
        if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
            out.push_str(value);
            out.push('"');
            continue;
        }
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn group_of(s: &ServiceSnapshot) -> Option<i32> {
    s.pid.and_then(|p| i32::try_from(p).ok())
}

/// Ready for `/readyz`: `ready`, or a one-shot that exited 0.
fn counts_as_ready(s: &ServiceSnapshot) -> bool {
    match s.state {
        State::Ready => true,
        State::Exited => s.last_exit.is_some_and(|e| e.success()),
        _ => false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_print_integers_plainly_and_other_numbers_in_full() {
        let mut out = String::new();
        for value in [0.0, -0.0, 7.0, -3.0, 1e14, 0.25, -1.5, 1e15, f64::NAN] {
            sample(&mut out, "m", &[], value);
        }
        assert_eq!(
            out,
            "m 0\nm 0\nm 7\nm -3\nm 100000000000000\nm 0.25\nm -1.5\nm 1000000000000000\nm NaN\n"
        );
        let mut out = String::new();
        push_integer(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string());
    }

    #[test]
    fn label_values_are_escaped_only_where_needed() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "plain"), ("b", "q\"b\\n\nx")], 1.0);
        bucket(
            &mut out,
            "drover_probe_duration_seconds_bucket",
            &[("service", "web")],
            "0.5",
            12,
        );
        assert_eq!(
            out,
            "m{a=\"plain\",b=\"q\\\"b\\\\n\\nx\"} 1\n\
             drover_probe_duration_seconds_bucket{service=\"web\",le=\"0.5\"} 12\n"
        );
    }

    #[test]
    fn bucket_labels_are_the_bucket_bounds() {
        for buckets in [&PROBE_BUCKETS, &crate::stops::DRAIN_BUCKETS] {
            assert_eq!(buckets.labels.len(), buckets.bounds.len());
            for (label, bound) in buckets.labels.iter().zip(buckets.bounds) {
                assert_eq!(label.parse::<f64>().ok(), Some(*bound), "{label}");
                assert_eq!(*label, bound.to_string());
            }
        }
    }
}
