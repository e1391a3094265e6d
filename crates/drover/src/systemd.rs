//! drover as a systemd service (`Type=notify`, `WatchdogSec=`): when it was started with
//! `NOTIFY_SOCKET`, it sends `READY=1` once every service is ready, `WATCHDOG=1` for as long
//! as the supervisor's loop answers, and `STOPPING=1` when it begins to drain or its services
//! have ended. Services never see drover's own `NOTIFY_SOCKET` or `WATCHDOG_*` (the supervisor
//! removes them).
//!
//! The socket is connected to the manager's, so that it is writable only while the manager's
//! queue has room: `READY=1` and `STOPPING=1` wait for room (a few seconds at most) and are not
//! lost to a momentarily full queue; `WATCHDOG=1` never waits (the next one follows). Nothing
//! blocks the runtime thread. A send that finds the manager's socket gone (systemd re-executed
//! itself) connects again once.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drover_supervisor::{ServiceSnapshot, State, Supervisor};
use tokio::net::UnixDatagram;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// How long `READY=1` and `STOPPING=1` wait for room in the manager's queue.
const STATE_SEND_LIMIT: Duration = Duration::from_secs(5);

/// The service manager drover was started by, reached through `NOTIFY_SOCKET`.
#[derive(Clone)]
pub(crate) struct ServiceManager {
    address: Arc<SocketAddr>,
    socket: Arc<Mutex<Arc<UnixDatagram>>>,
    /// Whether the last send failed (then the next failure is logged at debug level only).
    failing: Arc<AtomicBool>,
    /// Whether `STOPPING=1` went out (or is going out): it is sent once.
    stopping: Arc<AtomicBool>,
}

impl ServiceManager {
    /// The manager named by `NOTIFY_SOCKET` (an absolute path, or `@name` in the abstract
    /// namespace, as `sd_notify(3)` accepts); `None` when it is unset or empty, or when it
    /// cannot be reached (with a warning). Must run inside the runtime.
    pub(crate) fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())?;
        let connected = address_of(&path).and_then(|address| {
            let socket = connect(&address)?;
            Ok((address, socket))
        });
        match connected {
            Ok((address, socket)) => Some(Self {
                address: Arc::new(address),
                socket: Arc::new(Mutex::new(Arc::new(socket))),
                failing: Arc::default(),
                stopping: Arc::default(),
            }),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    socket = %path.to_string_lossy(),
                    "cannot reach the service manager (NOTIFY_SOCKET); not notifying it"
                );
                None
            }
        }
    }

    fn current(&self) -> Arc<UnixDatagram> {
        self.socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `message` (`KEY=VALUE` lines), waiting up to `wait` for room in the manager's
    /// queue (`None`: no wait at all). Failures are logged, never fatal.
    async fn send(&self, message: &str, wait: Option<Duration>) {
        let mut reconnected = false;
        loop {
            let socket = self.current();
            let sent = match (socket.try_send(message.as_bytes()), wait) {
                (Err(err), Some(limit)) if err.kind() == io::ErrorKind::WouldBlock => {
                    tracing::info!(
                        message = message.lines().next().unwrap_or_default(),
                        limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                        "the service manager's queue is full; waiting for room"
                    );
                    tokio::time::timeout(limit, socket.send(message.as_bytes()))
                        .await
                        .unwrap_or_else(|_| Err(io::ErrorKind::WouldBlock.into()))
                }
                (sent, _) => sent,
            };
            let err = match sent {
                Ok(_) => {
                    self.failing.store(false, Ordering::Relaxed);
                    return;
                }
                Err(err) => err,
            };
            let gone = matches!(
                err.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::NotFound
            );
            if gone && !reconnected {
                reconnected = true;
                if let Ok(fresh) = connect(&self.address) {
                    *self.socket.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
                    continue;
                }
            }
            let first = !self.failing.swap(true, Ordering::Relaxed);
            let what = message.lines().next().unwrap_or_default();
            if err.kind() == io::ErrorKind::WouldBlock {
                if first || wait.is_some() {
                    tracing::warn!(
                        message = what,
                        "the service manager's queue is full; message dropped"
                    );
                }
            } else if first {
                tracing::warn!(error = %err, message = what, "cannot notify the service manager (NOTIFY_SOCKET)");
            } else {
                tracing::debug!(error = %err, message = what, "cannot notify the service manager");
            }
            return;
        }
    }

    /// Sends `STOPPING=1`, once: later calls return at once.
    pub(crate) async fn stopping(&self) {
        if self.stopping.swap(true, Ordering::Relaxed) {
            return;
        }
        self.send("STOPPING=1\nSTATUS=draining\n", Some(STATE_SEND_LIMIT))
            .await;
    }

    /// Watches the supervisor and sends `READY=1` the first time every service is ready.
    pub(crate) fn announce_ready(&self, supervisor: &Supervisor) -> JoinHandle<()> {
        let mut events = supervisor.subscribe();
        let supervisor = supervisor.clone();
        let manager = self.clone();
        tokio::spawn(async move {
            loop {
                if all_ready(&supervisor.snapshot()) {
                    manager
                        .send(
                            "READY=1\nSTATUS=every service is ready\n",
                            Some(STATE_SEND_LIMIT),
                        )
                        .await;
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
    /// drover's pid), pings the supervisor's loop every quarter period and sends `WATCHDOG=1`
    /// as soon as each ping is answered; a ping waits up to half a period. So a loop that
    /// stalls for up to three quarters of the period is still fed in time, and one that is
    /// wedged longer (or a wedged runtime, which stops this task too) is not: the manager
    /// restarts drover when the period runs out.
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
            let mut ticks = tokio::time::interval(period / 4);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut starving = false;
            loop {
                ticks.tick().await;
                if supervisor.responsive(period / 2).await {
                    manager.send("WATCHDOG=1\n", None).await;
                    if starving {
                        tracing::info!("the supervisor answers again; feeding the watchdog");
                        starving = false;
                    }
                } else if !supervisor.is_running() {
                    return;
                } else if !starving {
                    tracing::error!(
                        "the supervisor has not answered within {}ms; not feeding the watchdog",
                        (period / 2).as_millis()
                    );
                    starving = true;
                }
            }
        }))
    }
}

/// `NOTIFY_SOCKET` as an address: an absolute path, or `@name` in the abstract namespace.
fn address_of(path: &OsStr) -> io::Result<SocketAddr> {
    let bytes = path.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(path),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path nor an @abstract name",
        )),
    }
}

/// A datagram socket connected to `address`, non-blocking, registered with the runtime.
fn connect(address: &SocketAddr) -> io::Result<UnixDatagram> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket.connect_addr(address)?;
    socket.set_nonblocking(true)?;
    UnixDatagram::from_std(socket)
}

/// The shortest watchdog period drover keeps to (a ping every 10 ms): below it, timers of zero
/// length would panic, and the only runtime thread would spin.
const SHORTEST_WATCHDOG: Duration = Duration::from_millis(40);
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
            Some(Duration::from_millis(40))
        );
        assert_eq!(
            watchdog_period(Some(&u64::MAX.to_string()), None, 7),
            Some(Duration::from_secs(31_557_600))
        );
    }
}
