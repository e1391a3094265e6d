//! The runtime: performs what the state machine (`crate::core`) decides, and feeds it what
//! happens. One task owns the [`Core`]; spawns, exits, timers and group checks come back to it
//! as [`Input`]s on one channel, so the state machine sees them in the order they happened.
//!
//! **Boundary**: observers get [`Event`]s on a broadcast channel and [`ServiceSnapshot`]s from
//! [`Supervisor::snapshot`]; the supervisor never knows who they are.

use crate::core::{
    Action, Core, Event, HandOp, HookKind, Input, OpAnswer, ProbeEvent, ServiceId, ServiceSnapshot,
    State, StateChange,
};
use crate::hooks::{HookList, PreparedHook};
use crate::output::{DropCounter, OutputSink, Stream};
use crate::probes::{ExecProbe, NotifyUnit};
use crate::process::{Processes, SpawnRequest};
use crate::recent::{OutputLine, Recent, RecentHub};
use crate::sys;
use drover_probe::{
    CheckOutcome, CheckResult, Checker, NotifyMessage, ProbeKind, prober, sender_in_group,
};
use drover_spec::diff::Plan;
use drover_spec::model::{Manifest, Probe, ProbeAction, Service, ServiceOutput, Signal};
use indexmap::IndexMap;
use nix::unistd::Pid;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long drover's exit waits for the last service output to be written.
const OUTPUT_FLUSH_LIMIT: Duration = Duration::from_secs(2);
/// Events kept for a subscriber that falls behind before it starts missing some.
const EVENT_BUFFER: usize = 4096;
/// While a process group is being emptied, how often to look whether it is (besides every
/// reaped orphan). Only runs while some group is stopping.
const GROUP_POLL: Duration = Duration::from_millis(10);
/// sd_notify messages read from the services' sockets and not yet handled; a listener whose
/// message finds the queue full waits.
const NOTICES_QUEUED: usize = 256;

/// A request to the running supervisor.
#[derive(Debug)]
pub enum Control {
    /// Drain and exit; a second one kills.
    Shutdown,
    /// SIGKILL everything and exit.
    Kill,
    /// Send this signal to every running service's process group.
    Forward(Signal),
    /// Apply a new manifest (checked): only the difference (`drover_spec::diff`). Its plan is
    /// published as [`Event::Reload`]; ignored while draining. `applied`, if given, is told
    /// which.
    Reload {
        /// The new manifest.
        manifest: Box<Manifest>,
        /// Answered with the plan once applied, `None` when ignored.
        applied: Option<tokio::sync::oneshot::Sender<Option<Arc<Plan>>>>,
    },
    /// Answered as soon as the loop reads it: proof that the loop still turns
    /// ([`Supervisor::responsive`]).
    Ping(tokio::sync::oneshot::Sender<()>),
    /// Start, stop or restart service `service` by hand. `answers` gets `Accepted` while the
    /// goal is ahead, then `Done` or `Failed` (an unknown name fails at once).
    Operate {
        /// The service's name.
        service: String,
        /// What to do.
        op: HandOp,
        /// Where the answers go.
        answers: mpsc::UnboundedSender<OpAnswer>,
    },
    /// Send `signal` to service `service`'s main process, or with `group` to its process
    /// group; answered with what was signalled, or why nothing was.
    Signal {
        /// The service's name.
        service: String,
        /// The signal's number.
        signal: i32,
        /// The whole process group rather than the main process.
        group: bool,
        /// The answer.
        answer: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
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
    /// The sd_notify socket of a service with a `notify` probe.
    #[error("cannot create the notify socket of service `{service}`")]
    Notify {
        /// The service.
        service: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Handle to a running supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    control: mpsc::UnboundedSender<Control>,
    /// Whether it still keeps services alive (not draining): reloads apply only then.
    supervising: Arc<AtomicBool>,
    events: broadcast::Sender<Event>,
    published: Published,
    /// Every service's recent output, where drover reads it (`prefix` mode).
    recent: Option<RecentHub>,
}

/// What observers read of each service, by id, in the order services came (the manifest's,
/// then each reload's additions); a removed service leaves once it has stopped.
type Published = Arc<Mutex<IndexMap<ServiceId, Observed>>>;

/// What observers read of one service.
struct Observed {
    /// Its latest snapshot.
    snapshot: ServiceSnapshot,
    /// Its output lines dropped so far.
    dropped: Arc<DropCounter>,
    /// Its recent output lines (`prefix` mode only).
    recent: Option<Arc<Recent>>,
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
        let core = Core::new(services.into_values(), shutdown_of(&settings), seed);
        let width = core
            .ids()
            .into_iter()
            .filter_map(|id| Some(core.spec(id)?.name.len()))
            .max()
            .unwrap_or(0);
        let sink = match settings.service_output {
            ServiceOutput::Prefix => Some(
                OutputSink::start(settings.log_format, width, settings.log_timestamps).map_err(
                    |source| Error::Output {
                        service: String::new(),
                        source,
                    },
                )?,
            ),
            _ => None,
        };
        let core_len = core.len();
        let recent = (settings.service_output == ServiceOutput::Prefix)
            .then(|| RecentHub::new(settings.control.log_lines));
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let published = Arc::new(Mutex::new(IndexMap::new()));
        let (inputs, inputs_rx) = mpsc::unbounded_channel();
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(Error::DevNull)?;
        let (notices, notices_rx) = mpsc::channel(NOTICES_QUEUED);
        let supervising = Arc::new(AtomicBool::new(true));
        let mut driver = Driver {
            core,
            supervising: supervising.clone(),
            processes,
            service_output: settings.service_output,
            services: HashMap::with_capacity(core_len),
            notify_units: Vec::new(),
            notify_dir: None,
            notify_sockets: 0,
            notify_warnings: crate::ratelimit::LogRateLimit::new(5, Duration::from_secs(10)),
            notices,
            null: OwnedFd::from(null),
            sink,
            inputs,
            events: events.clone(),
            published: published.clone(),
            recent: recent.clone(),
            watched: Vec::new(),
            cgroups: None,
            guard: None,
            operations: HashMap::new(),
            next_ticket: 0,
        };
        driver.start_containment();
        for id in driver.core.ids() {
            driver.add_unit(id)?;
        }
        let task = tokio::spawn(driver.run(inputs_rx, control_rx, notices_rx));
        Ok((
            Supervisor {
                control,
                supervising,
                events,
                published,
                recent,
            },
            task,
        ))
    }

    /// Whether the supervisor's loop still runs (it has not exited).
    pub fn is_running(&self) -> bool {
        !self.control.is_closed()
    }

    /// Whether it still keeps services alive, so that a [`Control::Reload`] would apply: not
    /// draining (after a stop signal or an `on_exit: shutdown`), not ended.
    pub fn is_supervising(&self) -> bool {
        self.supervising.load(Ordering::Relaxed) && self.is_running()
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The state of every service now.
    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        lock(&self.published)
            .values()
            .map(|observed| observed.snapshot.clone())
            .collect()
    }

    /// Output lines dropped so far, per service, because drover's own output was too slow.
    pub fn dropped_lines(&self) -> Vec<(Arc<str>, u64)> {
        lock(&self.published)
            .values()
            .map(|observed| (observed.snapshot.name.clone(), observed.dropped.get()))
            .collect()
    }

    /// The last `n` output lines of each of `services` (every service when empty), and at
    /// most `max_bytes` of text in all (the newest win), merged in the order they were
    /// printed; `None` when drover does not read the services' output
    /// (`settings.log.service_output` is not `prefix`).
    pub fn recent_output(
        &self,
        services: &[String],
        n: usize,
        max_bytes: usize,
    ) -> Option<Vec<OutputLine>> {
        self.recent.as_ref()?;
        let published = lock(&self.published);
        let rings: Vec<&Recent> = published
            .values()
            .filter(|o| services.is_empty() || services.iter().any(|s| **s == *o.snapshot.name))
            .filter_map(|o| o.recent.as_deref())
            .collect();
        Some(crate::recent::newest(&rings, n, max_bytes))
    }

    /// Every output line printed from now on, of every service; `None` as for
    /// [`Supervisor::recent_output`].
    pub fn follow_output(&self) -> Option<broadcast::Receiver<OutputLine>> {
        Some(self.recent.as_ref()?.follow())
    }

    /// Whether the supervisor's loop answers a [`Control::Ping`] within `within`: false when it
    /// has ended or is wedged (a service manager's watchdog is fed only while this holds).
    pub async fn responsive(&self, within: std::time::Duration) -> bool {
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self.control.send(Control::Ping(answer)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, answered).await, Ok(Ok(())))
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
    /// Where output goes without pipes: `prefix` falls back to discarding.
    fn direct(output: ServiceOutput) -> ServiceIo {
        ServiceIo::Direct(match output {
            ServiceOutput::Prefix => ServiceOutput::Discard,
            other => other,
        })
    }

    fn piped(
        sink: &mut OutputSink,
        name: &Arc<str>,
        colour: usize,
        dropped: &Arc<DropCounter>,
        recent: &Arc<Recent>,
    ) -> io::Result<ServiceIo> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC;
        let (out_read, stdout) = nix::unistd::pipe2(flags)?;
        let (err_read, stderr) = nix::unistd::pipe2(flags)?;
        for (stream, read_end) in [(Stream::Stdout, out_read), (Stream::Stderr, err_read)] {
            sink.read_pipe(
                name.clone(),
                colour,
                stream,
                read_end,
                dropped.clone(),
                recent.clone(),
            )?;
        }
        Ok(ServiceIo::Piped { stdout, stderr })
    }

    /// The descriptors of one run's 0, 1 and 2 (`None`: drover's own), as [`ServiceIo::apply`]
    /// sets them.
    fn descriptors(&self, null: &OwnedFd) -> io::Result<[Option<OwnedFd>; 3]> {
        let stdin = Some(null.try_clone()?);
        Ok(match self {
            ServiceIo::Piped { stdout, stderr } => {
                [stdin, Some(stdout.try_clone()?), Some(stderr.try_clone()?)]
            }
            ServiceIo::Direct(ServiceOutput::Discard) => {
                [stdin, Some(null.try_clone()?), Some(null.try_clone()?)]
            }
            ServiceIo::Direct(_) => [stdin, None, None],
        })
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

/// What the runtime holds for one service (the core holds its state): created with the
/// service, dropped when the core forgets it.
struct ServiceResources {
    /// Where its stdout and stderr go.
    io: ServiceIo,
    /// Its sd_notify socket, if it has a `notify` readiness probe.
    notify: Option<NotifyUnit>,
    /// Its running probe tasks.
    probes: Vec<tokio::task::AbortHandle>,
    /// Its cgroup, if there is a subtree.
    cgroup: Option<Arc<crate::cgroup::ServiceCgroup>>,
    /// Cancels its hooks still running, when dropped.
    hooks: Option<oneshot::Sender<()>>,
    /// Where each kind of its hooks writes (`web/pre_stop | ...`), made at its first use.
    hook_io: Vec<(HookKind, Arc<ServiceIo>)>,
}

impl ServiceResources {
    fn stop_probes(&mut self) {
        for task in self.probes.drain(..) {
            task.abort();
        }
        if let Some(notify) = self.notify.as_mut() {
            notify.accepting = None;
            notify.deadline = None;
        }
    }
}

struct Driver {
    core: Core,
    supervising: Arc<AtomicBool>,
    processes: Processes,
    /// Where services' output goes (fixed for drover's life).
    service_output: ServiceOutput,
    /// Every service's recent output (`prefix` mode).
    recent: Option<RecentHub>,
    /// What each service of the core holds here, by the core's id.
    services: HashMap<ServiceId, ServiceResources>,
    /// `/dev/null`, opened once.
    null: OwnedFd,
    /// The services that have a notify socket (usually few; scanned on every turn).
    notify_units: Vec<ServiceId>,
    /// Where the notify sockets are, removed at exit.
    notify_dir: Option<crate::sys::OwnDir>,
    /// Notify sockets made so far (a replaced one gets a new name).
    notify_sockets: u64,
    /// Bounds the warnings about messages from outside a service (anybody may send them).
    notify_warnings: crate::ratelimit::LogRateLimit,
    /// Where notify sockets send what they receive.
    notices: mpsc::Sender<(ServiceId, NotifyMessage)>,
    sink: Option<OutputSink>,
    inputs: mpsc::UnboundedSender<Input>,
    events: broadcast::Sender<Event>,
    published: Published,
    /// Process groups to report as `GroupGone` once empty.
    watched: Vec<(ServiceId, Pid)>,
    /// drover's cgroup subtree, where it could make one.
    cgroups: Option<crate::cgroup::Cgroups>,
    /// The process that cleans up if drover is killed (none as PID 1).
    guard: Option<crate::guard::GuardLink>,
    /// Where the answers to each operation by hand still under way go, by ticket.
    operations: HashMap<u64, mpsc::UnboundedSender<OpAnswer>>,
    /// The next operation's ticket.
    next_ticket: u64,
}

impl Driver {
    /// Makes the cgroup subtree and starts the guard, where each can be had; says what holds.
    fn start_containment(&mut self) {
        let cgroups = if std::env::var_os("DROVER_NO_CGROUPS").is_some_and(|v| v == "1") {
            Err(io::Error::other("DROVER_NO_CGROUPS=1"))
        } else {
            crate::cgroup::Cgroups::create()
        };
        match cgroups {
            Ok(cgroups) => {
                tracing::info!(path = %cgroups.root().display(), "services run in cgroups of their own");
                self.cgroups = Some(cgroups);
            }
            Err(err) => tracing::info!(
                error = %err,
                "no cgroup v2 subtree: a service's processes are followed by process group only"
            ),
        }
        if sys::is_pid1() || !crate::guard::enabled() {
            // As PID 1, the kernel ends the whole PID namespace with it.
            return;
        }
        match crate::guard::GuardLink::start(&self.processes) {
            Ok(mut guard) => {
                if let Some(cgroups) = &self.cgroups {
                    guard.tell(&format!("cgroup {}", cgroups.root().display()));
                }
                self.guard = Some(guard);
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the guard; a SIGKILL of drover may leave processes behind");
            }
        }
    }

    /// Tells the guard of a process group to kill if drover dies (only without cgroups: the
    /// subtree holds them all otherwise).
    fn tell_guard_group(&mut self, sign: char, pgid: Pid) {
        if self.cgroups.is_none()
            && let Some(guard) = &mut self.guard
        {
            guard.tell(&format!("{sign}{}", pgid.as_raw()));
        }
    }

    /// Sets up what service `id` (new in the core) needs: its output pipes, its notify
    /// socket, its cgroup, its snapshot. On error it still gets its entry (its output is then
    /// discarded).
    fn add_unit(&mut self, id: ServiceId) -> Result<(), Error> {
        let Some(spec) = self.core.spec(id) else {
            return Ok(());
        };
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let dropped = Arc::new(DropCounter::default());
        let cgroup = self.cgroups.as_mut().and_then(|cgroups| match cgroups.make() {
            Ok(cgroup) => Some(Arc::new(cgroup)),
            Err(err) => {
                tracing::warn!(service = %name, error = %err, "cannot make the service's cgroup");
                None
            }
        });
        let direct = ServiceIo::direct(self.service_output);
        let recent = self
            .recent
            .as_ref()
            .map(|hub| hub.for_service(name.clone()));
        let (io, io_error) = match (&mut self.sink, &recent) {
            (Some(sink), Some(recent)) => {
                match ServiceIo::piped(sink, &name, id.index(), &dropped, recent) {
                    Ok(io) => (io, None),
                    Err(source) => (direct, Some(source)),
                }
            }
            _ => (direct, None),
        };
        self.services.insert(
            id,
            ServiceResources {
                io,
                notify: None,
                probes: Vec::new(),
                cgroup,
                hooks: None,
                hook_io: Vec::new(),
            },
        );
        if let Some(snapshot) = self.core.snapshot(id) {
            lock(&self.published).insert(
                id,
                Observed {
                    snapshot,
                    dropped,
                    recent,
                },
            );
        }
        if let Some(source) = io_error {
            return Err(Error::Output {
                service: name.to_string(),
                source,
            });
        }
        self.set_notify(id).map_err(|source| Error::Notify {
            service: name.to_string(),
            source,
        })
    }

    /// Gives service `id` the notify socket its next run needs (none without a `notify`
    /// readiness probe), replacing the one it has if that differs.
    fn set_notify(&mut self, id: ServiceId) -> io::Result<()> {
        let Some(spec) = self.core.next_spec(id).cloned() else {
            return Ok(());
        };
        let Some(resources) = self.services.get_mut(&id) else {
            return Ok(());
        };
        let wanted = match spec.readiness_probe.as_ref().map(|p| &p.action) {
            Some(ProbeAction::Notify { watchdog }) => Some(*watchdog),
            _ => None,
        };
        if resources.notify.as_ref().map(|n| n.watchdog) == wanted {
            return Ok(());
        }
        if let Some(old) = resources.notify.take() {
            old.listener.abort();
        }
        self.notify_units.retain(|&u| u != id);
        let Some(watchdog) = wanted else {
            return Ok(());
        };
        if self.notify_dir.is_none() {
            let dir = crate::probes::notify_dir()?;
            if let Some(guard) = &mut self.guard {
                guard.tell(&format!("notify {}", dir.path.display()));
            }
            self.notify_dir = Some(dir);
        }
        let Some(dir) = &self.notify_dir else {
            return Ok(());
        };
        // A replaced socket's directory is removed when its task ends, which may be later:
        // each socket gets a directory of its own, numbered (short: a socket's path must fit
        // in 108 bytes).
        let name = self.notify_sockets.to_string();
        self.notify_sockets += 1;
        // Usable by the service's user only. A user that cannot be resolved gets a socket
        // only root can use; its spawn then fails with the reason.
        let owner = spec
            .user
            .as_ref()
            .and_then(|user| crate::process::resolve_user(user).ok())
            .map(|c| (c.uid, c.gid));
        let listener =
            crate::probes::listen(dir, &name, owner, id, watchdog, self.notices.clone())?;
        if let Some(resources) = self.services.get_mut(&id) {
            resources.notify = Some(listener);
            self.notify_units.push(id);
        }
        Ok(())
    }

    /// Applies a new manifest: the core decides, then new services get their resources and
    /// the others the notify socket of their next run. `None` while draining (nothing is
    /// applied); otherwise the plan, and the exit code if everything is over.
    fn reload(&mut self, manifest: Manifest) -> Option<(Arc<Plan>, Option<i32>)> {
        let services = manifest.services.into_values().collect();
        let Some(reloaded) =
            self.core
                .reload(services, shutdown_of(&manifest.settings), Instant::now())
        else {
            tracing::warn!("draining: the new manifest is not applied");
            return None;
        };
        for &id in &reloaded.added {
            if let Err(err) = self.add_unit(id) {
                tracing::error!(error = %err, "a new service cannot be set up fully");
            }
        }
        // (A removed service has no next run: its socket stays as it is until it is gone.)
        for id in self.core.ids() {
            if let Err(err) = self.set_notify(id) {
                let service = self.core.spec(id).map(|spec| spec.name.clone());
                tracing::error!(service, error = %err, "cannot create the notify socket");
            }
        }
        let plan = Arc::new(reloaded.plan);
        let _ = self.events.send(Event::Reload(plan.clone()));
        let code = self.perform(reloaded.actions);
        // Probes may have changed without any state change: every snapshot anew.
        let mut published = lock(&self.published);
        for (&id, observed) in published.iter_mut() {
            if let Some(snapshot) = self.core.snapshot(id) {
                observed.snapshot = snapshot;
            }
        }
        Some((plan, code))
    }

    /// Drops what belonged to a removed service that has stopped.
    fn forget(&mut self, id: ServiceId) {
        lock(&self.published).shift_remove(&id);
        self.notify_units.retain(|&u| u != id);
        let Some(mut resources) = self.services.remove(&id) else {
            return;
        };
        resources.stop_probes();
        // Our copies of its pipes' write ends go with `resources`: the readers end once the
        // service's are closed.
        if let Some(notify) = resources.notify.take() {
            notify.listener.abort();
        }
        if let Some(cgroup) = resources.cgroup.take() {
            cgroup.remove();
        }
    }

    async fn run(
        mut self,
        inputs: mpsc::UnboundedReceiver<Input>,
        control: mpsc::UnboundedReceiver<Control>,
        notices: mpsc::Receiver<(ServiceId, NotifyMessage)>,
    ) -> i32 {
        let code = self.supervise(inputs, control, notices).await;
        for resources in self.services.values_mut() {
            resources.stop_probes();
            // An aborted listener drops its socket (and files) only when the runtime gets to
            // it, which may be after drover has gone: remove the files here, now.
            if let Some(notify) = &resources.notify {
                notify.listener.abort();
                notify.remove_files();
            }
        }
        if let Some(dir) = self.notify_dir.take() {
            let _ = std::fs::remove_dir(dir.path);
        }
        // Whatever is left in the services' cgroups (every service has ended: nothing should
        // be) goes, and so do the cgroups; then the guard has nothing to do.
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_all();
        }
        if let Some(guard) = &mut self.guard {
            guard.finish();
        }
        // Every service has ended: close our write ends so that the readers see the end of
        // each pipe, and let the last lines out.
        self.services.clear();
        if let Some(sink) = self.sink.take() {
            sink.finish(OUTPUT_FLUSH_LIMIT).await;
        }
        code
    }

    async fn supervise(
        &mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut notices: mpsc::Receiver<(ServiceId, NotifyMessage)>,
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
            let watchdog = self.next_watchdog();
            let input = tokio::select! {
                biased;
                Some(input) = inputs.recv() => input,
                // Requests before notify datagrams: a service flooding its socket cannot hold
                // up a stop, a reload or the watchdog's ping.
                request = control.recv(), if control_open => match request {
                    Some(Control::Shutdown) => Input::Shutdown,
                    Some(Control::Kill) => Input::Kill,
                    Some(Control::Forward(signal)) => {
                        self.forward(signal);
                        continue;
                    }
                    Some(Control::Ping(answer)) => {
                        let _ = answer.send(());
                        continue;
                    }
                    Some(Control::Operate { service, op, answers }) => {
                        match self.operation(&service, op, answers) {
                            Some(input) => input,
                            None => continue,
                        }
                    }
                    Some(Control::Signal { service, signal, group, answer }) => {
                        let _ = answer.send(self.signal_service(&service, signal, group));
                        continue;
                    }
                    Some(Control::Reload { manifest, applied }) => {
                        let reloaded = self.reload(*manifest);
                        let code = reloaded.as_ref().and_then(|(_, code)| *code);
                        if let Some(applied) = applied {
                            let _ = applied.send(reloaded.map(|(plan, _)| plan));
                        }
                        if let Some(code) = code { return code; }
                        continue;
                    }
                    None => {
                        control_open = false;
                        continue;
                    }
                },
                Some((unit, message)) = notices.recv() => match self.on_notify(unit, message) {
                    Some(input) => input,
                    None => continue,
                },
                () = sleep_until_some(watchdog.map(|(_, at)| at)), if watchdog.is_some() => {
                    match watchdog.and_then(|(unit, _)| self.watchdog_expired(unit)) {
                        Some(input) => input,
                        None => continue,
                    }
                }
                () = self.processes.orphan_reaped(), if watching => {
                    if let Some(code) = self.check_groups() { return code; }
                    continue;
                }
                _ = group_poll.tick(), if watching => {
                    if let Some(code) = self.check_groups() { return code; }
                    continue;
                }
            };
            match &input {
                Input::Spawned { pid, .. } => self.tell_guard_group('+', *pid),
                Input::Exited {
                    pid,
                    group_alive: false,
                    ..
                } => self.tell_guard_group('-', *pid),
                _ => {}
            }
            let actions = self.core.handle(input, Instant::now());
            if let Some(code) = self.perform(actions) {
                return code;
            }
        }
    }

    /// The input for an operation by hand on the service named `service`, with a ticket whose
    /// answers go to `answers`; `None` (and a failed answer) for an unknown name.
    fn operation(
        &mut self,
        service: &str,
        op: HandOp,
        answers: mpsc::UnboundedSender<OpAnswer>,
    ) -> Option<Input> {
        let Some(unit) = self.core.find(service) else {
            let _ = answers.send(OpAnswer::Failed(format!("no service `{service}`")));
            return None;
        };
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.operations.insert(ticket, answers);
        Some(Input::Operate { unit, op, ticket })
    }

    /// Sends `signal` to service `service`'s main process (or its group): only to a process
    /// drover knows is the service's now (with a cgroup, one still in it).
    fn signal_service(&self, service: &str, signal: i32, group: bool) -> Result<String, String> {
        let unit = self
            .core
            .find(service)
            .ok_or_else(|| format!("no service `{service}`"))?;
        let snapshot = self.core.snapshot(unit).ok_or("no such service")?;
        let not_running = || format!("`{service}` is {}: no process to signal", snapshot.state);
        let name = drover_spec::model::Signal::from_number(signal)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| format!("signal {signal}"));
        if group {
            let pgid = self.core.group(unit).ok_or_else(not_running)?;
            if !self.owns_group(unit, pgid) {
                return Err(not_running());
            }
            sys::signal_group(pgid, Some(signal)).map_err(|err| err.to_string())?;
            return Ok(format!("sent {name} to process group {}", pgid.as_raw()));
        }
        let pid = snapshot
            .pid
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw)
            .ok_or_else(not_running)?;
        if let Some(cgroup) = self.cgroup_of(unit)
            && !cgroup.holds(pid)
        {
            return Err(not_running());
        }
        sys::send_signal(pid.as_raw(), signal).map_err(|err| err.to_string())?;
        Ok(format!("sent {name} to pid {}", pid.as_raw()))
    }

    fn forward(&self, signal: Signal) {
        // Each group is checked against the one service it belongs to.
        for id in self.core.ids() {
            let Some(pgid) = self.core.group(id) else {
                continue;
            };
            if !self.owns_group(id, pgid) {
                continue;
            }
            if let Err(err) = sys::signal_group(pgid, Some(signal.number())) {
                tracing::warn!(pgid = pgid.as_raw(), %signal, error = %err, "cannot forward a signal");
            }
        }
    }

    /// Whether process group `pgid` is still service `unit`'s: with a cgroup, a member of the
    /// group must be in it (a group id is reused once the group has emptied, and drover must
    /// never signal a group it no longer owns). Without one there is no way to tell, and the
    /// group counts as the service's while it has a member (the window is the 10 ms poll).
    fn owns_group(&self, id: ServiceId, pgid: Pid) -> bool {
        match self.cgroup_of(id) {
            Some(cgroup) => cgroup.has_group(pgid),
            None => true,
        }
    }

    /// Service `id`'s cgroup, if it has one.
    fn cgroup_of(&self, id: ServiceId) -> Option<&Arc<crate::cgroup::ServiceCgroup>> {
        self.services.get(&id)?.cgroup.as_ref()
    }

    fn check_groups(&mut self) -> Option<i32> {
        let mut gone = Vec::new();
        let services = &self.services;
        self.watched.retain(|&(unit, pgid)| {
            let cgroup = services.get(&unit).and_then(|s| s.cgroup.as_ref());
            if sys::group_alive(pgid) && cgroup.is_none_or(|cgroup| cgroup.has_group(pgid)) {
                return true;
            }
            // The group is empty, but processes that left it (`setsid` daemons) are still in
            // the service's cgroup: the run is over, so they go too, and the run ends once
            // they have.
            if let Some(cgroup) = cgroup
                && cgroup.populated()
            {
                let _ = cgroup.kill();
                return true;
            }
            gone.push((unit, pgid));
            false
        });
        for (unit, pgid) in gone {
            self.tell_guard_group('-', pgid);
            let actions = self.core.handle(Input::GroupGone { unit }, Instant::now());
            if let Some(code) = self.perform(actions) {
                return Some(code);
            }
        }
        None
    }

    /// Performs `actions`; `Some(code)` when the state machine says everything is over.
    fn perform(&mut self, mut actions: Vec<Action>) -> Option<i32> {
        let mut exit = None;
        let mut watch_added = false;
        // Spawns first: the spawner thread forks while this one publishes and logs the
        // changes (a restart's latency is its critical path). The spawn's answer comes back as
        // an input, after this batch: observers still see `starting` before `running`.
        actions.sort_by_key(|action| !matches!(action, Action::Spawn(_)));
        for action in actions {
            match action {
                Action::Spawn(unit) => self.spawn(unit),
                Action::SignalGroup { unit, pgid, signal } => {
                    let service = self.core.spec(unit).map(|spec| spec.name.clone());
                    if !self.owns_group(unit, pgid) {
                        tracing::debug!(
                            service,
                            pgid = pgid.as_raw(),
                            "its process group is gone; not signalled"
                        );
                    } else if let Err(err) = sys::signal_group(pgid, Some(signal.number())) {
                        tracing::warn!(service, %signal, error = %err, "cannot signal a process group");
                    }
                    // The last resort reaches what left the group, too.
                    if signal == Signal::SIGKILL
                        && let Some(cgroup) = self.cgroup_of(unit)
                    {
                        let _ = cgroup.kill();
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
                Action::SetDelayTimer(after) => self.send_later(after, Input::DelayOver),
                Action::Publish(unit, event) => self.publish(unit, event),
                Action::StartProbes { unit, run, kinds } => {
                    for kind in kinds {
                        self.start_probe(unit, run, kind);
                    }
                }
                Action::StopProbes(unit) => {
                    if let Some(resources) = self.services.get_mut(&unit) {
                        resources.stop_probes();
                    }
                }
                Action::RunHooks {
                    unit,
                    run,
                    kind,
                    deadline,
                } => self.run_hooks(unit, run, kind, deadline),
                Action::StopHooks(unit) => {
                    if let Some(resources) = self.services.get_mut(&unit) {
                        resources.hooks = None;
                    }
                }
                Action::Forget(unit) => self.forget(unit),
                Action::Answer { ticket, answer } => {
                    let last = !matches!(answer, OpAnswer::Accepted);
                    let sent = self
                        .operations
                        .get(&ticket)
                        .is_some_and(|answers| answers.send(answer).is_ok());
                    if last || !sent {
                        self.operations.remove(&ticket);
                    }
                }
                Action::Exit(code) => exit = Some(code),
            }
        }
        self.supervising
            .store(self.core.is_supervising(), Ordering::Relaxed);
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

    fn publish(&mut self, unit: ServiceId, event: StateChange) {
        let mut started_at = None;
        if let Some(snapshot) = self.core.snapshot(unit) {
            started_at = snapshot.started_at;
            if let Some(observed) = lock(&self.published).get_mut(&unit) {
                observed.snapshot = snapshot;
            }
        }
        // `ready after 1.2s: readiness probe passed (HTTP 200)`: how long the run took to
        // be ready, counted from its spawn.
        let headline = match started_at {
            Some(at) if event.to == State::Ready => {
                let took = brief(Instant::now().saturating_duration_since(at));
                match event.reason.strip_prefix("ready") {
                    // `ready (no readiness probe)`
                    Some(rest) => format!("ready after {took}{rest}"),
                    None => format!("ready after {took}: {}", event.reason),
                }
            }
            _ => event.reason.clone(),
        };
        // A level for each: alerts on WARN and ERROR see every failure, and nothing routine.
        macro_rules! log_change {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    service = %event.service,
                    from = %event.from,
                    to = %event.to,
                    pid = event.pid,
                    "{headline}"
                )
            };
        }
        if event.to == State::Failed {
            log_change!(tracing::Level::ERROR);
        } else if event.trouble {
            log_change!(tracing::Level::WARN);
        } else {
            log_change!(tracing::Level::INFO);
        }
        let _ = self.events.send(Event::State(event));
    }

    fn start_probe(&mut self, unit: ServiceId, run: u64, kind: ProbeKind) {
        let Some(spec) = self.core.spec(unit).cloned() else {
            return;
        };
        let Some(probe) = probe_of(&spec, kind).cloned() else {
            return;
        };
        if let ProbeAction::Notify { watchdog } = probe.action {
            if let Some(notify) = self.services.get_mut(&unit).and_then(|s| s.notify.as_mut()) {
                notify.accepting = Some(run);
                notify.deadline = watchdog.and_then(|w| Instant::now().checked_add(w));
            }
            return;
        }
        let processes = self.processes.clone();
        let checker = Checker::new(&probe.action, |command| {
            let argv = command.argv();
            let environment = self.environment_of(unit, &spec);
            let build = move || {
                let mut command = command_for(&argv, &environment)?;
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Ok(command)
            };
            Arc::new(ExecProbe::new(
                processes,
                Box::new(build),
                spec.user.clone(),
                spec.working_dir.clone(),
            ))
        });
        let Some(checker) = checker else { return };
        let offset = prober::phase_offset(&spec.name, kind, probe.period);
        let inputs = self.inputs.clone();
        let events = self.events.clone();
        let service: Arc<str> = Arc::from(spec.name.as_str());
        // Every check is published from the probe's own task; only a change of verdict goes
        // through the state machine.
        let task = tokio::spawn(async move {
            prober::run(kind, &probe, checker, offset, |result, change| {
                let message = change.map(|_| result.message.clone());
                publish_probe(&events, &service, kind, result);
                if let (Some(change), Some(message)) = (change, message) {
                    let _ = inputs.send(Input::Probe {
                        unit,
                        run,
                        kind,
                        change,
                        message,
                    });
                }
            })
            .await;
        });
        match self.services.get_mut(&unit) {
            Some(resources) => resources.probes.push(task.abort_handle()),
            None => task.abort(),
        }
    }

    /// A datagram on service `unit`'s notify socket: what it means, if its sender may speak for
    /// the service (a process of its current process group).
    fn on_notify(&mut self, unit: ServiceId, message: NotifyMessage) -> Option<Input> {
        let service: Arc<str> = Arc::from(self.core.spec(unit)?.name.as_str());
        let group = self.core.group(unit);
        let notify = self.services.get_mut(&unit)?.notify.as_mut()?;
        let Some(run) = notify.accepting else {
            tracing::debug!(%service, "sd_notify message while no run is probed; ignored");
            return None;
        };
        let group = group?;
        let trusted = message
            .pid
            .is_some_and(|pid| pid == group.as_raw() || sender_in_group(pid, group.as_raw()));
        if !trusted {
            if let Some(held) = self.notify_warnings.allow(Instant::now()) {
                tracing::warn!(%service, sender = message.pid, held_back = held, "sd_notify message from outside the service's process group; ignored");
            }
            return None;
        }
        let now = Instant::now();
        if message.flag("WATCHDOG") {
            notify.deadline = notify.watchdog.and_then(|w| now.checked_add(w));
        }
        if let Some(text) = message.get("STATUS") {
            tracing::info!(%service, status = text, "sd_notify status");
            // Recording a status decides nothing: no action comes back.
            let actions = self.core.handle(
                Input::Status {
                    unit,
                    text: text.to_string(),
                },
                now,
            );
            debug_assert!(actions.is_empty());
        }
        let events = self.events.clone();
        let readiness = |outcome, text: &str, change| {
            let result = CheckResult::new(outcome, Duration::ZERO, text);
            publish_probe(&events, &service, ProbeKind::Readiness, result);
            Input::Probe {
                unit,
                run,
                kind: ProbeKind::Readiness,
                change,
                message: text.to_string(),
            }
        };
        if message.get("WATCHDOG") == Some("trigger") {
            Some(Input::Watchdog {
                unit,
                run,
                message: "the service sent WATCHDOG=trigger".into(),
            })
        } else if message.flag("STOPPING") {
            Some(readiness(
                CheckOutcome::Failure,
                "STOPPING=1",
                drover_probe::Change::Failed,
            ))
        } else if message.flag("READY") {
            Some(readiness(
                CheckOutcome::Success,
                "READY=1",
                drover_probe::Change::Passed,
            ))
        } else {
            None
        }
    }

    /// The service whose watchdog expires first, and when.
    fn next_watchdog(&self) -> Option<(ServiceId, Instant)> {
        self.notify_units
            .iter()
            .filter_map(|&unit| Some((unit, self.services.get(&unit)?.notify.as_ref()?.deadline?)))
            .min_by_key(|&(_, at)| at)
    }

    fn watchdog_expired(&mut self, unit: ServiceId) -> Option<Input> {
        let notify = self.services.get_mut(&unit)?.notify.as_mut()?;
        let run = notify.accepting?;
        notify.deadline = None;
        let within = notify.watchdog.unwrap_or_default();
        Some(Input::Watchdog {
            unit,
            run,
            message: format!("no WATCHDOG=1 within {}ms", within.as_millis()),
        })
    }

    /// The variables a service's processes get on top of drover's own environment.
    fn environment_of(&self, unit: ServiceId, spec: &Service) -> Vec<(String, String)> {
        let mut environment = spec.extra_environment();
        if let Some(notify) = self.services.get(&unit).and_then(|s| s.notify.as_ref()) {
            environment.push((
                "NOTIFY_SOCKET".into(),
                notify.path.to_string_lossy().into_owned(),
            ));
            if let Some(watchdog) = notify.watchdog {
                environment.push(("WATCHDOG_USEC".into(), watchdog.as_micros().to_string()));
            }
        }
        environment
    }

    /// Starts service `unit`'s `kind` hooks for run `run`; what cannot even start is answered
    /// as a failure at once.
    fn run_hooks(&mut self, unit: ServiceId, run: u64, kind: HookKind, deadline: Option<Duration>) {
        let Some(spec) = self.core.spec(unit).cloned() else {
            return;
        };
        let hooks = match self.prepare_hooks(unit, &spec, kind) {
            Ok(hooks) => hooks,
            Err(err) => {
                let _ = self.inputs.send(Input::HooksDone {
                    unit,
                    run,
                    kind,
                    result: Err(format!("cannot run {}: {err}", kind.as_str())),
                });
                return;
            }
        };
        let list = HookList {
            unit,
            run,
            kind,
            service: Arc::from(spec.name.as_str()),
            hooks,
            deadline,
        };
        let cancel = crate::hooks::start(list, self.events.clone(), self.inputs.clone());
        if let Some(resources) = self.services.get_mut(&unit) {
            resources.hooks = Some(cancel);
        }
    }

    /// Service `unit`'s `kind` hooks as commands: its environment and then the hook's, their
    /// output to `web/pre_stop`.
    fn prepare_hooks(
        &mut self,
        unit: ServiceId,
        spec: &Service,
        kind: HookKind,
    ) -> io::Result<Vec<PreparedHook>> {
        let io = self.hook_io(unit, spec, kind)?;
        let base = self.environment_of(unit, spec);
        let list = match kind {
            HookKind::PostStart => &spec.post_start,
            HookKind::PreStop => &spec.pre_stop,
        };
        let mut hooks = Vec::with_capacity(list.len());
        for hook in list {
            let mut environment = base.clone();
            environment.extend(hook.environment.iter().cloned());
            let argv = hook.command.argv();
            let (io, null) = (io.clone(), self.null.try_clone()?);
            let build = move || {
                let mut command = command_for(&argv, &environment)?;
                io.apply(&mut command, &null)?;
                Ok(command)
            };
            hooks.push(PreparedHook {
                runner: ExecProbe::new(
                    self.processes.clone(),
                    Box::new(build),
                    hook.user.clone(),
                    hook.working_dir.clone(),
                ),
                timeout: hook.timeout,
            });
        }
        Ok(hooks)
    }

    /// Where service `unit`'s `kind` hooks write: pipes read as `web/pre_stop` in `prefix`
    /// mode, made once.
    fn hook_io(
        &mut self,
        unit: ServiceId,
        spec: &Service,
        kind: HookKind,
    ) -> io::Result<Arc<ServiceIo>> {
        let resources = self
            .services
            .get_mut(&unit)
            .ok_or_else(|| io::Error::other("the service is gone"))?;
        if let Some((_, io)) = resources.hook_io.iter().find(|(k, _)| *k == kind) {
            return Ok(io.clone());
        }
        let (dropped, recent) = match lock(&self.published).get(&unit) {
            Some(observed) => (observed.dropped.clone(), observed.recent.clone()),
            None => return Err(io::Error::other("the service is gone")),
        };
        let io = match (&mut self.sink, recent) {
            (Some(sink), Some(recent)) => {
                let name: Arc<str> = Arc::from(format!("{}/{}", spec.name, kind.as_str()));
                ServiceIo::piped(sink, &name, unit.index(), &dropped, &recent)?
            }
            _ => ServiceIo::direct(self.service_output),
        };
        let io = Arc::new(io);
        resources.hook_io.push((kind, io.clone()));
        Ok(io)
    }

    fn spawn(&mut self, unit: ServiceId) {
        let Some(spec) = self.core.spec(unit).cloned() else {
            return;
        };
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

    fn request_for(&self, unit: ServiceId, spec: &Service) -> io::Result<SpawnRequest> {
        let argv = spec.command.argv();
        let mut command = command_for(&argv, &self.environment_of(unit, spec))?;
        let resources = self
            .services
            .get(&unit)
            .ok_or_else(|| io::Error::other("the service is gone"))?;
        resources.io.apply(&mut command, &self.null)?;
        // A run born in its cgroup is started from these rather than from `command`.
        let stdio = match &resources.cgroup {
            Some(_) => resources.io.descriptors(&self.null)?,
            None => [None, None, None],
        };
        let inputs = self.inputs.clone();
        let cgroup = resources.cgroup.clone();
        Ok(SpawnRequest {
            command,
            new_session: true,
            foreground: false,
            inherit_signals: None,
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            cgroup: cgroup.as_ref().map(|c| c.entry()).transpose()?,
            stdio,
            arg0: argv.first().map(OsString::from),
            outlives_drover: false,
            keep_inherited_fds: false,
            waiter: Box::new(move |pid, status| {
                let group_alive =
                    sys::group_alive(pid) || cgroup.as_ref().is_some_and(|c| c.populated());
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

/// A command for `argv` with `environment` added to drover's own; the program is looked up on
/// the `PATH` it will see (see [`find_program`]).
fn command_for(argv: &[String], environment: &[(String, String)]) -> io::Result<Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("empty command"))?;
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
    // drover's own service manager's socket is drover's; a service with a `notify` probe gets
    // its own in `environment`.
    for inherited in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        command.env_remove(inherited);
    }
    command
        .args(args)
        .envs(environment.iter().map(|(k, v)| (k, v)));
    Ok(command)
}

/// Publishes one probe check (and logs it at debug level).
fn publish_probe(
    events: &broadcast::Sender<Event>,
    service: &Arc<str>,
    kind: ProbeKind,
    result: CheckResult,
) {
    tracing::debug!(
        %service,
        probe = %kind,
        result = result.outcome.as_str(),
        duration_ms = result.duration.as_millis() as u64,
        "{}", result.message
    );
    let _ = events.send(Event::Probe(ProbeEvent {
        service: service.clone(),
        kind,
        outcome: result.outcome,
        duration: result.duration,
        message: result.message,
    }));
}

/// The probe `kind` of `spec`.
fn probe_of(spec: &Service, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Startup => spec.startup_probe.as_ref(),
        ProbeKind::Readiness => spec.readiness_probe.as_ref(),
        ProbeKind::Liveness => spec.liveness_probe.as_ref(),
    }
}

/// The drain's settings of a manifest.
fn shutdown_of(settings: &drover_spec::model::Settings) -> crate::core::Shutdown {
    crate::core::Shutdown {
        timeout: settings.shutdown_timeout,
        delay: settings.shutdown_delay,
    }
}

/// Locks `mutex`, whether or not a holder panicked (the data are plain values).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps until `at`; never, without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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

/// A duration as a person reads it in a log line: `240ms`, `1.2s`, `3m05s`.
fn brief(took: Duration) -> String {
    let secs = took.as_secs();
    if secs == 0 {
        format!("{}ms", took.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", took.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::path::PathBuf;

    #[tokio::test]
    async fn every_check_is_a_probe_event_with_its_fields() {
        let yaml = "settings: { log: { service_output: discard } }
services:
  app:
    command: [sleep, \"60\"]
    readiness_probe: { exec: { command: [sh, -c, \"exit 3\"] }, period: 50ms }
";
        let manifest =
            drover_spec::load_str(yaml, std::path::Path::new("/t/drover.yaml")).expect("valid");
        let processes = Processes::start().expect("processes");
        let (supervisor, done) = Supervisor::start(manifest, processes).expect("start");
        let mut events = supervisor.subscribe();
        let probe = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Event::Probe(probe) = events.recv().await.expect("events") {
                    break probe;
                }
            }
        })
        .await
        .expect("a probe event within 10 s");
        assert_eq!(&*probe.service, "app");
        assert_eq!(probe.kind, ProbeKind::Readiness);
        assert_eq!(probe.outcome, CheckOutcome::Failure);
        assert_eq!(probe.message, "exit code 3");
        assert!(probe.duration > Duration::ZERO && probe.duration < Duration::from_secs(5));
        supervisor.send(Control::Kill);
        assert_eq!(done.await.expect("join"), 1);
    }

    /// Polls `supervisor`'s snapshot until `done` holds for the list of names (10 s at most).
    async fn names_until(supervisor: &Supervisor, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let names = || -> Vec<String> {
            supervisor
                .snapshot()
                .iter()
                .map(|s| s.name.to_string())
                .collect()
        };
        let polled = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let now = names();
                if done(&now) {
                    break now;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        polled.unwrap_or_else(|_| panic!("not within 10 s: {:?}", names()))
    }

    #[tokio::test]
    async fn a_service_added_in_a_freed_slot_is_listed_last() {
        let load = |services: &str| {
            let yaml = format!(
                "settings: {{ log: {{ service_output: discard }} }}\nservices:\n{services}"
            );
            drover_spec::load_str(&yaml, std::path::Path::new("/t/drover.yaml")).expect("valid")
        };
        let a = "  a: { command: [sleep, \"60\"] }\n";
        let b = "  b: { command: [sleep, \"61\"] }\n";
        let c = "  c: { command: [sleep, \"62\"] }\n";
        let processes = Processes::start().expect("processes");
        let (supervisor, done) =
            Supervisor::start(load(&format!("{a}{b}")), processes).expect("start");
        let reload = |manifest| {
            supervisor.send(Control::Reload {
                manifest: Box::new(manifest),
                applied: None,
            })
        };
        // a goes (its slot is freed once it has stopped), then c comes and takes that slot.
        reload(load(b));
        names_until(&supervisor, |names| names == ["b"]).await;
        reload(load(&format!("{b}{c}")));
        let names = names_until(&supervisor, |names| names.len() == 2).await;
        assert_eq!(names, ["b", "c"], "in the order they came, not by slot");
        supervisor.send(Control::Kill);
        assert_eq!(done.await.expect("join"), 1);
    }

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
