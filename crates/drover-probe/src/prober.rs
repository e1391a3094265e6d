//! The schedule of one probe during one run of its service: wait `initial_delay` plus a phase
//! offset, then check every `period`, count the results, and report each one. A probe is a
//! task with a timer, never a thread; dropping (aborting) the task stops it.

use crate::ProbeKind;
use crate::check::{CheckOutcome, CheckResult, Checker};
use crate::threshold::{Change, Thresholds};
use drover_spec::model::Probe;
use std::hash::{Hash, Hasher};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// The widest phase offset: probes of services started together spread over this much (or a
/// tenth of the period, if smaller), so that a thousand of them do not fire in the same
/// millisecond, while no first check waits long.
pub const MAX_PHASE_OFFSET: Duration = Duration::from_millis(100);

/// Checks start on a grid of this step (from a process-wide origin), so that probes due within
/// the same 10 ms are checked on one wakeup of the runtime instead of one each. A period that is
/// a multiple of it keeps every later check on the grid.
pub const GRID: Duration = Duration::from_millis(10);

/// Later than any probe will ever run (tokio's own "far future": 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The first grid point at or after `at`.
fn on_grid(at: Instant) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let since = at.saturating_duration_since(origin).as_nanos();
    let step = GRID.as_nanos();
    let rounded = since.div_ceil(step) * step;
    origin
        .checked_add(Duration::from_nanos(
            u64::try_from(rounded).unwrap_or(u64::MAX),
        ))
        .unwrap_or(at)
}

/// A stable offset for the probe `kind` of service `service`, in `[0, min(period / 10, 100ms))`.
pub fn phase_offset(service: &str, kind: ProbeKind, period: Duration) -> Duration {
    let window = (period / 10).min(MAX_PHASE_OFFSET);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (service, kind.as_str()).hash(&mut hasher);
    let fraction = (hasher.finish() % 10_000) as f64 / 10_000.0;
    window.mul_f64(fraction)
}

/// Runs probe `kind` until the task is dropped, calling `report` with every result and with
/// the change of verdict it caused, if any. A startup probe stops once it has passed or failed.
pub async fn run(
    kind: ProbeKind,
    probe: &Probe,
    checker: Checker,
    offset: Duration,
    mut report: impl FnMut(CheckResult, Option<Change>),
) {
    let mut thresholds = Thresholds::new(kind, probe.success_threshold, probe.failure_threshold);
    let now = Instant::now();
    // Validation bounds the delay; an unbounded one would still not panic, only never start.
    let first = now
        .checked_add(probe.initial_delay.saturating_add(offset))
        .map(on_grid)
        .unwrap_or_else(|| now + FAR_FUTURE);
    let mut ticks = tokio::time::interval_at(first, probe.period.max(Duration::from_millis(1)));
    // A check slower than the period delays the next one rather than bunching them up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = checker.check(probe.timeout).await;
        let change = thresholds.record(result.outcome == CheckOutcome::Success);
        report(result, change);
        if kind == ProbeKind::Startup && change.is_some() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_in_the_window_and_spread() {
        let period = Duration::from_secs(1);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| phase_offset(&format!("s{i}"), ProbeKind::Readiness, period))
            .collect();
        assert!(offsets.iter().all(|o| *o < MAX_PHASE_OFFSET));
        // 1000 probes over 100 ms: no millisecond holds more than a few dozen of them.
        let mut per_ms = [0u32; 100];
        for o in &offsets {
            per_ms[o.as_millis() as usize] += 1;
        }
        assert!(per_ms.iter().all(|&n| n < 40), "{per_ms:?}");
        assert!(per_ms.iter().filter(|&&n| n > 0).count() > 90, "{per_ms:?}");
        // Short periods get a tenth of the period.
        assert!(
            phase_offset("a", ProbeKind::Liveness, Duration::from_millis(50))
                < Duration::from_millis(5)
        );
    }
}
