//! What a reload changes: the comparison of a running manifest with a new one, service by
//! service. Pure: the supervisor applies a [`Plan`], the binary prints it (`drover diff`, and
//! the `reload:` log line).
//!
//! A service is **restarted** when a key that shapes its process differs: `command`,
//! `working_dir`, `environment`, `env_file` (the files' content, not only their names), `user`,
//! or whether it has an sd_notify readiness probe (its `NOTIFY_SOCKET` and `WATCHDOG_USEC` are in
//! its environment). It is **updated in place** when only other keys differ (`restart`, `stop`,
//! `depends_on`, `on_exit`, `post_start`, `pre_stop`, the other probes): the new values apply
//! from now on, probes are restarted if they changed, and its process is never signalled. Where
//! a key was written (its line in the file) is not a change.

use crate::model::{Manifest, ProbeAction, Service, Settings};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// How one service of the running manifest compares with its namesake in a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceChange {
    /// Nothing that matters differs.
    Unchanged,
    /// Keys that do not touch the process differ; [`ServiceChange::InPlace::probes`] says
    /// whether its probes must be restarted.
    InPlace {
        /// A probe was added, removed or changed.
        probes: bool,
    },
    /// Its process must be replaced.
    Restart,
}

/// Compares the running `old` spec of a service with the `new` one.
pub fn compare(old: &Service, new: &Service) -> ServiceChange {
    let process = old.command != new.command
        || old.working_dir != new.working_dir
        || old.environment != new.environment
        || old.env_files != new.env_files
        || old.user != new.user
        || notify_of(old) != notify_of(new);
    if process {
        return ServiceChange::Restart;
    }
    let probes = old.readiness_probe != new.readiness_probe
        || old.liveness_probe != new.liveness_probe
        || old.startup_probe != new.startup_probe;
    let other = old.restart != new.restart
        || old.stop != new.stop
        || old.depends_on != new.depends_on
        || old.on_exit != new.on_exit
        || old.post_start != new.post_start
        || old.pre_stop != new.pre_stop;
    if probes || other {
        ServiceChange::InPlace { probes }
    } else {
        ServiceChange::Unchanged
    }
}

/// The sd_notify part of a service's environment: whether it has a socket, and its watchdog.
fn notify_of(service: &Service) -> Option<Option<std::time::Duration>> {
    match service.readiness_probe.as_ref().map(|p| &p.action) {
        Some(ProbeAction::Notify { watchdog }) => Some(*watchdog),
        _ => None,
    }
}

/// What a reload does, by service name, each list in the new manifest's order (removed ones in
/// the old manifest's order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New services, to start.
    pub added: Vec<String>,
    /// Services whose process is replaced.
    pub restarted: Vec<String>,
    /// Services updated without touching their process.
    pub updated: Vec<String>,
    /// Services no longer in the manifest, to stop.
    pub removed: Vec<String>,
    /// Services left exactly as they are.
    pub unchanged: Vec<String>,
    /// The settings that differ, by key (`settings.metrics.listen`, ...).
    pub settings: Vec<&'static str>,
}

impl Plan {
    /// Whether the reload changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.restarted.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.settings.is_empty()
    }
}

/// The plan that turns `old` services into `new` ones.
pub fn plan_services<'a>(
    old: impl IntoIterator<Item = &'a Service>,
    new: impl IntoIterator<Item = &'a Service>,
) -> Plan {
    let old: Vec<&Service> = old.into_iter().collect();
    let new: Vec<&Service> = new.into_iter().collect();
    let old_by_name: HashMap<&str, &Service> = old.iter().map(|s| (s.name.as_str(), *s)).collect();
    let new_names: HashSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
    let mut plan = Plan::default();
    for service in &new {
        let name = service.name.clone();
        match old_by_name.get(service.name.as_str()) {
            None => plan.added.push(name),
            Some(running) => match compare(running, service) {
                ServiceChange::Unchanged => plan.unchanged.push(name),
                ServiceChange::InPlace { .. } => plan.updated.push(name),
                ServiceChange::Restart => plan.restarted.push(name),
            },
        }
    }
    for service in &old {
        if !new_names.contains(service.name.as_str()) {
            plan.removed.push(service.name.clone());
        }
    }
    plan
}

/// The plan that turns manifest `old` into `new`, settings included.
pub fn plan(old: &Manifest, new: &Manifest) -> Plan {
    let mut plan = plan_services(old.services.values(), new.services.values());
    plan.settings = settings_changed(&old.settings, &new.settings);
    plan
}

/// The keys of `settings` that differ.
pub fn settings_changed(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.shutdown_timeout != new.shutdown_timeout {
        keys.push("settings.shutdown_timeout");
    }
    if old.shutdown_delay != new.shutdown_delay {
        keys.push("settings.shutdown_delay");
    }
    if old.metrics_listen != new.metrics_listen {
        keys.push("settings.metrics.listen");
    }
    if old.log_format != new.log_format {
        keys.push("settings.log.format");
    }
    if old.service_output != new.service_output {
        keys.push("settings.log.service_output");
    }
    if old.log_timestamps != new.log_timestamps {
        keys.push("settings.log.timestamps");
    }
    if old.reload_watch != new.reload_watch {
        keys.push("settings.reload.watch");
    }
    if old.reload_debounce != new.reload_debounce {
        keys.push("settings.reload.debounce");
    }
    if old.control != new.control {
        keys.push("settings.control");
    }
    keys
}

/// One line: `+added ~restarted *updated -removed =unchanged`, each group's names joined by
/// commas, empty groups left out; then the changed settings. `no change` when nothing differs.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups = [
            ('+', &self.added),
            ('~', &self.restarted),
            ('*', &self.updated),
            ('-', &self.removed),
            ('=', &self.unchanged),
        ];
        let mut first = true;
        for (mark, names) in groups {
            if names.is_empty() {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{mark}{}", names.join(","))?;
        }
        if !self.settings.is_empty() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "settings: {}", self.settings.join(","))?;
        }
        if first {
            f.write_str("no change")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(yaml: &str) -> Manifest {
        crate::load_str(yaml, Path::new("/t/drover.yaml")).expect("valid")
    }

    const BASE: &str = "services:
  db: { command: [sleep, \"1\"] }
  web:
    command: [sleep, \"2\"]
    depends_on: [db]
    readiness_probe: { tcp: { port: 80 } }
  old: { command: [sleep, \"3\"] }
";

    #[test]
    fn each_kind_of_change_lands_in_its_group() {
        let new = manifest(
            "services:
  # a comment moves every line: positions are not changes
  db: { command: [sleep, \"1\"] }
  web:
    command: [sleep, \"2\"]
    depends_on: [db]
    readiness_probe: { tcp: { port: 81 } }
  api: { command: [sleep, \"4\"], environment: { A: b } }
",
        );
        let plan = plan(&manifest(BASE), &new);
        assert_eq!(plan.added, ["api"]);
        assert_eq!(plan.updated, ["web"]);
        assert_eq!(plan.removed, ["old"]);
        assert_eq!(plan.unchanged, ["db"]);
        assert!(plan.restarted.is_empty());
        assert_eq!(plan.to_string(), "+api *web -old =db");
    }

    #[test]
    fn process_keys_restart_and_other_keys_do_not() {
        let base = manifest(BASE);
        let web = |yaml: &str| {
            let m = manifest(&format!(
                "services:\n  db: {{ command: [sleep, \"1\"] }}\n  web: {yaml}\n"
            ));
            compare(&base.services["web"], &m.services["web"])
        };
        let probe = "readiness_probe: { tcp: { port: 80 } }";
        for restart in [
            format!("{{ command: [sleep, \"9\"], depends_on: [db], {probe} }}"),
            format!(
                "{{ command: [sleep, \"2\"], depends_on: [db], {probe}, environment: {{ X: y }} }}"
            ),
            format!("{{ command: [sleep, \"2\"], depends_on: [db], {probe}, working_dir: /tmp }}"),
            format!("{{ command: [sleep, \"2\"], depends_on: [db], {probe}, user: nobody }}"),
            "{ command: [sleep, \"2\"], depends_on: [db], readiness_probe: { notify: {} } }".into(),
        ] {
            assert_eq!(web(&restart), ServiceChange::Restart, "{restart}");
        }
        assert_eq!(
            web(&format!("{{ command: [sleep, \"2\"], {probe} }}")),
            ServiceChange::InPlace { probes: false }
        );
        assert_eq!(
            web(&format!(
                "{{ command: [sleep, \"2\"], depends_on: [db], {probe}, restart: {{ policy: always }} }}"
            )),
            ServiceChange::InPlace { probes: false }
        );
        assert_eq!(
            web("{ command: [sleep, \"2\"], depends_on: [db] }"),
            ServiceChange::InPlace { probes: true }
        );
        assert_eq!(
            web(&format!(
                "{{ command: [sleep, \"2\"], depends_on: [db], {probe} }}"
            )),
            ServiceChange::Unchanged
        );
    }

    #[test]
    fn env_file_content_is_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join("app.env");
        let yaml = format!("services:\n  app: {{ command: [sleep, \"1\"], env_file: {env:?} }}\n");
        let load = || crate::load_str(&yaml, &dir.path().join("drover.yaml")).expect("valid");
        std::fs::write(&env, "A=1\n").expect("write");
        let before = load();
        std::fs::write(&env, "A=2\n").expect("write");
        let after = load();
        assert_eq!(
            compare(&before.services["app"], &after.services["app"]),
            ServiceChange::Restart
        );
        assert_eq!(plan(&before, &after).to_string(), "~app");
    }

    #[test]
    fn settings_are_listed_and_an_identical_manifest_is_no_change() {
        let base = manifest(BASE);
        assert_eq!(plan(&base, &base).to_string(), "=db,web,old");
        assert!(plan(&base, &base).is_empty());
        let other = manifest(&format!(
            "settings: {{ shutdown_timeout: 5s, metrics: {{ listen: null }} }}\n{BASE}"
        ));
        let plan = plan(&base, &other);
        assert_eq!(
            plan.settings,
            ["settings.shutdown_timeout", "settings.metrics.listen"]
        );
        assert_eq!(
            plan.to_string(),
            "=db,web,old settings: settings.shutdown_timeout,settings.metrics.listen"
        );
    }
}
