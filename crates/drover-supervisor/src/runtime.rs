//! The runtime: performs what the state machine (`crate::core`) decides, and feeds it what
//! happens. One task owns the [`Core`]; spawns, exits, timers and group checks come back to it
//! as [`Input`]s on one channel, so the state machine sees them in the order they happened.
//!
//! **Boundary**: observers get [`Event`]s on a broadcast channel and [`ServiceSnapshot`]s from
//! [`Supervisor::snapshot`]; the supervisor never knows who they are.

use crate::core::{Action, Core, Event, Input, ServiceSnapshot};
use crate::output::{DropCounter, OutputSink, Stream};
use crate::process::{Processes, SpawnRequest};
use crate::sys;
use drover_spec::model::{Manifest, Service, ServiceOutput, Signal};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long drover's exit waits for the last service output to be written.
const OUTPUT_FLUSH_LIMIT: Duration = Duration::from_secs(2);
/// Events kept for a subscriber that falls behind before it starts missing some.
const EVENT_BUFFER: usize = 4096;
/// While a process group is being emptied, how often to look whether it is (besides every
/// reaped orphan). Only runs while some group is stopping.
const GROUP_POLL: Duration = Duration::from_millis(10);

/// A request to the running supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Drain and exit; a second one kills.
    Shutdown,
    /// SIGKILL everything and exit.
    Kill,
    /// Send this signal to every running service's process group.
    Forward(Signal),
}

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipe for a service's output.
    #[error("cannot set up the output of service `{service}`")]
    Output {
        /// The service.
        service: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `/dev/null`, for the services' stdin and discarded output.
    #[error("cannot open /dev/null")]
    DevNull(#[source] io::Error),
}

/// Handle to a running supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    control: mpsc::UnboundedSender<Control>,
    events: broadcast::Sender<Event>,
    snapshots: Arc<Mutex<Vec<ServiceSnapshot>>>,
    dropped_lines: Arc<Vec<(Arc<str>, Arc<DropCounter>)>>,
}

impl Supervisor {
    /// Starts supervising `manifest`; the task resolves to drover's exit code. Call it inside
    /// the tokio runtime that [`Processes::start`] ran in.
    pub fn start(
        manifest: Manifest,
        processes: Processes,
    ) -> Result<(Supervisor, JoinHandle<i32>), Error> {
        let Manifest {
            settings, services, ..
        } = manifest;
        let seed = random_seed();
        let core = Core::new(services.into_values(), settings.shutdown_timeout, seed);
        let width = (0..core.len())
            .map(|i| core.spec(i).name.len())
            .max()
            .unwrap_or(0);
        let mut sink = match settings.service_output {
            ServiceOutput::Prefix => Some(OutputSink::start(settings.log_format, width).map_err(
                |source| Error::Output {
                    service: String::new(),
                    source,
                },
            )?),
            _ => None,
        };
        let mut stdio = Vec::with_capacity(core.len());
        let mut dropped_lines = Vec::with_capacity(core.len());
        for unit in 0..core.len() {
            let name: Arc<str> = Arc::from(core.spec(unit).name.as_str());
            let dropped = Arc::new(DropCounter::default());
            let io = match &mut sink {
                Some(sink) => ServiceIo::piped(sink, &name, unit, &dropped).map_err(|source| {
                    Error::Output {
                        service: name.to_string(),
                        source,
                    }
                })?,
                None => ServiceIo::Direct(settings.service_output),
            };
            stdio.push(io);
            dropped_lines.push((name, dropped));
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let snapshots = Arc::new(Mutex::new(
            (0..core.len()).map(|i| core.snapshot(i)).collect(),
        ));
        let (inputs, inputs_rx) = mpsc::unbounded_channel();
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(Error::DevNull)?;
        let driver = Driver {
            core,
            processes,
            stdio,
            null: OwnedFd::from(null),
            sink,
            inputs,
            events: events.clone(),
            snapshots: snapshots.clone(),
            watched: Vec::new(),
        };
        let task = tokio::spawn(driver.run(inputs_rx, control_rx));
        Ok((
            Supervisor {
                control,
                events,
                snapshots,
                dropped_lines: Arc::new(dropped_lines),
            },
            task,
        ))
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The state of every service now.
    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Output lines dropped so far, per service, because drover's own output was too slow.
    pub fn dropped_lines(&self) -> Vec<(Arc<str>, u64)> {
        self.dropped_lines
            .iter()
            .map(|(name, counter)| (name.clone(), counter.get()))
            .collect()
    }

    /// Sends a request; ignored once the supervisor has ended.
    pub fn send(&self, control: Control) {
        let _ = self.control.send(control);
    }
}

/// Where a service's stdout and stderr go.
enum ServiceIo {
    /// `prefix`: the write ends of its two pipes, duplicated into each run.
    Piped { stdout: OwnedFd, stderr: OwnedFd },
    /// `inherit` or `discard`.
    Direct(ServiceOutput),
}

impl ServiceIo {
    fn piped(
        sink: &mut OutputSink,
        name: &Arc<str>,
        colour: usize,
        dropped: &Arc<DropCounter>,
    ) -> io::Result<ServiceIo> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC;
        let (out_read, stdout) = nix::unistd::pipe2(flags)?;
        let (err_read, stderr) = nix::unistd::pipe2(flags)?;
        sink.read_pipe(
            name.clone(),
            colour,
            Stream::Stdout,
            out_read,
            dropped.clone(),
        )?;
        sink.read_pipe(
            name.clone(),
            colour,
            Stream::Stderr,
            err_read,
            dropped.clone(),
        )?;
        Ok(ServiceIo::Piped { stdout, stderr })
    }

    /// Sets the stdio of one run; `null` is drover's one `/dev/null`, duplicated for each use.
    fn apply(&self, command: &mut Command, null: &OwnedFd) -> io::Result<()> {
        command.stdin(null.try_clone()?);
        match self {
            ServiceIo::Piped { stdout, stderr } => {
                command.stdout(stdout.try_clone()?);
                command.stderr(stderr.try_clone()?);
            }
            ServiceIo::Direct(ServiceOutput::Discard) => {
                command.stdout(null.try_clone()?);
                command.stderr(null.try_clone()?);
            }
            ServiceIo::Direct(_) => {
                command.stdout(Stdio::inherit());
                command.stderr(Stdio::inherit());
            }
        }
        Ok(())
    }
}

struct Driver {
    core: Core,
    processes: Processes,
    stdio: Vec<ServiceIo>,
    /// `/dev/null`, opened once.
    null: OwnedFd,
    sink: Option<OutputSink>,
    inputs: mpsc::UnboundedSender<Input>,
    events: broadcast::Sender<Event>,
    snapshots: Arc<Mutex<Vec<ServiceSnapshot>>>,
    /// Process groups to report as `GroupGone` once empty.
    watched: Vec<(usize, Pid)>,
}

impl Driver {
    async fn run(
        mut self,
        inputs: mpsc::UnboundedReceiver<Input>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> i32 {
        let code = self.supervise(inputs, control).await;
        // Every service has ended: close our write ends so that the readers see the end of
        // each pipe, and let the last lines out.
        self.stdio.clear();
        if let Some(sink) = self.sink.take() {
            sink.finish(OUTPUT_FLUSH_LIMIT).await;
        }
        code
    }

    async fn supervise(
        &mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> i32 {
        let actions = self.core.start(Instant::now());
        if let Some(code) = self.perform(actions) {
            return code;
        }
        let mut control_open = true;
        // One interval for the whole run: a sleep rebuilt on every turn would be starved by
        // inputs that arrive more often than the poll period.
        let mut group_poll = tokio::time::interval(GROUP_POLL);
        group_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let watching = !self.watched.is_empty();
            let input = tokio::select! {
                biased;
                Some(input) = inputs.recv() => input,
                request = control.recv(), if control_open => match request {
                    Some(Control::Shutdown) => Input::Shutdown,
                    Some(Control::Kill) => Input::Kill,
                    Some(Control::Forward(signal)) => {
                        self.forward(signal);
                        continue;
                    }
                    None => {
                        control_open = false;
                        continue;
                    }
                },
                () = self.processes.orphan_reaped(), if watching => {
                    if let Some(code) = self.check_groups() { return code; }
                    continue;
                }
                _ = group_poll.tick(), if watching => {
                    if let Some(code) = self.check_groups() { return code; }
                    continue;
                }
            };
            let actions = self.core.handle(input, Instant::now());
            if let Some(code) = self.perform(actions) {
                return code;
            }
        }
    }

    fn forward(&self, signal: Signal) {
        for pgid in self.core.live_groups() {
            if let Err(err) = sys::signal_group(pgid, Some(signal)) {
                tracing::warn!(pgid = pgid.as_raw(), %signal, error = %err, "cannot forward a signal");
            }
        }
    }

    fn check_groups(&mut self) -> Option<i32> {
        let mut gone = Vec::new();
        self.watched.retain(|&(unit, pgid)| {
            let alive = sys::group_alive(pgid);
            if !alive {
                gone.push(unit);
            }
            alive
        });
        for unit in gone {
            let actions = self.core.handle(Input::GroupGone { unit }, Instant::now());
            if let Some(code) = self.perform(actions) {
                return Some(code);
            }
        }
        None
    }

    /// Performs `actions`; `Some(code)` when the state machine says everything is over.
    fn perform(&mut self, actions: Vec<Action>) -> Option<i32> {
        let mut exit = None;
        let mut watch_added = false;
        for action in actions {
            match action {
                Action::Spawn(unit) => self.spawn(unit),
                Action::SignalGroup { unit, pgid, signal } => {
                    if let Err(err) = sys::signal_group(pgid, Some(signal)) {
                        tracing::warn!(service = %self.core.spec(unit).name, %signal, error = %err, "cannot signal a process group");
                    }
                }
                Action::WatchGroup { unit, pgid } => {
                    if !self.watched.contains(&(unit, pgid)) {
                        self.watched.push((unit, pgid));
                        watch_added = true;
                    }
                }
                Action::SetTimer { unit, token, after } if after.is_zero() => {
                    // tokio rounds a deadline up to its next millisecond tick: a restart with
                    // `backoff.initial: 0s` must not wait for it.
                    let _ = self.inputs.send(Input::Timer { unit, token });
                }
                Action::SetTimer { unit, token, after } => {
                    let inputs = self.inputs.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = inputs.send(Input::Timer { unit, token });
                    });
                }
                Action::SetDrainDeadline(after) => self.send_later(after, Input::DrainDeadline),
                Action::SetKillDeadline(after) => self.send_later(after, Input::KillDeadline),
                Action::Publish(unit, event) => self.publish(unit, event),
                Action::Exit(code) => exit = Some(code),
            }
        }
        if exit.is_some() {
            return exit;
        }
        if watch_added {
            // The group may be empty already; a group that empties later is seen by the poll.
            return self.check_groups();
        }
        None
    }

    fn send_later(&self, after: Duration, input: Input) {
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inputs.send(input);
        });
    }

    fn publish(&mut self, unit: usize, event: Event) {
        let snapshot = self.core.snapshot(unit);
        if let Some(slot) = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(unit)
        {
            *slot = snapshot;
        }
        tracing::info!(
            service = %event.service,
            from = %event.from,
            to = %event.to,
            pid = event.pid,
            "{}", event.reason
        );
        let _ = self.events.send(event);
    }

    fn spawn(&mut self, unit: usize) {
        let spec = self.core.spec(unit).clone();
        let inputs = self.inputs.clone();
        let request = match self.request_for(unit, &spec) {
            Ok(request) => request,
            Err(err) => {
                let _ = inputs.send(Input::SpawnFailed {
                    unit,
                    message: err.to_string(),
                    code: 1,
                });
                return;
            }
        };
        self.processes.spawn_then(
            request,
            Box::new(move |result| {
                let input = match result {
                    Ok(pid) => Input::Spawned { unit, pid },
                    Err(err) => Input::SpawnFailed {
                        unit,
                        code: err.exit_code(),
                        message: err.to_string(),
                    },
                };
                let _ = inputs.send(input);
            }),
        );
    }

    fn request_for(&self, unit: usize, spec: &Service) -> io::Result<SpawnRequest> {
        let argv = spec.command.argv();
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::other("empty command"))?;
        let environment = spec.extra_environment();
        let path = environment
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| OsString::from(value))
            .or_else(|| std::env::var_os("PATH"));
        let mut command = match find_program(program, path.as_deref()) {
            Some(found) => {
                let mut command = Command::new(found);
                command.arg0(program);
                command
            }
            None => Command::new(program),
        };
        command.args(args).envs(environment);
        if let Some(dir) = &spec.working_dir {
            command.current_dir(dir);
        }
        self.stdio[unit].apply(&mut command, &self.null)?;
        let inputs = self.inputs.clone();
        Ok(SpawnRequest {
            command,
            new_session: true,
            foreground: false,
            inherit_signals: None,
            user: spec.user.clone(),
            waiter: Box::new(move |pid, status| {
                let group_alive = sys::group_alive(pid);
                let _ = inputs.send(Input::Exited {
                    unit,
                    pid,
                    status,
                    group_alive,
                });
            }),
        })
    }
}

/// Looks `program` up on `path` in drover, as execvp(3) would in the child: a `stat` per entry
/// here is cheaper than a failed `execve` per entry there (each copies the whole argument list
/// and environment into the kernel), and the child waited on is then one `execve` long.
/// `None` leaves the search to the child: a program named with a `/`, a relative `PATH` entry
/// (it would depend on `working_dir`), or nothing executable found (the child reports it).
fn find_program(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        return None;
    }
    for dir in std::env::split_paths(path?) {
        if !dir.is_absolute() {
            return None;
        }
        let candidate = dir.join(program);
        if let Ok(metadata) = std::fs::metadata(&candidate) {
            if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 {
                return Some(candidate);
            }
        }
    }
    None
}

/// A seed for the backoff jitter; it needs to differ between runs, not to be secret.
fn random_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::find_program;
    use std::ffi::OsStr;
    use std::path::PathBuf;

    #[test]
    fn find_program_searches_path_in_order_and_skips_what_cannot_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        for (parent, mode) in [(&first, 0o644), (&second, 0o755)] {
            std::fs::create_dir(parent).expect("mkdir");
            let tool = parent.join("tool");
            std::fs::write(&tool, "#!/bin/sh\n").expect("write");
            let mut permissions = std::fs::metadata(&tool).expect("stat").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, mode);
            std::fs::set_permissions(&tool, permissions).expect("chmod");
        }
        let path = std::env::join_paths([&first, &second]).expect("join");
        // first/tool is not executable: skipped, as execvp skips it.
        assert_eq!(find_program("tool", Some(&path)), Some(second.join("tool")));
        assert_eq!(find_program("missing", Some(&path)), None);
        // A name with a slash is never searched; a relative entry leaves the search to exec.
        assert_eq!(find_program("./tool", Some(&path)), None);
        assert_eq!(
            find_program("tool", Some(OsStr::new("relative:/bin"))),
            None
        );
        assert_eq!(find_program("tool", None), None);
        assert_eq!(
            find_program("sh", Some(OsStr::new("/nonexistent:/bin"))),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
