//! The table of invalid manifests: each file (or directory) in `tests/invalid/` states what
//! `drover check` must say about it in `# expect: [FILE:]LINE:COL MESSAGE-FRAGMENT` lines.
//! Every expected diagnostic must appear, at that position, and nothing else may.

use drover_spec::{Diagnostic, Error};
use std::path::{Path, PathBuf};

struct Expectation {
    /// Relative to `tests/invalid/`; `None` means the case's own file.
    file: Option<String>,
    line: u32,
    column: u32,
    fragment: String,
}

fn invalid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid")
}

fn expectations(path: &Path) -> Vec<Expectation> {
    let bytes = std::fs::read(path).expect("read case");
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(|spec| {
            let (place, fragment) = spec.split_once(' ').expect("`# expect: L:C message`");
            let parts: Vec<&str> = place.split(':').collect();
            let (file, line, column) = match parts.as_slice() {
                [line, column] => (None, line, column),
                [file, line, column] => (Some(file.to_string()), line, column),
                _ => panic!("bad place {place:?} in {}", path.display()),
            };
            Expectation {
                file,
                line: line.parse().expect("line"),
                column: column.parse().expect("column"),
                fragment: fragment.to_string(),
            }
        })
        .collect()
}

fn check(case: &Path) -> Result<(), String> {
    let expected: Vec<Expectation> = if case.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(case)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files.iter().flat_map(|f| expectations(f)).collect()
    } else {
        expectations(case)
    };
    if expected.is_empty() {
        return Err("no `# expect:` line".into());
    }
    let diagnostics: Vec<Diagnostic> = match drover_spec::load(case) {
        Ok(_) => return Err("accepted, but should be invalid".into()),
        Err(Error::Invalid { diagnostics }) => diagnostics,
        Err(other) => return Err(format!("unexpected error {other}")),
    };
    let got: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    for e in &expected {
        let file = match &e.file {
            Some(f) => invalid_dir().join(f),
            None => case.to_path_buf(),
        };
        let found = diagnostics.iter().any(|d| {
            d.file == file
                && d.pos.line == e.line
                && d.pos.column == e.column
                && d.message_with_path().contains(&e.fragment)
        });
        if !found {
            return Err(format!(
                "missing {}:{}:{} {:?}; got {got:#?}",
                file.display(),
                e.line,
                e.column,
                e.fragment
            ));
        }
    }
    if diagnostics.len() != expected.len() {
        return Err(format!(
            "expected {} diagnostics, got {got:#?}",
            expected.len()
        ));
    }
    Ok(())
}

#[test]
fn every_invalid_manifest_reports_what_it_expects() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(invalid_dir())
        .expect("tests/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("dir-"))
                || p.extension().is_some_and(|e| e == "yaml")
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check(case)
                .err()
                .map(|why| format!("{}: {why}", case.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).expect("create");
    // 100 MB, sparse: the size is real, the disk cost is not.
    file.set_len(100 * 1024 * 1024).expect("set_len");
    match drover_spec::load(&path) {
        Err(Error::Invalid { diagnostics }) => {
            assert_eq!(diagnostics.len(), 1);
            assert!(
                diagnostics[0].message.contains("larger than 8 MiB"),
                "{}",
                diagnostics[0]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_missing_manifest_is_a_read_error() {
    let err = drover_spec::load(Path::new("/nonexistent/drover.yaml")).expect_err("missing");
    assert!(matches!(err, Error::Read { .. }), "{err:?}");
}

#[test]
fn an_empty_directory_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    match drover_spec::load(dir.path()) {
        Err(Error::Invalid { diagnostics }) => {
            assert!(diagnostics[0].message.contains("no *.yaml"))
        }
        other => panic!("unexpected {other:?}"),
    }
}
