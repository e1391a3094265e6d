//! The fuzz target of the parser and validator (issue 12): manifest-shaped YAML with hostile
//! values (huge numbers and durations, long strings and names, deep nesting, many services,
//! unknown keys, odd scalars). Every input must be answered, without a panic, within
//! [`CASE_BOUND`], with a bounded number of bounded diagnostics; an accepted manifest has no
//! duration over the bound.
//!
//! `cargo test` runs 256 cases; `PROPTEST_CASES` sets how many, and `scripts/fuzz-spec.sh`
//! runs it in release mode with a million. It prints the number of cases, the time and the
//! slowest case.

use drover_spec::values::MAX_DURATION;
use drover_spec::{Error, MAX_DIAGNOSTICS, Manifest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one input may take, debug or release.
const CASE_BOUND: Duration = Duration::from_secs(1);

/// A YAML value, rendered in flow style.
#[derive(Clone, Debug)]
enum V {
    /// Written as is: YAML decides its type (`10s`, `0x1F`, `.inf`, `~`, `yes`).
    Plain(String),
    /// A double-quoted string.
    Quoted(String),
    Seq(Vec<V>),
    Map(Vec<(String, V)>),
    /// `[[[[...]]]]` this deep (past the parser's depth limit).
    Deep(usize),
}

fn render(v: &V, out: &mut String) {
    match v {
        V::Plain(s) => out.push_str(s),
        V::Quoted(s) => quote(s, out),
        V::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, out);
            }
            out.push(']');
        }
        V::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                quote(key, out);
                out.push_str(": ");
                render(value, out);
            }
            out.push('}');
        }
        V::Deep(depth) => {
            out.push_str(&"[".repeat(*depth));
            out.push_str(&"]".repeat(*depth));
        }
    }
}

fn quote(s: &str, out: &mut String) {
    // A JSON string is a YAML double-quoted scalar.
    out.push_str(&serde_json::Value::from(s).to_string());
}

fn plain(s: &'static str) -> BoxedStrategy<V> {
    Just(V::Plain(s.to_string())).boxed()
}

/// Numbers of every size and shape YAML knows.
fn number() -> BoxedStrategy<V> {
    prop_oneof![
        any::<i64>().prop_map(|n| V::Plain(n.to_string())),
        any::<u64>().prop_map(|n| V::Plain(n.to_string())),
        any::<f64>().prop_map(|n| V::Plain(format!("{n:?}"))),
        "[0-9]{15,40}".prop_map(V::Plain),
        "-?[0-9]{1,3}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?".prop_map(V::Plain),
        plain("18446744073709551615"),
        plain("18446744073709551616"),
        plain("-9223372036854775808"),
        plain("0x7fffffffffffffff"),
        plain("0o777"),
        plain(".inf"),
        plain("-.inf"),
        plain(".nan"),
        plain("1e309"),
        plain("-0"),
        (0i64..70_000).prop_map(|n| V::Plain(n.to_string())),
    ]
    .boxed()
}

/// Durations: sensible, at the bound, past it, past what a `Duration` holds, and malformed.
fn duration() -> BoxedStrategy<V> {
    prop_oneof![
        4 => "[0-9]{1,25}(ns|us|ms|s|m|h|d|w|M|y)".prop_map(V::Plain),
        2 => "[0-9]{1,6}(h|d) [0-9]{1,12}(ms|s|y)".prop_map(V::Quoted),
        1 => plain("18446744073709551615"),
        1 => plain("600000000000y"),
        1 => plain("1y"),
        1 => plain("31557600"),
        1 => plain("31557601"),
        1 => plain("1y 1ns"),
        1 => plain("0"),
        1 => plain("0s"),
        1 => plain("-5s"),
        1 => plain("1m30"),
        1 => plain("1.5"),
        1 => plain("10S"),
        1 => number(),
    ]
    .boxed()
}

/// Strings: short and odd, and long enough to pass every limit on quoted names (64, 1000,
/// 1024 characters).
fn string() -> BoxedStrategy<V> {
    prop_oneof![
        4 => "\\PC{0,12}".prop_map(V::Quoted),
        2 => any::<String>().prop_map(V::Quoted),
        1 => (60usize..1100, any::<char>()).prop_map(|(n, c)| V::Quoted(c.to_string().repeat(n))),
        1 => (1usize..70_000).prop_map(|n| V::Quoted("x".repeat(n))),
        1 => plain("~"),
        1 => plain("null"),
        1 => plain("''"),
        1 => plain("yes"),
        1 => plain("true"),
        1 => plain("\"\\0\""),
        1 => plain("\"a\\nb\""),
    ]
    .boxed()
}

/// Service names: ones the manifest defines (so dependencies resolve and cycles form), typos
/// of them, invalid and long ones.
fn name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (0usize..6).prop_map(|i| format!("svc-{i}")),
        2 => (0usize..6).prop_map(|i| format!("svc_{i}x")),
        1 => "[a-zA-Z0-9_.-]{0,70}",
        1 => (64usize..3000).prop_map(|n| "n".repeat(n)),
    ]
    .boxed()
}

fn any_value() -> BoxedStrategy<V> {
    let leaf = prop_oneof![number(), duration(), string()];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(V::Seq),
            prop::collection::vec((key_of(&[]), inner), 0..8).prop_map(V::Map),
            (0usize..80).prop_map(V::Deep),
        ]
    })
    .boxed()
}

/// A key: mostly one of `known`, sometimes a near miss, an unknown or a long one.
fn key_of(known: &'static [&'static str]) -> BoxedStrategy<String> {
    let unknown = prop_oneof![
        "[a-zA-Z_-]{1,16}",
        (65usize..1500).prop_map(|n| "k".repeat(n)),
        Just("<<".to_string()),
    ];
    if known.is_empty() {
        return unknown.boxed();
    }
    prop_oneof![
        8 => prop::sample::select(known).prop_map(str::to_string),
        1 => prop::sample::select(known).prop_map(|k| k.replace('_', "-").to_uppercase()),
        1 => unknown,
    ]
    .boxed()
}

/// A mapping whose keys come from `known`, each with the value its key expects (mostly).
fn object(known: &'static [&'static str], value: fn(&str) -> BoxedStrategy<V>) -> BoxedStrategy<V> {
    prop::collection::vec(key_of(known), 0..known.len().max(1) + 2)
        .prop_flat_map(move |keys| {
            let values: Vec<BoxedStrategy<(String, V)>> = keys
                .into_iter()
                .map(|k| {
                    let strategy = prop_oneof![9 => value(&k), 1 => any_value()];
                    strategy.prop_map(move |v| (k.clone(), v)).boxed()
                })
                .collect();
            values
        })
        .prop_map(V::Map)
        .boxed()
}

const SERVICE_KEYS: &[&str] = &[
    "command",
    "working_dir",
    "environment",
    "env_file",
    "user",
    "depends_on",
    "restart",
    "stop",
    "readiness_probe",
    "liveness_probe",
    "startup_probe",
    "on_exit",
];
const RESTART_KEYS: &[&str] = &["policy", "backoff", "reset_after", "max_retries"];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "factor", "jitter"];
const STOP_KEYS: &[&str] = &["signal", "timeout"];
const PROBE_KEYS: &[&str] = &[
    "exec",
    "http",
    "tcp",
    "notify",
    "initial_delay",
    "period",
    "timeout",
    "success_threshold",
    "failure_threshold",
];
const HTTP_KEYS: &[&str] = &["url", "host", "port", "path", "headers"];
const SETTINGS_KEYS: &[&str] = &["shutdown_timeout", "metrics", "log", "reload"];

fn service_value(key: &str) -> BoxedStrategy<V> {
    match key {
        "command" => prop_oneof![
            3 => plain("sleep 1"),
            1 => prop::collection::vec(string(), 0..4).prop_map(V::Seq),
            1 => string(),
        ]
        .boxed(),
        "working_dir" | "user" => string(),
        "env_file" => prop_oneof![plain("missing.env"), string()].boxed(),
        "environment" => prop_oneof![
            prop::collection::vec((key_of(&["PATH", "A", "B=C", ""]), string()), 0..6)
                .prop_map(V::Map),
            prop::collection::vec(string(), 0..6).prop_map(V::Seq),
        ]
        .boxed(),
        "depends_on" => prop_oneof![
            prop::collection::vec(name().prop_map(V::Quoted), 0..8).prop_map(V::Seq),
            prop::collection::vec(
                (
                    name(),
                    prop_oneof![
                        plain("{condition: ready}"),
                        plain("{condition: started}"),
                        plain("{condition: completed_successfully}"),
                        plain("{condition: redy}"),
                        plain("~"),
                    ]
                ),
                0..8
            )
            .prop_map(V::Map),
        ]
        .boxed(),
        "restart" => object(RESTART_KEYS, restart_value),
        "stop" => object(STOP_KEYS, |k| match k {
            "signal" => prop_oneof![
                plain("SIGTERM"),
                plain("sigkill"),
                plain("HUP"),
                plain("SIGTREM"),
                plain("9"),
                plain("0"),
                number(),
                string()
            ]
            .boxed(),
            _ => duration(),
        }),
        "readiness_probe" | "liveness_probe" | "startup_probe" => object(PROBE_KEYS, probe_value),
        "on_exit" => prop_oneof![plain("shutdown"), plain("continue"), string()].boxed(),
        _ => any_value(),
    }
}

fn restart_value(key: &str) -> BoxedStrategy<V> {
    match key {
        "policy" => prop_oneof![
            plain("always"),
            plain("on-failure"),
            plain("never"),
            plain("on_failure"),
            string()
        ]
        .boxed(),
        "backoff" => object(BACKOFF_KEYS, |k| match k {
            "factor" | "jitter" => number(),
            _ => duration(),
        }),
        "max_retries" => number(),
        _ => duration(),
    }
}

fn probe_value(key: &str) -> BoxedStrategy<V> {
    match key {
        "exec" => prop_oneof![
            plain("{command: [true]}"),
            prop::collection::vec(string(), 0..3)
                .prop_map(|argv| V::Map(vec![("command".into(), V::Seq(argv))])),
        ]
        .boxed(),
        "http" => object(HTTP_KEYS, |k| match k {
            "url" => prop_oneof![
                plain("http://127.0.0.1:8080/health"),
                plain("https://x"),
                plain("http://[::1"),
                plain("http://h:99999/"),
                string()
            ]
            .boxed(),
            "port" => number(),
            "headers" => prop::collection::vec((key_of(&["X-A", "Bad:Name"]), string()), 0..4)
                .prop_map(V::Map)
                .boxed(),
            _ => string(),
        }),
        "tcp" => prop_oneof![
            plain("{port: 5432}"),
            number().prop_map(|p| V::Map(vec![("port".into(), p)])),
        ]
        .boxed(),
        "notify" => prop_oneof![
            plain("{}"),
            duration().prop_map(|d| V::Map(vec![("watchdog".into(), d)])),
        ]
        .boxed(),
        "success_threshold" | "failure_threshold" => number(),
        _ => duration(),
    }
}

fn settings_value(key: &str) -> BoxedStrategy<V> {
    match key {
        "metrics" => prop_oneof![
            plain("{listen: ':9464'}"),
            plain("{listen: ~}"),
            string().prop_map(|l| V::Map(vec![("listen".into(), l)])),
        ]
        .boxed(),
        "log" => prop_oneof![
            plain("{format: json, service_output: discard}"),
            plain("{format: xml}"),
        ]
        .boxed(),
        "reload" => prop_oneof![
            duration().prop_map(|d| V::Map(vec![("debounce".into(), d)])),
            plain("{watch: maybe}"),
        ]
        .boxed(),
        _ => duration(),
    }
}

/// A whole manifest: block style at the top, flow style below.
fn manifest() -> BoxedStrategy<String> {
    let service = object(SERVICE_KEYS, service_value);
    let services = prop::collection::vec((name(), service), 0..8);
    let settings = prop::option::of(object(SETTINGS_KEYS, settings_value));
    let extra = prop::collection::vec((key_of(&["version", "x-extra"]), any_value()), 0..2);
    let structured = (services, settings, extra).prop_map(|(services, settings, extra)| {
        let mut out = String::new();
        for (key, value) in extra {
            quote(&key, &mut out);
            out.push_str(": ");
            render(&value, &mut out);
            out.push('\n');
        }
        if let Some(settings) = settings {
            out.push_str("settings: ");
            render(&settings, &mut out);
            out.push('\n');
        }
        out.push_str("services:\n");
        for (name, body) in services {
            out.push_str("  ");
            quote(&name, &mut out);
            out.push_str(": ");
            render(&body, &mut out);
            out.push('\n');
        }
        out
    });
    prop_oneof![
        12 => structured,
        1 => many_services(),
    ]
    .boxed()
}

/// Many services (up to twice the 1000 of the project's reference manifest), each depending on
/// others (long cycles) or on names that do not exist.
fn many_services() -> BoxedStrategy<String> {
    (1usize..2000, 0usize..16, any::<bool>())
        .prop_map(|(count, deps, typos)| {
            let mut out = String::from("services:\n");
            for i in 0..count {
                let list: Vec<String> = (1..=deps)
                    .map(|j| {
                        let target = (i * 7 + j) % count;
                        if typos {
                            format!("svc-{target}x")
                        } else {
                            format!("svc-{target}")
                        }
                    })
                    .collect();
                out.push_str(&format!(
                    "  svc-{i}: {{command: x, depends_on: [{}]}}\n",
                    list.join(", ")
                ));
            }
            out
        })
        .boxed()
}

/// What must hold for every answer.
fn check_answer(result: &Result<Manifest, Error>) -> Result<(), TestCaseError> {
    match result {
        Ok(manifest) => {
            prop_assert!(!manifest.services.is_empty());
            let s = &manifest.settings;
            let mut durations = vec![s.shutdown_timeout, s.reload_debounce];
            for service in manifest.services.values() {
                let r = &service.restart;
                durations.extend([r.backoff.initial, r.backoff.max, r.reset_after]);
                durations.push(service.stop.timeout);
                let probes = [
                    &service.readiness_probe,
                    &service.liveness_probe,
                    &service.startup_probe,
                ];
                for probe in probes.into_iter().flatten() {
                    durations.extend([probe.initial_delay, probe.period, probe.timeout]);
                    if let drover_spec::model::ProbeAction::Notify {
                        watchdog: Some(watchdog),
                    } = probe.action
                    {
                        durations.push(watchdog);
                    }
                }
            }
            for d in durations {
                prop_assert!(d <= MAX_DURATION, "accepted duration {d:?}");
            }
        }
        Err(Error::Invalid { diagnostics }) => {
            prop_assert!(!diagnostics.is_empty());
            prop_assert!(diagnostics.len() <= MAX_DIAGNOSTICS + 1);
            for d in diagnostics {
                prop_assert!(d.message.chars().count() <= 1001, "{}", d.message.len());
                prop_assert!(d.key_path.len() <= 16 * 1024, "{}", d.key_path.len());
            }
        }
        Err(other) => prop_assert!(false, "unexpected error {other}"),
    }
    Ok(())
}

#[test]
#[allow(clippy::print_stderr)] // the figures are the point of a fuzz run
fn hostile_manifests() {
    // `Config::default()` takes `PROPTEST_CASES` from the environment (default 256).
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let cases = config.cases;
    let mut runner = TestRunner::new(config);
    let slowest = Cell::new((Duration::ZERO, 0usize));
    let accepted = Cell::new(0usize);
    let start = Instant::now();
    let result = runner.run(&manifest(), |text| {
        let case_start = Instant::now();
        let result = drover_spec::load_str(&text, Path::new("/tmp/fuzz/drover.yaml"));
        let elapsed = case_start.elapsed();
        if elapsed > slowest.get().0 {
            slowest.set((elapsed, text.len()));
        }
        accepted.set(accepted.get() + usize::from(result.is_ok()));
        check_answer(&result)?;
        prop_assert!(
            elapsed < CASE_BOUND,
            "{} bytes took {elapsed:?}",
            text.len()
        );
        Ok(())
    });
    let (slow, slow_bytes) = slowest.get();
    eprintln!(
        "fuzz: {cases} cases in {:.1?}; slowest case {slow:.1?} ({slow_bytes} bytes); {} accepted",
        start.elapsed(),
        accepted.get()
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
