//! What the runtime needs to run probes: the exec runner (through the process table, so the
//! one reaper sees the command's exit; `crate::hooks` runs hooks with it too) and each
//! service's sd_notify socket and watchdog.

use crate::core::ServiceId;
use crate::process::{Processes, SpawnRequest};
use crate::ratelimit::LogRateLimit;
use crate::sys::{self, ExitStatus};
use drover_probe::{
    CheckFuture, CheckOutcome, CheckResult, ExecCheck, NotifyMessage, NotifySocket,
};
use drover_spec::model::User;
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long a timed-out exec probe's group may take to die after SIGKILL before the check gives
/// up waiting for its status (the reaper still collects it).
const KILLED_PROBE_WAIT: Duration = Duration::from_secs(5);

/// Runs an exec probe's (or a hook's) command in its service's environment, working directory
/// and user, in a process group of its own, killed whole when the timeout runs out, or when the
/// check is dropped before the command ended (its probe or hook was stopped).
#[derive(Clone)]
pub(crate) struct ExecProbe {
    processes: Processes,
    /// Builds the command afresh for each check (a `Command` is spent by one spawn).
    command: Arc<dyn Fn() -> std::io::Result<Command> + Send + Sync>,
    user: Option<User>,
    working_dir: Option<PathBuf>,
}

impl ExecProbe {
    pub(crate) fn new(
        processes: Processes,
        command: Box<dyn Fn() -> std::io::Result<Command> + Send + Sync>,
        user: Option<User>,
        working_dir: Option<PathBuf>,
    ) -> ExecProbe {
        ExecProbe {
            processes,
            command: Arc::from(command),
            user,
            working_dir,
        }
    }
}

impl ExecCheck for ExecProbe {
    fn run(&self, timeout: Duration) -> CheckFuture {
        let this = self.clone();
        Box::pin(async move { this.check(timeout).await })
    }
}

/// SIGKILLs a command's process group when dropped, unless disarmed: a check abandoned half
/// way (its task aborted) leaves nothing running.
struct KillGroupOnDrop(Option<Pid>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = sys::signal_group(pgid, Some(libc::SIGKILL));
        }
    }
}

impl ExecProbe {
    /// Runs the command once, bounded by `timeout`.
    pub(crate) async fn check(&self, timeout: Duration) -> CheckResult {
        let started = Instant::now();
        let failure =
            |message: String| CheckResult::new(CheckOutcome::Failure, started.elapsed(), message);
        let command = match (self.command)() {
            Ok(command) => command,
            Err(err) => return failure(format!("cannot run: {err}")),
        };
        let (done, mut status) = oneshot::channel::<ExitStatus>();
        let request = SpawnRequest {
            command,
            new_session: true,
            foreground: false,
            inherit_signals: None,
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            cgroup: None,
            stdio: [None, None, None],
            arg0: None,
            outlives_drover: false,
            keep_inherited_fds: false,
            waiter: Box::new(move |_, status| {
                let _ = done.send(status);
            }),
        };
        let pid = match self.processes.spawn(request).await {
            Ok(pid) => pid,
            Err(err) => return failure(format!("cannot run: {err}")),
        };
        let mut group = KillGroupOnDrop(Some(pid));
        // The timeout counts from the process's start, as Kubernetes' does: time spent waiting
        // for the spawner (1000 probes due at once queue there) is not the command's.
        let ended = tokio::time::timeout(timeout, &mut status).await;
        if ended.is_ok() {
            // Reaped: its group id may be anybody's from now on.
            group.0 = None;
        }
        match ended {
            Ok(Ok(status)) if status.success() => {
                CheckResult::new(CheckOutcome::Success, started.elapsed(), "exit code 0")
            }
            Ok(Ok(status)) => failure(status.to_string()),
            Ok(Err(_)) => failure("its exit status was lost".into()),
            Err(_) => {
                // The whole group: a probe script's children go with it.
                drop(group);
                let _ = tokio::time::timeout(KILLED_PROBE_WAIT, &mut status).await;
                CheckResult::new(
                    CheckOutcome::Timeout,
                    started.elapsed(),
                    format!("still running after {}ms; killed", timeout.as_millis()),
                )
            }
        }
    }
}

/// A service's sd_notify socket and what drover accepts on it right now.
pub(crate) struct NotifyUnit {
    /// The socket's path, for `NOTIFY_SOCKET`.
    pub(crate) path: PathBuf,
    /// `watchdog:` of its readiness probe.
    pub(crate) watchdog: Option<Duration>,
    /// The run whose messages count (set while its probes run).
    pub(crate) accepting: Option<u64>,
    /// When the watchdog expires, while armed.
    pub(crate) deadline: Option<Instant>,
    /// The task reading the socket.
    pub(crate) listener: AbortHandle,
}

/// Binds a notify socket in a subdirectory `name` of `dir` of its own, and starts reading it:
/// each message goes to `notices` with `unit`. The socket and its subdirectory belong to
/// `owner` (the service's uid and gid; root when `None`) and are usable by it alone (0700):
/// another local user can neither send to it nor replace it.
pub(crate) fn listen(
    dir: &sys::OwnDir,
    name: &str,
    owner: Option<(u32, u32)>,
    unit: ServiceId,
    watchdog: Option<Duration>,
    notices: mpsc::Sender<(ServiceId, NotifyMessage)>,
) -> std::io::Result<NotifyUnit> {
    // The subdirectory stays root's, 0700, until the socket in it is bound and chowned:
    // nothing of the service's user can get in between.
    let subdir = dir.subdir_for(name, None)?;
    let path = subdir.path.join(SOCKET_NAME);
    let bound = NotifySocket::bind(&path).and_then(|socket| {
        if let Some(owner) = owner {
            subdir.chown_entry(SOCKET_NAME, owner)?;
            nix::unistd::fchown(&subdir.fd, Some(owner.0.into()), Some(owner.1.into()))?;
        }
        Ok(socket)
    });
    let socket = match bound {
        Ok(socket) => socket,
        Err(err) => {
            let _ = subdir.remove_entry(SOCKET_NAME, false);
            let _ = dir.remove_entry(name, true);
            return Err(err);
        }
    };
    // Removed when the task ends or is aborted, even before it first runs: the socket's
    // file, then its directory (fields drop in order).
    let bound = BoundSocket {
        socket,
        _dir: RemoveDirOnDrop(subdir.path.clone()),
    };
    let listener = tokio::spawn(async move {
        let socket = &bound.socket;
        let mut warnings = LogRateLimit::new(5, Duration::from_secs(10));
        loop {
            match socket.recv().await {
                Ok(message) => {
                    // Bounded: a service that floods its socket waits here (and then on its
                    // own full socket), never fills drover's memory.
                    if notices.send((unit, message)).await.is_err() {
                        break;
                    }
                }
                Err(err) => {
                    if let Some(held) = warnings.allow(Instant::now()) {
                        tracing::warn!(service = %unit, error = %err, held_back = held, "cannot read a notify socket");
                    }
                    // A persistent error must not spin: wait before the next read.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .abort_handle();
    Ok(NotifyUnit {
        path,
        watchdog,
        accepting: None,
        deadline: None,
        listener,
    })
}

impl NotifyUnit {
    /// Removes the socket's file and its directory (its reader may still hold the socket).
    pub(crate) fn remove_files(&self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The socket's name in its service's subdirectory.
const SOCKET_NAME: &str = "notify";

/// A notify socket and its directory.
struct BoundSocket {
    socket: NotifySocket,
    _dir: RemoveDirOnDrop,
}

/// Removes an (emptied) directory when dropped.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Makes the directory for this drover's notify sockets, the first of these that works:
/// - a new `notify-XXXXXX` in `$RUNTIME_DIRECTORY` (systemd made that for drover's unit);
/// - as root, a new `drover-notify-XXXXXX` in `/run`; otherwise in `$XDG_RUNTIME_DIR` (beside
///   `drover/`, the control socket's directory, which other users may not enter);
/// - a new `drover-XXXXXX` in the temporary directory.
///
/// Every name is made by drover itself (mkdtemp(3): never an existing one), unpredictable,
/// and its mode (0711: each service's user may reach its own 0700 subdirectory, nobody may
/// list it) is set on its descriptor.
pub(crate) fn notify_dir() -> std::io::Result<sys::OwnDir> {
    const MODE: u32 = 0o711;
    let mut errors = Vec::new();
    if let Some(dirs) = std::env::var_os("RUNTIME_DIRECTORY") {
        // systemd separates several directories with ':'; the first is drover's.
        let first = dirs.to_string_lossy().split(':').next().map(PathBuf::from);
        if let Some(base) = first.filter(|p| p.is_absolute()) {
            match sys::new_private_dir(&base, "notify-", MODE) {
                Ok(dir) => return Ok(dir),
                Err(err) => errors.push(format!("{}: {err}", base.display())),
            }
        }
    }
    let runtime_base = if sys::effective_uid() == 0 {
        Some(PathBuf::from("/run"))
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(base) = runtime_base {
        // Beside `drover/` (the control socket's directory, 0700), not in it: services of
        // other users must reach their sockets.
        match sys::new_private_dir(&base, "drover-notify-", MODE) {
            Ok(dir) => return Ok(dir),
            Err(err) => errors.push(format!("{}: {err}", base.display())),
        }
    }
    let temp = std::env::temp_dir();
    match sys::new_private_dir(&temp, "drover-", MODE) {
        Ok(dir) => Ok(dir),
        Err(err) => {
            errors.push(format!("{}: {err}", temp.display()));
            Err(std::io::Error::other(format!(
                "no directory for notify sockets: {}",
                errors.join("; ")
            )))
        }
    }
}
