//! The drover binary end to end: real processes, real signals, real files.
//!
//! Every test that waits does so with a deadline, polling a condition; every process a test
//! starts is killed by the pid it recorded when the test ends, passed or not.
// These tests run drover as a child and wait for it; there is no reaper in the test process,
// so std's wait is the right tool here.
#![allow(clippy::disallowed_methods)]

mod cli;
mod control;
mod hardening;
mod hooks;
mod init;
mod metrics;
mod otel;
mod pid1;
mod probes;
mod reload;
mod run;
mod signals;
mod static_root;
mod systemd;
mod util;
