//! The sd_notify server for one service: a datagram socket that drover binds and names in the
//! service's `NOTIFY_SOCKET`. Each datagram is newline-separated `KEY=VALUE` pairs (`READY=1`,
//! `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`); the kernel attaches the sender's pid
//! (`SO_PASSCRED`), so messages from outside the service's process group can be ignored.

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, UnixCredentials, sockopt};
use nix::unistd::Pid;
use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// The largest datagram read; longer ones are cut (systemd's own limit is larger, but no state
/// drover acts on needs more).
const DATAGRAM_LIMIT: usize = 8 * 1024;

/// One datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyMessage {
    /// The sender, from its credentials; `None` if the kernel attached none.
    pub pid: Option<i32>,
    /// The `KEY=VALUE` pairs, in order.
    pub fields: Vec<(String, String)>,
}

impl NotifyMessage {
    /// Parses a datagram's text: one `KEY=VALUE` per line; other lines are skipped.
    pub fn parse(pid: Option<i32>, text: &str) -> NotifyMessage {
        let fields = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        NotifyMessage { pid, fields }
    }

    /// The value of `key`, the last one if repeated.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key=1` is in the message.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("1")
    }
}

/// A bound notify socket; the file is removed when it is dropped.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a datagram socket at `path`, which must not exist, and asks for the senders'
    /// credentials. Who may send to it is the caller's to decide, with the directory it is
    /// in: the file gets the mode the umask gives (writable by its owner only).
    pub fn bind(path: &Path) -> io::Result<NotifySocket> {
        let socket = UnixDatagram::bind(path)?;
        socket::setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        Ok(NotifySocket {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// Where it is bound: the value of `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<NotifyMessage> {
        let mut buffer = vec![0u8; DATAGRAM_LIMIT];
        loop {
            self.socket.readable().await?;
            let received = self.socket.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(&mut buffer)];
                let mut space = nix::cmsg_space!(UnixCredentials);
                let message = socket::recvmsg::<()>(
                    self.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let mut pid = None;
                for cmsg in message.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmCredentials(credentials) = cmsg {
                        pid = Some(credentials.pid());
                    }
                }
                Ok((message.bytes, pid))
            });
            match received {
                Ok((length, pid)) => {
                    let text = String::from_utf8_lossy(&buffer[..length]);
                    return Ok(NotifyMessage::parse(pid, &text));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is in process group `pgid` (a service's tree, unless it moved itself
/// out). A sender that has already exited cannot be checked, and is not trusted.
pub fn sender_in_group(pid: i32, pgid: i32) -> bool {
    nix::unistd::getpgid(Some(Pid::from_raw(pid))).is_ok_and(|group| group.as_raw() == pgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_into_fields() {
        let m = NotifyMessage::parse(Some(7), "READY=1\nSTATUS=warming up: 3/10\ngarbage\n");
        assert!(m.flag("READY"));
        assert!(!m.flag("WATCHDOG"));
        assert_eq!(m.get("STATUS"), Some("warming up: 3/10"));
        assert_eq!(m.pid, Some(7));
    }

    #[tokio::test]
    async fn a_datagram_arrives_with_the_senders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let socket = NotifySocket::bind(&path).expect("bind");
        let sender = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        sender.send_to(b"READY=1\nSTATUS=up", &path).expect("send");
        let message = socket.recv().await.expect("recv");
        assert_eq!(message.pid, Some(std::process::id() as i32));
        assert!(message.flag("READY"));
        assert!(sender_in_group(
            std::process::id() as i32,
            nix::unistd::getpgrp().as_raw()
        ));
        drop(socket);
        assert!(!path.exists(), "the socket file is removed");
    }
}
