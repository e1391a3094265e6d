//! Reading manifest files with bounds: a size cap (so `/dev/zero` or a 100 MB file is refused
//! after reading at most the cap plus one byte) and a UTF-8 check that says where the bad byte is.

use crate::yaml::Pos;
use std::io::{ErrorKind, Read};
use std::path::Path;

/// A manifest file may be at most this large: 1000 services take about 300 KiB.
pub const MAX_MANIFEST_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
pub(crate) enum ReadError {
    /// The OS refused.
    Io(std::io::Error),
    /// Too large, or not UTF-8: where, and why.
    Invalid(Pos, String),
}

pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<String, ReadError> {
    match read_regular_file(path, limit) {
        Ok(bytes) => into_text(bytes),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::InvalidInput | ErrorKind::FileTooLarge
            ) =>
        {
            Err(ReadError::Invalid(Pos::START, err.to_string()))
        }
        Err(err) => Err(ReadError::Io(err)),
    }
}

/// The bytes of the regular file at `path` (symlinks followed), at most `limit` of them. Never
/// blocks on what is not a file: it is opened with `O_NONBLOCK` (a FIFO's open would wait for a
/// writer) and refused unless `fstat` says it is a regular file (a FIFO's read would wait, and
/// `/dev/zero` never ends). `InvalidInput` for what is not a regular file, `FileTooLarge` for
/// one over `limit`; reads at most `limit + 1` bytes either way.
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || {
        std::io::Error::new(
            ErrorKind::InvalidInput,
            "is not a regular file (a FIFO, a device or a socket); refusing to read it",
        )
    };
    // Checked before the open too: opening a device has effects of its own (a watchdog arms,
    // a tape rewinds), even if it is then refused.
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    // And after it, on what was opened: the path may have been replaced in between. No
    // terminal becomes drover's controlling one, no FIFO open waits for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "is larger than {} MiB; refusing to read it",
                limit / (1024 * 1024)
            ),
        ));
    }
    Ok(bytes)
}

/// UTF-8 text, or where the first invalid byte is.
pub(crate) fn into_text(bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let bad = err.as_bytes().get(valid.len()).copied().unwrap_or(0);
        // `valid` is valid UTF-8 by construction, so this does not lose anything.
        let before = String::from_utf8_lossy(valid);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let pos = Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        };
        ReadError::Invalid(
            pos,
            format!("is not valid UTF-8 (byte 0x{bad:02x}); save it as UTF-8"),
        )
    })
}
