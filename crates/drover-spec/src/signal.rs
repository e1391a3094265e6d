//! The signals a manifest may name (`stop.signal`): Linux's 31 standard signals, by name or
//! number, with the numbers of the generic Linux ABI (x86_64, aarch64 and most others; the
//! supervisor's tests check every number against the C library's). The spec's own type: the
//! leaf crate knows signals by name and number, and sends none.

use std::fmt;

/// One of Linux's standard signals, 1 to 31.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Names in number order: `NAMES[n - 1]` is signal `n`.
const NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

impl Signal {
    /// Hang-up.
    pub const SIGHUP: Signal = Signal(1);
    /// Interrupt (Ctrl-C).
    pub const SIGINT: Signal = Signal(2);
    /// Quit.
    pub const SIGQUIT: Signal = Signal(3);
    /// Kill: cannot be caught.
    pub const SIGKILL: Signal = Signal(9);
    /// User-defined 1.
    pub const SIGUSR1: Signal = Signal(10);
    /// User-defined 2.
    pub const SIGUSR2: Signal = Signal(12);
    /// Terminate: the default stop signal.
    pub const SIGTERM: Signal = Signal(15);
    /// Window size change.
    pub const SIGWINCH: Signal = Signal(28);

    /// The signal numbered `number`, if it is a standard one.
    pub fn from_number(number: i32) -> Option<Signal> {
        (1..=31).contains(&number).then_some(Signal(number))
    }

    /// The signal named exactly `name` (`SIGTERM`).
    pub fn from_name(name: &str) -> Option<Signal> {
        let at = NAMES.iter().position(|&n| n == name)?;
        Signal::from_number(i32::try_from(at).ok()?.checked_add(1)?)
    }

    /// Its number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Its name, `SIGTERM`.
    pub fn as_str(self) -> &'static str {
        usize::try_from(self.0 - 1)
            .ok()
            .and_then(|at| NAMES.get(at))
            .copied()
            .unwrap_or("SIG?")
    }

    /// Every signal, in number order.
    pub fn iterator() -> impl Iterator<Item = Signal> {
        (1..=31).map(Signal)
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[test]
    fn names_and_numbers_round_trip() {
        for signal in Signal::iterator() {
            assert_eq!(Signal::from_name(signal.as_str()), Some(signal));
            assert_eq!(Signal::from_number(signal.number()), Some(signal));
        }
        assert_eq!(Signal::from_name("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(Signal::SIGKILL.as_str(), "SIGKILL");
        assert_eq!(Signal::from_number(0), None);
        assert_eq!(Signal::from_number(32), None);
        assert_eq!(Signal::from_number(-15), None);
        assert_eq!(Signal::from_name("TERM"), None);
    }
}
