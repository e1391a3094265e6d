//! Compose's variables in `command`, `environment` values and `working_dir` (a hook's too):
//! `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`,
//! `${VAR:+other}`, `${VAR+other}`, defaults themselves interpolated; `$${` is a literal `${`.
//! The values of env files are read with the same rules ([`crate::envfile`]).
//! Values come from drover's environment, then from a `.env` file beside the manifest.
//!
//! Only the braced form is read: a bare `$VAR` and a lone `$$` are left to the shell, as drover
//! always did (`echo $$ > pid` keeps meaning the shell's pid). Compose reads `$VAR` too and `$$`
//! as `$`; `docs/manifest.md` shows both side by side. In a `command` (either form: the exec
//! form is often `[sh, -c, "..."]`; [`Mode::Shell`]) a `${...}` that is no variable of ours (`${#s}`, `${x%.txt}`) or that names
//! an unset one without a default is left to the shell too, which expands it from the
//! service's own environment.

use std::collections::HashMap;

/// What drover sets for each service itself (its own sd_notify socket and watchdog): never
/// taken from drover's environment, whose values are drover's service manager's. In a command
/// they are left to the shell; elsewhere they are unset.
pub(crate) const SET_PER_SERVICE: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Nesting of `${A:-${B:-...}}` beyond this is an error, not a deep recursion.
const MAX_NESTING: usize = 8;

/// The longest value interpolation may make: the kernel's limit on one argument or
/// environment string (`MAX_ARG_STRLEN`), beyond which `execve` refuses it anyway. Lines of an
/// env file that each double the one before must not grow a value without bound.
pub(crate) const MAX_VALUE_BYTES: usize = 128 * 1024;

/// How strict to be with what is not ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `environment` and `working_dir`: every `${` is a variable.
    Strict,
    /// A `command`: the shell's own `${...}` forms pass through.
    Shell,
}

/// Where variables come from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Vars {
    /// What an env file being read defined on its earlier lines: looked up first.
    earlier: HashMap<String, String>,
    /// The `.env` beside the manifest.
    dotenv: HashMap<String, String>,
}

impl Vars {
    pub(crate) fn new(dotenv: Vec<(String, String)>) -> Vars {
        Vars {
            earlier: HashMap::new(),
            dotenv: dotenv.into_iter().collect(),
        }
    }

    /// A name an env file defined, for its later lines.
    pub(crate) fn define(&mut self, name: &str, value: &str) {
        self.earlier.insert(name.to_string(), value.to_string());
    }

    /// An env file's earlier lines, then drover's environment (as Compose lets the shell's
    /// win over `.env`), then `.env`.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.earlier
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .or_else(|| self.dotenv.get(name).cloned())
    }
}

/// `text` with its variables replaced, and the names used while unset without a default.
///
/// # Errors
/// A `${VAR:?message}` (or `?`) whose variable is unset, or (in [`Mode::Strict`]) a `${` that
/// is not a variable.
pub(crate) fn interpolate(
    text: &str,
    vars: &Vars,
    mode: Mode,
) -> Result<(String, Vec<String>), String> {
    if !text.contains("${") {
        return Ok((text.to_string(), Vec::new()));
    }
    let mut state = State {
        vars,
        mode,
        unset: Vec::new(),
    };
    let out = state.expand(text, 0)?;
    Ok((out, state.unset))
}

/// One interpolation under way.
struct State<'a> {
    vars: &'a Vars,
    mode: Mode,
    /// Variables used while unset, without a default.
    unset: Vec<String>,
}

impl State<'_> {
    fn expand(&mut self, text: &str, depth: usize) -> Result<String, String> {
        if depth > MAX_NESTING {
            return Err(format!("variables nested deeper than {MAX_NESTING} levels"));
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix("${") {
                // `$${`: a literal `${`.
                out.push_str("${");
                rest = tail;
                continue;
            }
            let Some(body_start) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(end) = closing_brace(body_start) else {
                if self.mode == Mode::Shell {
                    // No `}` closes it, nor any `${` after it: the rest is the shell's, as
                    // written (one scan, not one per character).
                    out.push('$');
                    out.push_str(after);
                    rest = "";
                    break;
                }
                return Err(format!(
                    "`${{` without its `}}` in `{}`",
                    crate::error::shorten(text)
                ));
            };
            let body = &body_start[..end];
            match self.substitute(body, depth)? {
                Some(value) => out.push_str(&value),
                // Left to the shell, as written.
                None => {
                    out.push_str("${");
                    out.push_str(body);
                    out.push('}');
                }
            }
            rest = &body_start[end + 1..];
            if out.len() > MAX_VALUE_BYTES {
                return Err(too_long());
            }
        }
        out.push_str(rest);
        if out.len() > MAX_VALUE_BYTES {
            return Err(too_long());
        }
        Ok(out)
    }

    /// One `${...}` body: `NAME`, or `NAME` and an operator with its word; `None` to leave it
    /// to the shell.
    fn substitute(&mut self, body: &str, depth: usize) -> Result<Option<String>, String> {
        let shell = self.mode == Mode::Shell;
        let name_len = body
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_alphanumeric() || *c == '_') || (*i == 0 && c.is_ascii_digit())
            })
            .map_or(body.len(), |(i, _)| i);
        let (name, operator) = body.split_at(name_len);
        if name.is_empty() {
            if shell {
                return Ok(None);
            }
            return Err(format!(
                "`${{{}}}` is no variable: a name is letters, digits and `_`, not starting with a digit",
                crate::error::shorten(body)
            ));
        }
        let per_service = SET_PER_SERVICE.contains(&name);
        if per_service && shell {
            return Ok(None);
        }
        let value = if per_service {
            None
        } else {
            self.vars.get(name)
        };
        let set = value.is_some();
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let (op, word) = if operator.is_empty() {
            if !set {
                if shell {
                    return Ok(None);
                }
                self.unset.push(name.to_string());
            }
            return Ok(Some(value.unwrap_or_default()));
        } else if let Some(op) = [":-", ":?", ":+", "-", "?", "+"]
            .into_iter()
            .find(|op| operator.starts_with(op))
        {
            (op, &operator[op.len()..])
        } else if shell {
            return Ok(None);
        } else {
            return Err(format!(
                "`${{{}}}`: expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+` after `{name}`",
                crate::error::shorten(body)
            ));
        };
        let chosen = match op {
            ":-" if !non_empty => self.expand(word, depth + 1)?,
            "-" if !set => self.expand(word, depth + 1)?,
            ":+" if non_empty => self.expand(word, depth + 1)?,
            "+" if set => self.expand(word, depth + 1)?,
            ":+" | "+" => String::new(),
            ":?" | "?" if !(if op == ":?" { non_empty } else { set }) => {
                let message = self.expand(word, depth + 1)?;
                let how = if op == ":?" {
                    "not set or empty"
                } else {
                    "not set"
                };
                // The message is the user's text: escaped, so that it cannot forge log lines.
                return Err(if message.is_empty() {
                    format!("variable `{name}` is {how}")
                } else {
                    let message = crate::error::shorten_escaped(&message);
                    format!("variable `{name}` is {how}: {message}")
                });
            }
            _ => value.unwrap_or_default(),
        };
        Ok(Some(chosen))
    }
}

fn too_long() -> String {
    format!(
        "the value is longer than {} KiB once its variables are replaced",
        MAX_VALUE_BYTES / 1024
    )
}

/// The index of the `}` that closes a `${` whose body starts `body`, nested ones skipped.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::new(vec![
            ("DROVER_T_SET".into(), "on".into()),
            ("DROVER_T_EMPTY".into(), String::new()),
        ])
    }

    fn ok(text: &str) -> String {
        interpolate(text, &vars(), Mode::Strict).expect("valid").0
    }

    #[test]
    fn composes_forms() {
        assert_eq!(ok("a ${DROVER_T_SET} b"), "a on b");
        assert_eq!(ok("${DROVER_T_UNSET:-d}"), "d");
        assert_eq!(ok("${DROVER_T_EMPTY:-d}"), "d");
        assert_eq!(ok("${DROVER_T_EMPTY-d}"), "");
        assert_eq!(ok("${DROVER_T_UNSET-d}"), "d");
        assert_eq!(
            ok("${DROVER_T_SET:+x}${DROVER_T_EMPTY:+y}${DROVER_T_EMPTY+z}"),
            "xz"
        );
        assert_eq!(ok("${DROVER_T_UNSET:-${DROVER_T_SET}}"), "on");
        assert_eq!(
            ok("$${DROVER_T_SET} $$ $HOME $1"),
            "${DROVER_T_SET} $$ $HOME $1"
        );
        let (text, unset) =
            interpolate("x${DROVER_T_UNSET}y", &vars(), Mode::Strict).expect("valid");
        assert_eq!(
            (text.as_str(), unset),
            ("xy", vec!["DROVER_T_UNSET".to_string()])
        );
    }

    #[test]
    fn required_and_malformed_variables_are_errors() {
        let err = |t: &str| interpolate(t, &vars(), Mode::Strict).expect_err(t);
        assert_eq!(
            err("${DROVER_T_UNSET:?set it}"),
            "variable `DROVER_T_UNSET` is not set or empty: set it"
        );
        assert_eq!(
            err("${DROVER_T_EMPTY:?}"),
            "variable `DROVER_T_EMPTY` is not set or empty"
        );
        assert_eq!(
            interpolate("${DROVER_T_EMPTY?}", &vars(), Mode::Strict).map(|r| r.0),
            Ok(String::new())
        );
        assert!(err("${DROVER_T_SET").contains("without its `}`"));
        assert!(err("${1A}").contains("is no variable"));
        assert!(err("${A=b}").contains("expected"));
        let deep = format!("{}x{}", "${A:-".repeat(20), "}".repeat(20));
        assert!(err(&deep).contains("nested deeper"));
    }

    #[test]
    fn an_unclosed_brace_in_a_command_is_left_whole() {
        let text = "echo ${ ${x ${#y";
        let (out, unset) = interpolate(text, &vars(), Mode::Shell).expect("valid");
        assert_eq!(out, text);
        assert!(unset.is_empty());
        // 64 KiB of them is one scan (it was one per character), and comes back as written.
        let many = "${".repeat(32 * 1024);
        let (out, _) = interpolate(&many, &vars(), Mode::Shell).expect("valid");
        assert_eq!(out, many);
    }

    #[test]
    fn a_shell_command_keeps_the_shells_own_forms() {
        let shell = |t: &str| interpolate(t, &vars(), Mode::Shell).expect("valid");
        assert_eq!(
            shell(
                "n=${#s} ${x%.txt} ${DROVER_T_UNSET} ${1} $${A} ${DROVER_T_SET} ${DROVER_T_UNSET:-d}"
            ),
            (
                "n=${#s} ${x%.txt} ${DROVER_T_UNSET} ${1} ${A} on d".to_string(),
                Vec::new()
            )
        );
        assert_eq!(shell("echo ${oops").0, "echo ${oops");
        // drover's own service manager's socket is never a service's.
        assert_eq!(shell("${NOTIFY_SOCKET:-none}").0, "${NOTIFY_SOCKET:-none}");
        assert!(interpolate("${DROVER_T_UNSET:?x}", &vars(), Mode::Shell).is_err());
    }
}
