//! Helpers: a running drover with its output captured, polling with deadlines, and process
//! inspection through /proc.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `condition` every 10 ms until it holds; panics with `what` after `limit`.
pub(crate) fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A drover process started by a test; killed (by its pid) when dropped.
pub(crate) struct Drover {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The threads copying stdout and stderr; each ends at its pipe's end.
    captures: [std::thread::JoinHandle<()>; 2],
}

fn capture(
    mut from: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let into = buffer.clone();
    let thread = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            into.lock().expect("lock").extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, thread)
}

impl Drover {
    /// `drover run drover.yaml` in a new temp dir holding `manifest`.
    pub(crate) fn run(manifest: &str) -> Drover {
        Drover::run_in(tempfile::tempdir().expect("tempdir"), manifest)
    }

    /// `drover run drover.yaml` in `dir`, after writing `manifest` there.
    pub(crate) fn run_in(dir: tempfile::TempDir, manifest: &str) -> Drover {
        std::fs::write(dir.path().join("drover.yaml"), manifest).expect("write manifest");
        Drover::start(
            dir,
            &[env!("CARGO_BIN_EXE_drover"), "run", "drover.yaml"],
            None,
        )
    }

    /// Any command line (`argv[0]` first) in `dir`, with `stdin` written then closed.
    pub(crate) fn start(dir: tempfile::TempDir, argv: &[&str], stdin: Option<&[u8]>) -> Drover {
        Drover::start_with_env(dir, argv, stdin, &[])
    }

    /// As [`Drover::start`], with `env` added to the environment.
    pub(crate) fn start_with_env(
        dir: tempfile::TempDir,
        argv: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Drover {
        // Tests run in parallel: the default metrics address (127.0.0.1:9464) would be taken by
        // the first. `drover run` gets no metrics unless a test asks for an address.
        let mut argv: Vec<&str> = argv.to_vec();
        if let Some(at) = argv.iter().position(|a| *a == "run")
            && !argv.iter().any(|a| a.starts_with("--metrics-listen"))
        {
            argv.splice(at + 1..at + 1, ["--metrics-listen", ""]);
        }
        Drover::start_exactly(dir, &argv, stdin, env)
    }

    /// As [`Drover::start_with_env`], with `argv` exactly as given: a `drover run` without
    /// `--metrics-listen` serves metrics where its manifest says.
    pub(crate) fn start_exactly(
        dir: tempfile::TempDir,
        argv: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Drover {
        let mut command = Command::new(argv[0]);
        // No trace exporter nor OpenTelemetry setting unless a test asks for one, whatever the
        // caller's environment.
        // Nor a proxy, which the OTLP client would use even for 127.0.0.1.
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy().to_ascii_lowercase();
            if name.starts_with("otel_") || name.ends_with("_proxy") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(&argv[1..])
            // Notify sockets go in the test's directory, which is removed with it even when
            // drover is killed.
            .env("RUNTIME_DIRECTORY", dir.path())
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn drover");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input).expect("write stdin");
        }
        let (stdout, stdout_thread) = capture(child.stdout.take().expect("stdout"));
        let (stderr, stderr_thread) = capture(child.stderr.take().expect("stderr"));
        Drover {
            child,
            dir,
            stdout,
            stderr,
            captures: [stdout_thread, stderr_thread],
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("lock")).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("lock")).into_owned()
    }

    pub(crate) fn signal(&self, signal: i32) {
        send(self.pid(), signal);
    }

    /// Waits for drover to exit; its exit code (128+N when killed by signal N).
    pub(crate) fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                use std::os::unix::process::ExitStatusExt;
                // Let the capture threads copy the last output: they end at the pipes' end,
                // which comes once drover and what it started are gone. A process that
                // outlives drover and keeps a pipe open would hold them, hence the limit.
                let captured = Instant::now() + Duration::from_secs(5);
                while !self.captures.iter().all(|c| c.is_finished()) && Instant::now() < captured {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            if Instant::now() > deadline {
                panic!(
                    "drover did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until file `name` in the temp dir exists and is not empty; its text.
    pub(crate) fn wait_file(&self, name: &str, limit: Duration) -> String {
        let path = self.path(name);
        let mut text = String::new();
        wait_until(
            limit,
            &format!("file {name}\nstderr:\n{}", self.stderr()),
            || {
                text = std::fs::read_to_string(&path).unwrap_or_default();
                text.ends_with('\n')
            },
        );
        text
    }

    /// The pid written in file `name` (waited for).
    pub(crate) fn pid_file(&self, name: &str) -> i32 {
        self.wait_file(name, Duration::from_secs(10))
            .trim()
            .parse()
            .expect("a pid")
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        // Services die with drover (PR_SET_PDEATHSIG).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kill(2) of `pid` with any signal number, real-time ones included (which nix's `Signal` has
/// no names for).
pub(crate) fn send(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    let sent = unsafe { nix::libc::kill(pid, signal) };
    if sent != 0 {
        panic!("kill -{signal} {pid}: {}", std::io::Error::last_os_error());
    }
}

/// `(state, ppid)` of a process from /proc, or `None` when it is gone.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs (zombies count as gone: they have ended).
pub(crate) fn alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Processes whose parent is `parent`, with their states.
pub(crate) fn children_of(parent: i32) -> Vec<(i32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let (state, ppid) = proc_stat(pid)?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// Open file descriptors of `pid`.
pub(crate) fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Nanosecond timestamps, one per line, of file `path`.
pub(crate) fn stamps(path: &Path) -> Vec<u128> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub(crate) const SIGTERM: i32 = 15;
pub(crate) const SIGKILL: i32 = 9;
