//! The one parser of `/proc/<pid>/stat` text (proc_pid_stat(5)): the supervisor reads parent
//! pids from it, the metrics read process groups, CPU time and RSS. Also the reader of
//! `/proc/self/smaps` that finds drover's code and read-only data ([`clean_read_only_mappings`]). The text comes from the
//! kernel but holds a name any process may choose (spaces, parentheses, newlines), so the
//! parser never indexes blindly and never panics: a line it cannot read is `None`.

/// The fields of one `/proc/<pid>/stat` line that drover uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 4: the parent's pid.
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Fields 14 and 15, added (saturating): user and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Fields 16 and 17, added (saturating): the CPU time of its children it has waited for.
    pub children_cpu_ticks: u64,
    /// Field 24: resident set size, in pages (0 if the kernel printed a negative number).
    pub rss_pages: u64,
}

/// Longer than any `/proc/<pid>/stat` line (52 numbers and a 64-byte name at most).
pub const STAT_LIMIT: usize = 4096;

impl ProcStat {
    /// Reads and parses the stat file at `path` (`/proc/<pid>/stat`), [`STAT_LIMIT`] bytes at
    /// most; `None` when it is gone or unreadable.
    pub fn read(path: &std::path::Path) -> Option<ProcStat> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(path)
            .ok()?
            .take(STAT_LIMIT as u64)
            .read_to_string(&mut text)
            .ok()?;
        ProcStat::parse(&text)
    }

    /// Parses the text of a stat file; `None` when a field is missing or not a number.
    pub fn parse(stat: &str) -> Option<ProcStat> {
        // The name may hold spaces and parentheses: the fields start after the last ')'.
        // (`split_ascii_whitespace` measured 87 ns a line against 176 for `split(' ')`; a
        // scrape parses one line per process.)
        let after_name = stat.get(stat.rfind(')')?..)?;
        let mut fields = after_name.get(1..)?.split_ascii_whitespace();
        // Field 3 (state) is the first here.
        let ppid = fields.nth(1)?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        let utime: u64 = fields.nth(8)?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        // Signed in the kernel (`%ld`); never negative in practice, and 0 if so.
        let cutime: i64 = fields.next()?.parse().ok()?;
        let cstime: i64 = fields.next()?.parse().ok()?;
        let rss: i64 = fields.nth(6)?.parse().ok()?;
        Some(ProcStat {
            ppid,
            pgrp,
            cpu_ticks: utime.saturating_add(stime),
            children_cpu_ticks: u64::try_from(cutime)
                .unwrap_or(0)
                .saturating_add(u64::try_from(cstime).unwrap_or(0)),
            rss_pages: u64::try_from(rss).unwrap_or(0),
        })
    }
}

/// The most of `/proc/self/smaps` read: a few hundred mappings of about 1 KiB each.
pub const SMAPS_LIMIT: u64 = 1 << 20;

/// The file a mapping maps: its device (`major:minor`, as smaps prints it, in hex) and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedFile {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number.
    pub minor: u32,
    /// The inode.
    pub inode: u64,
}

/// The read-only mappings (`r-xp` code and `r--p` data) of `file` (of any file when `None`)
/// in a `/proc/<pid>/smaps`
/// text that hold no private page, resident or swapped (`Anonymous`, `Swap` and `SwapPss`
/// all 0; data relocated at start and made read-only afterwards has such pages): every page
/// of theirs is the file's own, so unmapping it loses nothing. As (start address, length in
/// bytes). A mapping is decided at its last line (`VmFlags:`): one cut off (the text was
/// truncated) or odd is left out.
pub fn clean_read_only_mappings(smaps: &[u8], file: Option<MappedFile>) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    // The mapping being read, while it may still be clean.
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.split(|&byte| byte == b'\n') {
        // Paths are the only bytes that may not be text, and they are never read.
        let line = String::from_utf8_lossy(line);
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if let Some(key) = first.strip_suffix(':') {
            match key {
                "Anonymous" | "Swap" | "SwapPss" if words.next() != Some("0") => current = None,
                "VmFlags" => found.extend(current.take()),
                _ => {}
            }
            continue;
        }
        // A mapping's header: `start-end perms offset major:minor inode [path]`.
        current = None;
        let (perms, device, inode) = (words.next(), words.nth(1), words.next());
        let Some((start, end)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let same_file = device
            .and_then(|device| device.split_once(':'))
            .zip(inode.and_then(|inode| inode.parse::<u64>().ok()))
            .is_some_and(|((major, minor), inode)| match file {
                Some(file) => {
                    u32::from_str_radix(major, 16) == Ok(file.major)
                        && u32::from_str_radix(minor, 16) == Ok(file.minor)
                        && inode == file.inode
                }
                None => inode != 0,
            });
        if matches!(perms, Some("r-xp" | "r--p")) && same_file && end > start {
            current = Some((start, end - start));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::{MappedFile, ProcStat, clean_read_only_mappings};

    #[test]
    fn names_with_spaces_and_parentheses_are_skipped() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 100 1000000 256 18446744073709551615";
        assert_eq!(
            ProcStat::parse(stat),
            Some(ProcStat {
                ppid: 1,
                pgrp: 42,
                cpu_ticks: 10,
                children_cpu_ticks: 3,
                rss_pages: 256
            })
        );
    }

    #[test]
    fn anything_short_or_odd_is_none_never_a_panic() {
        for stat in [
            "",
            ")",
            "1 (x)",
            "1 (x) S",
            "1 (x) S 1 2",
            "1 (x) S one 2 3",
            "1 (é)é S 1 2 3",
            "1 (x) S 1 2 0 -1 -1 4194560 100 0 0 0 18446744073709551615 18446744073709551615 0 0 20 0 1 0 100 1000000 -5",
        ] {
            let parsed = ProcStat::parse(stat);
            if stat.ends_with("-5") {
                // Saturated, not wrapped; a negative RSS is 0.
                assert_eq!(
                    parsed.map(|p| (p.cpu_ticks, p.rss_pages)),
                    Some((u64::MAX, 0))
                );
            } else {
                assert_eq!(parsed, None, "{stat:?}");
            }
        }
    }

    #[test]
    fn this_process_parses() {
        let parsed = ProcStat::read("/proc/self/stat".as_ref()).expect("read and parse");
        assert_eq!(parsed.pgrp, nix::unistd::getpgrp().as_raw());
        assert_eq!(parsed.ppid, nix::unistd::getppid().as_raw());
        assert!(parsed.rss_pages > 0);
    }

    #[test]
    fn only_clean_read_only_mappings_of_the_program_are_released() {
        let program = MappedFile {
            major: 0xfd,
            minor: 1,
            inode: 1234,
        };
        let smaps = "\
55d0c0a00000-55d0c0b00000 r-xp 00001000 fd:01 1234 /usr/bin/drover
Rss:                 512 kB
Anonymous:             0 kB
Swap:                  0 kB
SwapPss:               0 kB
VmFlags: rd ex mr mw me
55d0c0b00000-55d0c0b10000 r--p 00101000 fd:01 1234 /usr/bin/drover (deleted)
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me
55d0c0b10000-55d0c0b11000 rw-p 00111000 fd:01 1234 /usr/bin/drover
Anonymous:             0 kB
VmFlags: rd wr mr mw me
55d0c0b11000-55d0c0b12000 r--p 00112000 fd:01 1234 /usr/bin/drover
Anonymous:             4 kB
VmFlags: rd mr mw me
55d0c0b12000-55d0c0b13000 r--p 00113000 fd:01 1234 /usr/bin/drover
Anonymous:             0 kB
Swap:                  4 kB
VmFlags: rd mr mw me
7f0000000000-7f0000001000 r-xp 00000000 fd:01 99 /lib/libc.so
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000002000-7f0000003000 r--p 00000000 fd:02 1234 /other/device
Anonymous:             0 kB
VmFlags: rd mr mw me
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
VmFlags: rd ex mr mw me
zz-7f0000005000 r-xp 00000000 fd:01 1234 /odd
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000006000-7f0000007000 r-xp 00000000 fd:01 1234 /usr/bin/drover
Anonymous:             0 kB
";
        // The program's code and read-only data; not its writable data, not a mapping with a
        // private page in memory or in swap (relocated data), not another file (a library,
        // loaded or unloaded later), not an odd header, not a mapping whose lines were cut
        // off before its last.
        assert_eq!(
            clean_read_only_mappings(smaps.as_bytes(), Some(program)),
            vec![(0x55d0_c0a0_0000, 0x10_0000), (0x55d0_c0b0_0000, 0x1_0000)]
        );
        assert!(clean_read_only_mappings(b"", Some(program)).is_empty());
        // Any file: the library and the other device's file too, never anonymous code.
        assert_eq!(clean_read_only_mappings(smaps.as_bytes(), None).len(), 4);
        // A path that is no text does not hide the mapping after it.
        let mut odd = b"7f0000008000-7f0000009000 r--p 00000000 fd:01 7 /x\xff\nAnonymous: 0 kB\nVmFlags: rd\n".to_vec();
        odd.extend_from_slice(smaps.as_bytes());
        assert_eq!(clean_read_only_mappings(&odd, Some(program)).len(), 2);
    }

    #[test]
    fn this_process_has_clean_read_only_mappings() {
        use std::os::unix::fs::MetadataExt;
        let smaps = std::fs::read("/proc/self/smaps").expect("smaps");
        let program = std::fs::metadata("/proc/self/exe").expect("exe");
        let file = MappedFile {
            major: libc::major(program.dev()),
            minor: libc::minor(program.dev()),
            inode: program.ino(),
        };
        assert!(!clean_read_only_mappings(&smaps, Some(file)).is_empty());
    }
}
