//! The command line as tini reads it: `drover [-s] [-g] [-e CODE]... [-p SIG] [-w] [-v]... [--]
//! CMD [ARGS...]`, for whenever the first word is not one of drover's subcommands. CMD and its
//! arguments are passed on as the kernel gave them (bytes, not UTF-8; empty strings; words that
//! look like drover's options), so `ENTRYPOINT ["tini", "-g", "--"]` becomes
//! `["drover", "-g", "--"]` unchanged.

use std::ffi::{OsStr, OsString};

/// drover's subcommands: a first word that is one of them (or a help/version flag) goes to the
/// subcommand parser; anything else is a command to run.
pub(crate) const SUBCOMMANDS: [&str; 14] = [
    "run",
    "check",
    "schema",
    "diff",
    "status",
    "start",
    "stop",
    "restart",
    "signal",
    "logs",
    "events",
    "reload",
    "completions",
    "help",
];

/// What `drover -- CMD` was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct InitOptions {
    /// CMD and its arguments, verbatim.
    pub(crate) argv: Vec<OsString>,
    /// `-s` or `TINI_SUBREAPER`: drover becomes a subreaper whenever it is not PID 1 anyway.
    pub(crate) subreaper: bool,
    /// `-g` or `TINI_KILL_PROCESS_GROUP`: signals go to CMD's whole process group.
    pub(crate) kill_group: bool,
    /// `-e CODE`: these exit codes of CMD become 0.
    pub(crate) remap_to_zero: Vec<u8>,
    /// `-p SIG`: the signal drover gets when its parent dies.
    pub(crate) parent_death_signal: Option<i32>,
    /// `-w`: warn about each zombie reaped that was not CMD.
    pub(crate) warn_zombies: bool,
    /// `-v` repeated: 0 warnings only, 1 info, 2 debug, 3 trace.
    pub(crate) verbosity: u8,
}

/// How the arguments after `drover` are to be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// By the subcommand parser (clap).
    Subcommand,
    /// As tini's: run a command.
    Init(InitOptions),
    /// A usage error (exit 2).
    Usage(String),
}

/// Reads `args` (after `drover` itself) and `env` (for `TINI_*`).
pub(crate) fn parse(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Parsed {
    let Some(first) = args.first() else {
        return Parsed::Subcommand;
    };
    let first_str = first.to_str().unwrap_or("");
    if SUBCOMMANDS.contains(&first_str) || matches!(first_str, "-h" | "--help" | "-V" | "--version")
    {
        return Parsed::Subcommand;
    }
    let mut options = InitOptions {
        subreaper: env("TINI_SUBREAPER").is_some(),
        kill_group: env("TINI_KILL_PROCESS_GROUP").is_some(),
        ..InitOptions::default()
    };
    let mut at = 0;
    while at < args.len() {
        let arg = args[at].as_encoded_bytes();
        if arg == b"--" {
            at += 1;
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            break;
        }
        // getopt(3): flags may be grouped (`-sg`), an option's value may follow it or be the
        // next word (`-e3`, `-e 3`).
        let mut chars = 1;
        while chars < arg.len() {
            let flag = arg[chars];
            chars += 1;
            match flag {
                b's' => options.subreaper = true,
                b'g' => options.kill_group = true,
                b'w' => options.warn_zombies = true,
                b'v' => options.verbosity = options.verbosity.saturating_add(1),
                b'e' | b'p' => {
                    let value = if chars < arg.len() {
                        let rest = OsStr::new(std::str::from_utf8(&arg[chars..]).unwrap_or(""));
                        chars = arg.len();
                        rest.to_os_string()
                    } else {
                        at += 1;
                        match args.get(at) {
                            Some(value) => value.clone(),
                            None => {
                                return Parsed::Usage(format!(
                                    "option -{} needs a value",
                                    char::from(flag)
                                ));
                            }
                        }
                    };
                    let value = value.to_string_lossy().into_owned();
                    if flag == b'e' {
                        match value.parse::<u8>() {
                            Ok(code) => options.remap_to_zero.push(code),
                            Err(_) => {
                                return Parsed::Usage(format!(
                                    "-e {value}: an exit code is a number from 0 to 255"
                                ));
                            }
                        }
                    } else {
                        match parse_signal(&value) {
                            Ok(signal) => options.parent_death_signal = Some(signal),
                            Err(why) => return Parsed::Usage(format!("-p {value}: {why}")),
                        }
                    }
                }
                other => {
                    return Parsed::Usage(format!(
                        "unknown option -{}; try `drover --help`",
                        char::from(other)
                    ));
                }
            }
        }
        at += 1;
    }
    options.argv = args[at.min(args.len())..].to_vec();
    if options.argv.is_empty() {
        return Parsed::Usage("no command given; try `drover --help`".into());
    }
    Parsed::Init(options)
}

/// A signal by name (`SIGKILL`, `KILL`, `kill`) or number.
fn parse_signal(text: &str) -> Result<i32, String> {
    let spec = match text.trim().parse::<i64>() {
        Ok(number) => drover_spec::values::SignalSpec::Number(number),
        Err(_) => drover_spec::values::SignalSpec::Name(text.to_string()),
    };
    drover_spec::parse_signal(&spec).map(|signal| signal.number())
}

/// `did you mean drover check?` for a command not found whose name is close to a subcommand
/// (tini runs whatever it is given; only the error is friendlier).
pub(crate) fn subcommand_hint(program: &OsStr) -> Option<String> {
    let name = program.to_str()?;
    if name.contains('/') || name.len() > 16 {
        return None;
    }
    SUBCOMMANDS
        .iter()
        .filter(|&&sub| sub != "help")
        .find(|&&sub| strsim::levenshtein(name, sub) <= 2)
        .map(|sub| format!("; did you mean `drover {sub}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn args(words: &[&[u8]]) -> Vec<OsString> {
        words
            .iter()
            .map(|w| OsStr::from_bytes(w).to_os_string())
            .collect()
    }

    fn init(words: &[&[u8]]) -> InitOptions {
        match parse(&args(words), |_| None) {
            Parsed::Init(options) => options,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subcommands_and_help_go_to_the_subcommand_parser() {
        for first in [
            "run",
            "check",
            "schema",
            "diff",
            "status",
            "start",
            "stop",
            "restart",
            "signal",
            "logs",
            "events",
            "reload",
            "completions",
            "help",
            "--help",
            "-h",
            "-V",
        ] {
            assert_eq!(
                parse(&args(&[first.as_bytes()]), |_| None),
                Parsed::Subcommand
            );
        }
        assert_eq!(parse(&[], |_| None), Parsed::Subcommand);
    }

    #[test]
    fn anything_else_is_a_command_passed_on_verbatim() {
        let options = init(&[b"sleep", b"1"]);
        assert_eq!(options.argv, args(&[b"sleep", b"1"]));
        let odd: &[&[u8]] = &[b"--", b"printf", b"\xff\xfe", b"", b"--help", b"-v", b"--"];
        assert_eq!(init(odd).argv, args(&odd[1..]));
        // A near-subcommand still runs as a command (tini's behaviour).
        assert_eq!(init(&[b"chek"]).argv, args(&[b"chek"]));
    }

    #[test]
    fn tini_options_before_the_command() {
        let options = init(&[
            b"-sg", b"-e", b"3", b"-e143", b"-p", b"SIGTERM", b"-w", b"-vv", b"--", b"cmd",
        ]);
        assert!(options.subreaper && options.kill_group && options.warn_zombies);
        assert_eq!(options.remap_to_zero, [3, 143]);
        assert_eq!(options.parent_death_signal, Some(15));
        assert_eq!(options.verbosity, 2);
        assert_eq!(options.argv, args(&[b"cmd"]));
        // Options stop at the first word that is not one.
        assert_eq!(init(&[b"cmd", b"-g"]).argv, args(&[b"cmd", b"-g"]));
        assert!(!init(&[b"cmd", b"-g"]).kill_group);
    }

    #[test]
    fn tini_environment_variables() {
        let parsed = parse(&args(&[b"cmd"]), |key| {
            matches!(key, "TINI_SUBREAPER" | "TINI_KILL_PROCESS_GROUP").then(|| "1".into())
        });
        let Parsed::Init(options) = parsed else {
            panic!("{parsed:?}")
        };
        assert!(options.subreaper && options.kill_group);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for words in [
            &[b"-x".as_slice(), b"cmd"][..],
            &[b"-e", b"256", b"cmd"],
            &[b"-e"],
            &[b"-p", b"SIGNOPE", b"cmd"],
            &[b"--"],
            &[b"-g"],
        ] {
            assert!(
                matches!(parse(&args(words), |_| None), Parsed::Usage(_)),
                "{words:?}"
            );
        }
    }

    #[test]
    fn a_near_subcommand_gets_a_hint() {
        assert_eq!(
            subcommand_hint(OsStr::new("chek")).as_deref(),
            Some("; did you mean `drover check`?")
        );
        assert_eq!(
            subcommand_hint(OsStr::new("rnu")).as_deref(),
            Some("; did you mean `drover run`?")
        );
        assert_eq!(subcommand_hint(OsStr::new("python3")), None);
        assert_eq!(subcommand_hint(OsStr::new("./chek")), None);
    }
}
