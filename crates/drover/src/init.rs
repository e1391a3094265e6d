//! `drover -- CMD [ARGS...]`: a tini-compatible single-command init.
//!
//! CMD is the only child, in its own process group inside drover's session, and that group
//! takes the terminal's foreground when there is one, so Ctrl-C and job control reach CMD.
//! Every catchable signal sent to drover is forwarded to CMD itself. Zombies are reaped. When
//! CMD exits, what remains of its descendants gets SIGTERM, then SIGKILL after a short grace,
//! and drover exits with CMD's code (128+N for signal N).

use crate::tini::InitOptions;
use drover_supervisor::{InheritedSignals, Processes, SpawnRequest};
use std::io::IsTerminal;
use std::process::Command;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

/// Grace between SIGTERM and SIGKILL for descendants left when CMD exits.
const DESCENDANT_GRACE: Duration = Duration::from_secs(2);

/// Signals forwarded to CMD: every catchable one but those the kernel raises for a fault in
/// drover itself, SIGCHLD (ours) and SIGTTIN/SIGTTOU (about drover's own terminal use), as tini
/// does; plus every real-time signal. SIGPIPE is forwarded when it comes from outside: the
/// threads that write to drover's stdout and stderr block it, so one their writes raise stays
/// pending there and is never taken for one sent to drover.
fn forwarded_signals() -> Vec<i32> {
    // And the two that cannot be caught.
    const NOT_FORWARDED: [&str; 12] = [
        "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGSEGV", "SIGCHLD",
        "SIGSTOP", "SIGTTIN", "SIGTTOU", "SIGSYS",
    ];
    let mut numbers: Vec<i32> = drover_spec::model::Signal::iterator()
        .filter(|signal| !NOT_FORWARDED.contains(&signal.as_str()))
        .map(drover_spec::model::Signal::number)
        .collect();
    numbers.extend(drover_supervisor::realtime_signals());
    numbers
}

/// Runs CMD to its end; returns drover's exit code.
pub(crate) async fn init(options: InitOptions, inherited: InheritedSignals) -> anyhow::Result<i32> {
    drover_supervisor::ignore_terminal_stops();
    if let Some(signal) = options.parent_death_signal {
        // tini's -p: told when drover's own parent dies.
        if let Err(err) = drover_supervisor::set_parent_death_signal(signal) {
            tracing::warn!(signal, error = %err, "cannot set the parent-death signal");
        }
    }
    if !drover_supervisor::is_pid1()
        && let Err(err) = drover_supervisor::become_subreaper()
    {
        tracing::warn!(error = %err, "cannot become child subreaper; orphans will not be reaped");
    }
    // Handlers first: a signal that arrives while CMD starts waits in its stream.
    let (forward, mut forwarded) = mpsc::unbounded_channel::<i32>();
    for number in forwarded_signals() {
        let mut stream = signal(SignalKind::from_raw(number))?;
        let forward = forward.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if forward.send(number).is_err() {
                    break;
                }
            }
        });
    }
    let processes = Processes::start()?;
    let Some((program, args)) = options.argv.split_first() else {
        anyhow::bail!("no command given");
    };
    if options.warn_zombies {
        let processes = processes.clone();
        tokio::spawn(async move {
            loop {
                processes.orphan_reaped().await;
                tracing::warn!(
                    reaped = processes.orphans_reaped(),
                    "reaped a zombie process that was not CMD"
                );
            }
        });
    }
    let mut command = Command::new(program);
    command.args(args);
    let (exited, exit) = oneshot::channel();
    let request = SpawnRequest {
        command,
        new_session: false,
        foreground: std::io::stdin().is_terminal(),
        inherit_signals: Some(inherited),
        user: None,
        working_dir: None,
        cgroup: None,
        stdio: [None, None, None],
        arg0: None,
        outlives_drover: false,
        keep_inherited_fds: true,
        waiter: Box::new(move |_, status| {
            let _ = exited.send(status);
        }),
    };
    let pid = match processes.spawn(request).await {
        Ok(pid) => pid,
        Err(err) => {
            let hint = match &err {
                drover_supervisor::SpawnError::NotFound { .. } => {
                    crate::tini::subcommand_hint(program).unwrap_or_default()
                }
                _ => String::new(),
            };
            crate::logging::LogQueue::print(&format!("drover: {err}{hint}"));
            return Ok(err.exit_code());
        }
    };
    tokio::pin!(exit);
    let status = loop {
        tokio::select! {
            // The exit first: no signal goes to CMD's pid once it has been reaped.
            biased;
            status = &mut exit => break status?,
            Some(number) = forwarded.recv() => {
                // -g: to CMD's whole process group (CMD leads it).
                let target = if options.kill_group { -pid.as_raw() } else { pid.as_raw() };
                if let Err(err) = drover_supervisor::send_signal(target, number) {
                    tracing::debug!(signal = number, error = %err, "cannot forward a signal");
                }
            }
        }
    };
    processes.end_descendants(DESCENDANT_GRACE).await;
    let code = status.code();
    // -e CODE: an exit code of CMD's that means success.
    let remapped = matches!(status, drover_supervisor::ExitStatus::Exited(c)
        if u8::try_from(c).is_ok_and(|c| options.remap_to_zero.contains(&c)));
    Ok(if remapped { 0 } else { code })
}

#[cfg(test)]
mod tests {
    /// tini's 19 standard signals (every name known to the manifest's table), then every
    /// real-time one.
    #[test]
    fn every_forwarded_name_is_a_signal() {
        let numbers = super::forwarded_signals();
        let realtime = drover_supervisor::realtime_signals().count();
        assert_eq!(numbers.len(), 19 + realtime);
        // SIGPIPE (13) included, SIGCHLD (17) not.
        assert!(numbers.contains(&13) && !numbers.contains(&17));
    }
}
