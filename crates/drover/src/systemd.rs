//! drover as a systemd service (`Type=notify`, `WatchdogSec=`): when it was started with
//! `NOTIFY_SOCKET`, it sends `READY=1` once every service is ready, `WATCHDOG=1` every half
//! `WATCHDOG_USEC` for as long as the supervisor's loop answers, and `STOPPING=1` when it begins
//! to drain. Services never see drover's own `NOTIFY_SOCKET` or `WATCHDOG_*` (the supervisor
//! removes them).
//!
//! The datagrams go out on a non-blocking socket: a service manager that does not read its
//! socket loses a message, and never holds up the runtime thread.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use drover_supervisor::{ServiceSnapshot, State, Supervisor};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// The service manager drover was started by, reached through `NOTIFY_SOCKET`.
#[derive(Clone)]
pub(crate) struct ServiceManager {
    socket: Arc<UnixDatagram>,
    address: Arc<SocketAddr>,
}

impl ServiceManager {
    /// The manager named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace);
    /// `None` when it is unset or empty, or when no socket can be made (with a warning).
    pub(crate) fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())?;
        match Self::connect(&path) {
            Ok(manager) => Some(manager),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    socket = %path.to_string_lossy(),
                    "cannot reach the service manager (NOTIFY_SOCKET)"
                );
                None
            }
        }
    }

    fn connect(path: &OsStr) -> io::Result<Self> {
        let bytes = path.as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket: Arc::new(socket),
            address: Arc::new(address),
        })
    }

    /// Sends one message (`KEY=VALUE` lines); never blocks. A failure is logged, not fatal.
    fn send(&self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.address) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!(
                    message,
                    "the service manager's socket is full; message dropped"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot notify the service manager (NOTIFY_SOCKET)");
            }
        }
    }

    /// Sends `STOPPING=1`.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining\n");
    }

    /// Watches the supervisor and sends `READY=1` the first time every service is ready.
    pub(crate) fn announce_ready(&self, supervisor: &Supervisor) -> JoinHandle<()> {
        let mut events = supervisor.subscribe();
        let supervisor = supervisor.clone();
        let manager = self.clone();
        tokio::spawn(async move {
            loop {
                if all_ready(&supervisor.snapshot()) {
                    manager.send("READY=1\nSTATUS=every service is ready\n");
                    return;
                }
                match events.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// When the manager asked for a watchdog (`WATCHDOG_USEC`, and `WATCHDOG_PID` unset or
    /// drover's pid), sends `WATCHDOG=1` every half period, each time only after the
    /// supervisor's loop has answered a ping within a quarter period. A wedged loop (or a
    /// wedged runtime, which also stops this task) stops the pings, and the manager restarts
    /// drover when the period runs out.
    pub(crate) fn feed_watchdog(&self, supervisor: &Supervisor) -> Option<JoinHandle<()>> {
        let period = watchdog_period(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )?;
        let supervisor = supervisor.clone();
        let manager = self.clone();
        tracing::info!(
            period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            "feeding the service manager's watchdog"
        );
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period / 2);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut starving = false;
            loop {
                ticks.tick().await;
                if supervisor.responsive(period / 4).await {
                    manager.send("WATCHDOG=1\n");
                    if starving {
                        tracing::info!("the supervisor answers again; feeding the watchdog");
                        starving = false;
                    }
                } else if !supervisor.is_running() {
                    return;
                } else if !starving {
                    tracing::error!(
                        "the supervisor has not answered within {}ms; not feeding the watchdog",
                        (period / 4).as_millis()
                    );
                    starving = true;
                }
            }
        }))
    }
}

/// The shortest watchdog period drover keeps to (a ping every 2 ms): below it, timers of zero
/// length would panic, and no manager asks for less.
const SHORTEST_WATCHDOG: Duration = Duration::from_millis(4);
/// The longest: a year, as every duration of the manifest.
const LONGEST_WATCHDOG: Duration = Duration::from_secs(31_557_600);

/// The watchdog period asked for: `WATCHDOG_USEC` microseconds (more than 0), when
/// `WATCHDOG_PID` is unset or names `own_pid` (as `sd_watchdog_enabled(3)` reads them); kept
/// within [`SHORTEST_WATCHDOG`] and [`LONGEST_WATCHDOG`].
fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec).clamp(SHORTEST_WATCHDOG, LONGEST_WATCHDOG))
}

/// Ready: every service is `ready`, or is a one-shot that exited 0.
fn all_ready(services: &[ServiceSnapshot]) -> bool {
    services.iter().all(|s| match s.state {
        State::Ready => true,
        State::Exited => s.last_exit.is_some_and(|e| e.success()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::watchdog_period;
    use std::time::Duration;

    #[test]
    fn watchdog_period_reads_usec_and_pid_as_sd_watchdog_enabled() {
        assert_eq!(
            watchdog_period(Some("500000"), None, 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            watchdog_period(Some("500000"), Some("7"), 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(watchdog_period(Some("500000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period(None, Some("7"), 7), None);
        // Timers of zero length would panic; a period of centuries would be no watchdog.
        assert_eq!(
            watchdog_period(Some("1"), None, 7),
            Some(Duration::from_millis(4))
        );
        assert_eq!(
            watchdog_period(Some(&u64::MAX.to_string()), None, 7),
            Some(Duration::from_secs(31_557_600))
        );
    }
}
