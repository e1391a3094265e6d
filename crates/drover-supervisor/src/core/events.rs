//! What the state machine publishes: the contract's states, state changes, probe results,
//! reloads, the counters of restarts and exits, and the snapshot of one service.

use crate::sys::ExitStatus;
use drover_probe::{CheckOutcome, ProbeKind};
use drover_spec::diff::Plan;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The states of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started: waiting for dependencies, or blocked by one that failed for good.
    Pending,
    /// Being spawned.
    Starting,
    /// Started; readiness not passed yet.
    Running,
    /// Readiness passed (at once when there is no readiness probe).
    Ready,
    /// Stop signal sent to its process group; waiting for the group to empty.
    Stopping,
    /// Ended for good, or stopped by a drain.
    Exited,
    /// Waiting to restart.
    Backoff,
    /// Gave up after `max_retries`.
    Failed,
    /// Stopped by hand (`drover stop`): not a failure; no policy restarts it until it is
    /// started by hand.
    Stopped,
}

impl State {
    /// Every state, in the contract's order.
    pub const ALL: [State; 9] = [
        State::Pending,
        State::Starting,
        State::Running,
        State::Ready,
        State::Stopping,
        State::Exited,
        State::Backoff,
        State::Failed,
        State::Stopped,
    ];

    /// The contract's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Starting => "starting",
            State::Running => "running",
            State::Ready => "ready",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the supervisor publishes to its observers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A service changed state.
    State(StateChange),
    /// A probe check ended.
    Probe(ProbeEvent),
    /// A new manifest was applied: what changed.
    Reload(Arc<Plan>),
    /// A `post_start` or `pre_stop` hook ended.
    Hook(HookEvent),
}

/// Which hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// `post_start`: once the process started; the probes wait for them.
    PostStart,
    /// `pre_stop`: before the stop signal.
    PreStop,
}

impl HookKind {
    /// The manifest key (and label value).
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::PostStart => "post_start",
            HookKind::PreStop => "pre_stop",
        }
    }
}

/// How one hook ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookOutcome {
    /// Exit code 0.
    Success,
    /// Another exit, or it could not start.
    Failure,
    /// Killed at its deadline.
    Timeout,
}

impl HookOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HookOutcome::Success => "success",
            HookOutcome::Failure => "failure",
            HookOutcome::Timeout => "timeout",
        }
    }
}

/// One hook command of one service that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEvent {
    /// The service.
    pub service: Arc<str>,
    /// Which hooks.
    pub kind: HookKind,
    /// Its place in the list.
    pub index: usize,
    /// How it ended.
    pub outcome: HookOutcome,
    /// How long it ran.
    pub duration: Duration,
    /// What happened, in words.
    pub message: String,
}

/// The result of one probe check of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The service.
    pub service: Arc<str>,
    /// Which probe.
    pub kind: ProbeKind,
    /// How the check ended.
    pub outcome: CheckOutcome,
    /// How long it took.
    pub duration: Duration,
    /// What happened, in words.
    pub message: String,
}

/// A state change of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The service.
    pub service: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Its main process, when it has one.
    pub pid: Option<u32>,
    /// How its last run ended, when the change is about an end.
    pub exit: Option<ExitStatus>,
    /// Why a restart was decided, when the change is into `backoff` (or `pending`, for a
    /// reload).
    pub restart: Option<RestartReason>,
    /// The change ends a run that drover stopped on purpose (a drain, or a reload that replaced
    /// or removed the service), whatever its exit status: not a failure of the service.
    pub requested: bool,
    /// The change reports a failure (a run that failed, a probe that stops a run, a dependency
    /// that blocks it, readiness lost): logged as a warning. (`failed` is an error whatever.)
    pub trouble: bool,
    /// Why, in words.
    pub reason: String,
}

/// Why a restart was decided: the label values of `drover_service_restarts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartReason {
    /// The main process exited with a code.
    Exit,
    /// The main process was killed by a signal.
    Signal,
    /// The liveness probe failed.
    Liveness,
    /// The startup probe failed.
    Startup,
    /// The sd_notify watchdog expired.
    Watchdog,
    /// A manifest reload changed the service.
    Reload,
    /// Restarted (or started again) by hand: `drover restart`, or `drover start` of a service
    /// being stopped.
    Manual,
    /// A dependency it has `restart: true` on restarted.
    Dependency,
    /// A `post_start` hook failed.
    PostStart,
}

impl RestartReason {
    /// Every reason, in the order metrics print them (a reason missing here has no
    /// [`RestartCounts`] field either: `get` and `slot` match every reason).
    pub const ALL: [RestartReason; 9] = [
        RestartReason::Exit,
        RestartReason::Signal,
        RestartReason::Liveness,
        RestartReason::Startup,
        RestartReason::Watchdog,
        RestartReason::Reload,
        RestartReason::Manual,
        RestartReason::Dependency,
        RestartReason::PostStart,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Exit => "exit",
            RestartReason::Signal => "signal",
            RestartReason::Liveness => "liveness",
            RestartReason::Startup => "startup",
            RestartReason::Watchdog => "watchdog",
            RestartReason::Reload => "reload",
            RestartReason::Manual => "manual",
            RestartReason::Dependency => "dependency",
            RestartReason::PostStart => "post_start",
        }
    }
}

/// Restarts counted by reason: one field per [`RestartReason`], reached by an exhaustive
/// match, so a new reason cannot be counted out of bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestartCounts {
    exit: u64,
    signal: u64,
    liveness: u64,
    startup: u64,
    watchdog: u64,
    reload: u64,
    manual: u64,
    dependency: u64,
    post_start: u64,
}

impl RestartCounts {
    /// Restarts for `reason` so far.
    pub fn get(&self, reason: RestartReason) -> u64 {
        match reason {
            RestartReason::Exit => self.exit,
            RestartReason::Signal => self.signal,
            RestartReason::Liveness => self.liveness,
            RestartReason::Startup => self.startup,
            RestartReason::Watchdog => self.watchdog,
            RestartReason::Reload => self.reload,
            RestartReason::Manual => self.manual,
            RestartReason::Dependency => self.dependency,
            RestartReason::PostStart => self.post_start,
        }
    }

    /// Every reason with its count, in [`RestartReason::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (RestartReason, u64)> + '_ {
        RestartReason::ALL
            .iter()
            .map(|&reason| (reason, self.get(reason)))
    }

    /// Restarts for every reason together.
    pub fn total(&self) -> u64 {
        self.iter()
            .fold(0u64, |sum, (_, count)| sum.saturating_add(count))
    }

    /// Counts one restart for `reason`.
    pub(crate) fn count(&mut self, reason: RestartReason) {
        let slot = match reason {
            RestartReason::Exit => &mut self.exit,
            RestartReason::Signal => &mut self.signal,
            RestartReason::Liveness => &mut self.liveness,
            RestartReason::Startup => &mut self.startup,
            RestartReason::Watchdog => &mut self.watchdog,
            RestartReason::Reload => &mut self.reload,
            RestartReason::Manual => &mut self.manual,
            RestartReason::Dependency => &mut self.dependency,
            RestartReason::PostStart => &mut self.post_start,
        };
        *slot = slot.saturating_add(1);
    }
}

/// How runs ended, counted: the label values of `drover_service_exits_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Exit code 0.
    pub success: u64,
    /// Another exit code, or a start that failed.
    pub failure: u64,
    /// Killed by a signal.
    pub signal: u64,
}

impl ExitCounts {
    /// Counts one run that ended with `status`.
    pub(crate) fn count(&mut self, status: ExitStatus) {
        let slot = match status {
            ExitStatus::Exited(0) => &mut self.success,
            ExitStatus::Exited(_) => &mut self.failure,
            ExitStatus::Signaled(_) => &mut self.signal,
        };
        *slot = slot.saturating_add(1);
    }
}

/// Everything known about one service at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSnapshot {
    /// Its name.
    pub name: Arc<str>,
    /// Its state.
    pub state: State,
    /// Why it is in that state.
    pub reason: String,
    /// Its main process.
    pub pid: Option<u32>,
    /// Successful spawns so far.
    pub starts: u64,
    /// Restarts decided by the restart policy so far.
    pub restarts: u64,
    /// How its last run ended.
    pub last_exit: Option<ExitStatus>,
    /// Delay of the restart it is waiting for (state `backoff`).
    pub backoff: Option<Duration>,
    /// The last `STATUS=` it sent over sd_notify.
    pub status: Option<String>,
    /// Restarts by reason.
    pub restarts_by_reason: RestartCounts,
    /// How its runs ended.
    pub exits: ExitCounts,
    /// When its current or last run started.
    pub started_at: Option<Instant>,
    /// The probes it has.
    pub probes: Vec<ProbeKind>,
}
