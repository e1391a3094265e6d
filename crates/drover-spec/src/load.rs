//! Loading a manifest: one file, or a directory whose `*.yaml` and `*.yml` files are merged.
//! Reads with bounds, parses each file into the positioned tree, deserializes the raw types
//! with error recovery, then validates everything into the model.

use crate::de::{Seg, from_tree_by_entries, render_path};
use crate::error::{Diagnostic, Error, sort_and_cap};
use crate::model::Manifest;
use crate::raw::{RawManifest, RawService};
use crate::source::{MAX_MANIFEST_BYTES, ReadError, read_bounded};
use crate::validate::{ParsedFile, check_service_name, validate};
use crate::yaml::{self, Pos};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Loads and checks the manifest at `path`: a file, or a directory of `*.yaml`/`*.yml` files
/// (merged in name order; hidden files are skipped).
///
/// # Errors
/// [`Error::Read`] when `path` itself cannot be read; [`Error::Invalid`] with every problem
/// found otherwise.
pub fn load(path: &Path) -> Result<Manifest, Error> {
    let metadata = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut diagnostics = Vec::new();
    let files = if metadata.is_dir() {
        let entries = manifest_files(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if entries.is_empty() {
            let message = "no *.yaml or *.yml files in this directory";
            diagnostics.push(Diagnostic::new(path, Pos::START, "", message));
        }
        entries
    } else {
        vec![path.to_path_buf()]
    };
    let mut parsed = Vec::new();
    for file in &files {
        match read_bounded(file, MAX_MANIFEST_BYTES) {
            Ok(text) => parsed.extend(parse_file(&text, file, &mut diagnostics)),
            Err(ReadError::Io(err)) => {
                diagnostics.push(Diagnostic::new(
                    file,
                    Pos::START,
                    "",
                    format!("cannot read: {err}"),
                ));
            }
            Err(ReadError::Invalid(pos, why)) => {
                diagnostics.push(Diagnostic::new(file, pos, "", format!("the file {why}")));
            }
        }
    }
    finish(&parsed, diagnostics, path)
}

/// Loads a manifest from text, as if read from `file` (relative paths resolve against its
/// directory). For tests, editors and `--dry-run` style callers.
///
/// # Errors
/// [`Error::Invalid`] with every problem found.
pub fn load_str(text: &str, file: &Path) -> Result<Manifest, Error> {
    let mut diagnostics = Vec::new();
    let parsed = parse_file(text, file, &mut diagnostics);
    finish(parsed.as_slice(), diagnostics, file)
}

fn finish(
    parsed: &[ParsedFile],
    mut diagnostics: Vec<Diagnostic>,
    path: &Path,
) -> Result<Manifest, Error> {
    let manifest = if parsed.is_empty() {
        None
    } else {
        validate(parsed, &mut diagnostics)
    };
    match manifest {
        Some(manifest) if diagnostics.is_empty() => Ok(manifest),
        _ => {
            if diagnostics.is_empty() {
                // Unreachable by construction; never report "invalid" without a reason.
                diagnostics.push(Diagnostic::new(
                    Path::new("<manifest>"),
                    Pos::START,
                    "",
                    "invalid manifest",
                ));
            }
            sort_and_cap(&mut diagnostics, path);
            Err(Error::Invalid { diagnostics })
        }
    }
}

/// Compose's extension fields: `x-*` keys at the top level and in a service, where Compose files
/// keep anchors for reuse (`x-common: &common ...`, then `<<: *common`). The aliases are already
/// resolved in the tree; the keys themselves are dropped, as Compose ignores them.
fn drop_extension_keys(tree: &mut yaml::Node) {
    let is_extension = |key: &yaml::Key| key.name.starts_with("x-");
    let yaml::Kind::Map(top) = &mut tree.kind else {
        return;
    };
    top.retain(|(key, _)| !is_extension(key));
    for (key, services) in top.iter_mut() {
        if key.name != "services" {
            continue;
        }
        let yaml::Kind::Map(entries) = &mut services.kind else {
            continue;
        };
        for (_, service) in entries.iter_mut() {
            if let yaml::Kind::Map(keys) = &mut service.kind {
                keys.retain(|(key, _)| !is_extension(key));
            }
        }
    }
}

/// The `*.yaml` and `*.yml` files of a directory, sorted by name, hidden ones skipped
/// (Kubernetes ConfigMap volumes keep their bookkeeping in `..data` entries).
fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if is_yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses and deserializes one file; `None` when nothing usable came out (a syntax error).
fn parse_file(text: &str, file: &Path, diagnostics: &mut Vec<Diagnostic>) -> Option<ParsedFile> {
    let mut tree = match yaml::parse(text) {
        Ok(tree) => tree,
        Err((pos, message)) => {
            diagnostics.push(Diagnostic::new(file, pos, "", message));
            return None;
        }
    };
    if tree.kind == yaml::Kind::Null {
        diagnostics.push(Diagnostic::new(
            file,
            Pos::START,
            "",
            "the manifest is empty; it needs a `services` mapping",
        ));
        return None;
    }
    let duplicates = yaml::duplicates(&tree);
    if !duplicates.is_empty() {
        for (pos, path, key, first) in duplicates {
            let message = format!(
                "duplicate key `{}` (first written on line {first})",
                crate::error::shorten_escaped(&key)
            );
            diagnostics.push(Diagnostic::new(file, pos, path, message));
        }
        return None;
    }
    drop_extension_keys(&mut tree);
    let errors_before = diagnostics.len();
    let recovered =
        from_tree_by_entries::<RawManifest, RawService>(&tree, Some("services"), file, diagnostics);
    let raw = recovered.value?;
    let dropped = recovered
        .dropped
        .iter()
        .map(|path| render_path(path))
        .collect();
    let mut broken_services: HashSet<String> = recovered
        .dropped
        .iter()
        .filter_map(|path| match path.as_slice() {
            [Seg::Key(services), Seg::Key(name)] if services == "services" => Some(name.clone()),
            _ => None,
        })
        .collect();
    if diagnostics.len() > errors_before && broken_services.is_empty() {
        // Errors elsewhere (say, `services` itself was not a mapping): still say nothing more
        // about missing services.
        broken_services.insert(String::new());
    }
    // Services left out for structural errors still get their name checked.
    if let yaml::Kind::Map(top) = &tree.kind
        && let Some((_, services)) = top.iter().find(|(k, _)| k.name == "services")
        && let yaml::Kind::Map(entries) = &services.kind
    {
        for (key, _) in entries
            .iter()
            .filter(|(k, _)| broken_services.contains(&k.name))
        {
            if let Err(why) = check_service_name(&key.name) {
                let path = format!("services.{}", key.name);
                diagnostics.push(Diagnostic::new(file, key.pos, path, why));
            }
        }
    }
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let base_dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    Some(ParsedFile {
        path: file.to_path_buf(),
        base_dir,
        raw,
        broken_services,
        dropped,
    })
}
