use super::*;
use crate::yaml::parse;
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Inner {
    port: u16,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Outer {
    a: Inner,
    b: Inner,
    #[serde(default)]
    list: Vec<u32>,
}

fn run(text: &str) -> (Option<Outer>, Vec<String>) {
    let tree = parse(text).expect("valid yaml");
    let mut diagnostics = Vec::new();
    let recovered = from_tree::<Outer>(&tree, Path::new("t.yaml"), &mut diagnostics);
    (
        recovered.value,
        diagnostics.iter().map(ToString::to_string).collect(),
    )
}

#[test]
fn clean_input_has_no_diagnostics() {
    let (value, errors) = run("a: {port: 1}\nb: {port: 2, name: x}\nlist: [1, 2]\n");
    assert!(errors.is_empty(), "{errors:?}");
    let value = value.expect("value");
    assert_eq!(value.b.name.as_deref(), Some("x"));
    assert_eq!(value.list, [1, 2]);
}

#[test]
fn every_error_is_reported_with_path_and_position() {
    let text = "a:\n  port: 70000\n  nmae: x\nb:\n  port: [1]\nlist: [1, x]\n";
    let (_, errors) = run(text);
    assert_eq!(
        errors,
        [
            "t.yaml:2:9: error: a.port: invalid value: integer `70000`, expected u16",
            "t.yaml:3:3: error: a: unknown key `nmae`; did you mean `name`?",
            "t.yaml:5:9: error: b.port: expected an integer, found a sequence",
            "t.yaml:6:11: error: list[1]: expected an integer, found a string",
        ]
    );
}

#[test]
fn a_missing_key_is_reported_once_at_its_mapping() {
    let (_, errors) = run("a: {port: 1}\nb: {name: x}\n");
    assert_eq!(
        errors,
        ["t.yaml:2:4: error: b: missing required key `port`"]
    );
    // A bad value that is dropped is not reported again as missing.
    let (_, errors) = run("a: {port: x}\nb: {port: 2}\n");
    assert_eq!(
        errors,
        ["t.yaml:1:11: error: a.port: expected an integer, found a string"]
    );
}

#[test]
fn paths_render_keys_and_indices() {
    let path = [
        Seg::Key("services".into()),
        Seg::Key("web".into()),
        Seg::Key("command".into()),
        Seg::Index(2),
    ];
    assert_eq!(render_path(&path), "services.web.command[2]");
}

#[test]
fn error_collection_is_bounded() {
    let body: String = (0..150).map(|i| format!("  k{i}: 1\n")).collect();
    let (_, errors) = run(&format!("a: {{port: 1}}\nb:\n  port: 2\n{body}"));
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    assert!(
        errors[MAX_ERRORS].contains("too many errors"),
        "{}",
        errors[MAX_ERRORS]
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Services {
    services: indexmap::IndexMap<String, Inner>,
    #[serde(default)]
    x: Option<u32>,
}

fn run_by_entries(text: &str) -> (Option<Services>, Vec<String>, Vec<String>) {
    let tree = parse(text).expect("valid yaml");
    let mut diagnostics = Vec::new();
    let recovered = from_tree_by_entries::<Services, Inner>(
        &tree,
        Some("services"),
        Path::new("t.yaml"),
        &mut diagnostics,
    );
    (
        recovered.value,
        diagnostics.iter().map(ToString::to_string).collect(),
        recovered.dropped.iter().map(|p| render_path(p)).collect(),
    )
}

#[test]
fn entries_recover_one_by_one() {
    let (value, errors, dropped) = run_by_entries(
        "services:\n  a: {port: 1, nme: x}\n  b: 7\n  c: {port: 99999}\n  d: {port: 4}\nx: -1\n",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].contains("2:16: error: services.a: unknown key `nme`"),
        "{errors:#?}"
    );
    assert!(
        errors[1].contains("services.b: expected a mapping"),
        "{errors:#?}"
    );
    assert!(errors[2].contains("services.c.port"), "{errors:#?}");
    assert!(errors[3].contains("x: "), "{errors:#?}");
    assert_eq!(
        dropped,
        [
            "services.a.nme",
            "services.b",
            "services.c.port",
            "services.c",
            "x"
        ]
    );
    let value = value.expect("the rest deserializes");
    assert_eq!(value.services.keys().collect::<Vec<_>>(), ["a", "d"]);
    assert_eq!(value.x, None);
}

#[test]
fn recovery_work_is_bounded() {
    // 200 errors after a tree of 100 000 nodes: without a bound on work, each of 100 passes
    // would visit the whole tree.
    let mut text = String::from("services:\n");
    for i in 0..20_000 {
        text.push_str(&format!("  s{i}: {{port: {}, name: n}}\n", i % 1000 + 1));
    }
    for i in 0..200 {
        text.push_str(&format!("k{i}: 1\n"));
    }
    let (_, errors, _) = run_by_entries(&text);
    let last = errors.last().expect("errors");
    assert!(last.contains("too many errors; stopped after"), "{last}");
    assert!(errors.len() < MAX_ERRORS, "{}", errors.len());
}
