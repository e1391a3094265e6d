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
    #[command(
        after_help = "Examples:\n  drover run manifests/demo.yaml\n  drover run drover.yaml web            # web and what it depends on\n  drover run conf.d/ --log-level warn --metrics-listen 0.0.0.0:9464"
    )]
    Run(RunArgs),
    /// Validate manifests and print every error as file:line:col; exit 0 valid, 1 invalid.
    #[command(after_help = "Examples:\n  drover check\n  drover check manifests/*.yaml conf.d/")]
    Check {
        /// Manifests to check [default: ./drover.yaml].
        manifests: Vec<PathBuf>,
    },
    /// Print the manifest's JSON Schema (for editors and CI linters).
    #[command(
        after_help = "Example:\n  drover schema > drover.schema.json\n  # then, first line of drover.yaml: # yaml-language-server: $schema=drover.schema.json"
    )]
    Schema,
    /// Print what reloading manifest OLD into NEW would do, without doing it; exit 0 equal, 1
    /// different, 2 error (as diff).
    #[command(
        after_help = "Example:\n  drover diff /etc/drover/drover.yaml new.yaml   # +added ~restarted *updated -removed =unchanged"
    )]
    Diff {
        /// The running manifest.
        old: PathBuf,
        /// The new manifest.
        new: PathBuf,
    },
    /// Show the services of the running drover: state, pid, uptime, restarts, ready, last exit.
    #[command(after_help = "Examples:\n  drover status\n  drover status web --json")]
    Status {
        /// Only these services.
        services: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start services by hand (a stopped one, or one waiting to restart, at once).
    #[command(after_help = "Examples:\n  drover start web\n  drover start --all --timeout 2m")]
    Start(OperationArgs),
    /// Stop services by hand: they stay `stopped` until started.
    #[command(after_help = "Examples:\n  drover stop worker\n  drover stop web worker --no-wait")]
    Stop(OperationArgs),
    /// Restart services by hand: stop the run, start a new one.
    #[command(after_help = "Examples:\n  drover restart web\n  drover restart --all")]
    Restart(OperationArgs),
    /// Send a signal to a service's main process (or its process group).
    #[command(
        after_help = "Examples:\n  drover signal web HUP\n  drover signal worker SIGUSR1 --group"
    )]
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
    #[command(after_help = "Examples:\n  drover logs\n  drover logs web -n 20 -f")]
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
    /// Print state changes, probe results, hooks and reloads as they happen, as JSON lines.
    #[command(after_help = "Example:\n  drover events | jq 'select(.type == \"state\")'")]
    Events {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reload the manifest now (as SIGHUP) and say what was applied, or why not.
    #[command(after_help = "Example:\n  drover reload")]
    Reload {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  drover completions bash > /etc/bash_completion.d/drover\n  drover completions zsh > \"${fpath[1]}/_drover\"\n  drover completions fish > ~/.config/fish/completions/drover.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_has_an_example_in_its_help() {
        for sub in Cli::command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Example") && help.contains("drover "),
                "`drover {} --help` has no example",
                sub.get_name()
            );
        }
    }

    /// `docs/man/` (drover.1 and one page per subcommand, drover-run.1, ...) is generated from
    /// the definitions: regenerate it with `DROVER_UPDATE_MAN=1 cargo test -p drover man_pages`.
    #[test]
    fn the_man_pages_in_docs_are_generated_from_the_command_line() {
        let generated = tempfile::tempdir().expect("tempdir");
        clap_mangen::generate_to(Cli::command(), generated.path()).expect("render");
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man");
        let pages = |dir: &std::path::Path| -> Vec<(String, Vec<u8>)> {
            let mut pages: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            (name, std::fs::read(e.path()).unwrap_or_default())
                        })
                        .collect()
                })
                .unwrap_or_default();
            pages.sort();
            pages
        };
        if std::env::var_os("DROVER_UPDATE_MAN").is_some() {
            let _ = std::fs::remove_dir_all(&docs);
            std::fs::create_dir_all(&docs).expect("mkdir docs/man");
            for (name, page) in pages(generated.path()) {
                std::fs::write(docs.join(name), page).expect("write a page");
            }
        }
        let (committed, fresh) = (pages(&docs), pages(generated.path()));
        assert!(fresh.len() > 10, "{} pages", fresh.len());
        assert!(
            committed == fresh,
            "docs/man is stale: run DROVER_UPDATE_MAN=1 cargo test -p drover man_pages"
        );
    }
}
