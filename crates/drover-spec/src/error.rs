//! Errors of the spec crate: one diagnostic per problem in a manifest, and the crate's error enum.

use crate::yaml::Pos;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a manifest: where it is (file, line, column, key path) and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Where in the file.
    pub pos: Pos,
    /// The key path of the offending value, such as `services.web.restart.policy`; empty for
    /// problems of the whole file.
    pub key_path: String,
    /// What is wrong, lowercase, without the position.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(
        file: &Path,
        pos: Pos,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            key_path: key_path.into(),
            message: message.into(),
        }
    }

    /// The message with its key path in front: `services.web: unknown key ...`.
    pub fn message_with_path(&self) -> String {
        if self.key_path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.key_path, self.message)
        }
    }
}

/// `file:line:col: error: key.path: message`, the format `drover check` prints.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.pos.line,
            self.pos.column,
            self.message_with_path()
        )
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest path itself could not be read (missing, a permission problem, ...).
    #[error("cannot read manifest {}", path.display())]
    Read {
        /// The path that was asked for.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The manifest was read but is invalid: every problem found, in file order.
    #[error("{} in the manifest", count_errors(diagnostics.len()))]
    Invalid {
        /// Every problem, sorted by file and position.
        diagnostics: Vec<Diagnostic>,
    },
}

fn count_errors(n: usize) -> String {
    if n == 1 {
        "1 error".to_string()
    } else {
        format!("{n} errors")
    }
}
