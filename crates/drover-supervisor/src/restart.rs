//! Restart policy: what to do when a service's main process ends, and how long to wait first.
//!
//! Pure functions of their inputs (no clock, no randomness of their own): the caller passes how
//! long the run lasted and a random number, so every rule is unit-tested without waiting.
//! Semantics are the contract's (`../shared/manifest-v1.md`, "Precise semantics"):
//! - `max_retries: N` allows at most N restarts in a row whose runs did not reach
//!   `reset_after`, so at most N + 1 starts; 0 means unlimited;
//! - a run that lasts at least `reset_after` resets the backoff and the retry count.

use drover_spec::model::{Backoff, Restart, RestartPolicy};
use std::time::Duration;

/// How a run ended, as far as the restart policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// Exit status 0.
    Success,
    /// A non-zero status, a signal, or a liveness/startup/watchdog failure.
    Failure,
}

/// What to do after a run ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Its policy does not restart it: it ended for good.
    Ended,
    /// It failed `max_retries` restarts in a row: state `failed`.
    GaveUp,
}

/// The restart state of one service: how many restarts in a row have not reached
/// `reset_after`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RestartTracker {
    consecutive: u32,
}

impl RestartTracker {
    /// Restarts in a row so far (the exponent of the next backoff delay).
    pub(crate) fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Decides what follows a run that lasted `ran_for` and ended as `end`. `random` is a
    /// uniform number in `[0, 1)` for the jitter.
    pub(crate) fn on_end(
        &mut self,
        policy: &Restart,
        end: RunEnd,
        ran_for: Duration,
        random: f64,
    ) -> Decision {
        if ran_for >= policy.reset_after {
            self.consecutive = 0;
        }
        let restart = match policy.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => end == RunEnd::Failure,
            RestartPolicy::Never => false,
        };
        if !restart {
            return Decision::Ended;
        }
        if policy.max_retries != 0 && self.consecutive >= policy.max_retries {
            return Decision::GaveUp;
        }
        let delay = backoff_delay(&policy.backoff, self.consecutive, random);
        self.consecutive = self.consecutive.saturating_add(1);
        Decision::Restart(delay)
    }
}

/// The delay before restart number `attempt` (0 for the first restart in a row):
/// `initial * factor^attempt`, moved by up to `±jitter` of itself (`random` in `[0, 1)` picks
/// where), and never more than `max`.
pub(crate) fn backoff_delay(backoff: &Backoff, attempt: u32, random: f64) -> Duration {
    let max = backoff.max.as_secs_f64();
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    let base = (backoff.initial.as_secs_f64() * backoff.factor.powi(exponent)).min(max);
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let jittered = base * (1.0 + backoff.jitter * (2.0 * random - 1.0));
    // `base` is at most `max`, and the spec bounds jitter to [0, 1]: never negative. A `max`
    // beyond what a Duration holds as f64 (about 2^64 s) cannot panic: the conversion is checked.
    Duration::try_from_secs_f64(jittered.clamp(0.0, max)).unwrap_or(backoff.max)
}

#[cfg(test)]
mod tests;
