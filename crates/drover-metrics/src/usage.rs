//! CPU time and resident memory of each service's process tree, summed over every process of
//! its process group, from `/proc/<pid>/stat`, and the thread that keeps those files open.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc;
use std::time::Duration;

/// CPU seconds (user + system) and resident bytes of one process group.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// utime + stime of its live processes and of the children they have waited for, in
    /// seconds.
    pub cpu_seconds: f64,
    /// Their resident set, in bytes.
    pub rss_bytes: u64,
}

use drover_sys::procfs::STAT_LIMIT;

/// Most stat files kept open, whatever the file limit.
const MAX_KEPT_OPEN: usize = 16_384;

/// How long a scrape waits for the reader's thread before it reads `/proc` itself.
const READER_PATIENCE: Duration = Duration::from_secs(5);

/// Reads the usage of process groups for the scrapes, on a thread of its own that keeps the
/// services' stat files open in a file descriptor table of its own.
///
/// Kept files cut the cost of a pass by about a third (see [`StatFiles`]), but in drover's
/// shared table every `fork` would copy them and every `exec` close them again: 1000 kept
/// files add 0.1 to 0.2 ms to each spawn. So the thread first takes a private table with only
/// 0, 1 and 2 in it ([`drover_sys::private_fd_table`], `close_range` with
/// `CLOSE_RANGE_UNSHARE`); forks, which happen on other threads, never see its files. Nothing
/// on this thread may write to a descriptor above 2 that it did not open. Where that call is
/// refused (Linux before 5.9, a seccomp profile without `close_range`), no thread runs and
/// every pass opens and closes each file, on the caller's thread.
#[derive(Debug)]
pub struct UsageReader {
    /// To the thread; none when it could not get a table of its own.
    requests: Option<mpsc::Sender<Request>>,
}

#[derive(Debug)]
struct Request {
    groups: Vec<i32>,
    usage: mpsc::SyncSender<HashMap<i32, Usage>>,
}

impl UsageReader {
    /// Starts the thread; it ends when the reader is dropped.
    pub fn start() -> UsageReader {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (started, private) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("drover-proc".into())
            .spawn(move || {
                let private = drover_sys::private_fd_table();
                let failed = private.as_ref().err().map(ToString::to_string);
                let _ = started.send(failed);
                if private.is_err() {
                    return;
                }
                let soft =
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                        .map_or(1024, |(soft, _hard)| soft);
                // The table holds only these files, 0 to 2 and the listing of /proc.
                let limit = usize::try_from(soft.saturating_sub(16)).unwrap_or(MAX_KEPT_OPEN);
                let mut files = StatFiles::with_limit(limit);
                for request in incoming {
                    let _ = request.usage.send(files.by_group(&request.groups));
                }
            });
        let failed = match &thread {
            Ok(_) => private
                .recv()
                .unwrap_or_else(|_| Some("the thread ended".into())),
            Err(err) => Some(err.to_string()),
        };
        if let Some(reason) = failed {
            tracing::debug!(%reason, "metrics: /proc stat files are not kept open");
            if let Ok(thread) = thread {
                let _ = thread.join();
            }
            return UsageReader { requests: None };
        }
        UsageReader {
            requests: Some(requests),
        }
    }

    /// Whether stat files are kept open between passes.
    pub fn keeps_files(&self) -> bool {
        self.requests.is_some()
    }

    /// Usage of every process group in `groups`, in one pass over `/proc`. Should the thread
    /// not answer within [`READER_PATIENCE`], the pass runs here, opening every file.
    pub fn by_group(&self, groups: &[i32]) -> HashMap<i32, Usage> {
        if let Some(requests) = &self.requests {
            let (usage, answer) = mpsc::sync_channel(1);
            let request = Request {
                groups: groups.to_vec(),
                usage,
            };
            if requests.send(request).is_ok()
                && let Ok(usage) = answer.recv_timeout(READER_PATIENCE)
            {
                return usage;
            }
        }
        StatFiles::with_limit(0).by_group(groups)
    }
}

/// Reads the usage of process groups from `/proc`, keeping open between passes the
/// `/proc/<pid>/stat` file of each process found in one of the groups.
///
/// Opening and closing a stat file costs more than reading it (path walk, file and seq_file
/// allocation), so a file that is kept is read again with `pread` at offset 0, which makes the
/// kernel write the line afresh. A kept file belongs to its process, not to its pid number:
/// once the process is gone, reading it fails with `ESRCH`, even if the pid is reused, and the
/// file is dropped. Files are `O_CLOEXEC`. At most `limit` files are open between passes,
/// and during a pass at most `limit` plus the one being read. Used by [`UsageReader`]'s
/// thread, whose table is its own.
#[derive(Debug)]
pub struct StatFiles {
    kept: HashMap<i32, File>,
    limit: usize,
    /// Reads of a kept file that succeeded, over all passes.
    reread: u64,
}

impl StatFiles {
    /// No file open yet; at most `limit` kept open.
    pub fn with_limit(limit: usize) -> StatFiles {
        StatFiles {
            kept: HashMap::new(),
            limit: limit.min(MAX_KEPT_OPEN),
            reread: 0,
        }
    }

    /// How many stat files are open between passes.
    pub fn kept_open(&self) -> usize {
        self.kept.len()
    }

    /// Usage of every process group in `groups`, in one pass over `/proc`.
    pub fn by_group(&mut self, groups: &[i32]) -> HashMap<i32, Usage> {
        let mut usage: HashMap<i32, Usage> =
            groups.iter().map(|&g| (g, Usage::default())).collect();
        let mut previous = std::mem::take(&mut self.kept);
        if usage.is_empty() {
            return usage;
        }
        let ticks = clock_ticks();
        let page = page_size();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return usage;
        };
        let mut path = String::with_capacity(32);
        let mut buffer = [0u8; STAT_LIMIT];
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // A kept file of a process that is gone fails; the pid may be a new process.
            let kept = previous
                .remove(&pid)
                .and_then(|file| Some((read_stat(&file, &mut buffer)?, file)));
            let (read, file) = match kept {
                Some(kept) => {
                    self.reread += 1;
                    kept
                }
                None => {
                    path.clear();
                    let _ = write!(path, "/proc/{pid}/stat");
                    let Ok(file) = File::open(&path) else {
                        continue;
                    };
                    match read_stat(&file, &mut buffer) {
                        Some(read) => (read, file),
                        None => continue,
                    }
                }
            };
            let stat = std::str::from_utf8(&buffer[..read]).unwrap_or_default();
            if let Some((group, cpu_ticks, rss_pages)) = parse_stat(stat)
                && let Some(total) = usage.get_mut(&group)
            {
                total.cpu_seconds += cpu_ticks as f64 / ticks;
                total.rss_bytes += rss_pages * page;
                // The files of processes gone since the last pass are still open until the
                // pass ends: they count against the limit.
                if self.kept.len() + previous.len() < self.limit {
                    self.kept.insert(pid, file);
                }
            }
        }
        usage
    }
}

/// The stat line's length, read at offset 0 in one call (the kernel writes the whole line at
/// once; a full buffer would be a cut line); none if the process is gone.
fn read_stat(file: &File, buffer: &mut [u8; STAT_LIMIT]) -> Option<usize> {
    match file.read_at(buffer, 0) {
        Ok(n) if n > 0 && n < STAT_LIMIT => Some(n),
        _ => None,
    }
}

/// (process group, CPU in ticks, rss in pages) from the text of `/proc/<pid>/stat`; the CPU is
/// its own and that of the children it has waited for (a shell's finished commands).
fn parse_stat(stat: &str) -> Option<(i32, u64, u64)> {
    let stat = drover_sys::procfs::ProcStat::parse(stat)?;
    let cpu = stat.cpu_ticks.saturating_add(stat.children_cpu_ticks);
    Some((stat.pgrp, cpu, stat.rss_pages))
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
// No reaper runs in these tests: each waits for the child it spawned.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn this_process_group_uses_memory() {
        let group = nix::unistd::getpgrp().as_raw();
        let usage = UsageReader::start().by_group(&[group]);
        assert!(usage[&group].rss_bytes > 1 << 20, "{usage:?}");
    }

    /// Waits up to 10 s for `done`; whether it came.
    fn within_10s(mut done: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_kept_file_reads_fresh_figures_and_goes_with_its_process() {
        use std::os::unix::process::CommandExt as _;
        // A busy loop in a process group of its own.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let group = i32::try_from(child.id()).expect("pid");
        let mut files = StatFiles::with_limit(10);
        let first = files.by_group(&[group])[&group];
        let kept_first = files.kept_open();
        // Every later pass reads the kept file again, and its CPU time must still grow.
        let mut passes = 0;
        let grew = within_10s(|| {
            passes += 1;
            files.by_group(&[group])[&group].cpu_seconds > first.cpu_seconds
        });
        let kept = files.kept_open();
        let reread = files.reread;
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(kept_first, 1);
        assert!(grew, "the CPU time read from a kept file never grew");
        assert_eq!(kept, 1);
        assert_eq!(reread, passes, "a kept file was opened again");
        // Reaped: its file fails, is dropped, and the group counts nothing.
        let after = files.by_group(&[group])[&group];
        assert_eq!(after, Usage::default());
        assert_eq!(files.kept_open(), 0);
    }

    #[test]
    fn no_more_files_are_kept_than_the_limit() {
        let group = nix::unistd::getpgrp().as_raw();
        let mut files = StatFiles::with_limit(0);
        assert!(files.by_group(&[group])[&group].rss_bytes > 0);
        assert_eq!(files.kept_open(), 0);
    }

    /// Where this process's threads' descriptors point: (task, target) for every open one.
    fn descriptors_by_task() -> Vec<(String, PathBuf)> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
        {
            let Ok(fds) = std::fs::read_dir(task.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    found.push((task.file_name().to_string_lossy().into_owned(), target));
                }
            }
        }
        found
    }

    /// The `SigBlk` masks of the `drover-proc` threads of this process (signals the kernel lets
    /// no thread block, SIGKILL and SIGSTOP, and glibc's two internal ones count as blocked).
    fn reader_threads_blocked_signals() -> Vec<u64> {
        let tasks = std::fs::read_dir("/proc/thread-self/..").expect("tasks");
        tasks
            .flatten()
            .filter_map(|task| {
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                if comm.trim() != "drover-proc" {
                    return None;
                }
                let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
                let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
                // SIGKILL (9), SIGSTOP (19), and 32 and 33, which glibc reserves for itself.
                Some(mask | 1 << (9 - 1) | 1 << (19 - 1) | 1 << (32 - 1) | 1 << (33 - 1))
            })
            .collect()
    }

    #[test]
    fn the_reader_keeps_its_files_out_of_drovers_table_and_holds_no_copies() {
        use std::io::Read as _;
        use std::os::unix::process::CommandExt as _;
        // A pipe opened before the reader starts: its table begins as a copy of this one.
        let (mut read_end, write_end) = std::io::pipe().expect("pipe");
        let reader = UsageReader::start();
        if !reader.keeps_files() {
            eprintln!(
                "SKIPPED: close_range(CLOSE_RANGE_UNSHARE) is refused here; stat files are not kept"
            );
            return;
        }
        // Signals are never handled on its thread, whose descriptors are not the runtime's.
        // (Other tests' readers may be starting: one full mask is this reader's.)
        let blocked = reader_threads_blocked_signals();
        assert!(
            blocked.contains(&u64::MAX),
            "the readers' threads block only {blocked:x?}"
        );
        // Closed here, the write end must be closed everywhere: the reader holds no copy.
        drop(write_end);
        let (eof, at_eof) = mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = eof.send(read_end.read_to_end(&mut rest).map(|_| rest.len()));
        });
        let closed = at_eof.recv_timeout(std::time::Duration::from_secs(10));
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the pipe never reached its end: the reader holds a copy of it ({closed:?})"
        );

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let group = i32::try_from(child.id()).expect("pid");
        // Just after exec, the new program may not have a resident page yet.
        let resident = within_10s(|| reader.by_group(&[group])[&group].rss_bytes > 0);
        let stat = PathBuf::from(format!("/proc/{group}/stat"));
        // Other tests' passes open every stat file for a moment: a kept file shows in every
        // look, theirs in few. (holders, whether drover's own table has it) per look.
        let mut looks = Vec::new();
        for _ in 0..20 {
            let holders = descriptors_by_task()
                .into_iter()
                .filter(|(_, target)| *target == stat)
                .count();
            let in_main_table = std::fs::read_dir("/proc/self/fd")
                .expect("fds")
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| target == stat);
            looks.push((holders, in_main_table));
            if (holders, in_main_table) == (1, false) {
                break;
            }
        }
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(resident, "the reader never saw the child's memory");
        assert!(
            looks.contains(&(1, false)),
            "the stat file must be kept by one thread, outside drover's own table: {looks:?}"
        );
    }

    #[test]
    fn files_of_processes_gone_count_against_the_limit_until_the_pass_ends() {
        use std::os::unix::process::CommandExt as _;
        let sleeper = || {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .expect("spawn sleep")
        };
        let group = |child: &std::process::Child| i32::try_from(child.id()).expect("pid");
        let (mut a, mut b) = (sleeper(), sleeper());
        let mut files = StatFiles::with_limit(2);
        files.by_group(&[group(&a), group(&b)]);
        let kept_both = files.kept_open();
        // a is gone, c is new: a's file stays open until the pass ends, so only one of b and c
        // may be kept, or three files would be open at once between passes.
        a.kill().expect("kill");
        a.wait().expect("wait");
        let mut c = sleeper();
        files.by_group(&[group(&b), group(&c)]);
        let kept_after_a_went = files.kept_open();
        files.by_group(&[group(&b), group(&c)]);
        let kept_later = files.kept_open();
        for child in [&mut b, &mut c] {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
        // Kept files are those of processes found in the groups: both were.
        assert_eq!(kept_both, 2);
        assert_eq!(kept_after_a_went, 1);
        assert_eq!(kept_later, 2);
    }
}
