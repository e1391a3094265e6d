//! The state machine, driven by hand: every input is fed explicitly and every action checked,
//! with no process, clock or randomness involved.

use super::*;
use std::collections::HashMap;
use std::path::Path;

/// A state machine over `yaml` plus a virtual clock, recording actions as short strings.
struct Sim {
    core: Core,
    now: Instant,
    /// Every service the simulation has seen, gone ones included (to show their last actions).
    names: HashMap<ServiceId, String>,
}

impl Sim {
    fn new(yaml: &str) -> (Sim, Vec<String>) {
        let manifest = drover_spec::load_str(yaml, Path::new("/t/drover.yaml")).expect("valid");
        let mut sim = Sim {
            core: Core::new(
                manifest.services.into_values(),
                Shutdown {
                    timeout: manifest.settings.shutdown_timeout,
                    delay: manifest.settings.shutdown_delay,
                },
                7,
            ),
            now: Instant::now(),
            names: HashMap::new(),
        };
        sim.learn_names();
        let actions = sim.core.start(sim.now);
        let shown = sim.show(actions);
        (sim, shown)
    }

    fn learn_names(&mut self) {
        for (id, u) in self.core.units.iter() {
            self.names.insert(id, u.name.to_string());
        }
    }

    /// The service named `name` now: the one in the manifest, else a removed one still
    /// stopping.
    fn id_of(&self, name: &str) -> Option<ServiceId> {
        let named = |(_, u): &(ServiceId, &Unit)| *u.name == *name;
        let mut units = self.core.units.iter().filter(named);
        let all: Vec<_> = units.by_ref().collect();
        all.iter()
            .find(|(_, u)| u.removal.is_none())
            .or(all.first())
            .map(|(id, _)| *id)
    }

    fn unit(&self, name: &str) -> ServiceId {
        self.id_of(name).expect("known service")
    }

    fn get(&self, name: &str) -> &Unit {
        self.core.units.get(self.unit(name)).expect("present")
    }

    /// Applies manifest `yaml` as a reload: the plan's line and what it does.
    fn reload(&mut self, yaml: &str) -> (String, Vec<String>) {
        let manifest = drover_spec::load_str(yaml, Path::new("/t/drover.yaml")).expect("valid");
        let reloaded = self
            .core
            .reload(
                manifest.services.into_values().collect(),
                Shutdown {
                    timeout: manifest.settings.shutdown_timeout,
                    delay: manifest.settings.shutdown_delay,
                },
                self.now,
            )
            .expect("supervising");
        self.learn_names();
        (reloaded.plan.to_string(), self.show(reloaded.actions))
    }

    fn gone(&mut self, name: &str) -> Vec<String> {
        let unit = self.unit(name);
        self.feed(Input::GroupGone { unit })
    }

    fn feed(&mut self, input: Input) -> Vec<String> {
        let actions = self.core.handle(input, self.now);
        self.show(actions)
    }

    fn spawned(&mut self, name: &str, pid: i32) -> Vec<String> {
        let unit = self.unit(name);
        self.feed(Input::Spawned {
            unit,
            pid: Pid::from_raw(pid),
        })
    }

    fn exited(
        &mut self,
        name: &str,
        pid: i32,
        status: ExitStatus,
        group_alive: bool,
    ) -> Vec<String> {
        let unit = self.unit(name);
        self.feed(Input::Exited {
            unit,
            pid: Pid::from_raw(pid),
            status,
            group_alive,
        })
    }

    fn timer(&mut self, name: &str, token: u64) -> Vec<String> {
        let unit = self.unit(name);
        self.feed(Input::Timer { unit, token })
    }

    fn operate(&mut self, name: &str, op: HandOp, ticket: u64) -> Vec<String> {
        let unit = self.unit(name);
        self.feed(Input::Operate { unit, op, ticket })
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn token(&self, name: &str) -> u64 {
        self.get(name).token
    }

    fn state(&self, name: &str) -> State {
        self.get(name).stage.state()
    }

    /// Actions as `spawn web`, `signal web SIGTERM`, `watch web`, `timer web 10s`,
    /// `deadline 30s`, `exit 0`; state changes as `web: pending -> starting`. (`Forget` is
    /// left out: `forget_if_removed`'s test looks at it.)
    fn show(&self, actions: Vec<Action>) -> Vec<String> {
        actions
            .into_iter()
            .filter(|action| !matches!(action, Action::Forget(_)))
            .map(|action| match action {
                Action::Forget(_) => unreachable!("filtered"),
                Action::Spawn(u) => format!("spawn {}", self.names[&u]),
                Action::SignalGroup { unit, signal, .. } => {
                    format!("signal {} {}", self.names[&unit], signal.as_str())
                }
                Action::WatchGroup { unit, .. } => format!("watch {}", self.names[&unit]),
                Action::SetTimer { unit, after, .. } => format!(
                    "timer {} {}",
                    self.names[&unit],
                    humantime::format_duration(after)
                ),
                Action::SetDrainDeadline(after) => {
                    format!("deadline {}", humantime::format_duration(after))
                }
                Action::SetDelayTimer(after) => {
                    format!("delay {}", humantime::format_duration(after))
                }
                Action::SetKillDeadline(after) => {
                    format!("kill deadline {}", humantime::format_duration(after))
                }
                Action::Publish(_, e) => format!("{}: {} -> {}", e.service, e.from, e.to),
                Action::Exit(code) => format!("exit {code}"),
                Action::StartProbes { unit, kinds, .. } => format!(
                    "probes {} {}",
                    self.names[&unit],
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Action::StopProbes(unit) => format!("stop probes {}", self.names[&unit]),
                Action::RunHooks {
                    unit,
                    kind,
                    deadline,
                    ..
                } => match deadline {
                    Some(deadline) => format!(
                        "hooks {} {} within {}",
                        self.names[&unit],
                        kind.as_str(),
                        humantime::format_duration(deadline)
                    ),
                    None => format!("hooks {} {}", self.names[&unit], kind.as_str()),
                },
                Action::StopHooks(unit) => format!("stop hooks {}", self.names[&unit]),
                Action::Answer { ticket, answer } => match answer {
                    OpAnswer::Accepted => format!("answer {ticket} accepted"),
                    OpAnswer::Done(text) => format!("answer {ticket} done: {text}"),
                    OpAnswer::Failed(text) => format!("answer {ticket} failed: {text}"),
                },
            })
            .collect()
    }
}

/// Only the actions (no state changes; answers are actions).
fn acts(shown: Vec<String>) -> Vec<String> {
    shown
        .into_iter()
        .filter(|s| !s.contains(": ") || s.starts_with("answer"))
        .collect()
}

const EXIT0: ExitStatus = ExitStatus::Exited(0);
const EXIT1: ExitStatus = ExitStatus::Exited(1);

#[test]
fn independent_services_start_together_and_dependents_wait() {
    let (mut sim, first) = Sim::new(
        "services:
  a: { command: x }
  b: { command: x }
  c: { command: x, depends_on: [a, b] }",
    );
    assert_eq!(acts(first), ["spawn a", "spawn b"]);
    assert_eq!(acts(sim.spawned("a", 10)), Vec::<String>::new());
    assert_eq!(
        sim.spawned("b", 11),
        [
            "b: starting -> running",
            "b: running -> ready",
            "c: pending -> starting",
            "spawn c"
        ]
    );
}

#[test]
fn completed_successfully_waits_for_exit_zero_and_blocks_on_failure() {
    let yaml = "services:
  job: { command: x, restart: { policy: never } }
  app: { command: x, depends_on: { job: { condition: completed_successfully } } }";
    let (mut sim, first) = Sim::new(yaml);
    assert_eq!(acts(first), ["spawn job"]);
    sim.spawned("job", 10);
    assert_eq!(acts(sim.exited("job", 10, EXIT0, false)), ["spawn app"]);

    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("job", 10);
    let after = sim.exited("job", 10, EXIT1, false);
    assert_eq!(
        after,
        ["job: ready -> exited", "app: pending -> pending", "exit 1"]
    );
    let reason = &sim.get("app").reason;
    assert_eq!(
        reason,
        "blocked: dependency `job` ended with exit code 1 before it was completed successfully"
    );
}

#[test]
fn crash_backs_off_then_restarts_and_stale_timers_are_ignored() {
    let (mut sim, _) = Sim::new(
        "services:
  a: { command: x, restart: { backoff: { initial: 1s, jitter: 0 }, max_retries: 1 } }",
    );
    sim.spawned("a", 10);
    assert_eq!(
        sim.exited("a", 10, EXIT1, false),
        ["a: ready -> backoff", "timer a 1s"]
    );
    let token = sim.token("a");
    assert!(acts(sim.timer("a", token - 1)).is_empty(), "stale token");
    assert_eq!(acts(sim.timer("a", token)), ["spawn a"]);
    sim.spawned("a", 11);
    assert_eq!(
        sim.exited("a", 11, EXIT1, false),
        ["a: ready -> failed", "exit 1"]
    );
}

#[test]
fn a_run_that_lasts_reset_after_resets_the_backoff() {
    let (mut sim, _) = Sim::new(
        "services:
  a: { command: x, restart: { backoff: { initial: 1s, jitter: 0 }, reset_after: 10s } }",
    );
    sim.spawned("a", 10);
    assert!(
        sim.exited("a", 10, EXIT1, false)
            .contains(&"timer a 1s".to_string())
    );
    sim.timer("a", sim.token("a"));
    sim.spawned("a", 11);
    assert!(
        sim.exited("a", 11, EXIT1, false)
            .contains(&"timer a 2s".to_string())
    );
    sim.timer("a", sim.token("a"));
    sim.spawned("a", 12);
    sim.advance(Duration::from_secs(10));
    assert!(
        sim.exited("a", 12, EXIT1, false)
            .contains(&"timer a 1s".to_string())
    );
}

#[test]
fn zero_backoff_restarts_at_once() {
    let (mut sim, _) = Sim::new(
        "services:
  a: { command: x, restart: { policy: always, backoff: { initial: 0s } } }",
    );
    sim.spawned("a", 10);
    assert_eq!(acts(sim.exited("a", 10, EXIT0, false)), ["spawn a"]);
}

#[test]
fn the_rest_of_the_group_is_stopped_before_the_restart_decision() {
    let (mut sim, _) = Sim::new(
        "services:
  a: { command: x, stop: { signal: SIGINT, timeout: 3s }, restart: { policy: never } }",
    );
    sim.spawned("a", 10);
    assert_eq!(
        sim.exited("a", 10, EXIT0, true),
        [
            "watch a",
            "signal a SIGINT",
            "timer a 3s",
            "a: ready -> stopping"
        ]
    );
    // The group lingers past stop.timeout: SIGKILL.
    let token = sim.token("a");
    assert_eq!(acts(sim.timer("a", token)), ["signal a SIGKILL", "watch a"]);
    let unit = sim.unit("a");
    assert_eq!(
        sim.feed(Input::GroupGone { unit }),
        ["a: stopping -> exited", "exit 0"]
    );
}

#[test]
fn drain_stops_in_reverse_dependency_order() {
    let (mut sim, _) = Sim::new(
        "services:
  db: { command: x }
  api: { command: x, depends_on: [db] }
  web: { command: x, depends_on: [api] }
  solo: { command: x }",
    );
    sim.spawned("db", 10);
    sim.spawned("solo", 13);
    sim.spawned("api", 11);
    sim.spawned("web", 12);
    assert_eq!(
        acts(sim.feed(Input::Shutdown)),
        [
            "deadline 30s",
            "signal web SIGTERM",
            "timer web 10s",
            "signal solo SIGTERM",
            "timer solo 10s"
        ]
    );
    assert_eq!(
        acts(sim.exited("web", 12, ExitStatus::Signaled(15), false)),
        ["signal api SIGTERM", "timer api 10s"]
    );
    assert_eq!(
        acts(sim.exited("api", 11, EXIT0, false)),
        ["signal db SIGTERM", "timer db 10s"]
    );
    assert!(acts(sim.exited("db", 10, EXIT0, false)).is_empty());
    assert_eq!(acts(sim.exited("solo", 13, EXIT1, false)), ["exit 0"]);
}

#[test]
fn a_transitive_dependent_holds_the_stop_even_when_the_middle_has_ended() {
    let (mut sim, _) = Sim::new(
        "services:
  db: { command: x }
  migrate: { command: x, depends_on: [db] }
  web: { command: x, depends_on: { migrate: { condition: completed_successfully } } }",
    );
    sim.spawned("db", 10);
    sim.spawned("migrate", 11);
    sim.exited("migrate", 11, EXIT0, false);
    sim.spawned("web", 12);
    assert_eq!(
        acts(sim.feed(Input::Shutdown)),
        ["deadline 30s", "signal web SIGTERM", "timer web 10s"]
    );
}

#[test]
fn stop_timeout_escalates_to_sigkill_and_the_drain_exits_1() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x, stop: { timeout: 2s } }");
    sim.spawned("a", 10);
    sim.feed(Input::Shutdown);
    let token = sim.token("a");
    assert_eq!(acts(sim.timer("a", token)), ["signal a SIGKILL", "watch a"]);
    assert_eq!(
        acts(sim.exited("a", 10, ExitStatus::Signaled(9), false)),
        ["exit 1"]
    );
}

#[test]
fn second_shutdown_and_deadline_kill_everything() {
    for input in [Input::Shutdown, Input::DrainDeadline, Input::Kill] {
        let (mut sim, _) =
            Sim::new("services:\n  a: { command: x }\n  b: { command: x, depends_on: [a] }");
        sim.spawned("a", 10);
        sim.spawned("b", 11);
        sim.feed(Input::Shutdown);
        let killed = acts(sim.feed(input.clone()));
        assert_eq!(
            killed,
            [
                "kill deadline 5s",
                "signal a SIGKILL",
                "watch a",
                "signal b SIGKILL",
                "watch b"
            ],
            "{input:?}"
        );
        sim.exited("a", 10, ExitStatus::Signaled(9), false);
        assert_eq!(
            acts(sim.exited("b", 11, ExitStatus::Signaled(9), false)),
            ["exit 1"]
        );
    }
}

#[test]
fn on_exit_shutdown_drains_and_passes_its_code() {
    let (mut sim, _) = Sim::new(
        "services:
  main: { command: x, on_exit: shutdown, restart: { policy: never } }
  side: { command: x }",
    );
    sim.spawned("main", 10);
    sim.spawned("side", 11);
    assert_eq!(
        acts(sim.exited("main", 10, ExitStatus::Exited(42), false)),
        ["deadline 30s", "signal side SIGTERM", "timer side 10s"]
    );
    assert_eq!(acts(sim.exited("side", 11, EXIT0, false)), ["exit 42"]);
}

#[test]
fn on_exit_shutdown_with_a_signal_exits_128_plus_n() {
    let (mut sim, _) = Sim::new(
        "services:\n  main: { command: x, on_exit: shutdown, restart: { policy: never } }",
    );
    sim.spawned("main", 10);
    assert_eq!(
        acts(sim.exited("main", 10, ExitStatus::Signaled(9), false)),
        ["deadline 30s", "exit 137"]
    );
}

#[test]
fn all_ended_exit_codes() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }\n  b: { command: x }");
    sim.spawned("a", 10);
    sim.spawned("b", 11);
    assert!(acts(sim.exited("a", 10, EXIT0, false)).is_empty());
    assert_eq!(acts(sim.exited("b", 11, EXIT0, false)), ["exit 0"]);
}

#[test]
fn a_spawn_failure_counts_as_a_failed_run() {
    let (mut sim, _) =
        Sim::new("services:\n  a: { command: x, restart: { policy: never }, on_exit: shutdown }");
    let unit = sim.unit("a");
    let shown = sim.feed(Input::SpawnFailed {
        unit,
        message: "x: not found".into(),
        code: 127,
    });
    assert_eq!(acts(shown), ["deadline 30s", "exit 127"]);
    assert_eq!(sim.state("a"), State::Exited);
}

#[test]
fn a_service_in_backoff_is_not_restarted_by_a_drain() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }");
    sim.spawned("a", 10);
    sim.exited("a", 10, EXIT1, false);
    let token = sim.token("a");
    assert_eq!(
        sim.feed(Input::Shutdown),
        ["deadline 30s", "a: backoff -> exited", "exit 0"]
    );
    assert!(acts(sim.timer("a", token)).is_empty());
}

#[test]
fn a_spawn_in_flight_during_a_drain_is_stopped_once_it_lands() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }");
    assert_eq!(acts(sim.feed(Input::Shutdown)), ["deadline 30s"]);
    assert_eq!(
        acts(sim.spawned("a", 10)),
        ["signal a SIGTERM", "timer a 10s"]
    );
    assert_eq!(acts(sim.exited("a", 10, EXIT0, false)), ["exit 0"]);
}

#[test]
fn a_group_that_never_empties_after_sigkill_does_not_hang_the_exit() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }");
    sim.spawned("a", 10);
    sim.feed(Input::Shutdown);
    sim.feed(Input::Kill);
    assert_eq!(acts(sim.feed(Input::KillDeadline)), ["exit 1"]);
}

#[test]
fn a_drain_deadline_makes_the_exit_code_1_even_with_nothing_left_to_kill() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }");
    sim.spawned("a", 10);
    sim.feed(Input::Shutdown);
    // The service's stop timer already escalated before the drain deadline.
    let token = sim.token("a");
    sim.timer("a", token);
    sim.feed(Input::DrainDeadline);
    assert_eq!(
        acts(sim.exited("a", 10, ExitStatus::Signaled(9), false)),
        ["exit 1"]
    );
}

/// Feeds a change of verdict of probe `kind` of the current run of `name`.
fn probe(sim: &mut Sim, name: &str, kind: ProbeKind, change: Change) -> Vec<String> {
    let unit = sim.unit(name);
    let run = sim.get(name).starts;
    sim.feed(Input::Probe {
        unit,
        run,
        kind,
        change,
        message: "m".into(),
    })
}

const PROBED: &str = "services:
  db:
    command: [db]
    readiness_probe: { tcp: { port: 5432 } }
    liveness_probe: { tcp: { port: 5432 } }
  web:
    command: [web]
    depends_on: { db: { condition: ready } }
";

#[test]
fn readiness_gates_dependents_and_a_failure_never_kills() {
    let (mut sim, _) = Sim::new(PROBED);
    let shown = sim.spawned("db", 10);
    assert!(
        shown.contains(&"probes db readiness,liveness".to_string()),
        "{shown:?}"
    );
    assert_eq!(sim.state("db"), State::Running);
    assert_eq!(sim.state("web"), State::Pending);
    let shown = probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed);
    assert!(
        shown.contains(&"db: running -> ready".to_string()),
        "{shown:?}"
    );
    assert!(shown.contains(&"spawn web".to_string()), "{shown:?}");
    // Not ready again: back to running, and nothing is signalled.
    let shown = probe(&mut sim, "db", ProbeKind::Readiness, Change::Failed);
    assert!(
        shown.contains(&"db: ready -> running".to_string()),
        "{shown:?}"
    );
    assert!(!shown.iter().any(|s| s.starts_with("signal")), "{shown:?}");
}

#[test]
fn liveness_failure_stops_then_restarts_as_a_failure() {
    let (mut sim, _) = Sim::new(PROBED);
    sim.spawned("db", 10);
    let shown = probe(&mut sim, "db", ProbeKind::Liveness, Change::Failed);
    assert!(shown.contains(&"stop probes db".to_string()), "{shown:?}");
    assert!(
        shown.contains(&"signal db SIGTERM".to_string()),
        "{shown:?}"
    );
    assert_eq!(sim.state("db"), State::Stopping);
    // It exits 0 on SIGTERM, yet the run failed: on-failure restarts it, saying why.
    let shown = sim.exited("db", 10, EXIT0, false);
    assert!(
        shown.contains(&"db: stopping -> backoff".to_string()),
        "{shown:?}"
    );
    let unit = sim.unit("db");
    assert!(
        sim.get("db")
            .reason
            .starts_with("liveness probe failed; exited with exit code 0; restarting"),
        "{}",
        sim.get("db").reason
    );
    let snapshot = sim.core.snapshot(unit).expect("present");
    assert_eq!(
        snapshot.restarts_by_reason.iter().collect::<Vec<_>>(),
        RestartReason::ALL
            .iter()
            .map(|&r| (r, u64::from(r == RestartReason::Liveness)))
            .collect::<Vec<_>>(),
        "one liveness restart"
    );
    assert_eq!(
        snapshot.exits,
        ExitCounts {
            success: 1,
            failure: 0,
            signal: 0
        }
    );
    // Results of the old run are ignored once it has ended.
    let shown = probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed);
    assert!(shown.is_empty(), "{shown:?}");
}

#[test]
fn startup_probe_holds_the_others_and_its_failure_under_never_ends_failed() {
    let (mut sim, _) = Sim::new(
        "services:
  app:
    command: [app]
    restart: { policy: never }
    startup_probe: { exec: { command: [check] } }
    readiness_probe: { exec: { command: [check] } }
",
    );
    let shown = sim.spawned("app", 10);
    assert!(
        shown.contains(&"probes app startup".to_string()),
        "{shown:?}"
    );
    assert!(!shown.iter().any(|s| s.contains("readiness")), "{shown:?}");
    let shown = probe(&mut sim, "app", ProbeKind::Startup, Change::Passed);
    assert!(
        shown.contains(&"probes app readiness".to_string()),
        "{shown:?}"
    );
    // A new run: the startup probe fails and, under `never`, the service ends failed.
    let (mut sim, _) = Sim::new(
        "services:
  app:
    command: [app]
    restart: { policy: never }
    startup_probe: { exec: { command: [check] } }
",
    );
    sim.spawned("app", 10);
    probe(&mut sim, "app", ProbeKind::Startup, Change::Failed);
    let shown = sim.exited("app", 10, ExitStatus::Signaled(15), false);
    assert!(
        shown.contains(&"app: stopping -> failed".to_string()),
        "{shown:?}"
    );
    assert!(shown.contains(&"exit 1".to_string()), "{shown:?}");
}

#[test]
fn restarts_are_counted_by_reason_and_exits_by_outcome() {
    let (mut sim, _) = Sim::new(
        "services:\n  a: { command: [a], restart: { policy: always, backoff: { initial: 0s } } }\n",
    );
    sim.spawned("a", 10);
    sim.exited("a", 10, EXIT1, false);
    sim.spawned("a", 11);
    sim.exited("a", 11, ExitStatus::Signaled(9), false);
    sim.spawned("a", 12);
    sim.exited("a", 12, EXIT0, false);
    let snapshot = sim.core.snapshot(sim.unit("a")).expect("present");
    // exit, signal, exit (always restarts after 0 too).
    let counts = snapshot.restarts_by_reason;
    assert_eq!(
        RestartReason::ALL.map(|r| counts.get(r)),
        [2, 1, 0, 0, 0, 0, 0, 0, 0],
        "as ALL orders them: exit, signal, ..."
    );
    assert_eq!(
        snapshot.exits,
        ExitCounts {
            success: 1,
            failure: 1,
            signal: 1
        }
    );
    assert_eq!(snapshot.probes, Vec::<ProbeKind>::new());
}

const RELOAD_BASE: &str = "services:
  db: { command: [sleep, \"1\"] }
  web: { command: [sleep, \"2\"], depends_on: [db] }
  old: { command: [sleep, \"3\"] }
  older: { command: [sleep, \"4\"], depends_on: [old] }";

/// A simulation of `RELOAD_BASE` with every service running: db 10, web 11, old 12, older 13.
fn running_base() -> Sim {
    let (mut sim, _) = Sim::new(RELOAD_BASE);
    sim.spawned("db", 10);
    sim.spawned("old", 12);
    sim.spawned("web", 11);
    sim.spawned("older", 13);
    sim
}

#[test]
fn reload_restarts_only_what_changed_and_starts_what_is_added() {
    let mut sim = running_base();
    let (plan, shown) = sim.reload(
        "services:
  db: { command: [sleep, \"1\"] }
  web: { command: [sleep, \"22\"], depends_on: [db] }
  old: { command: [sleep, \"3\"] }
  older: { command: [sleep, \"4\"], depends_on: [old] }
  api: { command: [sleep, \"5\"], depends_on: [db] }",
    );
    assert_eq!(plan, "+api ~web =db,old,older");
    // Only web is signalled; api starts at once (db is running).
    assert_eq!(
        acts(shown),
        ["signal web SIGTERM", "timer web 10s", "spawn api"]
    );
    // web's process exits: it starts again with the new command, counted as a reload restart.
    let after = sim.exited("web", 11, ExitStatus::Signaled(15), false);
    assert_eq!(acts(after), ["spawn web"]);
    assert_eq!(
        &**sim
            .core
            .spec(sim.unit("web"))
            .expect("present")
            .command
            .argv()
            .last()
            .expect("arg"),
        "22"
    );
    let web = sim.core.snapshot(sim.unit("web")).expect("present");
    assert_eq!(web.restarts_by_reason.get(RestartReason::Reload), 1);
}

#[test]
fn reload_stops_removed_services_in_reverse_order_and_forgets_them() {
    let mut sim = running_base();
    let (plan, shown) = sim.reload(
        "services:
  db: { command: [sleep, \"1\"] }
  web: { command: [sleep, \"2\"], depends_on: [db] }",
    );
    assert_eq!(plan, "-old,older =db,web");
    // older depends on old: it stops first.
    assert_eq!(acts(shown), ["signal older SIGTERM", "timer older 10s"]);
    let after = sim.exited("older", 13, ExitStatus::Signaled(15), false);
    assert!(
        after.contains(&"older: stopping -> exited".to_string()),
        "{after:?}"
    );
    assert!(acts(after).starts_with(&["signal old SIGTERM".to_string()]));
    sim.exited("old", 12, ExitStatus::Signaled(15), false);
    assert!(sim.id_of("old").is_none() && sim.id_of("older").is_none());
    assert!(sim.id_of("db").is_some());
    // A drain now stops the two that remain, and drover exits 0.
    let drain = acts(sim.feed(Input::Shutdown));
    assert_eq!(
        drain,
        ["deadline 30s", "signal web SIGTERM", "timer web 10s"]
    );
}

#[test]
fn reload_of_probes_or_policy_never_signals_the_process() {
    let (mut sim, _) = Sim::new(
        "services:
  web: { command: [sleep, \"2\"], readiness_probe: { tcp: { port: 80 } } }",
    );
    sim.spawned("web", 11);
    let (plan, shown) = sim.reload(
        "services:
  web:
    command: [sleep, \"2\"]
    readiness_probe: { tcp: { port: 81 } }
    restart: { policy: always }",
    );
    assert_eq!(plan, "*web");
    assert_eq!(acts(shown), ["stop probes web", "probes web readiness"]);
    // Removing the readiness probe makes it ready at once, still without a signal.
    let (_, shown) = sim.reload("services:\n  web: { command: [sleep, \"2\"] }");
    assert_eq!(shown, ["stop probes web", "web: running -> ready"]);
    // The same manifest again: nothing at all.
    let (plan, shown) = sim.reload("services:\n  web: { command: [sleep, \"2\"] }");
    assert_eq!(plan, "=web");
    assert!(shown.is_empty());
}

#[test]
fn reload_during_a_drain_changes_nothing() {
    let mut sim = running_base();
    sim.feed(Input::Shutdown);
    let manifest = drover_spec::load_str("services:\n  x: { command: y }", Path::new("/t/d.yaml"))
        .expect("valid");
    assert!(
        sim.core
            .reload(
                manifest.services.into_values().collect(),
                Shutdown {
                    timeout: Duration::from_secs(1),
                    delay: Duration::ZERO,
                },
                sim.now
            )
            .is_none()
    );
}

#[test]
fn a_changed_service_waiting_to_restart_starts_at_once_with_its_new_spec() {
    let (mut sim, _) = Sim::new(
        "services:
  a: { command: x, restart: { backoff: { initial: 10s, jitter: 0 } } }",
    );
    sim.spawned("a", 10);
    sim.exited("a", 10, EXIT1, false);
    assert_eq!(sim.state("a"), State::Backoff);
    let (plan, shown) = sim.reload("services:\n  a: { command: y }");
    assert_eq!(plan, "~a");
    assert_eq!(acts(shown), ["spawn a"]);
    // The backoff timer of the old spec is stale now.
    let token = sim.token("a");
    assert!(acts(sim.timer("a", token - 1)).is_empty());
    let _ = sim.gone("a");
}

#[test]
fn a_dependent_waits_for_the_new_run_of_a_restarted_dependency() {
    let (mut sim, _) = Sim::new(
        "services:
  migrate: { command: m1, restart: { policy: never } }
  app: { command: a1, depends_on: { migrate: { condition: completed_successfully } } }",
    );
    sim.spawned("migrate", 10);
    sim.exited("migrate", 10, EXIT0, false);
    sim.spawned("app", 11);
    // Both change: app stops and must wait for the new migration to succeed.
    let (plan, shown) = sim.reload(
        "services:
  migrate: { command: m2, restart: { policy: never } }
  app: { command: a2, depends_on: { migrate: { condition: completed_successfully } } }",
    );
    assert_eq!(plan, "~migrate,app");
    assert_eq!(
        acts(shown),
        ["signal app SIGTERM", "timer app 10s", "spawn migrate"]
    );
    let after = sim.exited("app", 11, ExitStatus::Signaled(15), false);
    assert!(acts(after).is_empty(), "app waits for the new migration");
    sim.spawned("migrate", 12);
    assert_eq!(acts(sim.exited("migrate", 12, EXIT0, false)), ["spawn app"]);
}

#[test]
fn a_blocked_service_starts_once_a_reload_fixes_its_dependency() {
    let (mut sim, _) = Sim::new(
        "services:
  db: { command: bad, restart: { policy: never } }
  web: { command: w, depends_on: { db: { condition: completed_successfully } } }
  other: { command: o }",
    );
    sim.spawned("db", 10);
    sim.spawned("other", 11);
    sim.exited("db", 10, EXIT1, false);
    assert!(sim.get("web").reason.starts_with("blocked"));
    let (plan, shown) = sim.reload(
        "services:
  db: { command: good, restart: { policy: never } }
  web: { command: w, depends_on: { db: { condition: completed_successfully } } }
  other: { command: o }",
    );
    assert_eq!(plan, "~db =web,other");
    assert_eq!(acts(shown), ["spawn db"]);
    assert_eq!(sim.get("web").reason, "waiting to start");
    sim.spawned("db", 12);
    assert_eq!(acts(sim.exited("db", 12, EXIT0, false)), ["spawn web"]);
}

#[test]
fn a_service_added_back_while_it_stops_is_the_same_unit() {
    let (mut sim, _) = Sim::new(
        "services:
  a: { command: x }
  web: { command: w }",
    );
    sim.spawned("a", 10);
    sim.spawned("web", 11);
    let (_, shown) = sim.reload("services:\n  a: { command: x }");
    assert_eq!(acts(shown), ["signal web SIGTERM", "timer web 10s"]);
    // Undo before it has stopped: no second process beside the first.
    let (plan, shown) = sim.reload("services:\n  a: { command: x }\n  web: { command: w }");
    assert_eq!(plan, "+web =a");
    assert!(
        acts(shown).is_empty(),
        "nothing spawned while the old one stops"
    );
    assert_eq!(sim.core.len(), 2);
    assert_eq!(
        acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)),
        ["spawn web"]
    );
    assert!(sim.get("web").removal.is_none());
}

#[test]
fn a_removed_service_frees_its_slot_and_its_stale_id_reaches_nothing() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }\n  b: { command: y }");
    sim.spawned("a", 10);
    sim.spawned("b", 11);
    let old_b = sim.unit("b");
    let old_token = sim.token("b");
    sim.reload("services:\n  a: { command: x }");
    // Its last change, then its id is forgotten.
    let actions = sim.core.handle(
        Input::Exited {
            unit: old_b,
            pid: Pid::from_raw(11),
            status: ExitStatus::Signaled(15),
            group_alive: false,
        },
        sim.now,
    );
    assert!(
        matches!(actions.as_slice(), [Action::Publish(id, _), Action::Forget(gone)] if *id == old_b && *gone == old_b),
        "{actions:?}"
    );
    assert!(sim.core.snapshot(old_b).is_none());
    // A new service takes the freed slot under a new id.
    let (plan, shown) = sim.reload("services:\n  a: { command: x }\n  c: { command: z }");
    assert_eq!(plan, "+c =a");
    assert_eq!(acts(shown), ["spawn c"]);
    let c = sim.unit("c");
    assert_eq!(c.index(), old_b.index());
    assert_ne!(c, old_b);
    sim.spawned("c", 12);
    // Whatever still carries b's id (a late exit, timer, probe, spawn, watchdog, datagram)
    // changes nothing, and c runs on.
    let stale = [
        Input::Exited {
            unit: old_b,
            pid: Pid::from_raw(12),
            status: EXIT1,
            group_alive: false,
        },
        Input::GroupGone { unit: old_b },
        Input::Timer {
            unit: old_b,
            token: old_token + 1,
        },
        Input::Spawned {
            unit: old_b,
            pid: Pid::from_raw(13),
        },
        Input::SpawnFailed {
            unit: old_b,
            message: "m".into(),
            code: 1,
        },
        Input::Probe {
            unit: old_b,
            run: 1,
            kind: ProbeKind::Liveness,
            change: Change::Failed,
            message: "m".into(),
        },
        Input::Watchdog {
            unit: old_b,
            run: 1,
            message: "m".into(),
        },
        Input::Status {
            unit: old_b,
            text: "t".into(),
        },
    ];
    for input in stale {
        assert!(sim.feed(input.clone()).is_empty(), "{input:?}");
    }
    assert_eq!(sim.state("c"), State::Ready);
    assert_eq!(sim.get("c").starts, 1);
}

#[test]
fn adding_and_removing_services_in_a_loop_reuses_the_same_slots() {
    let (mut sim, _) = Sim::new("services:\n  a: { command: x }");
    sim.spawned("a", 10);
    for round in 0..100 {
        sim.reload("services:\n  a: { command: x }\n  b: { command: y }");
        sim.spawned("b", 100 + round);
        sim.reload("services:\n  a: { command: x }");
        sim.exited("b", 100 + round, ExitStatus::Signaled(15), false);
        assert!(sim.id_of("b").is_none());
    }
    assert_eq!((sim.core.len(), sim.core.units.capacity()), (1, 2));
}

#[test]
fn a_drain_stops_a_services_probes_with_its_stop_signal() {
    let (mut sim, _) = Sim::new(PROBED);
    sim.spawned("db", 10);
    probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed);
    sim.spawned("web", 11);
    // web (no probes) stops first; db's probes stop as its stop signal goes, not at its exit.
    assert_eq!(
        acts(sim.feed(Input::Shutdown)),
        ["deadline 30s", "signal web SIGTERM", "timer web 10s"]
    );
    assert_eq!(
        acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)),
        ["stop probes db", "signal db SIGTERM", "timer db 10s"]
    );
    assert_eq!(
        acts(sim.exited("db", 10, ExitStatus::Signaled(15), false)),
        ["exit 0"]
    );
}

/// Only the answers to operations by hand.
fn answers(shown: Vec<String>) -> Vec<String> {
    shown
        .into_iter()
        .filter(|s| s.starts_with("answer"))
        .collect()
}

#[test]
fn a_service_stopped_by_hand_stays_stopped_until_started_by_hand() {
    let (mut sim, _) = Sim::new("services:\n  web: { command: w, restart: { policy: always } }");
    sim.spawned("web", 10);
    assert_eq!(
        acts(sim.operate("web", HandOp::Stop, 1)),
        ["answer 1 accepted", "signal web SIGTERM", "timer web 10s"]
    );
    // Its exit is not a failure and no policy brings it back.
    assert_eq!(
        sim.exited("web", 10, ExitStatus::Signaled(15), false),
        ["web: stopping -> stopped", "answer 1 done: stopped"]
    );
    assert_eq!(
        acts(sim.operate("web", HandOp::Stop, 2)),
        ["answer 2 done: already stopped"]
    );
    // A reload leaves it stopped, unchanged or changed; its next start runs the new spec.
    let (plan, shown) = sim.reload("services:\n  web: { command: w, restart: { policy: always } }");
    assert_eq!((plan.as_str(), shown.len()), ("=web", 0));
    let (plan, shown) =
        sim.reload("services:\n  web: { command: w2, restart: { policy: always } }");
    assert_eq!((plan.as_str(), shown.len()), ("~web", 0));
    assert_eq!(sim.state("web"), State::Stopped);
    assert_eq!(
        sim.operate("web", HandOp::Start, 3),
        [
            "answer 3 accepted",
            "web: stopped -> pending",
            "web: pending -> starting",
            "spawn web"
        ]
    );
    assert_eq!(
        answers(sim.spawned("web", 11)),
        ["answer 3 done: running as pid 11"]
    );
    assert_eq!(
        sim.get("web")
            .spec
            .command
            .argv()
            .last()
            .map(String::as_str),
        Some("w2")
    );
    assert_eq!(
        acts(sim.operate("web", HandOp::Start, 4)),
        ["answer 4 done: already running as pid 11"]
    );
}

#[test]
fn a_hundred_restarts_at_once_make_one_stop_and_one_new_run() {
    let (mut sim, _) = Sim::new("services:\n  web: { command: w }");
    sim.spawned("web", 10);
    let mut shown = Vec::new();
    for ticket in 0..100 {
        shown.extend(acts(sim.operate("web", HandOp::Restart, ticket)));
    }
    assert_eq!(shown.iter().filter(|s| s.starts_with("signal")).count(), 1);
    assert_eq!(
        shown.iter().filter(|s| s.ends_with("accepted")).count(),
        100
    );
    // The old run crashes on its own meanwhile: still one new run, at once, counted by hand.
    let after = acts(sim.exited("web", 10, EXIT1, false));
    assert_eq!(after, ["spawn web"]);
    let done = answers(sim.spawned("web", 11));
    assert_eq!(done.len(), 100);
    assert!(done.iter().all(|a| a.ends_with("done: running as pid 11")));
    let counts = sim
        .core
        .snapshot(sim.unit("web"))
        .expect("present")
        .restarts_by_reason;
    assert_eq!((counts.get(RestartReason::Manual), counts.total()), (1, 1));
}

#[test]
fn a_hand_start_of_a_crash_looping_service_skips_its_backoff() {
    let (mut sim, _) = Sim::new(
        "services:\n  a: { command: x, restart: { backoff: { initial: 10s, jitter: 0 } } }",
    );
    sim.spawned("a", 10);
    sim.exited("a", 10, EXIT1, false);
    assert_eq!(sim.state("a"), State::Backoff);
    let token = sim.token("a");
    assert_eq!(
        acts(sim.operate("a", HandOp::Restart, 1)),
        ["answer 1 accepted", "spawn a"]
    );
    // The backoff's timer is stale; the spawn that lands answers.
    assert!(acts(sim.timer("a", token)).is_empty());
    assert_eq!(
        answers(sim.spawned("a", 11)),
        ["answer 1 done: running as pid 11"]
    );
    // A start that fails to spawn answers with the reason.
    sim.exited("a", 11, EXIT1, false);
    sim.operate("a", HandOp::Start, 2);
    let failed = answers(sim.feed(Input::SpawnFailed {
        unit: sim.unit("a"),
        message: "no such file".into(),
        code: 127,
    }));
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with("answer 2 failed: cannot start: no such file"),
        "{failed:?}"
    );
}

#[test]
fn stop_and_start_in_flight_fold_into_the_one_run_being_spawned_or_stopped() {
    let (mut sim, first) = Sim::new("services:\n  web: { command: w }");
    assert_eq!(acts(first), ["spawn web"]);
    // Stopped while its spawn is in flight: stopped as soon as it lands.
    assert_eq!(
        acts(sim.operate("web", HandOp::Stop, 1)),
        ["answer 1 accepted"]
    );
    assert_eq!(
        acts(sim.spawned("web", 10)),
        ["signal web SIGTERM", "timer web 10s"]
    );
    // Started again before it has stopped: the stop is called off, a new run follows.
    assert_eq!(
        answers(sim.operate("web", HandOp::Start, 2)),
        [
            "answer 1 failed: started again by hand before it stopped",
            "answer 2 accepted"
        ]
    );
    assert_eq!(
        acts(sim.exited("web", 10, ExitStatus::Signaled(15), false)),
        ["spawn web"]
    );
    assert_eq!(
        answers(sim.spawned("web", 11)),
        ["answer 2 done: running as pid 11"]
    );
}

#[test]
fn operations_during_a_drain_are_refused_and_waiting_ones_fail() {
    let (mut sim, _) = Sim::new(
        "services:
  db: { command: d, readiness_probe: { tcp: { port: 1 } } }
  web: { command: w, depends_on: { db: { condition: ready } } }",
    );
    sim.spawned("db", 10);
    sim.operate("web", HandOp::Stop, 1);
    assert_eq!(sim.state("web"), State::Stopped);
    // Waiting for db to be ready: the start waits, then the drain ends the wait.
    assert_eq!(
        acts(sim.operate("web", HandOp::Start, 2)),
        ["answer 2 accepted"]
    );
    let drain = answers(sim.feed(Input::Shutdown));
    assert_eq!(drain, ["answer 2 failed: drover is shutting down"]);
    assert_eq!(
        acts(sim.operate("db", HandOp::Restart, 3)),
        ["answer 3 failed: drover is shutting down"]
    );
}

#[test]
fn a_stopped_service_is_no_failure_and_does_not_end_drover() {
    let (mut sim, _) = Sim::new(
        "services:
  job: { command: j, on_exit: shutdown, restart: { policy: never } }
  web: { command: w }",
    );
    sim.spawned("job", 10);
    sim.spawned("web", 11);
    sim.operate("job", HandOp::Stop, 1);
    // on_exit: shutdown does not fire for a stop by hand.
    let shown = sim.exited("job", 10, EXIT1, false);
    assert!(
        !shown
            .iter()
            .any(|s| s.starts_with("deadline") || s.starts_with("exit")),
        "{shown:?}"
    );
    assert_eq!(sim.state("job"), State::Stopped);
    // Everything else ending leaves drover running: the stopped one may be started.
    sim.operate("web", HandOp::Stop, 2);
    let shown = sim.exited("web", 11, EXIT0, false);
    assert!(!shown.iter().any(|s| s.starts_with("exit")), "{shown:?}");
}

#[test]
fn a_stop_drain_marks_the_service_not_ready_and_waits_before_the_signal() {
    let (mut sim, _) = Sim::new(
        "services:
  web: { command: w, stop: { drain: 1s } }",
    );
    sim.spawned("web", 10);
    assert_eq!(
        sim.feed(Input::Shutdown),
        ["deadline 30s", "timer web 1s", "web: ready -> stopping"]
    );
    assert!(
        sim.get("web")
            .reason
            .contains("not ready; draining for 1s before SIGTERM")
    );
    // The drain's end sends the signal, and stop.timeout counts from there.
    let token = sim.token("web");
    assert_eq!(
        acts(sim.timer("web", token)),
        ["signal web SIGTERM", "timer web 10s"]
    );
    assert_eq!(
        acts(sim.exited("web", 10, ExitStatus::Signaled(15), false)),
        ["exit 0"]
    );
    // A hand restart drains too; a main process that exits while draining gets its group
    // signalled at once.
    let (mut sim, _) = Sim::new(
        "services:
  web: { command: w, stop: { drain: 2s } }",
    );
    sim.spawned("web", 10);
    assert_eq!(
        acts(sim.operate("web", HandOp::Restart, 1)),
        ["answer 1 accepted", "timer web 2s"]
    );
    assert_eq!(
        acts(sim.exited("web", 10, EXIT0, true)),
        ["watch web", "signal web SIGTERM", "timer web 10s"]
    );
}

#[test]
fn a_shutdown_delay_marks_everything_not_ready_and_stops_nothing_until_it_ends() {
    let (mut sim, _) = Sim::new(
        "settings: { shutdown_delay: 5s }
services:
  db: { command: d, readiness_probe: { tcp: { port: 1 } } }
  web: { command: w }",
    );
    sim.spawned("db", 10);
    probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed);
    sim.spawned("web", 11);
    let shown = sim.feed(Input::Shutdown);
    assert_eq!(
        shown,
        [
            "deadline 30s",
            "db: ready -> running",
            "web: ready -> running",
            "delay 5s"
        ]
    );
    // A readiness pass meanwhile changes nothing; a second signal would still kill.
    assert!(probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed).is_empty());
    assert_eq!(
        acts(sim.feed(Input::DelayOver)),
        [
            "stop probes db",
            "signal db SIGTERM",
            "timer db 10s",
            "signal web SIGTERM",
            "timer web 10s"
        ]
    );
    // on_exit: shutdown has no delay (the delay is for a stop signal).
    let (mut sim, _) = Sim::new(
        "settings: { shutdown_delay: 5s }
services:
  job: { command: j, on_exit: shutdown, restart: { policy: never } }
  web: { command: w }",
    );
    sim.spawned("job", 10);
    sim.spawned("web", 11);
    assert_eq!(
        acts(sim.exited("job", 10, EXIT0, false)),
        ["deadline 30s", "signal web SIGTERM", "timer web 10s"]
    );
}

#[test]
fn restart_true_restarts_a_dependent_with_its_dependency_once_the_condition_holds_again() {
    let (mut sim, _) = Sim::new(
        "services:
  db:
    command: d
    readiness_probe: { tcp: { port: 1 } }
    restart: { backoff: { initial: 1s, jitter: 0 } }
  web: { command: w, depends_on: { db: { condition: ready, restart: true } } }
  other: { command: o, depends_on: { db: { condition: ready } } }",
    );
    sim.spawned("db", 10);
    probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed);
    sim.spawned("web", 11);
    sim.spawned("other", 12);
    // db crashes: web stops (other, without restart: true, keeps its process).
    let shown = acts(sim.exited("db", 10, EXIT1, false));
    assert_eq!(
        shown,
        [
            "stop probes db",
            "timer db 1s",
            "signal web SIGTERM",
            "timer web 10s"
        ]
    );
    // web's run ends; it waits for db to be ready again.
    assert!(acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)).is_empty());
    assert_eq!(sim.state("web"), State::Pending);
    let token = sim.token("db");
    assert_eq!(acts(sim.timer("db", token)), ["spawn db"]);
    sim.spawned("db", 13);
    let shown = acts(probe(&mut sim, "db", ProbeKind::Readiness, Change::Passed));
    assert_eq!(shown, ["spawn web"]);
    let web = sim.core.snapshot(sim.unit("web")).expect("present");
    assert_eq!(web.restarts_by_reason.get(RestartReason::Dependency), 1);
    assert_eq!(sim.state("other"), State::Ready, "other kept running");
}

#[test]
fn restart_true_with_condition_started_waits_for_the_dependencys_next_run() {
    let (mut sim, _) = Sim::new(
        "services:
  db: { command: d, restart: { backoff: { initial: 4s, jitter: 0 } } }
  web: { command: w, depends_on: { db: { restart: true } } }",
    );
    sim.spawned("db", 10);
    sim.spawned("web", 11);
    assert_eq!(
        acts(sim.exited("db", 10, EXIT1, false)),
        ["timer db 4s", "signal web SIGTERM", "timer web 10s"]
    );
    // web's run ends while db waits out its backoff: web waits too, not starting at once.
    assert!(acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)).is_empty());
    let token = sim.token("db");
    assert_eq!(acts(sim.timer("db", token)), ["spawn db"]);
    assert_eq!(acts(sim.spawned("db", 12)), ["spawn web"]);
}

#[test]
fn restart_true_reaches_a_dependent_that_waits_to_restart_or_is_being_spawned() {
    let yaml = "services:
  db: { command: d, restart: { backoff: { initial: 5s, jitter: 0 } } }
  web:
    command: w
    restart: { backoff: { initial: 2s, jitter: 0 } }
    depends_on: { db: { restart: true } }";
    // web in backoff when db crashes: it waits for db, not for its own timer.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("db", 10);
    sim.spawned("web", 11);
    sim.exited("web", 11, EXIT1, false);
    assert_eq!(sim.state("web"), State::Backoff);
    let web_timer = sim.token("web");
    sim.exited("db", 10, EXIT1, false);
    assert_eq!(sim.state("web"), State::Pending);
    assert!(
        acts(sim.timer("web", web_timer)).is_empty(),
        "its backoff timer is stale"
    );
    let token = sim.token("db");
    sim.timer("db", token);
    assert_eq!(acts(sim.spawned("db", 12)), ["spawn web"]);
    // web being spawned when db crashes: it is stopped as soon as it lands, then waits.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("db", 10);
    assert_eq!(sim.state("web"), State::Starting);
    sim.exited("db", 10, EXIT1, false);
    assert_eq!(
        acts(sim.spawned("web", 11)),
        ["signal web SIGTERM", "timer web 10s"]
    );
    assert!(acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)).is_empty());
    assert_eq!(sim.state("web"), State::Pending);
}

impl Sim {
    fn hooks_done(&mut self, name: &str, kind: HookKind, result: Result<(), &str>) -> Vec<String> {
        let unit = self.unit(name);
        let run = self.get(name).starts;
        self.feed(Input::HooksDone {
            unit,
            run,
            kind,
            result: result.map_err(str::to_string),
        })
    }
}

#[test]
fn pre_stop_runs_after_the_drain_and_stop_timeout_counts_from_its_start() {
    let (mut sim, _) = Sim::new(
        "services:
  web: { command: w, stop: { drain: 1s, timeout: 5s }, pre_stop: [{ command: q }] }",
    );
    sim.spawned("web", 10);
    assert_eq!(
        acts(sim.feed(Input::Shutdown)),
        ["deadline 30s", "timer web 1s"]
    );
    assert!(
        sim.get("web")
            .reason
            .contains("draining for 1s before pre_stop")
    );
    let token = sim.token("web");
    assert_eq!(
        acts(sim.timer("web", token)),
        ["timer web 5s", "hooks web pre_stop within 5s"]
    );
    // Done: the signal goes, and SIGKILL stays due 5s after the hooks began.
    let token = sim.token("web");
    assert_eq!(
        acts(sim.hooks_done("web", HookKind::PreStop, Ok(()))),
        ["signal web SIGTERM"]
    );
    assert_eq!(sim.token("web"), token);
    assert!(
        sim.get("web")
            .reason
            .starts_with("pre_stop done; stopping with SIGTERM")
    );
    assert_eq!(
        acts(sim.timer("web", token)),
        ["signal web SIGKILL", "watch web"]
    );
    // A late answer changes nothing.
    assert!(acts(sim.hooks_done("web", HookKind::PreStop, Ok(()))).is_empty());
}

#[test]
fn a_pre_stop_that_overruns_is_killed_and_a_failing_one_does_not_stop_the_stop() {
    let yaml = "services:
  web: { command: w, stop: { timeout: 5s }, pre_stop: [{ command: q }] }";
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("web", 10);
    assert_eq!(
        acts(sim.operate("web", HandOp::Stop, 1)),
        [
            "answer 1 accepted",
            "timer web 5s",
            "hooks web pre_stop within 5s"
        ]
    );
    let token = sim.token("web");
    assert_eq!(
        acts(sim.timer("web", token)),
        ["stop hooks web", "signal web SIGTERM", "timer web 2s"]
    );
    assert!(
        sim.get("web")
            .reason
            .contains("pre_stop still running when stop.timeout (5s) ran out")
    );
    assert!(acts(sim.hooks_done("web", HookKind::PreStop, Err("late"))).is_empty());

    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("web", 10);
    sim.operate("web", HandOp::Stop, 1);
    assert_eq!(
        acts(sim.hooks_done("web", HookKind::PreStop, Err("pre_stop[0]: exit code 3"))),
        ["signal web SIGTERM"]
    );
    assert!(
        sim.get("web")
            .reason
            .starts_with("pre_stop failed (pre_stop[0]: exit code 3)")
    );

    // The main process ends during pre_stop: the hooks are killed, the group signalled.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("web", 10);
    sim.operate("web", HandOp::Stop, 1);
    assert_eq!(
        acts(sim.exited("web", 10, EXIT0, true)),
        [
            "stop hooks web",
            "watch web",
            "signal web SIGTERM",
            "timer web 5s"
        ]
    );
    // Or SIGKILL for everything (a drain's deadline): the hooks go too.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("web", 10);
    sim.operate("web", HandOp::Stop, 1);
    assert_eq!(
        acts(sim.feed(Input::Kill)),
        [
            "kill deadline 5s",
            "stop hooks web",
            "signal web SIGKILL",
            "watch web"
        ]
    );
}

#[test]
fn post_start_holds_the_probes_back_and_a_failure_fails_the_run() {
    let yaml = "services:
  web: { command: w, post_start: [{ command: warm }], liveness_probe: { tcp: { port: 1 } } }
  app: { command: a, depends_on: { web: { condition: ready } } }";
    let (mut sim, _) = Sim::new(yaml);
    // Started, not ready: the hooks run first, and the probes wait for them.
    assert_eq!(
        sim.spawned("web", 10),
        ["web: starting -> running", "hooks web post_start"]
    );
    assert_eq!(sim.get("web").reason, "started; running post_start");
    assert_eq!(
        sim.hooks_done("web", HookKind::PostStart, Ok(())),
        [
            "web: running -> running",
            "probes web liveness",
            "web: running -> ready",
            "app: pending -> starting",
            "spawn app"
        ]
    );
    // A failing one stops the run as a failure, restarted by its policy for `post_start`.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("web", 10);
    assert_eq!(
        acts(sim.hooks_done(
            "web",
            HookKind::PostStart,
            Err("post_start[0]: exit code 1")
        )),
        ["signal web SIGTERM", "timer web 10s"]
    );
    assert!(
        sim.get("web")
            .reason
            .starts_with("post_start failed (post_start[0]: exit code 1)")
    );
    sim.exited("web", 10, ExitStatus::Signaled(15), false);
    assert_eq!(sim.state("web"), State::Backoff);
    assert_eq!(sim.get("web").restarts.get(RestartReason::PostStart), 1);
    // Stopped while its post_start runs: the hooks are killed; an answer for an old run is
    // ignored.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("web", 10);
    let shown = acts(sim.operate("web", HandOp::Stop, 1));
    assert_eq!(
        shown,
        [
            "answer 1 accepted",
            "stop hooks web",
            "signal web SIGTERM",
            "timer web 10s"
        ]
    );
    assert!(acts(sim.hooks_done("web", HookKind::PostStart, Ok(()))).is_empty());
}

#[test]
fn a_planned_restart_stops_its_restart_true_dependents_first_in_dependency_order() {
    let yaml = "services:
  db: { command: d }
  web: { command: w, depends_on: { db: { condition: ready, restart: true } } }
  edge: { command: e, depends_on: { web: { restart: true } } }
  other: { command: o, depends_on: [db] }";
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("db", 10);
    sim.spawned("web", 11);
    sim.spawned("other", 12);
    sim.spawned("edge", 13);
    // `drover restart db`: edge stops first, then web, then db; other keeps running.
    assert_eq!(
        acts(sim.operate("db", HandOp::Restart, 1)),
        ["answer 1 accepted", "signal edge SIGTERM", "timer edge 10s"]
    );
    assert!(
        sim.get("db")
            .reason
            .contains("stopping after its dependents with restart: true (web)"),
        "{}",
        sim.get("db").reason
    );
    assert_eq!(sim.state("db"), State::Ready, "db still serves meanwhile");
    assert_eq!(
        acts(sim.exited("edge", 13, ExitStatus::Signaled(15), false)),
        ["signal web SIGTERM", "timer web 10s"]
    );
    assert_eq!(
        sim.state("edge"),
        State::Pending,
        "edge waits for web's next run"
    );
    assert_eq!(
        acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)),
        ["signal db SIGTERM", "timer db 10s"]
    );
    // Neither starts against the old db, and each starts once its dependency is back.
    assert_eq!(
        acts(sim.exited("db", 10, ExitStatus::Signaled(15), false)),
        ["spawn db"]
    );
    assert_eq!(
        acts(sim.spawned("db", 14)),
        ["answer 1 done: running as pid 14", "spawn web"]
    );
    assert_eq!(acts(sim.spawned("web", 15)), ["spawn edge"]);
    assert_eq!(sim.state("other"), State::Ready);
    for name in ["web", "edge"] {
        let snapshot = sim.core.snapshot(sim.unit(name)).expect("present");
        assert_eq!(
            snapshot.restarts_by_reason.get(RestartReason::Dependency),
            1,
            "{name}"
        );
    }

    // A reload that changes db does the same; if db crashes meanwhile, the held stop is
    // dropped and web waits for db's next run all the same.
    let (mut sim, _) = Sim::new(yaml);
    sim.spawned("db", 10);
    sim.spawned("web", 11);
    sim.spawned("other", 12);
    sim.spawned("edge", 13);
    let (plan, shown) = sim.reload(&yaml.replace("command: d", "command: d2"));
    assert!(plan.contains("~db"), "{plan}");
    assert_eq!(acts(shown), ["signal edge SIGTERM", "timer edge 10s"]);
    sim.exited("db", 10, EXIT1, false);
    assert!(sim.get("db").deferred.is_none());
    assert_eq!(
        sim.state("db"),
        State::Starting,
        "restarts with the new spec"
    );
    // web still waits for edge, then stops, and starts once the new db is ready.
    assert!(sim.get("web").deferred.is_some());
    assert_eq!(
        acts(sim.exited("edge", 13, ExitStatus::Signaled(15), false)),
        ["signal web SIGTERM", "timer web 10s"]
    );
    sim.spawned("db", 14);
    assert_eq!(
        acts(sim.exited("web", 11, ExitStatus::Signaled(15), false)),
        ["spawn web"]
    );
}
