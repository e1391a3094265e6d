//! Hot reload of the real binary with real files: edits (in place, rename-over, a ConfigMap's
//! symlink swap) apply only the difference, invalid edits keep the running manifest, bursts
//! coalesce, SIGHUP reloads, and `drover diff` prints the plan.

use crate::util::*;
use std::path::Path;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const SIGHUP: i32 = 1;

/// A service `name` that writes its pid to `name.pid` (and `$VALUE`, if set, to
/// `name.value`), then sleeps; `extra` is appended to its map.
fn service(name: &str, extra: &str) -> String {
    format!(
        "  {name}: {{ command: [sh, -c, \"echo $VALUE > {name}.value; echo $$ > {name}.pid; exec sleep 1000\"]{extra} }}\n"
    )
}

fn manifest(services: &[String]) -> String {
    format!("services:\n{}", services.concat())
}

/// The pid in `name.pid`, once it is complete.
fn pid_of(drover: &Drover, name: &str) -> Option<i32> {
    std::fs::read_to_string(drover.path(&format!("{name}.pid")))
        .ok()?
        .strip_suffix('\n')?
        .parse()
        .ok()
}

/// Waits until `name.pid` holds a live pid other than `old`; that pid.
fn wait_new_pid(drover: &Drover, name: &str, old: Option<i32>) -> i32 {
    let mut pid = None;
    wait_until(
        SECS(10),
        &format!("a new pid of {name}\nstderr:\n{}", drover.stderr()),
        || {
            pid = pid_of(drover, name).filter(|&p| Some(p) != old && alive(p));
            pid.is_some()
        },
    );
    pid.unwrap_or_default()
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, as editors do.
fn save_by_rename(path: &Path, text: &str) {
    let temporary = path.with_extension("yaml.tmp~");
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

/// Lines of drover's log that report a reload's plan or failure.
fn reload_lines(drover: &Drover) -> Vec<String> {
    drover
        .stderr()
        .lines()
        .filter(|l| l.contains("reload: ") || l.contains("reload failed"))
        .map(str::to_string)
        .collect()
}

/// The plans of the reloads applied, as logged (`+b =a`); failures left out.
fn plans(drover: &Drover) -> Vec<String> {
    reload_lines(drover)
        .iter()
        .filter(|l| !l.contains(" error: ") && !l.contains("reload failed"))
        .filter_map(|l| Some(l.rsplit_once("reload: ")?.1.to_string()))
        .collect()
}

fn wait_log(drover: &Drover, text: &str) {
    wait_until(
        SECS(10),
        &format!("`{text}` in the log\nstderr:\n{}", drover.stderr()),
        || drover.stderr().contains(text),
    );
}

#[test]
fn an_edited_command_restarts_that_service_only() {
    let base = [service("a", ""), service("b", ""), service("c", "")];
    let mut drover = Drover::run(&manifest(&base));
    let (a, b, c) = (
        wait_new_pid(&drover, "a", None),
        wait_new_pid(&drover, "b", None),
        wait_new_pid(&drover, "c", None),
    );
    let edited = [
        service("a", ""),
        service("b", ", environment: { VALUE: two }"),
        service("c", ""),
    ];
    std::fs::write(drover.path("drover.yaml"), manifest(&edited)).expect("write");
    let new_b = wait_new_pid(&drover, "b", Some(b));
    assert!(!alive(b), "the old b is gone");
    assert_eq!(
        std::fs::read_to_string(drover.path("b.value")).expect("value"),
        "two\n"
    );
    assert_eq!(pid_of(&drover, "a"), Some(a));
    assert_eq!(pid_of(&drover, "c"), Some(c));
    assert!(alive(a) && alive(c) && alive(new_b));
    wait_log(&drover, "reload: ~b =a,c");
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn added_removed_and_env_file_changes_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.env"), "VALUE=one\n").expect("write");
    let base = [
        service("a", ", env_file: a.env"),
        service("b", ""),
        service("c", ", depends_on: [b]"),
        service("keep", ""),
    ];
    let mut drover = Drover::run_in(dir, &manifest(&base));
    let a = wait_new_pid(&drover, "a", None);
    let b = wait_new_pid(&drover, "b", None);
    let c = wait_new_pid(&drover, "c", None);
    let keep = wait_new_pid(&drover, "keep", None);

    // The env file's content changes: a restarts with the new value.
    save_by_rename(&drover.path("a.env"), "VALUE=two\n");
    let a2 = wait_new_pid(&drover, "a", Some(a));
    assert_eq!(
        std::fs::read_to_string(drover.path("a.value")).expect("value"),
        "two\n"
    );
    wait_log(&drover, "reload: ~a =b,c,keep");

    // b and c (which depends on b) removed, d added.
    let next = [
        service("a", ", env_file: a.env"),
        service("keep", ""),
        service("d", ""),
    ];
    std::fs::write(drover.path("drover.yaml"), manifest(&next)).expect("write");
    wait_new_pid(&drover, "d", None);
    wait_until(SECS(10), "b and c stopped", || !alive(b) && !alive(c));
    wait_log(&drover, "reload: +d -b,c =a,keep");
    // c stopped before b, its dependency. The log lines are written by an observer of the
    // events, so they may come a little after the processes are gone: wait for both.
    let stopping =
        |name: &str| format!("removed from the manifest; stopping with SIGTERM service={name} ");
    wait_log(&drover, &stopping("b"));
    wait_log(&drover, &stopping("c"));
    let log = drover.stderr();
    let stopped = |name: &str| {
        log.find(&stopping(name))
            .unwrap_or_else(|| panic!("{name} stopped\n{log}"))
    };
    assert!(stopped("c") < stopped("b"), "{log}");
    assert_eq!(pid_of(&drover, "a"), Some(a2));
    assert_eq!(pid_of(&drover, "keep"), Some(keep));
    assert!(alive(a2) && alive(keep));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

/// Compose's `{ path, required: false }`: a missing env file is no error, and when it appears
/// (written as Compose reads it: an inline comment, quotes, a variable) the service restarts
/// with its values; the other service is untouched.
#[test]
fn an_optional_env_file_that_appears_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        service("a", ", env_file: [{ path: late.env, required: false }]"),
        service("keep", ""),
    ];
    let mut drover = Drover::run_in(dir, &manifest(&base));
    let a = wait_new_pid(&drover, "a", None);
    let keep = wait_new_pid(&drover, "keep", None);
    assert_eq!(
        std::fs::read_to_string(drover.path("a.value")).expect("value"),
        "\n"
    );
    save_by_rename(
        &drover.path("late.env"),
        "BASE=late\nVALUE=\"${BASE} # kept\" # a comment\n",
    );
    wait_new_pid(&drover, "a", Some(a));
    assert_eq!(
        std::fs::read_to_string(drover.path("a.value")).expect("value"),
        "late # kept\n"
    );
    wait_log(&drover, "reload: ~a =keep");
    assert_eq!(pid_of(&drover, "keep"), Some(keep));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn rename_over_saves_and_configmap_swaps_are_seen() {
    // Rename-over save of the manifest.
    let mut drover = Drover::run(&manifest(&[service("a", ""), service("b", "")]));
    let a = wait_new_pid(&drover, "a", None);
    let b = wait_new_pid(&drover, "b", None);
    save_by_rename(
        &drover.path("drover.yaml"),
        &manifest(&[
            service("a", ", environment: { VALUE: x }"),
            service("b", ""),
        ]),
    );
    wait_new_pid(&drover, "a", Some(a));
    assert_eq!(pid_of(&drover, "b"), Some(b));
    // And a second one: the watch survives the first rename.
    let a = pid_of(&drover, "a");
    save_by_rename(
        &drover.path("drover.yaml"),
        &manifest(&[
            service("a", ", environment: { VALUE: y }"),
            service("b", ""),
        ]),
    );
    wait_new_pid(&drover, "a", a);
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);

    // A ConfigMap volume: drover.yaml -> ..data/drover.yaml, ..data -> ..v1; an update makes
    // ..v2 and renames a new link over ..data.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    std::fs::create_dir(root.join("..v1")).expect("mkdir");
    std::fs::write(
        root.join("..v1/drover.yaml"),
        manifest(&[service("a", ""), service("b", "")]),
    )
    .expect("write");
    std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/drover.yaml", root.join("drover.yaml")).expect("symlink");
    let mut drover = Drover::start(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
        None,
    );
    let a = wait_new_pid(&drover, "a", None);
    let b = wait_new_pid(&drover, "b", None);
    std::fs::create_dir(root.join("..v2")).expect("mkdir");
    std::fs::write(
        root.join("..v2/drover.yaml"),
        manifest(&[
            service("a", ""),
            service("b", ", environment: { VALUE: v2 }"),
        ]),
    )
    .expect("write");
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("rename");
    wait_new_pid(&drover, "b", Some(b));
    assert_eq!(pid_of(&drover, "a"), Some(a));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn an_invalid_edit_keeps_the_running_manifest_until_fixed() {
    let base = manifest(&[service("a", ""), service("b", "")]);
    let mut drover = Drover::run(&base);
    let a = wait_new_pid(&drover, "a", None);
    let b = wait_new_pid(&drover, "b", None);
    // A typo in a key, on line 4, column 5.
    let broken = format!(
        "services:\n{}  b:\n    comand: [sleep, \"1\"]\n",
        service("a", "")
    );
    std::fs::write(drover.path("drover.yaml"), &broken).expect("write");
    // A writer stalled between truncating and writing may first show an empty manifest: that
    // is a failure too, and the end of the write a second one, with the line wanted.
    wait_log(
        &drover,
        "reload: drover.yaml:4:5: error: services.b: unknown key `comand`",
    );
    wait_log(&drover, "reload failed (the manifest is invalid)");
    assert_eq!(pid_of(&drover, "a"), Some(a));
    assert_eq!(pid_of(&drover, "b"), Some(b));
    assert!(alive(a) && alive(b));
    // A half-written file is just another error.
    let failures = || {
        reload_lines(&drover)
            .iter()
            .filter(|l| l.contains("reload failed"))
            .count()
    };
    let failed_before = failures();
    std::fs::write(drover.path("drover.yaml"), &base[..base.len() / 2]).expect("write");
    wait_until(SECS(10), "one more failure", || failures() > failed_before);
    assert!(alive(a) && alive(b));
    // Fixed: the change applies.
    std::fs::write(
        drover.path("drover.yaml"),
        manifest(&[
            service("a", ""),
            service("b", ", environment: { VALUE: fixed }"),
        ]),
    )
    .expect("write");
    wait_new_pid(&drover, "b", Some(b));
    assert_eq!(pid_of(&drover, "a"), Some(a));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn fifty_edits_in_a_second_end_in_the_last_one() {
    let mut drover = Drover::run(&manifest(&[service("a", ""), service("b", "")]));
    let a = wait_new_pid(&drover, "a", None);
    let b = wait_new_pid(&drover, "b", None);
    for i in 0..50 {
        std::fs::write(
            drover.path("drover.yaml"),
            manifest(&[
                service("a", ""),
                service("b", &format!(", environment: {{ VALUE: v{i} }}")),
            ]),
        )
        .expect("write");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_until(SECS(10), "b running with the last value", || {
        std::fs::read_to_string(drover.path("b.value")).is_ok_and(|v| v == "v49\n")
            && pid_of(&drover, "b").is_some_and(|p| p != b && alive(p))
    });
    // One or two reloads when the burst is seen as one (the usual case: it lasts about the
    // debounce's cap of 10 periods); a loaded machine that stalls the writer past the debounce
    // splits it, never into one reload per edit.
    let reloads = reload_lines(&drover);
    let applied = reloads.iter().filter(|l| l.contains("reload: ~b")).count();
    assert!((1..=10).contains(&applied), "{reloads:#?}");
    assert_eq!(pid_of(&drover, "a"), Some(a));
    assert!(
        drover.child.try_wait().expect("try_wait").is_none(),
        "drover still runs"
    );
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let off = "settings: { reload: { watch: false } }\n";
    let mut drover = Drover::run(&format!("{off}{}", manifest(&[service("a", "")])));
    let a = wait_new_pid(&drover, "a", None);
    std::fs::write(
        drover.path("drover.yaml"),
        format!("{off}{}", manifest(&[service("a", ""), service("b", "")])),
    )
    .expect("write");
    drover.signal(SIGHUP);
    wait_new_pid(&drover, "b", None);
    assert_eq!(pid_of(&drover, "a"), Some(a));
    // One reload: the one SIGHUP asked for (the watcher is off).
    assert_eq!(
        reload_lines(&drover).len(),
        1,
        "{:#?}",
        reload_lines(&drover)
    );
    assert!(reload_lines(&drover)[0].contains("reload: +b =a"));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn drover_diff_prints_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("old.yaml"),
        manifest(&[service("a", ""), service("b", ""), service("c", "")]),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("new.yaml"),
        manifest(&[
            service("a", ""),
            service("b", ", environment: { X: y }"),
            service("c", ", restart: { policy: always }"),
            service("d", ""),
        ]),
    )
    .expect("write");
    std::fs::write(dir.path().join("bad.yaml"), "services: [").expect("write");
    let drover = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run drover diff")
    };
    // As diff(1): 1 when they differ, 0 when equal, 2 on an error.
    let out = drover(&["diff", "old.yaml", "new.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "+d ~b *c =a\n");
    let out = drover(&["diff", "old.yaml", "old.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "=a,b,c\n");
    let out = drover(&["diff", "old.yaml", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:1:"));
}

#[test]
fn a_directory_manifest_reloads_when_a_file_is_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf.d");
    std::fs::create_dir(&conf).expect("mkdir");
    std::fs::write(conf.join("10-a.yaml"), manifest(&[service("a", "")])).expect("write");
    let mut drover = Drover::start(dir, &[env!("CARGO_BIN_EXE_drover"), "run", "conf.d"], None);
    let a = wait_new_pid(&drover, "a", None);
    std::fs::write(
        drover.path("conf.d/20-b.yaml"),
        manifest(&[service("b", "")]),
    )
    .expect("write");
    wait_new_pid(&drover, "b", None);
    wait_log(&drover, "reload: +b =a");
    // A file that is not YAML changes nothing: no reload is reported for it.
    std::fs::write(drover.path("conf.d/notes.txt"), "hello").expect("write");
    std::fs::remove_file(drover.path("conf.d/20-b.yaml")).expect("rm");
    wait_log(&drover, "reload: -b =a");
    // (A failure may come first, should a read catch 20-b.yaml half-written.)
    assert_eq!(
        plans(&drover),
        ["+b =a", "-b =a"],
        "{:#?}",
        reload_lines(&drover)
    );
    assert_eq!(pid_of(&drover, "a"), Some(a));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

#[test]
fn the_log_format_switches_without_a_restart() {
    let mut drover = Drover::run(&manifest(&[service("a", "")]));
    let a = wait_new_pid(&drover, "a", None);
    std::fs::write(
        drover.path("drover.yaml"),
        format!(
            "settings: {{ log: {{ format: json }} }}\n{}",
            manifest(&[service("a", ""), service("b", "")])
        ),
    )
    .expect("write");
    wait_new_pid(&drover, "b", None);
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
    assert_eq!(pid_of(&drover, "a"), Some(a), "a was not restarted");
    // The drain's lines come after the switch: JSON objects.
    let log = drover.stderr();
    let draining = log
        .lines()
        .find(|l| l.contains("draining: stopping every service"))
        .unwrap_or_else(|| panic!("no drain line in\n{log}"));
    let line: serde_json::Value =
        serde_json::from_str(draining).unwrap_or_else(|err| panic!("not JSON ({err}): {draining}"));
    assert_eq!(line["level"], "INFO");
}

#[test]
fn format_and_output_settings_change_together_without_harm() {
    // The reload's own lines are text, the lines after it JSON; a warning about
    // service_output comes in the same reload.
    let mut drover = Drover::run(&manifest(&[service("a", "")]));
    let a = wait_new_pid(&drover, "a", None);
    std::fs::write(
        drover.path("drover.yaml"),
        format!(
            "settings: {{ log: {{ format: json, service_output: discard }} }}\n{}",
            manifest(&[service("a", "")])
        ),
    )
    .expect("write");
    wait_log(
        &drover,
        "service_output changes apply when drover next starts",
    );
    drover.signal(SIGHUP);
    wait_until(SECS(10), "a JSON reload line", || {
        drover
            .stderr()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("reload: "))
    });
    assert_eq!(pid_of(&drover, "a"), Some(a));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0, "{}", drover.stderr());
}

/// `drover run drover.yaml web` runs web and what it depends on, nothing else, and reloads keep
/// to that selection; a reload that drops web fails and keeps everything running.
#[test]
fn run_with_service_names_starts_them_and_their_dependencies_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = [
        service("db", ""),
        service("cache", ""),
        service("web", ", depends_on: [db]"),
        service("worker", ", depends_on: [web]"),
    ];
    std::fs::write(dir.path().join("drover.yaml"), manifest(&all)).expect("write");
    let mut drover = Drover::start(
        dir,
        &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml", "web"],
        None,
    );
    let db = wait_new_pid(&drover, "db", None);
    let web = wait_new_pid(&drover, "web", None);
    // A reload that changes everything touches only the selection.
    let changed: Vec<String> = all
        .iter()
        .map(|s| s.replace("exec sleep 1000", "exec sleep 1001"))
        .collect();
    std::fs::write(drover.path("drover.yaml"), manifest(&changed)).expect("write");
    wait_log(&drover, "reload: ~db,web");
    wait_new_pid(&drover, "web", Some(web));
    // Without web, the reload fails and the running services stay.
    std::fs::write(
        drover.path("drover.yaml"),
        manifest(&[service("db", ""), service("cache", "")]),
    )
    .expect("write");
    wait_log(&drover, "no service `web`, named on the command line");
    assert!(alive(pid_of(&drover, "web").expect("web")));
    for never in ["cache", "worker"] {
        assert!(
            !drover.path(&format!("{never}.pid")).exists(),
            "{never} was started"
        );
    }
    assert!(!alive(db), "db was restarted with the new command");
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}

/// `${VAR}` values come from a `.env` beside the manifest; editing it reloads, and restarts the
/// services whose values changed.
#[test]
fn a_dot_env_beside_the_manifest_feeds_variables_and_its_edits_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "GREETING=one\n").expect("write .env");
    let base = [
        service("a", ", environment: { VALUE: \"${GREETING:-none}\" }"),
        service("b", ""),
    ];
    let mut drover = Drover::run_in(dir, &manifest(&base));
    let a = wait_new_pid(&drover, "a", None);
    let b = wait_new_pid(&drover, "b", None);
    assert_eq!(
        std::fs::read_to_string(drover.path("a.value")).expect("value"),
        "one\n"
    );
    save_by_rename(&drover.path(".env"), "GREETING=two\n");
    wait_new_pid(&drover, "a", Some(a));
    wait_until(SECS(10), "a.value two", || {
        std::fs::read_to_string(drover.path("a.value")).is_ok_and(|v| v == "two\n")
    });
    wait_log(&drover, "reload: ~a =b");
    assert_eq!(pid_of(&drover, "b"), Some(b));
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(10)), 0);
}
