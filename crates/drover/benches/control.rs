//! The control socket (`cargo bench -p drover --bench control`): the whole `drover status
//! --json` command against 1000 services (issue 15's goal: < 20 ms median), a hand restart to
//! the new process running (goal: < 5 ms above the crash-restart latency, which the supervisor
//! benchmark measures), and drover's idle CPU with the socket on (goal: 0).
// No reaper runs in this process: waiting on the clients it starts is its own business.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::disallowed_methods)]

mod common;

use common::{Binary, cpu_ticks};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn median_p90(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(times[times.len() / 2]), ms(times[times.len() * 9 / 10]))
}

/// One request over the socket; the whole answer.
fn request(socket: &std::path::Path, line: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "{line} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn wait_socket(socket: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    println!(
        "drover control benchmark (release build, {} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut yaml = String::from("settings: { log: { service_output: discard } }\nservices:\n");
    for i in 0..1000 {
        yaml.push_str(&format!("  s{i}: {{ command: [sleep, \"3600\"] }}\n"));
    }
    let many = Binary::start(&yaml, 1000);
    let socket = many.socket();
    wait_socket(&socket);
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..30 {
        let started = Instant::now();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        times.push(started.elapsed());
        assert!(output.status.success());
        size = output.stdout.len();
    }
    let (median, p90) = median_p90(times);
    println!(
        "drover status --json, 1000 services ({} KiB), whole command: median {median:.1} ms, p90 {p90:.1} ms",
        size / 1024
    );
    let mut times = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let answer = request(&socket, "GET /v1/status");
        times.push(started.elapsed());
        assert!(answer.starts_with("HTTP/1.1 200"));
    }
    let (median, p90) = median_p90(times);
    println!("GET /v1/status, 1000 services, one request: median {median:.1} ms, p90 {p90:.1} ms");
    let before = cpu_ticks(many.pid);
    std::thread::sleep(Duration::from_secs(10));
    let idle = cpu_ticks(many.pid) - before;
    println!(
        "drover with 1000 services and the control socket, CPU over 10 s idle: {} ms",
        idle * 10
    );
    many.stop();

    let one = Binary::start(
        "settings: { log: { service_output: discard } }\nservices:\n  web: { command: [sleep, \"3600\"] }\n",
        1,
    );
    let socket = one.socket();
    wait_socket(&socket);
    let mut raw = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let answer = request(&socket, "POST /v1/services/web/restart");
        raw.push(started.elapsed());
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let (median, p90) = median_p90(raw);
    println!(
        "restart by hand, POST /v1/services/web/restart to the new process running: median {median:.2} ms, p90 {p90:.2} ms"
    );
    let mut whole = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["restart", "web", "--socket"])
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        whole.push(started.elapsed());
        assert!(status.success());
    }
    let (median, p90) = median_p90(whole);
    println!("drover restart web, whole command: median {median:.2} ms, p90 {p90:.2} ms");
    one.stop();
}
