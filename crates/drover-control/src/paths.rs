//! Where the control socket is: one rule for `drover run` and every client command, so that
//! they meet without configuration (`settings.control.socket` overrides it for `drover run`,
//! `--socket` for a client).

use std::path::PathBuf;

/// The socket's file name inside a runtime directory.
pub const SOCKET_NAME: &str = "drover.sock";

/// The default socket path: `$DROVER_SOCKET`, else `$RUNTIME_DIRECTORY/drover.sock` (the first
/// directory systemd lists), else `/run/drover/drover.sock` as root, else
/// `$XDG_RUNTIME_DIR/drover/drover.sock`. `None` when none applies (not root, and no
/// `XDG_RUNTIME_DIR`): the message of [`no_default`] says what to set.
pub fn default_socket() -> Option<PathBuf> {
    default_socket_in(
        std::env::var_os("DROVER_SOCKET"),
        std::env::var_os("RUNTIME_DIRECTORY"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        drover_sys::effective_uid() == 0,
    )
}

/// Why there is no default socket path.
pub fn no_default() -> &'static str {
    "no control socket path: set DROVER_SOCKET, or XDG_RUNTIME_DIR, or pass --socket"
}

fn default_socket_in(
    drover_socket: Option<std::ffi::OsString>,
    runtime_directory: Option<std::ffi::OsString>,
    xdg_runtime_dir: Option<std::ffi::OsString>,
    root: bool,
) -> Option<PathBuf> {
    let absolute =
        |value: std::ffi::OsString| Some(PathBuf::from(value)).filter(|p| p.is_absolute());
    if let Some(path) = drover_socket.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let first_runtime_dir = runtime_directory.and_then(|dirs| {
        let dirs = dirs.to_string_lossy().into_owned();
        dirs.split(':').next().map(std::ffi::OsString::from)
    });
    if let Some(dir) = first_runtime_dir.and_then(absolute) {
        return Some(dir.join(SOCKET_NAME));
    }
    if root {
        return Some(PathBuf::from("/run/drover").join(SOCKET_NAME));
    }
    xdg_runtime_dir
        .and_then(absolute)
        .map(|dir| dir.join("drover").join(SOCKET_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_found_in_the_contracts_order() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        let find =
            |a, b, c, root| default_socket_in(a, b, c, root).map(|p| p.display().to_string());
        assert_eq!(
            find(os("/x/s.sock"), os("/rd"), os("/xdg"), true).as_deref(),
            Some("/x/s.sock")
        );
        assert_eq!(
            find(None, os("/rd:/other"), os("/xdg"), true).as_deref(),
            Some("/rd/drover.sock")
        );
        assert_eq!(
            find(None, None, os("/xdg"), true).as_deref(),
            Some("/run/drover/drover.sock")
        );
        assert_eq!(
            find(None, None, os("/xdg"), false).as_deref(),
            Some("/xdg/drover/drover.sock")
        );
        // Relative directories are not used; nothing left is none.
        assert_eq!(find(None, os("rel"), os("rel"), false), None);
        assert_eq!(find(os(""), None, None, false), None);
    }
}
