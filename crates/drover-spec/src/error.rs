//! Errors of the spec crate: one diagnostic per problem in a manifest, and the crate's error enum.

use crate::yaml::Pos;
use std::borrow::Cow;
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
        // A safety net: names from the manifest are shortened where messages quote them, and
        // here no key path segment and no message is ever longer than a few lines.
        let key_path = key_path.into();
        let key_path = if key_path.split('.').any(|s| s.chars().count() > NAME_CHARS) {
            key_path
                .split('.')
                .map(shorten)
                .collect::<Vec<_>>()
                .join(".")
        } else {
            key_path
        };
        let message = message.into();
        let message = match message.char_indices().nth(MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &message[..cut]),
            None => message,
        };
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            key_path,
            message,
        }
    }

    /// `file:line:col: warning: key.path: message`, for what is valid but worth saying.
    pub fn warning_line(&self) -> String {
        format!(
            "{}:{}:{}: warning: {}",
            self.file.display(),
            self.pos.line,
            self.pos.column,
            self.message_with_path()
        )
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

/// A load reports at most this many diagnostics, then one saying how many more were found.
pub const MAX_DIAGNOSTICS: usize = 100;

/// Names from the manifest are quoted in messages up to this many characters.
pub(crate) const NAME_CHARS: usize = 64;
/// A message is cut after this many characters.
const MESSAGE_CHARS: usize = 1000;

/// `text`, or its first [`NAME_CHARS`] characters and `…` when it is longer: a 4 MB name is
/// not echoed back.
pub(crate) fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(NAME_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// [`shorten`], with the kept characters escaped (`\n`, `\u{0}`) but not the `…`.
pub(crate) fn shorten_escaped(text: &str) -> String {
    match text.char_indices().nth(NAME_CHARS) {
        Some((cut, _)) => format!("{}…", text[..cut].escape_default()),
        None => text.escape_default().to_string(),
    }
}

/// Sorts `diagnostics` by file and position, drops repeats, and keeps the first
/// [`MAX_DIAGNOSTICS`], adding one that says how many more there were (at `file`).
pub(crate) fn sort_and_cap(diagnostics: &mut Vec<Diagnostic>, file: &Path) {
    diagnostics.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
    diagnostics.dedup();
    if diagnostics.len() > MAX_DIAGNOSTICS {
        let more = diagnostics.len() - MAX_DIAGNOSTICS;
        diagnostics.truncate(MAX_DIAGNOSTICS);
        let message =
            format!("{more} more errors not shown (at most {MAX_DIAGNOSTICS} are reported)");
        diagnostics.push(Diagnostic::new(file, Pos::START, "", message));
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
    /// The manifest was read but is invalid: the problems found, in file order (at most
    /// [`MAX_DIAGNOSTICS`], then one saying how many more there were).
    #[error("{} in the manifest", count_errors(diagnostics.len()))]
    Invalid {
        /// The problems, sorted by file and position.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened() {
        assert_eq!(shorten("web"), "web");
        let exact = "a".repeat(NAME_CHARS);
        assert_eq!(shorten(&exact), exact);
        let long = "é".repeat(NAME_CHARS + 1);
        assert_eq!(shorten(&long), format!("{}…", "é".repeat(NAME_CHARS)));
        let nul = format!("{}\0", "a".repeat(NAME_CHARS));
        assert_eq!(
            shorten_escaped(&nul),
            format!("{}…", "a".repeat(NAME_CHARS))
        );
        assert_eq!(shorten_escaped("a\0"), "a\\u{0}");
    }

    #[test]
    fn diagnostics_are_bounded() {
        let name = "x".repeat(1 << 20);
        let d = Diagnostic::new(
            Path::new("m.yaml"),
            Pos::START,
            format!("services.{name}.depends_on"),
            name.clone(),
        );
        assert_eq!(
            d.key_path,
            format!("services.{}….depends_on", "x".repeat(NAME_CHARS))
        );
        assert_eq!(d.message.chars().count(), MESSAGE_CHARS + 1);
    }

    #[test]
    fn at_most_max_diagnostics_are_kept() {
        let file = Path::new("m.yaml");
        let mut diagnostics: Vec<Diagnostic> = (0..250u32)
            .rev()
            .map(|line| Diagnostic::new(file, Pos { line, column: 1 }, "", "bad"))
            .collect();
        sort_and_cap(&mut diagnostics, file);
        assert_eq!(diagnostics.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(diagnostics[0].pos.line, 0);
        assert_eq!(diagnostics[MAX_DIAGNOSTICS - 1].pos.line, 99);
        assert!(
            diagnostics[MAX_DIAGNOSTICS]
                .message
                .starts_with("150 more errors not shown")
        );
    }
}
