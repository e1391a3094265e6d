//! drover: the thin binary. It parses the command line, installs signal handling and logging,
//! and wires the crates together; the work itself lives in the library crates (`drover-spec`
//! for the manifest, `drover-supervisor` for processes).
//!
//! Exit codes of `drover check`: 0 valid, 1 invalid (or unreadable), 2 usage error. Those of
//! `drover run` and `drover -- CMD` are the contract's (`docs/manifest.md`, "Exit codes").
#![forbid(unsafe_code)]
// The binary is where output goes to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod init;
mod logging;
mod report;
mod run;
mod systemd;
mod telemetry;

use clap::Parser;
use cli::{Cli, Command};
use std::path::PathBuf;
use std::process::ExitCode;

/// The manifest used when none is named.
const DEFAULT_MANIFEST: &str = "drover.yaml";

fn main() -> ExitCode {
    // Before anything changes them: `drover -- CMD` hands them on to CMD.
    let inherited = drover_supervisor::InheritedSignals::capture();
    let cli = Cli::parse();
    match (cli.command, cli.init_command.is_empty()) {
        (Some(Command::Check { manifests }), _) => check(manifests),
        (Some(Command::Schema), _) => schema(),
        (
            Some(Command::Run {
                manifest,
                metrics_listen,
            }),
            _,
        ) => run(manifest, metrics_listen),
        (None, false) => {
            logging::init(drover_spec::model::LogFormat::Text, "warn", None);
            exit_code(block_on(init::init(cli.init_command, inherited)))
        }
        (None, true) => {
            eprintln!("drover: no command given; try `drover --help`");
            ExitCode::from(2)
        }
    }
}

/// `drover check MANIFEST...`: every error of every manifest, to stderr.
fn check(manifests: Vec<PathBuf>) -> ExitCode {
    let manifests = if manifests.is_empty() {
        vec![PathBuf::from(DEFAULT_MANIFEST)]
    } else {
        manifests
    };
    let mut printer = report::Printer::for_stderr();
    let mut failed = false;
    for manifest in &manifests {
        if let Err(err) = drover_spec::load(manifest) {
            printer.error(&err);
            failed = true;
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `drover schema`: the manifest's JSON Schema on stdout.
fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&drover_spec::json_schema()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("drover: cannot render the schema: {err}");
            ExitCode::from(1)
        }
    }
}

/// `drover run`: supervises the manifest until told to stop.
fn run(manifest: Option<PathBuf>, metrics_listen: Option<String>) -> ExitCode {
    let manifest = manifest.unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST));
    let manifest = match drover_spec::load(&manifest) {
        Ok(manifest) => manifest,
        Err(err) => {
            report::Printer::for_stderr().error(&err);
            return ExitCode::from(1);
        }
    };
    // Before the runtime starts: the exporter's HTTP client is a blocking one.
    let (telemetry, refused) = match telemetry::Telemetry::from_env() {
        Ok(telemetry) => (telemetry, None),
        Err(refused) => (None, Some(refused)),
    };
    logging::init(
        manifest.settings.log_format,
        "info",
        telemetry.as_ref().map(telemetry::Telemetry::tracer),
    );
    if let Some(telemetry::Refused(why)) = refused {
        tracing::warn!("traces are not exported: {why}");
    }
    let listen = match metrics_listen {
        Some(text) => match drover_spec::parse_listen(&text) {
            Ok(listen) => listen,
            Err(message) => {
                eprintln!("drover: --metrics-listen: {message}");
                return ExitCode::from(2);
            }
        },
        None => manifest.settings.metrics_listen,
    };
    // Bound before any service starts: an address in use refuses the start, and nothing runs.
    let metrics = match listen.map(std::net::TcpListener::bind).transpose() {
        Ok(listener) => listener,
        Err(err) => {
            let address = listen.map(|a| a.to_string()).unwrap_or_default();
            eprintln!(
                "drover: cannot listen for metrics on {address}: {err}; choose another address with --metrics-listen ADDR or settings.metrics.listen, or run without metrics with --metrics-listen ''"
            );
            return ExitCode::from(1);
        }
    };
    let tracer = telemetry.as_ref().map(telemetry::Telemetry::tracer);
    let code = exit_code(block_on(run::run(manifest, metrics, tracer)));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    code
}

/// Runs `future` on a single-threaded runtime: supervision is I/O-bound, and one thread keeps
/// drover small.
fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(
    future: F,
) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn exit_code(result: anyhow::Result<i32>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("drover: {err:#}");
            ExitCode::from(1)
        }
    }
}
