//! The process table, the spawner thread and the reaper: the one owner of `fork` and `waitpid`.
//!
//! The design is `../shared/DEPS.md`, "Reaping", which measured it:
//! - one table maps each pid drover started to a [`Waiter`];
//! - one long-lived thread spawns, **holding the table's lock** from `fork` until the pid is
//!   registered, so no exit can be reaped for an unregistered pid and std's own wait on an exec
//!   failure cannot be stolen. The thread lives as long as drover, because
//!   `PR_SET_PDEATHSIG` fires when the *thread* that forked exits;
//! - one task, woken by SIGCHLD, takes the lock and calls `waitpid(-1, WNOHANG)` until nothing
//!   is left (signals coalesce), then hands each status to its waiter. A pid nobody registered
//!   is an orphan adopted by drover (as PID 1 or as child subreaper): reaped and counted.

use crate::sys::{self, ChildSetup, Credentials, ExitStatus, InheritedSignals, Reaped};
use drover_spec::model::User;
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, oneshot};

/// Called once, with the pid and exit status of the process it was registered for: on the
/// reaper task, or on the spawner thread for an exit the reaper left while a spawn held the
/// table. It must only send.
pub(crate) type Waiter = Box<dyn FnOnce(Pid, ExitStatus) + Send>;

/// Called once, on the spawner thread, with the outcome of a spawn. On success it runs while
/// the table is still locked, so whatever it sends is sent before the exit can be reaped.
pub(crate) type OnSpawn = Box<dyn FnOnce(Result<Pid, SpawnError>) + Send>;

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program does not exist.
    #[error("{program}: not found")]
    NotFound {
        /// The program.
        program: String,
    },
    /// The program exists but cannot be executed.
    #[error("{program}: permission denied")]
    PermissionDenied {
        /// The program.
        program: String,
    },
    /// `user:` needs root.
    #[error("user `{user}` needs drover to run as root (it runs as uid {uid})")]
    NotRoot {
        /// The user asked for.
        user: String,
        /// drover's effective uid.
        uid: u32,
    },
    /// `user:` names nobody.
    #[error("user `{0}` does not exist")]
    NoSuchUser(String),
    /// `working_dir` cannot be entered (as the service's user).
    #[error("working_dir {}: {source}", dir.display())]
    WorkingDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Anything else the kernel refused.
    #[error("{program}: {source}")]
    Os {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The spawner thread is gone (drover is shutting down).
    #[error("the spawner thread has stopped")]
    SpawnerGone,
}

impl SpawnError {
    /// The shell's exit code for this failure: 127 not found, 126 not executable, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::PermissionDenied { .. } => 126,
            _ => 1,
        }
    }
}

/// How to start one process.
pub struct SpawnRequest {
    /// Program, arguments, environment, working directory and stdio.
    pub command: Command,
    /// Run in a new session (services) rather than a new process group in drover's session.
    pub new_session: bool,
    /// Make its group the terminal's foreground group (`drover -- CMD`).
    pub foreground: bool,
    /// Hand on drover's initial signal mask and ignored signals instead of clean defaults.
    pub inherit_signals: Option<InheritedSignals>,
    /// Switch to this user (needs root); its `HOME`, `USER`, `LOGNAME` and `SHELL` are set
    /// unless `command` sets them.
    pub user: Option<User>,
    /// Enter this directory, as the user (not with `command.current_dir`, which std enters
    /// before the user switch).
    pub working_dir: Option<std::path::PathBuf>,
    /// Start in this cgroup.
    pub cgroup: Option<CgroupEntry>,
    /// The descriptors for the child's 0, 1 and 2 (`None`: drover's own), as `command`'s stdio
    /// is set: with a `cgroup`, the child is started without `command` (see [`CgroupEntry`]).
    pub stdio: [Option<std::os::fd::OwnedFd>; 3],
    /// `argv[0]`, when not the program's path.
    pub arg0: Option<std::ffi::OsString>,
    /// Survive drover's death (no PR_SET_PDEATHSIG): only for drover's guard.
    pub outlives_drover: bool,
    /// Pass on the descriptors above 2 drover inherited (`drover -- CMD`); otherwise only 0, 1
    /// and 2 cross `exec`.
    pub keep_inherited_fds: bool,
    /// Told the exit status.
    pub waiter: Waiter,
}

/// A cgroup to start a child in. It is born there (`clone3(CLONE_INTO_CGROUP)`, which needs
/// the directory), or, where the kernel refuses that, joins it first thing by writing `0` to
/// `cgroup.procs`.
#[derive(Clone, Debug)]
pub struct CgroupEntry {
    /// The cgroup's directory, when children may be born in it.
    pub dir: Option<Arc<std::os::fd::OwnedFd>>,
    /// Its `cgroup.procs`, open for writing.
    pub procs: Arc<std::os::fd::OwnedFd>,
}

/// `clone3(CLONE_INTO_CGROUP)` was refused once (an old kernel, a seccomp filter): the
/// children join their cgroup themselves from then on.
static CLONE_INTO_CGROUP_REFUSED: AtomicBool = AtomicBool::new(false);

struct Job {
    request: SpawnRequest,
    on_spawn: OnSpawn,
}

struct Shared {
    table: Mutex<HashMap<Pid, Waiter>>,
    orphans_reaped: AtomicU64,
    orphan_reaped: Notify,
    /// The reaper found the table locked by a spawn (which may wait for its child's `exec`)
    /// and did not wait: the spawner reaps once the spawn is done.
    reap_deferred: AtomicBool,
}

/// Handle to the process table, the spawner and the reaper. Cheap to clone.
#[derive(Clone)]
pub struct Processes {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

impl Processes {
    /// Starts the reaper task and the spawner thread. Call it inside a tokio runtime, before
    /// anything else forks, so that no SIGCHLD is missed.
    pub fn start() -> io::Result<Processes> {
        let shared = Arc::new(Shared {
            table: Mutex::new(HashMap::new()),
            orphans_reaped: AtomicU64::new(0),
            orphan_reaped: Notify::new(),
            reap_deferred: AtomicBool::new(false),
        });
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = shared.clone();
        tokio::spawn(async move {
            loop {
                reaper.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawner = shared.clone();
        std::thread::Builder::new()
            .name("drover-spawner".into())
            .spawn(move || {
                if let Err(err) = sys::block_signals_on_this_thread() {
                    tracing::warn!(error = %err, "cannot block signals on the spawner thread");
                }
                run_spawner(&spawner, &queue);
            })?;
        Ok(Processes { shared, jobs })
    }

    /// Starts a process; its status will go to `request.waiter`.
    pub async fn spawn(&self, request: SpawnRequest) -> Result<Pid, SpawnError> {
        let (reply, answer) = oneshot::channel();
        self.spawn_then(
            request,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        answer.await.map_err(|_| SpawnError::SpawnerGone)?
    }

    /// Starts a process without waiting: `on_spawn` gets the outcome, on the spawner thread.
    pub fn spawn_then(&self, request: SpawnRequest, on_spawn: OnSpawn) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { request, on_spawn }) {
            (job.on_spawn)(Err(SpawnError::SpawnerGone));
        }
    }

    /// Orphans reaped so far: processes drover did not start (adopted as PID 1 or subreaper).
    pub fn orphans_reaped(&self) -> u64 {
        self.shared.orphans_reaped.load(Ordering::Relaxed)
    }

    /// Resolves when the next orphan has been reaped.
    pub async fn orphan_reaped(&self) {
        self.shared.orphan_reaped.notified().await;
    }

    /// Ends every remaining descendant of drover: SIGTERM, up to `grace` for them to go, then
    /// SIGKILL; returns once drover has no child left (or after `grace` more). For the exit of
    /// `drover -- CMD` and of `drover run`: nothing drover adopted outlives it.
    pub async fn end_descendants(&self, grace: Duration) -> usize {
        // The usual end: nothing left, and no need to read every process's /proc entry.
        self.shared.reap_all();
        if !sys::has_children() {
            return 0;
        }
        let found = descendants();
        for &pid in &found {
            let _ = sys::signal_process(pid, nix::sys::signal::Signal::SIGTERM);
        }
        if !self.wait_childless(grace).await {
            for pid in descendants() {
                let _ = sys::signal_process(pid, nix::sys::signal::Signal::SIGKILL);
            }
            self.wait_childless(grace).await;
        }
        found.len()
    }

    async fn wait_childless(&self, limit: Duration) -> bool {
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(limit).unwrap_or(now);
        loop {
            self.shared.reap_all();
            if children().is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // Children of ours that exit wake the reaper; orphans' exits notify. Poll as well,
            // briefly, for exits that are neither (this runs only while drover exits).
            let _ = tokio::time::timeout(Duration::from_millis(10), self.orphan_reaped()).await;
        }
    }
}

impl Shared {
    /// Reaps every exited child, unless a spawn holds the table: then it returns at once (it
    /// runs on the runtime thread, and a spawn may wait for its child's `exec`), and the
    /// spawner reaps when done ([`Shared::reap_if_deferred`]).
    fn reap_all(&self) {
        let mut ready = Vec::new();
        let mut orphans = 0u64;
        {
            // Flagged before trying: a spawn that ends between the two still sees the flag.
            self.reap_deferred.store(true, Ordering::SeqCst);
            let mut table = match self.table.try_lock() {
                Ok(table) => table,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            self.reap_deferred.store(false, Ordering::SeqCst);
            loop {
                match sys::reap_one() {
                    Ok(Reaped::Child(pid, status)) => match table.remove(&pid) {
                        Some(waiter) => ready.push(((pid, waiter), status)),
                        None => orphans += 1,
                    },
                    Ok(Reaped::NoneReady | Reaped::NoChildren) => break,
                    Err(err) => {
                        tracing::error!(error = %err, "waitpid failed");
                        break;
                    }
                }
            }
        }
        // Waiters run outside the lock: they may spawn.
        for ((pid, waiter), status) in ready {
            waiter(pid, status);
        }
        if orphans > 0 {
            self.orphans_reaped.fetch_add(orphans, Ordering::Relaxed);
            self.orphan_reaped.notify_waiters();
        }
    }

    /// After a spawn, with the table unlocked: reaps here, on the spawner thread, what the
    /// reaper left because the table was locked. Not by waking the reaper: in a burst of
    /// spawns the table would be locked again by the time it ran, and exits would wait for
    /// the burst to end. (The waiters only send, which any thread may.)
    fn reap_if_deferred(&self) {
        if self.reap_deferred.swap(false, Ordering::SeqCst) {
            self.reap_all();
        }
    }

    /// Starts `request`; `Some` when its exec is still to be told ([`PendingExec::settle`]).
    fn spawn(&self, request: SpawnRequest, on_spawn: OnSpawn) -> Option<PendingExec> {
        let SpawnRequest {
            mut command,
            new_session,
            foreground,
            inherit_signals,
            user,
            working_dir,
            cgroup,
            stdio,
            arg0,
            outlives_drover,
            keep_inherited_fds,
            waiter,
        } = request;
        let program = command.get_program().to_string_lossy().into_owned();
        let credentials = match user.as_ref().map(resolve_user).transpose() {
            Ok(credentials) => credentials,
            Err(err) => {
                on_spawn(Err(err));
                return None;
            }
        };
        if let Some(account) = credentials.as_ref().and_then(|c| c.account.as_ref()) {
            set_account_environment(&mut command, account);
        }
        let working_dir_c = match working_dir
            .as_ref()
            .map(|dir| std::ffi::CString::new(dir.as_os_str().as_encoded_bytes().to_vec()))
        {
            None => None,
            Some(Ok(dir)) => Some(dir),
            Some(Err(_)) => {
                on_spawn(Err(SpawnError::WorkingDir {
                    dir: working_dir.unwrap_or_default(),
                    source: io::Error::from(io::ErrorKind::InvalidInput),
                }));
                return None;
            }
        };
        let mut setup = ChildSetup {
            new_session,
            foreground,
            inherit_signals,
            credentials,
            parent: sys::own_pid(),
            working_dir: working_dir_c,
            cgroup_procs: None,
            parent_death_signal: !outlives_drover,
            keep_inherited_fds,
        };
        // Born in its cgroup when the kernel allows it (and the program is a path, as
        // `execve` needs); otherwise std's spawn, and the child joins the cgroup itself.
        let image = cgroup
            .as_ref()
            .filter(|entry| entry.dir.is_some())
            .filter(|_| !CLONE_INTO_CGROUP_REFUSED.load(Ordering::Relaxed))
            .and_then(|_| exec_image(&command, arg0))
            .and_then(Result::ok);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let born_inside = cgroup
            .as_ref()
            .and_then(|entry| Some((entry, entry.dir.as_ref()?)));
        let spawned = match (image, born_inside) {
            (Some(image), Some((entry, dir))) => {
                use std::os::fd::AsFd;
                let fds = [0, 1, 2].map(|i| stdio.get(i).and_then(Option::as_ref).map(AsFd::as_fd));
                match sys::spawn_into_cgroup(&image, fds, dir.as_fd(), setup.clone()) {
                    Ok((pid, report)) => {
                        // Its exec is told later: the next child starts meanwhile.
                        let slot = Arc::new(Mutex::new(ExecSlot {
                            resolved: None,
                            exit: None,
                            waiter: Some(waiter),
                        }));
                        table.insert(pid, deferred_waiter(slot.clone()));
                        drop(table);
                        return Some(PendingExec {
                            pid,
                            report,
                            slot,
                            on_spawn,
                            program,
                            working_dir,
                        });
                    }
                    Err(sys::CloneError::Spawn(source)) => Err(source),
                    Err(sys::CloneError::Refused(why)) => {
                        CLONE_INTO_CGROUP_REFUSED.store(true, Ordering::Relaxed);
                        tracing::info!(error = %why, "clone3(CLONE_INTO_CGROUP) refused; services join their cgroups after they start");
                        setup.cgroup_procs = Some(entry.procs.clone());
                        std_spawn(&mut command, setup)
                    }
                }
            }
            _ => {
                setup.cgroup_procs = cgroup.as_ref().map(|entry| entry.procs.clone());
                std_spawn(&mut command, setup)
            }
        };
        let pid = match spawned {
            Ok(pid) => pid,
            Err(source) => {
                drop(table);
                on_spawn(Err(spawn_error(source, program, working_dir)));
                return None;
            }
        };
        table.insert(pid, waiter);
        // Still under the lock: the spawn is announced before its exit can be.
        on_spawn(Ok(pid));
        drop(table);
        // The command and `stdio` hold the parent's copies of the child's stdio descriptors:
        // close them (they are dropped at return).
        None
    }
}

/// Sets `HOME`, `USER`, `LOGNAME` and `SHELL` from the account a service runs as, as su(1)
/// and systemd do, except where the service's own environment sets them.
/// What a spawn's exit waits for until its exec is told: whether it was (`resolved`), the
/// exit if it came first, and the waiter.
struct ExecSlot {
    resolved: Option<bool>,
    exit: Option<ExitStatus>,
    waiter: Option<Waiter>,
}

/// A child started by `clone3`, whose exec is not told yet.
struct PendingExec {
    pid: Pid,
    report: sys::ExecReport,
    slot: Arc<Mutex<ExecSlot>>,
    on_spawn: OnSpawn,
    program: String,
    working_dir: Option<std::path::PathBuf>,
}

impl PendingExec {
    /// Tells the spawn's outcome once its child has `exec`ed or failed: `Err(self)` while it
    /// has done neither. The spawn is announced before its exit (held back in the slot if it
    /// came first); a child that failed has its exit (127) dropped.
    fn settle(self) -> Result<(), PendingExec> {
        let Some(outcome) = self.report.outcome() else {
            return Err(self);
        };
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => {
                // Under the slot's lock: an exit being reported now waits for this.
                (self.on_spawn)(Ok(self.pid));
                slot.resolved = Some(true);
                let early = match slot.exit.take() {
                    Some(status) => slot.waiter.take().map(|waiter| (status, waiter)),
                    None => None,
                };
                drop(slot);
                if let Some((status, waiter)) = early {
                    waiter(self.pid, status);
                }
            }
            Err(source) => {
                slot.resolved = Some(false);
                slot.waiter = None;
                drop(slot);
                (self.on_spawn)(Err(spawn_error(source, self.program, self.working_dir)));
            }
        }
        Ok(())
    }
}

/// The table's waiter for a child whose exec is told later: its exit goes to the real waiter
/// once the spawn is announced, is kept until then, and is dropped for a child that failed.
fn deferred_waiter(slot: Arc<Mutex<ExecSlot>>) -> Waiter {
    Box::new(move |pid, status| {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.resolved {
            Some(true) => {
                let waiter = slot.waiter.take();
                drop(slot);
                if let Some(waiter) = waiter {
                    waiter(pid, status);
                }
            }
            Some(false) => {}
            None => slot.exit = Some(status),
        }
    })
}

/// The error of a spawn that failed with `source`.
fn spawn_error(
    source: io::Error,
    program: String,
    working_dir: Option<std::path::PathBuf>,
) -> SpawnError {
    if let Some(source) = sys::chdir_error(&source) {
        return SpawnError::WorkingDir {
            dir: working_dir.unwrap_or_default(),
            source,
        };
    }
    match source.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound { program },
        io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied { program },
        _ => SpawnError::Os { program, source },
    }
}

/// The spawner thread: starts each job, and tells the execs of those started by `clone3` as
/// they happen, so that a child's exec never holds up the next spawn.
fn run_spawner(shared: &Shared, queue: &mpsc::Receiver<Job>) {
    let mut pending: Vec<PendingExec> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        pending = pending
            .into_iter()
            .filter_map(|exec| exec.settle().err())
            .collect();
        let job = if pending.is_empty() {
            queue.recv().ok()
        } else {
            match queue.try_recv() {
                Ok(job) => Some(job),
                Err(empty_or_closed) => {
                    open &= matches!(empty_or_closed, mpsc::TryRecvError::Empty);
                    let reports: Vec<&sys::ExecReport> =
                        pending.iter().map(|p| &p.report).collect();
                    // A job that comes meanwhile waits at most this long (and once no job
                    // can come, a child stuck before its exec is not polled 1000 times a
                    // second).
                    let step = if open { 1 } else { 50 };
                    sys::ExecReport::wait_any(&reports, Duration::from_millis(step));
                    None
                }
            }
        };
        match job {
            Some(job) => {
                pending.extend(shared.spawn(job.request, job.on_spawn));
                shared.reap_if_deferred();
            }
            None if pending.is_empty() => open = false,
            None => {}
        }
    }
}

/// std's spawn of `command`; its `Child` dropped at once (dropping neither waits nor kills:
/// the reaper reports the exit).
fn std_spawn(command: &mut Command, setup: ChildSetup) -> io::Result<Pid> {
    let child = sys::spawn(command, setup)?;
    Ok(Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)))
}

/// `command` as [`sys::spawn_into_cgroup`] runs it: its program (`None` unless it is a path,
/// which `execve` needs; a bare name is left to std's `PATH` search), `arg0` and arguments, and
/// drover's environment with the command's changes.
fn exec_image(
    command: &Command,
    arg0: Option<std::ffi::OsString>,
) -> Option<io::Result<sys::ExecImage>> {
    let program = command.get_program();
    if !program.as_encoded_bytes().contains(&b'/') {
        return None;
    }
    let mut environment: indexmap::IndexMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os().collect();
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => {
                environment.insert(key.to_os_string(), value.to_os_string());
            }
            None => {
                environment.shift_remove(key);
            }
        }
    }
    let argv = std::iter::once(arg0.unwrap_or_else(|| program.to_os_string()))
        .chain(command.get_args().map(std::ffi::OsStr::to_os_string));
    Some(sys::ExecImage::new(program, argv, environment))
}

fn set_account_environment(command: &mut Command, account: &sys::Account) {
    let set_by_service: Vec<std::ffi::OsString> = command
        .get_envs()
        .filter(|(_, value)| value.is_some())
        .map(|(key, _)| key.to_os_string())
        .collect();
    let values = [
        ("HOME", account.home.as_os_str()),
        ("USER", std::ffi::OsStr::new(&account.name)),
        ("LOGNAME", std::ffi::OsStr::new(&account.name)),
        ("SHELL", account.shell.as_os_str()),
    ];
    for (key, value) in values {
        if !set_by_service.iter().any(|k| k == key) && !value.is_empty() {
            command.env(key, value);
        }
    }
}

/// Looks up `user` (name, uid or uid:gid) and its supplementary groups. Runs on the spawner
/// thread, before the fork: NSS lookups are not async-signal-safe.
pub(crate) fn resolve_user(user: &User) -> Result<Credentials, SpawnError> {
    let shown = match user {
        User::Name(name) => name.clone(),
        User::Id {
            uid,
            gid: Some(gid),
        } => format!("{uid}:{gid}"),
        User::Id { uid, gid: None } => uid.to_string(),
    };
    let euid = sys::effective_uid();
    if euid != 0 {
        return Err(SpawnError::NotRoot {
            user: shown,
            uid: euid,
        });
    }
    let os = |source: io::Error| SpawnError::Os {
        program: format!("user `{shown}`"),
        source,
    };
    let accounts = crate::passwd::Accounts::system();
    let entry = match user {
        User::Name(name) => Some(
            accounts
                .by_name(name)
                .map_err(os)?
                .ok_or_else(|| SpawnError::NoSuchUser(name.clone()))?,
        ),
        User::Id { uid, .. } => match accounts.by_uid(*uid) {
            Ok(entry) => entry,
            // No /etc/passwd at all (an empty image): numeric users still work.
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(os(err)),
        },
    };
    let (uid, gid) = match (user, &entry) {
        (
            User::Id {
                uid,
                gid: Some(gid),
            },
            _,
        ) => (*uid, *gid),
        (_, Some(entry)) => (entry.uid, entry.gid),
        // A bare uid without a passwd entry: its own number as group, as Docker does.
        (User::Id { uid, gid: None }, None) => (*uid, *uid),
        (User::Name(name), None) => return Err(SpawnError::NoSuchUser(name.clone())),
    };
    let groups = match &entry {
        Some(entry) => accounts.groups_of(&entry.name, gid).map_err(os)?,
        None => vec![gid],
    };
    let account = entry.map(|entry| sys::Account {
        name: entry.name,
        home: entry.home,
        shell: entry.shell,
    });
    Ok(Credentials {
        uid,
        gid,
        groups,
        account,
    })
}

/// Parent pid of each process, from `/proc/*/stat`.
fn process_parents() -> Vec<(Pid, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let ppid = drover_sys::procfs::ProcStat::read(&entry.path().join("stat"))?.ppid;
            Some((Pid::from_raw(pid), Pid::from_raw(ppid)))
        })
        .collect()
}

/// drover's direct children.
fn children() -> Vec<Pid> {
    let me = sys::own_pid();
    process_parents()
        .into_iter()
        .filter(|&(_, parent)| parent == me)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every descendant of drover.
fn descendants() -> Vec<Pid> {
    let parents = process_parents();
    let mut found = vec![sys::own_pid()];
    let mut next = 0;
    // Read at different moments, the table may hold a cycle (a reused pid): each process is
    // listed at most once.
    let mut listed: std::collections::HashSet<Pid> = found.iter().copied().collect();
    while let Some(&parent) = found.get(next) {
        for &(pid, p) in &parents {
            if p == parent && listed.insert(pid) {
                found.push(pid);
            }
        }
        next += 1;
    }
    found.into_iter().skip(1).collect()
}
