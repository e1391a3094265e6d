//! The checked manifest: what the rest of drover runs from. Every default is filled in, every
//! path is absolute, every name, signal, port and threshold has been checked, and the
//! dependency graph has no cycle. Built only by `crate::load`.

use crate::yaml::Pos;
use indexmap::IndexMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::raw::{LogFormat, OnExit, RestartPolicy, ServiceOutput};
pub use crate::signal::Signal;
pub use crate::values::Condition;

/// A whole manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The files it was read from, in the order they were merged.
    pub sources: Vec<PathBuf>,
    /// Supervisor-wide settings.
    pub settings: Settings,
    /// The services, in the order they were written.
    pub services: IndexMap<String, Service>,
    /// What is valid but worth saying (a `${VAR}` that is not set): `drover check` prints them,
    /// `drover run` logs them.
    pub warnings: Vec<crate::Diagnostic>,
}

impl Manifest {
    /// The manifest with only the services `names` and what they depend on, transitively (as
    /// `docker compose up web` starts web and its dependencies), in the manifest's order; all
    /// of them when `names` is empty.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] naming each name that is no service of the manifest (at the
    /// start of its first file, key `services`), with a "did you mean".
    pub fn only(mut self, names: &[String]) -> Result<Manifest, crate::Error> {
        if names.is_empty() {
            return Ok(self);
        }
        let file = self.sources.first().cloned().unwrap_or_default();
        let diagnostics: Vec<crate::Diagnostic> = names
            .iter()
            .filter(|name| !self.services.contains_key(name.as_str()))
            .map(|name| {
                let known = self.services.keys().map(String::as_str);
                let message = match crate::suggest::did_you_mean(name, known) {
                    Some(best) => format!(
                        "no service `{name}`, named on the command line; did you mean `{best}`?"
                    ),
                    None => format!("no service `{name}`, named on the command line"),
                };
                crate::Diagnostic::new(&file, Pos::START, "services", message)
            })
            .collect();
        if !diagnostics.is_empty() {
            return Err(crate::Error::Invalid { diagnostics });
        }
        let mut wanted: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut stack: Vec<String> = names.to_vec();
        while let Some(name) = stack.pop() {
            if !wanted.insert(name.clone()) {
                continue;
            }
            if let Some(service) = self.services.get(&name) {
                stack.extend(service.depends_on.iter().map(|d| d.service.clone()));
            }
        }
        self.services.retain(|name, _| wanted.contains(name));
        Ok(self)
    }
}

/// `settings`, with defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Deadline for the whole drain on exit.
    pub shutdown_timeout: Duration,
    /// On SIGTERM or SIGINT, how long every service is marked not ready before anything
    /// stops.
    pub shutdown_delay: Duration,
    /// Where the metrics endpoint listens; `None` when disabled.
    pub metrics_listen: Option<SocketAddr>,
    /// The manifest sets `settings.metrics.listen`: when it does not and the default address
    /// is taken, drover serves on another port of the same address instead of refusing.
    pub metrics_listen_chosen: bool,
    /// Format of drover's own log lines and of service lines.
    pub log_format: LogFormat,
    /// What happens to service stdout and stderr.
    pub service_output: ServiceOutput,
    /// `settings.log.timestamps`: `None` = on for a stream that is a terminal or a file.
    pub log_timestamps: Option<bool>,
    /// Whether file changes trigger a reload.
    pub reload_watch: bool,
    /// How long a burst of file events is collected into one reload.
    pub reload_debounce: Duration,
    /// `settings.control`.
    pub control: ControlSettings,
}

/// `settings.control`: the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlSettings {
    /// Where it listens.
    pub socket: ControlSocket,
    /// A group whose members may use it too: a name, or a gid.
    pub group: Option<String>,
    /// Recent output lines kept per service for `drover logs`.
    pub log_lines: usize,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            socket: ControlSocket::Default,
            group: None,
            log_lines: defaults::CONTROL_LOG_LINES,
        }
    }
}

/// `settings.control.socket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlSocket {
    /// Not set: found from the environment, as every client finds it.
    Default,
    /// `null`: no control socket.
    Disabled,
    /// This absolute path.
    Path(PathBuf),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            shutdown_delay: Duration::ZERO,
            metrics_listen: Some(defaults::METRICS_LISTEN),
            metrics_listen_chosen: false,
            log_format: LogFormat::Text,
            service_output: ServiceOutput::Prefix,
            log_timestamps: None,
            reload_watch: true,
            reload_debounce: defaults::RELOAD_DEBOUNCE,
            control: ControlSettings::default(),
        }
    }
}

/// The contract's defaults, in one place (`docs/manifest.md` lists the same values, and a test
/// holds the two together).
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    /// `settings.shutdown_timeout`.
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
    /// `settings.metrics.listen`.
    pub const METRICS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);
    /// `settings.reload.debounce`.
    pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);
    /// `settings.control.log_lines`.
    pub const CONTROL_LOG_LINES: usize = 1000;
    /// The most `settings.control.log_lines` may keep.
    pub const CONTROL_LOG_LINES_MAX: usize = 100_000;
    /// `restart.backoff.initial`.
    pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
    /// `restart.backoff.max`.
    pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
    /// `restart.backoff.factor`.
    pub const BACKOFF_FACTOR: f64 = 2.0;
    /// `restart.backoff.jitter`.
    pub const BACKOFF_JITTER: f64 = 0.1;
    /// `restart.reset_after`.
    pub const RESET_AFTER: Duration = Duration::from_secs(60);
    /// `stop.timeout`.
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
    /// `post_start[].timeout` (a `pre_stop` hook's is what is left of `stop.timeout`).
    pub const POST_START_TIMEOUT: Duration = Duration::from_secs(30);
    /// `*_probe.initial_delay`.
    pub const PROBE_INITIAL_DELAY: Duration = Duration::ZERO;
    /// `*_probe.period`.
    pub const PROBE_PERIOD: Duration = Duration::from_secs(10);
    /// `*_probe.timeout`.
    pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    /// `*_probe.success_threshold`.
    pub const PROBE_SUCCESS_THRESHOLD: u32 = 1;
    /// `*_probe.failure_threshold`.
    pub const PROBE_FAILURE_THRESHOLD: u32 = 3;
    /// Host of `http` and `tcp` probes.
    pub const PROBE_HOST: &str = "127.0.0.1";
}

/// One service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Its name, `[a-z0-9_-]{1,63}`.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Absolute working directory; `None` = drover's own.
    pub working_dir: Option<PathBuf>,
    /// `env_file` files, read and parsed, in order.
    pub env_files: Vec<EnvFile>,
    /// `environment`, in order; applied after the env files.
    pub environment: Vec<(String, String)>,
    /// Who to run as.
    pub user: Option<User>,
    /// What must hold before it starts.
    pub depends_on: Vec<Dependency>,
    /// When and how fast to restart.
    pub restart: Restart,
    /// How to stop it.
    pub stop: Stop,
    /// Readiness probe.
    pub readiness_probe: Option<Probe>,
    /// Liveness probe.
    pub liveness_probe: Option<Probe>,
    /// Startup probe.
    pub startup_probe: Option<Probe>,
    /// What its end means for drover.
    pub on_exit: OnExit,
    /// Run once its process started.
    pub post_start: Vec<Hook>,
    /// Run before its stop signal.
    pub pre_stop: Vec<Hook>,
    /// Where it was defined.
    pub origin: Origin,
}

impl Service {
    /// The environment drover adds to its own for this service: the env files in order, then
    /// `environment`; a later value of a name wins.
    pub fn extra_environment(&self) -> Vec<(String, String)> {
        let mut merged: IndexMap<String, String> = IndexMap::new();
        let pairs = self
            .env_files
            .iter()
            .flat_map(|f| f.vars.iter())
            .chain(self.environment.iter());
        for (key, value) in pairs {
            merged.insert(key.clone(), value.clone());
        }
        merged.into_iter().collect()
    }
}

/// Where something was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The manifest file.
    pub file: PathBuf,
    /// Line and column.
    pub pos: Pos,
}

/// A command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Program and arguments, run directly.
    Exec(Vec<String>),
    /// A string run by `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// The argument vector to execute: the shell form becomes `/bin/sh -c STRING`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Exec(argv) => argv.clone(),
            Command::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        }
    }
}

/// An env file, read when the manifest was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Its `KEY=VALUE` pairs, in order.
    pub vars: Vec<(String, String)>,
}

/// `user`. Names are resolved when the service starts, not when the manifest is checked: the
/// check may run on another machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum User {
    /// A user name, looked up at start.
    Name(String),
    /// A numeric uid, and a gid when given (otherwise the user's primary group, or the uid).
    Id {
        /// The uid.
        uid: u32,
        /// The gid, when written as `uid:gid`.
        gid: Option<u32>,
    },
}

/// One `depends_on` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// What must hold.
    pub condition: Condition,
    /// Restart with it (`restart: true`).
    pub restart: bool,
}

/// `restart`, with defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Restart {
    /// When to restart.
    pub policy: RestartPolicy,
    /// Delays between restarts.
    pub backoff: Backoff,
    /// A run this long resets the backoff and the retry count.
    pub reset_after: Duration,
    /// Restarts in a row before `failed`; 0 = unlimited.
    pub max_retries: u32,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::OnFailure,
            backoff: Backoff::default(),
            reset_after: defaults::RESET_AFTER,
            max_retries: 0,
        }
    }
}

/// `restart.backoff`: checked so that `initial <= max`, `factor >= 1` and `0 <= jitter <= 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
    /// Growth per consecutive failure.
    pub factor: f64,
    /// Random +/- fraction.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: defaults::BACKOFF_INITIAL,
            max: defaults::BACKOFF_MAX,
            factor: defaults::BACKOFF_FACTOR,
            jitter: defaults::BACKOFF_JITTER,
        }
    }
}

/// `stop`, with defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    /// Sent to the process group first.
    pub signal: Signal,
    /// Grace before SIGKILL.
    pub timeout: Duration,
    /// Not ready, and waiting, before the signal.
    pub drain: Duration,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: Signal::SIGTERM,
            timeout: defaults::STOP_TIMEOUT,
            drain: Duration::ZERO,
        }
    }
}

/// A `post_start` or `pre_stop` command, with the service's user and working directory where
/// it names none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// What to run.
    pub command: Command,
    /// Who runs it.
    pub user: Option<User>,
    /// Absolute working directory; `None` = drover's own.
    pub working_dir: Option<PathBuf>,
    /// Added to the service's environment (its env files and `environment`).
    pub environment: Vec<(String, String)>,
    /// Killed after this long (a `pre_stop` hook also when `stop.timeout` runs out).
    pub timeout: Duration,
}

/// A probe, with defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// How it checks.
    pub action: ProbeAction,
    /// Wait before the first check.
    pub initial_delay: Duration,
    /// Time between checks.
    pub period: Duration,
    /// A check that takes longer fails.
    pub timeout: Duration,
    /// Consecutive successes to pass (at least 1; exactly 1 for liveness and startup).
    pub success_threshold: u32,
    /// Consecutive failures to fail (at least 1).
    pub failure_threshold: u32,
}

/// How a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// Run a command; exit 0 = success.
    Exec {
        /// The command.
        command: Command,
    },
    /// HTTP GET; 200-399 = success.
    Http {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
        /// Headers sent with the request.
        headers: Vec<(String, String)>,
    },
    /// TCP connect = success.
    Tcp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// sd_notify: `READY=1` = ready.
    Notify {
        /// When set, no `WATCHDOG=1` within it is a liveness failure.
        watchdog: Option<Duration>,
    },
}
