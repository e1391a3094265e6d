//! drover-probe: probe execution and probe state.
//!
//! It will own the readiness, liveness and startup probes (exec, HTTP, TCP and sd_notify), their
//! timers, thresholds and results, with Kubernetes semantics. Probes are timers on the runtime,
//! not threads.
//!
//! Empty until the probes issue; probe definitions come from `drover_spec::Probe`.
#![forbid(unsafe_code)]
