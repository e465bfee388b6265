//! How a process ended, as containerd reports it.

use std::fmt;

use nix::sys::wait::WaitStatus;

/// A finished process's status in containerd's convention: the exit code, or 128 + the
/// signal that killed it. The shim's exits and the runtime's own are both this type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ExitStatus(u32);

impl ExitStatus {
    /// The status of a process that exited with `code`.
    pub fn exited(code: i32) -> Self {
        Self::of(Some(code), None)
    }

    /// The status of a process killed by `signal`.
    pub fn killed(signal: i32) -> Self {
        Self::of(None, Some(signal))
    }

    /// The status of a final wait status with its pid; None for statuses that are not an
    /// exit (stopped, continued).
    pub fn of_wait(ws: WaitStatus) -> Option<(i32, Self)> {
        match ws {
            WaitStatus::Exited(pid, code) => Some((pid.as_raw(), Self::exited(code))),
            WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), Self::killed(sig as i32))),
            _ => None,
        }
    }

    /// The number containerd carries in `exit_status`.
    pub fn get(self) -> u32 {
        self.0
    }

    pub fn success(self) -> bool {
        self.0 == 0
    }

    /// The one place "code, or 128 + signal" is computed. A status with neither (which
    /// the kernel does not report for a finished process) reads as 255.
    fn of(code: Option<i32>, signal: Option<i32>) -> Self {
        let n = match (code, signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
        };
        ExitStatus(n as u32)
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(s: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self::of(s.code(), s.signal())
    }
}

impl From<u32> for ExitStatus {
    /// A status as containerd already carries it (e.g. from a stored exit).
    fn from(n: u32) -> Self {
        ExitStatus(n)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn wait_statuses_map_to_code_or_128_plus_signal() {
        let pid = Pid::from_raw(42);
        let of = |ws| ExitStatus::of_wait(ws).map(|(p, s)| (p, s.get()));
        assert_eq!(of(WaitStatus::Exited(pid, 0)), Some((42, 0)));
        assert_eq!(of(WaitStatus::Exited(pid, 3)), Some((42, 3)));
        assert_eq!(
            of(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((42, 137))
        );
        assert_eq!(
            of(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some((42, 143))
        );
        assert_eq!(of(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(of(WaitStatus::Continued(pid)), None);
    }

    #[test]
    fn std_statuses_map_the_same_way() {
        use std::os::unix::process::ExitStatusExt;
        // A raw wait status: the code in the second byte, or the signal in the low bits.
        let code = std::process::ExitStatus::from_raw(3 << 8);
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(ExitStatus::from(code), ExitStatus::exited(3));
        assert_eq!(ExitStatus::from(killed).get(), 137);
        assert!(ExitStatus::exited(0).success());
        assert!(!ExitStatus::killed(9).success());
    }
}
