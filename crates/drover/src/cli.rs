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

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the services of a manifest (a file, or a directory whose *.yaml files are merged).
    Run {
        /// The manifest [default: ./drover.yaml].
        manifest: Option<PathBuf>,
        /// Metrics endpoint address, overriding settings.metrics.listen ('' disables it).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Validate manifests and print every error as file:line:col; exit 0 valid, 1 invalid.
    Check {
        /// Manifests to check [default: ./drover.yaml].
        manifests: Vec<PathBuf>,
    },
    /// Print the manifest's JSON Schema (for editors and CI linters).
    Schema,
    /// Print what reloading manifest OLD into NEW would do, without doing it.
    Diff {
        /// The running manifest.
        old: PathBuf,
        /// The new manifest.
        new: PathBuf,
    },
}
