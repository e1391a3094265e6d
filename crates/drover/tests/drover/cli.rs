//! `drover check`, `drover schema`, `--version` and `--help` through the real binary.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything a finished drover printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs drover with `args` in `dir`, with a deadline: a hung drover is killed (by the pid we
/// spawned) and the test fails.
fn drover_in(dir: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn drover");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("drover {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout thread").expect("stdout utf-8"),
        stderr: err.join().expect("stderr thread").expect("stderr utf-8"),
    }
}

fn drover(args: &[&str]) -> Run {
    drover_in(&repo_root(), args)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

const TYPO: &str = "services:\n  web:\n    command: [sleep, '1']\n    comand: [sleep, '2']\n    restart: {policy: alway}\n";

#[test]
fn check_accepts_the_demo_silently() {
    let run = drover(&["check", "manifests/demo.yaml"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (Some(0), "", "")
    );
}

#[test]
fn check_points_at_a_typo_and_suggests_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "typo.yaml", TYPO);
    let run = drover(&["check", &file]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let expected = [
        format!("{file}:4:5: error: services.web: unknown key `comand`; did you mean `command`?"),
        format!(
            "{file}:5:23: error: services.web.restart.policy: unknown value `alway`; expected one of `always`, `on-failure`, `never`; did you mean `always`?"
        ),
    ];
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines, expected, "stderr was:\n{}", run.stderr);
}

#[test]
fn check_reports_every_manifest_and_fails_if_any_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(
        dir.path(),
        "good.yaml",
        "services:\n  a: {command: sleep 1}\n",
    );
    let bad = write(
        dir.path(),
        "bad.yaml",
        "services:\n  a: {command: sleep 1, depends_on: [b]}\n",
    );
    let run = drover(&["check", &good, &bad, &good]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        format!("{bad}:2:38: error: services.a.depends_on[0]: unknown dependency `b`\n")
    );
    let run = drover(&["check", &good, &good]);
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""));
}

#[test]
fn check_without_arguments_reads_drover_yaml_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = drover_in(dir.path(), &["check"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("drover.yaml: error: cannot read manifest"),
        "{}",
        run.stderr
    );
    write(
        dir.path(),
        "drover.yaml",
        "services:\n  a: {command: sleep 1}\n",
    );
    let run = drover_in(dir.path(), &["check"]);
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""));
}

#[test]
fn check_reads_a_directory_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        "services:\n  db: {command: sleep 1}\n",
    );
    write(
        dir.path(),
        "b.yml",
        "services:\n  web: {command: sleep 1, depends_on: [db]}\n",
    );
    write(dir.path(), "notes.txt", "not yaml, ignored");
    let path = dir.path().to_string_lossy().into_owned();
    let run = drover(&["check", &path]);
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""));
    let second = write(
        dir.path(),
        "c.yaml",
        "services:\n  db: {command: sleep 2}\n",
    );
    let run = drover(&["check", &path]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with(&format!(
            "{second}:2:3: error: services.db: service `db` is defined twice: here and at "
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = drover(&["check", "--no-such-flag"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = drover(&["-x", "true"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("unknown option -x"), "{}", run.stderr);
    let run = drover(&["-e", "300", "true"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = drover(&[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[test]
fn a_first_word_that_is_no_subcommand_runs_as_a_command_as_tini_does() {
    let run = drover(&["frobnicate"]);
    assert_eq!(run.code, Some(127), "{}", run.stderr);
    assert!(!run.stderr.contains("did you mean"), "{}", run.stderr);
    // Close to a subcommand: still run (and not found), with a hint.
    let run = drover(&["chek", "drover.yaml"]);
    assert_eq!(run.code, Some(127), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("chek: not found; did you mean `drover check`?"),
        "{}",
        run.stderr
    );
    let run = drover(&["sh", "-c", "exit 7"]);
    assert_eq!(run.code, Some(7), "{}", run.stderr);
}

#[test]
fn schema_prints_a_json_schema_of_the_manifest() {
    let run = drover(&["schema"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["properties"]["services"].is_object(), "{schema:#}");
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn version_and_help() {
    let run = drover(&["--version"]);
    assert_eq!(
        (run.code, run.stdout.trim()),
        (Some(0), concat!("drover ", env!("CARGO_PKG_VERSION")))
    );
    let run = drover(&["--help"]);
    assert_eq!(run.code, Some(0));
    for word in ["run", "check", "schema", "drover -- CMD"] {
        assert!(
            run.stdout.contains(word),
            "--help lacks {word:?}:\n{}",
            run.stdout
        );
    }
}

/// With stderr on a terminal, each error shows its source line and a caret under the column.
/// `script` (util-linux, part of every Debian install) gives drover a pseudo-terminal.
#[test]
fn on_a_terminal_errors_show_the_source_line_and_a_caret() {
    if Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!(
            "SKIPPED: `script` (util-linux) is not installed, so no pseudo-terminal for this test"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "typo.yaml", TYPO);
    let command = format!("{} check {file}", env!("CARGO_BIN_EXE_drover"));
    let log = dir.path().join("typescript");
    let mut child = Command::new("script")
        .args(["-qec", &command])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn script");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "script did not finish");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.code(), Some(1), "{out}");
    let out = out.replace("\r\n", "\n");
    assert!(
        out.contains("    4 |     comand: [sleep, '2']\n      |     ^\n"),
        "no caret under `comand`:\n{out}"
    );
    assert!(
        out.contains("    5 |     restart: {policy: alway}\n      |                       ^\n"),
        "no caret under `alway`:\n{out}"
    );
}

/// `drover completions SHELL` prints a script the shell accepts, naming every subcommand.
#[test]
fn completions_are_scripts_the_shells_accept() {
    let run = drover(&["completions", "bash"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for sub in [
        "run",
        "check",
        "status",
        "restart",
        "logs",
        "reload",
        "completions",
    ] {
        assert!(run.stdout.contains(sub), "no {sub} in the bash script");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write(dir.path(), "drover.bash", &run.stdout);
    // bash -n: parsed, not run.
    let status = Command::new("bash")
        .args(["-n", &script])
        .status()
        .expect("run bash");
    assert!(status.success(), "bash refuses the completion script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = drover(&["completions", shell]);
        assert_eq!(run.code, Some(0), "{shell}: {}", run.stderr);
        assert!(run.stdout.contains("reload"), "{shell}");
    }
    assert_eq!(drover(&["completions", "tcsh"]).code, Some(2));
}

/// An unset `${VAR}` without a default is valid (an empty string) but `check` says so; with
/// `:?` it is an error at its place.
#[test]
fn check_warns_about_unset_variables_and_fails_on_required_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "warn.yaml",
        "services:\n  web: { command: x, environment: { X: \"${DROVER_TEST_CLI_UNSET}\" } }\n",
    );
    let run = drover_in(dir.path(), &["check", "warn.yaml"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("warn.yaml:2:40: warning: services.web.environment.X: variable `DROVER_TEST_CLI_UNSET` is not set"),
        "{}",
        run.stderr
    );
    write(
        dir.path(),
        "fail.yaml",
        "services:\n  web: { command: x, environment: { X: \"${DROVER_TEST_CLI_UNSET:?needed}\" } }\n",
    );
    let run = drover_in(dir.path(), &["check", "fail.yaml"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("fail.yaml:2:40: error: services.web.environment.X: variable `DROVER_TEST_CLI_UNSET` is not set or empty: needed"),
        "{}",
        run.stderr
    );
}
