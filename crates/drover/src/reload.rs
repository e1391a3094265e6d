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
//! A change on disk is read and planned; one that changes nothing that matters (a touched file,
//! a comment) is applied silently as nothing. After a failure, changes whose files read the same
//! as the failed ones ([`drover_watch::digest`]) are not tried again.

use crate::logging::LogFormatHandle;
use drover_metrics::Endpoint;
use drover_spec::Manifest;
use drover_spec::diff::Plan;
use drover_supervisor::{Control, Supervisor};
use drover_watch::Watcher;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A change in a watched directory.
    Files,
    /// SIGHUP: always reloads, even when the files look unchanged.
    Hangup,
    /// `drover reload` (the control socket): as SIGHUP, and the asker gets the outcome.
    Request,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Files => "file change",
            Trigger::Hangup => "SIGHUP",
            Trigger::Request => "drover reload",
        }
    }
}

/// A reload trigger, with where its outcome goes (for `drover reload`).
#[derive(Debug)]
pub(crate) struct Asked {
    pub(crate) trigger: Trigger,
    pub(crate) answer: Option<oneshot::Sender<drover_control::api::ReloadAnswer>>,
}

/// A copy carries no answer: only the watcher copies its message, which has none.
impl Clone for Asked {
    fn clone(&self) -> Asked {
        self.trigger.into()
    }
}

impl From<Trigger> for Asked {
    fn from(trigger: Trigger) -> Asked {
        Asked {
            trigger,
            answer: None,
        }
    }
}

impl ReloadOutcome {
    /// The answer `drover reload` prints.
    pub(crate) fn answer(&self) -> drover_control::api::ReloadAnswer {
        use drover_control::api::ReloadAnswer;
        let answer = |applied, plan: Option<String>, errors, message: &str| ReloadAnswer {
            applied,
            plan,
            errors,
            message: message.to_string(),
        };
        match self {
            ReloadOutcome::Applied(plan) => {
                answer(true, Some(plan.to_string()), Vec::new(), "applied")
            }
            ReloadOutcome::Unchanged => answer(true, None, Vec::new(), "nothing changed"),
            ReloadOutcome::StillFailing => answer(
                false,
                None,
                Vec::new(),
                "the manifest still reads as when it last failed",
            ),
            ReloadOutcome::Draining => answer(
                false,
                None,
                Vec::new(),
                "drover is shutting down: nothing is applied",
            ),
            ReloadOutcome::Failed(lines) => answer(
                false,
                None,
                lines.clone(),
                "the manifest is not applied; the running one is kept",
            ),
        }
    }
}

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReloadOutcome {
    /// The new manifest runs: its services' plan (settings applied too).
    Applied(Arc<Plan>),
    /// The files changed in nothing that matters (touched, a comment): nothing to apply.
    Unchanged,
    /// The files read as when the last reload failed: not tried again.
    StillFailing,
    /// drover is draining: nothing is applied.
    Draining,
    /// The new manifest cannot be used, for these reasons (each `file:line:col: error: …`
    /// where it has a place); the running one is kept.
    Failed(Vec<String>),
}

/// Owns the running manifest and everything a reload changes outside the supervisor.
pub(crate) struct Reloader {
    /// The manifest as named on the command line (a file or a directory).
    pub(crate) path: PathBuf,
    /// The last manifest applied.
    pub(crate) running: Manifest,
    pub(crate) supervisor: Supervisor,
    pub(crate) metrics: Endpoint,
    pub(crate) log_format: LogFormatHandle,
    /// Digest of the watched files when the last reload failed; a change on disk that reads
    /// the same is not tried again.
    failed_digest: Option<u64>,
    /// `drover run MANIFEST SERVICE...`: each new manifest is cut down to those too.
    selection: Vec<String>,
    watcher: Option<Watcher>,
    /// The trigger channel, for the watcher's `Trigger::Files`.
    triggers: mpsc::UnboundedSender<Asked>,
}

impl Reloader {
    /// A reloader for `running`, loaded from `path`; its watcher, if `settings.reload.watch`,
    /// sends on `triggers`.
    pub(crate) fn new(
        path: PathBuf,
        selection: Vec<String>,
        running: Manifest,
        supervisor: Supervisor,
        metrics: Endpoint,
        log_format: LogFormatHandle,
        triggers: mpsc::UnboundedSender<Asked>,
    ) -> Reloader {
        let mut reloader = Reloader {
            path,
            selection,
            running,
            supervisor,
            metrics,
            log_format,
            failed_digest: None,
            watcher: None,
            triggers,
        };
        // A change between the start's read of the manifest and the watcher's start is looked
        // at now (the plan is empty if there was none).
        if reloader.rewatch() {
            let _ = reloader.triggers.send(Trigger::Files.into());
        }
        reloader
    }

    /// Reloads on every trigger (file changes, SIGHUP and `drover reload`, on one channel)
    /// until it closes; an asker gets the outcome.
    pub(crate) async fn run(mut self, mut triggers: mpsc::UnboundedReceiver<Asked>) {
        while let Some(asked) = triggers.recv().await {
            let outcome = self.reload(asked.trigger).await;
            if let Some(answer) = asked.answer {
                let _ = answer.send(outcome.answer());
            }
        }
    }

    /// Reads, checks and applies the manifest once, for `trigger`; logs and counts what
    /// happened, and returns it.
    pub(crate) async fn reload(&mut self, trigger: Trigger) -> ReloadOutcome {
        let digest = {
            let (path, dirs) = (self.path.clone(), self.watched_dirs());
            tokio::task::spawn_blocking(move || drover_watch::digest(&path, &dirs))
                .await
                .unwrap_or_default()
        };
        if trigger == Trigger::Files && Some(digest) == self.failed_digest {
            tracing::debug!("the manifest still reads as when it last failed; nothing to do");
            return ReloadOutcome::StillFailing;
        }
        if !self.supervisor.is_supervising() {
            tracing::info!("draining: the manifest is not reloaded");
            return ReloadOutcome::Draining;
        }
        let path = self.path.clone();
        let started = std::time::Instant::now();
        let selection = self.selection.clone();
        // A selected service the new manifest no longer has fails the reload.
        let loaded = tokio::task::spawn_blocking(move || {
            drover_spec::load(&path).and_then(|manifest| manifest.only(&selection))
        })
        .await;
        let read = started.elapsed();
        let plan = match &loaded {
            Ok(Ok(new)) => Some(drover_spec::diff::plan(&self.running, new)),
            _ => None,
        };
        if trigger == Trigger::Files && plan.as_ref().is_some_and(|plan| plan.is_empty()) {
            // Touched, or changed in what does not matter (a comment): nothing to apply, and
            // no reload to report.
            tracing::debug!("manifest changed on disk; nothing to apply");
            self.failed_digest = None;
            return ReloadOutcome::Unchanged;
        }
        // Created once there is something to report; it carries how long the read took.
        let span = tracing::info_span!(
            "reload",
            trigger = trigger.as_str(),
            read_ms = read.as_secs_f64() * 1000.0,
            plan = plan.as_ref().map(ToString::to_string),
            result = tracing::field::Empty,
        );
        let new = match loaded {
            Ok(Ok(new)) => new,
            Ok(Err(err)) => {
                let lines = error_lines(&err);
                for line in &lines {
                    tracing::error!(parent: &span, "reload: {line}");
                }
                self.failed(&span, digest, "the manifest is invalid");
                return ReloadOutcome::Failed(lines);
            }
            Err(err) => {
                tracing::error!(parent: &span, error = %err, "reload: reading the manifest failed");
                self.failed(&span, digest, "reading the manifest failed");
                let line = format!(
                    "{}: error: cannot read manifest: {err}",
                    self.path.display()
                );
                return ReloadOutcome::Failed(vec![line]);
            }
        };
        self.failed_digest = None;
        for warning in &new.warnings {
            tracing::warn!(parent: &span, "reload: {}", warning.warning_line());
        }
        let plan = plan.unwrap_or_default();
        // The one setting that can fail goes first: on failure nothing changes.
        let endpoint = match self.metrics.prepare(new.settings.metrics_listen) {
            Ok(endpoint) => endpoint,
            Err(err) => {
                let line = format!(
                    "{}: error: settings.metrics.listen: {err:#}",
                    self.path.display()
                );
                tracing::error!(parent: &span, "reload: {err:#}");
                self.failed(&span, digest, "the new metrics address cannot be used");
                return ReloadOutcome::Failed(vec![line]);
            }
        };
        tracing::info!(parent: &span, "reload: {plan}");
        let (applied, answer) = oneshot::channel();
        self.supervisor.send(Control::Reload {
            manifest: Box::new(new.clone()),
            applied: Some(applied),
        });
        let Some(applied) = answer.await.ok().flatten() else {
            tracing::info!(parent: &span, "draining: the new manifest is not applied");
            span.record("result", "ignored");
            return ReloadOutcome::Draining;
        };
        self.metrics
            .commit(endpoint, new.settings.metrics_listen)
            .await;
        for key in drover_spec::diff::settings_changed(&self.running.settings, &new.settings) {
            if matches!(
                key,
                "settings.log.service_output" | "settings.log.timestamps"
            ) {
                tracing::warn!(parent: &span, "reload: {key} changes apply when drover next starts");
            }
        }
        let format = (new.settings.log_format != self.running.settings.log_format)
            .then_some(new.settings.log_format);
        let rewatch = new.settings.reload_watch != self.running.settings.reload_watch
            || new.settings.reload_debounce != self.running.settings.reload_debounce
            || drover_watch::dirs_to_watch(&self.path, &new)
                != drover_watch::dirs_to_watch(&self.path, &self.running);
        self.running = new;
        self.metrics.reload_recorded(true);
        span.record("result", "success");
        // The format changes last, once the span has ended: a span formatted as text cannot
        // be the parent of a line formatted as JSON.
        drop(span);
        if let Some(format) = format {
            self.log_format.set(format);
        }
        // What changed while no watcher ran is looked at now.
        if rewatch && self.rewatch() {
            let _ = self.triggers.send(Trigger::Files.into());
        }
        // The services as the supervisor applied them, the settings as applied here.
        let mut applied = Plan::clone(&applied);
        applied.settings = plan.settings;
        ReloadOutcome::Applied(Arc::new(applied))
    }

    /// The directories watched for the running manifest.
    fn watched_dirs(&self) -> Vec<drover_watch::WatchDir> {
        drover_watch::dirs_to_watch(&self.path, &self.running)
    }

    /// Reports a failed reload of files that read as `digest`.
    fn failed(&mut self, span: &tracing::Span, digest: u64, why: &str) {
        tracing::error!(parent: span, "reload failed ({why}); the running manifest is kept");
        self.metrics.reload_recorded(false);
        span.record("result", "failure");
        self.failed_digest = Some(digest);
    }

    /// (Re)starts the watcher for the running manifest, or stops it with
    /// `settings.reload.watch: false`; whether one runs.
    fn rewatch(&mut self) -> bool {
        self.watcher = None;
        let settings = &self.running.settings;
        if !settings.reload_watch {
            return false;
        }
        let dirs = drover_watch::dirs_to_watch(&self.path, &self.running);
        match Watcher::start(
            dirs,
            settings.reload_debounce,
            self.triggers.clone(),
            Asked::from(Trigger::Files),
        ) {
            Ok(watcher) => {
                tracing::debug!(dirs = ?watcher.dirs(), "watching the manifest");
                self.watcher = Some(watcher);
                true
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "cannot watch the manifest for changes; SIGHUP still reloads it"
                );
                false
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use drover_supervisor::Processes;

    const SETTINGS: &str =
        "settings: { reload: { watch: false }, log: { service_output: discard } }\n";

    /// Each kind of reload, against a real supervisor running `sleep`, answers what it did.
    #[tokio::test]
    async fn every_reload_answers_what_it_did() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drover.yaml");
        let write = |services: &str| {
            std::fs::write(&path, format!("{SETTINGS}services:\n{services}")).expect("write");
        };
        write("  a: { command: [sleep, \"60\"] }\n");
        let manifest = drover_spec::load(&path).expect("valid");
        let processes = Processes::start().expect("processes");
        let (supervisor, done) =
            Supervisor::start(manifest.clone(), processes.clone()).expect("start");
        let endpoint = Endpoint::new(supervisor.clone(), processes, None, false);
        let (triggers, _unused) = mpsc::unbounded_channel();
        let mut reloader = Reloader::new(
            path.clone(),
            Vec::new(),
            manifest,
            supervisor.clone(),
            endpoint,
            LogFormatHandle::default(),
            triggers,
        );
        let plan = |outcome: ReloadOutcome| match outcome {
            ReloadOutcome::Applied(plan) => plan.to_string(),
            other => panic!("not applied: {other:?}"),
        };

        // A file event with nothing changed applies nothing; SIGHUP always applies.
        assert_eq!(
            reloader.reload(Trigger::Files).await,
            ReloadOutcome::Unchanged
        );
        assert_eq!(plan(reloader.reload(Trigger::Hangup).await), "=a");
        write("  a: { command: [sleep, \"60\"] }\n  b: { command: [sleep, \"61\"] }\n");
        assert_eq!(plan(reloader.reload(Trigger::Files).await), "+b =a");
        let names: Vec<_> = supervisor
            .snapshot()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);

        // An invalid manifest names the place; the same files are not tried again, except on
        // SIGHUP; the running services stay.
        write("  a: { command: [sleep, \"60\"], restart: { policy: sometimes } }\n");
        let ReloadOutcome::Failed(lines) = reloader.reload(Trigger::Files).await else {
            panic!("an invalid manifest fails");
        };
        let expected = format!("{}:3:", path.display());
        assert!(
            lines.len() == 1
                && lines[0].starts_with(&expected)
                && lines[0].contains("restart.policy"),
            "{lines:?}"
        );
        assert_eq!(
            reloader.reload(Trigger::Files).await,
            ReloadOutcome::StillFailing
        );
        assert!(matches!(
            reloader.reload(Trigger::Hangup).await,
            ReloadOutcome::Failed(_)
        ));
        assert_eq!(supervisor.snapshot().len(), 2);

        // While draining, nothing is applied.
        supervisor.send(Control::Shutdown);
        let draining = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while supervisor.is_supervising() {
                tokio::task::yield_now().await;
            }
        });
        draining.await.expect("draining within 10 s");
        write("  a: { command: [sleep, \"62\"] }\n");
        assert_eq!(
            reloader.reload(Trigger::Hangup).await,
            ReloadOutcome::Draining
        );
        let code = tokio::time::timeout(std::time::Duration::from_secs(20), done)
            .await
            .expect("drover exits within 20 s")
            .expect("join");
        assert_eq!(code, 0);
    }
}
