//! drover-probe: probe execution and probe state, with Kubernetes semantics.
//!
//! It owns what one check does ([`check`]: HTTP, TCP, and exec through the supervisor's
//! [`ExecCheck`]), how results count ([`threshold`]), when checks run ([`prober`]: timers on the
//! runtime, spread by a phase offset, never threads), and the sd_notify socket ([`notify`]).
//! What a verdict does to a service (ready, restart) is the supervisor's.
#![forbid(unsafe_code)]

pub mod check;
mod error;
pub mod notify;
pub mod prober;
pub mod threshold;

pub use check::{CheckFuture, CheckOutcome, CheckResult, Checker, ExecCheck};
pub use error::Error;
pub use notify::{NotifyMessage, NotifySocket, sender_in_group};
pub use threshold::{Change, Thresholds};

/// The three probes of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Holds the other two back until it passes; kills the service when it fails.
    Startup,
    /// Gates `ready`; never kills.
    Readiness,
    /// Restarts the service when it fails.
    Liveness,
}

impl ProbeKind {
    /// Every kind, for metrics created up front.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Readiness,
        ProbeKind::Liveness,
    ];

    /// `startup`, `readiness` or `liveness`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
