//! Consecutive-result thresholds, as Kubernetes counts them: `success_threshold` successes in a
//! row pass a probe, `failure_threshold` failures in a row fail it. Pure; no clock.

use crate::ProbeKind;

/// What one more result changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The probe passes now (it did not before).
    Passed,
    /// The probe fails now (it passed before, or had not failed yet).
    Failed,
}

/// The counting state of one probe during one run of its service.
#[derive(Clone, Debug)]
pub struct Thresholds {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// `Some(true)` passing, `Some(false)` failed, `None` not decided yet.
    verdict: Option<bool>,
}

impl Thresholds {
    /// A fresh count. A liveness probe starts out passing (a service is alive until proven
    /// otherwise); readiness and startup probes start undecided.
    pub fn new(kind: ProbeKind, success_threshold: u32, failure_threshold: u32) -> Thresholds {
        Thresholds {
            success_threshold: success_threshold.max(1),
            failure_threshold: failure_threshold.max(1),
            successes: 0,
            failures: 0,
            verdict: (kind == ProbeKind::Liveness).then_some(true),
        }
    }

    /// Counts one result; says when the verdict changes.
    pub fn record(&mut self, success: bool) -> Option<Change> {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.verdict != Some(true) && self.successes >= self.success_threshold {
                self.verdict = Some(true);
                return Some(Change::Passed);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.verdict != Some(false) && self.failures >= self.failure_threshold {
                self.verdict = Some(false);
                return Some(Change::Failed);
            }
        }
        None
    }

    /// Whether the probe passes now.
    pub fn passing(&self) -> bool {
        self.verdict == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut Thresholds, results: &str) -> Vec<Option<Change>> {
        results.chars().map(|c| t.record(c == '+')).collect()
    }

    #[test]
    fn readiness_needs_consecutive_successes_and_consecutive_failures() {
        let mut t = Thresholds::new(ProbeKind::Readiness, 3, 2);
        // Interrupted runs of successes never reach 3, nor single failures 2.
        assert_eq!(feed(&mut t, "++-++-"), vec![None; 6]);
        assert_eq!(feed(&mut t, "-"), vec![Some(Change::Failed)]);
        assert!(!t.passing());
        assert_eq!(feed(&mut t, "+++"), vec![None, None, Some(Change::Passed)]);
        // One failure between successes does not fail it; two in a row do.
        assert_eq!(
            feed(&mut t, "-+-+--"),
            vec![None, None, None, None, None, Some(Change::Failed)]
        );
        assert!(!t.passing());
    }

    #[test]
    fn liveness_starts_passing_and_fails_after_the_threshold() {
        let mut t = Thresholds::new(ProbeKind::Liveness, 1, 3);
        assert!(t.passing());
        assert_eq!(
            feed(&mut t, "--+---"),
            vec![None, None, None, None, None, Some(Change::Failed)]
        );
    }

    #[test]
    fn startup_passes_on_the_first_success_and_fails_once() {
        let mut t = Thresholds::new(ProbeKind::Startup, 1, 2);
        assert_eq!(feed(&mut t, "---"), vec![None, Some(Change::Failed), None]);
        let mut t = Thresholds::new(ProbeKind::Startup, 1, 2);
        assert_eq!(feed(&mut t, "-+"), vec![None, Some(Change::Passed)]);
    }
}
