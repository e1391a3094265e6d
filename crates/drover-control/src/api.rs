//! The JSON bodies of the control socket's answers (`docs/manifest.md`, "Control socket"),
//! shared by the server and the client.

use serde::{Deserialize, Serialize};

/// `GET /v1/status`: every service (or those asked for), in the manifest's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The services.
    pub services: Vec<ServiceStatus>,
    /// The metrics endpoint's URL (`http://127.0.0.1:9464/metrics`), when it serves.
    #[serde(default)]
    pub metrics: Option<String>,
}

/// One service in `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Its state (`running`, `stopped`, ...).
    pub state: String,
    /// Why it is in that state.
    pub reason: String,
    /// Its main process, while it runs.
    pub pid: Option<u32>,
    /// Seconds since its current run started, while it runs.
    pub uptime_seconds: Option<f64>,
    /// Successful spawns so far.
    pub starts: u64,
    /// Restarts so far, every reason together.
    pub restarts: u64,
    /// Whether it is ready.
    pub ready: bool,
    /// How its last run ended (`exit code 1`, `signal 9 (SIGKILL)`).
    pub last_exit: Option<String>,
    /// The last `STATUS=` it sent over sd_notify.
    pub status: Option<String>,
}

/// The answer to an operation (`start`, `stop`, `restart`, `signal`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationAnswer {
    /// The service.
    pub service: String,
    /// The operation.
    pub operation: String,
    /// `done`, `accepted` (not waited for), `failed` or `timeout`.
    pub result: String,
    /// What happened, in words.
    pub message: String,
}

/// `POST /v1/reload`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// Whether the new manifest runs now.
    pub applied: bool,
    /// What it changed (`+api ~web =db`), when applied.
    pub plan: Option<String>,
    /// Why not, each `file:line:col: error: …` where it has a place.
    pub errors: Vec<String>,
    /// In words.
    pub message: String,
}

/// Any answer that is an error (4xx, 5xx).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub error: String,
}
