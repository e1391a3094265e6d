//! drover-metrics: the Prometheus registry and the HTTP endpoint.
//!
//! It owns every metric drover exports ([`exporter`]), the `/metrics`, `/healthz` and `/readyz`
//! endpoint ([`server`]) and its life across reloads ([`Endpoint`]), and the per-service CPU
//! and memory read from /proc ([`usage`]). Service
//! metrics are rebuilt from the supervisor's snapshot at each scrape, so a scrape never waits
//! for supervision and a removed service's series disappear; probe results come from the
//! supervisor's event channel, and so are stops and hooks (`stops`).
#![forbid(unsafe_code)]

mod endpoint;
pub mod exporter;
pub mod server;
mod stops;
pub mod usage;

pub use endpoint::{Endpoint, EndpointMove};
pub use exporter::{CounterFamily, CounterSeries, Exporter};
pub use server::{Limits, serve, serve_with};

/// What can go wrong setting up the metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A metric could not be registered (a bug: names are fixed).
    #[error("cannot register a metric: {0}")]
    Register(#[from] prometheus::Error),
    /// The listener could not be set up for the runtime.
    #[error("cannot set up the metrics listener: {0}")]
    Listener(std::io::Error),
    /// The address could not be bound.
    #[error("cannot listen for metrics on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
