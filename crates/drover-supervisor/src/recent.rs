//! Recent output, for `drover logs`: each service's last lines (in `prefix` mode, where drover
//! reads them), bounded in lines and in bytes, and a broadcast of every new line for followers.
//!
//! **Invariant**: a service that floods its output cannot grow drover's memory through this:
//! each kept line is at most [`KEPT_LINE_BYTES`], a service keeps at most `log_lines` lines,
//! and a follower that falls behind loses lines (it is told how many), never holds them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::broadcast;

/// The longest line kept; a longer one keeps its first bytes (cut at a character boundary).
pub const KEPT_LINE_BYTES: usize = 1024;
/// New lines buffered for each follower before it starts missing some.
const FOLLOW_BUFFER: usize = 1024;

/// One line a service printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    /// Its place among every service's lines, from 0: lines of several services merge by it.
    pub seq: u64,
    /// The service.
    pub service: Arc<str>,
    /// `true` for standard error.
    pub stderr: bool,
    /// The text, without its newline, at most [`KEPT_LINE_BYTES`].
    pub text: String,
}

/// What every service's recent output shares: the sequence and the followers' broadcast.
#[derive(Clone, Debug)]
pub(crate) struct RecentHub {
    seq: Arc<AtomicU64>,
    follow: broadcast::Sender<OutputLine>,
    /// Lines kept per service.
    lines: usize,
}

impl RecentHub {
    pub(crate) fn new(lines: usize) -> RecentHub {
        RecentHub {
            seq: Arc::default(),
            follow: broadcast::channel(FOLLOW_BUFFER).0,
            lines,
        }
    }

    /// Every line printed from now on.
    pub(crate) fn follow(&self) -> broadcast::Receiver<OutputLine> {
        self.follow.subscribe()
    }

    /// The recent output of one service.
    pub(crate) fn for_service(&self, service: Arc<str>) -> Arc<Recent> {
        Arc::new(Recent {
            hub: self.clone(),
            service,
            lines: Mutex::new(VecDeque::new()),
        })
    }
}

/// The last lines of one service.
#[derive(Debug)]
pub(crate) struct Recent {
    hub: RecentHub,
    service: Arc<str>,
    lines: Mutex<VecDeque<OutputLine>>,
}

impl Recent {
    /// Keeps `text` (its first [`KEPT_LINE_BYTES`]) and hands it to followers.
    pub(crate) fn push(&self, stderr: bool, text: &str) {
        let keep = self.hub.lines;
        let following = self.hub.follow.receiver_count() > 0;
        if keep == 0 && !following {
            return;
        }
        let line = OutputLine {
            seq: self.hub.seq.fetch_add(1, Ordering::Relaxed),
            service: self.service.clone(),
            stderr,
            text: cut(text, KEPT_LINE_BYTES).to_string(),
        };
        if following {
            let _ = self.hub.follow.send(line.clone());
        }
        if keep > 0 {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            if lines.len() >= keep {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// Its last `n` lines, oldest first.
    #[cfg(test)]
    pub(crate) fn last(&self, n: usize) -> Vec<OutputLine> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect()
    }
}

/// The newest lines of `recents`: at most `n` of each, and at most `max_bytes` of text in all
/// (the newest win), oldest first. Only the lines chosen are copied: a request for many
/// services' output costs what it returns, not what the rings hold.
pub(crate) fn newest(recents: &[&Recent], n: usize, max_bytes: usize) -> Vec<OutputLine> {
    use std::collections::BinaryHeap;
    let rings: Vec<_> = recents
        .iter()
        .map(|r| r.lines.lock().unwrap_or_else(PoisonError::into_inner))
        .collect();
    // The next line to look at in each ring, counted from its newest; a heap of their seqs.
    let mut taken = vec![0usize; rings.len()];
    let mut heap = BinaryHeap::new();
    for (index, ring) in rings.iter().enumerate() {
        if n > 0
            && let Some(line) = candidate(ring, 0)
        {
            heap.push((line.seq, index));
        }
    }
    let (mut chosen, mut bytes) = (Vec::new(), 0usize);
    while let Some((_, index)) = heap.pop() {
        let (Some(ring), Some(count)) = (rings.get(index), taken.get_mut(index)) else {
            break;
        };
        let Some(line) = candidate(ring, *count) else {
            continue;
        };
        bytes = bytes.saturating_add(line.text.len());
        if bytes > max_bytes {
            break;
        }
        chosen.push(line.clone());
        *count += 1;
        if *count < n
            && let Some(next) = candidate(ring, *count)
        {
            heap.push((next.seq, index));
        }
    }
    chosen.reverse();
    chosen
}

/// The line `taken` places before the newest of `ring`.
fn candidate(ring: &VecDeque<OutputLine>, taken: usize) -> Option<&OutputLine> {
    ring.len()
        .checked_sub(taken.checked_add(1)?)
        .and_then(|at| ring.get(at))
}

/// The longest prefix of `text` of at most `limit` bytes that ends at a character boundary.
fn cut(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_keeps_its_last_lines_each_cut_to_a_kilobyte() {
        let hub = RecentHub::new(3);
        let recent = hub.for_service(Arc::from("web"));
        let mut follower = hub.follow();
        for i in 0..10 {
            recent.push(i % 2 == 1, &format!("line {i}"));
        }
        let last: Vec<_> = recent
            .last(5)
            .into_iter()
            .map(|l| (l.seq, l.stderr, l.text))
            .collect();
        assert_eq!(
            last,
            [
                (7, true, "line 7".to_string()),
                (8, false, "line 8".to_string()),
                (9, true, "line 9".to_string())
            ]
        );
        assert_eq!(recent.last(1).len(), 1);
        assert_eq!(
            follower.try_recv().map(|l| l.text).ok().as_deref(),
            Some("line 0")
        );
        // A long line keeps its first kilobyte, cut between characters.
        recent.push(false, &"é".repeat(1000));
        let kept = &recent.last(1)[0].text;
        assert!(kept.len() <= KEPT_LINE_BYTES && kept.len() >= KEPT_LINE_BYTES - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_newest_lines_of_several_services_merge_within_a_byte_budget() {
        let hub = RecentHub::new(10);
        let (a, b) = (
            hub.for_service(Arc::from("a")),
            hub.for_service(Arc::from("b")),
        );
        for i in 0..6 {
            a.push(false, &format!("a{i}"));
            b.push(false, &format!("b{i}"));
        }
        let texts = |lines: Vec<OutputLine>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
        // At most 2 of each, in the order printed.
        assert_eq!(texts(newest(&[&a, &b], 2, 1000)), ["a4", "b4", "a5", "b5"]);
        // 6 bytes: the three newest lines only.
        assert_eq!(texts(newest(&[&a, &b], 10, 6)), ["b4", "a5", "b5"]);
        assert!(newest(&[&a, &b], 0, 1000).is_empty());
    }

    #[test]
    fn with_no_lines_kept_and_no_follower_nothing_is_copied() {
        let hub = RecentHub::new(0);
        let recent = hub.for_service(Arc::from("web"));
        recent.push(false, "x");
        assert!(recent.last(10).is_empty());
        assert_eq!(hub.seq.load(Ordering::Relaxed), 0);
    }
}
