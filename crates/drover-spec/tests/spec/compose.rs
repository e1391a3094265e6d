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
