//! How a process ended, as containerd reports it.

use std::fmt;

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

    /// The status of a raw wait(2) status; None for statuses that are not an exit
    /// (stopped, continued). Raw, because nix's `WaitStatus` cannot hold a real-time
    /// signal: a process killed by SIGRTMIN+n made its `waitpid` fail with EINVAL.
    pub fn of_raw(status: i32) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(Self::exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Self::killed(libc::WTERMSIG(status)))
        } else {
            None
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

    #[test]
    fn wait_statuses_map_to_code_or_128_plus_signal() {
        // Raw statuses as the kernel encodes them: the code in the second byte, the
        // signal in the low seven bits (0x80 for a core dump), 0x7f for stopped.
        let of = |raw| ExitStatus::of_raw(raw).map(ExitStatus::get);
        assert_eq!(of(0), Some(0));
        assert_eq!(of(3 << 8), Some(3));
        assert_eq!(of(libc::SIGKILL), Some(137));
        assert_eq!(of(libc::SIGTERM | 0x80), Some(143));
        // SIGRTMIN+3, which nix's WaitStatus cannot represent.
        assert_eq!(of(37), Some(165));
        assert_eq!(of(64), Some(192));
        assert_eq!(of((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(of(0xffff), None); // continued
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
