//! A bound on how often one kind of log line is written: input that anybody can provoke (a
//! datagram from any local user, a failing `accept`) must not turn drover's log into a flood.

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
}
