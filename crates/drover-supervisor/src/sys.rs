//! Every raw syscall and every `unsafe` block of drover, wrapped once.
//!
//! What runs in a forked child before `exec` lives here too ([`ChildSetup`]): after `fork` in a
//! multi-threaded process only async-signal-safe functions may run (signal-safety(7)), so the
//! child code below calls raw `libc` functions on values prepared in the parent, allocates
//! nothing, and takes no lock.

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
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
pub(crate) enum Reaped {
    /// A child ended.
    Child(Pid, ExitStatus),
    /// Children exist, but none has ended.
    NoneReady,
    /// No children at all (`ECHILD`).
    NoChildren,
}

/// `waitpid(-1, WNOHANG)`: reaps one ended child of this process, whoever started it.
pub(crate) fn reap_one() -> io::Result<Reaped> {
    loop {
        return match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => Ok(Reaped::Child(pid, ExitStatus::Exited(code))),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => {
                Ok(Reaped::Child(pid, ExitStatus::Signaled(signal as i32)))
            }
            // Stops and continues are not asked for (no WUNTRACED/WCONTINUED); skip them.
            Ok(WaitStatus::StillAlive) => Ok(Reaped::NoneReady),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => Ok(Reaped::NoChildren),
            Err(err) => Err(err.into()),
        };
    }
}

/// Sends `signal` to every process of group `pgid`. `Ok(false)` when the group is empty.
pub(crate) fn signal_group(pgid: Pid, signal: Option<Signal>) -> io::Result<bool> {
    match signal::killpg(pgid, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Whether process group `pgid` still has a member (zombies count until they are reaped).
pub(crate) fn group_alive(pgid: Pid) -> bool {
    // EPERM means a member exists that we may not signal: still alive.
    !matches!(signal::killpg(pgid, None), Err(Errno::ESRCH))
}

/// Sends `signal` to one process. `Ok(false)` when it no longer exists.
pub(crate) fn signal_process(pid: Pid, signal: Signal) -> io::Result<bool> {
    match signal::kill(pid, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Sends a raw signal number (any catchable one, real-time included) to one process.
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(pid, signal) };
    Errno::result(result).map(drop).map_err(io::Error::from)
}

/// Ignores SIGTTIN and SIGTTOU in drover, as tini does: once CMD's group owns the terminal,
/// drover is a background group, and its own writes or reads must not stop it.
pub fn ignore_terminal_stops() {
    for number in [libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler code; the call only changes a disposition.
        unsafe { libc::signal(number, libc::SIG_IGN) };
    }
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
        let mut mask = empty_sigset();
        // SAFETY: a null new set only reads the current mask into `mask`, which we own.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask) };
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
pub(crate) fn block_signals_on_this_thread() -> io::Result<()> {
    let mut all = empty_sigset();
    // SAFETY: sigfillset fills a set we own; pthread_sigmask only reads it and changes the mask
    // of this thread, and returns an error number rather than setting errno.
    let result = unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut())
    };
    match result {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
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
pub(crate) struct ChildSetup {
    /// `setsid()`: a new session and process group (services). Otherwise `setpgid(0, 0)`.
    pub(crate) new_session: bool,
    /// Make the new group the terminal's foreground group, when stdin is a terminal.
    pub(crate) foreground: bool,
    /// `None`: every signal at its default and an empty mask (services). `Some`: the mask and
    /// ignored signals drover started with (`drover -- CMD`).
    pub(crate) inherit_signals: Option<InheritedSignals>,
    /// Credentials to switch to.
    pub(crate) credentials: Option<Credentials>,
    /// The pid of drover, to detect that it died before PR_SET_PDEATHSIG was armed.
    pub(crate) parent: Pid,
}

/// Resolved user and groups for `user:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: Vec<libc::gid_t>,
}

/// Spawns `command` with `setup` applied in the child. The returned `Child` must never be
/// waited on: the reaper owns `waitpid` (`../shared/DEPS.md`, "Reaping").
pub(crate) fn spawn(command: &mut Command, setup: ChildSetup) -> io::Result<Child> {
    let ChildSetup {
        new_session,
        foreground,
        inherit_signals,
        credentials,
        parent,
    } = setup;
    let groups = credentials
        .as_ref()
        .map(|c| c.groups.clone())
        .unwrap_or_default();
    let reset = signals_to_reset();
    // SAFETY: the closure runs in the child between fork and exec. It only calls
    // async-signal-safe functions (setsid, setpgid, tcsetpgrp, sigaction, sigprocmask, prctl,
    // getppid, setgid, setgroups, setuid, syscall(close_range)) on values captured before the
    // fork; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            child_setup(
                new_session,
                foreground,
                inherit_signals.as_ref(),
                reset,
                credentials.as_ref(),
                &groups,
                parent,
            )
        })
    };
    command.spawn()
}

/// The child's half of [`spawn`]. Only async-signal-safe calls; see the SAFETY note there.
fn child_setup(
    new_session: bool,
    foreground: bool,
    inherit: Option<&InheritedSignals>,
    reset: SignalSet,
    credentials: Option<&Credentials>,
    groups: &[libc::gid_t],
    parent: Pid,
) -> io::Result<()> {
    // SAFETY (whole function): every call below is async-signal-safe and works on integers or
    // on memory owned by this stack frame or captured, initialised, before the fork.
    unsafe {
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
        // pthread_sigmask returns an error number rather than -1 and errno.
        let masked = libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        if masked != 0 {
            return Err(io::Error::from_raw_os_error(masked));
        }
        if let Some(credentials) = credentials {
            // setgid, then the supplementary groups, then setuid: after setuid, the others
            // are no longer permitted.
            check(libc::setgid(credentials.gid))?;
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setuid(credentials.uid))?;
        }
        // A killed drover must leave no service behind. Armed after the credentials change,
        // which clears it (prctl(2)). If drover already died, our parent changed and no signal
        // will ever come: give up (ESRCH; a raw error, because building a message would
        // allocate).
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        if libc::getppid() != parent.as_raw() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // No descriptor but 0, 1 and 2 crosses exec, whoever opened it without O_CLOEXEC.
        // close_range(2) with CLOSE_RANGE_CLOEXEC keeps std's exec-error pipe usable until exec;
        // kernels older than 5.11 lack it, and then only CLOEXEC descriptors are protected.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
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
    // SAFETY: close_range takes integers and touches no memory of ours. With
    // CLOSE_RANGE_UNSHARE the kernel first copies the table and closes the range in the copy,
    // which only this thread uses: no descriptor owned by another thread (an `OwnedFd`, a
    // socket of the runtime) is closed under its owner; this thread holds none (see above).
    // On failure the table is left as it was.
    let result = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        )
    };
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
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether drover runs as PID 1 (of its PID namespace).
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// The pid of this process.
pub(crate) fn own_pid() -> Pid {
    nix::unistd::getpid()
}
