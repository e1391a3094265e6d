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

use crate::restart::{Decision, RestartTracker, RunEnd};
use crate::sys::ExitStatus;
use drover_probe::{Change, CheckOutcome, ProbeKind};
use drover_spec::diff::{Plan, ServiceChange, compare, plan_services};
use drover_spec::model::{Condition, OnExit, Service, Signal};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) use nix::unistd::Pid;

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
}

impl State {
    /// Every state, in the contract's order.
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Starting,
        State::Running,
        State::Ready,
        State::Stopping,
        State::Exited,
        State::Backoff,
        State::Failed,
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
}

impl RestartReason {
    /// Every reason, in the order metrics print them (a reason missing here has no
    /// [`RestartCounts`] field either: `get` and `slot` match every reason).
    pub const ALL: [RestartReason; 6] = [
        RestartReason::Exit,
        RestartReason::Signal,
        RestartReason::Liveness,
        RestartReason::Startup,
        RestartReason::Watchdog,
        RestartReason::Reload,
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
        }
    }

    /// Every reason with its count, in [`RestartReason::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (RestartReason, u64)> + '_ {
        RestartReason::ALL
            .iter()
            .map(|&reason| (reason, self.get(reason)))
    }

    /// Counts one restart for `reason`.
    fn count(&mut self, reason: RestartReason) {
        let slot = match reason {
            RestartReason::Exit => &mut self.exit,
            RestartReason::Signal => &mut self.signal,
            RestartReason::Liveness => &mut self.liveness,
            RestartReason::Startup => &mut self.startup,
            RestartReason::Watchdog => &mut self.watchdog,
            RestartReason::Reload => &mut self.reload,
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

/// Something that happened, for the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// The spawner started service `unit` as `pid` (also its process group).
    Spawned {
        /// Service index.
        unit: usize,
        /// Its main process.
        pid: Pid,
    },
    /// The spawner could not start it.
    SpawnFailed {
        /// Service index.
        unit: usize,
        /// Why.
        message: String,
        /// The shell's code for it: 127 not found, 126 not executable, else 1.
        code: i32,
    },
    /// Its main process was reaped.
    Exited {
        /// Service index.
        unit: usize,
        /// The process.
        pid: Pid,
        /// How it ended.
        status: ExitStatus,
        /// Whether its process group still had members right after.
        group_alive: bool,
    },
    /// Its process group has no member left.
    GroupGone {
        /// Service index.
        unit: usize,
    },
    /// A timer set by [`Action::SetTimer`] fired.
    Timer {
        /// Service index.
        unit: usize,
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
    /// A probe of run `run` (the service's start count) changed its verdict. (Every check is
    /// published as an [`Event::Probe`] by the runtime; only changes come here.)
    Probe {
        /// Service index.
        unit: usize,
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
        /// Service index.
        unit: usize,
        /// The run.
        run: u64,
        /// What happened, in words.
        message: String,
    },
    /// The service sent `STATUS=` over sd_notify (from a checked sender).
    Status {
        /// Service index.
        unit: usize,
        /// The text.
        text: String,
    },
}

/// Something to do, for the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Spawn service `unit`; answer with `Spawned` or `SpawnFailed`.
    Spawn(usize),
    /// Send `signal` to process group `pgid`.
    SignalGroup {
        /// Service index.
        unit: usize,
        /// The group.
        pgid: Pid,
        /// The signal.
        signal: Signal,
    },
    /// Report `GroupGone` once group `pgid` is empty.
    WatchGroup {
        /// Service index.
        unit: usize,
        /// The group.
        pgid: Pid,
    },
    /// Report `Timer { unit, token }` after `after`.
    SetTimer {
        /// Service index.
        unit: usize,
        /// Token to report.
        token: u64,
        /// Delay.
        after: Duration,
    },
    /// Report `DrainDeadline` after this delay.
    SetDrainDeadline(Duration),
    /// Report `KillDeadline` after this delay.
    SetKillDeadline(Duration),
    /// Publish this state change of service `unit`.
    Publish(usize, StateChange),
    /// Start these probes of service `unit` for run `run`.
    StartProbes {
        /// Service index.
        unit: usize,
        /// The run (its start count); results carry it back.
        run: u64,
        /// Which probes.
        kinds: Vec<ProbeKind>,
    },
    /// Stop every probe of service `unit`.
    StopProbes(usize),
    /// Everything is over: exit with this code.
    Exit(i32),
}

/// How long drover waits for process groups to empty after sending SIGKILL to all of them.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a service ended for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Its policy does not restart it; its last run ended so.
    Completed(ExitStatus),
    /// It used up `max_retries`.
    Failed(ExitStatus),
    /// A dependency failed for good; it never started.
    Blocked,
}

impl Outcome {
    fn code(self) -> i32 {
        match self {
            Outcome::Completed(status) | Outcome::Failed(status) => status.code(),
            Outcome::Blocked => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Keeping services alive.
    Supervising,
    /// Stopping everything in reverse dependency order; `killing` once SIGKILL is the answer.
    Draining { killing: bool },
    /// `Exit` has been returned.
    Done,
}

struct Unit {
    name: Arc<str>,
    spec: Arc<Service>,
    state: State,
    reason: String,
    /// Main process, while it runs.
    pid: Option<Pid>,
    /// Its process group, while it may have members.
    pgid: Option<Pid>,
    spawning: bool,
    started_at: Option<Instant>,
    tracker: RestartTracker,
    /// Current timer token; bumping it cancels the pending timer.
    token: u64,
    starts: u64,
    restarts: u64,
    last_exit: Option<ExitStatus>,
    backoff: Option<Duration>,
    ever_started: bool,
    ever_succeeded: bool,
    outcome: Option<Outcome>,
    /// The stop signal went to its group; `true` once SIGKILL followed.
    stop_sent: Option<bool>,
    /// Why a probe or the watchdog is stopping the current run (`liveness probe failed`): the
    /// run counts as a failure.
    probe_failure: Option<RestartReason>,
    /// The last sd_notify `STATUS=`.
    status: Option<String>,
    /// Some probe of the current run has been started and not stopped.
    probing: bool,
    restarts_by_reason: RestartCounts,
    exits: ExitCounts,
    /// The startup probe of the current run has passed (or there is none).
    startup_passed: bool,
    /// A reload changed its process: the spec its next run starts with, once the current one
    /// has stopped.
    next_spec: Option<Arc<Service>>,
    /// A reload removed it: it is stopped and then forgotten; never restarted.
    retired: bool,
    /// Removed with it by the same reload and depending on it: they stop first.
    retired_dependents: Vec<usize>,
}

impl Unit {
    fn new(spec: Service) -> Unit {
        Unit {
            name: Arc::from(spec.name.as_str()),
            spec: Arc::new(spec),
            state: State::Pending,
            reason: "waiting to start".into(),
            pid: None,
            pgid: None,
            spawning: false,
            started_at: None,
            tracker: RestartTracker::default(),
            token: 0,
            starts: 0,
            restarts: 0,
            last_exit: None,
            backoff: None,
            ever_started: false,
            ever_succeeded: false,
            outcome: None,
            stop_sent: None,
            probe_failure: None,
            status: None,
            probing: false,
            restarts_by_reason: RestartCounts::default(),
            exits: ExitCounts::default(),
            startup_passed: false,
            next_spec: None,
            retired: false,
            retired_dependents: Vec::new(),
        }
    }

    fn active(&self) -> bool {
        self.spawning || self.pid.is_some() || self.pgid.is_some()
    }

    /// The spec its next run will have.
    fn effective_spec(&self) -> &Arc<Service> {
        self.next_spec.as_ref().unwrap_or(&self.spec)
    }
}

/// The state machine of every service of a manifest.
pub(crate) struct Core {
    units: Vec<Unit>,
    /// `dependents[i]`: the services that depend on service `i`.
    dependents: Vec<Vec<usize>>,
    /// `dependencies[i]`: service index and condition of each `depends_on` entry of `i`.
    dependencies: Vec<Vec<(usize, Condition)>>,
    shutdown_timeout: Duration,
    phase: Phase,
    /// A drain needed SIGKILL or ran out of time: its exit code is 1.
    forced: bool,
    /// Exit code chosen by an `on_exit: shutdown` service.
    exit_code: Option<i32>,
    rng: u64,
    /// The next published change ends a run drover stopped on purpose
    /// ([`StateChange::requested`]).
    ending_on_request: bool,
}

impl Core {
    /// A state machine for `services` (a checked manifest: every dependency exists). `seed`
    /// feeds the backoff jitter.
    pub(crate) fn new(
        services: impl IntoIterator<Item = Service>,
        shutdown_timeout: Duration,
        seed: u64,
    ) -> Core {
        let mut core = Core {
            units: services.into_iter().map(Unit::new).collect(),
            dependents: Vec::new(),
            dependencies: Vec::new(),
            shutdown_timeout,
            phase: Phase::Supervising,
            forced: false,
            exit_code: None,
            rng: seed | 1,
            ending_on_request: false,
        };
        core.rebuild_graph();
        core
    }

    /// Computes `dependents` and `dependencies` over the services of the manifest (removed
    /// ones have none), from the specs their next runs start with.
    fn rebuild_graph(&mut self) {
        let units = &self.units;
        let by_name: HashMap<&str, usize> = units
            .iter()
            .enumerate()
            .filter(|(_, u)| !u.retired)
            .map(|(i, u)| (&*u.name, i))
            .collect();
        let index = |name: &str| by_name.get(name).copied();
        let mut dependents = vec![Vec::new(); units.len()];
        let mut dependencies = vec![Vec::new(); units.len()];
        for (i, unit) in units.iter().enumerate() {
            if unit.retired {
                continue;
            }
            for dependency in &unit.effective_spec().depends_on {
                // The spec crate has checked that every dependency exists.
                if let Some(d) = index(&dependency.service) {
                    dependents[d].push(i);
                    dependencies[i].push((d, dependency.condition));
                }
            }
        }
        self.dependents = dependents;
        self.dependencies = dependencies;
    }

    /// Number of services.
    pub(crate) fn len(&self) -> usize {
        self.units.len()
    }

    /// The spec of service `unit`.
    pub(crate) fn spec(&self, unit: usize) -> &Arc<Service> {
        &self.units[unit].spec
    }

    /// The spec service `unit`'s next run starts with (after a reload that changed its
    /// process, not the running one's).
    pub(crate) fn next_spec(&self, unit: usize) -> &Arc<Service> {
        self.units[unit].effective_spec()
    }

    /// Whether the supervisor still keeps services alive (not draining, not done): a reload
    /// applies only then.
    pub(crate) fn is_supervising(&self) -> bool {
        self.phase == Phase::Supervising
    }

    /// Whether a reload removed service `unit` (it may still be stopping).
    pub(crate) fn is_removed(&self, unit: usize) -> bool {
        self.units[unit].retired
    }

    /// Whether a reload removed service `unit` and it has stopped: it is gone.
    pub(crate) fn is_gone(&self, unit: usize) -> bool {
        let u = &self.units[unit];
        u.retired && !u.active()
    }

    /// Applies the services of a new manifest (checked, as every manifest): adds the new ones,
    /// replaces the process of those whose process keys changed, updates the others in place,
    /// stops and forgets the removed ones, and never touches an unchanged one. `None` while
    /// draining: a reload then changes nothing.
    pub(crate) fn reload(
        &mut self,
        services: Vec<Service>,
        shutdown_timeout: Duration,
        now: Instant,
    ) -> Option<(Plan, Vec<Action>)> {
        if self.phase != Phase::Supervising {
            return None;
        }
        let mut out = Vec::new();
        self.shutdown_timeout = shutdown_timeout;
        let live: Vec<usize> = (0..self.units.len())
            .filter(|&u| !self.units[u].retired)
            .collect();
        let plan = plan_services(
            live.iter().map(|&u| &**self.units[u].effective_spec()),
            services.iter(),
        );
        let removed: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&u| {
                plan.removed
                    .iter()
                    .any(|name| **name == *self.units[u].name)
            })
            .collect();
        let live_by_name: HashMap<Arc<str>, usize> = live
            .iter()
            .map(|&u| (self.units[u].name.clone(), u))
            .collect();
        for service in services {
            if let Some(&unit) = live_by_name.get(service.name.as_str()) {
                self.update(unit, service, &mut out);
            } else if let Some(unit) = (0..self.units.len()).find(|&u| {
                self.units[u].retired
                    && self.units[u].active()
                    && *self.units[u].name == *service.name
            }) {
                // Removed by an earlier reload and still stopping: it is the same service again.
                self.readd(unit, service, &mut out);
            } else {
                self.units.push(Unit::new(service));
            }
        }
        // A service blocked by a dependency that failed for good gets another chance: the
        // dependency may have been fixed (or removed) by this reload.
        let mut unblocked = Vec::new();
        for (unit, u) in self.units.iter_mut().enumerate() {
            if !u.retired && u.outcome == Some(Outcome::Blocked) {
                u.outcome = None;
                unblocked.push(unit);
            }
        }
        for &unit in &removed {
            let name = self.units[unit].name.clone();
            let dependents = removed
                .iter()
                .copied()
                .filter(|&r| {
                    self.units[r]
                        .spec
                        .depends_on
                        .iter()
                        .any(|d| *d.service == *name)
                })
                .collect();
            self.retire(unit, dependents, &mut out);
        }
        self.rebuild_graph();
        self.schedule(now, &mut out);
        for unit in unblocked {
            let u = &self.units[unit];
            if u.state == State::Pending && u.outcome.is_none() && !u.spawning {
                self.set_state(
                    unit,
                    State::Pending,
                    "waiting to start".into(),
                    None,
                    &mut out,
                );
            }
        }
        Some((plan, out))
    }

    /// A service that stays in the manifest, with its new spec.
    fn update(&mut self, unit: usize, new: Service, out: &mut Vec<Action>) {
        let change = compare(self.units[unit].effective_spec(), &new);
        let new = Arc::new(new);
        let u = &mut self.units[unit];
        match change {
            ServiceChange::Unchanged => {}
            ServiceChange::InPlace { .. } if u.next_spec.is_some() => u.next_spec = Some(new),
            ServiceChange::InPlace { probes } => {
                u.spec = new;
                if probes && u.pid.is_some() && u.stop_sent.is_none() {
                    self.restart_probes(unit, out);
                }
            }
            ServiceChange::Restart if u.active() => {
                u.next_spec = Some(new);
                if u.pid.is_some() && u.stop_sent.is_none() {
                    self.stop_run(unit, "manifest changed", out);
                }
                // Being spawned: stopped as soon as it is (`on_spawned`); being stopped: it
                // restarts once stopped (`finish_run`).
            }
            ServiceChange::Restart => {
                // Not running (waiting for a dependency or a restart, or ended): the new spec
                // starts afresh as soon as its dependencies allow.
                u.spec = new;
                u.token += 1;
                u.tracker = RestartTracker::default();
                u.outcome = None;
                u.backoff = None;
                // Its dependents wait for the new spec's run, not the old one's.
                u.ever_started = false;
                u.ever_succeeded = false;
                self.set_state(
                    unit,
                    State::Pending,
                    "manifest changed; waiting to start".into(),
                    None,
                    out,
                );
            }
        }
    }

    /// A service removed by an earlier reload, still stopping, that the new manifest has again.
    fn readd(&mut self, unit: usize, new: Service, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        u.retired = false;
        u.retired_dependents.clear();
        if u.stop_sent.is_some() || u.spawning {
            // Its run is ending: the next one starts with the new spec.
            u.next_spec = Some(Arc::new(new));
        } else {
            self.update(unit, new, out);
        }
    }

    /// A service the new manifest removed: stopped (after `dependents`, removed with it), then
    /// forgotten.
    fn retire(&mut self, unit: usize, dependents: Vec<usize>, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        u.retired = true;
        u.next_spec = None;
        u.retired_dependents = dependents;
        if !u.active() {
            u.token += 1;
            self.set_state(
                unit,
                State::Exited,
                "removed from the manifest".into(),
                None,
                out,
            );
        }
        // A running one is stopped by `stop_removed`, in reverse dependency order.
    }

    /// Stops each removed service whose removed dependents have stopped.
    fn stop_removed(&mut self, out: &mut Vec<Action>) {
        for unit in 0..self.units.len() {
            let u = &self.units[unit];
            if !u.retired || u.pid.is_none() || u.stop_sent.is_some() {
                continue;
            }
            if u.retired_dependents.iter().any(|&d| self.units[d].active()) {
                continue;
            }
            self.stop_run(unit, "removed from the manifest", out);
        }
    }

    /// Stops the current run: its probes, then its group; `why` starts the reason.
    fn stop_run(&mut self, unit: usize, why: &str, out: &mut Vec<Action>) {
        self.stop_probes(unit, out);
        self.send_stop(unit, out);
        let signal = self.units[unit].spec.stop.signal;
        self.set_state(
            unit,
            State::Stopping,
            format!("{why}; stopping with {}", signal.as_str()),
            None,
            out,
        );
    }

    /// Restarts the probes of the running process after its probes changed.
    fn restart_probes(&mut self, unit: usize, out: &mut Vec<Action>) {
        self.stop_probes(unit, out);
        let u = &self.units[unit];
        if u.startup_passed || u.spec.startup_probe.is_none() {
            self.start_main_probes(unit, out);
        } else {
            self.units[unit].probing = true;
            out.push(Action::StartProbes {
                unit,
                run: self.units[unit].starts,
                kinds: vec![ProbeKind::Startup],
            });
        }
    }

    /// The process group of service `unit`'s current run, while it may have members.
    pub(crate) fn group(&self, unit: usize) -> Option<Pid> {
        self.units[unit].pgid
    }

    /// What is known about service `unit` now.
    pub(crate) fn snapshot(&self, unit: usize) -> ServiceSnapshot {
        let u = &self.units[unit];
        ServiceSnapshot {
            name: u.name.clone(),
            state: u.state,
            reason: u.reason.clone(),
            pid: u.pid.map(pid_u32),
            starts: u.starts,
            restarts: u.restarts,
            last_exit: u.last_exit,
            backoff: u.backoff,
            status: u.status.clone(),
            restarts_by_reason: u.restarts_by_reason,
            exits: u.exits,
            started_at: u.started_at,
            probes: [
                (ProbeKind::Startup, u.spec.startup_probe.is_some()),
                (ProbeKind::Readiness, u.spec.readiness_probe.is_some()),
                (ProbeKind::Liveness, u.spec.liveness_probe.is_some()),
            ]
            .into_iter()
            .filter_map(|(kind, has)| has.then_some(kind))
            .collect(),
        }
    }

    /// The first actions: start every service whose dependencies allow it.
    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.schedule(now, &mut out);
        out
    }

    /// Applies one input; returns what to do.
    pub(crate) fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Spawned { unit, pid } => self.on_spawned(unit, pid, now, &mut out),
            Input::SpawnFailed {
                unit,
                message,
                code,
            } => {
                let u = &mut self.units[unit];
                u.spawning = false;
                u.started_at = Some(now);
                u.last_exit = Some(ExitStatus::Exited(code));
                u.exits.failure += 1;
                self.finish_run(
                    unit,
                    Some(format!("cannot start: {message}")),
                    now,
                    &mut out,
                );
            }
            Input::Exited {
                unit,
                pid,
                status,
                group_alive,
            } => self.on_exited(unit, pid, status, group_alive, now, &mut out),
            Input::GroupGone { unit } => {
                let u = &mut self.units[unit];
                if u.pid.is_none() && u.pgid.is_some() {
                    u.pgid = None;
                    self.finish_run(unit, None, now, &mut out);
                }
            }
            Input::Timer { unit, token } => self.on_timer(unit, token, &mut out),
            Input::DrainDeadline => {
                if let Phase::Draining { killing: false } = self.phase {
                    self.forced = true;
                    self.kill_all("settings.shutdown_timeout ran out", now, &mut out);
                }
            }
            Input::KillDeadline => {
                if self.phase != Phase::Done {
                    for unit in 0..self.units.len() {
                        if self.units[unit].active() {
                            let reason = format!(
                                "process group still not empty {} after SIGKILL; giving up on it",
                                humantime::format_duration(KILL_WAIT)
                            );
                            self.set_state(unit, State::Stopping, reason, None, &mut out);
                        }
                    }
                    self.phase = Phase::Done;
                    out.push(Action::Exit(self.exit_code.unwrap_or(1)));
                }
            }
            Input::Shutdown => match self.phase {
                Phase::Supervising => {
                    self.begin_drain(None, now, &mut out);
                }
                Phase::Draining { killing: false } => {
                    self.kill_all("told to stop a second time", now, &mut out)
                }
                _ => {}
            },
            Input::Kill => {
                if self.phase != Phase::Done {
                    self.kill_all("told to stop at once", now, &mut out);
                }
            }
            Input::Probe {
                unit,
                run,
                kind,
                change,
                message,
            } => self.on_probe(unit, run, kind, change, &message, now, &mut out),
            Input::Status { unit, text } => self.units[unit].status = Some(text),
            Input::Watchdog { unit, run, message } => {
                let u = &self.units[unit];
                if u.starts == run && u.pid.is_some() && u.stop_sent.is_none() {
                    self.stop_failed_run(unit, RestartReason::Watchdog, &message, &mut out);
                }
            }
        }
        out
    }

    fn on_spawned(&mut self, unit: usize, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        u.spawning = false;
        u.pid = Some(pid);
        u.pgid = Some(pid);
        u.started_at = Some(now);
        u.starts += 1;
        u.ever_started = true;
        u.backoff = None;
        u.startup_passed = false;
        if self.phase == Phase::Supervising && (u.next_spec.is_some() || u.retired) {
            // A reload changed or removed it while it was being spawned.
            self.set_state(unit, State::Running, "started".into(), None, out);
            if self.units[unit].retired {
                self.schedule(now, out);
            } else {
                self.stop_run(unit, "manifest changed", out);
            }
            return;
        }
        let supervising = self.phase == Phase::Supervising;
        let spec = &self.units[unit].spec;
        let reason = if !supervising {
            "started"
        } else if spec.startup_probe.is_some() {
            "started; waiting for the startup probe"
        } else if spec.readiness_probe.is_some() {
            "started; waiting for the readiness probe"
        } else {
            "started"
        };
        self.set_state(unit, State::Running, reason.into(), None, out);
        if supervising {
            let u = &self.units[unit];
            if u.spec.startup_probe.is_some() {
                self.units[unit].probing = true;
                let u = &self.units[unit];
                out.push(Action::StartProbes {
                    unit,
                    run: u.starts,
                    kinds: vec![ProbeKind::Startup],
                });
            } else {
                self.start_main_probes(unit, out);
            }
        }
        self.schedule(now, out);
    }

    /// Starts the readiness and liveness probes; without a readiness probe, ready at once.
    fn start_main_probes(&mut self, unit: usize, out: &mut Vec<Action>) {
        self.units[unit].startup_passed = true;
        let u = &self.units[unit];
        let mut kinds = Vec::new();
        if u.spec.readiness_probe.is_some() {
            kinds.push(ProbeKind::Readiness);
        }
        if u.spec.liveness_probe.is_some() {
            kinds.push(ProbeKind::Liveness);
        }
        let ready_now = u.spec.readiness_probe.is_none();
        if !kinds.is_empty() {
            self.units[unit].probing = true;
            let u = &self.units[unit];
            out.push(Action::StartProbes {
                unit,
                run: u.starts,
                kinds,
            });
        }
        if ready_now {
            self.set_state(
                unit,
                State::Ready,
                "ready (no readiness probe)".into(),
                None,
                out,
            );
        }
    }

    #[allow(clippy::too_many_arguments)] // one input's fields, taken apart once
    fn on_probe(
        &mut self,
        unit: usize,
        run: u64,
        kind: ProbeKind,
        change: Change,
        message: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let u = &self.units[unit];
        // Results of an earlier run, or of a run being stopped, change nothing.
        if u.starts != run || u.pid.is_none() || u.stop_sent.is_some() {
            return;
        }
        match (kind, change) {
            (ProbeKind::Startup, Change::Passed) => {
                if self.units[unit].spec.readiness_probe.is_some() {
                    self.set_state(
                        unit,
                        State::Running,
                        format!(
                            "startup probe passed ({message}); waiting for the readiness probe"
                        ),
                        None,
                        out,
                    );
                }
                self.start_main_probes(unit, out);
                self.schedule(now, out);
            }
            (ProbeKind::Readiness, Change::Passed) => {
                self.set_state(
                    unit,
                    State::Ready,
                    format!("readiness probe passed ({message})"),
                    None,
                    out,
                );
                self.schedule(now, out);
            }
            (ProbeKind::Readiness, Change::Failed) => {
                let reason = if self.units[unit].state == State::Ready {
                    format!("not ready: readiness probe failed ({message})")
                } else {
                    format!("started; readiness probe failing ({message})")
                };
                self.set_state(unit, State::Running, reason, None, out);
            }
            (ProbeKind::Liveness, Change::Failed) => {
                self.stop_failed_run(unit, RestartReason::Liveness, message, out)
            }
            (ProbeKind::Startup, Change::Failed) => {
                self.stop_failed_run(unit, RestartReason::Startup, message, out)
            }
            (ProbeKind::Liveness, Change::Passed) => {}
        }
    }

    fn stop_probes(&mut self, unit: usize, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.units[unit].probing) {
            out.push(Action::StopProbes(unit));
        }
    }

    /// A liveness or startup probe, or the watchdog, failed: stop the run as a failure; the
    /// restart policy decides once its group is empty.
    fn stop_failed_run(
        &mut self,
        unit: usize,
        cause: RestartReason,
        message: &str,
        out: &mut Vec<Action>,
    ) {
        if self.phase != Phase::Supervising {
            return;
        }
        self.units[unit].probe_failure = Some(cause);
        self.stop_run(unit, &format!("{} ({message})", failure_text(cause)), out);
    }

    fn on_exited(
        &mut self,
        unit: usize,
        pid: Pid,
        status: ExitStatus,
        group_alive: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let u = &mut self.units[unit];
        if u.pid != Some(pid) {
            return;
        }
        u.pid = None;
        u.last_exit = Some(status);
        match status {
            ExitStatus::Exited(0) => u.exits.success += 1,
            ExitStatus::Exited(_) => u.exits.failure += 1,
            ExitStatus::Signaled(_) => u.exits.signal += 1,
        }
        self.stop_probes(unit, out);
        let u = &mut self.units[unit];
        if status.success() {
            u.ever_succeeded = true;
        }
        if !group_alive {
            u.pgid = None;
            self.finish_run(unit, None, now, out);
            return;
        }
        // Nothing of an old run may outlive it: stop the rest of its group first.
        let pgid = u.pgid.unwrap_or(pid);
        u.pgid = Some(pgid);
        out.push(Action::WatchGroup { unit, pgid });
        if u.stop_sent.is_none() {
            self.send_stop(unit, out);
        }
        self.set_state(
            unit,
            State::Stopping,
            format!("exited with {status}; stopping the rest of its process group"),
            Some(status),
            out,
        );
    }

    fn on_timer(&mut self, unit: usize, token: u64, out: &mut Vec<Action>) {
        let u = &self.units[unit];
        if token != u.token {
            return;
        }
        if u.stop_sent == Some(false) && u.pgid.is_some() {
            let reason = format!(
                "stop.timeout ({}) ran out; sending SIGKILL",
                humantime::format_duration(u.spec.stop.timeout)
            );
            self.send_kill(unit, out);
            self.set_state(unit, State::Stopping, reason, None, out);
        } else if u.state == State::Backoff && self.phase == Phase::Supervising {
            self.spawn(unit, out);
        }
    }

    /// The main process has exited and its group is empty (or it never started): decide.
    fn finish_run(
        &mut self,
        unit: usize,
        spawn_error: Option<String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let u = &mut self.units[unit];
        u.token += 1;
        u.stop_sent = None;
        let probe_failure = u.probe_failure.take();
        let status = u.last_exit.unwrap_or(ExitStatus::Exited(1));
        let mut ended = spawn_error.unwrap_or_else(|| format!("exited with {status}"));
        if let Some(cause) = probe_failure {
            ended = format!("{}; {ended}", failure_text(cause));
        }
        // (A removed service has no next spec: `retire` drops it.)
        if self.phase == Phase::Supervising
            && let Some(spec) = u.next_spec.take()
        {
            u.spec = spec;
            u.tracker = RestartTracker::default();
            u.outcome = None;
            u.ever_started = false;
            u.ever_succeeded = false;
            u.restarts += 1;
            u.restarts_by_reason.count(RestartReason::Reload);
            self.ending_on_request = true;
            self.publish_state(
                unit,
                State::Pending,
                format!("{ended}; starting with the new manifest"),
                Some(status),
                Some(RestartReason::Reload),
                out,
            );
            self.schedule(now, out);
            return;
        }
        if self.phase != Phase::Supervising || u.retired {
            let why = if u.retired {
                "removed from the manifest"
            } else {
                "stopped"
            };
            self.ending_on_request = true;
            self.set_state(
                unit,
                State::Exited,
                format!("{why}; {ended}"),
                Some(status),
                out,
            );
            self.schedule(now, out);
            return;
        }
        let ran_for = u
            .started_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        // A run stopped by a failed liveness or startup probe failed, whatever its exit code.
        let end = if status.success() && probe_failure.is_none() {
            RunEnd::Success
        } else {
            RunEnd::Failure
        };
        let random = next_random(&mut self.rng);
        let u = &mut self.units[unit];
        match u.tracker.on_end(&u.spec.restart, end, ran_for, random) {
            Decision::Restart(delay) => {
                u.restarts += 1;
                let reason = match probe_failure {
                    Some(cause) => cause,
                    None if matches!(status, ExitStatus::Signaled(_)) => RestartReason::Signal,
                    None => RestartReason::Exit,
                };
                u.restarts_by_reason.count(reason);
                u.backoff = Some(delay);
                u.token += 1;
                let token = u.token;
                let text = format!(
                    "{ended}; restarting in {}",
                    humantime::format_duration(round_ms(delay))
                );
                self.publish_state(unit, State::Backoff, text, Some(status), Some(reason), out);
                if delay.is_zero() {
                    self.spawn(unit, out);
                } else {
                    out.push(Action::SetTimer {
                        unit,
                        token,
                        after: delay,
                    });
                }
            }
            Decision::Ended if probe_failure.is_some() => {
                // `never`: stopped by its probe, it ends failed.
                u.outcome = Some(Outcome::Failed(status));
                self.set_state(unit, State::Failed, ended, Some(status), out);
                self.ended_for_good(unit, now, out);
            }
            Decision::Ended => {
                u.outcome = Some(Outcome::Completed(status));
                self.set_state(unit, State::Exited, ended, Some(status), out);
                self.ended_for_good(unit, now, out);
            }
            Decision::GaveUp => {
                u.outcome = Some(Outcome::Failed(status));
                let reason = format!(
                    "{ended}; gave up after {} restarts (restart.max_retries)",
                    u.tracker.consecutive()
                );
                self.set_state(unit, State::Failed, reason, Some(status), out);
                self.ended_for_good(unit, now, out);
            }
        }
        self.schedule(now, out);
    }

    fn ended_for_good(&mut self, unit: usize, now: Instant, out: &mut Vec<Action>) {
        let u = &self.units[unit];
        if u.spec.on_exit == OnExit::Shutdown
            && let Some(outcome) = u.outcome
        {
            self.begin_drain(Some(outcome.code()), now, out);
        }
    }

    fn begin_drain(&mut self, exit_code: Option<i32>, now: Instant, out: &mut Vec<Action>) {
        if self.phase != Phase::Supervising {
            return;
        }
        self.phase = Phase::Draining { killing: false };
        self.exit_code = exit_code;
        out.push(Action::SetDrainDeadline(self.shutdown_timeout));
        self.schedule(now, out);
    }

    fn kill_all(&mut self, why: &str, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Done | Phase::Draining { killing: true }) {
            return;
        }
        self.phase = Phase::Draining { killing: true };
        self.forced = true;
        out.push(Action::SetKillDeadline(KILL_WAIT));
        for unit in 0..self.units.len() {
            let u = &self.units[unit];
            if u.pgid.is_some() && u.stop_sent != Some(true) {
                self.send_kill(unit, out);
                self.set_state(
                    unit,
                    State::Stopping,
                    format!("{why}; sending SIGKILL"),
                    None,
                    out,
                );
            }
        }
        self.schedule(now, out);
    }

    fn send_stop(&mut self, unit: usize, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        let Some(pgid) = u.pgid else { return };
        u.stop_sent = Some(false);
        u.token += 1;
        out.push(Action::SignalGroup {
            unit,
            pgid,
            signal: u.spec.stop.signal,
        });
        out.push(Action::SetTimer {
            unit,
            token: u.token,
            after: u.spec.stop.timeout,
        });
    }

    fn send_kill(&mut self, unit: usize, out: &mut Vec<Action>) {
        let u = &mut self.units[unit];
        let Some(pgid) = u.pgid else { return };
        u.stop_sent = Some(true);
        u.token += 1;
        if self.phase != Phase::Supervising {
            self.forced = true;
        }
        out.push(Action::SignalGroup {
            unit,
            pgid,
            signal: Signal::SIGKILL,
        });
        out.push(Action::WatchGroup { unit, pgid });
    }

    fn spawn(&mut self, unit: usize, out: &mut Vec<Action>) {
        self.units[unit].spawning = true;
        self.set_state(unit, State::Starting, "starting".into(), None, out);
        out.push(Action::Spawn(unit));
    }

    /// Starts what may start, blocks what never will, stops what a drain may stop now, and
    /// decides when everything is over.
    fn schedule(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Supervising => self.schedule_starts(now, out),
            Phase::Draining { killing } => self.schedule_stops(killing, out),
            Phase::Done => {}
        }
    }

    fn schedule_starts(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.stop_removed(out);
        loop {
            let mut changed = false;
            for unit in 0..self.units.len() {
                let u = &self.units[unit];
                if u.state != State::Pending || u.outcome.is_some() || u.spawning {
                    continue;
                }
                match self.dependencies_status(unit) {
                    Gate::Open => {
                        self.spawn(unit, out);
                        changed = true;
                    }
                    Gate::Never(reason) => {
                        self.units[unit].outcome = Some(Outcome::Blocked);
                        self.set_state(unit, State::Pending, reason, None, out);
                        self.ended_for_good(unit, now, out);
                        if self.phase != Phase::Supervising {
                            return;
                        }
                        changed = true;
                    }
                    Gate::Wait => {}
                }
            }
            if !changed {
                break;
            }
        }
        let ended = |u: &Unit| {
            if u.retired {
                !u.active()
            } else {
                u.outcome.is_some()
            }
        };
        if self.units.iter().all(ended) {
            let all_succeeded = self
                .units
                .iter()
                .filter(|u| !u.retired)
                .all(|u| matches!(u.outcome, Some(Outcome::Completed(s)) if s.success()));
            self.phase = Phase::Done;
            out.push(Action::Exit(if all_succeeded { 0 } else { 1 }));
        }
    }

    fn schedule_stops(&mut self, killing: bool, out: &mut Vec<Action>) {
        for unit in 0..self.units.len() {
            let u = &self.units[unit];
            if u.state == State::Backoff {
                self.units[unit].token += 1;
                self.set_state(
                    unit,
                    State::Exited,
                    "stopped while waiting to restart".into(),
                    None,
                    out,
                );
                continue;
            }
            if !u.active() || u.spawning || u.stop_sent.is_some() {
                continue;
            }
            if killing {
                self.send_kill(unit, out);
                self.set_state(unit, State::Stopping, "sending SIGKILL".into(), None, out);
                continue;
            }
            // Reverse dependency order: only once everything that depends on it, directly or
            // through others, has stopped.
            if self.has_active_dependent(unit) {
                continue;
            }
            let signal = u.spec.stop.signal;
            self.send_stop(unit, out);
            self.set_state(
                unit,
                State::Stopping,
                format!("stopping with {}", signal.as_str()),
                None,
                out,
            );
        }
        if self.units.iter().all(|u| !u.active()) {
            self.phase = Phase::Done;
            let code = self.exit_code.unwrap_or(if self.forced { 1 } else { 0 });
            out.push(Action::Exit(code));
        }
    }

    fn has_active_dependent(&self, unit: usize) -> bool {
        let mut seen = vec![false; self.units.len()];
        let mut stack = self.dependents[unit].clone();
        while let Some(d) = stack.pop() {
            if std::mem::replace(&mut seen[d], true) {
                continue;
            }
            if self.units[d].active() {
                return true;
            }
            stack.extend_from_slice(&self.dependents[d]);
        }
        false
    }

    fn dependencies_status(&self, unit: usize) -> Gate {
        let mut gate = Gate::Open;
        for &(d, condition) in &self.dependencies[unit] {
            let dep = &self.units[d];
            let ended = dep.outcome.is_some();
            let met = match condition {
                Condition::Started => dep.ever_started,
                Condition::Ready => {
                    dep.state == State::Ready
                        || matches!(dep.outcome, Some(Outcome::Completed(s)) if s.success())
                }
                Condition::CompletedSuccessfully => dep.ever_succeeded,
            };
            if met {
                continue;
            }
            if ended {
                let how = match dep.outcome {
                    Some(Outcome::Blocked) => "is blocked".to_string(),
                    Some(Outcome::Failed(_)) => "failed".to_string(),
                    _ => format!(
                        "ended with {}",
                        dep.last_exit.unwrap_or(ExitStatus::Exited(1))
                    ),
                };
                return Gate::Never(format!(
                    "blocked: dependency `{}` {how} before it was {}",
                    dep.name,
                    condition_word(condition)
                ));
            }
            gate = Gate::Wait;
        }
        gate
    }

    fn set_state(
        &mut self,
        unit: usize,
        to: State,
        reason: String,
        exit: Option<ExitStatus>,
        out: &mut Vec<Action>,
    ) {
        self.publish_state(unit, to, reason, exit, None, out);
    }

    /// [`Core::set_state`], naming the reason of a restart decided with it.
    fn publish_state(
        &mut self,
        unit: usize,
        to: State,
        reason: String,
        exit: Option<ExitStatus>,
        restart: Option<RestartReason>,
        out: &mut Vec<Action>,
    ) {
        let requested = std::mem::take(&mut self.ending_on_request);
        let u = &mut self.units[unit];
        if u.state == to && u.reason == reason {
            return;
        }
        let from = u.state;
        u.state = to;
        u.reason.clone_from(&reason);
        out.push(Action::Publish(
            unit,
            StateChange {
                service: u.name.clone(),
                from,
                to,
                pid: u.pid.or(u.pgid).map(pid_u32),
                exit,
                restart,
                requested,
                reason,
            },
        ));
    }
}

/// How a run stopped by a probe or the watchdog is described.
fn failure_text(cause: RestartReason) -> &'static str {
    match cause {
        RestartReason::Liveness => "liveness probe failed",
        RestartReason::Startup => "startup probe failed",
        _ => "watchdog expired",
    }
}

enum Gate {
    Open,
    Wait,
    Never(String),
}

fn condition_word(condition: Condition) -> &'static str {
    match condition {
        Condition::Started => "started",
        Condition::Ready => "ready",
        Condition::CompletedSuccessfully => "completed successfully",
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
