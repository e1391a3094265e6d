//! drover-spec's integration tests: one binary, a module per concern.

mod compose;
mod examples;
mod fuzz;
mod hostile;
mod invalid;
mod properties;
mod schema;

use std::path::{Path, PathBuf};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Every `*.yaml` directly in the repository's `manifests/` folder, plus its subdirectories
/// (directory manifests).
pub fn example_manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("manifests");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("manifests/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| {
            !p.is_dir()
                || std::fs::read_dir(p).expect("dir").any(|e| {
                    e.expect("entry")
                        .path()
                        .extension()
                        .is_some_and(|x| x == "yaml" || x == "yml")
                })
        })
        .collect();
    found.sort();
    found
}
