//! cgroup v2 membership for services, where drover can make a subtree: every process of a
//! service, `setsid` daemons and grandchildren included, stays in the service's cgroup, which
//! can be asked whether it is empty (`cgroup.events`) and killed whole (`cgroup.kill`, Linux
//! 5.14). No controller is needed, so a hierarchy mounted without any (as on hosts that mount
//! it at `/sys/fs/cgroup/unified`) is enough.
//!
//! The tree: `<drover's own cgroup>/drover-XXXXXX/<n>`, one numbered cgroup per service, made
//! when drover starts it and removed when it has gone. drover itself stays where it was.
//! Where no cgroup v2 hierarchy is mounted, or drover's cgroup cannot be written (a container
//! with `/sys/fs/cgroup` read-only), there is no tree and process groups are all drover has.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// drover's subtree.
#[derive(Debug)]
pub(crate) struct Cgroups {
    root: PathBuf,
    made: u64,
}

/// One service's cgroup.
#[derive(Debug)]
pub(crate) struct ServiceCgroup {
    path: PathBuf,
    /// `cgroup.kill` was written to it. Linux 6.18 (seen on the 2-core machine) then SIGKILLs
    /// every child later born in it by `CLONE_INTO_CGROUP`, as if the kill were still under
    /// way (the fork's kill sequence is read from the parent's cgroup, not the target's), so
    /// its children join it after they start instead.
    killed: std::sync::atomic::AtomicBool,
}

/// The longest text read from a cgroup file (`cgroup.events` is two short lines).
const CGROUP_FILE_LIMIT: u64 = 4096;
/// The longest `cgroup.procs` read: 100 000 pids.
const CGROUP_PROCS_LIMIT: u64 = 800 * 1024;

impl Cgroups {
    /// Makes drover's subtree under its own cgroup, or says why there can be none.
    pub(crate) fn create() -> io::Result<Cgroups> {
        let own = own_cgroup_dir()?;
        let dir = crate::sys::new_private_dir(&own, "drover-", 0o755)?;
        // `cgroup.kill` (Linux 5.14; never in the root cgroup, so looked for in ours) is what
        // ends a service's stray processes; without it a run whose daemons stay could never
        // end: no subtree at all.
        if !dir.path.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&dir.path);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel has no cgroup.kill (Linux 5.14 or later is needed)",
            ));
        }
        Ok(Cgroups {
            root: dir.path,
            made: 0,
        })
    }

    /// The subtree's path.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Makes a new cgroup for one service.
    pub(crate) fn make(&mut self) -> io::Result<ServiceCgroup> {
        let path = self.root.join(self.made.to_string());
        self.made += 1;
        std::fs::create_dir(&path)?;
        Ok(ServiceCgroup {
            path,
            killed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Kills every process in the subtree, waits briefly for them to go, then removes what can
    /// be removed (at exit, when every service has normally ended already).
    pub(crate) fn remove_all(&self) {
        if populated(&self.root).unwrap_or(false) {
            let _ = kill(&self.root);
            for _ in 0..50 {
                if !populated(&self.root).unwrap_or(false) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        remove_tree(&self.root);
    }
}

impl Drop for Cgroups {
    /// However supervision ends (a test's runtime dropped, say), the subtree does not stay.
    fn drop(&mut self) {
        self.remove_all();
    }
}

impl ServiceCgroup {
    /// What a spawn needs to put a child in it: the directory, which children are born in
    /// (`clone3(CLONE_INTO_CGROUP)`), and `cgroup.procs` open for writing, which a child
    /// writes `0` to to join. Opened for each spawn, not held: every descriptor drover holds
    /// is copied into each child and closed again at its `exec`, and at 1000 services that
    /// work is a third of a spawn (docs/benchmarks.md).
    pub(crate) fn entry(&self) -> io::Result<crate::process::CgroupEntry> {
        let born_inside = !self.killed.load(std::sync::atomic::Ordering::Relaxed);
        let dir = match born_inside {
            true => Some(Arc::new(self.open_dir()?)),
            false => None,
        };
        let procs_path = self.path.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(|err| {
                io::Error::new(err.kind(), format!("{}: {err}", procs_path.display()))
            })?;
        Ok(crate::process::CgroupEntry {
            dir,
            procs: Arc::new(OwnedFd::from(procs)),
        })
    }

    /// Its directory, opened (never a symlink: drover made it, in its own subtree).
    fn open_dir(&self) -> io::Result<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", self.path.display())))?;
        Ok(OwnedFd::from(dir))
    }

    /// Whether any process is in it.
    pub(crate) fn populated(&self) -> bool {
        populated(&self.path).unwrap_or(false)
    }

    /// Whether a process of process group `pgid` is in this cgroup: the group is this
    /// service's, not another that took the same number after it emptied.
    pub(crate) fn has_group(&self, pgid: nix::unistd::Pid) -> bool {
        // Cheap and usual: the group's leader (the main process) is still here and leads it.
        if self.holds(pgid) && nix::unistd::getpgid(Some(pgid)).is_ok_and(|group| group == pgid) {
            return true;
        }
        let mut text = String::new();
        let read = std::fs::File::open(self.path.join("cgroup.procs"))
            .and_then(|file| file.take(CGROUP_PROCS_LIMIT).read_to_string(&mut text));
        if read.is_err() || text.len() as u64 >= CGROUP_PROCS_LIMIT {
            // Cannot tell (or not all of it was read): as without cgroups.
            return true;
        }
        text.lines()
            .filter_map(|line| line.trim().parse::<i32>().ok())
            .any(|pid| {
                nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                    .is_ok_and(|group| group == pgid)
            })
    }

    /// Whether process `pid` is in this cgroup, from `/proc/<pid>/cgroup`.
    pub(crate) fn holds(&self, pid: nix::unistd::Pid) -> bool {
        let mut text = String::new();
        let read = std::fs::File::open(format!("/proc/{}/cgroup", pid.as_raw()))
            .and_then(|file| file.take(CGROUP_FILE_LIMIT).read_to_string(&mut text));
        let Some(name) = self.path.file_name() else {
            return false;
        };
        let parent = self.path.parent().and_then(Path::file_name);
        read.is_ok()
            && text.lines().any(|line| {
                line.strip_prefix("0::").is_some_and(|path| {
                    let path = Path::new(path);
                    path.file_name() == Some(name)
                        && path.parent().and_then(Path::file_name) == parent
                })
            })
    }

    /// SIGKILL to every process in it, at once.
    pub(crate) fn kill(&self) -> io::Result<()> {
        self.killed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        kill(&self.path)
    }

    /// Removes it (it must be empty).
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// `cgroup.kill` of the cgroup at `dir`: SIGKILL to everything in it and below.
pub(crate) fn kill(dir: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))?
        .write_all(b"1")
}

/// Whether the cgroup at `dir` (or one below it) has a process.
pub(crate) fn populated(dir: &Path) -> io::Result<bool> {
    let mut text = String::new();
    std::fs::File::open(dir.join("cgroup.events"))?
        .take(CGROUP_FILE_LIMIT)
        .read_to_string(&mut text)?;
    Ok(text.lines().any(|line| line == "populated 1"))
}

/// Removes the empty cgroups of the tree at `dir`, deepest first (cgroupfs directories hold
/// only their interface files, which go with them).
pub(crate) fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The directory of drover's own cgroup in the cgroup v2 hierarchy.
fn own_cgroup_dir() -> io::Result<PathBuf> {
    let unavailable = |why: &str| io::Error::new(io::ErrorKind::NotFound, why.to_string());
    let mut cgroups = String::new();
    std::fs::File::open("/proc/self/cgroup")?
        .take(64 * 1024)
        .read_to_string(&mut cgroups)?;
    let own = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| unavailable("drover is in no cgroup v2 hierarchy"))?;
    let mut mounts = String::new();
    std::fs::File::open("/proc/self/mountinfo")?
        .take(1024 * 1024)
        .read_to_string(&mut mounts)?;
    // mountinfo(5): id parent major:minor root mount-point options... - fstype source options
    let (root, mount_point) = mounts
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            let mut fields = left.split(' ');
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            Some((root.to_string(), mount_point.to_string()))
        })
        .ok_or_else(|| unavailable("no cgroup v2 hierarchy is mounted"))?;
    let relative = own
        .strip_prefix(root.as_str())
        .unwrap_or(own)
        .trim_start_matches('/');
    Ok(Path::new(&unescape(&mount_point)).join(relative))
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = rest.get(at + 4..).unwrap_or("");
            }
            None => {
                out.push('\\');
                rest = rest.get(at + 1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A subtree for test `test`, or `None` after saying it is skipped (no cgroup v2 here).
    fn cgroups_or_skip(test: &str) -> Option<Cgroups> {
        let cgroups = Cgroups::create().ok();
        if cgroups.is_none() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED {test}: no cgroup v2 subtree here");
            }
        }
        cgroups
    }

    #[test]
    // Killed, not waited for: `wait` is the reaper's (clippy.toml), and this test binary's
    // other tests run reapers that collect them.
    #[allow(clippy::zombie_processes)]
    fn a_group_is_the_services_only_while_a_member_is_in_its_cgroup() {
        let Some(mut cgroups) =
            cgroups_or_skip("a_group_is_the_services_only_while_a_member_is_in_its_cgroup")
        else {
            return;
        };
        let cgroup = cgroups.make().expect("cgroup");
        let sleep = || {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .expect("sleep")
        };
        // A group of the same kind that was never the service's (as one that reused the
        // number of an emptied group would be).
        let mut stranger = sleep();
        let mut member = sleep();
        std::fs::write(cgroup.path.join("cgroup.procs"), member.id().to_string()).expect("join");
        let pgid = |child: &std::process::Child| {
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"))
        };
        let (owned, foreign) = (
            cgroup.has_group(pgid(&member)),
            cgroup.has_group(pgid(&stranger)),
        );
        let _ = stranger.kill();
        let _ = member.kill();
        assert!(owned, "the member's group is the service's");
        assert!(!foreign, "a group outside the cgroup is not");
    }

    /// A child born in a cgroup: on x86_64 the call returns once the child has `exec`ed or
    /// failed (it shared drover's memory until then), so the outcome is known at once; the
    /// child is in the cgroup; and the calling thread's signal mask is as it was.
    #[test]
    fn a_child_born_in_its_cgroup_is_told_at_once_and_leaves_the_mask_alone() {
        use std::os::fd::AsFd;
        let Some(mut cgroups) =
            cgroups_or_skip("a_child_born_in_its_cgroup_is_told_at_once_and_leaves_the_mask_alone")
        else {
            return;
        };
        let cgroup = cgroups.make().expect("cgroup");
        let dir = cgroup.open_dir().expect("dir");
        let setup = || crate::sys::ChildSetup {
            new_session: true,
            foreground: false,
            inherit_signals: None,
            credentials: None,
            parent: crate::sys::own_pid(),
            working_dir: None,
            cgroup_procs: None,
            parent_death_signal: true,
            keep_inherited_fds: false,
        };
        let image = |program: &str, args: &[&str]| {
            crate::sys::ExecImage::new(
                std::ffi::OsStr::new(program),
                std::iter::once(program)
                    .chain(args.iter().copied())
                    .map(Into::into),
                std::env::vars_os(),
            )
            .expect("image")
        };
        let mask_before = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let blocked = |status: &str| {
            status
                .lines()
                .find(|line| line.starts_with("SigBlk:"))
                .map(str::to_string)
        };
        let (pid, report) = crate::sys::spawn_into_cgroup(
            &image("/bin/sleep", &["30"]),
            [None, None, None],
            dir.as_fd(),
            setup(),
        )
        .expect("spawned");
        let mask_after = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let outcome = report.outcome();
        let inside = cgroup.holds(pid);
        let _ = crate::sys::signal_process(pid, nix::sys::signal::Signal::SIGKILL);
        assert!(inside, "born in the cgroup");
        assert_eq!(blocked(&mask_before), blocked(&mask_after));
        let missing = crate::sys::spawn_into_cgroup(
            &image("/nonexistent/program", &[]),
            [None, None, None],
            dir.as_fd(),
            setup(),
        )
        .expect("a child that fails");
        if cfg!(target_arch = "x86_64") {
            assert!(matches!(outcome, Some(Ok(()))), "told at once: {outcome:?}");
            let failed = missing.1.outcome();
            assert!(
                failed.as_ref().is_some_and(|o| o
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)),
                "its exec's error, told at once: {failed:?}"
            );
        }
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/sys/fs/cg\040roup"), "/sys/fs/cg roup");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/end\"), r"/end\");
    }
}
