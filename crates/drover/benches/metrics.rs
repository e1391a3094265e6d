//! Scrape cost (`cargo bench -p drover --bench metrics`). Issue 5's goal: a scrape of drover
//! with 1000 services takes under 20 ms of drover time. Measured in this process: the
//! supervisor library with 1000 `sleep` services, each with a readiness probe (so probe series
//! exist too), and `Exporter::render`, the whole of a scrape's work but the socket.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use common::wait_ready;
use drover_supervisor::{Control, Processes, Supervisor};
use std::path::Path;
use std::time::{Duration, Instant};

const SERVICES: usize = 1000;
const SCRAPES: usize = 30;

fn main() {
    drover_supervisor::InheritedSignals::capture();
    let mut yaml = String::from("settings: { log: { service_output: discard } }\nservices:\n");
    for i in 0..SERVICES {
        yaml.push_str(&format!(
            "  s{i}: {{ command: [sleep, \"1000\"], readiness_probe: {{ exec: {{ command: [\"true\"] }}, period: 1h }} }}\n"
        ));
    }
    let manifest = drover_spec::load_str(&yaml, Path::new("/tmp/drover-bench.yaml")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (times, proc_times, uncached_times, size, series) = runtime.block_on(async {
        let processes = Processes::start().unwrap();
        let (supervisor, done) = Supervisor::start(manifest, processes.clone()).unwrap();
        let exporter = drover_metrics::Exporter::new(supervisor.clone(), processes).unwrap();
        let _probes = exporter.record_probes();
        let mut events = supervisor.subscribe();
        wait_ready(&mut events, SERVICES).await;
        let mut times = Vec::with_capacity(SCRAPES);
        let mut proc_times = Vec::with_capacity(SCRAPES);
        let mut uncached_times = Vec::with_capacity(SCRAPES);
        let mut text = String::new();
        let groups: Vec<i32> = supervisor
            .snapshot()
            .iter()
            .filter_map(|s| i32::try_from(s.pid?).ok())
            .collect();
        // A reader of its own, as the exporter's: the /proc pass as a scrape makes it.
        let reader = drover_metrics::usage::UsageReader::start();
        println!(
            "stat files kept open between scrapes: {}",
            if reader.keeps_files() {
                "yes (private file table)"
            } else {
                "no (close_range refused): both /proc rows below open every file"
            }
        );
        for _ in 0..SCRAPES {
            let t0 = Instant::now();
            text = exporter.render();
            times.push(t0.elapsed());
            // The /proc pass alone, the part of a scrape that grows with the processes.
            let t0 = Instant::now();
            std::hint::black_box(reader.by_group(&groups));
            proc_times.push(t0.elapsed());
            // As where close_range(CLOSE_RANGE_UNSHARE) is refused: every file opened and closed.
            let t0 = Instant::now();
            std::hint::black_box(drover_metrics::usage::StatFiles::with_limit(0).by_group(&groups));
            uncached_times.push(t0.elapsed());
        }
        supervisor.send(Control::Kill);
        done.await.unwrap();
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        (times, proc_times, uncached_times, text.len(), series)
    });
    let mut sorted = times.clone();
    sorted.sort();
    let median_p90 = |mut times: Vec<Duration>| {
        times.sort();
        (times[SCRAPES / 2], times[SCRAPES * 9 / 10])
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "scrape of {SERVICES} services ({series} series, {} KiB): median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {SCRAPES} scrapes",
        size / 1024,
        ms(sorted[SCRAPES / 2]),
        ms(sorted[SCRAPES * 9 / 10]),
        ms(sorted[SCRAPES - 1])
    );
    let (median, p90) = median_p90(proc_times);
    println!(
        "  of which the /proc pass (CPU and RSS of every process): median {:.1} ms, p90 {:.1} ms",
        ms(median),
        ms(p90)
    );
    let (median, p90) = median_p90(uncached_times);
    println!(
        "  the /proc pass opening every file (no private file table): median {:.1} ms, p90 {:.1} ms",
        ms(median),
        ms(p90)
    );
}
