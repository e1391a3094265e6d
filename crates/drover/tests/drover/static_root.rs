//! The static binary in an empty root: a directory that holds only drover, a manifest,
//! `/etc/passwd` and `/etc/group`, `/dev/null`, and a static busybox for the services, entered
//! with `chroot`: no shared library, no NSS module, no `/etc/hosts`, no `/proc`. The binary is
//! `scripts/build-static.sh`'s (`$DROVER_STATIC_BIN`, else the static glibc build in `target/`); the
//! README's test command builds it first. Skipped, and said so, without root or the binary.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The static binary and a static busybox, or why this test cannot run (said on stderr, where
/// scripts/test.sh gathers the SKIPPED lines).
#[allow(clippy::print_stderr)]
fn static_binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    let skip = |why: String| {
        eprintln!("SKIPPED {test}: {why}");
        None
    };
    if !nix::unistd::geteuid().is_root() {
        return skip("chroot needs root".into());
    }
    let binary = std::env::var_os("DROVER_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/x86_64-unknown-linux-gnu/release/drover")
        });
    if !binary.exists() {
        return skip(format!(
            "no static binary at {} (bash scripts/build-static.sh)",
            binary.display()
        ));
    }
    if Command::new("readelf").arg("--version").output().is_err() {
        return skip("no readelf to tell a static binary (apt-get install binutils)".into());
    }
    let busybox = PathBuf::from("/bin/busybox");
    let is_static = |path: &Path| {
        Command::new("readelf")
            .arg("-lW")
            .arg(path)
            .output()
            .is_ok_and(|out| {
                out.status.success()
                    && !String::from_utf8_lossy(&out.stdout).contains("program interpreter")
            })
    };
    assert!(is_static(&binary), "{} is not static", binary.display());
    if !is_static(&busybox) {
        return skip("no static busybox at /bin/busybox (apt-get install busybox-static)".into());
    }
    Some((binary, busybox))
}

/// A root holding only what the test needs; returned as the directory a [`Drover`] runs in.
fn empty_root(binary: &Path, busybox: &Path, manifest: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let at = |p: &str| root.path().join(p);
    for dir in ["bin", "etc", "dev", "www"] {
        std::fs::create_dir(at(dir)).expect("mkdir");
    }
    std::fs::create_dir(at("tmp")).expect("mkdir tmp");
    std::fs::set_permissions(at("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::copy(binary, at("drover")).expect("copy drover");
    std::fs::copy(busybox, at("bin/busybox")).expect("copy busybox");
    std::os::unix::fs::symlink("busybox", at("bin/sh")).expect("symlink");
    std::fs::write(at("www/index.html"), "hello\n").expect("write");
    std::fs::write(
        at("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\napp:x:4321:4322:app:/:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        at("etc/group"),
        "root:x:0:\napp:x:4322:\nextra:x:4323:app\n",
    )
    .expect("group");
    let made = Command::new("mknod")
        .args(["-m", "666"])
        .arg(at("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(made.success(), "mknod /dev/null");
    std::fs::write(at("drover.yaml"), manifest).expect("manifest");
    root
}

/// `chroot ROOT ARGV` with an empty environment but `PATH`, to its end; coreutils' `timeout`
/// ends it after 20 s (SIGKILL 5 s later), so no pid of ours is ever signalled after its reaping.
fn in_root(root: &Path, argv: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["--kill-after=5", "20", "/usr/sbin/chroot"])
        .arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", "/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run timeout(1)")
}

#[test]
fn the_static_binary_checks_runs_and_execs_in_an_empty_root() {
    let Some((binary, busybox)) =
        static_binaries("the_static_binary_checks_runs_and_execs_in_an_empty_root")
    else {
        return;
    };
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    // `user: app` by name, from the root's own /etc/passwd and /etc/group (no NSS); a probe of
    // `localhost` with no /etc/hosts and no resolver module.
    let manifest = format!(
        "settings: {{ metrics: {{ listen: null }} }}
services:
  web:
    command: [/bin/busybox, httpd, -f, -p, \"127.0.0.1:{port}\", -h, /www]
    user: app
    readiness_probe: {{ http: {{ host: localhost, port: {port}, path: /index.html }}, period: 100ms }}
  who:
    command: \"/bin/busybox id -u > /tmp/who; /bin/busybox id -g >> /tmp/who; /bin/busybox id -G >> /tmp/who\"
    user: app
    restart: {{ policy: never }}
"
    );
    let root = empty_root(&binary, &busybox, &manifest);

    let check = in_root(root.path(), &["/drover", "check", "/drover.yaml"]);
    assert!(check.status.success(), "check: {check:?}");
    assert!(
        check.stdout.is_empty() && check.stderr.is_empty(),
        "{check:?}"
    );
    let bad = in_root(root.path(), &["/drover", "check", "/etc/passwd"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");

    let exec = in_root(root.path(), &["/drover", "--", "/bin/sh", "-c", "exit 5"]);
    assert_eq!(exec.status.code(), Some(5), "{exec:?}");
    let plain = in_root(
        root.path(),
        &["/drover", "/bin/sh", "-c", "echo \"$0:$1\"", "a", "b"],
    );
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "a:b\n");

    let chroot = root.path().to_string_lossy().into_owned();
    let mut drover = Drover::start_exactly(
        root,
        &[
            "/usr/sbin/chroot",
            &chroot,
            "/drover",
            "run",
            "/drover.yaml",
        ],
        None,
        &[("PATH", "/bin"), ("RUNTIME_DIRECTORY", "/tmp")],
    );
    wait_until(SECS(20), "web ready through a probe of localhost", || {
        drover
            .stderr()
            .contains("readiness probe passed (HTTP 200) service=web")
    });
    let who = drover.wait_file("tmp/who", SECS(10));
    wait_until(SECS(10), "who's three lines", || {
        std::fs::read_to_string(drover.path("tmp/who")).is_ok_and(|s| s.lines().count() == 3)
    });
    let who = std::fs::read_to_string(drover.path("tmp/who")).unwrap_or(who);
    assert_eq!(who, "4321\n4322\n4322 4323\n", "{}", drover.stderr());
    drover.signal(SIGTERM);
    assert_eq!(drover.wait(SECS(15)), 0, "{}", drover.stderr());
}
