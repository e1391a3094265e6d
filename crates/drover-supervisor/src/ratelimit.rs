//! Bounds on what outside input can make drover hold or write: how often one kind of log line
//! is written (a datagram from any local user, a failing `accept` must not turn drover's log
//! into a flood), and how many bytes wait in a queue for a writer that may be stuck.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Lets up to `burst` lines through per `window`; the rest are counted, and the next line let
/// through reports how many were held back.
#[derive(Debug)]
pub struct LogRateLimit {
    window: Duration,
    burst: u32,
    window_start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogRateLimit {
    /// Up to `burst` lines per `window`.
    pub const fn new(burst: u32, window: Duration) -> LogRateLimit {
        LogRateLimit {
            window,
            burst,
            window_start: None,
            written: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written at `now`: `Some(n)`, with the `n` lines held back since
    /// the last one written, or `None` (counted) when over the limit.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            self.window_start = Some(now);
            self.written = 0;
        }
        if self.written < self.burst {
            self.written += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }

    /// Lines held back so far and not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// Bytes waiting in a queue, against a fixed bound: reserved before an item is queued (or it
/// is dropped), released when the writer takes it off. Shared by the queue's producers and its
/// writer thread.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub const fn new(limit: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` from the budget; `false` (nothing taken) when they do not fit.
    pub fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back (an item was written, or could not be queued after all).
    pub fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_until_the_window_ends() {
        let mut limit = LogRateLimit::new(3, Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limit.allow(start), Some(0));
        assert_eq!(limit.allow(start), Some(0));
        assert_eq!(limit.allow(start), Some(0));
        for _ in 0..1000 {
            assert_eq!(limit.allow(start + Duration::from_secs(1)), None);
        }
        assert_eq!(limit.suppressed(), 1000);
        assert_eq!(limit.allow(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(limit.suppressed(), 0);
    }

    #[test]
    fn a_budget_takes_what_fits_and_gets_it_back() {
        let budget = ByteBudget::new(10);
        assert!(budget.reserve(6));
        assert!(!budget.reserve(5), "11 > 10");
        assert!(budget.reserve(4));
        assert!(!budget.reserve(usize::MAX), "no overflow");
        budget.release(6);
        assert_eq!(budget.used(), 4);
        budget.release(100);
        assert_eq!(budget.used(), 0, "never below zero");
    }
}
