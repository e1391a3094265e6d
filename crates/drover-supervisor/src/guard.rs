//! The guard: a small process that outlives a killed drover just long enough to end what
//! drover started. Outside PID 1 nothing in the kernel ends a service's grandchildren when
//! drover dies by SIGKILL (PR_SET_PDEATHSIG reaches only each main process), so drover starts
//! its own executable as `drover __guard` in a session of its own, without PDEATHSIG, and tells
//! it over a pipe what to clean: drover's cgroup subtree, the process groups of running
//! services (where there is no subtree), the notify-socket directory. When the pipe ends without
//! `done`, drover has died: the guard kills the subtree (`cgroup.kill`) and every group it was
//! told of, removes the directories, and exits. As PID 1 no guard is needed: the kernel kills
//! the whole PID namespace with it.
//!
//! What holds without cgroup v2: processes that stay in their service's process group are
//! killed; a process that left it (`setsid`, `setpgid`) escapes.
//!
//! Lines on the pipe: `cgroup PATH`, `notify PATH`, `+PGID`, `-PGID`, `done`.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The first argument that makes drover a guard.
pub const GUARD_ARG: &str = "__guard";

/// Whether supervisors started in this process get a guard: only the drover binary, whose
/// executable answers [`GUARD_ARG`], turns it on ([`enable`]).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets supervisors start a guard: call it from a binary whose `main` runs [`main`] when its
/// first argument is [`GUARD_ARG`].
pub fn enable() {
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub(crate) fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The longest line the guard reads: paths are at most PATH_MAX.
const MAX_LINE: usize = 4096 + 16;

/// How long the guard waits for a killed subtree to empty before removing it.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// drover's end of the pipe to its guard. Writes never block: a guard that stopped reading
/// costs lines, never supervision.
pub(crate) struct GuardLink {
    pipe: std::fs::File,
    /// Told `done`: the guard will not act.
    finished: bool,
}

impl GuardLink {
    /// Starts the guard through `processes` (its exit is reaped like any other).
    pub(crate) fn start(processes: &crate::Processes) -> std::io::Result<GuardLink> {
        let exe = std::env::current_exe()?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(
            &write,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let mut command = std::process::Command::new(exe);
        command
            .arg(GUARD_ARG)
            .stdin(std::process::Stdio::from(read))
            .stdout(std::process::Stdio::null());
        processes.spawn_then(
            crate::SpawnRequest {
                command,
                new_session: true,
                foreground: false,
                inherit_signals: None,
                user: None,
                working_dir: None,
                cgroup: None,
                stdio: [None, None, None],
                arg0: None,
                outlives_drover: true,
                keep_inherited_fds: false,
                waiter: Box::new(|_, _| {}),
            },
            Box::new(|result| {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "cannot start the guard; a SIGKILL of drover may leave processes behind");
                }
            }),
        );
        Ok(GuardLink {
            pipe: std::fs::File::from(write),
            finished: false,
        })
    }

    /// Tells the guard one thing; dropped if the pipe is full.
    pub(crate) fn tell(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        if bytes.len() <= MAX_LINE && self.pipe.write_all(&bytes).is_err() {
            tracing::debug!(line, "the guard was not told");
        }
    }

    /// drover ends normally: the guard does nothing.
    pub(crate) fn finish(&mut self) {
        if !self.finished {
            self.tell("done");
            self.finished = true;
        }
    }
}

/// `drover __guard`: reads what to clean from stdin until `done` or the end; cleans at the end
/// unless told `done`. Returns the exit code.
pub fn main() -> i32 {
    // Terminal signals aimed at drover's group or session do not reach this session; SIGHUP
    // from a closed terminal must not stop the cleaning either.
    for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
        crate::sys::ignore_signal(signal);
    }
    // It waits on one pipe for the rest of drover's run: what it ran to start is not needed.
    // It has one thread and loads nothing, so the libraries' pages may go too.
    let _ = crate::sys::release_read_only_pages(crate::sys::Released::EveryFile);
    let mut cgroup: Option<PathBuf> = None;
    let mut notify: Option<PathBuf> = None;
    let mut groups = BTreeSet::new();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::Read::take(&mut input, MAX_LINE as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\n');
        if text == "done" {
            return 0;
        } else if let Some(path) = text.strip_prefix("cgroup ") {
            cgroup = Some(PathBuf::from(path));
        } else if let Some(path) = text.strip_prefix("notify ") {
            notify = Some(PathBuf::from(path));
        } else if let Some(pgid) = text.strip_prefix('+').and_then(|p| p.parse::<i32>().ok()) {
            groups.insert(pgid);
        } else if let Some(pgid) = text.strip_prefix('-').and_then(|p| p.parse::<i32>().ok()) {
            groups.remove(&pgid);
        }
    }
    // drover is gone without saying `done`.
    for &pgid in &groups {
        if pgid > 1 {
            let _ = crate::sys::signal_group(nix::unistd::Pid::from_raw(pgid), Some(libc::SIGKILL));
        }
    }
    if let Some(root) = &cgroup {
        let _ = crate::cgroup::kill(root);
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while crate::cgroup::populated(root).unwrap_or(false) && waited < EMPTY_WAIT {
            std::thread::sleep(step);
            waited += step;
        }
        crate::cgroup::remove_tree(root);
    }
    if let Some(dir) = &notify {
        // drover's own directory (it made it, 0711, root's): nothing in it is followed.
        let _ = std::fs::remove_dir_all(dir);
    }
    0
}
