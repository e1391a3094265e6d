//! Hostile manifests (issue 12): whatever a manifest holds, checking it is answered in bounded
//! time and memory, with a bounded number of bounded diagnostics.

use drover_spec::{Diagnostic, Error};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One hostile load at a time: the time bound is about this crate, not about the other tests
/// of the binary competing for two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Generous, for a debug build on a slow machine; a release build answers each in milliseconds.
const BOUND: Duration = Duration::from_secs(5);
/// What a load reports at most, plus the final "N more errors not shown".
const MAX_REPORTED: usize = 101;

/// Loads `text`, expecting it to be invalid; its diagnostics. Prints how long it took (seen
/// with `--nocapture`).
#[allow(clippy::print_stderr)] // the timing is the figure issue 12 asks for
fn check(what: &str, text: &str) -> Vec<Diagnostic> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let result = drover_spec::load_str(text, Path::new("/tmp/hostile.yaml"));
    let elapsed = start.elapsed();
    drop(guard);
    eprintln!("{what}: {} bytes answered in {elapsed:?}", text.len());
    let diagnostics = match result {
        Err(Error::Invalid { diagnostics }) => diagnostics,
        other => panic!("{what}: expected diagnostics, got {other:?}"),
    };
    assert!(elapsed < BOUND, "{what}: took {elapsed:?}");
    assert!(
        diagnostics.len() <= MAX_REPORTED,
        "{what}: {} diagnostics",
        diagnostics.len()
    );
    for d in &diagnostics {
        assert!(
            d.message.len() <= 1024 && d.key_path.len() <= 1024,
            "{what}: a diagnostic of {} + {} bytes",
            d.key_path.len(),
            d.message.len()
        );
    }
    diagnostics
}

fn services(count: usize, body: impl Fn(usize) -> String) -> String {
    let mut text = String::from("services:\n");
    for i in 0..count {
        text.push_str(&format!(
            "  service-{i:04}:\n    command: sleep 1\n{}",
            body(i)
        ));
    }
    text
}

fn assert_more_not_shown(what: &str, diagnostics: &[Diagnostic], total: usize) {
    let last = diagnostics.last().map(|d| d.message.clone());
    let expected = format!("{} more errors not shown", total - (MAX_REPORTED - 1));
    assert!(
        last.as_deref().is_some_and(|m| m.contains(&expected)),
        "{what}: last diagnostic {last:?}, expected {expected:?}"
    );
}

#[test]
fn many_unknown_dependencies_among_many_services() {
    // 1000 services × 20 unknown dependencies: 20 000 misses, each a plausible typo of a
    // known name, so every one of them would search all 1000 names.
    let text = services(1000, |i| {
        let deps: Vec<String> = (0..20)
            .map(|j| format!("servise-{:04}", (i + j + 1) % 1000))
            .collect();
        format!("    depends_on: [{}]\n", deps.join(", "))
    });
    let diagnostics = check("1000 services x 20 unknown dependencies", &text);
    assert_eq!(diagnostics.len(), MAX_REPORTED);
    assert!(
        diagnostics[0]
            .message
            .contains("unknown dependency `servise-0001`"),
        "{}",
        diagnostics[0]
    );
    assert_more_not_shown("unknown dependencies", &diagnostics, 20_000);
}

#[test]
fn as_many_unknown_dependencies_as_the_node_budget_allows() {
    // 1000 services, and one of them lists 100 000 unknown names.
    let mut text = services(1000, |_| String::new());
    text.push_str("  big:\n    command: sleep 1\n    depends_on: [");
    for j in 0..100_000 {
        text.push_str(&format!("servise-{:04}, ", j % 10_000));
    }
    text.push_str("]\n");
    let diagnostics = check("100 000 unknown dependencies", &text);
    assert_eq!(diagnostics.len(), MAX_REPORTED);
}

fn four_mb_name() -> String {
    "a".repeat(4 * 1024 * 1024)
}

#[test]
fn a_four_megabyte_dependency_name() {
    let long = format!("service-{}", "x".repeat(55));
    let name = four_mb_name();
    for form in ["list", "map"] {
        let deps = match form {
            "list" => format!("[{name}]"),
            // An implicit key is at most 1024 characters in YAML; an explicit one is not.
            _ => format!("\n      ? {name}\n      : {{condition: started}}"),
        };
        let text = format!(
            "services:\n  {long}:\n    command: sleep 1\n  web:\n    command: sleep 1\n    depends_on: {deps}\n"
        );
        let diagnostics = check(&format!("a 4 MB dependency name ({form})"), &text);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let message = diagnostics[0].message_with_path();
        assert!(
            message.contains(&format!("unknown dependency `{}…`", &name[..64])),
            "{message}"
        );
    }
}

#[test]
fn four_megabyte_keys_values_and_names() {
    let name = four_mb_name();
    let short = &name[..64];
    let service = "services:\n  web:\n    command: sleep 1\n";
    let cases = [
        (
            "unknown key",
            format!("{service}    ? {name}\n    : 1\n"),
            format!("unknown key `{short}…`"),
        ),
        (
            "enum value",
            format!("{service}    restart: {{policy: {name}}}\n"),
            format!("unknown value `{short}…`"),
        ),
        (
            "signal",
            format!("{service}    stop: {{signal: {name}}}\n"),
            format!("invalid signal `{short}…`"),
        ),
        (
            "service name",
            format!("services:\n  ? {name}\n  : {{command: sleep 1}}\n"),
            format!("invalid service name `{short}…`"),
        ),
        (
            "top-level key",
            format!("? {name}\n: 1\n{service}"),
            format!("unknown key `{short}…`"),
        ),
        (
            "environment name",
            format!("{service}    environment: [\"{name}\"]\n"),
            format!("found `{short}…`"),
        ),
        (
            "duration",
            format!("{service}    stop: {{timeout: {name}}}\n"),
            format!("invalid duration `{short}…`"),
        ),
        (
            "user",
            format!("{service}    user: {name}\n"),
            format!("invalid user `{short}…`"),
        ),
        (
            "url",
            format!("{service}    readiness_probe: {{http: {{url: {name}}}}}\n"),
            format!("invalid url `{short}…`"),
        ),
    ];
    for (what, text, expected) in cases {
        let diagnostics = check(what, &text);
        assert!(
            diagnostics
                .iter()
                .any(|d| d.message_with_path().contains(&expected)),
            "{what}: expected {expected:?} in {diagnostics:?}"
        );
    }
}

#[test]
fn many_structural_errors_in_a_large_tree_stay_bounded() {
    // Every service has a bad value that the deserializer must drop and recover from: each
    // recovery deserializes the tree again, so their number must be bounded.
    let text = services(5000, |_| {
        "    restart: {policy: sometimes}\n    environment: {A: a, B: b, C: c, D: d}\n".into()
    });
    let diagnostics = check("5000 services with a bad restart policy", &text);
    assert!(diagnostics.len() <= MAX_REPORTED);
}

#[test]
fn structural_errors_after_a_large_tree_cost_passes_over_their_own_service() {
    // A large valid tree, then 10 000 services with a bad value: every recovery deserializes
    // again, and when each pass read the whole file, 100 of them took 16 s in a debug build.
    let mut text = services(1000, |_| {
        let env: Vec<String> = (0..60).map(|k| format!("K{k}: v")).collect();
        format!("    environment: {{{}}}\n", env.join(", "))
    });
    for i in 0..10_000 {
        text.push_str(&format!(
            "  bad-{i}:\n    command: sleep 1\n    on_exit: sometimes\n"
        ));
    }
    let diagnostics = check("10 000 bad services after 1000 large ones", &text);
    assert_eq!(diagnostics.len(), MAX_REPORTED);
    assert!(
        diagnostics[0]
            .message_with_path()
            .starts_with("services.bad-0.on_exit: unknown value"),
        "{}",
        diagnostics[0]
    );
}

#[test]
fn top_level_errors_after_a_large_tree_stop_within_a_work_bound() {
    let mut text = services(1000, |_| {
        let env: Vec<String> = (0..30).map(|k| format!("K{k}: v")).collect();
        format!("    environment: {{{}}}\n", env.join(", "))
    });
    for i in 0..10_000 {
        text.push_str(&format!("unknown-{i}: 1\n"));
    }
    let diagnostics = check(
        "10 000 unknown top-level keys after 1000 large services",
        &text,
    );
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.starts_with("too many errors; stopped after")),
        "{diagnostics:?}"
    );
}

#[test]
fn a_long_cycle_is_spelled_out_by_its_ends() {
    let text = services(2000, |i| {
        format!("    depends_on: [service-{:04}]\n", (i + 1) % 2000)
    });
    let diagnostics = check("a cycle of 2000 services", &text);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(
        diagnostics[0].message,
        "dependency cycle: service-0000 -> service-0001 -> service-0002 -> service-0003 -> \
         service-0004 -> (1990 more) -> service-1995 -> service-1996 -> service-1997 -> \
         service-1998 -> service-1999 -> service-0000"
    );
}
