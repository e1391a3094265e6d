//! The inputs that move one service, and the restart decision: spawned, could not spawn,
//! exited, group emptied, timers, probe verdicts, the watchdog; once a run is over, the
//! restart policy decides between backoff, exited and failed (or the new spec of a reload).

use super::events::{HookKind, RestartReason};
use super::unit::{Ending, Hand, Milestones, Run, Stage, Stop, StopStep, Transition};
use super::{Action, Core, Phase, Pid, ServiceId, next_random, round_ms};
use crate::restart::{Decision, RestartTracker, RunEnd};
use crate::sys::ExitStatus;
use drover_probe::{Change, ProbeKind};
use drover_spec::model::OnExit;
use tokio::time::Instant;

impl Core {
    pub(super) fn on_spawned(
        &mut self,
        id: ServiceId,
        pid: Pid,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let supervising = self.phase == Phase::Supervising;
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        let hand = match u.stage {
            Stage::Starting { hand } => hand,
            _ => None,
        };
        u.started_at = Some(now);
        u.starts += 1;
        u.milestones.started = true;
        let run = Run {
            pid,
            ready: false,
            probing: false,
            startup_passed: false,
            post_start: false,
        };
        if supervising && let Some(hand) = hand {
            // Stopped by hand (or to restart with a dependency) while it was being spawned.
            u.enter(Stage::Up(run), Transition::new("started"), out);
            let why = match hand {
                Hand::Stop => "stopped by hand",
                Hand::Restart(_) => "a dependency restarted while it started",
            };
            u.stop(Some(why), None, Some(hand), out);
            return;
        }
        if supervising && (u.next_spec.is_some() || u.removal.is_some()) {
            // A reload changed or removed it while it was being spawned.
            u.enter(Stage::Up(run), Transition::new("started"), out);
            if u.removal.is_none() {
                u.stop(Some("manifest changed"), None, None, out);
                return;
            }
            // Removed: stopped once its removed dependents have (`stop_removed`).
            self.schedule(now, out);
            return;
        }
        let post_start = supervising && !u.spec.post_start.is_empty();
        let reason = if !supervising {
            "started"
        } else if post_start {
            "started; running post_start"
        } else {
            waiting_for_probes(u)
        };
        u.enter(
            Stage::Up(Run { post_start, ..run }),
            Transition::new(reason),
            out,
        );
        if post_start {
            out.push(Action::RunHooks {
                unit: id,
                run: u.starts,
                kind: HookKind::PostStart,
                deadline: None,
            });
        } else if supervising {
            u.start_first_probes(out);
        }
        self.schedule(now, out);
    }

    /// The hooks of run `run` are over: after `post_start`, the probes start (or the run fails);
    /// after `pre_stop`, the stop signal goes.
    pub(super) fn on_hooks_done(
        &mut self,
        id: ServiceId,
        run: u64,
        kind: HookKind,
        result: Result<(), String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let supervising = self.phase == Phase::Supervising;
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        if u.starts != run {
            return;
        }
        match (kind, &mut u.stage) {
            (HookKind::PostStart, Stage::Up(up)) if up.post_start => {
                up.post_start = false;
                if !supervising {
                    return;
                }
                match result {
                    Ok(()) => {
                        let reason = format!("post_start done; {}", waiting_for_probes(u));
                        u.explain(Transition::new(reason), out);
                        u.start_first_probes(out);
                        self.schedule(now, out);
                    }
                    Err(why) => self.stop_failed_run(id, RestartReason::PostStart, &why, out),
                }
            }
            (HookKind::PreStop, Stage::Stopping(stop)) if stop.step == StopStep::PreStop => {
                // `stop.timeout` keeps counting from the hooks' start.
                stop.step = StopStep::Signalled;
                let pgid = stop.pgid;
                u.send_stop_signal(pgid, out);
                let done = match result {
                    Ok(()) => "pre_stop done".to_string(),
                    Err(why) => format!("pre_stop failed ({why})"),
                };
                let reason = format!("{done}; {}", u.stopping_with());
                u.explain(Transition::new(reason), out);
            }
            _ => {}
        }
    }

    pub(super) fn on_spawn_failed(
        &mut self,
        id: ServiceId,
        message: &str,
        code: i32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        let hand = match u.stage {
            Stage::Starting { hand } => hand,
            _ => None,
        };
        let status = ExitStatus::Exited(code);
        u.started_at = Some(now);
        u.last_exit = Some(status);
        u.exits.count(status);
        let ended = format!("cannot start: {message}");
        let ending = Ending {
            failure: None,
            hand,
        };
        self.finish_run(id, Some(ended), ending, now, out);
    }

    pub(super) fn on_exited(
        &mut self,
        id: ServiceId,
        pid: Pid,
        status: ExitStatus,
        group_alive: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        if u.pid() != Some(pid) {
            return;
        }
        u.last_exit = Some(status);
        u.exits.count(status);
        if status.success() {
            u.milestones.succeeded = true;
        }
        u.stop_probes(out);
        u.stop_hooks(out);
        let (pgid, ending, stop_sent) = match &mut u.stage {
            Stage::Up(run) => (run.pid, Ending::default(), false),
            Stage::Stopping(stop) => {
                stop.pid = None;
                (stop.pgid, stop.ending(), stop.step == StopStep::Signalled)
            }
            _ => return,
        };
        if !group_alive {
            self.finish_run(id, None, ending, now, out);
            return;
        }
        // Nothing of an old run may outlive it: stop the rest of its group first.
        out.push(Action::WatchGroup { unit: id, pgid });
        let reason = format!("exited with {status}; stopping the rest of its process group");
        let change = Transition::new(reason).exit(status);
        let timeout = u.spec.stop.timeout;
        if stop_sent {
            u.explain(change, out);
        } else if let Stage::Stopping(stop) = &mut u.stage {
            // It ended while draining (or in `pre_stop`): the rest of its group gets the
            // signal now.
            stop.step = StopStep::Signalled;
            u.signal_stop(pgid, timeout, out);
            u.explain(change, out);
        } else {
            u.signal_stop(pgid, timeout, out);
            let stop = Stop {
                pid: None,
                pgid,
                step: StopStep::Signalled,
                killed: false,
                failure: None,
                hand: None,
            };
            u.enter(Stage::Stopping(stop), change, out);
        }
    }

    pub(super) fn on_group_gone(&mut self, id: ServiceId, now: Instant, out: &mut Vec<Action>) {
        let Some(u) = self.units.get(id) else { return };
        // While the main process lives, its exit ends the run.
        if let Stage::Stopping(stop @ Stop { pid: None, .. }) = &u.stage {
            let ending = stop.ending();
            self.finish_run(id, None, ending, now, out);
        }
    }

    pub(super) fn on_timer(&mut self, id: ServiceId, token: u64, out: &mut Vec<Action>) {
        let supervising = self.phase == Phase::Supervising;
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        if token != u.token {
            return;
        }
        match &mut u.stage {
            // `stop.drain` is over: now `pre_stop`, or the stop signal.
            Stage::Stopping(stop) if stop.step == StopStep::Draining => {
                let pgid = stop.pgid;
                let (step, reason) = u.after_drain(pgid, out);
                if let Stage::Stopping(stop) = &mut u.stage {
                    stop.step = step;
                }
                u.explain(Transition::new(reason), out);
            }
            // `stop.timeout` ran out in `pre_stop`: the hooks are killed, and the service
            // still gets its signal and a short grace (as Kubernetes gives 2 s).
            Stage::Stopping(stop) if stop.step == StopStep::PreStop => {
                let pgid = stop.pgid;
                u.stop_hooks(out);
                if let Stage::Stopping(stop) = &mut u.stage {
                    stop.step = StopStep::Signalled;
                }
                let grace = PRE_STOP_OVERRUN_GRACE.min(u.spec.stop.timeout);
                u.signal_stop(pgid, grace, out);
                let reason = format!(
                    "pre_stop still running when stop.timeout ({}) ran out; killed it; {}, SIGKILL in {}",
                    humantime::format_duration(u.spec.stop.timeout),
                    u.stopping_with(),
                    humantime::format_duration(grace)
                );
                u.explain(Transition::new(reason), out);
            }
            Stage::Stopping(stop) if !stop.killed => {
                let reason = format!(
                    "stop.timeout ({}) ran out; sending SIGKILL",
                    humantime::format_duration(u.spec.stop.timeout)
                );
                if u.kill(reason, out) && !supervising {
                    self.forced = true;
                }
            }
            Stage::Backoff { .. } if supervising => u.spawn(out),
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)] // one input's fields, taken apart once
    pub(super) fn on_probe(
        &mut self,
        id: ServiceId,
        run: u64,
        kind: ProbeKind,
        change: Change,
        message: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        // Results of an earlier run, or of a run being stopped, change nothing; nor do any
        // during a drain (a service marked not ready for a shutdown delay stays so).
        if !u.is_probed_run(run) || self.phase != Phase::Supervising {
            return;
        }
        match (kind, change) {
            (ProbeKind::Startup, Change::Passed) => {
                if u.spec.readiness_probe.is_some() {
                    let reason = format!(
                        "startup probe passed ({message}); waiting for the readiness probe"
                    );
                    u.set_ready(false, Transition::new(reason), out);
                }
                u.start_main_probes(out);
                self.schedule(now, out);
            }
            (ProbeKind::Readiness, Change::Passed) => {
                let reason = format!("readiness probe passed ({message})");
                u.set_ready(true, Transition::new(reason), out);
                self.schedule(now, out);
            }
            (ProbeKind::Readiness, Change::Failed) => {
                let change = if u.is_ready() {
                    Transition::new(format!("not ready: readiness probe failed ({message})"))
                        .trouble()
                } else {
                    Transition::new(format!("started; readiness probe failing ({message})"))
                };
                u.set_ready(false, change, out);
            }
            (ProbeKind::Liveness, Change::Failed) => {
                self.stop_failed_run(id, RestartReason::Liveness, message, out)
            }
            (ProbeKind::Startup, Change::Failed) => {
                self.stop_failed_run(id, RestartReason::Startup, message, out)
            }
            (ProbeKind::Liveness, Change::Passed) => {}
        }
    }

    /// A liveness or startup probe, or the watchdog, failed: stop the run as a failure; the
    /// restart policy decides once its group is empty.
    pub(super) fn stop_failed_run(
        &mut self,
        id: ServiceId,
        cause: RestartReason,
        message: &str,
        out: &mut Vec<Action>,
    ) {
        if self.phase != Phase::Supervising {
            return;
        }
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        let why = format!("{} ({message})", failure_text(cause));
        u.stop(Some(&why), Some(cause), None, out);
    }

    /// The main process has exited and its group is empty (or it never started): decide.
    /// `ending`: the probe or watchdog that stopped the run, and what was asked by hand.
    fn finish_run(
        &mut self,
        id: ServiceId,
        spawn_error: Option<String>,
        ending: Ending,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Ending { failure, hand } = ending;
        let supervising = self.phase == Phase::Supervising;
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        u.token += 1;
        let status = u.last_exit.unwrap_or(ExitStatus::Exited(1));
        let mut ended = spawn_error.unwrap_or_else(|| format!("exited with {status}"));
        if let Some(cause) = failure {
            ended = format!("{}; {ended}", failure_text(cause));
        }
        if supervising && u.removal.is_none() && hand == Some(Hand::Stop) {
            // A spec a reload gave it meanwhile is the one its next start runs.
            if let Some(spec) = u.next_spec.take() {
                u.spec = spec;
                u.tracker = RestartTracker::default();
                u.milestones = Milestones::default();
            }
            let change = Transition::new(format!("stopped by hand; {ended}"))
                .exit(status)
                .requested();
            u.enter(Stage::Stopped, change, out);
            self.schedule(now, out);
            return;
        }
        // (A removed service has no next spec: `retire` drops it.)
        if supervising && let Some(spec) = u.next_spec.take() {
            u.spec = spec;
            u.tracker = RestartTracker::default();
            u.milestones = Milestones::default();
            u.restarts.count(RestartReason::Reload);
            let change = Transition::new(format!("{ended}; starting with the new manifest"))
                .exit(status)
                .restart(RestartReason::Reload)
                .requested();
            u.enter(Stage::Pending { blocked: false }, change, out);
            self.restart_dependents(id, out);
            self.schedule(now, out);
            return;
        }
        if !supervising || u.removal.is_some() {
            let why = if u.removal.is_some() {
                "removed from the manifest"
            } else {
                "stopped"
            };
            let change = Transition::new(format!("{why}; {ended}"))
                .exit(status)
                .requested();
            u.enter(Stage::Exited { completed: None }, change, out);
            self.forget_if_removed(id, out);
            self.schedule(now, out);
            return;
        }
        if let Some(Hand::Restart(reason)) = hand {
            u.tracker = RestartTracker::default();
            // Its dependents wait for the new run, not the old one's.
            u.milestones = Milestones::default();
            u.restarts.count(reason);
            let why = match reason {
                RestartReason::Dependency => "restarting with its dependency",
                _ => "restarting by hand",
            };
            let change = Transition::new(format!("{ended}; {why}"))
                .exit(status)
                .restart(reason)
                .requested();
            u.enter(Stage::Pending { blocked: false }, change, out);
            self.restart_dependents(id, out);
            self.schedule(now, out);
            return;
        }
        let ran_for = u
            .started_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        // A run stopped by a failed liveness or startup probe failed, whatever its exit code.
        let end = if status.success() && failure.is_none() {
            RunEnd::Success
        } else {
            RunEnd::Failure
        };
        let random = next_random(&mut self.rng);
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        match u.tracker.on_end(&u.spec.restart, end, ran_for, random) {
            Decision::Restart(delay) => {
                let reason = match failure {
                    Some(cause) => cause,
                    None if matches!(status, ExitStatus::Signaled(_)) => RestartReason::Signal,
                    None => RestartReason::Exit,
                };
                u.restarts.count(reason);
                // Its dependents (`restart: true` ones included) wait for the new run.
                u.milestones = Milestones::default();
                u.token += 1;
                let token = u.token;
                let text = format!(
                    "{ended}; restarting in {}",
                    humantime::format_duration(round_ms(delay))
                );
                let mut change = Transition::new(text).exit(status).restart(reason);
                if end == RunEnd::Failure {
                    change = change.trouble();
                }
                u.enter(Stage::Backoff { delay }, change, out);
                if delay.is_zero() {
                    u.spawn(out);
                } else {
                    out.push(Action::SetTimer {
                        unit: id,
                        token,
                        after: delay,
                    });
                }
                self.restart_dependents(id, out);
            }
            Decision::Ended if failure.is_some() => {
                // `never`: stopped by its probe, it ends failed.
                let change = Transition::new(ended).exit(status);
                u.enter(Stage::Failed(status), change, out);
                self.ended_for_good(id, now, out);
            }
            Decision::Ended => {
                let mut change = Transition::new(ended).exit(status);
                if end == RunEnd::Failure {
                    change = change.trouble();
                }
                let completed = Some(status);
                u.enter(Stage::Exited { completed }, change, out);
                self.ended_for_good(id, now, out);
            }
            Decision::GaveUp => {
                let reason = format!(
                    "{ended}; gave up after {} restarts (restart.max_retries)",
                    u.tracker.consecutive()
                );
                u.enter(
                    Stage::Failed(status),
                    Transition::new(reason).exit(status),
                    out,
                );
                self.ended_for_good(id, now, out);
            }
        }
        self.schedule(now, out);
    }

    /// Stops running service `id` on purpose, to start it again (`why`, `hand`): at once, or,
    /// when dependents with `restart: true` on it are active, after them: they stop first (each
    /// in the same order), and its dependents do not start against it meanwhile.
    pub(super) fn stop_in_order(
        &mut self,
        id: ServiceId,
        why: &str,
        hand: Option<Hand>,
        out: &mut Vec<Action>,
    ) {
        let followers = self.active_followers(id);
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        if followers.is_empty() {
            u.stop(Some(why), None, hand, out);
            return;
        }
        if !matches!(u.stage, Stage::Up(_)) {
            return;
        }
        u.deferred = Some(super::unit::DeferredStop {
            why: why.to_string(),
            hand,
        });
        // Its dependents wait for the next run, not this one.
        u.milestones = Milestones::default();
        let names: Vec<&str> = followers
            .iter()
            .filter_map(|&f| self.units.get(f).map(|f| &*f.name))
            .collect();
        let reason = format!(
            "{why}; stopping after its dependents with restart: true ({})",
            names.join(", ")
        );
        if let Some(u) = self.units.get_mut(id) {
            u.explain(Transition::new(reason), out);
        }
        let name = self
            .units
            .get(id)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        let why = format!("dependency `{name}` restarts");
        for follower in followers {
            self.follow_restart(follower, &why, out);
        }
    }

    /// The dependents of `id` with `restart: true` on it that have processes (or soon will).
    pub(super) fn active_followers(&self, id: ServiceId) -> Vec<ServiceId> {
        let Some(unit) = self.units.get(id) else {
            return Vec::new();
        };
        unit.dependents
            .iter()
            .copied()
            .filter(|&d| {
                self.units
                    .get(d)
                    .is_some_and(|d| d.restarts_with.contains(&id) && d.is_active())
            })
            .collect()
    }

    /// A dependency of `id` with `restart: true` restarts (or is about to): a running `id`
    /// stops, in order, to start again once the dependency meets its condition anew; one being
    /// spawned restarts once up.
    fn follow_restart(&mut self, id: ServiceId, why: &str, out: &mut Vec<Action>) {
        let restart = Hand::Restart(RestartReason::Dependency);
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        match &mut u.stage {
            Stage::Up(_) => self.stop_in_order(id, why, Some(restart), out),
            Stage::Starting { hand } if hand.is_none() => *hand = Some(restart),
            _ => {}
        }
    }

    /// Service `id` restarts: each running dependent with `restart: true` on it stops, and
    /// starts again once `id` meets its condition anew (its own dependents follow in turn).
    pub(super) fn restart_dependents(&mut self, id: ServiceId, out: &mut Vec<Action>) {
        let Some(unit) = self.units.get(id) else {
            return;
        };
        let (name, dependents) = (unit.name.clone(), unit.dependents.clone());
        let why = format!("dependency `{name}` restarted");
        let restart = Hand::Restart(RestartReason::Dependency);
        for dependent in dependents {
            let Some(d) = self.units.get_mut(dependent) else {
                continue;
            };
            if !d.restarts_with.contains(&id) {
                continue;
            }
            match &mut d.stage {
                Stage::Up(_) => self.stop_in_order(dependent, &why, Some(restart), out),
                // Its spawn lands against the old run of the dependency: it restarts then.
                Stage::Starting { hand } if hand.is_none() => *hand = Some(restart),
                // Its own restart would not wait for the dependency: it waits now.
                Stage::Backoff { .. } => {
                    d.token += 1;
                    d.restarts.count(RestartReason::Dependency);
                    let change = Transition::new(format!("{why}; waiting for it"))
                        .restart(RestartReason::Dependency);
                    d.enter(Stage::Pending { blocked: false }, change, out);
                }
                _ => {}
            }
        }
    }

    /// A service ended for good: with `on_exit: shutdown`, everything else stops too.
    pub(super) fn ended_for_good(&mut self, id: ServiceId, now: Instant, out: &mut Vec<Action>) {
        let Some(u) = self.units.get(id) else { return };
        if u.spec.on_exit == OnExit::Shutdown
            && let Some(outcome) = u.outcome()
        {
            self.begin_drain(Some(outcome.code()), std::time::Duration::ZERO, now, out);
        }
    }
}

/// The grace between the stop signal and SIGKILL when `pre_stop` used up `stop.timeout`.
const PRE_STOP_OVERRUN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How a run stopped by a probe, the watchdog or a `post_start` hook is described.
fn failure_text(cause: RestartReason) -> &'static str {
    match cause {
        RestartReason::Liveness => "liveness probe failed",
        RestartReason::Startup => "startup probe failed",
        RestartReason::PostStart => "post_start failed",
        _ => "watchdog expired",
    }
}

/// What a run that just started waits for.
fn waiting_for_probes(u: &super::unit::Unit) -> &'static str {
    if u.spec.startup_probe.is_some() {
        "started; waiting for the startup probe"
    } else if u.spec.readiness_probe.is_some() {
        "started; waiting for the readiness probe"
    } else {
        "started"
    }
}
