//! Reload speed (`cargo bench -p drover --bench reload`), issue 6's goals, on the real binary:
//!
//! 1. From the rename that saves an edited manifest to the changed service's new process
//!    running: under 150 ms at the default debounce (100 ms of it). Times are read from
//!    drover's own log lines (`started service=b ...`), against the clock read just before the
//!    `rename(2)`.
//! 2. A reload of a 1000-service manifest with one change (SIGHUP): under 100 ms of drover
//!    time. Reported as the wall time from SIGHUP to the changed service's new process, and as
//!    drover's CPU time over that reload (all its threads, from `/proc/PID/task/*/schedstat`).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROUNDS: usize = 20;
const BIG: usize = 1000;
const BIG_ROUNDS: usize = 5;

fn main() {
    let latencies = rename_to_running();
    report(
        "rename -> changed service running (debounce 100 ms)",
        &latencies,
    );
    let (walls, cpus) = big_reload();
    report(
        &format!("{BIG} services, one changed: SIGHUP -> new process"),
        &walls,
    );
    report(&format!("{BIG} services, one changed: drover CPU"), &cpus);
}

fn report(what: &str, ms: &[f64]) {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms ({} runs)",
        at(0.5),
        at(0.9),
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
}

/// drover running `yaml` in a temp dir, its log in `drover.log` there.
struct Drover {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drover {
    fn start(yaml: &str) -> Drover {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drover.yaml"), yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("drover.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "--metrics-listen", "", "drover.yaml"])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Drover { child, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Seconds of the day (UTC) of each log line containing `needle`.
    fn stamps(&self, needle: &str) -> Vec<f64> {
        std::fs::read_to_string(self.path("drover.log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| seconds_of_day(l.get(11..26)?))
            .collect()
    }

    /// Waits (30 s at most) until `needle` is in `count` log lines; the last one's time.
    fn wait_line(&self, needle: &str, count: usize) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stamps = self.stamps(needle);
            if stamps.len() >= count {
                return stamps[count - 1];
            }
            assert!(Instant::now() < deadline, "no `{needle}` #{count}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HH:MM:SS.ffffff` → seconds.
fn seconds_of_day(text: &str) -> Option<f64> {
    let mut parts = text.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_of_day() -> f64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (since.as_secs() % 86_400) as f64 + f64::from(since.subsec_nanos()) / 1e9
}

fn elapsed_ms(from: f64, to: f64) -> f64 {
    let d = to - from;
    (if d < -43_200.0 { d + 86_400.0 } else { d }) * 1000.0
}

fn save_by_rename(path: &Path, text: &str) -> f64 {
    let temporary = path.with_extension("yaml.tmp~");
    std::fs::write(&temporary, text).unwrap();
    let at = now_of_day();
    std::fs::rename(&temporary, path).unwrap();
    at
}

fn rename_to_running() -> Vec<f64> {
    let yaml = |value: usize| {
        format!(
            "settings: {{ log: {{ service_output: discard }} }}
services:
  a: {{ command: [sleep, \"1000\"] }}
  b: {{ command: [sleep, \"1000\"], environment: {{ VALUE: \"{value}\" }} }}
  c: {{ command: [sleep, \"1000\"] }}
"
        )
    };
    let drover = Drover::start(&yaml(0));
    drover.wait_line("started service=b ", 1);
    let mut latencies = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let at = save_by_rename(&drover.path("drover.yaml"), &yaml(round));
        let started = drover.wait_line("started service=b ", round + 1);
        latencies.push(elapsed_ms(at, started));
        // Let the watcher settle so rounds do not merge into one burst.
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(drover.stamps("started service=a ").len(), 1, "a untouched");
    latencies
}

/// CPU time of all threads of `pid`, in ms.
fn cpu_ms(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            text.split(' ').next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e6
}

fn big_reload() -> (Vec<f64>, Vec<f64>) {
    let yaml = |value: usize| {
        let mut yaml = String::from(
            "settings: { log: { service_output: discard }, reload: { watch: false } }\nservices:\n",
        );
        for i in 0..BIG {
            let arg = if i == BIG / 2 { 100_000 + value } else { 1000 };
            yaml.push_str(&format!("  s{i}: {{ command: [sleep, \"{arg}\"] }}\n"));
        }
        yaml
    };
    let drover = Drover::start(&yaml(0));
    let pid = drover.child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::children(pid as i32) < BIG {
        assert!(Instant::now() < deadline, "services did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let changed = format!("started service=s{} ", BIG / 2);
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for round in 1..=BIG_ROUNDS {
        std::fs::write(drover.path("drover.yaml"), yaml(round)).unwrap();
        let cpu = cpu_ms(pid);
        let at = now_of_day();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        let started = drover.wait_line(&changed, round + 1);
        walls.push(elapsed_ms(at, started));
        cpus.push(cpu_ms(pid) - cpu);
    }
    assert_eq!(
        drover.stamps("started service=s0 ").len(),
        1,
        "s0 untouched"
    );
    (walls, cpus)
}
