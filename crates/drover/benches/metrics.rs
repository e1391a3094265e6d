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
    let (times, size, series) = runtime.block_on(async {
        let processes = Processes::start().unwrap();
        let (supervisor, done) = Supervisor::start(manifest, processes.clone()).unwrap();
        let exporter = drover_metrics::Exporter::new(supervisor.clone(), processes).unwrap();
        let _probes = exporter.record_probes();
        let mut events = supervisor.subscribe();
        wait_ready(&mut events, SERVICES).await;
        let mut times = Vec::with_capacity(SCRAPES);
        let mut text = String::new();
        for _ in 0..SCRAPES {
            let t0 = Instant::now();
            text = exporter.render();
            times.push(t0.elapsed());
        }
        supervisor.send(Control::Kill);
        done.await.unwrap();
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        (times, text.len(), series)
    });
    let mut sorted = times.clone();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "scrape of {SERVICES} services ({series} series, {} KiB): median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {SCRAPES} scrapes",
        size / 1024,
        ms(sorted[SCRAPES / 2]),
        ms(sorted[SCRAPES * 9 / 10]),
        ms(sorted[SCRAPES - 1])
    );
}
