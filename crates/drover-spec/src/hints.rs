//! What users of Docker Compose, Kubernetes and process-compose write where drover has another
//! spelling: an unknown key or value that is a peer's name is answered with drover's, rather
//! than with the list of every allowed key. Where a name was found is told by the keys (or
//! values) serde expected there.

/// Where a name was written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Top,
    Service,
    Probe,
    Condition,
    Policy,
}

impl Place {
    /// The place whose allowed names are `expected`, if it has hints.
    fn of(expected: &[&str]) -> Option<Place> {
        let has = |name: &str| expected.contains(&name);
        if has("readiness_probe") {
            Some(Place::Service)
        } else if has("failure_threshold") {
            Some(Place::Probe)
        } else if has("services") {
            Some(Place::Top)
        } else if has("completed_successfully") {
            Some(Place::Condition)
        } else if has("on-failure") {
            Some(Place::Policy)
        } else {
            None
        }
    }
}

/// Each peer's name, where it is written, and drover's answer.
const HINTS: &[(Place, &[&str], &str)] = &[
    (
        Place::Top,
        &["processes"],
        "drover's is `services` (process-compose's `processes`)",
    ),
    (
        Place::Service,
        &["healthcheck"],
        "drover's is `readiness_probe` (gates dependents and `/readyz`) or `liveness_probe` (restarts): `readiness_probe: { exec: { command: [pg_isready] }, period: 10s, failure_threshold: 3 }`",
    ),
    (
        Place::Service,
        &["stop_signal"],
        "drover's is `stop: { signal: SIGQUIT }`",
    ),
    (
        Place::Service,
        &["stop_grace_period"],
        "drover's is `stop: { timeout: 30s }` (the grace before SIGKILL)",
    ),
    (
        Place::Service,
        &["env"],
        "drover's is `environment`: a map (`{ KEY: value }`) or a list of `KEY=value`",
    ),
    (
        Place::Service,
        &["args", "entrypoint"],
        "drover's `command` holds the program and its arguments: `command: [program, arg1, arg2]`",
    ),
    (
        Place::Service,
        &["restartPolicy", "restart_policy"],
        "drover's is `restart: always | on-failure | never` (or `restart: { policy: ..., max_retries: 3 }`)",
    ),
    (
        Place::Service,
        &["availability"],
        "drover's is `restart: { policy: on-failure, backoff: { initial: 1s }, max_retries: 3 }` (process-compose's `availability`)",
    ),
    (
        Place::Service,
        &["shutdown"],
        "drover's is `stop: { signal: SIGTERM, timeout: 10s }`, and `pre_stop: [{ command: [...] }]` for a command (process-compose's `shutdown`)",
    ),
    (
        Place::Probe,
        &["test"],
        "drover's is `exec: { command: [pg_isready, -U, app] }` (Compose's `test` without `CMD`)",
    ),
    (Place::Probe, &["interval"], "drover's is `period: 10s`"),
    (
        Place::Probe,
        &["retries"],
        "drover's is `failure_threshold: 3`",
    ),
    (
        Place::Probe,
        &["start_period"],
        "drover's is `initial_delay: 30s`, or a `startup_probe` for a slow start",
    ),
    (
        Place::Probe,
        &["httpGet", "http_get"],
        "drover's is `http: { port: 8080, path: /healthz }` (or `http: { url: \"http://127.0.0.1:8080/healthz\" }`)",
    ),
    (
        Place::Probe,
        &["tcpSocket", "tcp_socket"],
        "drover's is `tcp: { port: 5432 }`",
    ),
    (
        Place::Probe,
        &["initialDelaySeconds", "initial_delay_seconds"],
        "drover's is `initial_delay: 5s` (a duration with its unit)",
    ),
    (
        Place::Probe,
        &["periodSeconds", "period_seconds"],
        "drover's is `period: 10s` (a duration with its unit)",
    ),
    (
        Place::Probe,
        &["timeoutSeconds", "timeout_seconds"],
        "drover's is `timeout: 1s` (a duration with its unit)",
    ),
    (
        Place::Condition,
        &["service_healthy", "process_healthy"],
        "drover's is `ready` (its readiness probe passed)",
    ),
    (
        Place::Condition,
        &["service_started", "process_started"],
        "drover's is `started`",
    ),
    (
        Place::Condition,
        &[
            "service_completed_successfully",
            "process_completed_successfully",
            "completed",
            "process_completed",
        ],
        "drover's is `completed_successfully` (it exited 0)",
    ),
    (
        Place::Policy,
        &["unless-stopped"],
        "drover's is `always` (a service stopped by hand stays stopped anyway)",
    ),
];

/// drover's spelling for `name`, an unknown key or value where `expected` are allowed.
pub(crate) fn hint(name: &str, expected: &[&str]) -> Option<&'static str> {
    let place = Place::of(expected)?;
    HINTS
        .iter()
        .find(|(at, names, _)| *at == place && names.contains(&name))
        .map(|(_, _, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest with `name` written where `place` is.
    fn manifest_with(place: Place, name: &str) -> String {
        match place {
            Place::Top => format!("{name}: {{}}\nservices:\n  a: {{ command: x }}"),
            Place::Service => format!("services:\n  a: {{ command: x, {name}: 1 }}"),
            Place::Probe => format!(
                "services:\n  a: {{ command: x, readiness_probe: {{ tcp: {{ port: 1 }}, {name}: 1 }} }}"
            ),
            Place::Condition => format!(
                "services:\n  b: {{ command: x }}\n  a: {{ command: x, depends_on: {{ b: {{ condition: {name} }} }} }}"
            ),
            Place::Policy => {
                format!("services:\n  a: {{ command: x, restart: {{ policy: {name} }} }}")
            }
        }
    }

    #[test]
    fn every_peer_name_gets_drovers_spelling_where_it_is_written() {
        let mut rows = 0;
        for (place, names, hint) in HINTS {
            for name in *names {
                let yaml = manifest_with(*place, name);
                let err = crate::load_str(&yaml, std::path::Path::new("/t/drover.yaml"))
                    .expect_err("a peer's name is no drover key");
                let crate::Error::Invalid { diagnostics } = err else {
                    panic!("{err}")
                };
                assert_eq!(diagnostics.len(), 1, "{name}: {diagnostics:?}");
                let message = &diagnostics[0].message;
                assert!(
                    message.contains(&format!("`{name}`")) && message.ends_with(hint),
                    "{name}: {message}"
                );
                rows += 1;
            }
        }
        assert!(rows >= 30, "{rows} names");
    }

    #[test]
    fn a_name_gets_a_hint_only_where_the_peer_writes_it() {
        // `test` is Compose's probe key, not a service key.
        assert_eq!(hint("test", &["readiness_probe", "command"]), None);
        assert!(hint("test", &["exec", "failure_threshold"]).is_some());
        assert_eq!(hint("healthcheck", &["policy", "backoff"]), None);
    }
}
