//! Binding the control socket: its directory made (or adopted) safely, a stale socket of a
//! dead drover replaced, a live one never taken over, and the socket's mode and group set
//! right after the bind, inside a directory nobody else can enter or change.

use crate::Error;
use drover_sys::OwnDir;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection to an existing socket may take to tell a live drover from a stale
/// file (a live one accepts at once; a full backlog still counts as live).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The bound control socket; dropping it removes the socket file (if it is still the one
/// bound here) and releases the path's lock.
#[derive(Debug)]
pub struct ControlListener {
    /// The listener, on the runtime.
    pub(crate) listener: tokio::net::UnixListener,
    /// Where it is.
    pub(crate) path: PathBuf,
    dir: OwnDir,
    name: String,
    /// The socket file bound (device, inode): only that one is removed at the end.
    bound: (u64, u64),
    /// `NAME.lock` in the directory, locked for drover's life: one drover per path, even
    /// when two start at once or the socket file was deleted under a running one.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl ControlListener {
    /// Binds the control socket at `path` (absolute). With `group` (a gid), the socket is mode
    /// 0660 and a directory made here 0750, both of that group; otherwise 0600 and 0700. Call
    /// it inside the tokio runtime.
    pub async fn bind(path: &Path, group: Option<u32>) -> Result<ControlListener, Error> {
        let failed = |source: std::io::Error| Error::Bind {
            path: path.to_path_buf(),
            source,
        };
        let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(failed(std::io::Error::other("not a file path")));
        };
        let name = name.to_string_lossy().into_owned();
        let dir_mode = if group.is_some() { 0o750 } else { 0o700 };
        let (dir, _made) = drover_sys::socket_dir(dir_path, dir_mode, group).map_err(failed)?;
        let lock = lock_path(&dir, &name).map_err(|err| match err {
            LockError::Held => Error::InUse(path.to_path_buf()),
            LockError::Io(source) => failed(source),
        })?;
        match dir.entry_is_socket(&name).map_err(failed)? {
            None => {}
            Some(false) => {
                return Err(failed(std::io::Error::other(
                    "a file that is not a socket is in the way; remove it or choose another path",
                )));
            }
            Some(true) => {
                let probe =
                    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path))
                        .await;
                match probe {
                    Ok(Err(err)) if err.raw_os_error() == Some(libc_econnrefused()) => {
                        // Nobody listens: a socket left by a drover that died.
                        tracing::info!(path = %path.display(), "replacing a stale control socket");
                        dir.remove_entry(&name, false).map_err(failed)?;
                    }
                    Ok(Err(err)) => return Err(failed(err)),
                    Ok(Ok(_)) | Err(_) => return Err(Error::InUse(path.to_path_buf())),
                }
            }
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(failed)?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        if let Some(gid) = group {
            dir.chgrp_entry(&name, gid).map_err(failed)?;
        }
        dir.chmod_entry(&name, mode).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(failed)?;
        let bound = dir.entry_identity(&name).map_err(failed)?;
        Ok(ControlListener {
            listener,
            path: path.to_path_buf(),
            dir,
            name,
            bound,
            _lock: lock,
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        // Never another drover's: only the file this one bound.
        if self.dir.entry_identity(&self.name).ok() == Some(self.bound) {
            let _ = self.dir.remove_entry(&self.name, false);
        }
    }
}

enum LockError {
    /// Another process holds it.
    Held,
    Io(std::io::Error),
}

/// Locks `NAME.lock` in `dir` (made 0600 if absent, never through a symlink), without waiting.
fn lock_path(dir: &OwnDir, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>, LockError> {
    use nix::fcntl::{FlockArg, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let flags = OFlag::O_CREAT | OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(
        dir.fd.as_fd(),
        format!("{name}.lock").as_str(),
        flags,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|err| LockError::Io(err.into()))?;
    match nix::fcntl::Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held),
        Err((_, err)) => Err(LockError::Io(err.into())),
    }
}

fn libc_econnrefused() -> i32 {
    nix::errno::Errno::ECONNREFUSED as i32
}
