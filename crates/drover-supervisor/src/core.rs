//! The supervisor's state machine, as a pure function: [`Core::handle`] takes an [`Input`] and
//! the time, and returns the [`Action`]s to perform. It never forks, signals, sleeps or reads a
//! clock, so every rule of the contract (`../shared/manifest-v1.md`, "Behaviour" and "Precise
//! semantics") is unit-tested without processes; `crate::runtime` performs the actions.
//!
//! Life of a service: `pending` until its dependencies meet their conditions, `starting` while
//! the spawner forks, `running`, `ready` (at once without a readiness probe). When its main
//! process exits, the rest of its process group gets the stop signal (`stopping`) and, once the
//! group is empty, the restart policy decides: `backoff` then `starting` again, `exited` (ended
//! for good) or `failed` (gave up). A drain stops services in reverse dependency order.
//! The state machine diagram is `docs/states.md`.
//!
//! Where things live:
//! - `slots`: [`ServiceId`], a generation-checked id, and the slots it names; an input that
//!   names a service no longer there is dropped;
//! - `events`: what the machine publishes (states, changes, counters, snapshots);
//! - `unit`: one service, [`unit::Unit`], and its [`unit::Stage`] (the state with the data that
//!   exists only in it); the moves that need nothing of the others (spawn, stop, kill, probes);
//! - `lifecycle`: the inputs that move one service (spawned, exited, group emptied, timers,
//!   probe verdicts) and the restart decision once a run is over;
//! - `gating`: the dependency graph: what may start now, what blocks for good, who still
//!   depends on a service being stopped;
//! - `reload`: a new manifest's services applied as a difference;
//! - `drain`: stopping everything in reverse order, the deadlines, the exit code.
//!
//! A new state is a `Stage` variant (and a [`State`] for the contract's name); a new operation
//! is an [`Input`] variant, dispatched in [`Core::handle`] to the module of its concern; a
//! transition is published only through `Unit::enter` / `Unit::explain`.

mod drain;
mod events;
mod gating;
mod hand;
mod lifecycle;
mod reload;
mod slots;
mod unit;

pub use events::{
    Event, ExitCounts, HookEvent, HookKind, HookOutcome, ProbeEvent, RestartCounts, RestartReason,
    ServiceSnapshot, State, StateChange,
};
pub(crate) use slots::ServiceId;

use crate::sys::ExitStatus;
use drover_probe::{Change, ProbeKind};
use drover_spec::model::{Service, Signal};
use slots::Slots;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use unit::Unit;

pub(crate) use nix::unistd::Pid;

/// Something that happened, for the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// The spawner started service `unit` as `pid` (also its process group).
    Spawned {
        /// The service.
        unit: ServiceId,
        /// Its main process.
        pid: Pid,
    },
    /// The spawner could not start it.
    SpawnFailed {
        /// The service.
        unit: ServiceId,
        /// Why.
        message: String,
        /// The shell's code for it: 127 not found, 126 not executable, else 1.
        code: i32,
    },
    /// Its main process was reaped.
    Exited {
        /// The service.
        unit: ServiceId,
        /// The process.
        pid: Pid,
        /// How it ended.
        status: ExitStatus,
        /// Whether its process group still had members right after.
        group_alive: bool,
    },
    /// Its process group has no member left.
    GroupGone {
        /// The service.
        unit: ServiceId,
    },
    /// A timer set by [`Action::SetTimer`] fired.
    Timer {
        /// The service.
        unit: ServiceId,
        /// The token it was set with; stale tokens are ignored.
        token: u64,
    },
    /// `settings.shutdown_timeout` ran out during a drain.
    DrainDeadline,
    /// [`KILL_WAIT`] passed since SIGKILL went to everything, and some group is still not
    /// empty (a process stuck in the kernel, or one drover may not signal): give up on it.
    KillDeadline,
    /// Drain everything and exit (SIGTERM, SIGINT, SIGQUIT). A second one acts as `Kill`.
    Shutdown,
    /// Stop waiting: SIGKILL everything and exit.
    Kill,
    /// `settings.shutdown_delay` is over: the drain's stops begin.
    DelayOver,
    /// A probe of run `run` (the service's start count) changed its verdict. (Every check is
    /// published as an [`Event::Probe`] by the runtime; only changes come here.)
    Probe {
        /// The service.
        unit: ServiceId,
        /// The run it checked.
        run: u64,
        /// Which probe.
        kind: ProbeKind,
        /// The new verdict.
        change: Change,
        /// What the check that changed it said.
        message: String,
    },
    /// The sd_notify watchdog of run `run` expired: a liveness failure.
    Watchdog {
        /// The service.
        unit: ServiceId,
        /// The run.
        run: u64,
        /// What happened, in words.
        message: String,
    },
    /// An operation by hand (the control socket); answered with [`Action::Answer`]s carrying
    /// `ticket`.
    Operate {
        /// The service.
        unit: ServiceId,
        /// What to do.
        op: HandOp,
        /// Chosen by the asker; the answers carry it back.
        ticket: u64,
    },
    /// The hooks started by [`Action::RunHooks`] for run `run` are over: all succeeded, or
    /// the first that did not, in words.
    HooksDone {
        /// The service.
        unit: ServiceId,
        /// The run they were started for.
        run: u64,
        /// Which hooks.
        kind: HookKind,
        /// `Err` names the hook that failed and how.
        result: Result<(), String>,
    },
    /// The service sent `STATUS=` over sd_notify (from a checked sender).
    Status {
        /// The service.
        unit: ServiceId,
        /// The text.
        text: String,
    },
}

/// Something to do, for the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Spawn service `unit`; answer with `Spawned` or `SpawnFailed`.
    Spawn(ServiceId),
    /// Send `signal` to process group `pgid`.
    SignalGroup {
        /// The service.
        unit: ServiceId,
        /// The group.
        pgid: Pid,
        /// The signal.
        signal: Signal,
    },
    /// Report `GroupGone` once group `pgid` is empty.
    WatchGroup {
        /// The service.
        unit: ServiceId,
        /// The group.
        pgid: Pid,
    },
    /// Report `Timer { unit, token }` after `after`.
    SetTimer {
        /// The service.
        unit: ServiceId,
        /// Token to report.
        token: u64,
        /// Delay.
        after: Duration,
    },
    /// Report `DrainDeadline` after this delay.
    SetDrainDeadline(Duration),
    /// Report `KillDeadline` after this delay.
    SetKillDeadline(Duration),
    /// Report `DelayOver` after this delay.
    SetDelayTimer(Duration),
    /// Publish this state change of service `unit`.
    Publish(ServiceId, StateChange),
    /// Start these probes of service `unit` for run `run`.
    StartProbes {
        /// The service.
        unit: ServiceId,
        /// The run (its start count); results carry it back.
        run: u64,
        /// Which probes.
        kinds: Vec<ProbeKind>,
    },
    /// Stop every probe of service `unit`.
    StopProbes(ServiceId),
    /// Run service `unit`'s `kind` hooks in order, for run `run`, each bounded by its own
    /// `timeout` and all of them by `deadline`; answer with [`Input::HooksDone`].
    RunHooks {
        /// The service.
        unit: ServiceId,
        /// The run.
        run: u64,
        /// Which hooks.
        kind: HookKind,
        /// The bound on all of them.
        deadline: Option<Duration>,
    },
    /// Kill service `unit`'s hooks still running (their run is stopping or over); no
    /// [`Input::HooksDone`] follows.
    StopHooks(ServiceId),
    /// An answer to the [`Input::Operate`] that carried `ticket`: `Accepted` first when the
    /// operation takes time, then `Done` or `Failed` (or only one of them, at once).
    Answer {
        /// The operation's ticket.
        ticket: u64,
        /// How it stands.
        answer: OpAnswer,
    },
    /// A reload removed the service and it has stopped: its id names nothing from now on;
    /// drop what belongs to it. (Its last state change came just before.)
    Forget(ServiceId),
    /// Everything is over: exit with this code.
    Exit(i32),
}

/// An operation by hand on one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandOp {
    /// Start it (now, if it waits to restart): done once a new run is up.
    Start,
    /// Stop it and keep it stopped (`stopped`): done once its process group is empty.
    Stop,
    /// Stop its run and start a new one (a start if it does not run): done once the new run
    /// is up.
    Restart,
}

impl HandOp {
    /// The operation's name, as in `drover start`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandOp::Start => "start",
            HandOp::Stop => "stop",
            HandOp::Restart => "restart",
        }
    }
}

/// How an operation by hand stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpAnswer {
    /// Taken; it will be `Done` or `Failed` later.
    Accepted,
    /// Done, in words (`started as pid 42`).
    Done(String),
    /// Not done, and why.
    Failed(String),
}

/// How a drain goes: `settings.shutdown_timeout` and `settings.shutdown_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shutdown {
    /// The whole drain's deadline.
    pub(crate) timeout: Duration,
    /// On a stop signal, how long everything is not ready before anything stops.
    pub(crate) delay: Duration,
}

/// How long drover waits for process groups to empty after sending SIGKILL to all of them.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// What the supervisor as a whole is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Keeping services alive.
    Supervising,
    /// Stopping everything in reverse dependency order; `killing` once SIGKILL is the answer;
    /// `delaying` while `settings.shutdown_delay` runs (everything not ready, nothing stopped).
    Draining { killing: bool, delaying: bool },
    /// `Exit` has been returned.
    Done,
}

/// The state machine of every service of a manifest.
pub(crate) struct Core {
    units: Slots<Unit>,
    shutdown_timeout: Duration,
    /// `settings.shutdown_delay`.
    shutdown_delay: Duration,
    phase: Phase,
    /// A drain needed SIGKILL or ran out of time: its exit code is 1.
    forced: bool,
    /// Exit code chosen by an `on_exit: shutdown` service.
    exit_code: Option<i32>,
    rng: u64,
}

impl Core {
    /// A state machine for `services` (a checked manifest: every dependency exists). `seed`
    /// feeds the backoff jitter.
    pub(crate) fn new(
        services: impl IntoIterator<Item = Service>,
        shutdown: Shutdown,
        seed: u64,
    ) -> Core {
        let mut units = Slots::default();
        for service in services {
            units.insert_with(|id| Unit::new(id, service));
        }
        let mut core = Core {
            units,
            shutdown_timeout: shutdown.timeout,
            shutdown_delay: shutdown.delay,
            phase: Phase::Supervising,
            forced: false,
            exit_code: None,
            rng: seed | 1,
        };
        core.rebuild_graph();
        core
    }

    /// Every service, by id.
    pub(crate) fn ids(&self) -> Vec<ServiceId> {
        self.units.ids()
    }

    /// The service named `name` in the manifest (not a removed one still stopping).
    pub(crate) fn find(&self, name: &str) -> Option<ServiceId> {
        self.units
            .iter()
            .find(|(_, u)| u.removal.is_none() && *u.name == *name)
            .map(|(id, _)| id)
    }

    /// Number of services.
    pub(crate) fn len(&self) -> usize {
        self.units.len()
    }

    /// The spec of service `id`'s current (or last) run.
    pub(crate) fn spec(&self, id: ServiceId) -> Option<&Arc<Service>> {
        Some(&self.units.get(id)?.spec)
    }

    /// The spec service `id`'s next run starts with (after a reload that changed its process,
    /// not the running one's); `None` for a removed service, which has no next run.
    pub(crate) fn next_spec(&self, id: ServiceId) -> Option<&Arc<Service>> {
        let unit = self.units.get(id)?;
        unit.removal.is_none().then(|| unit.effective_spec())
    }

    /// The process group of service `id`'s current run, while it may have members.
    pub(crate) fn group(&self, id: ServiceId) -> Option<Pid> {
        self.units.get(id)?.group()
    }

    /// What is known about service `id` now.
    pub(crate) fn snapshot(&self, id: ServiceId) -> Option<ServiceSnapshot> {
        Some(self.units.get(id)?.snapshot())
    }

    /// Whether the supervisor still keeps services alive (not draining, not done): a reload
    /// applies only then.
    pub(crate) fn is_supervising(&self) -> bool {
        self.phase == Phase::Supervising
    }

    /// The first actions: start every service whose dependencies allow it.
    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.schedule(now, &mut out);
        out
    }

    /// Applies one input; returns what to do. An input naming a service that is no longer
    /// there (its id is stale) changes nothing.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Spawned { unit, pid } => self.on_spawned(unit, pid, now, &mut out),
            Input::SpawnFailed {
                unit,
                message,
                code,
            } => self.on_spawn_failed(unit, &message, code, now, &mut out),
            Input::Exited {
                unit,
                pid,
                status,
                group_alive,
            } => self.on_exited(unit, pid, status, group_alive, now, &mut out),
            Input::GroupGone { unit } => self.on_group_gone(unit, now, &mut out),
            Input::Timer { unit, token } => self.on_timer(unit, token, &mut out),
            Input::Probe {
                unit,
                run,
                kind,
                change,
                message,
            } => self.on_probe(unit, run, kind, change, &message, now, &mut out),
            Input::Watchdog { unit, run, message } => {
                if self.units.get(unit).is_some_and(|u| u.is_probed_run(run)) {
                    self.stop_failed_run(unit, RestartReason::Watchdog, &message, &mut out);
                }
            }
            Input::Operate { unit, op, ticket } => self.operate(unit, op, ticket, now, &mut out),
            Input::HooksDone {
                unit,
                run,
                kind,
                result,
            } => self.on_hooks_done(unit, run, kind, result, now, &mut out),
            Input::Status { unit, text } => {
                if let Some(u) = self.units.get_mut(unit) {
                    u.status = Some(text);
                }
            }
            Input::Shutdown => self.on_shutdown(now, &mut out),
            Input::Kill => {
                if self.phase != Phase::Done {
                    self.kill_all("told to stop at once", now, &mut out);
                }
            }
            Input::DrainDeadline => self.on_drain_deadline(now, &mut out),
            Input::DelayOver => self.on_delay_over(now, &mut out),
            Input::KillDeadline => self.on_kill_deadline(&mut out),
        }
        out
    }

    /// Starts what may start, blocks what never will, stops what a drain may stop now, and
    /// decides when everything is over.
    fn schedule(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Supervising => self.schedule_starts(now, out),
            Phase::Draining { killing, delaying } => self.schedule_stops(killing, delaying, out),
            Phase::Done => {}
        }
    }
}

fn pid_u32(pid: Pid) -> u32 {
    u32::try_from(pid.as_raw()).unwrap_or_default()
}

fn round_ms(delay: Duration) -> Duration {
    Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

/// xorshift64*: a uniform number in `[0, 1)` for the backoff jitter.
fn next_random(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
