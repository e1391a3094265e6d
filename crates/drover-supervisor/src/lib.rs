//! drover-supervisor: spawning, reaping, restart policy, dependency order and stop.
//!
//! It owns every child process drover starts. Its parts, from the kernel up:
//! - `sys` (the `drover-sys` crate): every raw syscall and every `unsafe` block, wrapped once
//!   (spawn setup in the child, waitpid, kill, prctl), and the `/proc` parser; this crate
//!   forbids `unsafe`;
//! - `process`: the process table, the one spawner thread and the one SIGCHLD-driven reaper
//!   (the design `../shared/DEPS.md` measured: no exit status is ever lost or stolen);
//! - `restart`: backoff maths and the retry count, pure functions;
//! - `core`: the state machine of every service, a pure function of inputs and time;
//! - `runtime`: the task that performs what `core` decides and publishes events and snapshots;
//! - `output`: service stdout/stderr in `prefix` mode, never blocking supervision;
//! - `ratelimit`: a bound on log lines that outside input can provoke.
//!
//! **Boundary**: the supervisor publishes [`Event`]s and [`ServiceSnapshot`]s and never knows
//! who consumes them (metrics, tracing, a control API).
#![forbid(unsafe_code)]
// Index and slice by `get`: a panic here ends PID 1. (Tests index freely.)
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod cgroup;
mod core;
pub mod guard;
mod hooks;
mod output;
mod passwd;
mod probes;
mod process;
pub mod ratelimit;
mod recent;
mod restart;
mod runtime;
use drover_sys as sys;

pub use crate::core::{
    Event, ExitCounts, HandOp, HookEvent, HookKind, HookOutcome, OpAnswer, ProbeEvent,
    RestartCounts, RestartReason, ServiceSnapshot, State, StateChange,
};
pub use crate::output::colour_allowed;
pub use crate::passwd::group_id;
pub use crate::process::{Processes, SpawnError, SpawnRequest};
pub use crate::recent::{KEPT_LINE_BYTES, OutputLine};
pub use crate::runtime::{Control, Error, Supervisor};
pub use crate::sys::{
    ExitStatus, InheritedSignals, Released, become_subreaper, block_sigpipe_on_this_thread,
    effective_uid, ignore_terminal_stops, is_pid1, private_fd_table, raise_open_file_limit,
    realtime_signals, release_read_only_pages, reserve_descriptors, send_signal,
    set_parent_death_signal,
};
pub use drover_probe::{CheckOutcome, ProbeKind};
