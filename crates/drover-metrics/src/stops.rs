//! What stops and hooks are measured by: `drover_service_drain_seconds` (from a stop drover
//! began, the service marked not ready, to its process group empty: `stop.drain`, `pre_stop`
//! and the time to exit after the signal) and `drover_service_hook_results_total`, both
//! counted from the supervisor's events. Series appear at a service's first stop or hook.

use crate::exporter::{Buckets, Histogram, header, sample};
use drover_supervisor::{HookEvent, HookKind, HookOutcome, ServiceSnapshot, State, StateChange};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

/// Upper bounds of the `drover_service_drain_seconds` buckets: 10 ms to 2 min.
pub(crate) const DRAIN_BUCKETS: Buckets = Buckets {
    bounds: &[
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ],
    labels: &[
        "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120",
    ],
};

const HOOK_OUTCOMES: [HookOutcome; 3] = [
    HookOutcome::Success,
    HookOutcome::Failure,
    HookOutcome::Timeout,
];

/// The stops under way and what the finished ones took; the hooks' results.
#[derive(Default)]
pub(crate) struct StopStats {
    /// When each service's stop began.
    stopping_since: HashMap<Arc<str>, Instant>,
    drains: HashMap<Arc<str>, Histogram>,
    /// Indexed as [`HOOK_OUTCOMES`].
    hooks: HashMap<(Arc<str>, HookKind), [u64; 3]>,
}

impl StopStats {
    /// A state change: a stop drover began (from `running` or `ready`, not because the main
    /// process exited) starts the clock; leaving `stopping` stops it.
    pub(crate) fn on_state(&mut self, change: &StateChange, now: Instant) {
        let began = change.to == State::Stopping
            && matches!(change.from, State::Running | State::Ready)
            && change.exit.is_none();
        if began {
            self.stopping_since.insert(change.service.clone(), now);
        } else if change.from == State::Stopping
            && change.to != State::Stopping
            && let Some(since) = self.stopping_since.remove(&change.service)
        {
            let seconds = now.saturating_duration_since(since).as_secs_f64();
            self.drains
                .entry(change.service.clone())
                .or_insert_with(|| Histogram::new(&DRAIN_BUCKETS))
                .observe(&DRAIN_BUCKETS, seconds);
        }
    }

    pub(crate) fn on_hook(&mut self, hook: &HookEvent) {
        let index = HOOK_OUTCOMES
            .iter()
            .position(|o| *o == hook.outcome)
            .unwrap_or(1);
        let counts = self
            .hooks
            .entry((hook.service.clone(), hook.kind))
            .or_default();
        if let Some(count) = counts.get_mut(index) {
            *count = count.saturating_add(1);
        }
    }

    /// Writes both families; the series of services no longer there are dropped first.
    pub(crate) fn write(&mut self, out: &mut String, services: &[ServiceSnapshot]) {
        let present: HashSet<&str> = services.iter().map(|s| &*s.name).collect();
        self.stopping_since
            .retain(|name, _| present.contains(&**name));
        self.drains.retain(|name, _| present.contains(&**name));
        self.hooks.retain(|(name, _), _| present.contains(&**name));
        header(
            out,
            "drover_service_drain_seconds",
            "histogram",
            "Stops drover began, from not ready to the process group empty: stop.drain, pre_stop and the exit after the stop signal.",
        );
        let mut drains: Vec<_> = self.drains.iter().collect();
        drains.sort_by(|a, b| a.0.cmp(b.0));
        for (service, histogram) in drains {
            histogram.write(
                out,
                "drover_service_drain_seconds",
                &DRAIN_BUCKETS,
                &[("service", service)],
            );
        }
        header(
            out,
            "drover_service_hook_results_total",
            "counter",
            "post_start and pre_stop commands that ended, by result.",
        );
        let mut hooks: Vec<_> = self.hooks.iter().collect();
        hooks.sort_by(|a, b| (&a.0.0, a.0.1.as_str()).cmp(&(&b.0.0, b.0.1.as_str())));
        for ((service, kind), counts) in hooks {
            for (outcome, count) in HOOK_OUTCOMES.iter().zip(counts) {
                sample(
                    out,
                    "drover_service_hook_results_total",
                    &[
                        ("hook", kind.as_str()),
                        ("result", outcome.as_str()),
                        ("service", service),
                    ],
                    *count as f64,
                );
            }
        }
    }
}
