//! `env_file` files and the `.env` beside the manifest, read as Docker Compose reads them:
//!
//! - `KEY=VALUE` lines, an optional `export ` prefix; blank lines and `#` lines ignored;
//! - a bare `KEY` takes its value from drover's environment (left out when unset there);
//! - unquoted values: trimmed, cut at a ` #` inline comment, `${VAR}`s interpolated;
//! - `"double-quoted"` values: `\n`, `\r`, `\t`, `\\`, `\"` and `\$` escapes, `${VAR}`s
//!   interpolated, may span lines;
//! - `'single-quoted'` values: literal but for `\'`, may span lines;
//! - after a closing quote only a `# comment` may follow.
//!
//! Interpolation ([`crate::interpolate`]) reads the file's earlier lines first, then drover's
//! environment, then `.env`; only the braced form `${VAR}` is a variable, as in the manifest.

use crate::interpolate::{Mode, Vars, interpolate};
use crate::source::{ReadError, read_bounded};
use std::path::Path;

/// Why an env file could not be used.
#[derive(Debug)]
pub(crate) enum EnvFileError {
    /// It does not exist.
    Missing(String),
    /// It could not be read; the message names the file.
    Io(String),
    /// Line N is not `KEY=VALUE`.
    Line(u32, String),
}

/// An env file's content.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvFileText {
    /// Its pairs, in order.
    pub(crate) vars: Vec<(String, String)>,
    /// Variables used while unset without a default, with their line.
    pub(crate) unset: Vec<(u32, String)>,
}

/// Env files may be at most this large.
const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and parses an env file.
pub(crate) fn read(path: &Path, vars: &Vars) -> Result<EnvFileText, EnvFileError> {
    let text = read_bounded(path, MAX_ENV_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(err) if err.kind() == std::io::ErrorKind::NotFound => {
            EnvFileError::Missing(format!("env_file {} does not exist", path.display()))
        }
        ReadError::Io(err) => {
            EnvFileError::Io(format!("cannot read env_file {}: {err}", path.display()))
        }
        ReadError::Invalid(pos, why) => EnvFileError::Line(pos.line, format!("env_file {why}")),
    })?;
    parse(&text, vars)
}

/// The text's lines, numbered from 1, each without its `\n` (and `\r`).
struct Lines<'a> {
    rest: &'a str,
    number: u32,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        self.number = self.number.saturating_add(1);
        let (line, rest) = self.rest.split_once('\n').unwrap_or((self.rest, ""));
        self.rest = rest;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

/// Parses env file text, interpolating with `vars` (and the file's own earlier lines).
pub(crate) fn parse(text: &str, vars: &Vars) -> Result<EnvFileText, EnvFileError> {
    let mut vars = vars.clone();
    let mut out = EnvFileText::default();
    let mut lines = Lines {
        rest: text,
        number: 0,
    };
    while let Some(line) = lines.next_line() {
        let line_number = lines.number;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let body = trimmed
            .strip_prefix("export ")
            .map_or(trimmed, str::trim_start);
        let bad = |why: String| EnvFileError::Line(line_number, why);
        let Some((key, value)) = body.split_once('=') else {
            if !is_plain_name(body) {
                return Err(bad(format!(
                    "expected `KEY=VALUE` (or a bare `KEY` taken from drover's environment), found `{}`",
                    crate::error::shorten_escaped(trimmed)
                )));
            }
            // Compose's bare `KEY`: the value drover itself has, if any (never drover's own
            // service manager's socket and watchdog).
            if crate::interpolate::SET_PER_SERVICE.contains(&body) {
                continue;
            }
            if let Ok(value) = std::env::var(body) {
                vars.define(body, &value);
                out.vars.push((body.to_string(), value));
            }
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('\0') {
            return Err(bad(format!(
                "invalid variable name `{}`",
                crate::error::shorten_escaped(key)
            )));
        }
        let value = value.trim_start();
        let (value, interpolated) = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let (inner, tail) = quoted(&value[1..], quote, &mut lines).ok_or_else(|| {
                    bad(format!(
                        "the {quote} quote of `{key}` is never closed (a quoted value may span lines)"
                    ))
                })?;
                let tail = tail.trim();
                if !(tail.is_empty() || tail.starts_with('#')) {
                    return Err(bad(format!(
                        "`{}` after the closing quote of `{key}`: only a `# comment` may follow",
                        crate::error::shorten_escaped(tail)
                    )));
                }
                if quote == '"' {
                    (unescape_double(&inner), true)
                } else {
                    (inner.replace("\\'", "'"), false)
                }
            }
            _ => (strip_inline_comment(value).trim_end().to_string(), true),
        };
        let value = if interpolated {
            let (value, unset) = interpolate(&value, &vars, Mode::Strict)
                .map_err(|why| bad(format!("{why} (in `{key}`)")))?;
            out.unset
                .extend(unset.into_iter().map(|name| (line_number, name)));
            value
        } else {
            value
        };
        if value.contains('\0') {
            return Err(bad("value contains a NUL byte".to_string()));
        }
        vars.define(key, &value);
        out.vars.push((key.to_string(), value));
    }
    Ok(out)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_plain_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The body of a value opened by `quote` (just before `start`), taking further lines while the
/// quote is open, and what follows the closing quote on its line; `None` if it never closes.
/// A backslash escapes the next character (in single quotes only a quote), so `\"` does not
/// close; the escapes are left in the body.
fn quoted<'a>(start: &'a str, quote: char, lines: &mut Lines<'a>) -> Option<(String, &'a str)> {
    let mut body = String::new();
    let mut segment = start;
    loop {
        let mut escaped = false;
        for (at, c) in segment.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && (quote == '"' || segment[at + 1..].starts_with(quote)) {
                escaped = true;
            } else if c == quote {
                body.push_str(&segment[..at]);
                return Some((body, &segment[at + 1..]));
            }
        }
        body.push_str(segment);
        body.push('\n');
        segment = lines.next_line()?;
    }
}

/// A double-quoted body with its escapes replaced. `\$` stays a literal `$` through
/// interpolation (before a `{` it becomes `$${`, interpolation's literal `${`); any other
/// backslash is kept.
fn unescape_double(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('$') if chars.peek() == Some(&'{') => out.push_str("$$"),
            Some('$') => out.push('$'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// An unquoted value up to its inline comment: a `#` after a space or tab.
fn strip_inline_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'#' && at > 0 && matches!(bytes[at - 1], b' ' | b'\t') {
            return &value[..at];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text, &Vars::new(vec![("FROM_DOTENV".into(), "dot".into())]))
            .expect("valid")
            .vars
    }

    fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_documented_forms() {
        let text =
            "# comment\n\nA=1\nexport B = two \nC=\"quoted # not a comment\"\nD='x'\nE=\nF=a=b\n";
        let expected = [
            ("A", "1"),
            ("B", "two"),
            ("C", "quoted # not a comment"),
            ("D", "x"),
            ("E", ""),
            ("F", "a=b"),
        ];
        assert_eq!(pairs(text), owned(&expected));
    }

    /// Every example of Compose's env-file page, with its documented result.
    #[test]
    fn reads_as_compose_documents() {
        let text = concat!(
            "U=VAL # comment\n",
            "V=VAL# not a comment\n",
            "W=\"VAL # not a comment\"\n",
            "X=\"VAL\" # comment\n",
            "Y='${OTHER}'\n",
            "Z='Let\\'s go!'\n",
            "J=\"{\\\"hello\\\": \\\"json\\\"}\"\n",
            "T1=\"some\\tvalue\"\n",
            "T2='some\\tvalue'\n",
            "T3=some\\tvalue\n",
            "M=\"line one\nline two\"\n",
            "CRLF=value\r\n",
        );
        let expected = [
            ("U", "VAL"),
            ("V", "VAL# not a comment"),
            ("W", "VAL # not a comment"),
            ("X", "VAL"),
            ("Y", "${OTHER}"),
            ("Z", "Let's go!"),
            ("J", "{\"hello\": \"json\"}"),
            ("T1", "some\tvalue"),
            ("T2", "some\\tvalue"),
            ("T3", "some\\tvalue"),
            ("M", "line one\nline two"),
            ("CRLF", "value"),
        ];
        assert_eq!(pairs(text), owned(&expected));
    }

    #[test]
    fn interpolates_unquoted_and_double_quoted_values() {
        let text = concat!(
            "BASE=/srv\n",
            "DATA=${BASE}/data\n",
            "QUOTED=\"${BASE:-x} and ${FROM_DOTENV}\"\n",
            "LITERAL='${BASE}'\n",
            "ESCAPED=\"\\${BASE} costs \\$5\"\n",
            "BARE=$BASE\n",
        );
        let expected = [
            ("BASE", "/srv"),
            ("DATA", "/srv/data"),
            ("QUOTED", "/srv and dot"),
            ("LITERAL", "${BASE}"),
            ("ESCAPED", "${BASE} costs $5"),
            ("BARE", "$BASE"),
        ];
        assert_eq!(pairs(text), owned(&expected));
        let parsed = parse(
            "A=${DROVER_SURELY_UNSET_1}\n\nB=${DROVER_SURELY_UNSET_2:-y}\n",
            &Vars::default(),
        )
        .expect("valid");
        assert_eq!(parsed.unset, vec![(1, "DROVER_SURELY_UNSET_1".to_string())]);
        assert_eq!(parsed.vars, owned(&[("A", ""), ("B", "y")]));
    }

    #[test]
    fn values_that_double_line_by_line_are_refused() {
        let mut text = String::from("A=xxxxxxxxxxxxxxxx\n");
        let mut previous = 'A';
        for name in 'B'..='Z' {
            text.push_str(&format!("{name}=${{{previous}}}${{{previous}}}\n"));
            previous = name;
        }
        match parse(&text, &Vars::default()) {
            Err(EnvFileError::Line(_, message)) => {
                assert!(message.contains("longer than 128 KiB"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_bare_key_comes_from_drovers_environment() {
        // PATH is set for every test process; the unset name is left out.
        let path = std::env::var("PATH").expect("PATH is set");
        let parsed = pairs("PATH\nDROVER_SURELY_UNSET_3\nNOTIFY_SOCKET\nWATCHDOG_USEC\n");
        assert_eq!(parsed, vec![("PATH".to_string(), path)]);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let no_vars = Vars::default();
        let line_of = |text: &str| match parse(text, &no_vars) {
            Err(EnvFileError::Line(line, message)) => (line, message),
            other => panic!("{text:?}: unexpected {other:?}"),
        };
        let (line, message) = line_of("A=1\nnot a pair\n");
        assert_eq!(line, 2);
        assert!(message.contains("KEY=VALUE"), "{message}");
        assert_eq!(line_of("=x\n").0, 1);
        let (line, message) = line_of("A=1\nB=\"open\nstill open\n");
        assert_eq!(line, 2);
        assert!(message.contains("never closed"), "{message}");
        let (line, message) = line_of("A=1\n\nB='x' y\n");
        assert_eq!(line, 3);
        assert!(message.contains("only a `# comment`"), "{message}");
        let (line, message) = line_of("A=${X:?is required}\n");
        assert_eq!(line, 1);
        assert!(message.contains("is required"), "{message}");
        // A quoted value spanning lines: the next line counts on.
        assert_eq!(line_of("A=\"x\ny\"\nnot a pair\n").0, 3);
    }
}
