//! drover-watch: manifest watching and debounce. It turns changes on disk into reload
//! requests; what a reload does is the binary's and the supervisor's business.
//!
//! It watches **directories**, never files: the manifest's directory (and that of the file a
//! symlinked manifest points to), a directory manifest itself, and the directory of every
//! `env_file`. Watching a file goes silent after the first editor save that renames a new file
//! over it, and a Kubernetes ConfigMap update is an atomic swap of a `..data` symlink in the
//! mounted directory that names no file of the manifest. So a change in a watched directory
//! counts when it names a file a reload reads ([`WatchDir::names`]: the manifest, its symlink's
//! target, an `env_file`, any `*.yaml` of a directory manifest) or a ConfigMap's `..`-named
//! entries; anything else there (drover's own log file, a service's scratch files) is no
//! change, or a reload that fails would feed itself. The reader of the requests re-reads the
//! manifest and applies what changed, which may be nothing. [`digest`] tells it whether
//! anything a reload reads changed since a manifest failed to load.
//!
//! A burst of events (an editor writing a file in several steps, 50 saves in a second) becomes
//! one request: a request is sent once `debounce` has passed without a new event, or at the
//! latest [`MAX_DEBOUNCE_FACTOR`] times `debounce` after the burst began.
#![forbid(unsafe_code)]

use drover_spec::Manifest;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A burst of events longer than this many debounce periods still gives a request at that point,
/// so that a file rewritten without pause is still picked up.
pub const MAX_DEBOUNCE_FACTOR: u32 = 10;

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel's watcher (inotify) could not be set up.
    #[error("cannot start watching files")]
    Start(#[source] notify::Error),
    /// A directory could not be watched.
    #[error("cannot watch {}", .path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: notify::Error,
    },
}

/// One directory to watch, and which of its entries a reload reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchDir {
    /// The directory, as the manifest names it.
    pub dir: PathBuf,
    /// The names in it that matter.
    pub names: Names,
}

/// Which entries of a watched directory a reload reads. Entries whose name begins with `..`
/// (a Kubernetes ConfigMap's `..data` link and its versioned directories) always count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Names {
    /// These files.
    Files(Vec<OsString>),
    /// Every `*.yaml` and `*.yml` (a directory manifest), plus these files.
    YamlAnd(Vec<OsString>),
}

impl WatchDir {
    /// Whether entry `name` of this directory is read by a reload.
    pub fn reads(&self, name: &std::ffi::OsStr) -> bool {
        if name.as_encoded_bytes().starts_with(b"..") {
            return true;
        }
        match &self.names {
            Names::Files(files) => files.iter().any(|f| f == name),
            Names::YamlAnd(files) => is_yaml(Path::new(name)) || files.iter().any(|f| f == name),
        }
    }

    fn add_name(&mut self, name: OsString) {
        let (Names::Files(files) | Names::YamlAnd(files)) = &mut self.names;
        if !files.contains(&name) {
            files.push(name);
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml")
}

/// Whether an event names an entry some watched directory's reload reads (an event without
/// paths, such as an overflow, counts).
fn relevant(event: &notify::Event, dirs: &[WatchDir]) -> bool {
    event.paths.is_empty()
        || event.paths.iter().any(|path| {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return true;
            };
            dirs.iter()
                .any(|watched| same_dir(&watched.dir, parent) && watched.reads(name))
        })
}

/// Whether `a` and `b` name the same directory (`.` and `` alike, or the same real one).
fn same_dir(a: &Path, b: &Path) -> bool {
    let plain = |p: &Path| -> PathBuf {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    };
    let (a, b) = (plain(a), plain(b));
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Watches directories while it lives; dropping it stops the watching and the debounce task.
pub struct Watcher {
    _watcher: RecommendedWatcher,
    debouncer: tokio::task::JoinHandle<()>,
    dirs: Vec<WatchDir>,
}

impl Watcher {
    /// Watches `dirs`; each debounced burst of changes sends one `request` on `requests` (the
    /// caller's own message, so that one channel can carry reloads of every origin). Call it
    /// inside a tokio runtime.
    pub fn start<T: Clone + Send + 'static>(
        dirs: Vec<WatchDir>,
        debounce: Duration,
        requests: mpsc::UnboundedSender<T>,
        request: T,
    ) -> Result<Watcher, Error> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let filter = dirs.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if counts(&event.kind) && relevant(&event, &filter) => {
                    let _ = events_tx.send(());
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "file watcher error"),
            })
            .map_err(Error::Start)?;
        for watched in &dirs {
            watcher
                .watch(&watched.dir, RecursiveMode::NonRecursive)
                .map_err(|source| Error::Watch {
                    path: watched.dir.clone(),
                    source,
                })?;
        }
        let debouncer = tokio::spawn(debounce_events(events, debounce, requests, request));
        Ok(Watcher {
            _watcher: watcher,
            debouncer,
            dirs,
        })
    }

    /// The directories watched.
    pub fn dirs(&self) -> &[WatchDir] {
        &self.dirs
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.debouncer.abort();
    }
}

/// Whether an event may mean changed content: anything but reading (drover reading the files
/// must not cause another reload).
fn counts(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// `after` from now, or as far as the clock goes (validation bounds the debounce; this only
/// makes sure an unbounded one cannot panic).
fn later(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// Sends one request per burst of `events`: once `debounce` has passed since the last event, or
/// [`MAX_DEBOUNCE_FACTOR`] × `debounce` after the first.
async fn debounce_events<T: Clone>(
    mut events: mpsc::UnboundedReceiver<()>,
    debounce: Duration,
    requests: mpsc::UnboundedSender<T>,
    request: T,
) {
    while events.recv().await.is_some() {
        let latest = later(debounce.saturating_mul(MAX_DEBOUNCE_FACTOR));
        let mut due = later(debounce);
        loop {
            tokio::select! {
                event = events.recv() => {
                    if event.is_none() {
                        return;
                    }
                    due = later(debounce).min(latest);
                }
                () = tokio::time::sleep_until(due) => break,
            }
        }
        if requests.send(request.clone()).is_err() {
            return;
        }
    }
}

/// The directories to watch for the manifest at `path` (a file or a directory) and the files it
/// refers to, each with the names in it that a reload reads, without repeats.
pub fn dirs_to_watch(path: &Path, manifest: &Manifest) -> Vec<WatchDir> {
    let mut dirs: Vec<WatchDir> = Vec::new();
    let mut add = |dir: &Path, name: Option<OsString>, yaml: bool| {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        let at = match dirs.iter().position(|w| w.dir == dir) {
            Some(at) => at,
            None => {
                dirs.push(WatchDir {
                    dir,
                    names: Names::Files(Vec::new()),
                });
                dirs.len() - 1
            }
        };
        if yaml && let Names::Files(files) = &dirs[at].names {
            dirs[at].names = Names::YamlAnd(files.clone());
        }
        if let Some(name) = name {
            dirs[at].add_name(name);
        }
    };
    // The `.env` beside the manifest holds `${VAR}` values, whether it exists yet or not.
    if path.is_dir() {
        add(path, None, true);
        add(path, Some(OsString::from(".env")), true);
    } else if let Some(parent) = path.parent() {
        add(parent, path.file_name().map(OsString::from), false);
        add(parent, Some(OsString::from(".env")), false);
    }
    // A symlinked manifest (or a ConfigMap's `..data/` link) also changes where it points.
    for file in manifest
        .sources
        .iter()
        .chain(std::iter::once(&path.to_path_buf()))
    {
        if let Ok(real) = file.canonicalize()
            && !real.is_dir()
            && let Some(parent) = real.parent()
        {
            add(parent, real.file_name().map(OsString::from), false);
        }
    }
    for service in manifest.services.values() {
        for env_file in &service.env_files {
            if let Some(parent) = env_file.path.parent() {
                add(parent, env_file.path.file_name().map(OsString::from), false);
            }
        }
    }
    dirs
}

/// The largest file [`digest`] reads (the manifest's own limit).
const DIGEST_READ_LIMIT: u64 = drover_spec::MAX_MANIFEST_BYTES;

/// A digest of the manifest at `path` (its file, or each `*.yaml`/`*.yml` file of a directory
/// manifest, by name and content) and of the entries of `dirs` a reload reads (name, size,
/// modification time): equal digests mean nothing a reload reads has changed, new files (an
/// `env_file` that appears) included. Files are read as a reload reads them: regular files only,
/// never blocking, at most [`DIGEST_READ_LIMIT`] bytes (a symlink to `/dev/zero` or a FIFO is its
/// error). Unreadable files count as their error.
pub fn digest(path: &Path, dirs: &[WatchDir]) -> u64 {
    let mut hasher = DefaultHasher::new();
    let mut content = |p: &Path| {
        p.hash(&mut hasher);
        match drover_spec::read_regular_file(p, DIGEST_READ_LIMIT) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(err) => err.kind().hash(&mut hasher),
        }
    };
    if path.is_dir() {
        for file in entries(path).into_iter().filter(|p| is_yaml(p)) {
            content(&file);
        }
    } else {
        content(path);
    }
    for watched in dirs {
        for entry in entries(&watched.dir) {
            if !entry.file_name().is_some_and(|name| watched.reads(name)) {
                continue;
            }
            entry.hash(&mut hasher);
            if let Ok(metadata) = std::fs::metadata(&entry) {
                metadata.len().hash(&mut hasher);
                metadata.modified().ok().hash(&mut hasher);
            }
        }
    }
    hasher.finish()
}

/// The paths in `dir`, sorted; none if it cannot be read.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(path: &Path) -> Manifest {
        drover_spec::load(path).expect("valid")
    }

    /// Waits up to 5 s for a request; whether one came.
    async fn request(requests: &mut mpsc::UnboundedReceiver<()>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), requests.recv())
            .await
            .is_ok()
    }

    /// Whether another request comes within `within`.
    async fn another(requests: &mut mpsc::UnboundedReceiver<()>, within: Duration) -> bool {
        tokio::time::timeout(within, requests.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn rename_over_symlink_swap_and_env_file_edits_are_each_one_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // The ConfigMap layout: drover.yaml -> ..data/drover.yaml, ..data -> ..v1.
        std::fs::create_dir(root.join("..v1")).expect("mkdir");
        std::fs::write(root.join("app.env"), "A=1\n").expect("write");
        // The temporary directory's random name may hold any digit, so the
        // versions differ by the formatted argument, never by a text replace.
        let env_file = root.join("app.env");
        let manifest = |seconds: u32| {
            format!(
                "services:\n  app: {{ command: [sleep, \"{seconds}\"], env_file: {env_file:?} }}\n"
            )
        };
        std::fs::write(root.join("..v1/drover.yaml"), manifest(1)).expect("write");
        std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/drover.yaml", root.join("drover.yaml"))
            .expect("symlink");
        let path = root.join("drover.yaml");
        let running = load(&path);
        let dirs = dirs_to_watch(&path, &running);
        assert!(dirs.iter().any(|w| w.dir == root), "{dirs:?}");
        let (tx, mut requests) = mpsc::unbounded_channel();
        let _watcher = Watcher::start(dirs, Duration::from_millis(300), tx, ()).expect("watch");
        let before = digest(&path, &dirs_to_watch(&path, &running));

        // The ConfigMap swap: a new version directory, a new link, renamed over `..data`.
        std::fs::create_dir(root.join("..v2")).expect("mkdir");
        std::fs::write(root.join("..v2/drover.yaml"), manifest(2)).expect("write");
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).expect("symlink");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("rename");
        assert!(
            request(&mut requests).await,
            "the symlink swap was not seen"
        );
        assert!(!another(&mut requests, Duration::from_millis(300)).await);
        let swapped = digest(&path, &dirs_to_watch(&path, &running));
        assert_ne!(before, swapped);

        // An editor's save: write a temporary file, rename it over the env file.
        std::fs::write(root.join(".app.env.tmp"), "A=2\n").expect("write");
        std::fs::rename(root.join(".app.env.tmp"), root.join("app.env")).expect("rename");
        assert!(
            request(&mut requests).await,
            "the rename-over save was not seen"
        );
        assert_ne!(digest(&path, &dirs_to_watch(&path, &running)), swapped);

        // Reading the files (as a reload does) is no change.
        let _ = load(&path);
        assert!(!another(&mut requests, Duration::from_millis(600)).await);
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drover.yaml");
        std::fs::write(&path, "services:\n  a: { command: [sleep, \"1\"] }\n").expect("write");
        let running = load(&path);
        let (tx, mut requests) = mpsc::unbounded_channel();
        let _watcher = Watcher::start(
            dirs_to_watch(&path, &running),
            Duration::from_millis(500),
            tx,
            (),
        )
        .expect("watch");
        // 20 writes 10 ms apart: a burst shorter than MAX_DEBOUNCE_FACTOR periods.
        for i in 0..20 {
            std::fs::write(
                &path,
                format!("services:\n  a: {{ command: [sleep, \"{i}\"] }}\n"),
            )
            .expect("write");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(request(&mut requests).await);
        assert!(!another(&mut requests, Duration::from_millis(1000)).await);
    }
}
