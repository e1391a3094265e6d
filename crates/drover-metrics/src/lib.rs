//! drover-metrics: the Prometheus registry and the HTTP endpoint.
//!
//! It will own every metric drover exports and the `/metrics`, `/healthz` and `/readyz`
//! endpoints. It subscribes to the supervisor events and reads its snapshots, so the supervisor
//! has no prometheus dependency and a scrape never blocks supervision.
//!
//! Empty until the observability issue.
#![forbid(unsafe_code)]
