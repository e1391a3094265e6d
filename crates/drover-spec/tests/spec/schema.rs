//! `drover schema` is generated from the raw types; here a real JSON-Schema validator checks
//! that it accepts every example and rejects what the parser rejects structurally.

use crate::example_manifests;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn yaml_as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&drover_spec::json_schema())
        .expect("the schema is a valid JSON Schema")
}

fn yaml_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    }
}

#[test]
fn the_schema_accepts_every_example() {
    let validator = validator();
    for example in example_manifests() {
        for file in yaml_files(&example) {
            let instance = yaml_as_json(&file);
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{} fails the schema: {errors:#?}",
                file.display()
            );
        }
    }
}

#[test]
fn the_schema_rejects_structural_mistakes() {
    let validator = validator();
    let cases = [
        "services:\n  web:\n    comand: sleep 1\n",
        "services:\n  web:\n    command: sleep 1\n    restart: {policy: sometimes}\n",
        "services:\n  web:\n    command: {a: 1}\n",
        "services:\n  web:\n    command: sleep 1\n    depends_on: {db: {condition: healthy}}\n",
        "settings: {log: {format: xml}}\nservices: {web: {command: sleep 1}}\n",
        "services:\n  web:\n    user: nobody\n",
        "services:\n  Web:\n    command: sleep 1\n",
    ];
    for case in cases {
        let instance: Value = serde_saphyr::from_str(case).expect("yaml");
        assert!(
            !validator.is_valid(&instance),
            "the schema accepts:\n{case}"
        );
        assert!(
            drover_spec::load_str(case, Path::new("/tmp/s.yaml")).is_err(),
            "the parser accepts:\n{case}"
        );
    }
}

#[test]
fn the_schema_describes_the_keys_of_the_contract() {
    let schema = drover_spec::json_schema().to_string();
    for key in [
        "shutdown_timeout",
        "service_output",
        "debounce",
        "working_dir",
        "env_file",
        "depends_on",
        "reset_after",
        "max_retries",
        "readiness_probe",
        "liveness_probe",
        "startup_probe",
        "success_threshold",
        "failure_threshold",
        "initial_delay",
        "on_exit",
        "watchdog",
        "completed_successfully",
        "on-failure",
    ] {
        assert!(
            schema.contains(&format!("\"{key}\"")),
            "the schema lacks `{key}`"
        );
    }
}

/// Every form the parser accepts, the schema accepts too: scalars where strings are expected,
/// Compose's shorthands, extension keys, hooks.
#[test]
fn the_schema_accepts_what_the_parser_accepts() {
    let validator = validator();
    let cases = [
        "services:\n  web: { command: [sleep, 5], environment: { PORT: 8080, DEBUG: true, RATIO: 0.5 } }\n",
        "services:\n  web: { command: sleep 5, environment: [PORT=8080] }\n",
        "services:\n  web: { command: x, restart: always }\n",
        "services:\n  web: { command: x, restart: \"on-failure:3\" }\n",
        "services:\n  web: { command: x, restart: no }\n",
        "services:\n  web: { command: x, stop: { signal: 15, timeout: 5, drain: 1s } }\n",
        "services:\n  web: { command: x, user: 1000 }\n",
        "services:\n  web: { command: x, working_dir: 42 }\n",
        "services:\n  db: { command: x }\n  web: { command: x, depends_on: { db: } }\n",
        "services:\n  db: { command: x }\n  web: { command: x, depends_on: { db: { condition: ready, restart: true } } }\n",
        "x-base: &base { restart: always }\nservices:\n  web: { <<: *base, command: x, x-note: free }\n",
        "services:\n  web: { command: x, post_start: [{ command: [warm], timeout: 5s }], pre_stop: [{ command: q, user: nobody, environment: { A: 1 } }] }\n",
        "services:\n  web: { command: x, env_file: a.env }\n",
        "services:\n  web: { command: x, readiness_probe: { http: { port: 8080, path: /h, headers: { X-A: 1 } } } }\n",
        "settings: { metrics: { listen: null }, control: { socket: null } }\nservices:\n  web: { command: x }\n",
    ];
    for case in cases {
        let instance: Value = serde_saphyr::from_str(case).expect("yaml");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "the schema refuses:\n{case}{errors:#?}");
        if !case.contains("env_file") {
            if let Err(err) = drover_spec::load_str(case, Path::new("/tmp/s.yaml")) {
                panic!("the parser refuses:\n{case}{err:?}");
            }
        }
    }
}
