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
mod client;
mod init;
mod logging;
mod reload;
mod report;
mod run;
mod systemd;
mod telemetry;
mod tini;

use clap::Parser;
use cli::{Cli, Command};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How long drover's last log lines may take to reach stderr at exit.
const LOG_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The manifest used when none is named.
const DEFAULT_MANIFEST: &str = "drover.yaml";

fn main() -> ExitCode {
    // Before anything changes them: `drover -- CMD` hands them on to CMD.
    let inherited = drover_supervisor::InheritedSignals::capture();
    // drover's own guard (see drover_supervisor::guard), started by `drover run` itself.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == drover_supervisor::guard::GUARD_ARG)
    {
        return ExitCode::from(u8::try_from(drover_supervisor::guard::main()).unwrap_or(1));
    }
    drover_supervisor::guard::enable();
    // tini's command line whenever the first word is not a subcommand: CMD's words are bytes,
    // and never drover's options.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match tini::parse(&args, |key| std::env::var_os(key)) {
        tini::Parsed::Init(options) => return single_command(options, inherited),
        tini::Parsed::Usage(message) => {
            eprintln!("drover: {message}");
            return ExitCode::from(2);
        }
        tini::Parsed::Subcommand => {}
    }
    let cli = Cli::parse();
    match (cli.command, cli.init_command.is_empty()) {
        (Some(Command::Check { manifests }), _) => check(manifests),
        (Some(Command::Schema), _) => schema(),
        (Some(Command::Completions { shell }), _) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "drover", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        (Some(Command::Diff { old, new }), _) => diff(&old, &new),
        (Some(Command::Status { services, client }), _) => client::status(&services, &client),
        (Some(Command::Start(args)), _) => client::operate("start", &args),
        (Some(Command::Stop(args)), _) => client::operate("stop", &args),
        (Some(Command::Restart(args)), _) => client::operate("restart", &args),
        (
            Some(Command::Signal {
                service,
                signal,
                group,
                client,
            }),
            _,
        ) => client::signal(&service, &signal, group, &client),
        (Some(Command::Events { client }), _) => client::events(&client),
        (
            Some(Command::Logs {
                services,
                lines,
                follow,
                client,
            }),
            _,
        ) => client::logs(&services, lines, follow, &client),
        (Some(Command::Reload { client }), _) => client::reload(&client),
        (Some(Command::Run(args)), _) => run(args),
        (None, false) => single_command(
            tini::InitOptions {
                argv: cli.init_command.into_iter().map(Into::into).collect(),
                ..tini::InitOptions::default()
            },
            inherited,
        ),
        (None, true) => {
            eprintln!("drover: no command given; try `drover --help`");
            ExitCode::from(2)
        }
    }
}

/// `drover [OPTIONS] [--] CMD [ARGS...]`: CMD as the only child, as tini runs it.
fn single_command(
    options: tini::InitOptions,
    inherited: drover_supervisor::InheritedSignals,
) -> ExitCode {
    // tini's -v: warnings by default, then info, debug, trace.
    let level = ["warn", "info", "debug", "trace"][usize::from(options.verbosity.min(3))];
    let level = logging::Level::FromEnv { default: level };
    let _ = logging::init(drover_spec::model::LogFormat::Text, level, None);
    let code = exit_code(block_on(init::init(options, inherited)));
    logging::LogQueue::flush(LOG_FLUSH_LIMIT);
    code
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
        match drover_spec::load(manifest) {
            Ok(manifest) => {
                for warning in &manifest.warnings {
                    eprintln!("{}", warning.warning_line());
                }
            }
            Err(err) => {
                printer.error(&err);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `drover diff OLD NEW`: the plan a reload from OLD to NEW would apply, on stdout, as the
/// `reload:` log line shows it: `+added ~restarted *updated -removed =unchanged`.
fn diff(old: &Path, new: &Path) -> ExitCode {
    let mut printer = report::Printer::for_stderr();
    let (old, new) = (drover_spec::load(old), drover_spec::load(new));
    match (old, new) {
        (Ok(old), Ok(new)) => {
            let plan = drover_spec::diff::plan(&old, &new);
            println!("{plan}");
            // As diff(1): 0 when equal, 1 when they differ.
            ExitCode::from(u8::from(!plan.is_empty()))
        }
        (old, new) => {
            for err in [old.err(), new.err()].into_iter().flatten() {
                printer.error(&err);
            }
            ExitCode::from(2)
        }
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
fn run(args: cli::RunArgs) -> ExitCode {
    let cli::RunArgs {
        manifest,
        services,
        metrics_listen,
        log_level,
    } = args;
    let path = manifest.unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST));
    let manifest = match drover_spec::load(&path) {
        Ok(manifest) => manifest,
        Err(err) => {
            report::Printer::for_stderr().error(&err);
            return ExitCode::from(1);
        }
    };
    let manifest = match manifest.only(&services) {
        Ok(manifest) => manifest,
        Err(err) => {
            report::Printer::for_stderr().error(&err);
            return ExitCode::from(2);
        }
    };
    // While drover has one thread: the descriptor table grows once, cheaply (see
    // reserve_descriptors), instead of under the services' start. The limit is raised first, as
    // run() does anyway; it warns there if it is too low.
    let _ = drover_supervisor::raise_open_file_limit();
    let _ =
        drover_supervisor::reserve_descriptors(run::descriptors_needed(manifest.services.len()));
    // Before the runtime starts: the exporter's HTTP client is a blocking one.
    let (telemetry, refused) = match telemetry::Telemetry::from_env() {
        Ok(telemetry) => (telemetry, None),
        Err(refused) => (None, Some(refused)),
    };
    let level = match &log_level {
        Some(level) => logging::Level::Fixed(level),
        None => logging::Level::FromEnv { default: "info" },
    };
    let log_format = logging::init(
        manifest.settings.log_format,
        level,
        telemetry.as_ref().map(telemetry::Telemetry::tracer),
    );
    if let Some(telemetry::Refused(why)) = refused {
        tracing::warn!("traces are not exported: {why}");
    }
    for warning in &manifest.warnings {
        tracing::warn!("{}", warning.warning_line());
    }
    let metrics_pinned = metrics_listen.is_some();
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
    // Bound before any service starts: an address in use refuses the start, and nothing runs;
    // but for the default address, which nobody asked for (a second drover on the host).
    let chosen = metrics_pinned || manifest.settings.metrics_listen_chosen;
    let metrics = match listen
        .map(|address| bind_metrics(address, chosen))
        .transpose()
    {
        Ok(listener) => listener,
        Err(err) => {
            let address = listen.map(|a| a.to_string()).unwrap_or_default();
            eprintln!(
                "drover: cannot listen for metrics on {address}: {err}; choose another address with --metrics-listen ADDR or settings.metrics.listen, or run without metrics with --metrics-listen ''"
            );
            return ExitCode::from(1);
        }
    };
    let start = run::Start {
        path,
        services,
        manifest,
        metrics,
        metrics_pinned,
        tracer: telemetry.as_ref().map(telemetry::Telemetry::tracer),
        log_format,
    };
    let result = block_on(run::run(start));
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    let code = exit_code(result);
    logging::LogQueue::flush(LOG_FLUSH_LIMIT);
    code
}

/// Runs `future` on a single-threaded runtime: supervision is I/O-bound, and one thread keeps
/// drover small.
fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(
    future: F,
) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(future);
    // Dropping a runtime waits for every blocking task, however stuck (a read of a file on a
    // hung mount): drover's exit must not. What is still running after this is abandoned.
    runtime.shutdown_timeout(BLOCKING_TASKS_LIMIT);
    result
}

/// How long drover's exit waits for blocking tasks (a reload's read) still running.
const BLOCKING_TASKS_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds the metrics listener. When the address is the default one (`chosen` false) and it is
/// in use by drover's own user (another drover), another port of the same address, which the
/// log and `drover status` name. Held by another user, it is refused as a chosen one is: a
/// local user who took the port first must not get drover's scrapes.
fn bind_metrics(address: SocketAddr, chosen: bool) -> std::io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(address) {
        Err(err)
            if !chosen
                && err.kind() == std::io::ErrorKind::AddrInUse
                && listeners_owned_by(address.port(), drover_supervisor::effective_uid()) =>
        {
            let listener = std::net::TcpListener::bind(SocketAddr::new(address.ip(), 0))?;
            if let Ok(instead) = listener.local_addr() {
                tracing::warn!(
                    "metrics: the default address {address} is in use (another drover?); serving on {instead} instead; set settings.metrics.listen (or --metrics-listen) to choose one"
                );
            }
            Ok(listener)
        }
        other => other,
    }
}

/// Whether every listening TCP socket on `port` (IPv4 and IPv6, `/proc/net/tcp*`, each read
/// bounded) belongs to `uid`, and there is at least one.
fn listeners_owned_by(port: u16, uid: u32) -> bool {
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(bytes) = drover_spec::read_regular_file(Path::new(table), 16 * 1024 * 1024) else {
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).lines().skip(1) {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let (Some(local), Some(state), Some(owner)) =
                (fields.get(1), fields.get(3), fields.get(7))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                == Some(port);
            if listening && on_port {
                if owner.parse::<u32>().ok() != Some(uid) {
                    return false;
                }
                found = true;
            }
        }
    }
    found
}

fn exit_code(result: anyhow::Result<i32>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            logging::LogQueue::print(&format!("drover: {err:#}"));
            ExitCode::from(1)
        }
    }
}
