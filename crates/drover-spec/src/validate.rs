//! Raw manifest → checked model. Every semantic rule of the contract lives here, and every rule
//! reports through one `Checker`, so one run finds every problem.

use crate::envfile;
use crate::error::{Diagnostic, shorten, shorten_escaped};
use crate::interpolate::{Mode, Vars, interpolate};
use crate::located::Located;
use crate::model::{
    Backoff, Command, ControlSettings, ControlSocket, Dependency, EnvFile, Hook, Manifest, Origin,
    Probe, ProbeAction, Restart, Service, Settings, Signal, Stop, User, defaults,
};
use crate::raw::{
    RawControl, RawHook, RawManifest, RawProbe, RawService, RawSettings, RestartPolicy, RestartSpec,
};
use crate::suggest::{Budget, did_you_mean, did_you_mean_within};
use crate::values::{CommandSpec, Condition, DependsOnSpec, EnvSpec, SignalSpec};
use crate::yaml::Pos;
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// One manifest file after deserialization.
pub(crate) struct ParsedFile {
    pub(crate) path: PathBuf,
    /// The directory relative paths in this file resolve against (absolute).
    pub(crate) base_dir: PathBuf,
    pub(crate) raw: RawManifest,
    /// Services that had structural errors and were left out; already reported.
    pub(crate) broken_services: HashSet<String>,
    /// Key paths of values that had structural errors and were left out; already reported.
    pub(crate) dropped: Vec<String>,
}

/// Collects diagnostics for one file at a time.
struct Checker<'a> {
    file: &'a Path,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// What is left of this load's budget for "did you mean" searches among its own names.
    suggestions: &'a mut Budget,
    /// Where `${VAR}` values come from.
    vars: &'a Vars,
    /// What is worth saying but valid (an unset variable).
    warnings: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(self.file, pos, path, message));
    }

    /// `text` with its `${VAR}`s replaced; an unset one without a default is a warning, a
    /// `${VAR:?...}` unset or a malformed one an error (then `text` is kept as written).
    fn expand(&mut self, pos: Pos, path: &str, text: &str) -> String {
        self.expand_as(pos, path, text, Mode::Strict)
    }

    /// [`Checker::expand`], with the shell's own forms passed through in `Mode::Shell`.
    fn expand_as(&mut self, pos: Pos, path: &str, text: &str, mode: Mode) -> String {
        match interpolate(text, self.vars, mode) {
            Ok((text, unset)) => {
                for name in unset {
                    let message = format!(
                        "variable `{name}` is not set (in drover's environment or `.env`); an empty string is used"
                    );
                    self.warnings
                        .push(Diagnostic::new(self.file, pos, path, message));
                }
                text
            }
            Err(why) => {
                self.error(pos, path, why);
                text.to_string()
            }
        }
    }
}

/// A service before the cross-service checks, with where it came from.
struct Pending<'a> {
    name: Located<String>,
    file: &'a ParsedFile,
    raw: &'a RawService,
}

/// Checks every file and builds the model; `None` when anything was wrong (all of it is in
/// `diagnostics`).
pub(crate) fn validate(
    files: &[ParsedFile],
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Manifest> {
    let errors_before = diagnostics.len();
    let mut suggestions = Budget::per_load();
    let no_vars = Vars::new(Vec::new());
    let settings = settings(files, diagnostics, &mut suggestions);

    // Every service of every file, each name once.
    let mut pending: Vec<Pending<'_>> = Vec::new();
    let mut seen: IndexMap<String, (PathBuf, Pos)> = IndexMap::new();
    let mut known: HashSet<String> = HashSet::new();
    for file in files {
        let mut check = Checker {
            file: &file.path,
            diagnostics,
            suggestions: &mut suggestions,
            vars: &no_vars,
            warnings: &mut Vec::new(),
        };
        if let Some(version) = &file.raw.version
            && version.value != 1
        {
            check.error(
                version.pos,
                "version",
                format!(
                    "unsupported version {}; only version 1 is accepted",
                    version.value
                ),
            );
        }
        known.extend(file.broken_services.iter().cloned());
        let Some(services) = &file.raw.services else {
            continue;
        };
        if services.value.is_empty() && file.broken_services.is_empty() {
            check.error(
                services.pos,
                "services",
                "no services defined; add at least one",
            );
        }
        for (name, raw) in &services.value {
            let path = format!("services.{}", name.value);
            if let Err(why) = check_service_name(&name.value) {
                check.error(name.pos, path.clone(), why);
            }
            if let Some((other_file, other_pos)) = seen.get(&name.value) {
                let message = format!(
                    "service `{}` is defined twice: here and at {}:{}:{}",
                    shorten(&name.value),
                    other_file.display(),
                    other_pos.line,
                    other_pos.column
                );
                check.error(name.pos, path, message);
                continue;
            }
            seen.insert(name.value.clone(), (file.path.clone(), name.pos));
            known.insert(name.value.clone());
            pending.push(Pending {
                name: name.clone(),
                file,
                raw,
            });
        }
    }
    let any_services_key = files.iter().any(|f| f.raw.services.is_some());
    if !any_services_key && files.iter().all(|f| f.broken_services.is_empty()) {
        if let Some(first) = files.first() {
            let pos = first.raw.services.as_ref().map_or(Pos::START, |s| s.pos);
            let message = "no services defined; `services` needs at least one entry";
            diagnostics.push(Diagnostic::new(&first.path, pos, "services", message));
        }
    }

    let mut services = IndexMap::new();
    let mut warnings = Vec::new();
    let mut dotenvs: HashMap<PathBuf, Vars> = HashMap::new();
    for item in &pending {
        let dir = &item.file.base_dir;
        if !dotenvs.contains_key(dir) {
            let vars = dotenv(dir, diagnostics, &mut warnings);
            dotenvs.insert(dir.clone(), vars);
        }
        let vars = dotenvs.get(dir).unwrap_or(&no_vars);
        let mut check = Checker {
            file: &item.file.path,
            diagnostics,
            suggestions: &mut suggestions,
            vars,
            warnings: &mut warnings,
        };
        let service = service(&mut check, item, &known);
        services.insert(item.name.value.clone(), service);
    }
    check_cycles(&pending, diagnostics);

    if diagnostics.len() > errors_before {
        return None;
    }
    Some(Manifest {
        sources: files.iter().map(|f| f.path.clone()).collect(),
        settings,
        services,
        warnings,
    })
}

/// The variables of the `.env` file in `dir`, if there is one (a broken one is an error).
fn dotenv(dir: &Path, diagnostics: &mut Vec<Diagnostic>, warnings: &mut Vec<Diagnostic>) -> Vars {
    let path = dir.join(".env");
    if !path.is_file() {
        return Vars::new(Vec::new());
    }
    match envfile::read(&path, &Vars::default()) {
        Ok(text) => {
            for (line, variable) in text.unset {
                let message = format!(
                    "variable `{variable}` is not set in drover's environment; an empty string is used (.env)"
                );
                warnings.push(Diagnostic::new(&path, Pos { line, column: 1 }, "", message));
            }
            Vars::new(text.vars)
        }
        Err(envfile::EnvFileError::Missing(why) | envfile::EnvFileError::Io(why)) => {
            diagnostics.push(Diagnostic::new(&path, Pos::START, "", why));
            Vars::new(Vec::new())
        }
        Err(envfile::EnvFileError::Line(line, why)) => {
            let pos = Pos { line, column: 1 };
            diagnostics.push(Diagnostic::new(&path, pos, "", format!("{why} (.env)")));
            Vars::new(Vec::new())
        }
    }
}

/// `[a-z0-9_-]{1,63}`: safe in metric labels, file names and log prefixes.
pub(crate) fn check_service_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if (1..=63).contains(&name.len()) && valid_chars {
        return Ok(());
    }
    Err(format!(
        "invalid service name `{}`: use 1 to 63 characters from a-z, 0-9, `_` and `-`",
        shorten_escaped(name)
    ))
}

fn settings(
    files: &[ParsedFile],
    diagnostics: &mut Vec<Diagnostic>,
    suggestions: &mut Budget,
) -> Settings {
    let mut result = Settings::default();
    let mut first: Option<(&Path, Pos)> = None;
    for file in files {
        let Some(raw) = &file.raw.settings else {
            continue;
        };
        let no_vars = Vars::new(Vec::new());
        let mut check = Checker {
            file: &file.path,
            diagnostics,
            suggestions,
            vars: &no_vars,
            warnings: &mut Vec::new(),
        };
        if let Some((other, pos)) = first {
            let message = format!(
                "`settings` is defined twice: here and at {}:{}:{}; keep one",
                other.display(),
                pos.line,
                pos.column
            );
            check.error(raw.pos, "settings", message);
            continue;
        }
        first = Some((&file.path, raw.pos));
        apply_settings(&mut check, &raw.value, &mut result);
        if !result.shutdown_delay.is_zero() && result.shutdown_delay >= result.shutdown_timeout {
            let message = format!(
                "shutdown_delay ({}) must be shorter than shutdown_timeout ({}), which bounds the whole drain",
                humantime::format_duration(result.shutdown_delay),
                humantime::format_duration(result.shutdown_timeout)
            );
            check.error(raw.pos, "settings.shutdown_delay", message);
        }
    }
    result
}

fn apply_settings(check: &mut Checker<'_>, raw: &RawSettings, out: &mut Settings) {
    if let Some(timeout) = raw.shutdown_timeout {
        out.shutdown_timeout = timeout.0;
    }
    if let Some(delay) = raw.shutdown_delay {
        out.shutdown_delay = delay.0;
    }
    if let Some(metrics) = &raw.metrics
        && let Some(listen) = &metrics.listen
    {
        out.metrics_listen_chosen = true;
        out.metrics_listen = match listen {
            None => None,
            Some(addr) => match parse_listen(&addr.value) {
                Ok(addr) => addr,
                Err(why) => {
                    check.error(addr.pos, "settings.metrics.listen", why);
                    None
                }
            },
        };
    }
    if let Some(log) = &raw.log {
        out.log_format = log.format.unwrap_or_default();
        out.service_output = log.service_output.unwrap_or_default();
        out.log_timestamps = log.timestamps;
    }
    if let Some(reload) = &raw.reload {
        out.reload_watch = reload.watch.unwrap_or(true);
        out.reload_debounce = reload.debounce.map_or(defaults::RELOAD_DEBOUNCE, |d| d.0);
    }
    if let Some(control) = &raw.control {
        apply_control(check, control, &mut out.control);
    }
}

/// The longest path a Unix socket can be bound at (`sun_path` holds 108 bytes with its NUL).
const SOCKET_PATH_MAX: usize = 107;

fn apply_control(check: &mut Checker<'_>, raw: &RawControl, out: &mut ControlSettings) {
    match &raw.socket {
        None => {}
        Some(None) => out.socket = ControlSocket::Disabled,
        Some(Some(path)) if path.value.is_empty() => out.socket = ControlSocket::Disabled,
        Some(Some(path)) => {
            let text = &path.value;
            let field = "settings.control.socket";
            if !text.starts_with('/') {
                let why = format!(
                    "the socket path must be absolute, found `{}`",
                    shorten(text)
                );
                check.error(path.pos, field, why);
            } else if text.len() > SOCKET_PATH_MAX {
                let why = format!(
                    "a Unix socket path holds at most {SOCKET_PATH_MAX} bytes; this one has {}",
                    text.len()
                );
                check.error(path.pos, field, why);
            } else if text.ends_with('/') || text.contains('\0') {
                let why = format!("`{}` is not a file path", shorten(text));
                check.error(path.pos, field, why);
            } else {
                out.socket = ControlSocket::Path(PathBuf::from(text));
            }
        }
    }
    if let Some(group) = &raw.group {
        let text = group.value.trim();
        let valid = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            out.group = Some(text.to_string());
        } else {
            let why = format!(
                "invalid group `{}`: expected a group name or a gid",
                shorten(&group.value)
            );
            check.error(group.pos, "settings.control.group", why);
        }
    }
    if let Some(lines) = &raw.log_lines {
        match usize::try_from(lines.value) {
            Ok(n) if n <= defaults::CONTROL_LOG_LINES_MAX => out.log_lines = n,
            _ => {
                let why = format!(
                    "log_lines must be between 0 and {}, found {}",
                    defaults::CONTROL_LOG_LINES_MAX,
                    lines.value
                );
                check.error(lines.pos, "settings.control.log_lines", why);
            }
        }
    }
}

/// A listen address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or `:PORT` (all interfaces);
/// empty = disabled.
pub fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        let text = shorten(text);
        format!(
            "invalid listen address `{text}`: expected IP:PORT such as `127.0.0.1:9464`, `[::1]:9464` or `:9464`"
        )
    };
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| invalid())?;
        return Ok(Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| invalid())?;
        return Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
    }
    SocketAddr::from_str(text).map(Some).map_err(|_| invalid())
}

fn service(check: &mut Checker<'_>, item: &Pending<'_>, known: &HashSet<String>) -> Service {
    let name = &item.name.value;
    let raw = item.raw;
    let path = |key: &str| format!("services.{name}.{key}");
    let base_dir = &item.file.base_dir;

    let command = match &raw.command {
        Some(raw_command) => command(check, raw_command, &path("command")),
        None => {
            if !item.file.dropped.contains(&path("command")) {
                let message = "missing required key `command`";
                check.error(item.name.pos, format!("services.{name}"), message);
            }
            Command::Exec(Vec::new())
        }
    };
    let working_dir = working_dir(
        check,
        raw.working_dir.as_ref(),
        base_dir,
        &path("working_dir"),
    );
    let environment = environment(check, raw.environment.as_ref(), &path("environment"));
    let mut env_files = Vec::new();
    if let Some(files) = &raw.env_file {
        for (i, file) in files.value.clone().into_vec().into_iter().enumerate() {
            let pos = if file.pos.line == 0 {
                files.pos
            } else {
                file.pos
            };
            let key_path = match files.value {
                crate::values::OneOrMany::One(_) => path("env_file"),
                crate::values::OneOrMany::Many(_) => format!("{}[{i}]", path("env_file")),
            };
            let full = base_dir.join(file.value.path());
            match envfile::read(&full, check.vars) {
                Ok(text) => {
                    for (line, variable) in text.unset {
                        let message = format!(
                            "variable `{variable}` is not set (in drover's environment or `.env`); an empty string is used (env_file of services.{name})"
                        );
                        let pos = Pos { line, column: 1 };
                        check
                            .warnings
                            .push(Diagnostic::new(&full, pos, "", message));
                    }
                    env_files.push(EnvFile {
                        path: full,
                        vars: text.vars,
                    });
                }
                // Kept with no variables, so that its directory is watched and its arrival
                // is a change.
                Err(envfile::EnvFileError::Missing(_)) if !file.value.required() => {
                    env_files.push(EnvFile {
                        path: full,
                        vars: Vec::new(),
                    });
                }
                Err(envfile::EnvFileError::Missing(why) | envfile::EnvFileError::Io(why)) => {
                    let hint = if matches!(file.value, crate::values::EnvFileRef::Path(_)) {
                        " (`{ path: ..., required: false }` makes it optional)"
                    } else {
                        ""
                    };
                    check.error(pos, key_path, format!("{why}{hint}"));
                }
                Err(envfile::EnvFileError::Line(line, why)) => {
                    let why = format!("{why} (env_file of services.{name})");
                    check.diagnostics.push(Diagnostic::new(
                        &full,
                        Pos { line, column: 1 },
                        "",
                        why,
                    ));
                }
            }
        }
    }
    let user = user(check, raw.user.as_ref(), &path("user"));
    let depends_on = dependencies(check, name, raw.depends_on.as_ref(), known);
    let restart = restart(check, raw, name, &item.file.dropped);
    let stop = stop(check, raw, name);
    let owner = HookOwner {
        service: name,
        user: &user,
        working_dir: &working_dir,
        base_dir,
        dropped: &item.file.dropped,
    };
    let post_start = hooks(
        check,
        raw.post_start.as_ref(),
        &owner,
        "post_start",
        defaults::POST_START_TIMEOUT,
    );
    let pre_stop = hooks(
        check,
        raw.pre_stop.as_ref(),
        &owner,
        "pre_stop",
        stop.timeout,
    );
    let readiness_probe = raw
        .readiness_probe
        .as_ref()
        .and_then(|p| probe(check, p, name, ProbeRole::Readiness, &item.file.dropped));
    let liveness_probe = raw
        .liveness_probe
        .as_ref()
        .and_then(|p| probe(check, p, name, ProbeRole::Liveness, &item.file.dropped));
    let startup_probe = raw
        .startup_probe
        .as_ref()
        .and_then(|p| probe(check, p, name, ProbeRole::Startup, &item.file.dropped));
    Service {
        name: name.clone(),
        command,
        working_dir,
        env_files,
        environment,
        user,
        depends_on,
        restart,
        stop,
        readiness_probe,
        liveness_probe,
        startup_probe,
        on_exit: raw.on_exit.unwrap_or_default(),
        post_start,
        pre_stop,
        origin: Origin {
            file: item.file.path.clone(),
            pos: item.name.pos,
        },
    }
}

fn working_dir(
    check: &mut Checker<'_>,
    raw: Option<&Located<String>>,
    base_dir: &Path,
    path: &str,
) -> Option<PathBuf> {
    let dir = raw?;
    let value = check.expand(dir.pos, path, &dir.value);
    if value.trim().is_empty() {
        check.error(dir.pos, path, "working_dir is empty");
        None
    } else {
        Some(base_dir.join(&value))
    }
}

fn user(check: &mut Checker<'_>, raw: Option<&Located<String>>, path: &str) -> Option<User> {
    let user = raw?;
    match parse_user(&user.value) {
        Ok(parsed) => Some(parsed),
        Err(why) => {
            check.error(user.pos, path, why);
            None
        }
    }
}

/// What a service's hooks take from it.
struct HookOwner<'a> {
    service: &'a str,
    user: &'a Option<User>,
    working_dir: &'a Option<PathBuf>,
    base_dir: &'a Path,
    dropped: &'a [String],
}

/// `post_start` or `pre_stop` (`key`): each hook's own keys, the service's where it has none.
fn hooks(
    check: &mut Checker<'_>,
    raw: Option<&Located<Vec<Located<RawHook>>>>,
    owner: &HookOwner<'_>,
    key: &str,
    default_timeout: Duration,
) -> Vec<Hook> {
    let Some(raw) = raw else { return Vec::new() };
    let mut out = Vec::new();
    for (i, hook) in raw.value.iter().enumerate() {
        let path = format!("services.{}.{key}[{i}]", owner.service);
        let at = |field: &str| format!("{path}.{field}");
        let command = match &hook.value.command {
            Some(raw_command) => command(check, raw_command, &at("command")),
            None => {
                if !owner.dropped.contains(&at("command")) {
                    check.error(hook.pos, path.clone(), "missing required key `command`");
                }
                continue;
            }
        };
        let environment = environment(check, hook.value.environment.as_ref(), &at("environment"));
        let working_dir = working_dir(
            check,
            hook.value.working_dir.as_ref(),
            owner.base_dir,
            &at("working_dir"),
        )
        .or_else(|| owner.working_dir.clone());
        let user =
            user(check, hook.value.user.as_ref(), &at("user")).or_else(|| owner.user.clone());
        out.push(Hook {
            command,
            user,
            working_dir,
            environment,
            timeout: hook.value.timeout.map_or(default_timeout, |t| t.0),
        });
    }
    out
}

fn command(check: &mut Checker<'_>, raw: &Located<CommandSpec>, path: &str) -> Command {
    match &raw.value {
        CommandSpec::Shell(script) => {
            let script = check.expand_as(raw.pos, path, script, Mode::Shell);
            if script.trim().is_empty() {
                check.error(raw.pos, path, "command is empty");
            }
            Command::Shell(script)
        }
        CommandSpec::Exec(argv) => {
            let argv: Vec<String> = argv
                .iter()
                .map(|arg| check.expand_as(raw.pos, path, arg, Mode::Shell))
                .collect();
            if argv.first().is_none_or(|program| program.is_empty()) {
                check.error(
                    raw.pos,
                    path,
                    "command is empty: the list needs at least a program",
                );
            }
            if argv.iter().any(|arg| arg.contains('\0')) {
                check.error(raw.pos, path, "command contains a NUL byte");
            }
            Command::Exec(argv)
        }
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.contains('=')
        || name.contains('\0')
        || name.contains(char::is_whitespace)
    {
        return Err(format!(
            "invalid environment variable name `{}`: it must be non-empty, without `=`, spaces or NUL",
            shorten_escaped(name)
        ));
    }
    Ok(())
}

fn environment(
    check: &mut Checker<'_>,
    raw: Option<&EnvSpec>,
    path: &str,
) -> Vec<(String, String)> {
    let mut out: IndexMap<String, String> = IndexMap::new();
    match raw {
        None => {}
        Some(EnvSpec::Map(map)) => {
            for (key, value) in map {
                if let Err(why) = check_env_name(&key.value) {
                    check.error(key.pos, path, why);
                } else if value.value.contains('\0') {
                    check.error(
                        value.pos,
                        format!("{path}.{}", key.value),
                        "value contains a NUL byte",
                    );
                } else {
                    let value_path = format!("{path}.{}", key.value);
                    let value = check.expand(value.pos, &value_path, &value.value);
                    out.insert(key.value.clone(), value);
                }
            }
        }
        Some(EnvSpec::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let Some((key, value)) = item.value.split_once('=') else {
                    let message = format!(
                        "expected `KEY=VALUE`, found `{}`",
                        shorten_escaped(&item.value)
                    );
                    check.error(item.pos, item_path, message);
                    continue;
                };
                if let Err(why) = check_env_name(key) {
                    check.error(item.pos, item_path, why);
                } else if value.contains('\0') {
                    check.error(item.pos, item_path, "value contains a NUL byte");
                } else if out
                    .insert(key.to_string(), check.expand(item.pos, &item_path, value))
                    .is_some()
                {
                    check.error(item.pos, item_path, format!("`{key}` is set twice"));
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Compose's `restart` string: the policy and `max_retries`.
fn compose_restart(text: &str) -> Result<(RestartPolicy, u32), String> {
    let (word, retries) = match text.split_once(':') {
        Some((word, retries)) => (word, Some(retries)),
        None => (text, None),
    };
    let policy = match word {
        "always" | "unless-stopped" => RestartPolicy::Always,
        "on-failure" => RestartPolicy::OnFailure,
        "no" | "never" => RestartPolicy::Never,
        _ => {
            let known = ["always", "on-failure", "unless-stopped", "no", "never"];
            let mut why = format!(
                "invalid restart `{}`: expected `always`, `on-failure`, `on-failure:N`, `unless-stopped`, `no`, or a mapping such as `{{ policy: always }}`",
                shorten_escaped(text)
            );
            if let Some(best) = did_you_mean(word, known) {
                why.push_str(&format!("; did you mean `{best}`?"));
            }
            return Err(why);
        }
    };
    let max_retries = match retries {
        None => 0,
        Some(n) if policy == RestartPolicy::OnFailure => n.parse::<u32>().map_err(|_| {
            format!(
                "invalid restart `{}`: the count after `on-failure:` must be a number from 0 to {}",
                shorten_escaped(text),
                u32::MAX
            )
        })?,
        Some(_) => {
            return Err(format!(
                "invalid restart `{}`: only `on-failure` takes a count (`on-failure:3`)",
                shorten_escaped(text)
            ));
        }
    };
    Ok((policy, max_retries))
}

/// `name`, `uid` or `uid:gid`.
fn parse_user(text: &str) -> Result<User, String> {
    let invalid = || {
        format!(
            "invalid user `{}`: expected a user name, a uid, or uid:gid",
            shorten_escaped(text)
        )
    };
    let number = |s: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        s.parse::<u32>().map_err(|_| invalid())
    };
    if let Some((uid, gid)) = text.split_once(':') {
        return Ok(User::Id {
            uid: number(uid)?,
            gid: Some(number(gid)?),
        });
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(User::Id {
            uid: number(text)?,
            gid: None,
        });
    }
    let name_ok = !text.is_empty()
        && text.len() <= 256
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$'));
    if name_ok {
        Ok(User::Name(text.to_string()))
    } else {
        Err(invalid())
    }
}

fn dependencies(
    check: &mut Checker<'_>,
    name: &str,
    raw: Option<&DependsOnSpec>,
    known: &HashSet<String>,
) -> Vec<Dependency> {
    let path = format!("services.{name}.depends_on");
    let entries: Vec<(&Located<String>, Condition, bool, String)> = match raw {
        None => Vec::new(),
        Some(DependsOnSpec::List(names)) => names
            .iter()
            .enumerate()
            .map(|(i, dep)| (dep, Condition::Started, false, format!("{path}[{i}]")))
            .collect(),
        Some(DependsOnSpec::Map(map)) => map
            .iter()
            .map(|(dep, spec)| {
                let condition = spec.as_ref().and_then(|s| s.condition).unwrap_or_default();
                let restart = spec.as_ref().and_then(|s| s.restart).unwrap_or(false);
                (dep, condition, restart, format!("{path}.{}", dep.value))
            })
            .collect(),
    };
    let mut out: Vec<Dependency> = Vec::new();
    let mut listed: HashSet<&str> = HashSet::new();
    for (dep, condition, restart, dep_path) in entries {
        if dep.value == name {
            check.error(
                dep.pos,
                dep_path,
                format!("service `{name}` depends on itself"),
            );
        } else if !known.contains(&dep.value) {
            let mut message = format!("unknown dependency `{}`", shorten(&dep.value));
            let names = known.iter().map(String::as_str);
            if let Some(best) = did_you_mean_within(&dep.value, names, check.suggestions) {
                message.push_str(&format!("; did you mean `{best}`?"));
            }
            check.error(dep.pos, dep_path, message);
        } else if !listed.insert(&dep.value) {
            check.error(
                dep.pos,
                dep_path,
                format!("`{}` is listed twice", shorten(&dep.value)),
            );
        } else {
            out.push(Dependency {
                service: dep.value.clone(),
                condition,
                restart,
            });
        }
    }
    out
}

fn restart(check: &mut Checker<'_>, raw: &RawService, name: &str, dropped: &[String]) -> Restart {
    let mut out = Restart::default();
    let Some(spec) = &raw.restart else { return out };
    let path = format!("services.{name}.restart");
    let raw = match &spec.value {
        RestartSpec::Full(raw) => raw,
        RestartSpec::Compose(text) => {
            match compose_restart(text) {
                Ok((policy, max_retries)) => {
                    out.policy = policy;
                    out.max_retries = max_retries;
                }
                Err(why) => check.error(spec.pos, path, why),
            }
            return out;
        }
    };
    out.policy = raw.policy.unwrap_or_default();
    out.reset_after = raw.reset_after.map_or(defaults::RESET_AFTER, |d| d.0);
    if let Some(retries) = &raw.max_retries {
        match u32::try_from(retries.value) {
            Ok(n) => out.max_retries = n,
            Err(_) => check.error(
                retries.pos,
                format!("{path}.max_retries"),
                format!(
                    "max_retries must be between 0 (unlimited) and {}, found {}",
                    u32::MAX,
                    retries.value
                ),
            ),
        }
    }
    if let Some(backoff) = &raw.backoff {
        let path = format!("{path}.backoff");
        let mut b = Backoff::default();
        if let Some(initial) = &backoff.initial {
            b.initial = initial.value.0;
        }
        if let Some(max) = &backoff.max {
            b.max = max.value.0;
        }
        // A bound dropped for an error of its own (reported already) is no evidence that the
        // other one is wrong.
        let bound_dropped = dropped
            .iter()
            .any(|d| *d == format!("{path}.initial") || *d == format!("{path}.max"));
        if b.initial > b.max && !bound_dropped {
            let pos = backoff
                .initial
                .as_ref()
                .or(backoff.max.as_ref())
                .map_or(Pos::START, |l| l.pos);
            let message = format!(
                "backoff initial ({}) is longer than max ({})",
                humantime::format_duration(b.initial),
                humantime::format_duration(b.max)
            );
            check.error(pos, format!("{path}.initial"), message);
        }
        if let Some(factor) = &backoff.factor {
            if factor.value.is_finite() && (1.0..=1000.0).contains(&factor.value) {
                b.factor = factor.value;
            } else {
                let message = format!("factor must be between 1 and 1000, found {}", factor.value);
                check.error(factor.pos, format!("{path}.factor"), message);
            }
        }
        if let Some(jitter) = &backoff.jitter {
            if jitter.value.is_finite() && (0.0..=1.0).contains(&jitter.value) {
                b.jitter = jitter.value;
            } else {
                let message = format!("jitter must be between 0 and 1, found {}", jitter.value);
                check.error(jitter.pos, format!("{path}.jitter"), message);
            }
        }
        out.backoff = b;
    }
    out
}

/// Resolves `SIGTERM`, `TERM`, `sigterm` or `15`.
pub fn parse_signal(spec: &SignalSpec) -> Result<Signal, String> {
    match spec {
        SignalSpec::Number(n) => i32::try_from(*n)
            .ok()
            .and_then(Signal::from_number)
            .ok_or_else(|| format!("invalid signal number {n}")),
        SignalSpec::Name(name) => {
            let upper = name.trim().to_ascii_uppercase();
            let full = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_name(&full).ok_or_else(|| {
                let mut message = format!("invalid signal `{}`", shorten_escaped(name));
                let names = Signal::iterator().map(|s| s.as_str());
                if let Some(best) = did_you_mean(&full, names) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
                message
            })
        }
    }
}

fn stop(check: &mut Checker<'_>, raw: &RawService, name: &str) -> Stop {
    let mut out = Stop::default();
    let Some(raw) = &raw.stop else { return out };
    if let Some(timeout) = raw.timeout {
        out.timeout = timeout.0;
    }
    if let Some(drain) = raw.drain {
        out.drain = drain.0;
    }
    if let Some(signal) = &raw.signal {
        match parse_signal(&signal.value) {
            Ok(parsed) => out.signal = parsed,
            Err(why) => check.error(signal.pos, format!("services.{name}.stop.signal"), why),
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeRole {
    Readiness,
    Liveness,
    Startup,
}

impl ProbeRole {
    fn key(self) -> &'static str {
        match self {
            ProbeRole::Readiness => "readiness_probe",
            ProbeRole::Liveness => "liveness_probe",
            ProbeRole::Startup => "startup_probe",
        }
    }
}

fn probe(
    check: &mut Checker<'_>,
    raw: &Located<RawProbe>,
    name: &str,
    role: ProbeRole,
    dropped: &[String],
) -> Option<Probe> {
    let path = format!("services.{name}.{}", role.key());
    let probe = &raw.value;
    let mut kinds: Vec<(&str, Pos)> = Vec::new();
    if let Some(exec) = &probe.exec {
        kinds.push(("exec", exec.pos));
    }
    if let Some(http) = &probe.http {
        kinds.push(("http", http.pos));
    }
    if let Some(tcp) = &probe.tcp {
        kinds.push(("tcp", tcp.pos));
    }
    if let Some(notify) = &probe.notify {
        kinds.push(("notify", notify.pos));
        if role != ProbeRole::Readiness {
            check.error(
                notify.pos,
                format!("{path}.notify"),
                format!(
                    "`notify` is only allowed in a readiness_probe, not in a {}",
                    role.key()
                ),
            );
        }
    }
    // A kind that was dropped for a structural error has been reported already.
    let kind_dropped = dropped.iter().any(|d| d.starts_with(&format!("{path}.")));
    match kinds.as_slice() {
        [] if kind_dropped => {}
        [] => check.error(
            raw.pos,
            path.clone(),
            "probe has no kind: set exactly one of `exec`, `http`, `tcp`, `notify`",
        ),
        [_] => {}
        [_, (_, second), ..] => {
            let names = kinds
                .iter()
                .map(|(k, _)| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            check.error(
                *second,
                path.clone(),
                format!("probe has several kinds ({names}): set exactly one"),
            );
        }
    }

    let threshold =
        |check: &mut Checker<'_>, value: &Option<Located<i64>>, key: &str, default: u32| -> u32 {
            let Some(value) = value else { return default };
            match u32::try_from(value.value) {
                Ok(n) if n >= 1 => n,
                _ => {
                    check.error(
                        value.pos,
                        format!("{path}.{key}"),
                        format!("{key} must be at least 1, found {}", value.value),
                    );
                    default
                }
            }
        };
    let success_threshold = threshold(
        check,
        &probe.success_threshold,
        "success_threshold",
        defaults::PROBE_SUCCESS_THRESHOLD,
    );
    let failure_threshold = threshold(
        check,
        &probe.failure_threshold,
        "failure_threshold",
        defaults::PROBE_FAILURE_THRESHOLD,
    );
    if role != ProbeRole::Readiness
        && let Some(value) = &probe.success_threshold
        && value.value > 1
    {
        check.error(
            value.pos,
            format!("{path}.success_threshold"),
            format!(
                "success_threshold must be 1 for a {}, found {}",
                role.key(),
                value.value
            ),
        );
    }
    let positive = |check: &mut Checker<'_>,
                    value: &Option<Located<crate::values::DurationSpec>>,
                    key: &str,
                    default: Duration| {
        let Some(value) = value else { return default };
        if value.value.0.is_zero() {
            check.error(
                value.pos,
                format!("{path}.{key}"),
                format!("{key} must be longer than 0s"),
            );
            return default;
        }
        value.value.0
    };
    let period = positive(check, &probe.period, "period", defaults::PROBE_PERIOD);
    let timeout = positive(check, &probe.timeout, "timeout", defaults::PROBE_TIMEOUT);

    let action = if let Some(exec) = &probe.exec {
        ProbeAction::Exec {
            command: command(check, &exec.value.command, &format!("{path}.exec.command")),
        }
    } else if let Some(http) = &probe.http {
        http_action(check, &http.value, http.pos, &format!("{path}.http"))?
    } else if let Some(tcp) = &probe.tcp {
        let host = probe_host(check, tcp.value.host.as_ref(), &format!("{path}.tcp.host"))?;
        let port = port(check, &tcp.value.port, &format!("{path}.tcp.port"))?;
        ProbeAction::Tcp { host, port }
    } else if let Some(notify) = &probe.notify {
        let watchdog = match &notify.value.watchdog {
            Some(w) if w.value.0.is_zero() => {
                check.error(
                    w.pos,
                    format!("{path}.notify.watchdog"),
                    "watchdog must be longer than 0s",
                );
                None
            }
            Some(w) => Some(w.value.0),
            None => None,
        };
        ProbeAction::Notify { watchdog }
    } else {
        return None;
    };
    Some(Probe {
        action,
        initial_delay: probe
            .initial_delay
            .map_or(defaults::PROBE_INITIAL_DELAY, |d| d.0),
        period,
        timeout,
        success_threshold,
        failure_threshold,
    })
}

/// The host of an http or tcp probe: default 127.0.0.1; an empty or spaced one is an error.
fn probe_host(
    check: &mut Checker<'_>,
    raw: Option<&Located<String>>,
    path: &str,
) -> Option<String> {
    let Some(host) = raw else {
        return Some(defaults::PROBE_HOST.to_string());
    };
    let text = host.value.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        let message = format!("invalid host `{}`", shorten_escaped(&host.value));
        check.error(host.pos, path, message);
        return None;
    }
    Some(
        text.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

fn port(check: &mut Checker<'_>, raw: &Located<i64>, path: &str) -> Option<u16> {
    match u16::try_from(raw.value) {
        Ok(port) if port != 0 => Some(port),
        _ => {
            check.error(
                raw.pos,
                path,
                format!("port {} is out of range 1-65535", raw.value),
            );
            None
        }
    }
}

fn http_action(
    check: &mut Checker<'_>,
    raw: &crate::raw::RawHttpProbe,
    pos: Pos,
    path: &str,
) -> Option<ProbeAction> {
    let headers: Vec<(String, String)> = raw
        .headers
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            let valid_name = !key.value.is_empty()
                && key.value.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !valid_name {
                check.error(
                    key.pos,
                    format!("{path}.headers"),
                    format!("invalid header name `{}`", shorten_escaped(&key.value)),
                );
                return None;
            }
            if value.contains(['\r', '\n', '\0']) {
                check.error(
                    key.pos,
                    format!("{path}.headers.{}", key.value),
                    "header value contains a line break or NUL",
                );
                return None;
            }
            Some((key.value.clone(), value.clone()))
        })
        .collect();
    match (&raw.url, &raw.port) {
        (Some(url), None) => {
            if let Some(extra) = raw.host.as_ref().or(raw.path.as_ref()) {
                check.error(
                    extra.pos,
                    path,
                    "set either `url`, or `port` with `host` and `path`, not both",
                );
            }
            match parse_http_url(&url.value) {
                Ok((host, port, url_path)) => Some(ProbeAction::Http {
                    host,
                    port,
                    path: url_path,
                    headers,
                }),
                Err(why) => {
                    check.error(url.pos, format!("{path}.url"), why);
                    None
                }
            }
        }
        (None, Some(raw_port)) => {
            let port = port(check, raw_port, &format!("{path}.port"))?;
            let host = probe_host(check, raw.host.as_ref(), &format!("{path}.host"))?;
            let url_path = raw
                .path
                .as_ref()
                .map_or("/".to_string(), |p| p.value.clone());
            if !url_path.starts_with('/') {
                let p = raw.path.as_ref().map_or(pos, |p| p.pos);
                check.error(
                    p,
                    format!("{path}.path"),
                    format!("path must start with `/`, found `{}`", shorten(&url_path)),
                );
                return None;
            }
            Some(ProbeAction::Http {
                host,
                port,
                path: url_path,
                headers,
            })
        }
        (Some(url), Some(_)) => {
            check.error(url.pos, path, "set either `url` or `port`, not both");
            None
        }
        (None, None) => {
            check.error(
                pos,
                path,
                "an http probe needs `url`, or `port` (with optional `host` and `path`)",
            );
            None
        }
    }
}

/// `http://host[:port][/path]` → (host, port, path). Only plain HTTP: probes do not speak TLS.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let invalid = |why: &str| format!("invalid url `{}`: {why}", shorten(url));
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            return Err(invalid(
                "https is not supported by http probes; use http:// or a tcp probe",
            ));
        }
        return Err(invalid("it must start with http://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| invalid("unclosed `[`"))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || authority.contains('@') || host.contains(char::is_whitespace) {
        return Err(invalid("expected http://host:port/path"));
    }
    let port = match port {
        None => 80,
        Some("") => return Err(invalid("no port after `:`")),
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                return Err(format!(
                    "port {} is out of range 1-65535 in url `{}`",
                    shorten(p),
                    shorten(url)
                ));
            }
        },
    };
    if path.contains(char::is_whitespace) {
        return Err(invalid("the path contains whitespace"));
    }
    Ok((host, port, path))
}

/// A dependency cycle of more services than this is spelled out by its first and last ones.
const CYCLE_NAMES: usize = 10;

/// Finds every dependency cycle and spells it out (`a -> b -> c -> a`), reported at the
/// `depends_on` entry that closes it. Iterative, so a long chain cannot overflow the stack.
fn check_cycles(pending: &[Pending<'_>], diagnostics: &mut Vec<Diagnostic>) {
    let index: IndexMap<&str, usize> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.value.as_str(), i))
        .collect();
    // Edges with the position of the entry that names the dependency.
    let edges: Vec<Vec<(usize, Pos)>> = pending
        .iter()
        .map(|p| {
            let names: Vec<&Located<String>> = match &p.raw.depends_on {
                None => Vec::new(),
                Some(DependsOnSpec::List(list)) => list.iter().collect(),
                Some(DependsOnSpec::Map(map)) => map.keys().collect(),
            };
            let mut targets: Vec<(usize, Pos)> = Vec::new();
            let mut seen: HashSet<usize> = HashSet::new();
            for dep in names {
                // Self-dependencies and repeats are reported on their own; skip them here so
                // that a cycle is spelled out once.
                let Some(&i) = index.get(dep.value.as_str()) else {
                    continue;
                };
                if dep.value != p.name.value && seen.insert(i) {
                    targets.push((i, dep.pos));
                }
            }
            targets
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; pending.len()];
    // Where each service on the stack is, so that spelling out a cycle costs no search.
    let mut depth_of = vec![0usize; pending.len()];
    for root in 0..pending.len() {
        if mark[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let Some(&(dep, pos)) = edges[node].get(*next) else {
                mark[node] = Mark::Done;
                stack.pop();
                continue;
            };
            *next += 1;
            match mark[dep] {
                Mark::New => {
                    mark[dep] = Mark::OnStack;
                    depth_of[dep] = stack.len();
                    stack.push((dep, 0));
                }
                Mark::OnStack => {
                    let cycle = &stack[depth_of[dep].min(stack.len())..];
                    let name = |&(n, _): &(usize, usize)| shorten(&pending[n].name.value);
                    // A long cycle is spelled out by its ends: the message stays short, and
                    // writing it costs the same for a cycle of 3 or of 3000 services.
                    let names: Vec<_> = if cycle.len() <= CYCLE_NAMES {
                        cycle.iter().map(name).collect()
                    } else {
                        let half = CYCLE_NAMES / 2;
                        let mut names: Vec<_> = cycle[..half].iter().map(name).collect();
                        let hidden = cycle.len() - 2 * half;
                        names.push(format!("({hidden} more)").into());
                        names.extend(cycle[cycle.len() - half..].iter().map(name));
                        names
                    };
                    let p = &pending[node];
                    let message = format!(
                        "dependency cycle: {} -> {}",
                        names.join(" -> "),
                        shorten(&pending[dep].name.value)
                    );
                    let key_path = format!("services.{}.depends_on", p.name.value);
                    diagnostics.push(Diagnostic::new(&p.file.path, pos, key_path, message));
                }
                Mark::Done => {}
            }
        }
    }
}
