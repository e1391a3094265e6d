//! `env_file` files: `KEY=VALUE` lines, an optional `export ` prefix, blank lines and `#`
//! comment lines ignored, one pair of surrounding quotes removed, no interpolation.

use crate::source::{ReadError, read_bounded};
use std::path::Path;

/// Why an env file could not be used.
#[derive(Debug)]
pub(crate) enum EnvFileError {
    /// It could not be read; the message names the file.
    Io(String),
    /// Line N is not `KEY=VALUE`.
    Line(u32, String),
}

/// Env files may be at most this large.
const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and parses an env file.
pub(crate) fn read(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = read_bounded(path, MAX_ENV_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(err) => {
            EnvFileError::Io(format!("cannot read env_file {}: {err}", path.display()))
        }
        ReadError::Invalid(pos, why) => EnvFileError::Line(pos.line, format!("env_file {why}")),
    })?;
    parse(&text)
}

/// Parses env file text.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_number = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let body = trimmed
            .strip_prefix("export ")
            .map_or(trimmed, str::trim_start);
        let Some((key, value)) = body.split_once('=') else {
            return Err(EnvFileError::Line(
                line_number,
                format!("expected `KEY=VALUE`, found `{}`", trimmed.escape_default()),
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('\0') {
            return Err(EnvFileError::Line(
                line_number,
                format!("invalid variable name `{}`", key.escape_default()),
            ));
        }
        let value = unquote(value.trim());
        if value.contains('\0') {
            return Err(EnvFileError::Line(
                line_number,
                "value contains a NUL byte".to_string(),
            ));
        }
        vars.push((key.to_string(), value.to_string()));
    }
    Ok(vars)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let text =
            "# comment\n\nA=1\nexport B = two \nC=\"quoted # not a comment\"\nD='x'\nE=\nF=a=b\n";
        let vars = parse(text).expect("valid");
        let expected = [
            ("A", "1"),
            ("B", "two"),
            ("C", "quoted # not a comment"),
            ("D", "x"),
            ("E", ""),
            ("F", "a=b"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn bad_lines_name_their_number() {
        match parse("A=1\nnot a pair\n") {
            Err(EnvFileError::Line(2, message)) => {
                assert!(message.contains("KEY=VALUE"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(parse("=x\n"), Err(EnvFileError::Line(1, _))));
    }
}
