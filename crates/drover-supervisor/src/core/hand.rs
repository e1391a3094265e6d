//! Operations by hand (`drover start | stop | restart`, through the control socket). Each is an
//! [`Input::Operate`](super::Input::Operate) with a ticket, applied in the same turn of the
//! loop as every other input, so a hand restart racing a crash restart, a probe restart or a
//! reload never yields two processes: whatever is asked meanwhile is folded into the one
//! stop in progress (its `Hand`). The answer comes as `Action::Answer`: `Accepted` while the
//! goal is ahead, then `Done` or `Failed` when a stage meets it or rules it out
//! (`Unit::enter` settles the waiters). During a drain every operation is refused.

use super::events::RestartReason;
use super::unit::{Goal, Hand, Stage, Transition, Waiter};
use super::{Action, Core, HandOp, OpAnswer, Phase, ServiceId};
use crate::restart::RestartTracker;
use tokio::time::Instant;

/// Operations by hand waiting on one service at most; more are refused until some are done.
const MAX_WAITERS: usize = 1024;

impl Core {
    pub(super) fn operate(
        &mut self,
        id: ServiceId,
        op: HandOp,
        ticket: u64,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let refuse = |out: &mut Vec<Action>, why: &str| {
            out.push(Action::Answer {
                ticket,
                answer: OpAnswer::Failed(why.to_string()),
            })
        };
        if self.phase != Phase::Supervising {
            return refuse(out, "drover is shutting down");
        }
        match self.units.get(id) {
            None => return refuse(out, "no such service (it was removed)"),
            Some(u) if u.removal.is_some() => {
                return refuse(out, "removed from the manifest; it is stopping");
            }
            // Whoever asked may have gone (a client's own timeout): bounded all the same.
            Some(u) if u.waiters.len() >= MAX_WAITERS => {
                return refuse(out, "too many operations are waiting on this service");
            }
            Some(_) => {}
        }
        match op {
            HandOp::Stop => self.stop_by_hand(id, ticket, now, out),
            HandOp::Start => self.start_by_hand(id, ticket, false, now, out),
            HandOp::Restart => self.start_by_hand(id, ticket, true, now, out),
        }
    }

    fn stop_by_hand(&mut self, id: ServiceId, ticket: u64, now: Instant, out: &mut Vec<Action>) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        let waiter = Waiter {
            ticket,
            goal: Goal::Stopped,
        };
        let accepted = Action::Answer {
            ticket,
            answer: OpAnswer::Accepted,
        };
        match &mut u.stage {
            Stage::Stopped => {
                out.push(Action::Answer {
                    ticket,
                    answer: OpAnswer::Done("already stopped".into()),
                });
            }
            Stage::Up(_) => {
                u.waiters.push(waiter);
                out.push(accepted);
                u.stop(Some("stopped by hand"), None, Some(Hand::Stop), out);
            }
            // Its spawn, or its stop, is under way: it ends stopped.
            Stage::Starting { hand } => {
                *hand = Some(Hand::Stop);
                u.waiters.push(waiter);
                out.push(accepted);
            }
            Stage::Stopping(stop) => {
                stop.hand = Some(Hand::Stop);
                u.waiters.push(waiter);
                out.push(accepted);
            }
            Stage::Pending { .. }
            | Stage::Backoff { .. }
            | Stage::Exited { .. }
            | Stage::Failed(_) => {
                // Nothing runs: stopped at once (a pending restart timer is cancelled).
                u.token += 1;
                u.waiters.push(waiter);
                u.enter(Stage::Stopped, Transition::new("stopped by hand"), out);
                self.schedule(now, out);
            }
        }
    }

    /// `start`, or `restart` when `restart` (which also stops a running process first).
    fn start_by_hand(
        &mut self,
        id: ServiceId,
        ticket: u64,
        restart: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        let waiter = Waiter {
            ticket,
            goal: Goal::Up { after: u.starts },
        };
        let accepted = Action::Answer {
            ticket,
            answer: OpAnswer::Accepted,
        };
        let cancelled = "started again by hand before it stopped";
        match &mut u.stage {
            Stage::Up(run) if !restart => {
                let done = format!("already running as pid {}", run.pid);
                out.push(Action::Answer {
                    ticket,
                    answer: OpAnswer::Done(done),
                });
            }
            Stage::Up(_) => {
                u.waiters.push(waiter);
                out.push(accepted);
                let hand = Some(Hand::Restart(RestartReason::Manual));
                self.stop_in_order(id, "restarting by hand", hand, out);
            }
            // A new run is on its way; a stop asked meanwhile is called off.
            Stage::Starting { hand } => {
                *hand = None;
                u.fail_waiters(Some(Goal::Stopped), cancelled, out);
                u.waiters.push(waiter);
                out.push(accepted);
            }
            // Once this run has stopped, the next starts at once, whatever the policy says.
            Stage::Stopping(stop) => {
                stop.hand = Some(Hand::Restart(RestartReason::Manual));
                u.fail_waiters(Some(Goal::Stopped), cancelled, out);
                u.waiters.push(waiter);
                out.push(accepted);
            }
            Stage::Backoff { .. } => {
                u.token += 1;
                u.waiters.push(waiter);
                out.push(accepted);
                u.spawn(out);
            }
            // Waiting for its dependencies: it starts when they allow.
            Stage::Pending { blocked: false } => {
                u.waiters.push(waiter);
                out.push(accepted);
            }
            Stage::Stopped
            | Stage::Exited { .. }
            | Stage::Failed(_)
            | Stage::Pending { blocked: true } => {
                // A fresh start: its retries count from zero, its dependents wait for it.
                u.token += 1;
                u.tracker = RestartTracker::default();
                u.milestones = Default::default();
                u.waiters.push(waiter);
                out.push(accepted);
                let pending = Stage::Pending { blocked: false };
                u.enter(
                    pending,
                    Transition::new("started by hand; waiting to start"),
                    out,
                );
                // A finished one-shot run again (`drover restart migrate`): what restarts
                // with it does.
                if restart {
                    self.restart_dependents(id, out);
                }
                self.schedule(now, out);
            }
        }
    }
}
