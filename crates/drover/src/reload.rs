//! Hot reload: from a trigger (a change on disk, seen by `drover-watch`, or SIGHUP) to a new
//! manifest applied by the supervisor.
//!
//! Each reload reads and checks the whole manifest off the runtime thread. Any error (a
//! diagnostic, with file:line:col, or a metrics address that cannot be bound) is logged and
//! counted, and the running manifest stays as it is, untouched. Otherwise the plan is logged
//! (`reload: +api ~web -old =db,cache`), the supervisor applies the services' part, and the
//! settings apply here: the metrics address, drover's log format, the watcher. Each reload is a
//! `reload` span.
//!
//! A change on disk whose files read the same as at the last reload ([`drover_watch::digest`])
//! is no reload at all: editors and Kubernetes touch files without changing them.

use crate::logging::LogFormatHandle;
use crate::run::Metrics;
use drover_spec::Manifest;
use drover_supervisor::{Control, Supervisor};
use drover_watch::Watcher;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A change in a watched directory.
    Files,
    /// SIGHUP: always reloads, even when the files look unchanged.
    Hangup,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Files => "file change",
            Trigger::Hangup => "SIGHUP",
        }
    }
}

/// Owns the running manifest and everything a reload changes outside the supervisor.
pub(crate) struct Reloader {
    /// The manifest as named on the command line (a file or a directory).
    pub(crate) path: PathBuf,
    /// The last manifest applied.
    pub(crate) running: Manifest,
    pub(crate) supervisor: Supervisor,
    pub(crate) metrics: Metrics,
    pub(crate) log_format: LogFormatHandle,
    /// Digest of the files at the last reload applied (or the start); `None` after a failure.
    digest: Option<u64>,
    watcher: Option<Watcher>,
    files: mpsc::UnboundedSender<()>,
}

impl Reloader {
    /// A reloader for `running`, loaded from `path`; its watcher, if `settings.reload.watch`,
    /// sends on `files`.
    pub(crate) fn new(
        path: PathBuf,
        running: Manifest,
        supervisor: Supervisor,
        metrics: Metrics,
        log_format: LogFormatHandle,
        files: mpsc::UnboundedSender<()>,
    ) -> Reloader {
        let digest = Some(drover_watch::digest(&path, &running));
        let mut reloader = Reloader {
            path,
            running,
            supervisor,
            metrics,
            log_format,
            digest,
            watcher: None,
            files,
        };
        reloader.rewatch();
        reloader
    }

    /// Reloads on every trigger until both channels close.
    pub(crate) async fn run(
        mut self,
        mut files: mpsc::UnboundedReceiver<()>,
        mut hangups: mpsc::UnboundedReceiver<()>,
    ) {
        loop {
            let trigger = tokio::select! {
                Some(()) = files.recv() => Trigger::Files,
                Some(()) = hangups.recv() => Trigger::Hangup,
                else => return,
            };
            self.reload(trigger).await;
        }
    }

    async fn reload(&mut self, trigger: Trigger) {
        let digest = {
            let (path, running) = (self.path.clone(), self.running.clone());
            tokio::task::spawn_blocking(move || drover_watch::digest(&path, &running))
                .await
                .unwrap_or_default()
        };
        if trigger == Trigger::Files && Some(digest) == self.digest {
            tracing::debug!("manifest files changed on disk but read the same; nothing to do");
            return;
        }
        if !self.supervisor.is_supervising() {
            tracing::info!("draining: the manifest is not reloaded");
            return;
        }
        // Remembered only once applied: after a failure, the next change is tried again even
        // if these files read the same (it may be a file the new manifest names that appeared).
        self.digest = None;
        let span = tracing::info_span!(
            "reload",
            trigger = trigger.as_str(),
            plan = tracing::field::Empty,
            result = tracing::field::Empty,
        );
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || drover_spec::load(&path)).await;
        let new = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(err)) => {
                for line in error_lines(&err) {
                    tracing::error!(parent: &span, "reload: {line}");
                }
                self.failed(&span, "the manifest is invalid");
                return;
            }
            Err(err) => {
                tracing::error!(parent: &span, error = %err, "reload: reading the manifest failed");
                self.failed(&span, "reading the manifest failed");
                return;
            }
        };
        let plan = drover_spec::diff::plan(&self.running, &new);
        span.record("plan", plan.to_string());
        if trigger == Trigger::Files && plan.is_empty() {
            // Touched, or changed in what does not matter (a comment): nothing to apply.
            tracing::debug!(parent: &span, "manifest changed on disk; nothing to apply");
            self.digest = Some(digest);
            return;
        }
        // The one setting that can fail to apply goes first: on failure nothing changes.
        if let Err(err) = self.metrics.follow(new.settings.metrics_listen).await {
            tracing::error!(parent: &span, "reload: {err:#}");
            self.failed(&span, "the new metrics address cannot be used");
            return;
        }
        tracing::info!(parent: &span, "reload: {plan}");
        if new.settings.log_format != self.running.settings.log_format {
            self.log_format.set(new.settings.log_format);
        }
        if new.settings.service_output != self.running.settings.service_output {
            tracing::warn!(
                parent: &span,
                "reload: settings.log.service_output changes apply when drover next starts"
            );
        }
        self.supervisor.send(Control::Reload(Box::new(new.clone())));
        let rewatch = new.settings.reload_watch != self.running.settings.reload_watch
            || new.settings.reload_debounce != self.running.settings.reload_debounce
            || drover_watch::dirs_to_watch(&self.path, &new)
                != drover_watch::dirs_to_watch(&self.path, &self.running);
        self.running = new;
        self.digest = Some(digest);
        if rewatch {
            self.rewatch();
        }
        self.metrics.reload_recorded(true);
        span.record("result", "success");
    }

    fn failed(&self, span: &tracing::Span, why: &str) {
        tracing::error!(parent: span, "reload failed ({why}); the running manifest is kept");
        self.metrics.reload_recorded(false);
        span.record("result", "failure");
    }

    /// (Re)starts the watcher for the running manifest, or stops it with
    /// `settings.reload.watch: false`.
    fn rewatch(&mut self) {
        self.watcher = None;
        let settings = &self.running.settings;
        if !settings.reload_watch {
            return;
        }
        let dirs = drover_watch::dirs_to_watch(&self.path, &self.running);
        match Watcher::start(dirs, settings.reload_debounce, self.files.clone()) {
            Ok(watcher) => {
                tracing::debug!(dirs = ?watcher.dirs(), "watching the manifest");
                self.watcher = Some(watcher);
            }
            Err(err) => tracing::warn!(
                error = %err,
                "cannot watch the manifest for changes; SIGHUP still reloads it"
            ),
        }
    }
}

/// A load error as lines: each diagnostic as `file:line:col: error: key.path: message`.
pub(crate) fn error_lines(err: &drover_spec::Error) -> Vec<String> {
    match err {
        drover_spec::Error::Invalid { diagnostics } => {
            diagnostics.iter().map(ToString::to_string).collect()
        }
        drover_spec::Error::Read { path, source } => {
            vec![format!(
                "{}: error: cannot read manifest: {source}",
                path.display()
            )]
        }
    }
}
