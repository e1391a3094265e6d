//! Dependency gating: the graph of `depends_on` between the services of the manifest, what may
//! start now, what never will (blocked by a dependency that ended for good), and whether a
//! service still has an active dependent (a drain stops it only once it has none).

use super::unit::{Outcome, Stage, Transition};
use super::{Action, Core, Phase, ServiceId};
use crate::sys::ExitStatus;
use drover_spec::model::Condition;
use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

/// Whether a service may start.
enum Gate {
    Open,
    Wait,
    /// A dependency ended for good before it met its condition: never.
    Never(String),
}

impl Core {
    /// Resolves every service's `depends_on` (of the spec its next run starts with) into ids,
    /// both ways; removed services have none.
    pub(super) fn rebuild_graph(&mut self) {
        let by_name: HashMap<&str, ServiceId> = self
            .units
            .iter()
            .filter(|(_, u)| u.removal.is_none())
            .map(|(id, u)| (&*u.name, id))
            .collect();
        let mut edges = Vec::new();
        for (id, unit) in self.units.iter() {
            if unit.removal.is_some() {
                continue;
            }
            for dependency in &unit.effective_spec().depends_on {
                // The spec crate has checked that every dependency exists.
                if let Some(&d) = by_name.get(dependency.service.as_str()) {
                    edges.push((id, d, dependency.condition, dependency.restart));
                }
            }
        }
        for unit in self.units.values_mut() {
            unit.dependencies.clear();
            unit.dependents.clear();
            unit.restarts_with.clear();
        }
        for (id, d, condition, restart) in edges {
            if let Some(dependency) = self.units.get_mut(d) {
                dependency.dependents.push(id);
            }
            if let Some(unit) = self.units.get_mut(id) {
                unit.dependencies.push((d, condition));
                if restart {
                    unit.restarts_with.push(d);
                }
            }
        }
    }

    /// Starts every pending service whose dependencies allow it, blocks those they never
    /// will, and exits once every service has ended for good.
    pub(super) fn schedule_starts(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.stop_removed(out);
        self.stop_deferred(out);
        loop {
            let mut changed = false;
            for id in self.units.ids() {
                if !self
                    .units
                    .get(id)
                    .is_some_and(|u| u.stage == Stage::Pending { blocked: false })
                {
                    continue;
                }
                let gate = self.gate(id);
                let Some(u) = self.units.get_mut(id) else {
                    continue;
                };
                match gate {
                    Gate::Open => {
                        u.spawn(out);
                        changed = true;
                    }
                    Gate::Never(reason) => {
                        let blocked = Stage::Pending { blocked: true };
                        u.enter(blocked, Transition::new(reason).trouble(), out);
                        self.ended_for_good(id, now, out);
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
        // A removed service is forgotten once stopped: what is left is in the manifest.
        let ended = |u: &super::Unit| u.removal.is_none() && u.outcome().is_some();
        if self.units.values().all(ended) {
            let all_succeeded = self
                .units
                .values()
                .all(|u| matches!(u.outcome(), Some(Outcome::Completed(s)) if s.success()));
            self.phase = Phase::Done;
            out.push(Action::Exit(if all_succeeded { 0 } else { 1 }));
        }
    }

    /// Performs each deferred stop whose `restart: true` dependents have stopped; drops those
    /// of services that stopped meanwhile anyway.
    fn stop_deferred(&mut self, out: &mut Vec<Action>) {
        for id in self.units.ids() {
            let waiting = self.active_followers(id);
            let Some(u) = self.units.get_mut(id) else {
                continue;
            };
            if u.deferred.is_none() || (!waiting.is_empty() && matches!(u.stage, Stage::Up(_))) {
                continue;
            }
            if let Some(deferred) = u.deferred.take() {
                u.stop(Some(&deferred.why), None, deferred.hand, out);
            }
        }
    }

    /// Whether anything that depends on `id`, directly or through others, is still active.
    pub(super) fn has_active_dependent(&self, id: ServiceId) -> bool {
        let mut seen = HashSet::new();
        let mut stack: Vec<ServiceId> = match self.units.get(id) {
            Some(u) => u.dependents.clone(),
            None => return false,
        };
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            let Some(dependent) = self.units.get(d) else {
                continue;
            };
            if dependent.is_active() {
                return true;
            }
            stack.extend_from_slice(&dependent.dependents);
        }
        false
    }

    /// Whether service `id`'s dependencies let it start.
    fn gate(&self, id: ServiceId) -> Gate {
        let Some(unit) = self.units.get(id) else {
            return Gate::Wait;
        };
        let mut gate = Gate::Open;
        for &(d, condition) in &unit.dependencies {
            let Some(dep) = self.units.get(d) else {
                continue;
            };
            // About to stop for a restart: nothing starts against its ending run.
            if dep.deferred.is_some() {
                gate = Gate::Wait;
                continue;
            }
            let outcome = dep.outcome();
            let met = match condition {
                Condition::Started => dep.milestones.started,
                Condition::Ready => {
                    dep.stage.state() == super::State::Ready
                        || matches!(outcome, Some(Outcome::Completed(s)) if s.success())
                }
                Condition::CompletedSuccessfully => dep.milestones.succeeded,
            };
            if met {
                continue;
            }
            let Some(outcome) = outcome else {
                gate = Gate::Wait;
                continue;
            };
            let how = match outcome {
                Outcome::Blocked => "is blocked".to_string(),
                Outcome::Failed(_) => "failed".to_string(),
                Outcome::Completed(_) => format!(
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
        gate
    }
}

fn condition_word(condition: Condition) -> &'static str {
    match condition {
        Condition::Started => "started",
        Condition::Ready => "ready",
        Condition::CompletedSuccessfully => "completed successfully",
    }
}
