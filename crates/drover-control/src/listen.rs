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

/// The bound control socket; dropping it removes the socket file.
#[derive(Debug)]
pub struct ControlListener {
    /// The listener, on the runtime.
    pub(crate) listener: tokio::net::UnixListener,
    /// Where it is.
    pub(crate) path: PathBuf,
    dir: OwnDir,
    name: String,
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
        Ok(ControlListener {
            listener,
            path: path.to_path_buf(),
            dir,
            name,
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let _ = self.dir.remove_entry(&self.name, false);
    }
}

fn libc_econnrefused() -> i32 {
    nix::errno::Errno::ECONNREFUSED as i32
}
