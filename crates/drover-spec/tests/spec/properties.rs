//! Whatever the bytes, loading never panics and always ends in a manifest or diagnostics.

use proptest::prelude::*;
use std::path::Path;

fn load_never_panics(text: &str) {
    match drover_spec::load_str(text, Path::new("/tmp/prop.yaml")) {
        Ok(manifest) => assert!(!manifest.services.is_empty()),
        Err(drover_spec::Error::Invalid { diagnostics }) => assert!(!diagnostics.is_empty()),
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// YAML-ish fragments: keys of the contract, values of every kind, nested by indentation.
fn yaml_shape() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("services"),
        Just("settings"),
        Just("web"),
        Just("command"),
        Just("depends_on"),
        Just("restart"),
        Just("policy"),
        Just("stop"),
        Just("signal"),
        Just("readiness_probe"),
        Just("http"),
        Just("tcp"),
        Just("port"),
        Just("period"),
        Just("environment"),
        Just("x"),
        Just("condition"),
        Just("max_retries"),
        Just("backoff"),
        Just("notify"),
        Just("<<"),
    ];
    let scalar = prop_oneof![
        Just("1"),
        Just("-1"),
        Just("0"),
        Just("70000"),
        Just("1.5"),
        Just("true"),
        Just("~"),
        Just("sleep 1"),
        Just("[a, b]"),
        Just("{}"),
        Just("10s"),
        Just("SIGTERM"),
        Just("&a x"),
        Just("*a"),
        Just("\"q\""),
        Just("'"),
        Just("["),
        Just("ready"),
        Just("always"),
    ];
    let line = (0usize..6, key, prop::bool::ANY, scalar).prop_map(|(indent, key, dash, value)| {
        format!(
            "{}{}{key}: {value}\n",
            "  ".repeat(indent),
            if dash { "- " } else { "" }
        )
    });
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load_never_panics(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_yaml_shapes(text in yaml_shape()) {
        load_never_panics(&text);
    }

    #[test]
    fn valid_prefix_with_arbitrary_service_body(body in yaml_shape()) {
        let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
        load_never_panics(&format!("services:\n  web:\n    command: sleep 1\n{indented}"));
    }
}
