//! drover-spec: the manifest — its types, parsing, validation and defaults.
//!
//! The contract is `../shared/manifest-v1.md`. The pipeline has three stages, each in its own
//! module:
//!
//! 1. `yaml`: text → a tree of nodes with line and column, through serde-saphyr with budgets
//!    (alias bombs, deep nesting, duplicate keys and oversized files are refused, in bounded time
//!    and memory);
//! 2. `de`: tree → the raw serde types of [`raw`], with the key path and position in every
//!    error, recovering after each error so that all of them are reported at once;
//! 3. `validate`: raw types → the checked [`model`] that the rest of drover uses (defaults
//!    filled in, paths absolute, names, signals, ports, thresholds and the dependency graph
//!    checked).
//!
//! **Invariant**: a [`model::Manifest`] exists only if every check passed. The crate has no
//! async runtime and no knowledge of processes: it is the leaf every other crate builds on.
#![forbid(unsafe_code)]

mod de;
pub mod diff;
mod envfile;
mod error;
mod hints;
mod interpolate;
mod load;
mod located;
pub mod model;
pub mod raw;
mod schema;
pub mod signal;
mod source;
mod suggest;

/// The name among `candidates` closest to `typo`, when one is close enough to be a typo (a
/// thousand candidates at most): for "did you mean" outside manifests (service names given to
/// `drover stop`, say).
pub fn did_you_mean<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    suggest::did_you_mean(typo, candidates)
}
mod validate;
pub mod values;
mod yaml;

pub use error::{Diagnostic, Error, MAX_DIAGNOSTICS};
pub use load::{load, load_str};
pub use located::Located;
pub use model::Manifest;
pub use schema::json_schema;
pub use source::{MAX_MANIFEST_BYTES, read_regular_file};
pub use validate::{parse_http_url, parse_listen, parse_signal};
pub use yaml::Pos;
