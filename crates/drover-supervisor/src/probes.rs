//! What the runtime needs to run probes: the exec probe runner (through the process table, so
//! the one reaper sees the probe's exit) and each service's sd_notify socket and watchdog.

use crate::process::{Processes, SpawnRequest};
use crate::sys::{self, ExitStatus};
use drover_probe::{
    CheckFuture, CheckOutcome, CheckResult, ExecCheck, NotifyMessage, NotifySocket,
};
use drover_spec::model::User;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long a timed-out exec probe's group may take to die after SIGKILL before the check gives
/// up waiting for its status (the reaper still collects it).
const KILLED_PROBE_WAIT: Duration = Duration::from_secs(5);

/// Runs an exec probe's command in its service's environment, working directory and user, in a
/// process group of its own, killed whole when the timeout runs out.
#[derive(Clone)]
pub(crate) struct ExecProbe {
    processes: Processes,
    /// Builds the command afresh for each check (a `Command` is spent by one spawn).
    command: Arc<dyn Fn() -> std::io::Result<Command> + Send + Sync>,
    user: Option<User>,
}

impl ExecProbe {
    pub(crate) fn new(
        processes: Processes,
        command: Box<dyn Fn() -> std::io::Result<Command> + Send + Sync>,
        user: Option<User>,
    ) -> ExecProbe {
        ExecProbe {
            processes,
            command: Arc::from(command),
            user,
        }
    }
}

impl ExecCheck for ExecProbe {
    fn run(&self, timeout: Duration) -> CheckFuture {
        let this = self.clone();
        Box::pin(async move { this.check(timeout).await })
    }
}

impl ExecProbe {
    async fn check(&self, timeout: Duration) -> CheckResult {
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
            waiter: Box::new(move |_, status| {
                let _ = done.send(status);
            }),
        };
        let pid = match self.processes.spawn(request).await {
            Ok(pid) => pid,
            Err(err) => return failure(format!("cannot run: {err}")),
        };
        // The timeout counts from the process's start, as Kubernetes' does: time spent waiting
        // for the spawner (1000 probes due at once queue there) is not the command's.
        match tokio::time::timeout(timeout, &mut status).await {
            Ok(Ok(status)) if status.success() => {
                CheckResult::new(CheckOutcome::Success, started.elapsed(), "exit code 0")
            }
            Ok(Ok(status)) => failure(status.to_string()),
            Ok(Err(_)) => failure("its exit status was lost".into()),
            Err(_) => {
                // The whole group: a probe script's children go with it.
                let _ = sys::signal_group(pid, Some(Signal::SIGKILL));
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

/// Binds `dir/<service>.sock` and starts reading it: each message goes to `notices` with `unit`.
pub(crate) fn listen(
    dir: &Path,
    service: &str,
    unit: usize,
    watchdog: Option<Duration>,
    notices: mpsc::UnboundedSender<(usize, NotifyMessage)>,
) -> std::io::Result<NotifyUnit> {
    let path = dir.join(format!("{service}.sock"));
    let socket = NotifySocket::bind(&path)?;
    let listener = tokio::spawn(async move {
        loop {
            match socket.recv().await {
                Ok(message) => {
                    if notices.send((unit, message)).is_err() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(unit, error = %err, "cannot read a notify socket");
                    break;
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

/// The directory for this drover's notify sockets: `$RUNTIME_DIRECTORY` (systemd), else the
/// temporary directory, in `drover-<pid>`; traversable by every user, listable by none.
pub(crate) fn notify_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::var_os("RUNTIME_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("drover-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    Ok(dir)
}
