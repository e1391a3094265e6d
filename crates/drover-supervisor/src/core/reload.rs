//! Reload: a new manifest's services applied as a difference (`drover_spec::diff`). New
//! services are added, those whose process changed are stopped and start again with the new
//! spec, the others are updated in place (their probes restart if they changed), removed ones
//! stop in reverse dependency order and are then forgotten, and unchanged ones are never
//! touched. A service added back while it still stops is the same service again.

use super::unit::{Removal, Stage, Transition, Unit};
use super::{Action, Core, Phase, ServiceId};
use crate::restart::RestartTracker;
use drover_spec::diff::{Plan, ServiceChange, compare, plan_services};
use drover_spec::model::Service;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// What a reload did.
#[derive(Debug)]
pub(crate) struct Reloaded {
    /// The difference, by service name.
    pub(crate) plan: Plan,
    /// Services new to the supervisor: the runtime sets up their resources before it performs
    /// `actions` (which may spawn them).
    pub(crate) added: Vec<ServiceId>,
    /// What to do.
    pub(crate) actions: Vec<Action>,
}

impl Core {
    /// Applies the services of a new manifest (checked, as every manifest). `None` while
    /// draining: a reload then changes nothing.
    pub(crate) fn reload(
        &mut self,
        services: Vec<Service>,
        shutdown: super::Shutdown,
        now: Instant,
    ) -> Option<Reloaded> {
        if self.phase != Phase::Supervising {
            return None;
        }
        let mut out = Vec::new();
        self.shutdown_timeout = shutdown.timeout;
        self.shutdown_delay = shutdown.delay;
        let live: Vec<ServiceId> = self
            .units
            .iter()
            .filter(|(_, u)| u.removal.is_none())
            .map(|(id, _)| id)
            .collect();
        let plan = plan_services(
            live.iter()
                .filter_map(|&id| self.units.get(id))
                .map(|u| &**u.effective_spec()),
            services.iter(),
        );
        let live_by_name: HashMap<Arc<str>, ServiceId> = live
            .iter()
            .filter_map(|&id| Some((self.units.get(id)?.name.clone(), id)))
            .collect();
        let removed: Vec<ServiceId> = live
            .iter()
            .copied()
            .filter(|&id| {
                self.units
                    .get(id)
                    .is_some_and(|u| plan.removed.iter().any(|name| **name == *u.name))
            })
            .collect();
        let mut added = Vec::new();
        for service in services {
            if let Some(&id) = live_by_name.get(service.name.as_str()) {
                self.update(id, service, &mut out);
            } else if let Some(id) = self.stopping_removed(&service.name) {
                self.readd(id, service, &mut out);
            } else {
                added.push(self.units.insert_with(|id| Unit::new(id, service)));
            }
        }
        // A service blocked by a dependency that failed for good gets another chance: the
        // dependency may have been fixed (or removed) by this reload.
        let mut unblocked = Vec::new();
        for (id, u) in self.units.iter() {
            if u.removal.is_none() && u.stage == (Stage::Pending { blocked: true }) {
                unblocked.push(id);
            }
        }
        for &id in &unblocked {
            if let Some(u) = self.units.get_mut(id) {
                u.stage = Stage::Pending { blocked: false };
            }
        }
        for &id in &removed {
            let Some(name) = self.units.get(id).map(|u| u.name.clone()) else {
                continue;
            };
            let dependents = removed
                .iter()
                .copied()
                .filter(|&r| {
                    self.units
                        .get(r)
                        .is_some_and(|u| u.spec.depends_on.iter().any(|d| *d.service == *name))
                })
                .collect();
            self.retire(id, dependents, &mut out);
        }
        self.rebuild_graph();
        self.schedule(now, &mut out);
        for id in unblocked {
            if let Some(u) = self.units.get_mut(id)
                && u.stage == (Stage::Pending { blocked: false })
            {
                u.explain(Transition::new("waiting to start"), &mut out);
            }
        }
        Some(Reloaded {
            plan,
            added,
            actions: out,
        })
    }

    /// A service removed by an earlier reload and still stopping, named `name`.
    fn stopping_removed(&self, name: &str) -> Option<ServiceId> {
        self.units
            .iter()
            .find(|(_, u)| u.removal.is_some() && u.is_active() && *u.name == *name)
            .map(|(id, _)| id)
    }

    /// A service that stays in the manifest, with its new spec.
    fn update(&mut self, id: ServiceId, new: Service, out: &mut Vec<Action>) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        let change = compare(u.effective_spec(), &new);
        let new = Arc::new(new);
        let is_up = matches!(u.stage, Stage::Up(_));
        match change {
            ServiceChange::Unchanged => {}
            ServiceChange::InPlace { .. } if u.next_spec.is_some() => u.next_spec = Some(new),
            ServiceChange::InPlace { probes } => {
                u.spec = new;
                if probes && is_up {
                    u.restart_probes(out);
                }
            }
            ServiceChange::Restart if u.stage == Stage::Stopped => {
                // Stopped by hand, it stays so; its next start runs the new spec.
                u.spec = new;
                u.tracker = RestartTracker::default();
                u.milestones = Default::default();
            }
            ServiceChange::Restart if u.is_active() => {
                u.next_spec = Some(new);
                if is_up {
                    self.stop_in_order(id, "manifest changed", None, out);
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
                // Its dependents wait for the new spec's run, not the old one's.
                u.milestones = Default::default();
                let pending = Stage::Pending { blocked: false };
                let change = Transition::new("manifest changed; waiting to start");
                u.enter(pending, change, out);
                self.restart_dependents(id, out);
            }
        }
    }

    /// A service removed by an earlier reload, still stopping, that the new manifest has again.
    fn readd(&mut self, id: ServiceId, new: Service, out: &mut Vec<Action>) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        u.removal = None;
        if matches!(u.stage, Stage::Stopping(_) | Stage::Starting { .. }) {
            // Its run is ending: the next one starts with the new spec.
            u.next_spec = Some(Arc::new(new));
        } else {
            self.update(id, new, out);
        }
    }

    /// A service the new manifest removed: stopped (after `dependents`, removed with it), then
    /// forgotten.
    fn retire(&mut self, id: ServiceId, dependents: Vec<ServiceId>, out: &mut Vec<Action>) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        u.removal = Some(Removal { dependents });
        u.next_spec = None;
        if !u.is_active() {
            u.token += 1;
            let exited = Stage::Exited { completed: None };
            u.enter(exited, Transition::new("removed from the manifest"), out);
            self.forget_if_removed(id, out);
        }
        // A running one is stopped by `stop_removed`, in reverse dependency order.
    }

    /// Stops each removed service whose removed dependents have stopped.
    pub(super) fn stop_removed(&mut self, out: &mut Vec<Action>) {
        for id in self.units.ids() {
            let Some(u) = self.units.get(id) else {
                continue;
            };
            let Some(removal) = &u.removal else { continue };
            if !matches!(u.stage, Stage::Up(_)) {
                continue;
            }
            let waiting = removal
                .dependents
                .iter()
                .any(|&d| self.units.get(d).is_some_and(Unit::is_active));
            if waiting {
                continue;
            }
            if let Some(u) = self.units.get_mut(id) {
                u.stop(Some("removed from the manifest"), None, None, out);
            }
        }
    }

    /// Frees the slot of a removed service that has stopped: it is gone.
    pub(super) fn forget_if_removed(&mut self, id: ServiceId, out: &mut Vec<Action>) {
        if self
            .units
            .get(id)
            .is_some_and(|u| u.removal.is_some() && !u.is_active())
        {
            if let Some(mut u) = self.units.remove(id) {
                u.fail_waiters(None, "removed from the manifest", out);
            }
            out.push(Action::Forget(id));
        }
    }
}
