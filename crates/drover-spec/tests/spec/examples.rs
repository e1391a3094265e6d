//! Round trip: every example manifest loads, and the defaults the docs promise are the ones
//! the code applies.

use crate::{example_manifests, repo_root};
use serde_json::{Value, json};
use std::path::Path;

#[test]
fn every_example_manifest_loads() {
    let examples = example_manifests();
    assert!(
        examples.len() >= 3,
        "expected the examples of manifests/, found {examples:?}"
    );
    for path in &examples {
        match drover_spec::load(path) {
            Ok(manifest) => assert!(!manifest.services.is_empty(), "{}", path.display()),
            Err(err) => panic!("{} is invalid: {err}\n{err:?}", path.display()),
        }
    }
    let names: Vec<String> = examples
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    for required in ["demo.yaml", "minimal.yaml"] {
        assert!(
            names.iter().any(|n| n == required),
            "manifests/{required} is missing"
        );
    }
}

#[test]
fn the_demo_has_a_migration_a_ready_gated_web_server_and_a_worker() {
    use drover_spec::model::{Condition, ProbeAction};
    let demo = drover_spec::load(&repo_root().join("manifests/demo.yaml")).expect("demo is valid");
    let web = demo.services.values().find(|s| {
        matches!(
            s.readiness_probe.as_ref().map(|p| &p.action),
            Some(ProbeAction::Http { .. })
        )
    });
    let web = web.expect("a service with an http readiness probe");
    assert!(
        web.depends_on
            .iter()
            .any(|d| d.condition == Condition::CompletedSuccessfully),
        "the web server waits for the migration"
    );
    assert!(
        demo.services.values().any(|s| s
            .depends_on
            .iter()
            .any(|d| d.service == web.name && d.condition == Condition::Ready)),
        "a worker waits for the web server to be ready"
    );
}

#[test]
fn a_user_that_does_not_exist_here_is_not_a_check_error() {
    let text = "services:\n  web:\n    command: sleep 1\n    user: no-such-user-on-this-machine\n";
    let manifest = drover_spec::load_str(text, Path::new("/tmp/user.yaml")).expect("valid");
    assert!(manifest.services["web"].user.is_some());
}

/// The rows of the `## Defaults` table of docs/manifest.md: (key path, value).
fn documented_defaults() -> Vec<(String, String)> {
    let docs =
        std::fs::read_to_string(repo_root().join("docs/manifest.md")).expect("docs/manifest.md");
    let section = docs
        .split("\n## Defaults")
        .nth(1)
        .expect("a `## Defaults` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let unquote = |c: &str| c.trim_matches('`').to_string();
            (unquote(cells[0]), unquote(cells[1]))
        })
        .collect()
}

/// A manifest as JSON (which is YAML), with what the key needs around it.
fn base_for(key: &str) -> Value {
    let probe = if key.contains(".http.") {
        json!({"http": {"port": 8080}})
    } else {
        json!({"tcp": {"port": 8080}})
    };
    let mut web = json!({"command": "sleep 1"});
    if key.contains("_probe.") {
        web["readiness_probe"] = probe;
    }
    json!({"services": {"web": web}})
}

fn set(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    let parts: Vec<&str> = key
        .split('.')
        .map(|p| if p == "NAME" { "web" } else { p })
        .collect();
    for part in &parts[..parts.len() - 1] {
        if node.get(part).is_none() {
            node[*part] = json!({});
        }
        node = &mut node[*part];
    }
    node[parts[parts.len() - 1]] = value;
}

#[test]
fn defaults_match_the_docs() {
    let rows = documented_defaults();
    assert!(
        rows.len() >= 20,
        "the Defaults table has only {} rows",
        rows.len()
    );
    let file = Path::new("/tmp/defaults.yaml");
    for (key, documented) in rows {
        let base = base_for(&key);
        let without =
            drover_spec::load_str(&base.to_string(), file).expect("base manifest is valid");
        let mut with = base.clone();
        // A JSON number or boolean when it reads as one, else a string: as YAML would.
        let value: Value =
            serde_json::from_str(&documented).unwrap_or(Value::String(documented.clone()));
        set(&mut with, &key, value);
        let mut with = drover_spec::load_str(&with.to_string(), file)
            .unwrap_or_else(|e| panic!("`{key}: {documented}` is rejected: {e:?}"));
        // Written out, the default address is one the user chose (and is refused when taken,
        // where the default moves to another port): the only difference it makes.
        if key == "settings.metrics.listen" {
            assert!(with.settings.metrics_listen_chosen && !without.settings.metrics_listen_chosen);
            with.settings.metrics_listen_chosen = false;
        }
        assert_eq!(
            with, without,
            "docs/manifest.md says `{key}` defaults to `{documented}`, the code disagrees"
        );
    }
}
