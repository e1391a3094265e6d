//! drover: the thin binary. It parses the command line and wires the crates together; the work
//! itself lives in the library crates (`drover-spec` for the manifest so far).
//!
//! Exit codes of `drover check`: 0 valid, 1 invalid (or unreadable), 2 usage error.
#![forbid(unsafe_code)]
// The binary is where output goes to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod report;

use clap::Parser;
use cli::{Cli, Command};
use std::path::PathBuf;
use std::process::ExitCode;

/// The manifest used when none is named.
const DEFAULT_MANIFEST: &str = "drover.yaml";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match (cli.command, cli.init_command.is_empty()) {
        (Some(Command::Check { manifests }), _) => check(manifests),
        (Some(Command::Schema), _) => schema(),
        (Some(Command::Run { manifest, .. }), _) => run(manifest),
        (None, false) => {
            eprintln!(
                "drover: `drover -- CMD` is not yet implemented (the supervisor issue adds it)"
            );
            ExitCode::from(1)
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

/// `drover run`: checks the manifest; supervising it comes with the supervisor issue.
fn run(manifest: Option<PathBuf>) -> ExitCode {
    let manifest = manifest.unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST));
    if let Err(err) = drover_spec::load(&manifest) {
        report::Printer::for_stderr().error(&err);
        return ExitCode::from(1);
    }
    eprintln!(
        "drover: {} is valid, but `drover run` is not yet implemented (the supervisor issue adds it)",
        manifest.display()
    );
    ExitCode::from(1)
}
