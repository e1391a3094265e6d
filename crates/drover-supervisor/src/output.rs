//! Service output in `prefix` mode: each service's stdout and stderr are pipes that drover reads
//! line by line and writes out as `name | line` (or JSON objects with `log.format: json`).
//!
//! **Invariant**: a slow or blocked drover stdout never stalls supervision or a service. Readers
//! never wait for the writer: they hand lines to a bounded queue and, when it is full, drop the
//! line and count it. One writer thread does the blocking writes. A service therefore never
//! blocks on a full pipe because of drover, and a service that floods only loses its own lines.
//!
//! Each service keeps one pipe per stream for its whole life, reused across restarts: a restart
//! costs two `dup`s, not two new pipes and two new reader tasks.

use crate::ratelimit::ByteBudget;
use crate::recent::Recent;
use drover_spec::model::LogFormat;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tokio::net::unix::pipe;

/// Longest line written as one; longer lines are split into pieces of this size.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;
/// Bytes waiting for the writer before readers start dropping, each line counted as its text
/// and [`LINE_COST`]: lines of binary output are long (16 KiB, up to three times that once
/// invalid UTF-8 is replaced), and a bound in lines alone let the queue grow to 200 MB. The
/// queue itself grows and shrinks with its lines: a channel made for a bound in lines holds
/// that many slots from the start (256 KiB of drover's resident memory for 4096 lines).
pub(crate) const QUEUE_BYTES: usize = 4 << 20;
/// What a queued line costs beside its text: the line's fields and its channel slot. Empty
/// lines, too, fill the queue: 65 536 of them at most.
pub(crate) const LINE_COST: usize = 64;
/// A last line without its newline is written after this much silence.
pub(crate) const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(100);

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output, written to drover's stdout.
    Stdout,
    /// Standard error, written to drover's stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

struct Line {
    service: Arc<str>,
    colour: usize,
    stream: Stream,
    text: String,
}

/// The writer thread and its queue.
pub(crate) struct OutputSink {
    queue: mpsc::Sender<Line>,
    /// Bytes of text in `queue`.
    queued_bytes: Arc<ByteBudget>,
    /// Closed by the writer thread when it ends.
    finished: mpsc::Receiver<()>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Dropped-line count of one service.
#[derive(Debug, Default)]
pub(crate) struct DropCounter(AtomicU64);

impl DropCounter {
    /// Lines dropped so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl OutputSink {
    /// Starts the writer thread. `width` is the longest service name, for alignment;
    /// `timestamps` is `settings.log.timestamps`.
    pub(crate) fn start(
        format: LogFormat,
        width: usize,
        timestamps: Option<bool>,
    ) -> io::Result<OutputSink> {
        let (queue, lines) = mpsc::channel::<Line>();
        let (done, finished) = mpsc::channel::<()>();
        let colour = colour_allowed();
        let stdout = io::stdout();
        let stderr = io::stderr();
        let stamped = |fd: BorrowedFd<'_>, terminal: bool| {
            timestamps.unwrap_or_else(|| terminal || crate::sys::is_regular_file(fd))
        };
        let style = Style {
            format,
            width,
            stdout: StreamStyle {
                colour: colour && stdout.is_terminal(),
                timestamps: stamped(stdout.as_fd(), stdout.is_terminal()),
            },
            stderr: StreamStyle {
                colour: colour && stderr.is_terminal(),
                timestamps: stamped(stderr.as_fd(), stderr.is_terminal()),
            },
        };
        let queued_bytes = Arc::new(ByteBudget::new(QUEUE_BYTES));
        let written = queued_bytes.clone();
        std::thread::Builder::new()
            .name("drover-output".into())
            .spawn(move || {
                // Its writes to a closed stdout must not raise a SIGPIPE that looks as if sent.
                let _ = crate::sys::block_sigpipe_on_this_thread();
                write_lines(&lines, &style, &written);
                drop(done);
            })?;
        Ok(OutputSink {
            queue,
            queued_bytes,
            finished,
            readers: Vec::new(),
        })
    }

    /// Once every service has ended and the write ends are closed: lets the readers reach the
    /// end of their pipes and the writer write what is queued, waiting at most `limit` (a
    /// blocked stdout must not keep drover from exiting).
    pub(crate) async fn finish(self, limit: Duration) {
        let OutputSink {
            queue,
            queued_bytes: _,
            finished,
            readers,
        } = self;
        drop(queue);
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(limit).unwrap_or(now);
        for reader in readers {
            let _ = tokio::time::timeout_at(deadline, reader).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::task::spawn_blocking(move || finished.recv_timeout(left)).await;
    }

    /// Reads `read_end` until it closes and queues each line as `service`'s.
    pub(crate) fn read_pipe(
        &mut self,
        service: Arc<str>,
        colour: usize,
        stream: Stream,
        read_end: OwnedFd,
        dropped: Arc<DropCounter>,
        recent: Arc<Recent>,
    ) -> io::Result<()> {
        let receiver = pipe::Receiver::from_owned_fd(read_end)?;
        let sender = LineSender {
            service,
            colour,
            stream,
            queue: self.queue.clone(),
            queued_bytes: self.queued_bytes.clone(),
            dropped,
            recent,
        };
        let reader = tokio::spawn(async move {
            let mut splitter = LineSplitter::default();
            loop {
                // Wait without a buffer: a service's reader owns only its partial line.
                let ready = if splitter.has_partial() {
                    match tokio::time::timeout(PARTIAL_LINE_WAIT, receiver.readable()).await {
                        Ok(ready) => ready,
                        Err(_silence) => {
                            splitter.finish(|text| sender.send(text));
                            continue;
                        }
                    }
                } else {
                    receiver.readable().await
                };
                let read = match ready {
                    Ok(()) => read_ready(&receiver, &mut splitter, &sender),
                    Err(_) => Read::Ended,
                };
                match read {
                    Read::Ended => break,
                    // Most likely drained: let the others run, as tokio's own `read` does by
                    // waiting for the next readiness event.
                    Read::Short => tokio::task::yield_now().await,
                    // `readable` takes nothing from the task's budget: a service that floods
                    // would keep the runtime, and supervision, to itself.
                    Read::Full => tokio::task::consume_budget().await,
                }
            }
            splitter.finish(|text| sender.send(text));
        });
        self.readers.push(reader);
        Ok(())
    }
}

/// Bytes read from a pipe at once: a full pipe buffer.
const READ_CHUNK: usize = 64 * 1024;

std::thread_local! {
    /// The read buffer of every reader on this thread. Readers fill it and split it without
    /// awaiting in between, so one per thread serves them all: a per-reader buffer cost
    /// 128 KiB per service (two streams), 100 MiB of RSS with 1000 services.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// What one read of a service's pipe found.
enum Read {
    /// The buffer's worth: there may be more.
    Full,
    /// Less, or nothing yet.
    Short,
    /// The pipe has ended (or failed).
    Ended,
}

/// Reads what `receiver` has and queues its complete lines.
fn read_ready(receiver: &pipe::Receiver, splitter: &mut LineSplitter, sender: &LineSender) -> Read {
    READ_BUFFER.with_borrow_mut(|buffer| match receiver.try_read(buffer) {
        Ok(0) => Read::Ended,
        Ok(n) => {
            // `try_read` never reports more than the buffer holds.
            let read = buffer.get(..n).unwrap_or_default();
            splitter.push(read, |text| sender.send(text));
            if n == buffer.len() {
                Read::Full
            } else {
                Read::Short
            }
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Read::Short,
        Err(_) => Read::Ended,
    })
}

/// Queues the lines of one stream of one service, or counts them as dropped.
struct LineSender {
    service: Arc<str>,
    colour: usize,
    stream: Stream,
    queue: mpsc::Sender<Line>,
    queued_bytes: Arc<ByteBudget>,
    dropped: Arc<DropCounter>,
    /// Its recent lines, for `drover logs`: kept even when the writer is behind.
    recent: Arc<Recent>,
}

impl LineSender {
    fn send(&self, text: String) {
        self.recent.push(self.stream == Stream::Stderr, &text);
        let size = text.len().saturating_add(LINE_COST);
        if !self.queued_bytes.reserve(size) {
            self.dropped.0.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let line = Line {
            service: self.service.clone(),
            colour: self.colour,
            stream: self.stream,
            text,
        };
        if self.queue.send(line).is_err() {
            self.queued_bytes.release(size);
            self.dropped.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Cuts a byte stream into lines of at most [`MAX_LINE_BYTES`], replacing invalid UTF-8.
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` with every complete line (without its newline).
    pub(crate) fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(String)) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
            let (take, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(end) if end <= room => (end + 1, true),
                _ if bytes.len() >= room => (room, true),
                _ => (bytes.len(), false),
            };
            // `take` is at most `bytes.len()` in every arm above.
            let (line, rest) = bytes.split_at_checked(take).unwrap_or((bytes, &[]));
            self.partial.extend_from_slice(line);
            bytes = rest;
            if complete {
                if self.partial.last() == Some(&b'\n') {
                    self.partial.pop();
                }
                emit(String::from_utf8_lossy(&self.partial).into_owned());
                self.partial.clear();
            }
        }
    }

    /// Whether a line has begun without ending yet.
    pub(crate) fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Emits what is left (a last line without a newline).
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(String)) {
        if !self.partial.is_empty() {
            emit(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
    }
}

/// Whether colours may be used on a terminal: not when `NO_COLOR` is set and not empty
/// (<https://no-color.org>).
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

struct Style {
    format: LogFormat,
    width: usize,
    stdout: StreamStyle,
    stderr: StreamStyle,
}

/// How the lines of one of drover's streams look in `text` format.
#[derive(Clone, Copy)]
struct StreamStyle {
    /// The name in its colour (a terminal, and [`colour_allowed`]).
    colour: bool,
    /// A timestamp first (`settings.log.timestamps`).
    timestamps: bool,
}

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

fn write_lines(lines: &mpsc::Receiver<Line>, style: &Style, queued_bytes: &ByteBudget) {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut err = Vec::with_capacity(64 * 1024);
    let mut formatted = String::new();
    while let Ok(mut line) = lines.recv() {
        // Take every line already queued, then write them in one go per stream: the std locks
        // are held only for the write, so drover's own log lines interleave between batches.
        loop {
            queued_bytes.release(line.text.len().saturating_add(LINE_COST));
            formatted.clear();
            let stream = match line.stream {
                Stream::Stdout => style.stdout,
                Stream::Stderr => style.stderr,
            };
            format_line(&line, style, stream, &mut formatted);
            match line.stream {
                Stream::Stdout => out.extend_from_slice(formatted.as_bytes()),
                Stream::Stderr => err.extend_from_slice(formatted.as_bytes()),
            }
            if out.len() + err.len() >= 64 * 1024 {
                break;
            }
            match lines.try_recv() {
                Ok(next) => line = next,
                Err(_) => break,
            }
        }
        // A closed or failing stdout must not stop the thread: the queue must keep draining.
        if !out.is_empty() {
            let _ = stdout.lock().write_all(&out);
            out.clear();
        }
        if !err.is_empty() {
            let _ = stderr.lock().write_all(&err);
            err.clear();
        }
    }
}

/// One line as written. JSON lines have the names, level and timestamp precision of drover's
/// own JSON lines (`timestamp` in microseconds, `level`, `message`, `service`), and `stream`.
fn format_line(line: &Line, style: &Style, stream: StreamStyle, out: &mut String) {
    use std::fmt::Write as _;
    let now = || humantime::format_rfc3339_micros(std::time::SystemTime::now());
    match style.format {
        LogFormat::Json => {
            // In the order drover's own lines have them; strings escaped by serde_json.
            let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
            let _ = writeln!(
                out,
                r#"{{"timestamp":"{}","level":"INFO","message":{},"service":{},"stream":"{}"}}"#,
                now(),
                quoted(&line.text),
                quoted(&line.service),
                line.stream.as_str()
            );
        }
        LogFormat::Text => {
            let text = line.text.strip_suffix('\r').unwrap_or(&line.text);
            if stream.timestamps {
                let _ = write!(out, "{} ", now());
            }
            if stream.colour {
                let code = COLOURS.get(line.colour % COLOURS.len()).unwrap_or(&"36");
                let _ = writeln!(
                    out,
                    "\x1b[{code}m{:width$} |\x1b[0m {text}",
                    line.service,
                    width = style.width
                );
            } else {
                let _ = writeln!(out, "{:width$} | {text}", line.service, width = style.width);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |l| lines.push(l));
        }
        splitter.finish(|l| lines.push(l));
        lines
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_not_only_in_lines() {
        // Nobody drains this queue: a stdout that does not move.
        let (queue, lines) = mpsc::channel::<Line>();
        let sender = LineSender {
            service: Arc::from("bin"),
            colour: 0,
            stream: Stream::Stdout,
            queue,
            queued_bytes: Arc::new(ByteBudget::new(QUEUE_BYTES)),
            dropped: Arc::new(DropCounter::default()),
            recent: crate::recent::RecentHub::new(1000).for_service(Arc::from("bin")),
        };
        // Binary output: every line the longest there is, every byte replaced (3 bytes each).
        let mut splitter = LineSplitter::default();
        let garbage = vec![0xffu8; MAX_LINE_BYTES * 200];
        splitter.push(&garbage, |text| sender.send(text));
        let queued: usize = lines
            .try_iter()
            .map(|line| line.text.len() + LINE_COST)
            .sum();
        assert!(queued <= QUEUE_BYTES, "{queued} bytes queued");
        assert!(queued > QUEUE_BYTES / 2, "the queue is used: {queued}");
        assert!(sender.dropped.get() > 0);
        assert_eq!(sender.queued_bytes.used(), queued);
        // Empty lines count too: a flood of them is bounded all the same.
        let (queue, lines) = mpsc::channel::<Line>();
        let sender = LineSender {
            queue,
            queued_bytes: Arc::new(ByteBudget::new(QUEUE_BYTES)),
            dropped: Arc::new(DropCounter::default()),
            ..sender
        };
        for _ in 0..200_000 {
            sender.send(String::new());
        }
        assert_eq!(lines.try_iter().count(), QUEUE_BYTES / LINE_COST);
        assert_eq!(
            sender.dropped.get(),
            200_000 - (QUEUE_BYTES / LINE_COST) as u64
        );
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(split(&[b"a\nb", b"c\n", b"d"]), ["a", "bc", "d"]);
    }

    #[test]
    fn long_lines_are_split() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let lines = split(&[&long, b"\n"]);
        assert_eq!(
            lines.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(split(&[b"ok \xff\xfe end\n"]), ["ok \u{fffd}\u{fffd} end"]);
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(split(&[b"\n\nx\n"]), ["", "", "x"]);
    }
}
