//! drover as a systemd service (`Type=notify`): when it was started with `NOTIFY_SOCKET`, it
//! sends `READY=1` once every service is ready, and `STOPPING=1` when it begins to drain.
//! Services never see drover's own `NOTIFY_SOCKET` (the supervisor removes it).

use drover_supervisor::{Event, ServiceSnapshot, State, Supervisor};
use sd_notify::NotifyState;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Whether drover has a service manager to notify.
pub(crate) fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Watches the supervisor and sends `READY=1` the first time every service is ready.
pub(crate) fn announce_ready(supervisor: &Supervisor) -> Option<JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    let mut events = supervisor.subscribe();
    let supervisor = supervisor.clone();
    Some(tokio::spawn(async move {
        loop {
            if all_ready(&supervisor.snapshot()) {
                send(&[
                    NotifyState::Ready,
                    NotifyState::Status("every service is ready"),
                ]);
                return;
            }
            match events.recv().await {
                Ok(Event::State(_)) | Err(RecvError::Lagged(_)) => {}
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }))
}

/// Sends `STOPPING=1`.
pub(crate) fn stopping() {
    if enabled() {
        send(&[NotifyState::Stopping]);
    }
}

/// Ready: every service is `ready`, or is a one-shot that exited 0.
fn all_ready(services: &[ServiceSnapshot]) -> bool {
    services.iter().all(|s| match s.state {
        State::Ready => true,
        State::Exited => s.last_exit.is_some_and(|e| e.success()),
        _ => false,
    })
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
