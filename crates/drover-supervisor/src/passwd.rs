//! `user:` names and ids, read from `/etc/passwd` and `/etc/group` by drover itself: no NSS.
//! A static binary cannot load NSS modules, an NSS lookup may wait on a network (LDAP, sssd),
//! and the files are bounded input like any other. Users known only to such services are not
//! found; in a container they do not exist anyway.

use std::io;
use std::path::{Path, PathBuf};

/// The largest account file read.
const MAX_ACCOUNT_FILE: u64 = 16 * 1024 * 1024;

/// One `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: PathBuf,
    pub(crate) shell: PathBuf,
}

/// Where the account files are (`/etc`, or a test's directory).
pub(crate) struct Accounts {
    passwd: PathBuf,
    group: PathBuf,
}

impl Accounts {
    /// The system's: `/etc/passwd` and `/etc/group`.
    pub(crate) fn system() -> Accounts {
        Accounts::in_dir(Path::new("/etc"))
    }

    /// `dir/passwd` and `dir/group`.
    pub(crate) fn in_dir(dir: &Path) -> Accounts {
        Accounts {
            passwd: dir.join("passwd"),
            group: dir.join("group"),
        }
    }

    /// The first entry named `name`.
    pub(crate) fn by_name(&self, name: &str) -> io::Result<Option<PasswdEntry>> {
        Ok(read_lines(&self.passwd)?
            .iter()
            .filter_map(|line| parse_passwd(line))
            .find(|entry| entry.name == name))
    }

    /// The first entry with uid `uid`.
    pub(crate) fn by_uid(&self, uid: u32) -> io::Result<Option<PasswdEntry>> {
        Ok(read_lines(&self.passwd)?
            .iter()
            .filter_map(|line| parse_passwd(line))
            .find(|entry| entry.uid == uid))
    }

    /// The gid of group `name`, from the group file.
    pub(crate) fn group_by_name(&self, name: &str) -> io::Result<Option<u32>> {
        let lines = match read_lines(&self.group) {
            Ok(lines) => lines,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        Ok(lines.iter().find_map(|line| {
            let mut fields = line.split(':');
            let (Some(group), Some(_password), Some(gid)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return None;
            };
            (group == name).then(|| gid.parse().ok()).flatten()
        }))
    }

    /// `primary` and every group that lists `user` as a member, as getgrouplist(3) does. A
    /// missing `/etc/group` means no supplementary groups.
    pub(crate) fn groups_of(&self, user: &str, primary: u32) -> io::Result<Vec<u32>> {
        let lines = match read_lines(&self.group) {
            Ok(lines) => lines,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        let mut groups = vec![primary];
        for line in &lines {
            let mut fields = line.split(':');
            let (Some(_name), Some(_password), Some(gid), Some(members)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(gid) = gid.parse::<u32>() else {
                continue;
            };
            if members.split(',').any(|m| m.trim() == user) && !groups.contains(&gid) {
                groups.push(gid);
            }
        }
        Ok(groups)
    }
}

/// The lines of an account file: regular, bounded, read without blocking; comments and NIS
/// `+`/`-` lines skipped.
fn read_lines(path: &Path) -> io::Result<Vec<String>> {
    let bytes = drover_spec::read_regular_file(path, MAX_ACCOUNT_FILE)?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '+', '-']))
        .map(str::to_string)
        .collect())
}

/// `name:password:uid:gid:gecos:home:shell`.
fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let fields: Vec<&str> = line.split(':').collect();
    let [name, _password, uid, gid, _gecos, home, shell] = fields.as_slice() else {
        return None;
    };
    Some(PasswdEntry {
        name: (*name).to_string(),
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
        home: PathBuf::from(home),
        shell: PathBuf::from(shell),
    })
}

/// The gid of a group given by name or number (`settings.control.group`), read from
/// `/etc/group` by drover itself; `None` for a name it does not list.
pub fn group_id(group: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = group.parse() {
        return Ok(Some(gid));
    }
    Accounts::system().group_by_name(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(passwd: &str, group: &str) -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("passwd"), passwd).expect("write");
        std::fs::write(dir.path().join("group"), group).expect("write");
        let accounts = Accounts::in_dir(dir.path());
        (dir, accounts)
    }

    #[test]
    fn users_and_groups_are_read_from_the_files() {
        let (_dir, accounts) = accounts(
            "# comment\nroot:x:0:0:root:/root:/bin/bash\n+nis\nbroken:line\nweb:x:1000:1000:Web,,,:/srv/web:/bin/sh\n",
            "root:x:0:\nweb:x:1000:\nwww-data:x:33:web,other\nstaff:x:50: web \nbad:x:nan:web\n",
        );
        let web = accounts.by_name("web").expect("read").expect("web");
        assert_eq!((web.uid, web.gid), (1000, 1000));
        assert_eq!(web.home, PathBuf::from("/srv/web"));
        assert_eq!(web.shell, PathBuf::from("/bin/sh"));
        assert_eq!(
            accounts.by_uid(0).expect("read").expect("root").name,
            "root"
        );
        assert_eq!(accounts.by_name("nobody").expect("read"), None);
        assert_eq!(accounts.by_name("broken").expect("read"), None);
        assert_eq!(
            accounts.groups_of("web", 1000).expect("read"),
            [1000, 33, 50]
        );
    }

    #[test]
    fn a_fifo_as_passwd_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        nix::unistd::mkfifo(
            &dir.path().join("passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        let err = Accounts::in_dir(dir.path())
            .by_name("root")
            .expect_err("not a regular file");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
}
