//! Raw values that YAML lets users write in more than one shape: durations (`1m30s` or a bare
//! number of seconds), commands (a list or a shell string), environments (a map or `KEY=VALUE`
//! strings), one-or-many lists and dependency lists or maps.
//!
//! Each has a hand-written `Deserialize` (a visitor that accepts each shape) instead of
//! `#[serde(untagged)]`: untagged enums buffer the input and lose the position of errors. Their
//! schemas come from `#[derive(JsonSchema)]` with the `untagged` attribute, which describes the
//! same shapes.

use crate::located::Located;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// A duration: a string with units (`250ms`, `10s`, `1m30s`) or a bare integer of seconds.
///
/// Deserialized ones are at most [`MAX_DURATION`]: every duration of the checked manifest comes
/// from one of these or from a default, so the supervisor can add any of them to an `Instant`,
/// or a thousand of them together, without overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

/// The longest duration a manifest may give any key: one year (365.25 days, humantime's `1y`).
/// Far beyond any sensible timeout, period or delay, and far below what `Instant` and
/// `Duration` arithmetic can hold.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// `duration` when it is at most [`MAX_DURATION`].
fn bounded(duration: Duration) -> Result<DurationSpec, String> {
    if duration > MAX_DURATION {
        return Err(format!(
            "duration {} is too long; at most 1 year",
            humantime::format_duration(duration)
        ));
    }
    Ok(DurationSpec(duration))
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a duration: a string with units such as `250ms`, `10s`, `1m30s`, or an integer number of seconds",
            "anyOf": [
                { "type": "string", "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]*\\s*)+$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

/// Parses `1m30s`, `250ms`, `10s`; a bare number is seconds. At most [`MAX_DURATION`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return bounded(Duration::from_secs(seconds)).map(|d| d.0);
    }
    match humantime::parse_duration(trimmed) {
        Ok(duration) => bounded(duration).map(|d| d.0),
        // Beyond what a `Duration` holds: too long as well.
        Err(humantime::DurationError::NumberOverflow) => Err(format!(
            "duration `{}` is too long; at most 1 year",
            crate::error::shorten(trimmed)
        )),
        Err(e) => Err(format!(
            "invalid duration `{}`: {e}; write it with units, such as `250ms`, `10s` or `1m30s`",
            crate::error::shorten(text)
        )),
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `10s` or `1m30s`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                bounded(Duration::from_secs(v)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("invalid duration `{v}`: it is negative")))?;
                self.visit_u64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationSpec, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: bare numbers must be whole seconds; write `{}ms`",
                    (v * 1000.0).round()
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                parse_duration(v).map(DurationSpec).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_by_a_year() {
        assert_eq!(parse_duration("1y"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("31557600"), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("365d"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        for text in [
            "31557601",
            "1y 1ns",
            "2y",
            "18446744073709551615",
            "600000000000y",
        ] {
            let why = parse_duration(text).expect_err(text);
            assert!(why.contains("is too long; at most 1 year"), "{text}: {why}");
        }
        let why = parse_duration("18446744073709551615").expect_err("huge");
        assert!(why.starts_with("duration 584542046090years"), "{why}");
    }

    #[test]
    fn the_visitor_bounds_integers_too() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, U64Deserializer};
        let de: U64Deserializer<Error> = u64::MAX.into_deserializer();
        let why = DurationSpec::deserialize(de).expect_err("too long");
        assert!(why.to_string().contains("too long"), "{why}");
        let de: U64Deserializer<Error> = 31_557_600u64.into_deserializer();
        assert_eq!(
            DurationSpec::deserialize(de).ok(),
            Some(DurationSpec(MAX_DURATION))
        );
    }
}

/// A command: a list of program and arguments (exec form) or one string run by `/bin/sh -c`.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum CommandSpec {
    /// `/bin/sh -c STRING`.
    Shell(String),
    /// The program and its arguments, run directly.
    Exec(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CommandVisitor;
        impl<'de> Visitor<'de> for CommandVisitor {
            type Value = CommandSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of program and arguments, or a shell command string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandSpec, E> {
                Ok(CommandSpec::Shell(v.to_string()))
            }
            // `command: true` is the shell command `true`, as a string would be.
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<CommandSpec, E> {
                Ok(CommandSpec::Shell(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CommandSpec, E> {
                Ok(CommandSpec::Shell(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CommandSpec, E> {
                Ok(CommandSpec::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CommandSpec, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CommandSpec::Exec)
            }
        }
        deserializer.deserialize_any(CommandVisitor)
    }
}

/// One value or a list of them (`env_file: .env` or `env_file: [a.env, b.env]`).
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values, one or many.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::new(v)).map(OneOrMany::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

/// One `env_file` entry: a path, or Compose's long form `{ path: .env, required: false }`.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum EnvFileRef {
    /// A path; the file must exist.
    Path(String),
    /// A path and whether it must exist.
    Entry(EnvFileEntry),
}

/// Compose's long form of an `env_file` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvFileEntry {
    /// The file, relative to the manifest's directory.
    pub path: Located<String>,
    /// `false`: a missing file is skipped (and read once it appears); default `true`.
    #[serde(default = "required_by_default")]
    pub required: bool,
}

fn required_by_default() -> bool {
    true
}

impl EnvFileRef {
    /// The path as written.
    pub fn path(&self) -> &str {
        match self {
            EnvFileRef::Path(path) => path,
            EnvFileRef::Entry(entry) => &entry.path.value,
        }
    }

    /// Whether a missing file is an error.
    pub fn required(&self) -> bool {
        match self {
            EnvFileRef::Path(_) => true,
            EnvFileRef::Entry(entry) => entry.required,
        }
    }
}

impl<'de> Deserialize<'de> for EnvFileRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvFileVisitor;
        impl<'de> Visitor<'de> for EnvFileVisitor {
            type Value = EnvFileRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path, or a mapping `{ path: ..., required: false }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFileRef, E> {
                Ok(EnvFileRef::Path(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvFileRef, A::Error> {
                EnvFileEntry::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(EnvFileRef::Entry)
            }
        }
        deserializer.deserialize_any(EnvFileVisitor)
    }
}

/// `environment`: a map of names to values, or a list of `KEY=VALUE` strings.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum EnvSpec {
    /// `KEY: value` pairs; numbers and booleans are taken as their text.
    Map(IndexMap<Located<String>, Located<String>>),
    /// `KEY=VALUE` strings.
    List(Vec<Located<String>>),
}

impl<'de> Deserialize<'de> for EnvSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = EnvSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to values, or a list of `KEY=VALUE` strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvSpec, A::Error> {
                IndexMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(EnvSpec::Map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EnvSpec, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(EnvSpec::List)
            }
        }
        deserializer.deserialize_any(EnvVisitor)
    }
}

/// When a dependency counts as met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The dependency's process has started.
    #[default]
    Started,
    /// The dependency's readiness probe has passed (or it has started, when it has none).
    Ready,
    /// The dependency exited 0 (a one-shot job such as a migration).
    CompletedSuccessfully,
}

/// The value of one entry of a `depends_on` map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDependency {
    /// When the dependency counts as met (default `started`).
    #[serde(default)]
    pub condition: Option<Condition>,
    /// Whenever the dependency restarts, this service stops and starts again once the
    /// condition holds anew (Compose's `restart: true`; default false).
    #[serde(default)]
    pub restart: Option<bool>,
}

/// `depends_on`: a list of names (condition `started`), or a map of names to conditions.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum DependsOnSpec {
    /// Names; each dependency must have started.
    List(Vec<Located<String>>),
    /// Names with a condition each.
    Map(IndexMap<Located<String>, Option<RawDependency>>),
}

impl<'de> Deserialize<'de> for DependsOnSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DependsVisitor;
        impl<'de> Visitor<'de> for DependsVisitor {
            type Value = DependsOnSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of service names, or a mapping of names to `{ condition: ... }`",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DependsOnSpec, A::Error> {
                IndexMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(DependsOnSpec::Map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<DependsOnSpec, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(DependsOnSpec::List)
            }
        }
        deserializer.deserialize_any(DependsVisitor)
    }
}

/// A signal: a name with or without `SIG` (`SIGTERM`, `term`), or a number.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum SignalSpec {
    /// `SIGTERM`, `TERM`, `sigterm`.
    Name(String),
    /// A signal number such as 15.
    Number(i64),
}

impl<'de> Deserialize<'de> for SignalSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SignalVisitor;
        impl Visitor<'_> for SignalVisitor {
            type Value = SignalSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name such as `SIGTERM`, or a signal number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignalSpec, E> {
                Ok(SignalSpec::Name(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SignalSpec, E> {
                Ok(SignalSpec::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SignalSpec, E> {
                Ok(SignalSpec::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        deserializer.deserialize_any(SignalVisitor)
    }
}
