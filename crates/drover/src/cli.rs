//! The command line, as `../shared/manifest-v1.md` ("Command line") names it.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// A process supervisor and container init driven by a YAML manifest.
#[derive(Debug, Parser)]
#[command(name = "drover", version, about, long_about = None, args_conflicts_with_subcommands = true)]
#[command(after_help = "Single-command init (tini-compatible): drover -- CMD [ARGS...]")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Run CMD as the only child: forward signals, reap zombies, exit with its code.
    #[arg(last = true, value_name = "CMD")]
    pub(crate) init_command: Vec<String>,
}

/// `drover run`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The manifest [default: ./drover.yaml].
    pub(crate) manifest: Option<PathBuf>,
    /// Only these services, and what they depend on [default: every service].
    pub(crate) services: Vec<String>,
    /// Metrics endpoint address, overriding settings.metrics.listen ('' disables it).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<String>,
    /// drover's own log level, overriding RUST_LOG [default: RUST_LOG, else info].
    #[arg(long, value_name = "LEVEL", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub(crate) log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the services of a manifest (a file, or a directory whose *.yaml files are merged).
    Run(RunArgs),
    /// Validate manifests and print every error as file:line:col; exit 0 valid, 1 invalid.
    Check {
        /// Manifests to check [default: ./drover.yaml].
        manifests: Vec<PathBuf>,
    },
    /// Print the manifest's JSON Schema (for editors and CI linters).
    Schema,
    /// Print what reloading manifest OLD into NEW would do, without doing it; exit 0 equal, 1
    /// different, 2 error (as diff).
    Diff {
        /// The running manifest.
        old: PathBuf,
        /// The new manifest.
        new: PathBuf,
    },
    /// Show the services of the running drover: state, pid, uptime, restarts, ready, last exit.
    Status {
        /// Only these services.
        services: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start services by hand (a stopped one, or one waiting to restart, at once).
    Start(OperationArgs),
    /// Stop services by hand: they stay `stopped` until started.
    Stop(OperationArgs),
    /// Restart services by hand: stop the run, start a new one.
    Restart(OperationArgs),
    /// Send a signal to a service's main process (or its process group).
    Signal {
        /// The service.
        service: String,
        /// The signal: a name (TERM, SIGHUP) or a number.
        signal: String,
        /// To its whole process group.
        #[arg(long)]
        group: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the recent output of services (all of them without names), each line prefixed
    /// with its service and stream.
    Logs {
        /// Only these services.
        services: Vec<String>,
        /// Lines per service.
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: usize,
        /// Then print new lines as they come, until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print state changes, probe results and reloads as they happen, as JSON lines.
    Events {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reload the manifest now (as SIGHUP) and say what was applied, or why not.
    Reload {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How a client command reaches drover.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// The control socket [default: $DROVER_SOCKET, $RUNTIME_DIRECTORY/drover.sock,
    /// /run/drover/drover.sock as root, else $XDG_RUNTIME_DIR/drover/drover.sock].
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `start`, `stop`, `restart`.
#[derive(Debug, clap::Args)]
pub(crate) struct OperationArgs {
    /// The services.
    #[arg(required_unless_present = "all")]
    pub(crate) services: Vec<String>,
    /// Every service.
    #[arg(long, conflicts_with = "services")]
    pub(crate) all: bool,
    /// How long to wait for each to be done.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: std::time::Duration,
    /// Return once drover has taken the request, without waiting.
    #[arg(long)]
    pub(crate) no_wait: bool,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}
