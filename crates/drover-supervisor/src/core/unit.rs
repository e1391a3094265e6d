//! One service: [`Unit`], its [`Stage`] (the contract's state with the data that exists only
//! in it), its counters, and the moves of one service that need nothing of the others: spawn,
//! stop, kill, probes started and stopped, readiness.
//!
//! **Invariant**: a stage is changed only through [`Unit::enter`] (or [`Unit::explain`] for a
//! new reason in the same state), which publishes the change; nothing else records a state.

use super::events::{
    ExitCounts, HookKind, RestartCounts, RestartReason, ServiceSnapshot, State, StateChange,
};
use super::{Action, OpAnswer, Pid, ServiceId, pid_u32};
use crate::restart::RestartTracker;
use crate::sys::ExitStatus;
use drover_probe::ProbeKind;
use drover_spec::model::{Condition, Service, Signal};
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// What a service is doing, with what only that state has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// Not started: waiting for its dependencies. `blocked` once one of them ended before it
    /// met its condition: the service has then ended for good without starting.
    Pending { blocked: bool },
    /// Being spawned; `Spawned` or `SpawnFailed` comes next. `hand`: stop it (or start it
    /// again) once it is, as asked by hand meanwhile.
    Starting { hand: Option<Hand> },
    /// Its main process runs (`running`, or `ready` once readiness passed).
    Up(Run),
    /// Being stopped: draining first (`stop.drain`, no signal yet), then its `pre_stop` hooks,
    /// then its stop signal went to its process group; waiting for the group to empty.
    Stopping(Stop),
    /// Waiting `delay` to restart.
    Backoff { delay: Duration },
    /// Ended. `completed`: the status of a last run its policy does not restart (ended for
    /// good, counted in the exit code); `None` when drover stopped it (drain, removal).
    Exited { completed: Option<ExitStatus> },
    /// Ended for good as a failure: gave up after `max_retries`, or stopped by a probe under
    /// `policy: never`.
    Failed(ExitStatus),
    /// Stopped by hand: stays so (across reloads too) until started by hand.
    Stopped,
}

/// What decides the end of a run besides its exit status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ending {
    /// The probe or watchdog that stopped it: the run failed, whatever its status.
    pub(super) failure: Option<RestartReason>,
    /// What was asked by hand: it decides instead of the restart policy.
    pub(super) hand: Option<Hand>,
}

impl Stop {
    pub(super) fn ending(&self) -> Ending {
        Ending {
            failure: self.failure,
            hand: self.hand,
        }
    }
}

/// What was asked by hand for the end of the current run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hand {
    /// Keep it stopped (`stopped`), whatever its restart policy.
    Stop,
    /// Start it again once its dependencies allow, whatever its restart policy: counted for
    /// this reason (`manual`, or `dependency` for a `restart: true` dependency's restart).
    Restart(RestartReason),
}

/// An operation by hand waiting for its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Waiter {
    /// The operation's ticket.
    pub(super) ticket: u64,
    pub(super) goal: Goal,
}

/// What an operation by hand waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Goal {
    /// The service reaches `stopped`.
    Stopped,
    /// A run later than run number `after` is up; it fails if the service ends (backoff,
    /// exited, failed, blocked, stopped) first.
    Up { after: u64 },
}

/// A run whose main process is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Run {
    /// Its main process, also its process group.
    pub(super) pid: Pid,
    /// Readiness passed (at once without a readiness probe).
    pub(super) ready: bool,
    /// Some probe of this run has been started and not stopped.
    pub(super) probing: bool,
    /// The startup probe passed, or there is none: readiness and liveness run.
    pub(super) startup_passed: bool,
    /// Its `post_start` hooks run: its probes start once they succeed.
    pub(super) post_start: bool,
}

/// A run being stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stop {
    /// Its main process, until it is reaped.
    pub(super) pid: Option<Pid>,
    /// Its process group.
    pub(super) pgid: Pid,
    /// How far the stop got.
    pub(super) step: StopStep,
    /// SIGKILL went to the group (after `stop.timeout`, or a kill).
    pub(super) killed: bool,
    /// Why a probe or the watchdog stopped the run, if one did: the run then counts as a
    /// failure, whatever its exit status.
    pub(super) failure: Option<RestartReason>,
    /// What was asked by hand for its end, if anything: it then decides, not the policy.
    pub(super) hand: Option<Hand>,
}

/// Where a stop is, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopStep {
    /// `stop.drain`: marked not ready, nothing sent yet.
    Draining,
    /// Its `pre_stop` hooks run; `stop.timeout` counts from their start.
    PreStop,
    /// The stop signal went to the group.
    Signalled,
}

impl Stage {
    /// The contract's name of the stage.
    pub(super) fn state(&self) -> State {
        match self {
            Stage::Pending { .. } => State::Pending,
            Stage::Starting { .. } => State::Starting,
            Stage::Up(run) if run.ready => State::Ready,
            Stage::Up(_) => State::Running,
            Stage::Stopping(_) => State::Stopping,
            Stage::Backoff { .. } => State::Backoff,
            Stage::Exited { .. } => State::Exited,
            Stage::Failed(_) => State::Failed,
            Stage::Stopped => State::Stopped,
        }
    }
}

/// How a service ended for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its policy does not restart it; its last run ended so.
    Completed(ExitStatus),
    /// It used up `max_retries`.
    Failed(ExitStatus),
    /// A dependency failed for good; it never started.
    Blocked,
}

impl Outcome {
    pub(super) fn code(self) -> i32 {
        match self {
            Outcome::Completed(status) | Outcome::Failed(status) => status.code(),
            Outcome::Blocked => 1,
        }
    }
}

/// What a state change says besides its new state.
pub(super) struct Transition {
    pub(super) reason: String,
    pub(super) exit: Option<ExitStatus>,
    pub(super) restart: Option<RestartReason>,
    pub(super) requested: bool,
    pub(super) trouble: bool,
}

impl Transition {
    pub(super) fn new(reason: impl Into<String>) -> Transition {
        Transition {
            reason: reason.into(),
            exit: None,
            restart: None,
            requested: false,
            trouble: false,
        }
    }

    /// It reports a failure ([`StateChange::trouble`]).
    pub(super) fn trouble(mut self) -> Transition {
        self.trouble = true;
        self
    }

    /// The change is about a run that ended with `status`.
    pub(super) fn exit(mut self, status: ExitStatus) -> Transition {
        self.exit = Some(status);
        self
    }

    /// A restart for `reason` was decided with it.
    pub(super) fn restart(mut self, reason: RestartReason) -> Transition {
        self.restart = Some(reason);
        self
    }

    /// It ends a run drover stopped on purpose ([`StateChange::requested`]).
    pub(super) fn requested(mut self) -> Transition {
        self.requested = true;
        self
    }
}

/// What a service's dependents wait for, since its spec last changed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Milestones {
    /// Some run started (`condition: started`).
    pub(super) started: bool,
    /// Some run exited 0 (`condition: completed_successfully`).
    pub(super) succeeded: bool,
}

/// A reload removed the service: it is stopped (after `dependents`), then forgotten.
pub(super) struct Removal {
    /// Removed by the same reload and depending on it: they stop first.
    pub(super) dependents: Vec<ServiceId>,
}

/// One service of the manifest.
pub(super) struct Unit {
    pub(super) id: ServiceId,
    pub(super) name: Arc<str>,
    pub(super) spec: Arc<Service>,
    pub(super) stage: Stage,
    pub(super) reason: String,
    /// When its current or last run started.
    pub(super) started_at: Option<Instant>,
    pub(super) tracker: RestartTracker,
    /// Current timer token; bumping it cancels the pending timer.
    pub(super) token: u64,
    /// Successful spawns: the number of the current run.
    pub(super) starts: u64,
    pub(super) restarts: RestartCounts,
    pub(super) exits: ExitCounts,
    pub(super) last_exit: Option<ExitStatus>,
    pub(super) milestones: Milestones,
    /// The last sd_notify `STATUS=`.
    pub(super) status: Option<String>,
    /// A reload changed its process: the spec its next run starts with, once the current one
    /// has stopped.
    pub(super) next_spec: Option<Arc<Service>>,
    pub(super) removal: Option<Removal>,
    /// Each `depends_on` entry of its next run's spec, resolved (`gating`).
    pub(super) dependencies: Vec<(ServiceId, Condition)>,
    /// The services whose `depends_on` names it (`gating`).
    pub(super) dependents: Vec<ServiceId>,
    /// Its dependencies with `restart: true`: when one restarts, so does it (`gating`).
    pub(super) restarts_with: Vec<ServiceId>,
    /// Operations by hand not done yet (`hand`).
    pub(super) waiters: Vec<Waiter>,
    /// A planned stop held until its `restart: true` dependents have stopped (`gating`).
    pub(super) deferred: Option<DeferredStop>,
}

/// A planned stop (a restart by hand, by a reload, or with a dependency) of a running service
/// that has `restart: true` dependents: they stop first, in dependency order, then it does.
pub(super) struct DeferredStop {
    /// The reason its stop gives.
    pub(super) why: String,
    /// What was asked by hand for its end.
    pub(super) hand: Option<Hand>,
}

impl Unit {
    pub(super) fn new(id: ServiceId, spec: Service) -> Unit {
        Unit {
            id,
            name: Arc::from(spec.name.as_str()),
            spec: Arc::new(spec),
            stage: Stage::Pending { blocked: false },
            reason: "waiting to start".into(),
            started_at: None,
            tracker: RestartTracker::default(),
            token: 0,
            starts: 0,
            restarts: RestartCounts::default(),
            exits: ExitCounts::default(),
            last_exit: None,
            milestones: Milestones::default(),
            status: None,
            next_spec: None,
            removal: None,
            dependencies: Vec::new(),
            dependents: Vec::new(),
            restarts_with: Vec::new(),
            waiters: Vec::new(),
            deferred: None,
        }
    }

    /// The spec its next run will have.
    pub(super) fn effective_spec(&self) -> &Arc<Service> {
        self.next_spec.as_ref().unwrap_or(&self.spec)
    }

    /// Being spawned, running or being stopped: it has (or is about to have) processes.
    pub(super) fn is_active(&self) -> bool {
        matches!(
            self.stage,
            Stage::Starting { .. } | Stage::Up(_) | Stage::Stopping(_)
        )
    }

    /// Ended for good, and how.
    pub(super) fn outcome(&self) -> Option<Outcome> {
        match self.stage {
            Stage::Pending { blocked: true } => Some(Outcome::Blocked),
            Stage::Exited {
                completed: Some(status),
            } => Some(Outcome::Completed(status)),
            Stage::Failed(status) => Some(Outcome::Failed(status)),
            _ => None,
        }
    }

    /// Its process group, while it may have members.
    pub(super) fn group(&self) -> Option<Pid> {
        match &self.stage {
            Stage::Up(run) => Some(run.pid),
            Stage::Stopping(stop) => Some(stop.pgid),
            _ => None,
        }
    }

    /// Its main process, while it runs.
    pub(super) fn pid(&self) -> Option<Pid> {
        match &self.stage {
            Stage::Up(run) => Some(run.pid),
            Stage::Stopping(stop) => stop.pid,
            _ => None,
        }
    }

    /// Whether run `run` is the current one and still up: only then do its probe verdicts
    /// and its watchdog count.
    pub(super) fn is_probed_run(&self, run: u64) -> bool {
        self.starts == run && matches!(self.stage, Stage::Up(_))
    }

    /// What is known about it now.
    pub(super) fn snapshot(&self) -> ServiceSnapshot {
        let spec = &self.spec;
        ServiceSnapshot {
            name: self.name.clone(),
            state: self.stage.state(),
            reason: self.reason.clone(),
            pid: self.pid().map(pid_u32),
            starts: self.starts,
            restarts: self.restarts.total(),
            last_exit: self.last_exit,
            backoff: match self.stage {
                Stage::Backoff { delay } => Some(delay),
                _ => None,
            },
            status: self.status.clone(),
            restarts_by_reason: self.restarts,
            exits: self.exits,
            started_at: self.started_at,
            probes: [
                (ProbeKind::Startup, spec.startup_probe.is_some()),
                (ProbeKind::Readiness, spec.readiness_probe.is_some()),
                (ProbeKind::Liveness, spec.liveness_probe.is_some()),
            ]
            .into_iter()
            .filter_map(|(kind, has)| has.then_some(kind))
            .collect(),
        }
    }

    /// Moves to `stage` and publishes the change (unless neither the state nor the reason
    /// changed).
    pub(super) fn enter(&mut self, stage: Stage, change: Transition, out: &mut Vec<Action>) {
        let from = self.stage.state();
        self.stage = stage;
        self.announce(from, change, out);
        self.settle_waiters(out);
    }

    /// Answers the operations by hand whose goal the stage it just entered meets, or now
    /// never will.
    fn settle_waiters(&mut self, out: &mut Vec<Action>) {
        if self.waiters.is_empty() {
            return;
        }
        let (stage, starts, reason) = (&self.stage, self.starts, &self.reason);
        self.waiters.retain(|waiter| {
            let answer = match (waiter.goal, stage) {
                (Goal::Stopped, Stage::Stopped) => OpAnswer::Done("stopped".into()),
                (Goal::Up { after }, Stage::Up(run)) if starts > after => {
                    OpAnswer::Done(format!("running as pid {}", run.pid))
                }
                (
                    Goal::Up { .. },
                    Stage::Backoff { .. }
                    | Stage::Exited { .. }
                    | Stage::Failed(_)
                    | Stage::Pending { blocked: true }
                    | Stage::Stopped,
                ) => OpAnswer::Failed(reason.clone()),
                _ => return true,
            };
            out.push(Action::Answer {
                ticket: waiter.ticket,
                answer,
            });
            false
        });
    }

    /// Fails every operation by hand still waiting (matching `goal`, or all), saying `why`.
    pub(super) fn fail_waiters(&mut self, goal: Option<Goal>, why: &str, out: &mut Vec<Action>) {
        self.waiters.retain(|waiter| {
            if goal.is_some_and(|goal| goal != waiter.goal) {
                return true;
            }
            out.push(Action::Answer {
                ticket: waiter.ticket,
                answer: OpAnswer::Failed(why.to_string()),
            });
            false
        });
    }

    /// Publishes a new reason for the state it is in.
    pub(super) fn explain(&mut self, change: Transition, out: &mut Vec<Action>) {
        let from = self.stage.state();
        self.announce(from, change, out);
    }

    pub(super) fn announce(&mut self, from: State, change: Transition, out: &mut Vec<Action>) {
        let to = self.stage.state();
        if from == to && self.reason == change.reason {
            return;
        }
        self.reason.clone_from(&change.reason);
        out.push(Action::Publish(
            self.id,
            StateChange {
                service: self.name.clone(),
                from,
                to,
                pid: self.pid().or(self.group()).map(pid_u32),
                exit: change.exit,
                restart: change.restart,
                requested: change.requested,
                trouble: change.trouble,
                reason: change.reason,
            },
        ));
    }

    /// "stopping with SIGTERM": the words of a stop signal being sent.
    pub(super) fn stopping_with(&self) -> String {
        format!("stopping with {}", self.spec.stop.signal.as_str())
    }

    /// Spawns a run.
    pub(super) fn spawn(&mut self, out: &mut Vec<Action>) {
        self.enter(
            Stage::Starting { hand: None },
            Transition::new("starting"),
            out,
        );
        out.push(Action::Spawn(self.id));
    }

    /// Stops the running process: its probes, then (after `stop.drain`, not ready meanwhile)
    /// the stop signal to its group, with `stop.timeout` until SIGKILL. `why` starts the
    /// reason; `failure`: the probe or watchdog that stopped it; `hand`: what was asked by hand
    /// for its end.
    pub(super) fn stop(
        &mut self,
        why: Option<&str>,
        failure: Option<RestartReason>,
        hand: Option<Hand>,
        out: &mut Vec<Action>,
    ) {
        let Stage::Up(run) = &self.stage else { return };
        let pid = run.pid;
        self.stop_hooks(out);
        self.stop_probes(out);
        let drain = self.spec.stop.drain;
        let (step, action) = if drain.is_zero() {
            self.after_drain(pid, out)
        } else {
            self.token += 1;
            out.push(Action::SetTimer {
                unit: self.id,
                token: self.token,
                after: drain,
            });
            let next = if self.spec.pre_stop.is_empty() {
                self.spec.stop.signal.as_str()
            } else {
                "pre_stop"
            };
            let text = format!(
                "not ready; draining for {} before {next}",
                humantime::format_duration(drain),
            );
            (StopStep::Draining, text)
        };
        let stop = Stop {
            pid: Some(pid),
            pgid: pid,
            step,
            killed: false,
            failure,
            hand,
        };
        let reason = match why {
            Some(why) => format!("{why}; {action}"),
            None => action,
        };
        let mut change = Transition::new(reason);
        if failure.is_some() {
            change = change.trouble();
        }
        self.enter(Stage::Stopping(stop), change, out);
    }

    /// The drain is over (or there is none): the `pre_stop` hooks start, or else the stop
    /// signal goes; either way `stop.timeout` counts from now. The step reached, in words.
    pub(super) fn after_drain(&mut self, pgid: Pid, out: &mut Vec<Action>) -> (StopStep, String) {
        if self.spec.pre_stop.is_empty() {
            self.signal_stop(pgid, self.spec.stop.timeout, out);
            return (StopStep::Signalled, self.stopping_with());
        }
        let timeout = self.spec.stop.timeout;
        self.arm_timer(timeout, out);
        out.push(Action::RunHooks {
            unit: self.id,
            run: self.starts,
            kind: HookKind::PreStop,
            deadline: Some(timeout),
        });
        let text = format!(
            "running pre_stop before {} (stop.timeout {} counts)",
            self.spec.stop.signal.as_str(),
            humantime::format_duration(timeout)
        );
        (StopStep::PreStop, text)
    }

    /// Sends the stop signal to `pgid` and arms SIGKILL after `grace`.
    pub(super) fn signal_stop(&mut self, pgid: Pid, grace: Duration, out: &mut Vec<Action>) {
        self.send_stop_signal(pgid, out);
        self.arm_timer(grace, out);
    }

    /// Sends the stop signal to `pgid`, leaving the timer as it is.
    pub(super) fn send_stop_signal(&self, pgid: Pid, out: &mut Vec<Action>) {
        out.push(Action::SignalGroup {
            unit: self.id,
            pgid,
            signal: self.spec.stop.signal,
        });
    }

    /// Cancels the pending timer and sets a new one.
    pub(super) fn arm_timer(&mut self, after: Duration, out: &mut Vec<Action>) {
        self.token += 1;
        out.push(Action::SetTimer {
            unit: self.id,
            token: self.token,
            after,
        });
    }

    /// Whether hooks of its current run may be running.
    pub(super) fn hooks_running(&self) -> bool {
        match &self.stage {
            Stage::Up(run) => run.post_start,
            Stage::Stopping(stop) => stop.step == StopStep::PreStop,
            _ => false,
        }
    }

    /// Kills the hooks of its current run, if any run.
    pub(super) fn stop_hooks(&mut self, out: &mut Vec<Action>) {
        if self.hooks_running() {
            out.push(Action::StopHooks(self.id));
        }
        if let Stage::Up(run) = &mut self.stage {
            run.post_start = false;
        }
    }

    /// SIGKILLs its process group (running, or stopping without SIGKILL yet) and publishes
    /// `reason`; whether it had one to kill.
    pub(super) fn kill(&mut self, reason: String, out: &mut Vec<Action>) -> bool {
        let stop = match &self.stage {
            Stage::Up(run) => Stop {
                pid: Some(run.pid),
                pgid: run.pid,
                step: StopStep::Signalled,
                killed: true,
                failure: None,
                hand: None,
            },
            Stage::Stopping(stop) if !stop.killed => Stop {
                step: StopStep::Signalled,
                killed: true,
                ..stop.clone()
            },
            _ => return false,
        };
        self.stop_hooks(out);
        self.stop_probes(out);
        self.token += 1;
        out.push(Action::SignalGroup {
            unit: self.id,
            pgid: stop.pgid,
            signal: Signal::SIGKILL,
        });
        out.push(Action::WatchGroup {
            unit: self.id,
            pgid: stop.pgid,
        });
        self.enter(Stage::Stopping(stop), Transition::new(reason), out);
        true
    }

    /// Whether it has a process group that SIGKILL has not reached yet.
    pub(super) fn is_killable(&self) -> bool {
        match &self.stage {
            Stage::Up(_) => true,
            Stage::Stopping(stop) => !stop.killed,
            _ => false,
        }
    }

    pub(super) fn stop_probes(&mut self, out: &mut Vec<Action>) {
        if let Stage::Up(run) = &mut self.stage
            && std::mem::take(&mut run.probing)
        {
            out.push(Action::StopProbes(self.id));
        }
    }

    pub(super) fn start_probes(&mut self, kinds: Vec<ProbeKind>, out: &mut Vec<Action>) {
        let Stage::Up(run) = &mut self.stage else {
            return;
        };
        run.probing = true;
        out.push(Action::StartProbes {
            unit: self.id,
            run: self.starts,
            kinds,
        });
    }

    /// The startup probe alone first, if there is one; the others otherwise.
    pub(super) fn start_first_probes(&mut self, out: &mut Vec<Action>) {
        if self.spec.startup_probe.is_some() {
            self.start_probes(vec![ProbeKind::Startup], out);
        } else {
            self.start_main_probes(out);
        }
    }

    /// Starts the readiness and liveness probes; without a readiness probe, ready at once.
    pub(super) fn start_main_probes(&mut self, out: &mut Vec<Action>) {
        let Stage::Up(run) = &mut self.stage else {
            return;
        };
        run.startup_passed = true;
        let mut kinds = Vec::new();
        if self.spec.readiness_probe.is_some() {
            kinds.push(ProbeKind::Readiness);
        }
        if self.spec.liveness_probe.is_some() {
            kinds.push(ProbeKind::Liveness);
        }
        if !kinds.is_empty() {
            self.start_probes(kinds, out);
        }
        if self.spec.readiness_probe.is_none() {
            self.set_ready(true, Transition::new("ready (no readiness probe)"), out);
        }
    }

    /// Restarts the probes of the running process after its probes changed (they start once
    /// its `post_start` hooks are done, if they still run).
    pub(super) fn restart_probes(&mut self, out: &mut Vec<Action>) {
        self.stop_probes(out);
        let Stage::Up(run) = &self.stage else { return };
        if run.post_start {
            return;
        }
        if run.startup_passed || self.spec.startup_probe.is_none() {
            self.start_main_probes(out);
        } else {
            self.start_probes(vec![ProbeKind::Startup], out);
        }
    }

    /// Marks the running process ready or not, and publishes `change`.
    pub(super) fn set_ready(&mut self, ready: bool, change: Transition, out: &mut Vec<Action>) {
        let from = self.stage.state();
        let Stage::Up(run) = &mut self.stage else {
            return;
        };
        run.ready = ready;
        self.announce(from, change, out);
    }

    /// Marks a running service not ready, saying `why` (a shutdown delay).
    pub(super) fn mark_not_ready(&mut self, why: &str, out: &mut Vec<Action>) {
        if matches!(self.stage, Stage::Up(_)) {
            self.set_ready(false, Transition::new(why), out);
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        matches!(&self.stage, Stage::Up(run) if run.ready)
    }
}
