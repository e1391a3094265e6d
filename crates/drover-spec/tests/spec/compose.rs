//! The habits users bring from Docker Compose, Kubernetes and process-compose: the forms drover
//! accepts as they write them, and the exact fix for those it does not.

use drover_spec::model::{Manifest, RestartPolicy};
use std::path::Path;

fn load(yaml: &str) -> Manifest {
    drover_spec::load_str(yaml, Path::new("/t/drover.yaml"))
        .unwrap_or_else(|err| panic!("rejected: {err}\n{yaml}"))
}

#[test]
fn restart_takes_composes_strings() {
    let manifest = load(
        "services:
  a: { command: x, restart: always }
  b: { command: x, restart: \"on-failure:3\" }
  c: { command: x, restart: unless-stopped }
  d: { command: x, restart: no }
  e: { command: x, restart: never }
  f: { command: x, restart: on-failure }",
    );
    let restart = |name: &str| {
        let r = &manifest.services[name].restart;
        (r.policy, r.max_retries)
    };
    assert_eq!(restart("a"), (RestartPolicy::Always, 0));
    assert_eq!(restart("b"), (RestartPolicy::OnFailure, 3));
    assert_eq!(restart("c"), (RestartPolicy::Always, 0));
    assert_eq!(restart("d"), (RestartPolicy::Never, 0));
    assert_eq!(restart("e"), (RestartPolicy::Never, 0));
    assert_eq!(restart("f"), (RestartPolicy::OnFailure, 0));
}

#[test]
fn x_keys_hold_anchors_and_are_ignored() {
    let manifest = load(
        "x-common: &common
  restart: { policy: always }
  environment: { LEVEL: info }
services:
  web:
    <<: *common
    command: [w]
    x-owner: team-a
  worker:
    <<: *common
    command: [k]",
    );
    for name in ["web", "worker"] {
        let service = &manifest.services[name];
        assert_eq!(service.restart.policy, RestartPolicy::Always, "{name}");
        assert_eq!(service.environment, [("LEVEL".into(), "info".into())]);
    }
    // Only `x-` keys: a typo elsewhere is still an error.
    let err = drover_spec::load_str(
        "services:\n  web: { command: w, y-owner: a }",
        Path::new("/t/drover.yaml"),
    )
    .expect_err("y- is no extension");
    let drover_spec::Error::Invalid { diagnostics } = err else {
        panic!("{err}")
    };
    assert!(
        diagnostics[0].message.contains("unknown key `y-owner`"),
        "{diagnostics:?}"
    );
}

#[test]
fn variables_come_from_the_environment_then_a_dot_env_beside_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".env"),
        "FROM_FILE=filed\nPATH=not-this-one\n",
    )
    .expect("write .env");
    let manifest = dir.path().join("drover.yaml");
    std::fs::write(
        &manifest,
        "services:
  web:
    command: [echo, \"${FROM_FILE}\", \"$${LITERAL}\", \"$$\"]
    working_dir: \"${DROVER_TEST_NEVER_SET_DIR:-sub}\"
    environment:
      GREETING: \"${DROVER_TEST_NEVER_SET:-hello}\"
      SEARCH: \"${PATH}\"
      EMPTY: \"${DROVER_TEST_NEVER_SET_2}\"
  sh: { command: \"echo ${FROM_FILE:+yes} $HOME\" }
",
    )
    .expect("write manifest");
    let loaded = drover_spec::load(&manifest).expect("valid");
    let web = &loaded.services["web"];
    assert_eq!(
        web.command.argv(),
        ["echo", "filed", "${LITERAL}", "$$"],
        "$$ alone is left to the shell"
    );
    assert_eq!(web.working_dir, Some(dir.path().join("sub")));
    let env: std::collections::HashMap<_, _> = web.environment.iter().cloned().collect();
    assert_eq!(env["GREETING"], "hello");
    assert_eq!(
        env["SEARCH"],
        std::env::var("PATH").expect("PATH"),
        "drover's own environment wins over .env"
    );
    assert_eq!(env["EMPTY"], "");
    assert_eq!(
        loaded.services["sh"].command.argv(),
        ["/bin/sh", "-c", "echo yes $HOME"]
    );
    // The unset one without a default is a warning at its place.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let warning = &loaded.warnings[0];
    assert_eq!(warning.key_path, "services.web.environment.EMPTY");
    assert_eq!((warning.pos.line, warning.pos.column), (8, 14));
    assert!(
        warning
            .message
            .contains("`DROVER_TEST_NEVER_SET_2` is not set")
    );
}
