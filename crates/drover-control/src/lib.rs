//! drover-control: the control socket, both ends.
//!
//! - `paths`: where the socket is ([`default_socket`]), one rule for `drover run` and every
//!   client;
//! - `listen`: [`ControlListener`], the socket bound safely (its directory, a stale socket
//!   replaced, a live one never taken over, modes and group);
//! - `server`: [`serve`], HTTP/1.1 with JSON bodies under `/v1/`, peers checked by
//!   `SO_PEERCRED`; operations go to the supervisor as `Control` messages;
//! - `client`: [`Client`], what `drover status`, `start`, ... use;
//! - `api`: the JSON bodies both sides share.
//!
//! **Boundary**: it knows the supervisor's handle and nothing of the binary: a reload asked
//! through the socket goes out on a channel ([`ReloadRequest`]) that the binary answers.
#![forbid(unsafe_code)]

pub mod api;
mod client;
mod listen;
mod paths;
mod server;

pub use client::{Answer, Client, ClientError};
pub use listen::ControlListener;
pub use paths::{SOCKET_NAME, default_socket, no_default};
pub use server::{Access, MetricsAddress, ReloadRequest, Server, Stats, parse_signal, serve};

use std::path::PathBuf;

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding it (its directory, a stale socket, the bind, its mode).
    #[error("cannot set up the control socket at {}", path.display())]
    Bind {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A drover already answers there.
    #[error("another drover is running with its control socket at {} (set settings.control.socket or DROVER_SOCKET to run a second one)", .0.display())]
    InUse(PathBuf),
}
