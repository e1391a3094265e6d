//! drover-supervisor: spawning, reaping, restart policy, dependency order and stop.
//!
//! It will own every child process drover starts: the spawner (one long-lived thread that forks,
//! so `PR_SET_PDEATHSIG` stays armed), the single reaper that owns `waitpid`, the restart policy
//! with exponential backoff, start in dependency order and stop in reverse order. It publishes
//! state-change events and snapshots and never knows who consumes them (metrics, tracing, the
//! control API).
//!
//! So far it holds the restart policy (`restart`): backoff maths and the retry count, as pure
//! functions. The manifest model it consumes is `drover_spec::Manifest`.

pub mod restart;
