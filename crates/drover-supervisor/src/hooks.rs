//! `post_start` and `pre_stop` hooks: the commands of one list run in turn, each as its
//! service's user with its environment, in a session of its own, killed at its deadline; one
//! [`Event::Hook`] per command and one [`Input::HooksDone`] for the list. A list whose run
//! stopped meanwhile is cancelled: the command running then is killed and nothing is answered.

use crate::core::{Event, HookEvent, HookKind, HookOutcome, Input, ServiceId};
use crate::probes::ExecProbe;
use drover_probe::CheckOutcome;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// One command of the list, ready to run.
pub(crate) struct PreparedHook {
    pub(crate) runner: ExecProbe,
    /// Its own `timeout`.
    pub(crate) timeout: Duration,
}

/// The hooks of one run of one service.
pub(crate) struct HookList {
    pub(crate) unit: ServiceId,
    pub(crate) run: u64,
    pub(crate) kind: HookKind,
    pub(crate) service: Arc<str>,
    pub(crate) hooks: Vec<PreparedHook>,
    /// Bounds all of them together (`pre_stop`: `stop.timeout`).
    pub(crate) deadline: Option<Duration>,
}

/// Starts running `list`; dropping (or using) the returned sender cancels it.
pub(crate) fn start(
    list: HookList,
    events: broadcast::Sender<Event>,
    inputs: mpsc::UnboundedSender<Input>,
) -> oneshot::Sender<()> {
    let (cancel, cancelled) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            result = run_all(&list, &events) => {
                let _ = inputs.send(Input::HooksDone {
                    unit: list.unit,
                    run: list.run,
                    kind: list.kind,
                    result,
                });
            }
            // Dropping `run_all` kills the command it was waiting for.
            _ = cancelled => {}
        }
    });
    cancel
}

async fn run_all(list: &HookList, events: &broadcast::Sender<Event>) -> Result<(), String> {
    let end = list
        .deadline
        .and_then(|deadline| Instant::now().checked_add(deadline));
    for (index, hook) in list.hooks.iter().enumerate() {
        let timeout = match end {
            Some(end) => hook
                .timeout
                .min(end.saturating_duration_since(Instant::now())),
            None => hook.timeout,
        };
        let result = hook.runner.check(timeout).await;
        let outcome = match result.outcome {
            CheckOutcome::Success => HookOutcome::Success,
            CheckOutcome::Failure => HookOutcome::Failure,
            CheckOutcome::Timeout => HookOutcome::Timeout,
        };
        let duration_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
        if outcome == HookOutcome::Success {
            tracing::info!(
                service = %list.service, hook = list.kind.as_str(), index, duration_ms,
                "{}[{index}] done", list.kind.as_str()
            );
        } else {
            tracing::warn!(
                service = %list.service, hook = list.kind.as_str(), index, duration_ms,
                result = outcome.as_str(), "{}[{index}] failed: {}", list.kind.as_str(), result.message
            );
        }
        let _ = events.send(Event::Hook(HookEvent {
            service: list.service.clone(),
            kind: list.kind,
            index,
            outcome,
            duration: result.duration,
            message: result.message.clone(),
        }));
        if outcome != HookOutcome::Success {
            return Err(format!(
                "{}[{index}]: {}",
                list.kind.as_str(),
                result.message
            ));
        }
    }
    Ok(())
}
