//! drover's HTTP probe client against hyper's (`cargo bench -p drover --bench http_probe`),
//! for issue 17: is the hand-written client worth keeping?
//!
//! Both clients do what an HTTP probe does: connect to a loopback server, `GET /healthz` with
//! `Connection: close`, read the status and the body, close. The server is a thread of this
//! process that answers `200 OK` with a 2-byte body. Measured for each client, in turns:
//! - **load**: 1000 probes, each checking once a second (phases spread over the second), for
//!   10 s on one current-thread runtime, as drover's probes run: the CPU of that thread (% of
//!   one core) and the latency of each check (median, p99);
//! - **back to back**: 5000 checks one after another: the mean time of one.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use drover_probe::{CheckOutcome, Checker};
use drover_spec::model::ProbeAction;
use http_body_util::BodyExt;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROBES: usize = 1000;
const OVER: Duration = Duration::from_secs(10);
const BACK_TO_BACK: usize = 5000;
const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Client {
    Drover,
    Hyper,
}

fn main() {
    let port = serve();
    println!(
        "HTTP probe client: drover's hand-written one against hyper 1 (client::conn::http1), loopback server answering 200 with a 2-byte body"
    );
    println!(
        "{:<8} {:>5} {:>18} {:>16} {:>14} {:>14} {:>10}",
        "client",
        "round",
        "CPU, 1000 probes/s",
        "median latency",
        "p99 latency",
        "back to back",
        "failures"
    );
    for round in 1..=2 {
        for client in [Client::Drover, Client::Hyper] {
            let load = under_load(client, port);
            let each = back_to_back(client, port);
            println!(
                "{:<8} {:>5} {:>17.2}% {:>13.1} µs {:>11.1} µs {:>11.1} µs {:>10}",
                format!("{client:?}").to_lowercase(),
                round,
                load.cpu_percent,
                load.median.as_secs_f64() * 1e6,
                load.p99.as_secs_f64() * 1e6,
                each.as_secs_f64() * 1e6,
                load.failures
            );
        }
    }
}

/// A loopback HTTP server on its own thread: reads a request's headers, answers, closes.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16 * 1024 {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok",
            );
        }
    });
    port
}

/// One check by `client`: whether it passed.
async fn check(client: Client, port: u16, drover: &Checker) -> bool {
    match client {
        Client::Drover => drover.check(TIMEOUT).await.outcome == CheckOutcome::Success,
        Client::Hyper => tokio::time::timeout(TIMEOUT, hyper_get(port))
            .await
            .is_ok_and(|status| status.is_some_and(|s| (200..400).contains(&s))),
    }
}

/// What an HTTP probe needs, done with hyper: a connection, one request, the status, the
/// body read to its end.
async fn hyper_get(port: u16) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/healthz")
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "drover-probe")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await.ok()?;
    let _ = driver.await;
    Some(status)
}

fn drover_checker(port: u16) -> Checker {
    let action = ProbeAction::Http {
        host: "127.0.0.1".into(),
        port,
        path: "/healthz".into(),
        headers: Vec::new(),
    };
    Checker::new(&action, |_| unreachable!("an HTTP probe has no command")).unwrap()
}

struct Load {
    cpu_percent: f64,
    median: Duration,
    p99: Duration,
    failures: usize,
}

/// [`PROBES`] probes checking once a second for [`OVER`], on one current-thread runtime on a
/// thread of its own.
fn under_load(client: Client, port: u16) -> Load {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let latencies = Arc::new(Mutex::new(Vec::new()));
            let failures = Arc::new(Mutex::new(0usize));
            let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut tasks = Vec::new();
            for i in 0..PROBES {
                let (latencies, failures, measuring) =
                    (latencies.clone(), failures.clone(), measuring.clone());
                let offset = Duration::from_micros((i as u64 * 1_000_000) / PROBES as u64);
                tasks.push(tokio::spawn(async move {
                    let checker = drover_checker(port);
                    let start = tokio::time::Instant::now() + offset;
                    let mut ticks = tokio::time::interval_at(start, Duration::from_secs(1));
                    loop {
                        ticks.tick().await;
                        let began = Instant::now();
                        let passed = check(client, port, &checker).await;
                        if measuring.load(std::sync::atomic::Ordering::Relaxed) {
                            latencies.lock().unwrap().push(began.elapsed());
                            if !passed {
                                *failures.lock().unwrap() += 1;
                            }
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            measuring.store(true, std::sync::atomic::Ordering::Relaxed);
            let cpu0 = thread_cpu();
            tokio::time::sleep(OVER).await;
            let cpu = thread_cpu() - cpu0;
            measuring.store(false, std::sync::atomic::Ordering::Relaxed);
            for task in tasks {
                task.abort();
            }
            let mut latencies = latencies.lock().unwrap().clone();
            latencies.sort();
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            let failures = *failures.lock().unwrap();
            Load {
                cpu_percent: cpu.as_secs_f64() / OVER.as_secs_f64() * 100.0,
                median: at(0.5),
                p99: at(0.99),
                failures,
            }
        })
    })
    .join()
    .unwrap()
}

/// The mean time of one check over [`BACK_TO_BACK`] checks in a row.
fn back_to_back(client: Client, port: u16) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let checker = drover_checker(port);
        let started = Instant::now();
        for _ in 0..BACK_TO_BACK {
            assert!(
                check(client, port, &checker).await,
                "{client:?} failed a check"
            );
        }
        started.elapsed() / BACK_TO_BACK as u32
    })
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}
