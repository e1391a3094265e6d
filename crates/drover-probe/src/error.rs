//! Why a network check could not reach a verdict from its peer: the failure's message in a
//! probe's log line and `reason`.

use std::io;

/// A check that failed before its peer gave an answer to judge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection.
    #[error("{host}:{port}: {source}")]
    Connect {
        /// The host the check is for.
        host: String,
        /// Its port.
        port: u16,
        /// What the system said.
        source: io::Error,
    },
    /// The HTTP request could not be sent.
    #[error("{host}:{port}: sending the request: {source}")]
    Send {
        /// The host the check is for.
        host: String,
        /// Its port.
        port: u16,
        /// What the system said.
        source: io::Error,
    },
    /// The HTTP response could not be read.
    #[error("{host}:{port}: reading the response: {source}")]
    Read {
        /// The host the check is for.
        host: String,
        /// Its port.
        port: u16,
        /// What the system said.
        source: io::Error,
    },
    /// What came back is no HTTP status line.
    #[error("{host}:{port}: not an HTTP response")]
    NotHttp {
        /// The host the check is for.
        host: String,
        /// Its port.
        port: u16,
    },
}
