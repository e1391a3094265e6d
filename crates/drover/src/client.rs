//! The client commands: `drover status | start | stop | restart | signal | events | reload`,
//! each one request (or one per service) to the control socket of a running drover.
//!
//! Exit codes: 0 done, 1 the operation failed (the message says why), 2 usage error, 3 no
//! drover at the socket (the message names the path tried).

use crate::cli::{ClientArgs, OperationArgs};
use drover_control::api::{ErrorAnswer, OperationAnswer, ReloadAnswer, Status};
use drover_control::{Client, ClientError};
use hyper::{Method, StatusCode};
use std::process::ExitCode;

/// The exit code when no drover answers at the socket.
const NOT_RUNNING: u8 = 3;
/// How long an answer may take (the server's own waits end before: 60 s for a signal).
const ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(75);
/// How long a reload's answer may take (the server waits 120 s for it).
const RELOAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(135);

fn client(args: &ClientArgs) -> Result<Client, ExitCode> {
    match args.socket.clone().or_else(drover_control::default_socket) {
        Some(path) => Ok(Client::new(path)),
        None => {
            eprintln!("drover: {}", drover_control::no_default());
            Err(ExitCode::from(2))
        }
    }
}

/// An error of the client itself: 3 when nothing listens, 1 otherwise.
fn failed(err: &ClientError) -> ExitCode {
    eprintln!("drover: {err}");
    match err {
        ClientError::NotRunning { .. } => ExitCode::from(NOT_RUNNING),
        ClientError::Forbidden { .. } | ClientError::Protocol { .. } => ExitCode::from(1),
    }
}

/// The `error` of an error answer, or the body as it is.
fn error_text(body: &str) -> String {
    serde_json::from_str::<ErrorAnswer>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.trim().to_string())
}

/// Runs one client command on a fresh current-thread runtime.
fn block_on<F: std::future::Future<Output = ExitCode>>(future: F) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => {
            eprintln!("drover: cannot start: {err}");
            ExitCode::from(1)
        }
    }
}

/// `drover status [SVC...]`.
pub(crate) fn status(services: &[String], args: &ClientArgs) -> ExitCode {
    let client = match client(args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let mut target = String::from("/v1/status");
    for (i, service) in services.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str("service=");
        target.push_str(&encode(service));
    }
    block_on(async move {
        let answer = match client.request(Method::GET, &target, ANSWER_LIMIT).await {
            Ok(answer) => answer,
            Err(err) => return failed(&err),
        };
        if answer.status != StatusCode::OK {
            eprintln!("drover: {}", error_text(&answer.body));
            return ExitCode::from(1);
        }
        if args.json {
            print!("{}", answer.body);
            return ExitCode::SUCCESS;
        }
        match serde_json::from_str::<Status>(&answer.body) {
            Ok(status) => {
                print!("{}", status_table(&status));
                if let Some(metrics) = &status.metrics {
                    println!("\nmetrics: {metrics}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("drover: the status answer is not understood: {err}");
                ExitCode::from(1)
            }
        }
    })
}

/// The status as a table: one line per service, columns aligned.
fn status_table(status: &Status) -> String {
    let header = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "READY",
        "LAST EXIT",
        "REASON",
    ];
    let rows: Vec<[String; 8]> = status
        .services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.state.clone(),
                s.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                s.uptime_seconds.map_or_else(|| "-".into(), uptime),
                s.restarts.to_string(),
                if s.ready { "yes" } else { "no" }.into(),
                s.last_exit.clone().unwrap_or_else(|| "-".into()),
                s.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:width$}  "));
            }
        }
        out.push('\n');
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    out
}

/// Seconds as `3d4h`, `2h5m`, `4m10s`, `12s`.
fn uptime(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `drover start | stop | restart SVC... | --all`: one request per service, all at once.
pub(crate) fn operate(operation: &str, args: &OperationArgs) -> ExitCode {
    let client = match client(&args.client) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let operation = operation.to_string();
    block_on(async move {
        let services = if args.all {
            match all_services(&client).await {
                Ok(services) => services,
                Err(code) => return code,
            }
        } else {
            args.services.clone()
        };
        let timeout = humantime::format_duration(args.timeout).to_string();
        // The server answers `timeout` once the wait is over; a margin for the rest.
        let limit = args
            .timeout
            .saturating_add(std::time::Duration::from_secs(15));
        // One request per service, all at once: each waits for its own service.
        let requests: Vec<_> = services
            .iter()
            .map(|service| {
                let target = format!(
                    "/v1/services/{}/{operation}?wait={}&timeout={}",
                    encode(service),
                    !args.no_wait,
                    encode(&timeout.replace(' ', ""))
                );
                let (client, service) = (client.clone(), service.clone());
                tokio::spawn(async move {
                    let answer = client.request(Method::POST, &target, limit).await;
                    (service, answer)
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            if let Ok(answer) = request.await {
                answers.push(answer);
            }
        }
        let mut code = ExitCode::SUCCESS;
        let mut answers_json = Vec::new();
        for (service, answer) in answers {
            let answer = match answer {
                Ok(answer) => answer,
                Err(err) => return failed(&err),
            };
            let parsed = serde_json::from_str::<OperationAnswer>(&answer.body);
            let ok = matches!(answer.status, StatusCode::OK | StatusCode::ACCEPTED);
            if !ok {
                code = ExitCode::from(1);
            }
            if args.client.json {
                answers_json.push(
                    serde_json::from_str::<serde_json::Value>(&answer.body)
                        .unwrap_or(serde_json::Value::Null),
                );
                continue;
            }
            let message = match parsed {
                Ok(parsed) => parsed.message,
                Err(_) => error_text(&answer.body),
            };
            if ok {
                println!("{service}: {message}");
            } else {
                eprintln!("drover: {service}: {message}");
            }
        }
        if args.client.json {
            println!("{}", serde_json::Value::Array(answers_json));
        }
        code
    })
}

/// Every service's name, from the status.
async fn all_services(client: &Client) -> Result<Vec<String>, ExitCode> {
    let answer = client
        .request(Method::GET, "/v1/status", ANSWER_LIMIT)
        .await
        .map_err(|err| failed(&err))?;
    serde_json::from_str::<Status>(&answer.body)
        .map(|status| status.services.into_iter().map(|s| s.name).collect())
        .map_err(|err| {
            eprintln!("drover: the status answer is not understood: {err}");
            ExitCode::from(1)
        })
}

/// `drover signal SVC SIGNAL [--group]`.
pub(crate) fn signal(service: &str, signal: &str, group: bool, args: &ClientArgs) -> ExitCode {
    if drover_control::parse_signal(signal).is_none() {
        eprintln!("drover: unknown signal `{signal}`: a name (TERM, SIGHUP) or a number");
        return ExitCode::from(2);
    }
    let client = match client(args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let target = format!(
        "/v1/services/{}/signal?signal={}&group={group}",
        encode(service),
        encode(signal)
    );
    block_on(async move {
        let answer = match client.request(Method::POST, &target, ANSWER_LIMIT).await {
            Ok(answer) => answer,
            Err(err) => return failed(&err),
        };
        let ok = answer.status == StatusCode::OK;
        if args.json {
            print!("{}", answer.body);
        } else {
            let message = serde_json::from_str::<OperationAnswer>(&answer.body)
                .map(|a| a.message)
                .unwrap_or_else(|_| error_text(&answer.body));
            if ok {
                println!("{service}: {message}");
            } else {
                eprintln!("drover: {service}: {message}");
            }
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}

/// `drover logs [SVC...] [-n N] [-f]`: `service stream | line`, or the JSON lines with `--json`.
pub(crate) fn logs(services: &[String], lines: usize, follow: bool, args: &ClientArgs) -> ExitCode {
    let client = match client(args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let mut target = format!("/v1/logs?lines={lines}&follow={follow}");
    for service in services {
        target.push_str("&service=");
        target.push_str(&encode(service));
    }
    let json = args.json;
    block_on(async move {
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let mut body = String::new();
        let streamed = client
            .stream(&target, |line| {
                let shown = match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(value) if value["error"].is_string() => {
                        body.push_str(line);
                        return true;
                    }
                    Ok(value) if !json && value["service"].is_string() => format!(
                        "{} {} | {}",
                        value["service"].as_str().unwrap_or_default(),
                        value["stream"].as_str().unwrap_or_default(),
                        value["line"].as_str().unwrap_or_default()
                    ),
                    Ok(value) if !json && value["type"] == "lagged" => {
                        format!(
                            "drover: {} lines missed (this terminal was too slow)",
                            value["missed"]
                        )
                    }
                    _ => {
                        body.push_str(line);
                        line.to_string()
                    }
                };
                writeln!(stdout, "{shown}")
                    .and_then(|()| stdout.flush())
                    .is_ok()
            })
            .await;
        match streamed {
            Ok(StatusCode::OK) => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("drover: {}", error_text(&body));
                ExitCode::from(1)
            }
            Err(err) => failed(&err),
        }
    })
}

/// `drover events`: JSON lines until drover ends or the command is interrupted.
pub(crate) fn events(args: &ClientArgs) -> ExitCode {
    let client = match client(args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    block_on(async move {
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        let streamed = client
            .stream("/v1/events", |line| {
                writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .is_ok()
            })
            .await;
        match streamed {
            Ok(StatusCode::OK) => ExitCode::SUCCESS,
            Ok(status) => {
                eprintln!("drover: the control socket answered {status}");
                ExitCode::from(1)
            }
            Err(err) => failed(&err),
        }
    })
}

/// `drover reload`.
pub(crate) fn reload(args: &ClientArgs) -> ExitCode {
    let client = match client(args) {
        Ok(client) => client,
        Err(code) => return code,
    };
    block_on(async move {
        let answer = match client
            .request(Method::POST, "/v1/reload", RELOAD_LIMIT)
            .await
        {
            Ok(answer) => answer,
            Err(err) => return failed(&err),
        };
        if args.json {
            print!("{}", answer.body);
            return if answer.status == StatusCode::OK {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        match serde_json::from_str::<ReloadAnswer>(&answer.body) {
            Ok(reload) if reload.applied => {
                println!(
                    "reload: {}",
                    reload.plan.as_deref().unwrap_or(&reload.message)
                );
                ExitCode::SUCCESS
            }
            Ok(reload) => {
                for line in &reload.errors {
                    eprintln!("{line}");
                }
                eprintln!("drover: reload: {}", reload.message);
                ExitCode::from(1)
            }
            Err(_) => {
                eprintln!("drover: reload: {}", error_text(&answer.body));
                ExitCode::from(1)
            }
        }
    })
}

/// Percent-encodes what a query or path segment cannot hold as it is.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_control::api::ServiceStatus;

    #[test]
    fn the_status_table_aligns_its_columns() {
        let service = |name: &str, state: &str, pid| ServiceStatus {
            name: name.into(),
            state: state.into(),
            reason: "why".into(),
            pid,
            uptime_seconds: pid.map(|_| 125.0),
            starts: 1,
            restarts: 2,
            ready: state == "ready",
            last_exit: None,
            status: None,
        };
        let table = status_table(&Status {
            services: vec![
                service("web", "ready", Some(42)),
                service("database", "stopped", None),
            ],
            metrics: None,
        });
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "NAME      STATE    PID  UPTIME  RESTARTS  READY  LAST EXIT  REASON"
        );
        assert_eq!(
            lines[1],
            "web       ready    42   2m5s    2         yes    -          why"
        );
        assert_eq!(
            lines[2],
            "database  stopped  -    -       2         no     -          why"
        );
        assert_eq!(uptime(90_061.0), "1d1h");
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
