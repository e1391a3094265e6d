//! The drain: on a stop signal or an `on_exit: shutdown`, every service stops in reverse
//! dependency order; a second signal or `settings.shutdown_timeout` turns it into SIGKILL for
//! all, and [`KILL_WAIT`] after that drover gives up on groups that never empty. Nothing starts
//! or restarts meanwhile. The exit code: the `on_exit: shutdown` service's, else 1 if anything
//! had to be killed, else 0.

use super::unit::{Stage, Transition};
use super::{Action, Core, KILL_WAIT, Phase};
use tokio::time::Instant;

impl Core {
    /// A stop signal: drain, or kill everything if a drain already runs.
    pub(super) fn on_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Supervising => self.begin_drain(None, self.shutdown_delay, now, out),
            Phase::Draining { killing: false, .. } => {
                self.kill_all("told to stop a second time", now, out)
            }
            _ => {}
        }
    }

    pub(super) fn on_drain_deadline(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Draining { killing: false, .. } = self.phase {
            self.forced = true;
            self.kill_all("settings.shutdown_timeout ran out", now, out);
        }
    }

    /// SIGKILL went out [`KILL_WAIT`] ago and some group is still not empty: give up on it.
    pub(super) fn on_kill_deadline(&mut self, out: &mut Vec<Action>) {
        if self.phase == Phase::Done {
            return;
        }
        let reason = format!(
            "process group still not empty {} after SIGKILL; giving up on it",
            humantime::format_duration(KILL_WAIT)
        );
        for u in self.units.values_mut() {
            if u.is_active() {
                u.explain(Transition::new(reason.clone()), out);
            }
        }
        self.phase = Phase::Done;
        out.push(Action::Exit(self.exit_code.unwrap_or(1)));
    }

    /// Begins the drain; with a `delay`, every running service is marked not ready first, and
    /// nothing stops until [`Input::DelayOver`](super::Input::DelayOver).
    pub(super) fn begin_drain(
        &mut self,
        exit_code: Option<i32>,
        delay: std::time::Duration,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.phase != Phase::Supervising {
            return;
        }
        let delaying = !delay.is_zero();
        self.phase = Phase::Draining {
            killing: false,
            delaying,
        };
        self.exit_code = exit_code;
        out.push(Action::SetDrainDeadline(self.shutdown_timeout));
        let not_ready = format!(
            "not ready: shutting down in {} (settings.shutdown_delay)",
            humantime::format_duration(delay)
        );
        for u in self.units.values_mut() {
            u.fail_waiters(None, "drover is shutting down", out);
            if delaying {
                u.mark_not_ready(&not_ready, out);
            }
        }
        if delaying {
            out.push(Action::SetDelayTimer(delay));
        }
        self.schedule(now, out);
    }

    /// `settings.shutdown_delay` is over: the stops begin.
    pub(super) fn on_delay_over(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Draining {
            killing: false,
            delaying: true,
        } = self.phase
        {
            self.phase = Phase::Draining {
                killing: false,
                delaying: false,
            };
            self.schedule(now, out);
        }
    }

    pub(super) fn kill_all(&mut self, why: &str, now: Instant, out: &mut Vec<Action>) {
        if matches!(
            self.phase,
            Phase::Done | Phase::Draining { killing: true, .. }
        ) {
            return;
        }
        self.phase = Phase::Draining {
            killing: true,
            delaying: false,
        };
        self.forced = true;
        out.push(Action::SetKillDeadline(KILL_WAIT));
        for u in self.units.values_mut() {
            if u.is_killable() {
                u.kill(format!("{why}; sending SIGKILL"), out);
            }
        }
        self.schedule(now, out);
    }

    /// Stops what may stop now: a service waiting to restart at once, a running one once
    /// nothing active depends on it (all of them at once when `killing`; none while
    /// `delaying`). Exits once nothing is active.
    pub(super) fn schedule_stops(&mut self, killing: bool, delaying: bool, out: &mut Vec<Action>) {
        for id in self.units.ids() {
            let is_up = self
                .units
                .get(id)
                .is_some_and(|u| matches!(u.stage, Stage::Up(_)));
            let may_stop = killing || (is_up && !delaying && !self.has_active_dependent(id));
            let Some(u) = self.units.get_mut(id) else {
                continue;
            };
            match u.stage {
                Stage::Backoff { .. } => {
                    u.token += 1;
                    let stopped = Stage::Exited { completed: None };
                    u.enter(
                        stopped,
                        Transition::new("stopped while waiting to restart"),
                        out,
                    );
                }
                Stage::Up(_) if killing => {
                    u.kill("sending SIGKILL".into(), out);
                }
                // Reverse dependency order: only once everything that depends on it, directly
                // or through others, has stopped.
                Stage::Up(_) if may_stop => {
                    u.stop(None, None, None, out);
                }
                _ => {}
            }
        }
        if self.units.values().all(|u| !u.is_active()) {
            self.phase = Phase::Done;
            let code = self.exit_code.unwrap_or(if self.forced { 1 } else { 0 });
            out.push(Action::Exit(code));
        }
    }
}
