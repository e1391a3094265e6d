//! Probe cost at scale, printed as figures (`cargo bench -p drover --bench probes`). Issue 4's
//! goal: 1000 services, each with a TCP readiness probe every 1 s, cost drover under 5% of one
//! core, and each probe keeps its period within ±10%.
//!
//! The period is measured in this process, from the supervisor's probe events; the CPU on the
//! real `drover` binary (`RUST_LOG=warn`), from /proc. The TCP targets are two listeners on
//! threads of this process, which accept and close.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use common::{Binary, cpu_ticks, wait_ready};
use drover_supervisor::{Control, Event, Processes, Supervisor};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVICES: usize = 1000;
const OVER: Duration = Duration::from_secs(10);

fn main() {
    drover_supervisor::InheritedSignals::capture();
    let ports = [listen(), listen()];
    let manifest = manifest(ports);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let intervals = runtime.block_on(periods(&manifest));
    let bare = bare_connect_loop(ports);
    let cpu = cpu_of_binary(&manifest);

    println!("drover probe benchmark: {SERVICES} services, TCP readiness probe every 1 s");
    let mut sorted = intervals.clone();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    let within = intervals
        .iter()
        .filter(|d| (900..=1100).contains(&d.as_millis()))
        .count();
    println!(
        "probe period over {} s: {} intervals; min {:.1} ms, p1 {:.1} ms, median {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.2}% within ±10%",
        OVER.as_secs(),
        sorted.len(),
        at(0.0),
        at(0.01),
        at(0.5),
        at(0.99),
        at(1.0),
        within as f64 * 100.0 / intervals.len() as f64
    );
    println!(
        "drover binary CPU over {} s with the probes running: {:.2}% of one core",
        OVER.as_secs(),
        cpu
    );
    println!(
        "bare reference, one thread with a tokio timer per target connecting and closing, no supervisor: {:.2}% of one core",
        bare
    );
}

/// A loopback listener that accepts and closes, on its own thread; its port.
fn listen() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    port
}

fn manifest(ports: [u16; 2]) -> String {
    let mut yaml = String::from("settings: { log: { service_output: discard } }\nservices:\n");
    for i in 0..SERVICES {
        let port = ports[i % 2];
        yaml.push_str(&format!(
            "  s{i}: {{ command: [sleep, \"1000\"], readiness_probe: {{ tcp: {{ port: {port} }}, period: 1s }} }}\n"
        ));
    }
    yaml
}

/// Every interval between two consecutive checks of the same probe, over [`OVER`].
async fn periods(yaml: &str) -> Vec<Duration> {
    let manifest = drover_spec::load_str(yaml, Path::new("/tmp/drover-bench.yaml")).unwrap();
    let processes = Processes::start().unwrap();
    let (supervisor, done) = Supervisor::start(manifest, processes).unwrap();
    let mut events = supervisor.subscribe();
    wait_ready(&mut events, SERVICES).await;
    let mut last: HashMap<Arc<str>, Instant> = HashMap::new();
    let mut intervals = Vec::new();
    let end = Instant::now() + OVER;
    while let Ok(Ok(event)) = tokio::time::timeout_at(end.into(), events.recv()).await {
        if let Event::Probe(probe) = event {
            let now = Instant::now();
            if let Some(before) = last.insert(probe.service.clone(), now) {
                intervals.push(now - before);
            }
        }
    }
    supervisor.send(Control::Kill);
    done.await.unwrap();
    intervals
}

/// The floor: a thread that runs [`SERVICES`] tokio tasks, each connecting to one of `ports`
/// and closing once a second, as drover's TCP probes do; its own CPU (% of one core).
fn bare_connect_loop(ports: [u16; 2]) -> f64 {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for i in 0..SERVICES {
                let port = ports[i % 2];
                let offset = Duration::from_micros((i as u64 * 100_000) / SERVICES as u64);
                tokio::spawn(async move {
                    let start = tokio::time::Instant::now() + offset;
                    let mut ticks = tokio::time::interval_at(start, Duration::from_secs(1));
                    loop {
                        ticks.tick().await;
                        let _ = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
                    }
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let cpu0 = thread_cpu();
            tokio::time::sleep(OVER).await;
            (thread_cpu() - cpu0).as_secs_f64() / OVER.as_secs_f64() * 100.0
        })
    })
    .join()
    .unwrap()
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}

/// drover's CPU (% of one core) over [`OVER`] once every service is ready.
fn cpu_of_binary(yaml: &str) -> f64 {
    let drover = Binary::start(yaml, SERVICES);
    // Past the first checks, into the steady state.
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_ticks(drover.pid);
    let t0 = Instant::now();
    std::thread::sleep(OVER);
    let ticks = cpu_ticks(drover.pid) - cpu0;
    let elapsed = t0.elapsed();
    drover.stop();
    ticks as f64 / 100.0 / elapsed.as_secs_f64() * 100.0
}
