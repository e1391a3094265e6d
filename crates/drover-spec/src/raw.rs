//! The raw manifest: serde types that mirror the YAML exactly as users write it
//! (`../shared/manifest-v1.md`), with every key optional where the contract gives a default.
//!
//! These are the only types that derive `Deserialize`, and `drover schema` is generated from
//! them, so the parser and the schema cannot drift apart. Nothing outside this crate uses them:
//! `crate::validate` turns them into the checked model of `crate::model`.

use crate::located::Located;
use crate::values::{
    CommandSpec, DependsOnSpec, DurationSpec, EnvFileRef, EnvSpec, OneOrMany, SignalSpec,
};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// A drover manifest (one file; a directory manifest merges several).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "drover manifest, version 1")]
pub struct RawManifest {
    /// The manifest format version; only 1 is accepted.
    #[serde(default)]
    pub version: Option<Located<i64>>,
    /// Supervisor-wide settings.
    #[serde(default)]
    pub settings: Option<Located<RawSettings>>,
    /// The services to run, by name (`[a-z0-9_-]{1,63}`). At least one is required across
    /// the manifest.
    #[serde(default)]
    pub services: Option<Located<IndexMap<Located<String>, RawService>>>,
}

/// `settings`: supervisor-wide settings, all optional.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Deadline for the whole drain on exit (default 30s).
    #[serde(default)]
    pub shutdown_timeout: Option<DurationSpec>,
    /// On SIGTERM, SIGINT or SIGQUIT: every service is marked not ready at once (`/readyz` answers 503),
    /// and nothing is stopped for this long (default 0s). Counts against `shutdown_timeout`.
    #[serde(default)]
    pub shutdown_delay: Option<DurationSpec>,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// drover's own log lines and service output.
    #[serde(default)]
    pub log: Option<RawLog>,
    /// Hot reload of the manifest.
    #[serde(default)]
    pub reload: Option<RawReload>,
    /// The control socket (`drover status`, `start`, `stop`, ...).
    #[serde(default)]
    pub control: Option<RawControl>,
}

/// `settings.control`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Absolute path of the control socket; `null` disables it. Default: `$DROVER_SOCKET`,
    /// else `$RUNTIME_DIRECTORY/drover.sock`, else `/run/drover/drover.sock` as root, else
    /// `$XDG_RUNTIME_DIR/drover/drover.sock`.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    pub socket: Option<Option<Located<String>>>,
    /// A group (name or gid) whose members may use the socket too (mode 0660); default none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub group: Option<Located<String>>,
    /// Recent output lines kept per service for `drover logs` (default 1000; 0 keeps none).
    #[serde(default)]
    pub log_lines: Option<Located<i64>>,
}

/// `settings.metrics`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address of `/metrics`, `/healthz` and `/readyz` (default `127.0.0.1:9464`); `null` or
    /// an empty string disables the endpoint.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    pub listen: Option<Option<Located<String>>>,
}

/// Keeps `listen: null` (Some(None)) apart from no `listen` at all (None).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `settings.log`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`, for drover's own lines and service lines (default `text`).
    #[serde(default)]
    pub format: Option<LogFormat>,
    /// `prefix`, `inherit` or `discard` (default `prefix`).
    #[serde(default)]
    pub service_output: Option<ServiceOutput>,
    /// A timestamp before each prefixed service line in `text` format; default: on when the
    /// stream is a terminal or a file, off otherwise (a container runtime adds its own).
    #[serde(default)]
    pub timestamps: Option<bool>,
}

/// How drover writes log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What happens to a service's stdout and stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceOutput {
    /// Each line is written as `name | line` to drover's stdout or stderr.
    #[default]
    Prefix,
    /// The service writes straight to drover's own stdout and stderr.
    Inherit,
    /// Sent to /dev/null.
    Discard,
}

/// `settings.reload`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// Reload when the manifest changes on disk (default true); SIGHUP works either way.
    #[serde(default)]
    pub watch: Option<bool>,
    /// How long a burst of file events is collected before one reload (default 100ms).
    #[serde(default)]
    pub debounce: Option<DurationSpec>,
}

/// One service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// A list is the exec form (program and arguments); a string runs under `/bin/sh -c`.
    // Required: `Option` only so that a service without it still gets its other keys checked;
    // `crate::validate` reports the missing key and `crate::schema` marks it required.
    #[serde(default)]
    pub command: Option<Located<CommandSpec>>,
    /// Working directory, relative to the manifest's directory (default: drover's own).
    #[serde(default)]
    pub working_dir: Option<Located<String>>,
    /// Environment variables: a map, or a list of `KEY=VALUE` strings. Applied after
    /// `env_file`.
    #[serde(default)]
    pub environment: Option<EnvSpec>,
    /// Files of `KEY=VALUE` lines, read as Compose reads them, relative to the manifest's
    /// directory: a path or a list of paths and `{ path, required: false }` entries; a missing
    /// file is an error unless `required: false`.
    #[serde(default)]
    pub env_file: Option<Located<OneOrMany<Located<EnvFileRef>>>>,
    /// User to run as: a name, a uid, or `uid:gid`; requires drover to run as root.
    #[serde(default)]
    pub user: Option<Located<String>>,
    /// Services this one waits for: a list of names (condition `started`) or a map of names to
    /// `{ condition: started | ready | completed_successfully }`.
    #[serde(default)]
    pub depends_on: Option<DependsOnSpec>,
    /// When and how fast to restart: the full mapping, or Compose's string (`always`,
    /// `on-failure`, `on-failure:N`, `unless-stopped`, `no`).
    #[serde(default)]
    pub restart: Option<Located<RestartSpec>>,
    /// How to stop the service.
    #[serde(default)]
    pub stop: Option<RawStop>,
    /// Gates `ready`: dependents with `condition: ready` and `/readyz`.
    #[serde(default)]
    pub readiness_probe: Option<Located<RawProbe>>,
    /// Restarts the service after consecutive failures.
    #[serde(default)]
    pub liveness_probe: Option<Located<RawProbe>>,
    /// Holds the other probes back until it passes; kills the service if it never does.
    #[serde(default)]
    pub startup_probe: Option<Located<RawProbe>>,
    /// `continue` (default) or `shutdown`: when this service ends for good, drain everything
    /// and exit with its exit code.
    #[serde(default)]
    pub on_exit: Option<OnExit>,
    /// Commands run, in order, once its process has started (the start is not delayed): its
    /// probes start once they all succeed; a failing one fails the run.
    #[serde(default)]
    pub post_start: Option<Located<Vec<Located<RawHook>>>>,
    /// Commands run, in order, before its stop signal (after `stop.drain`); their time counts
    /// against `stop.timeout`.
    #[serde(default)]
    pub pre_stop: Option<Located<Vec<Located<RawHook>>>>,
}

/// One `post_start` or `pre_stop` command (Compose's shape); each key but `command` defaults to
/// the service's.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHook {
    /// A list is the exec form; a string runs under `/bin/sh -c`. Required.
    #[serde(default)]
    pub command: Option<Located<CommandSpec>>,
    /// User to run as (default: the service's).
    #[serde(default)]
    pub user: Option<Located<String>>,
    /// Working directory, relative to the manifest's directory (default: the service's).
    #[serde(default)]
    pub working_dir: Option<Located<String>>,
    /// Added to the service's environment.
    #[serde(default)]
    pub environment: Option<EnvSpec>,
    /// Killed (with its process group) after this long. Default: `30s` for `post_start`; for
    /// `pre_stop`, what is left of `stop.timeout`, which bounds it in any case.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
}

/// `restart`: a mapping, or Compose's one string.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum RestartSpec {
    /// Compose's form: `always`, `on-failure`, `on-failure:N` (`max_retries: N`),
    /// `unless-stopped` (`always`: a service stopped by hand stays stopped anyway), `no` or
    /// `never`.
    Compose(String),
    /// The full form.
    Full(RawRestart),
}

impl<'de> Deserialize<'de> for RestartSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RestartVisitor;
        impl<'de> serde::de::Visitor<'de> for RestartVisitor {
            type Value = RestartSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping such as `{ policy: always }`, or `always`, `on-failure`, `on-failure:N`, `unless-stopped` or `no`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RestartSpec, E> {
                Ok(RestartSpec::Compose(v.to_string()))
            }
            // `restart: no` read as YAML 1.1 reads it.
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RestartSpec, E> {
                Ok(RestartSpec::Compose(
                    if v { "yes" } else { "no" }.to_string(),
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RestartSpec, A::Error> {
                RawRestart::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RestartSpec::Full)
            }
        }
        deserializer.deserialize_any(RestartVisitor)
    }
}

/// `restart`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    /// `always`, `on-failure` (default) or `never`.
    #[serde(default)]
    pub policy: Option<RestartPolicy>,
    /// Exponential backoff between restarts.
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
    /// A run this long resets the backoff and the retry count (default 60s).
    #[serde(default)]
    pub reset_after: Option<DurationSpec>,
    /// Restarts in a row before giving up (state `failed`); 0 = unlimited (default 0).
    #[serde(default)]
    pub max_retries: Option<Located<i64>>,
}

/// When a service is restarted after it exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After every exit.
    Always,
    /// After an exit with a non-zero status or by a signal.
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// `restart.backoff`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// First delay (default 100ms); 0s allowed.
    #[serde(default)]
    pub initial: Option<Located<DurationSpec>>,
    /// Cap (default 30s).
    #[serde(default)]
    pub max: Option<Located<DurationSpec>>,
    /// Growth per consecutive failure (default 2.0); at least 1.
    #[serde(default)]
    pub factor: Option<Located<f64>>,
    /// Random +/- fraction of each delay (default 0.1); between 0 and 1.
    #[serde(default)]
    pub jitter: Option<Located<f64>>,
}

/// `stop`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStop {
    /// Signal sent to the process group (default SIGTERM).
    #[serde(default)]
    pub signal: Option<Located<SignalSpec>>,
    /// Grace before SIGKILL to the process group (default 10s).
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Before the stop signal: the service is marked not ready, then drover waits this long
    /// (default 0s). `timeout` counts from the signal.
    #[serde(default)]
    pub drain: Option<DurationSpec>,
}

/// What happens to drover when a service ends for good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExit {
    /// Nothing; the other services go on.
    #[default]
    Continue,
    /// Drain everything and exit with this service's exit code.
    Shutdown,
}

/// A probe: exactly one of `exec`, `http`, `tcp`, `notify`, and its timing.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Run a command; exit 0 = success.
    #[serde(default)]
    pub exec: Option<Located<RawExecProbe>>,
    /// HTTP GET; status 200-399 = success.
    #[serde(default)]
    pub http: Option<Located<RawHttpProbe>>,
    /// TCP connect = success.
    #[serde(default)]
    pub tcp: Option<Located<RawTcpProbe>>,
    /// sd_notify `READY=1` = ready (readiness probes only).
    #[serde(default)]
    pub notify: Option<Located<RawNotifyProbe>>,
    /// Wait before the first probe (default 0s).
    #[serde(default)]
    pub initial_delay: Option<DurationSpec>,
    /// Time between probes (default 10s).
    #[serde(default)]
    pub period: Option<Located<DurationSpec>>,
    /// A probe that takes longer fails (default 1s).
    #[serde(default)]
    pub timeout: Option<Located<DurationSpec>>,
    /// Consecutive successes to pass (default 1; must be 1 for liveness and startup).
    #[serde(default)]
    pub success_threshold: Option<Located<i64>>,
    /// Consecutive failures to fail (default 3).
    #[serde(default)]
    pub failure_threshold: Option<Located<i64>>,
}

/// `exec` probe.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExecProbe {
    /// Exec form (list) or shell form (string), run in the service's environment.
    pub command: Located<CommandSpec>,
}

/// `http` probe: `url`, or `port` with optional `host` and `path`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttpProbe {
    /// Full URL, `http://host:port/path`.
    #[serde(default)]
    pub url: Option<Located<String>>,
    /// Host when `url` is not given (default 127.0.0.1).
    #[serde(default)]
    pub host: Option<Located<String>>,
    /// Port when `url` is not given.
    #[serde(default)]
    pub port: Option<Located<i64>>,
    /// Path when `url` is not given (default `/`).
    #[serde(default)]
    pub path: Option<Located<String>>,
    /// Headers sent with the request.
    #[serde(default)]
    pub headers: Option<IndexMap<Located<String>, String>>,
}

/// `tcp` probe.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTcpProbe {
    /// Host (default 127.0.0.1).
    #[serde(default)]
    pub host: Option<Located<String>>,
    /// Port, 1-65535.
    pub port: Located<i64>,
}

/// `notify` probe (sd_notify).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNotifyProbe {
    /// When set, a service that sends no `WATCHDOG=1` within it fails liveness.
    #[serde(default)]
    pub watchdog: Option<Located<DurationSpec>>,
}
