//! Printing manifest errors: `file:line:col: error: message`, and when stderr is a terminal,
//! the offending source line with a caret under the column.

use drover_spec::{Diagnostic, Error, MAX_MANIFEST_BYTES};
use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

/// Writes diagnostics to stderr.
pub(crate) struct Printer {
    show_source: bool,
    sources: HashMap<PathBuf, Option<String>>,
}

impl Printer {
    pub(crate) fn for_stderr() -> Self {
        Printer {
            show_source: std::io::stderr().is_terminal(),
            sources: HashMap::new(),
        }
    }

    pub(crate) fn error(&mut self, err: &Error) {
        match err {
            Error::Invalid { diagnostics } => {
                for diagnostic in diagnostics {
                    self.diagnostic(diagnostic);
                }
            }
            Error::Read { path, source } => {
                eprintln!("{}: error: cannot read manifest: {source}", path.display());
            }
        }
    }

    fn diagnostic(&mut self, diagnostic: &Diagnostic) {
        eprintln!("{diagnostic}");
        if !self.show_source {
            return;
        }
        let Some(line) = self.source_line(&diagnostic.file, diagnostic.pos.line) else {
            return;
        };
        let column = usize::try_from(diagnostic.pos.column).unwrap_or(1).max(1);
        // Keep tabs so the caret lines up whatever the tab width.
        let pad: String = line
            .chars()
            .take(column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        eprintln!("{:>5} | {line}\n      | {pad}^", diagnostic.pos.line);
    }

    fn source_line(&mut self, file: &Path, line: u32) -> Option<String> {
        let text = self
            .sources
            .entry(file.to_path_buf())
            .or_insert_with(|| read_text(file))
            .as_ref()?;
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        let line = text.lines().nth(index)?;
        // Very long lines (minified or garbage input) are cut rather than flooding the terminal.
        Some(line.chars().take(200).collect())
    }
}

fn read_text(file: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .ok()?
        .take(MAX_MANIFEST_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    String::from_utf8(bytes).ok()
}
