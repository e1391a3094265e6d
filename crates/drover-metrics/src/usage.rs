//! CPU time and resident memory of each service's process tree, summed over every process of
//! its process group, from `/proc/<pid>/stat`.

use std::collections::HashMap;
use std::io::Read as _;

/// CPU seconds (user + system) and resident bytes of one process group.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// utime + stime of its live processes, in seconds.
    pub cpu_seconds: f64,
    /// Their resident set, in bytes.
    pub rss_bytes: u64,
}

/// Longer than any `/proc/<pid>/stat` line (52 numbers and a 64-byte name at most).
const STAT_LIMIT: usize = 4096;

/// Usage of every process group in `groups`, in one pass over `/proc`.
pub fn by_group(groups: &[i32]) -> HashMap<i32, Usage> {
    let mut usage: HashMap<i32, Usage> = groups.iter().map(|&g| (g, Usage::default())).collect();
    if usage.is_empty() {
        return usage;
    }
    let ticks = clock_ticks();
    let page = page_size();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usage;
    };
    // One path and one buffer for the whole pass: a scrape reads every process's stat, and
    // each read is three system calls (open, one read, close; no size query: /proc files
    // have none).
    let mut path = String::with_capacity(32);
    let mut buffer = [0u8; STAT_LIMIT];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        path.clear();
        path.push_str("/proc/");
        path.push_str(pid);
        path.push_str("/stat");
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        // The kernel writes the whole line in one read; a full buffer would be a cut line.
        let stat = match file.read(&mut buffer) {
            Ok(n) if n < STAT_LIMIT => std::str::from_utf8(&buffer[..n]).unwrap_or_default(),
            _ => continue,
        };
        if let Some((group, cpu_ticks, rss_pages)) = parse_stat(stat)
            && let Some(total) = usage.get_mut(&group)
        {
            total.cpu_seconds += cpu_ticks as f64 / ticks;
            total.rss_bytes += rss_pages * page;
        }
    }
    usage
}

/// (process group, utime + stime in ticks, rss in pages) from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<(i32, u64, u64)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    // Field 3 of stat(5) is the first here: state, ppid, pgrp, ... utime is field 14.
    let mut fields = rest.split(' ');
    let group = fields.nth(2)?.parse().ok()?;
    let utime: u64 = fields.nth(8)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let rss: i64 = fields.nth(8)?.parse().ok()?;
    Some((group, utime + stime, u64::try_from(rss).unwrap_or(0)))
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
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000000 256 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((42, 10, 256)));
    }

    #[test]
    fn this_process_group_uses_memory() {
        let group = nix::unistd::getpgrp().as_raw();
        let usage = by_group(&[group]);
        assert!(usage[&group].rss_bytes > 1 << 20, "{usage:?}");
    }
}
