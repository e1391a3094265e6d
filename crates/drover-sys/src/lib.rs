//! drover-sys: every raw syscall and every `unsafe` block of drover, wrapped once, and the one
//! parser of `/proc/<pid>/stat` ([`procfs`]). Below the supervisor and the metrics; the other
//! crates forbid `unsafe`.
//!
//! What runs in a forked child before `exec` lives here too ([`ChildSetup`]): after `fork` in a
//! multi-threaded process only async-signal-safe functions may run (signal-safety(7)), so the
//! child code below calls raw `libc` functions on values prepared in the parent, allocates
//! nothing, and takes no lock.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod procfs;
#[cfg(target_arch = "x86_64")]
mod vfork;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "signal {}", signal.as_str()),
                Err(_) => write!(f, "signal {number}"),
            },
        }
    }
}

/// One reaped child, or none left to reap right now.
pub enum Reaped {
    /// A child ended.
    Child(Pid, ExitStatus),
    /// Children exist, but none has ended.
    NoneReady,
    /// No children at all (`ECHILD`).
    NoChildren,
}

/// `waitpid(-1, WNOHANG)`: reaps one ended child of this process, whoever started it.
///
/// The status is decoded here from the raw integer: nix's `waitpid` reaps first and then
/// fails with `EINVAL` on a signal it has no name for (32 to 64, the real-time ones), which
/// would lose that child's end for good.
pub fn reap_one() -> io::Result<Reaped> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one c_int to the pointer, a local that outlives the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return Ok(Reaped::NoneReady);
        }
        if pid < 0 {
            return match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => Ok(Reaped::NoChildren),
                err => Err(err.into()),
            };
        }
        let pid = Pid::from_raw(pid);
        if libc::WIFEXITED(status) {
            return Ok(Reaped::Child(
                pid,
                ExitStatus::Exited(libc::WEXITSTATUS(status)),
            ));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Reaped::Child(
                pid,
                ExitStatus::Signaled(libc::WTERMSIG(status)),
            ));
        }
        // Stops and continues are not asked for (no WUNTRACED/WCONTINUED); skip them.
    }
}

/// kill(2), the one wrapper: `target` is a pid, or minus a process group; `signal` 0 only
/// checks. Targets that mean "every process" (-1) or "my own group" (0) are refused, whoever
/// asks: a service's group is never 1 or 0, and a bug must not signal the whole machine.
fn kill(target: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    if matches!(target, -1 | 0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(target, signal) };
    Errno::result(result).map(drop).map_err(io::Error::from)
}

/// `kill` with ESRCH (nobody there) as `Ok(false)`.
fn kill_existing(target: libc::pid_t, signal: libc::c_int) -> io::Result<bool> {
    match kill(target, signal) {
        Ok(()) => Ok(true),
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Sends signal number `signal` to every process of group `pgid` (`None` only checks).
/// `Ok(false)` when the group is empty.
pub fn signal_group(pgid: Pid, signal: Option<libc::c_int>) -> io::Result<bool> {
    let group = pgid.as_raw().checked_neg().filter(|&g| g < 0);
    let group = group.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    kill_existing(group, signal.unwrap_or(0))
}

/// Whether process group `pgid` still has a member (zombies count until they are reaped).
pub fn group_alive(pgid: Pid) -> bool {
    // EPERM means a member exists that we may not signal: still alive.
    !matches!(signal_group(pgid, None), Ok(false))
}

/// Sends `signal` to one process. `Ok(false)` when it no longer exists.
pub fn signal_process(pid: Pid, signal: Signal) -> io::Result<bool> {
    kill_existing(pid.as_raw(), signal as libc::c_int)
}

/// Sends a raw signal number (any catchable one, real-time included) to one process.
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    kill(pid, signal)
}

/// Ignores signal `number` in this process (for drover's guard).
pub fn ignore_signal(number: libc::c_int) {
    set_ignored(number, true);
}

/// Ignores SIGTTIN and SIGTTOU in drover, as tini does: once CMD's group owns the terminal,
/// drover is a background group, and its own writes or reads must not stop it.
pub fn ignore_terminal_stops() {
    for number in [libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler code; the call only changes a disposition.
        unsafe { libc::signal(number, libc::SIG_IGN) };
    }
}

/// Asks for `signal` when this process's parent dies (PR_SET_PDEATHSIG), for tini's `-p`.
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers and touches no memory of ours.
    let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
    check(result)
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), as PID 1
/// is. Needed whenever drover is not PID 1, so that grandchildren of services come back to it.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// The signal mask and the set of ignored signals this process started with, captured before
/// anything changes them, so that `drover -- CMD` can hand them on to CMD as tini does.
#[derive(Clone, Copy)]
pub struct InheritedSignals {
    mask: libc::sigset_t,
    ignored: SignalSet,
}

/// What [`InheritedSignals::capture`] saw first, for [`ChildSetup`] to know which signals can be
/// ignored in drover.
static AT_START: OnceLock<InheritedSignals> = OnceLock::new();

/// The only signals drover itself ever ignores: SIGPIPE (Rust's runtime) and SIGTTIN and SIGTTOU
/// ([`ignore_terminal_stops`]). Any other ignored signal was ignored when drover started.
const IGNORED_BY_DROVER: [libc::c_int; 3] = [libc::SIGPIPE, libc::SIGTTIN, libc::SIGTTOU];

/// The kernel's signal numbers, 1 to 64 (`_NSIG`), glibc's internal 32 and 33 included.
const KERNEL_SIGNALS: std::ops::RangeInclusive<libc::c_int> = 1..=64;

/// A set of kernel signal numbers, one bit each. glibc's `sigset_t` functions refuse signals 32
/// and 33, which glibc keeps for itself, yet a process can inherit them ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SignalSet(u64);

impl SignalSet {
    const ALL: SignalSet = SignalSet(u64::MAX);

    fn with(self, number: libc::c_int) -> SignalSet {
        SignalSet(self.0 | Self::bit(number))
    }

    fn contains(self, number: libc::c_int) -> bool {
        self.0 & Self::bit(number) != 0
    }

    fn bit(number: libc::c_int) -> u64 {
        match u32::try_from(number - 1) {
            Ok(shift) if shift < 64 => 1 << shift,
            _ => 0,
        }
    }
}

/// The kernel's `struct sigaction` as rt_sigaction(2) takes it on x86_64 and aarch64 (glibc's
/// differs in layout, and glibc's `sigaction` refuses signals 32 and 33).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("KernelSigaction matches the kernel's layout on x86_64 and aarch64 only");

/// Whether signal `number` is ignored in this process, read with the raw syscall.
fn is_ignored(number: libc::c_int) -> bool {
    let mut old = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: a null new action only reads the current one into `old`, which we own and which
    // has the kernel's layout and size (the last argument is the size of its mask).
    let read = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            number,
            std::ptr::null::<KernelSigaction>(),
            &mut old,
            std::mem::size_of::<u64>(),
        )
    };
    read == 0 && old.handler == libc::SIG_IGN
}

/// Sets signal `number` to be ignored or at its default, with the raw syscall. Async-signal-safe
/// (one system call, no memory but the stack), so it may run in a forked child. Errors (SIGKILL
/// and SIGSTOP) are ignored.
fn set_ignored(number: libc::c_int, ignored: bool) {
    let action = KernelSigaction {
        handler: if ignored {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        },
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction only reads `action`, which has the kernel's layout and size; SIG_IGN
    // and SIG_DFL install no handler code, so no restorer is needed.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            number,
            &action,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        );
    }
}

impl InheritedSignals {
    /// Reads the current mask and dispositions. Call it first thing in `main`: the first capture
    /// is also what lets spawns reset only the signals that can be ignored (see
    /// [`signals_to_reset`]).
    pub fn capture() -> InheritedSignals {
        let signals = Self::read();
        *AT_START.get_or_init(|| signals)
    }

    fn read() -> InheritedSignals {
        // Reading the mask cannot fail; an empty one if it somehow did.
        let mask = thread_sigmask(libc::SIG_SETMASK, None).unwrap_or_else(|_| empty_sigset());
        // Rust's runtime ignores SIGPIPE before `main`, so its original disposition is lost;
        // std's spawn resets it to the default, and so do we.
        let ignored = KERNEL_SIGNALS
            .filter(|&number| number != libc::SIGPIPE && is_ignored(number))
            .fold(SignalSet::default(), SignalSet::with);
        InheritedSignals { mask, ignored }
    }
}

fn empty_sigset() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Blocks every signal on the calling thread, for the spawner thread: signals are then handled
/// on the runtime's threads, and a forked child starts with all of them blocked, so no handler
/// of drover can run in it before [`ChildSetup`] has set its dispositions and mask.
pub fn block_signals_on_this_thread() -> io::Result<()> {
    let mut all = empty_sigset();
    // SAFETY: sigfillset fills a set we own.
    unsafe { libc::sigfillset(&mut all) };
    thread_sigmask(libc::SIG_BLOCK, Some(&all)).map(drop)
}

/// pthread_sigmask(3), the one wrapper: changes this thread's mask by `how` with `set` (`None`
/// only reads it) and returns the mask before. Async-signal-safe (it allocates nothing), so a
/// forked child may call it.
fn thread_sigmask(how: libc::c_int, set: Option<&libc::sigset_t>) -> io::Result<libc::sigset_t> {
    let mut old = empty_sigset();
    let set = set.map_or(std::ptr::null(), |set| set as *const libc::sigset_t);
    // SAFETY: `set` is null or a live set we borrow; `old` is a set we own, written by the
    // call. pthread_sigmask returns an error number rather than setting errno.
    match unsafe { libc::pthread_sigmask(how, set, &mut old) } {
        0 => Ok(old),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Sets the calling thread's signal mask to `mask` (bit `n - 1` for signal `n`, all 64 of the
/// kernel's) with the raw syscall, and returns the previous one: glibc's wrappers keep
/// signals 32 and 33 out of any mask.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn raw_sigmask(mask: u64) -> io::Result<u64> {
    let mut old = 0u64;
    // SAFETY: rt_sigprocmask reads `mask` and writes `old`, both ours and of the kernel's
    // sigset size on x86_64 and aarch64 (8 bytes, the last argument).
    let result = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            std::ptr::from_ref(&mask),
            std::ptr::from_mut(&mut old),
            std::mem::size_of::<u64>(),
        )
    };
    check_raw(result).map(|()| old)
}

/// Blocks SIGPIPE on the calling thread, for threads that write to pipes drover does not own
/// (its stderr, its stdout): a write to a closed pipe then fails with EPIPE and raises a
/// SIGPIPE that stays pending on this thread, so the SIGPIPE handler of `drover -- CMD`, which
/// forwards what is sent to drover from outside, never forwards one that drover's own write
/// raised.
pub fn block_sigpipe_on_this_thread() -> io::Result<()> {
    let mut set = empty_sigset();
    // SAFETY: sigaddset adds to a set we own.
    unsafe { libc::sigaddset(&mut set, libc::SIGPIPE) };
    thread_sigmask(libc::SIG_BLOCK, Some(&set)).map(drop)
}

/// The real-time signals available to applications (`SIGRTMIN..=SIGRTMAX`).
pub fn realtime_signals() -> std::ops::RangeInclusive<i32> {
    libc::SIGRTMIN()..=libc::SIGRTMAX()
}

/// The signals whose disposition a child must set before `exec`. A handler never survives
/// `exec` (execve(2)), but an ignored signal does; so only signals that can be ignored in drover
/// need a call. Without a capture at start (the library used on its own), every signal is reset.
fn signals_to_reset() -> SignalSet {
    match AT_START.get() {
        Some(start) => IGNORED_BY_DROVER
            .into_iter()
            .fold(start.ignored, SignalSet::with),
        None => SignalSet::ALL,
    }
}

/// What the child does between `fork` and `exec`, beyond what `std::process::Command` does
/// (std has already set up stdio, the working directory and an empty signal mask by then).
#[derive(Clone)]
pub struct ChildSetup {
    /// `setsid()`: a new session and process group (services). Otherwise `setpgid(0, 0)`.
    pub new_session: bool,
    /// Make the new group the terminal's foreground group, when stdin is a terminal.
    pub foreground: bool,
    /// `None`: every signal at its default and an empty mask (services). `Some`: the mask and
    /// ignored signals drover started with (`drover -- CMD`).
    pub inherit_signals: Option<InheritedSignals>,
    /// Credentials to switch to.
    pub credentials: Option<Credentials>,
    /// The pid of drover, to detect that it died before PR_SET_PDEATHSIG was armed.
    pub parent: Pid,
    /// The directory to enter, after the credentials change: a user must not reach, through
    /// drover, a directory it could not enter itself.
    pub working_dir: Option<std::ffi::CString>,
    /// A cgroup's `cgroup.procs`, open for writing: the child joins it first thing.
    pub cgroup_procs: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// Killed when drover dies (PR_SET_PDEATHSIG): every process but drover's guard.
    pub parent_death_signal: bool,
    /// Keep the descriptors above 2 that drover inherited (`drover -- CMD`, as tini does:
    /// socket activation, a caller's pipe); those drover opened itself are all close-on-exec.
    pub keep_inherited_fds: bool,
}

/// Added to the errno of a failed `chdir` in the child, so that the parent can tell it from a
/// failed `execve` (std hands the child's error number over as it is; errno values are below
/// 4096).
const CHDIR_ERROR_BASE: i32 = 1 << 16;

/// The errno of a failed `chdir` in [`spawn`]'s child, if `error` is one.
pub fn chdir_error(error: &io::Error) -> Option<io::Error> {
    let raw = error.raw_os_error()?;
    (raw > CHDIR_ERROR_BASE).then(|| io::Error::from_raw_os_error(raw - CHDIR_ERROR_BASE))
}

/// Resolved user and groups for `user:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user id to switch to.
    pub uid: libc::uid_t,
    /// The primary group.
    pub gid: libc::gid_t,
    /// The supplementary groups.
    pub groups: Vec<libc::gid_t>,
    /// The passwd entry's name, home directory and shell, when there is one.
    pub account: Option<Account>,
}

/// What `HOME`, `USER`, `LOGNAME` and `SHELL` are set from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user's name.
    pub name: String,
    /// Its home directory.
    pub home: std::path::PathBuf,
    /// Its login shell.
    pub shell: std::path::PathBuf,
}

/// Spawns `command` with `setup` applied in the child. The returned `Child` must never be
/// waited on: the reaper owns `waitpid` (`../shared/DEPS.md`, "Reaping").
pub fn spawn(command: &mut Command, setup: ChildSetup) -> io::Result<Child> {
    let reset = signals_to_reset();
    // SAFETY: the closure runs in the child between fork and exec. It only calls
    // async-signal-safe functions (setsid, setpgid, tcsetpgrp, sigaction, sigprocmask, prctl,
    // getppid, chdir, and the raw system calls setgid, setgroups, setuid, prlimit64 and close_range,
    // an atomic load) on values captured
    // before the fork (`setup` is moved in whole; the child only reads it); it allocates
    // nothing and takes no lock.
    unsafe { command.pre_exec(move || child_setup(&setup, reset)) };
    command.spawn()
}

/// The child's half of [`spawn`]. Only async-signal-safe calls; see the SAFETY note there.
fn child_setup(setup: &ChildSetup, reset: SignalSet) -> io::Result<()> {
    let ChildSetup {
        new_session,
        foreground,
        inherit_signals,
        credentials,
        parent,
        working_dir,
        cgroup_procs,
        parent_death_signal,
        keep_inherited_fds,
    } = setup;
    let (new_session, foreground, parent) = (*new_session, *foreground, *parent);
    let inherit = inherit_signals.as_ref();
    // (Whole function.)
    // SAFETY: every call below is async-signal-safe and works on integers or on memory owned
    // by this stack frame or captured, initialised, before the fork.
    unsafe {
        if let Some(procs) = cgroup_procs {
            // Before anything else: whatever this process starts is in the cgroup too.
            use std::os::fd::AsRawFd;
            let written = libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1);
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        if new_session {
            check(libc::setsid())?;
        } else {
            check(libc::setpgid(0, 0))?;
            if foreground {
                // Taking the terminal from a background group raises SIGTTOU unless it is
                // ignored; ignore it for the call, as tini does. No terminal (ENOTTY) is fine.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            }
        }
        // Dispositions: handlers never survive exec, but ignored signals do. Services start
        // with every signal at its default; `drover -- CMD` keeps what drover started with.
        // Only signals in `reset` can be ignored here, so only those need a call; the raw
        // syscall also reaches 32 and 33, which glibc's `signal` refuses.
        for number in KERNEL_SIGNALS {
            if reset.contains(number) {
                set_ignored(number, inherit.is_some_and(|s| s.ignored.contains(number)));
            }
        }
        let mask = match inherit {
            Some(signals) => signals.mask,
            None => empty_sigset(),
        };
        thread_sigmask(libc::SIG_SETMASK, Some(&mask))?;
        if let Some(credentials) = credentials {
            // setgid, then the supplementary groups, then setuid: after setuid, the others
            // are no longer permitted. Raw system calls: the C libraries' wrappers change the
            // ids of every thread they know of, signalling each and waiting for it, and in
            // the child of a raw `clone3` they still know of the parent's threads, which are
            // not there: they would wait for ever. The child has one thread, so the calls
            // change the whole process.
            check_raw(libc::syscall(libc::SYS_setgid, credentials.gid))?;
            let groups = &credentials.groups;
            check_raw(libc::syscall(
                libc::SYS_setgroups,
                groups.len(),
                groups.as_ptr(),
            ))?;
            check_raw(libc::syscall(libc::SYS_setuid, credentials.uid))?;
        }
        if let Some(dir) = working_dir {
            if libc::chdir(dir.as_ptr()) == -1 {
                let errno = *libc::__errno_location();
                return Err(io::Error::from_raw_os_error(CHDIR_ERROR_BASE + errno));
            }
        }
        // The open-file limit drover started with, not the one it raised for itself.
        let inherited = INHERITED_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
        if inherited != 0 {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // prlimit64 itself: musl's setrlimit applies the limit to every thread it knows
            // of (see the ids above).
            let own = 0 as libc::pid_t;
            let no_limit: *const libc::rlimit = std::ptr::null();
            let read = libc::syscall(
                libc::SYS_prlimit64,
                own,
                libc::RLIMIT_NOFILE,
                no_limit,
                std::ptr::from_mut(&mut limit),
            );
            if read == 0 {
                limit.rlim_cur = inherited;
                let no_old: *mut libc::rlimit = std::ptr::null_mut();
                libc::syscall(
                    libc::SYS_prlimit64,
                    own,
                    libc::RLIMIT_NOFILE,
                    std::ptr::from_ref(&limit),
                    no_old,
                );
            }
        }
        // A killed drover must leave no service behind. Armed after the credentials change,
        // which clears it (prctl(2)). If drover already died, our parent changed and no signal
        // will ever come: give up (ESRCH; a raw error, because building a message would
        // allocate).
        if *parent_death_signal {
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            if libc::getppid() != parent.as_raw() {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        // No descriptor but 0, 1 and 2 crosses exec, whoever opened it without O_CLOEXEC.
        // close_range(2) with CLOSE_RANGE_CLOEXEC keeps std's exec-error pipe usable until exec;
        // kernels older than 5.11 lack it, and then only CLOEXEC descriptors are protected.
        if !*keep_inherited_fds {
            let _ = close_range_above_stdio(libc::CLOSE_RANGE_CLOEXEC);
        }
    }
    Ok(())
}

/// A program ready for `execve`, every string and pointer array made before the fork: the
/// child of [`spawn_into_cgroup`] may not allocate.
pub struct ExecImage {
    program: std::ffi::CString,
    _strings: Vec<std::ffi::CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ExecImage {
    /// `program` (a path: no `PATH` search is done), its `argv` (`argv[0]` first) and its
    /// whole environment. An error when a string holds a NUL byte.
    pub fn new(
        program: &std::ffi::OsStr,
        argv: impl IntoIterator<Item = std::ffi::OsString>,
        environment: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> io::Result<ExecImage> {
        use std::os::unix::ffi::OsStrExt;
        let c_string = |bytes: Vec<u8>| {
            std::ffi::CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        };
        let program = c_string(program.as_bytes().to_vec())?;
        let mut strings = Vec::new();
        let mut argc = 0usize;
        for arg in argv {
            strings.push(c_string(arg.as_bytes().to_vec())?);
            argc += 1;
        }
        for (key, value) in environment {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            strings.push(c_string(pair)?);
        }
        // The CStrings' buffers live on the heap: moving the Vec keeps these pointers valid.
        let (args, envs) = strings.split_at(argc);
        let pointers = |list: &[std::ffi::CString]| {
            let mut out: Vec<*const libc::c_char> = list.iter().map(|s| s.as_ptr()).collect();
            out.push(std::ptr::null());
            out
        };
        let argv = pointers(args);
        let envp = pointers(envs);
        Ok(ExecImage {
            program,
            _strings: strings,
            argv,
            envp,
        })
    }
}

/// `struct clone_args` of `linux/sched.h`, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Starts `image` as a child born in the cgroup `cgroup_dir` (a descriptor of its directory):
/// `clone3(CLONE_INTO_CGROUP)`, then in the child `stdio` (descriptors for 0, 1 and 2; `None`
/// keeps drover's), [`ChildSetup`] and `execve`. No migration: writing a pid to
/// `cgroup.procs` takes the kernel's cgroup threadgroup lock for writing, which waits for an
/// RCU grace period, 5 ms of every restart on the 2-core machine (docs/benchmarks.md).
///
/// On x86_64 the child shares drover's memory until its `exec` (`CLONE_VM | CLONE_VFORK`,
/// [`vfork`]): nothing is copied, this call returns once the child has `exec`ed or failed,
/// and the [`ExecReport`] already knows which. Elsewhere (or when its stack cannot be mapped)
/// the child gets a copy of the address space, as with `fork`; this call returns at once and
/// the report tells later, so the caller starts the next child meanwhile. A child that fails
/// exits 127 and is reaped like any other. `Err(CloneError::Refused)` (`ENOSYS`, `EPERM`,
/// `EINVAL`, `E2BIG`) means this kernel or a seccomp filter refuses `clone3`: spawn the usual
/// way.
pub fn spawn_into_cgroup(
    image: &ExecImage,
    stdio: [Option<std::os::fd::BorrowedFd<'_>>; 3],
    cgroup_dir: std::os::fd::BorrowedFd<'_>,
    setup: ChildSetup,
) -> Result<(Pid, ExecReport), CloneError> {
    use std::os::fd::AsRawFd;
    let stdio_fds = stdio.map(|fd| fd.map(|fd| fd.as_raw_fd()));
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup_dir.as_raw_fd()).unwrap_or(0),
        ..CloneArgs::default()
    };
    // Not for a child that changes its credentials: between its `setuid` and its `exec` the
    // service's user could stop it (SIGSTOP), and drover's thread with it, and the kernel
    // sets the dumpable flag of the memory the child shares, drover's, when the ids change.
    #[cfg(target_arch = "x86_64")]
    if setup.credentials.is_none() {
        let mut stack = vfork::ChildStack::shared();
        if let Some(stack) = stack.as_mut() {
            return spawn_sharing_memory(image, stdio_fds, args, stack, setup);
        }
    }
    spawn_copying_memory(image, stdio_fds, args, setup)
}

/// The error of a failed `clone3`: `Refused` where the kernel or a seccomp filter refuses the
/// call itself (the caller spawns the usual way from then on); any other (`EAGAIN` from a
/// full `pids.max`, `ENOMEM`) is this spawn's failure.
fn clone_error(errno: i32) -> CloneError {
    let error = io::Error::from_raw_os_error(errno);
    match errno {
        libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG => CloneError::Refused(error),
        _ => CloneError::Spawn(error),
    }
}

/// What the child of [`spawn_sharing_memory`] reads, and the one place it writes: the errno
/// of its failure (0 until then).
#[cfg(target_arch = "x86_64")]
struct SharedChild<'a> {
    image: &'a ExecImage,
    stdio: [Option<libc::c_int>; 3],
    setup: &'a ChildSetup,
    failure: std::sync::atomic::AtomicI32,
}

/// The child of [`spawn_sharing_memory`], on its own stack.
///
/// # Safety
/// Only as the entry of that child, with `context` pointing to its [`SharedChild`].
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn shared_child_main(context: *mut std::ffi::c_void) -> ! {
    // SAFETY: `context` is the `SharedChild` of the parent's frame, which waits (CLONE_VFORK)
    // and so keeps it alive until this child has `exec`ed or exited. Every disposition is
    // reset (`SignalSet::ALL`): a handler of drover's must not run in shared memory.
    unsafe {
        let child = &*context.cast::<SharedChild<'_>>();
        exec_child(
            child.image,
            child.stdio,
            child.setup,
            SignalSet::ALL,
            Failure::Shared(&child.failure),
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn spawn_sharing_memory(
    image: &ExecImage,
    stdio: [Option<libc::c_int>; 3],
    mut args: CloneArgs,
    stack: &mut vfork::ChildStack,
    setup: ChildSetup,
) -> Result<(Pid, ExecReport), CloneError> {
    const CLONE_VM: u64 = libc::CLONE_VM as u64;
    const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
    (args.stack, args.stack_size) = stack.range();
    args.flags |= CLONE_VM | CLONE_VFORK;
    let child = SharedChild {
        image,
        stdio,
        setup: &setup,
        failure: std::sync::atomic::AtomicI32::new(0),
    };
    // No handler may run in the child before it resets them: it starts with every signal
    // blocked (32 and 33 too, which glibc's sigfillset leaves out), and this thread gets its
    // mask back afterwards.
    let previous = raw_sigmask(u64::MAX).map_err(CloneError::Spawn)?;
    // SAFETY: `stack` is borrowed mutably (no other spawn uses it) and outlives the call, and
    // CLONE_VFORK returns only once the child no longer uses it; the child runs `shared_child_main` on `child`, which this frame keeps alive;
    // `args` outlives the call, and its size is passed.
    let result = unsafe {
        vfork::clone3_calling(
            &mut args,
            std::mem::size_of::<CloneArgs>(),
            shared_child_main,
            std::ptr::from_ref(&child).cast_mut().cast(),
        )
    };
    let _ = raw_sigmask(previous);
    if result < 0 {
        return Err(clone_error(i32::try_from(-result).unwrap_or(libc::EINVAL)));
    }
    let failure = child.failure.load(std::sync::atomic::Ordering::SeqCst);
    Ok((
        Pid::from_raw(i32::try_from(result).unwrap_or(i32::MAX)),
        ExecReport(Report::Known((failure != 0).then_some(failure))),
    ))
}

fn spawn_copying_memory(
    image: &ExecImage,
    stdio: [Option<libc::c_int>; 3],
    mut args: CloneArgs,
    setup: ChildSetup,
) -> Result<(Pid, ExecReport), CloneError> {
    use std::os::fd::AsRawFd;
    let reset = signals_to_reset();
    let (errors, error_out) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(|e| CloneError::Spawn(e.into()))?;
    let error_fd = error_out.as_raw_fd();
    // SAFETY: clone3 without CLONE_VM gives the child a copy of this address space, as fork
    // does. The child runs only `exec_child`, which calls async-signal-safe functions on
    // memory prepared before the call (`image`, `stdio`, `setup`), allocates nothing,
    // takes no lock and never returns. `args` outlives the call, and its size is passed.
    let result = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_mut(&mut args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if result == 0 {
        // SAFETY: in the child; see above.
        unsafe { exec_child(image, stdio, &setup, reset, Failure::Pipe(error_fd)) }
    }
    if result < 0 {
        return Err(clone_error(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
        ));
    }
    drop(error_out);
    Ok((
        Pid::from_raw(i32::try_from(result).unwrap_or(i32::MAX)),
        ExecReport(Report::Pipe(errors)),
    ))
}

/// Tells whether a child started by [`spawn_into_cgroup`] has `exec`ed or failed.
pub struct ExecReport(Report);

enum Report {
    /// Told by the time `clone3` returned (the child shared drover's memory): the errno of
    /// its failure, if it failed.
    Known(Option<i32>),
    /// The read end of the child's report pipe: it closes at a successful `execve`; a
    /// failing child writes its errno first.
    Pipe(std::os::fd::OwnedFd),
}

impl ExecReport {
    /// `None` while the child has neither `exec`ed nor failed; never blocks.
    pub fn outcome(&self) -> Option<io::Result<()>> {
        let pipe = match &self.0 {
            Report::Known(None) => return Some(Ok(())),
            Report::Known(Some(errno)) => return Some(Err(io::Error::from_raw_os_error(*errno))),
            Report::Pipe(pipe) => pipe,
        };
        let mut errno = [0u8; 4];
        loop {
            return match nix::unistd::read(pipe, &mut errno) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => None,
                Ok(0) => Some(Ok(())),
                Ok(4) => Some(Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))),
                Ok(_) => Some(Err(io::Error::other("a short error report from the child"))),
                Err(e) => Some(Err(e.into())),
            };
        }
    }

    /// Waits up to `limit` for any of `reports` to have an outcome (`poll`); at once when one
    /// has.
    pub fn wait_any(reports: &[&ExecReport], limit: std::time::Duration) {
        use std::os::fd::AsFd;
        let mut fds = Vec::with_capacity(reports.len());
        for report in reports {
            match &report.0 {
                Report::Known(_) => return,
                Report::Pipe(pipe) => fds.push(nix::poll::PollFd::new(
                    pipe.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )),
            }
        }
        let millis = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis));
    }
}

/// Why [`spawn_into_cgroup`] did not start the program.
#[derive(Debug)]
pub enum CloneError {
    /// `clone3` itself failed: no child; spawn the usual way.
    Refused(io::Error),
    /// No child could be started (the report pipe could not be made, the mask not set).
    Spawn(io::Error),
}

/// Where the child of [`spawn_into_cgroup`] puts the errno of its failure.
#[derive(Clone, Copy)]
enum Failure<'a> {
    /// Written to this pipe (the child has a copy of drover's memory).
    Pipe(libc::c_int),
    /// Stored here (the child shares drover's memory, which waits for it).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Shared(&'a std::sync::atomic::AtomicI32),
}

/// The child of [`spawn_into_cgroup`]: stdio, setup, `execve`; on failure the errno goes to
/// `failure` and the child exits 127.
///
/// # Safety
/// Only in the child of `clone3`/fork, with everything it reads prepared before.
unsafe fn exec_child(
    image: &ExecImage,
    stdio: [Option<libc::c_int>; 3],
    setup: &ChildSetup,
    reset: SignalSet,
    failure: Failure<'_>,
) -> ! {
    // SAFETY: (the whole function) async-signal-safe calls on integers and on memory
    // prepared before the fork.
    unsafe {
        let fail = |errno: libc::c_int| -> ! {
            match failure {
                Failure::Pipe(fd) => {
                    let bytes = errno.to_ne_bytes();
                    libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                }
                Failure::Shared(slot) => slot.store(errno, std::sync::atomic::Ordering::SeqCst),
            }
            libc::_exit(127)
        };
        // A source that is itself 0, 1 or 2 (drover started with one closed) is moved out of
        // the way first, so that no dup2 below overwrites a source still to be used.
        let mut sources = stdio;
        for source in sources.iter_mut().flatten() {
            if (0..3).contains(source) {
                let moved = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, 3);
                if moved == -1 {
                    fail(*libc::__errno_location());
                }
                *source = moved;
            }
        }
        for (target, source) in (0..3).zip(sources) {
            if let Some(source) = source
                && libc::dup2(source, target) == -1
            {
                fail(*libc::__errno_location());
            }
        }
        if let Err(err) = child_setup(setup, reset) {
            fail(err.raw_os_error().unwrap_or(libc::EINVAL));
        }
        libc::execve(
            image.program.as_ptr(),
            image.argv.as_ptr(),
            image.envp.as_ptr(),
        );
        fail(*libc::__errno_location())
    }
}

/// Unmaps the pages of drover's own program (its code and read-only data) that are mapped
/// now: `madvise(MADV_DONTNEED)` over each read-only mapping of the executable that holds no
/// private page ([`procfs::clean_read_only_mappings`]); then, on glibc, gives the heap's free
/// pages back (`malloc_trim`). For once start-up is over: the parsing, validation and set-up
/// code it ran is never run again, yet stays in the resident set for ever (the kernel maps
/// file pages 64 KiB at a time and unmaps them only under memory pressure). What runs
/// afterwards is mapped again from the page cache, a minor fault per 64 KiB. Returns the bytes
/// unmapped (counting pages that were not mapped).
///
/// Only the executable's mappings: the kernel mapped them at `exec` and nothing unmaps them
/// while drover runs, so a range read from smaps is still that mapping at the `madvise`. A
/// library's may not be (the dynamic loader maps and unmaps files as it loads one, its cache
/// included), and memory mapped there since would be zeroed.
///
/// With [`Released::EveryFile`], the libraries' too: only for a process with one thread that
/// loads nothing meanwhile (drover's guard).
///
/// Reads `/proc/self/smaps`: call it off the runtime thread.
pub fn release_read_only_pages(scope: Released) -> io::Result<u64> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt;
    let file = match scope {
        Released::EveryFile => None,
        Released::Program => {
            let program = std::fs::metadata("/proc/self/exe")?;
            Some(procfs::MappedFile {
                major: libc::major(program.dev()),
                minor: libc::minor(program.dev()),
                inode: program.ino(),
            })
        }
    };
    let mut smaps = Vec::new();
    std::fs::File::open("/proc/self/smaps")?
        .take(procfs::SMAPS_LIMIT)
        .read_to_end(&mut smaps)?;
    let ranges = procfs::clean_read_only_mappings(&smaps, file);
    // Freed before the trim below.
    drop(smaps);
    let mut released = 0u64;
    for (start, length) in ranges {
        // SAFETY: each range is a read-only private mapping of drover's executable (or, in
        // a process with one thread that loads nothing, of any file) with no private page,
        // resident or swapped, so its pages are the file's, unchanged (read-only
        // mappings are not written after start; relocated data has private pages and is
        // left out): dropping them loses nothing, and the next read or instruction fetch
        // there maps the same page again (code running in them, this function's included,
        // just faults). The kernel mapped the executable at exec and nothing unmaps it while
        // drover runs (and nothing runs in the other case), so the range is still that
        // mapping.
        let done =
            unsafe { libc::madvise(start as *mut libc::c_void, length, libc::MADV_DONTNEED) };
        if done == 0 {
            released = released.saturating_add(length as u64);
        }
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks and only returns free memory.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(released)
}

/// Which mappings [`release_read_only_pages`] unmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// drover's executable's.
    Program,
    /// Every file's, the libraries' included: for a process with one thread that loads
    /// nothing meanwhile.
    EveryFile,
}

/// Gives the calling thread a file descriptor table of its own, in which every descriptor but
/// 0, 1 and 2 is closed: `close_range(3, ~0, CLOSE_RANGE_UNSHARE)` (Linux 5.9), one atomic
/// call, allowed by Docker's default seccomp profile since 20.10, where `unshare(2)` is
/// not. Other threads keep their descriptors, and never see the ones this
/// thread opens afterwards, nor do the children they fork. On error nothing has changed.
///
/// Call it first thing on a thread of its own, before it holds any descriptor (nor may its
/// closure capture one): what this thread holds above 2 is closed as well.
///
/// It first blocks every signal on this thread, for good: a signal handler runs on whichever
/// thread the kernel picks, and tokio's handler writes its wake-up to a descriptor of the
/// shared table, which here is closed or another file. A SIGCHLD handled here would be lost,
/// and with it the reaping of the services.
pub fn private_fd_table() -> io::Result<()> {
    block_signals_on_this_thread()?;
    // With CLOSE_RANGE_UNSHARE the kernel first copies the table and closes the range in the
    // copy, which only this thread uses: no descriptor owned by another thread (an `OwnedFd`,
    // a socket of the runtime) is closed under its owner; this thread holds none (see above).
    // On failure the table is left as it was.
    close_range_above_stdio(libc::CLOSE_RANGE_UNSHARE)
}

/// close_range(2) of every descriptor above 2, the one wrapper: `CLOSE_RANGE_CLOEXEC` marks
/// them close-on-exec (in a forked child), `CLOSE_RANGE_UNSHARE` closes them in a private copy
/// of the table. Async-signal-safe.
fn close_range_above_stdio(flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range takes integers and touches no memory of ours; what it closes or
    // marks is what the callers above say may go.
    let result = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, flags) };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_raw(result: libc::c_long) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The effective uid of drover.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether drover runs as PID 1 (of its PID namespace).
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// The soft limit on open files drover started with, which services get back (0: unchanged).
static INHERITED_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Raises drover's soft limit on open files to the hard limit (each service holds about four
/// descriptors in drover: a soft limit of 1024 stopped starts past ~250 services). Services
/// get the soft limit drover started with back before `exec`, as systemd does: programs that
/// use select(2) break above 1024. Returns (the old soft limit, the new one).
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        INHERITED_NOFILE.store(soft, std::sync::atomic::Ordering::Relaxed);
    }
    Ok((soft, hard.max(soft)))
}

/// Grows this process's descriptor table to hold `count` descriptors (within the open-file
/// limit) at once: call it while drover has one thread. The kernel grows a table by doubling
/// it when a descriptor needs room, and a table shared by several threads waits for an RCU
/// grace period each time (`expand_fdtable`), 5 to 12 ms on the 2-core machine: twice in a
/// start of 100 services, four times in one of 1000. A table used by one thread grows at
/// no such cost, and never shrinks.
pub fn reserve_descriptors(count: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    let highest = count.min(soft.saturating_sub(1));
    let Ok(highest) = libc::c_int::try_from(highest) else {
        return Ok(());
    };
    let (read, _write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own onto the lowest free number from
    // `highest` up; the copy is closed at once below.
    let copy = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest) };
    if copy == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` was just made by this function and nothing else knows of it.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) });
    Ok(())
}

/// Whether this process has any child, live or a zombie (`waitid(P_ALL, WNOHANG | WNOWAIT)`:
/// nothing is reaped). A subreaper or PID 1 without children has no descendants either: an
/// orphan comes to it, so every live descendant has a live ancestor among its children.
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data, for which all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`, which lives on this stack; WNOHANG never blocks
    // and WNOWAIT leaves every child to the reaper.
    let result = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(result == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Whether `fd` is open on a regular file (`fstat`); false when that cannot be told.
pub fn is_regular_file(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// The pid of this process.
pub fn own_pid() -> Pid {
    nix::unistd::getpid()
}

/// A directory this process made itself and holds open: its path, for names handed to
/// services, and its descriptor, for everything done inside it.
#[derive(Debug)]
pub struct OwnDir {
    /// Where it is.
    pub path: std::path::PathBuf,
    /// It, open (`O_DIRECTORY | O_NOFOLLOW`).
    pub fd: std::os::fd::OwnedFd,
}

/// Opens directory `name` under `at` (or the path `name` itself when `at` is `None`) without
/// following a symlink in its last component.
fn open_dir_nofollow(
    at: Option<std::os::fd::BorrowedFd<'_>>,
    name: &std::path::Path,
) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{AT_FDCWD, OFlag, openat};
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    openat(
        at.unwrap_or(AT_FDCWD),
        name,
        flags,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Whether a directory with this `stat` is one only `uid` (or root) can change entries of:
/// owned by one of them, and writable by no one else unless sticky (as `/tmp` is, where a
/// name another user made cannot be removed or replaced by anyone but its owner).
fn trusted_dir(stat: &nix::sys::stat::FileStat, uid: u32) -> bool {
    let mode = stat.st_mode;
    let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
    let owner_ok = stat.st_uid == uid || stat.st_uid == 0;
    let others_write = mode & 0o022 != 0;
    let sticky = mode & libc::S_ISVTX != 0;
    is_dir && owner_ok && (!others_write || sticky)
}

/// Makes `parent/name` a directory of this process's own, mode `mode`, or adopts it when it
/// already exists as a real directory (never a symlink) owned by this process's user, with no
/// write permission for anyone else; its mode is set on the descriptor. For fixed names such
/// as `/run/drover`, whose parent only root can write.
pub fn own_dir(parent: &std::path::Path, name: &str, mode: u32) -> io::Result<OwnDir> {
    use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
    let parent_fd = std::fs::File::open(parent)?;
    let uid = effective_uid();
    if !trusted_dir(&fstat(&parent_fd)?, uid) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} may be changed by other users", parent.display()),
        ));
    }
    use std::os::fd::AsFd;
    match mkdirat(parent_fd.as_fd(), name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(err) => return Err(err.into()),
    }
    let fd = open_dir_nofollow(Some(parent_fd.as_fd()), std::path::Path::new(name))?;
    let stat = fstat(&fd)?;
    if stat.st_uid != uid || stat.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}/{name} exists but is not drover's own (owner uid {}, mode {:o})",
                parent.display(),
                stat.st_uid,
                stat.st_mode & 0o7777
            ),
        ));
    }
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(OwnDir {
        path: parent.join(name),
        fd,
    })
}

/// The directory of a socket at a fixed path (`/run/drover` for `/run/drover/drover.sock`):
/// made with `mode` (and group `group`) set on its descriptor when it does not exist, adopted as
/// it is when it does, provided it is a real directory (never a symlink) that this process's
/// user (or root) owns and nobody else may write. Its parent must be one only this user or root
/// can change (or sticky). Whether it was made here comes back too.
pub fn socket_dir(
    path: &std::path::Path,
    mode: u32,
    group: Option<u32>,
) -> io::Result<(OwnDir, bool)> {
    use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
    use std::os::fd::AsFd;
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(invalid(format!(
            "{} has no parent directory",
            path.display()
        )));
    };
    let parent_fd = open_dir_nofollow(None, parent)?;
    let uid = effective_uid();
    if !trusted_dir(&fstat(&parent_fd)?, uid) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} may be changed by other users", parent.display()),
        ));
    }
    let made = match mkdirat(parent_fd.as_fd(), name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(err) => return Err(err.into()),
    };
    let fd = open_dir_nofollow(Some(parent_fd.as_fd()), std::path::Path::new(name))?;
    let stat = fstat(&fd)?;
    let owner_ok = stat.st_uid == uid || (!made && stat.st_uid == 0);
    if !owner_ok || stat.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} exists but is not drover's own (owner uid {}, mode {:o})",
                path.display(),
                stat.st_uid,
                stat.st_mode & 0o7777
            ),
        ));
    }
    if made {
        if let Some(gid) = group {
            nix::unistd::fchown(&fd, None, Some(gid.into()))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(mode))?;
    }
    Ok((
        OwnDir {
            path: path.to_path_buf(),
            fd,
        },
        made,
    ))
}

/// Makes a new directory with an unpredictable name, `parent/<prefix>XXXXXX` (mkdtemp(3):
/// created atomically, mode 0700, failing rather than adopting anything that exists), then
/// sets `mode` on its descriptor. Refuses a parent that other users could change, unless it
/// is sticky.
pub fn new_private_dir(parent: &std::path::Path, prefix: &str, mode: u32) -> io::Result<OwnDir> {
    use nix::sys::stat::{Mode, fchmod, fstat};
    let parent_stat = nix::sys::stat::stat(parent)?;
    if !trusted_dir(&parent_stat, effective_uid()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} may be changed by other users", parent.display()),
        ));
    }
    let path = nix::unistd::mkdtemp(&parent.join(format!("{prefix}XXXXXX")))?;
    let fd = open_dir_nofollow(None, &path)?;
    let stat = fstat(&fd)?;
    if stat.st_uid != effective_uid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} changed owner after it was made", path.display()),
        ));
    }
    fchmod(&fd, Mode::from_bits_truncate(mode))?;
    Ok(OwnDir { path, fd })
}

impl OwnDir {
    /// Makes subdirectory `name`, owned by `owner` (uid, gid) and usable by it alone (0700),
    /// ownership and mode set on its descriptor.
    pub fn subdir_for(&self, name: &str, owner: Option<(u32, u32)>) -> io::Result<OwnDir> {
        use nix::sys::stat::{Mode, fchmod, mkdirat};
        use std::os::fd::AsFd;
        mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(0o700))?;
        let fd = open_dir_nofollow(Some(self.fd.as_fd()), std::path::Path::new(name))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(0o700))?;
        Ok(OwnDir {
            path: self.path.join(name),
            fd,
        })
    }

    /// Gives entry `name` of this directory to `owner`, without following a symlink.
    pub fn chown_entry(&self, name: &str, (uid, gid): (u32, u32)) -> io::Result<()> {
        use nix::fcntl::AtFlags;
        use std::os::fd::AsFd;
        nix::unistd::fchownat(
            self.fd.as_fd(),
            name,
            Some(uid.into()),
            Some(gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
    }

    /// Whether entry `name` is a socket (not following a symlink); `None` when it is absent.
    pub fn entry_is_socket(&self, name: &str) -> io::Result<Option<bool>> {
        use nix::fcntl::AtFlags;
        use std::os::fd::AsFd;
        match nix::sys::stat::fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat.st_mode & libc::S_IFMT == libc::S_IFSOCK)),
            Err(Errno::ENOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The (device, inode) of entry `name`, not following a symlink.
    pub fn entry_identity(&self, name: &str) -> io::Result<(u64, u64)> {
        use nix::fcntl::AtFlags;
        use std::os::fd::AsFd;
        let stat = nix::sys::stat::fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        #[allow(clippy::useless_conversion)] // dev_t and ino_t are not u64 everywhere
        Ok((u64::from(stat.st_dev), u64::from(stat.st_ino)))
    }

    /// Sets the mode of entry `name` (a socket this process bound in this directory, which
    /// nobody else may change).
    pub fn chmod_entry(&self, name: &str, mode: u32) -> io::Result<()> {
        use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};
        use std::os::fd::AsFd;
        fchmodat(
            self.fd.as_fd(),
            name,
            Mode::from_bits_truncate(mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(io::Error::from)
    }

    /// Gives entry `name` to group `gid`, without following a symlink.
    pub fn chgrp_entry(&self, name: &str, gid: u32) -> io::Result<()> {
        use nix::fcntl::AtFlags;
        use std::os::fd::AsFd;
        nix::unistd::fchownat(
            self.fd.as_fd(),
            name,
            None,
            Some(gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
    }

    /// Removes entry `name` (a file or socket) and, with `dir`, an empty directory `name`.
    pub fn remove_entry(&self, name: &str, dir: bool) -> io::Result<()> {
        use nix::unistd::UnlinkatFlags;
        use std::os::fd::AsFd;
        let flags = if dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(self.fd.as_fd(), name, flags).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// The manifest's signal numbers (drover-spec's own table) are the C library's, name for
    /// name, on the target this is built for; and every standard signal is in the table.
    #[test]
    fn the_manifests_signal_numbers_are_this_targets() {
        let names: Vec<_> = drover_spec::model::Signal::iterator()
            .map(|s| (s.as_str(), s.number()))
            .collect();
        let system: Vec<_> = Signal::iterator().map(|s| (s.as_str(), s as i32)).collect();
        assert_eq!(names, system);
    }

    /// kill(2) of every process (-1) or of drover's own group (0) is refused before the call.
    #[test]
    fn reserved_descriptors_grow_the_table_at_once() {
        let size = || {
            std::fs::read_to_string("/proc/self/status")
                .expect("status")
                .lines()
                .find_map(|line| line.strip_prefix("FDSize:")?.trim().parse::<u64>().ok())
                .expect("FDSize")
        };
        let _ = raise_open_file_limit();
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("limit");
        let wanted = (size() * 4).min(soft.saturating_sub(1));
        reserve_descriptors(wanted).expect("reserved");
        assert!(size() > wanted, "FDSize {} for {wanted}", size());
    }

    #[test]
    fn kill_refuses_everybody_and_its_own_group() {
        for target in [-1, 0] {
            let err = kill(target, 0).expect_err("refused");
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        }
        assert!(signal_group(Pid::from_raw(1), Some(libc::SIGKILL)).is_err());
        assert!(signal_group(Pid::from_raw(0), None).is_err());
        assert!(kill(std::process::id() as i32, 0).is_ok());
    }

    #[test]
    fn a_private_dir_is_new_unpredictable_and_has_its_mode() {
        let parent = tempfile::tempdir().expect("tempdir");
        let a = new_private_dir(parent.path(), "notify-", 0o711).expect("a");
        let b = new_private_dir(parent.path(), "notify-", 0o711).expect("b");
        assert_ne!(a.path, b.path);
        let meta = std::fs::symlink_metadata(&a.path).expect("stat");
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o711);
        assert_eq!(meta.uid(), effective_uid());
    }

    #[test]
    fn a_parent_others_may_write_is_refused_unless_sticky() {
        let parent = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(parent.path(), PermissionsExt::from_mode(0o777)).expect("chmod");
        let err = new_private_dir(parent.path(), "x-", 0o700).expect_err("world-writable");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        std::fs::set_permissions(parent.path(), PermissionsExt::from_mode(0o1777)).expect("chmod");
        new_private_dir(parent.path(), "x-", 0o700).expect("sticky, as /tmp");
    }

    #[test]
    fn a_fixed_name_is_never_a_symlink_nor_someone_elses() {
        let parent = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), parent.path().join("drover"))
            .expect("symlink");
        let err = own_dir(parent.path(), "drover", 0o755).expect_err("a symlink");
        assert!(
            err.raw_os_error() == Some(libc::ELOOP) || err.raw_os_error() == Some(libc::ENOTDIR),
            "{err}"
        );
        std::fs::remove_file(parent.path().join("drover")).expect("rm");
        // Made by us: adopted, with its mode set.
        let own = own_dir(parent.path(), "drover", 0o755).expect("made");
        assert_eq!(
            std::fs::metadata(&own.path).expect("stat").mode() & 0o7777,
            0o755
        );
        own_dir(parent.path(), "drover", 0o755).expect("adopted: ours");
        // Writable by others: refused.
        std::fs::set_permissions(&own.path, PermissionsExt::from_mode(0o777)).expect("chmod");
        own_dir(parent.path(), "drover", 0o755).expect_err("writable by others");
        if effective_uid() == 0 {
            // Someone else's: refused.
            std::fs::set_permissions(&own.path, PermissionsExt::from_mode(0o755)).expect("chmod");
            nix::unistd::chown(&own.path, Some(65534.into()), None).expect("chown");
            own_dir(parent.path(), "drover", 0o755).expect_err("owned by nobody");
        }
    }
}
