//! Supervisor speed and footprint, printed as figures (`cargo bench -p drover --bench
//! supervisor`). Issue 3's goals, on a release build:
//! - restart latency (SIGKILL → replacement running) median under 1 ms, and within 2x of a bare
//!   fork+exec+wait loop measured here too;
//! - 100 independent services all running within 50 ms;
//! - drain of 100 services that exit on SIGTERM under 30 ms; of 100 that ignore it with
//!   `stop.timeout: 2s` under 2.05 s;
//! - RSS of drover with 100 services under 6 MiB, with 1000 under 16 MiB; idle CPU zero;
//! - a crash loop under the default backoff under 1% of a core.
//!
//! Latencies run the supervisor library in this process (no log subscriber); footprint runs the
//! real `drover` binary and reads /proc.
#![allow(clippy::print_stdout, clippy::disallowed_methods, clippy::unwrap_used)]

use drover_supervisor::{Control, Event, Processes, State, Supervisor};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::{Binary, cpu_ticks};

fn main() {
    // As the binary does first thing: it tells spawns which signals can be ignored.
    drover_supervisor::InheritedSignals::capture();
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let bare = bare_restart_latency(200, Spawn::PosixSpawn);
    let bare_fork = bare_restart_latency(200, Spawn::Fork);
    let bare_start = bare_start_all(100, 1);
    let bare_start_parallel = bare_start_all(100, 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (restart, bare_fork_now, start, drain_term, drain_ignore, crash) =
        runtime.block_on(async {
            let processes = Processes::start().unwrap();
            let restart = restart_latency(&processes, 200).await;
            // The same fork loop again, now that this process holds a runtime, threads and a
            // supervisor's memory: fork copies all of its page tables.
            let bare_fork_now = bare_restart_latency(200, Spawn::Fork);
            let start = start_all(&processes, 100).await;
            let drain_term = drain(&processes, 100, "exec sleep 1000", "10s").await;
            let drain_ignore = drain(&processes, 100, "trap '' TERM; exec sleep 1000", "2s").await;
            let crash = crash_loop_cpu(&processes, Duration::from_secs(10)).await;
            (
                restart,
                bare_fork_now,
                start,
                drain_term,
                drain_ignore,
                crash,
            )
        });
    let footprint_100 = footprint(100);
    let footprint_1000 = footprint(1000);

    println!(
        "drover supervisor benchmark (release build, {} CPUs)",
        cpus()
    );
    println!(
        "restart latency, bare kill+wait+posix_spawn loop: median {:.3} ms, p90 {:.3} ms",
        ms(bare.0),
        ms(bare.1)
    );
    println!(
        "restart latency, bare kill+wait+fork+exec loop: median {:.3} ms, p90 {:.3} ms",
        ms(bare_fork.0),
        ms(bare_fork.1)
    );
    println!(
        "restart latency, bare kill+wait+fork+exec loop in this process once the runtime runs: median {:.3} ms, p90 {:.3} ms",
        ms(bare_fork_now.0),
        ms(bare_fork_now.1)
    );
    println!(
        "restart latency, drover (SIGKILL -> replacement running): median {:.3} ms, p90 {:.3} ms ({:.2}x posix_spawn loop, {:.2}x fork loop)",
        ms(restart.0),
        ms(restart.1),
        restart.0.as_secs_f64() / bare.0.as_secs_f64(),
        restart.0.as_secs_f64() / bare_fork.0.as_secs_f64()
    );
    println!(
        "start of 100 sleeps, bare posix_spawn loop: {:.1} ms on 1 thread, {:.1} ms on 2 threads",
        ms(bare_start),
        ms(bare_start_parallel)
    );
    println!(
        "start of 100 independent services, all running: {:.1} ms",
        ms(start)
    );
    println!(
        "drain of 100 services that exit on SIGTERM: {:.1} ms",
        ms(drain_term)
    );
    println!(
        "drain of 100 services that ignore SIGTERM (stop.timeout 2s): {:.3} s",
        drain_ignore.as_secs_f64()
    );
    println!(
        "crash loop, default backoff, 10 s: {} starts, {:.3}% of a core",
        crash.0, crash.1
    );
    for (n, (rss, idle)) in [(100, footprint_100), (1000, footprint_1000)] {
        println!(
            "drover binary with {n} services: RSS {:.1} MiB, CPU over 10 s idle {} ms",
            rss as f64 / 1024.0 / 1024.0,
            idle
        );
    }
    // The default output mode: a pipe and a reader per stream of each service.
    for n in [100, 1000] {
        let yaml = services(n, "{ command: [sleep, \"1000\"] }")
            .replace("settings: { log: { service_output: discard } }\n", "");
        let drover = Binary::start(&yaml, n);
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_of(drover.pid);
        drover.stop();
        println!(
            "drover binary with {n} services, output prefixed (the default): RSS {:.1} MiB",
            rss as f64 / 1024.0 / 1024.0
        );
    }
}

/// Resident memory of `pid`, in bytes.
fn rss_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn median_p90(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 9 / 10])
}

/// How a bare loop starts its children.
#[derive(Clone, Copy)]
enum Spawn {
    /// std's default: posix_spawn, a vfork-style clone that shares memory until exec.
    PosixSpawn,
    /// fork then exec, as any spawn with work to do in the child (drover's) must.
    Fork,
}

fn spawn_sleep(how: Spawn) -> std::process::Child {
    let mut command = Command::new("sleep");
    command.arg("1000");
    if let Spawn::Fork = how {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure does nothing; its presence makes std fork instead of posix_spawn.
        unsafe { command.pre_exec(|| Ok(())) };
    }
    command.spawn().unwrap()
}

/// The floor: kill a child, wait for it, start its replacement, in a plain loop.
fn bare_restart_latency(samples: usize, how: Spawn) -> (Duration, Duration) {
    let spawn = || spawn_sleep(how);
    let mut child = spawn();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let pid = Pid::from_raw(child.id() as i32);
        let t0 = Instant::now();
        kill(pid, Signal::SIGKILL).unwrap();
        waitpid(pid, None).unwrap();
        child = spawn();
        times.push(t0.elapsed());
    }
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    waitpid(pid, None).unwrap();
    median_p90(times)
}

/// The floor for starting `n` services: posix_spawn `n` sleeps from `threads` threads at once.
fn bare_start_all(n: usize, threads: usize) -> Duration {
    let t0 = Instant::now();
    let spawners: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                (0..n / threads)
                    .map(|_| spawn_sleep(Spawn::PosixSpawn))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let children: Vec<_> = spawners
        .into_iter()
        .flat_map(|spawner| spawner.join().unwrap())
        .collect();
    let took = t0.elapsed();
    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    took
}

fn manifest(yaml: &str) -> drover_spec::Manifest {
    drover_spec::load_str(yaml, Path::new("/tmp/drover-bench.yaml")).unwrap()
}

fn services(n: usize, body: &str) -> String {
    let mut yaml = String::from("settings: { log: { service_output: discard } }\nservices:\n");
    for i in 0..n {
        yaml.push_str(&format!("  s{i}: {body}\n"));
    }
    yaml
}

async fn restart_latency(processes: &Processes, samples: usize) -> (Duration, Duration) {
    let yaml = "settings: { log: { service_output: discard } }\nservices:\n  s: { command: [sleep, \"1000\"], restart: { policy: always, backoff: { initial: 0s } } }\n";
    let (supervisor, done) = Supervisor::start(manifest(yaml), processes.clone()).unwrap();
    let mut events = supervisor.subscribe();
    let mut pid = loop {
        if let Event::State(e) = events.recv().await.unwrap()
            && e.to == State::Running
        {
            break e.pid.unwrap();
        }
    };
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        pid = loop {
            if let Event::State(e) = events.recv().await.unwrap()
                && e.to == State::Running
            {
                break e.pid.unwrap();
            }
        };
        times.push(t0.elapsed());
    }
    supervisor.send(Control::Shutdown);
    done.await.unwrap();
    median_p90(times)
}

async fn wait_count(events: &mut tokio::sync::broadcast::Receiver<Event>, state: State, n: usize) {
    let mut seen = 0;
    while seen < n {
        if let Event::State(e) = events.recv().await.unwrap()
            && e.to == state
        {
            seen += 1;
        }
    }
}

async fn start_all(processes: &Processes, n: usize) -> Duration {
    let manifest = manifest(&services(n, "{ command: [sleep, \"1000\"] }"));
    let t0 = Instant::now();
    let (supervisor, done) = Supervisor::start(manifest, processes.clone()).unwrap();
    let mut events = supervisor.subscribe();
    wait_count(&mut events, State::Running, n).await;
    let took = t0.elapsed();
    supervisor.send(Control::Kill);
    done.await.unwrap();
    took
}

async fn drain(processes: &Processes, n: usize, script: &str, timeout: &str) -> Duration {
    let body = format!("{{ command: \"{script}\", stop: {{ timeout: {timeout} }} }}");
    let (supervisor, done) =
        Supervisor::start(manifest(&services(n, &body)), processes.clone()).unwrap();
    let mut events = supervisor.subscribe();
    wait_count(&mut events, State::Running, n).await;
    // Let the shells reach `exec sleep` (and so apply their trap) before the drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    supervisor.send(Control::Shutdown);
    done.await.unwrap();
    t0.elapsed()
}

fn cpu_of_self() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

async fn crash_loop_cpu(processes: &Processes, over: Duration) -> (u64, f64) {
    let yaml = "settings: { log: { service_output: discard } }\nservices:\n  crash: { command: [\"false\"] }\n";
    let cpu0 = cpu_of_self();
    let (supervisor, done) = Supervisor::start(manifest(yaml), processes.clone()).unwrap();
    tokio::time::sleep(over).await;
    let starts = supervisor.snapshot()[0].starts;
    let cpu = cpu_of_self() - cpu0;
    supervisor.send(Control::Kill);
    done.await.unwrap();
    (starts, cpu.as_secs_f64() / over.as_secs_f64() * 100.0)
}

/// RSS (bytes) of the real binary with `n` sleeping services, and its CPU (ms) over 10 s idle.
fn footprint(n: usize) -> (u64, u64) {
    let drover = Binary::start(&services(n, "{ command: [sleep, \"1000\"] }"), n);
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_of(drover.pid);
    let cpu0 = cpu_ticks(drover.pid);
    std::thread::sleep(Duration::from_secs(10));
    let idle_ms = (cpu_ticks(drover.pid) - cpu0) * 1000 / 100;
    drover.stop();
    (rss, idle_ms)
}
