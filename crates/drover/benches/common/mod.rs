//! Helpers shared by the benchmarks: reading /proc.
#![allow(dead_code, clippy::unwrap_used)]

/// The number of processes whose parent is `parent`.
pub(crate) fn children(parent: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s[s.rfind(')')? + 2..]
                        .split(' ')
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                })
                == Some(parent)
        })
        .count()
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
pub(crate) fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The real `drover` binary running `yaml` in a temp dir, once `services` children have
/// started. Metrics on, as in production, on a port of the kernel's choosing.
pub(crate) struct Binary {
    pub(crate) child: std::process::Child,
    pub(crate) pid: i32,
    dir: tempfile::TempDir,
}

impl Binary {
    pub(crate) fn start(yaml: &str, services: usize) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drover.yaml"), yaml).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["run", "--metrics-listen", "127.0.0.1:0", "drover.yaml"])
            .current_dir(dir.path())
            // Its control socket (and notify sockets) in its own directory.
            .env("RUNTIME_DIRECTORY", dir.path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while children(pid) < services {
            assert!(
                std::time::Instant::now() < deadline,
                "services did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Binary { child, pid, dir }
    }

    /// Its control socket.
    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("drover.sock")
    }

    /// SIGTERM, then waits for the exit (no reaper runs in a benchmark between its phases).
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap();
    }
}

/// Waits until `n` state changes to `ready` have been published.
pub(crate) async fn wait_ready(
    events: &mut tokio::sync::broadcast::Receiver<drover_supervisor::Event>,
    n: usize,
) {
    let mut ready = 0;
    while ready < n {
        if let drover_supervisor::Event::State(change) = events.recv().await.unwrap()
            && change.to == drover_supervisor::State::Ready
        {
            ready += 1;
        }
    }
}
