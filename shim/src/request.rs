//! What a request names, parsed once at the edge: container and exec ids, and signals.
//! The core takes these types only, so it never sees an id that could not be a
//! directory name or a signal the kernel would refuse.

use std::fmt;

use crate::error::{Error, Result};

/// containerd's identifier rule (`pkg/identifiers`): at most 76 characters, letters and
/// digits in runs separated by single `.`, `_` or `-`. containerd checks container and
/// exec ids by it before they reach a shim; a direct caller is held to it here.
const MAX_ID_LEN: usize = 76;

fn check_identifier(kind: &str, s: &str) -> Result<()> {
    let why = if s.is_empty() {
        Some("it must not be empty")
    } else if s.len() > MAX_ID_LEN {
        Some("it is longer than 76 characters")
    } else if !is_identifier(s) {
        Some("it must be letters and digits, with single '.', '_' or '-' between them")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::invalid(format!("invalid {kind} {s:?}: {why}"))),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut prev_sep = true; // the first character must be alphanumeric
    for c in s.chars() {
        let sep = matches!(c, '.' | '_' | '-');
        if !(sep || c.is_ascii_alphanumeric()) || (sep && prev_sep) {
            return false;
        }
        prev_sep = sep;
    }
    !prev_sep
}

/// A container (task) id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(String);

/// An exec process's id, unique within its container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecId(String);

impl ContainerId {
    pub fn parse(s: &str) -> Result<Self> {
        check_identifier("container id", s)?;
        Ok(ContainerId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ExecId {
    pub fn parse(s: &str) -> Result<Self> {
        check_identifier("exec id", s)?;
        Ok(ExecId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ExecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One process: a container's init, or one of its execs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    pub container: ContainerId,
    pub exec: Option<ExecId>,
}

impl ProcessId {
    /// From a request's `id` and `exec_id` (empty for the init).
    pub fn parse(id: &str, exec_id: &str) -> Result<Self> {
        Ok(ProcessId {
            container: ContainerId::parse(id)?,
            exec: if exec_id.is_empty() {
                None
            } else {
                Some(ExecId::parse(exec_id)?)
            },
        })
    }

    pub fn id(&self) -> &str {
        self.container.as_str()
    }

    /// The exec id, empty for the init (as the supervisor keys processes).
    pub fn exec_id(&self) -> &str {
        self.exec.as_ref().map_or("", ExecId::as_str)
    }
}

/// A signal number the kernel accepts: 1 to 64, the real-time signals (SIGRTMIN+n,
/// 34 to 64) included, for an init and an exec alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

/// SIGRTMAX on Linux.
const MAX_SIGNAL: u32 = 64;

impl Signal {
    pub const KILL: Signal = Signal(libc::SIGKILL);

    pub fn parse(n: u32) -> Result<Self> {
        if n == 0 || n > MAX_SIGNAL {
            return Err(Error::invalid(format!(
                "signal {n} is not a signal: it must be 1 to {MAX_SIGNAL}"
            )));
        }
        Ok(Signal(n as i32))
    }

    pub fn number(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    #[test]
    fn ids_follow_containerds_rule() {
        for ok in ["abc", "abc-123_x.y", "A1", &"f".repeat(64), &"a".repeat(76)] {
            assert!(ContainerId::parse(ok).is_ok(), "{ok}");
            assert!(ExecId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\0b",
            "-a",
            "a-",
            "a..b",
            "a b",
            &"a".repeat(77),
        ] {
            let e = ContainerId::parse(bad).unwrap_err();
            assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{bad:?}");
            assert!(e.to_string().starts_with("invalid container id"), "{e}");
            let e = ExecId::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid exec id"), "{e}");
        }
    }

    #[test]
    fn an_empty_exec_id_is_the_init() {
        let p = ProcessId::parse("c1", "").unwrap();
        assert_eq!((p.id(), p.exec_id(), p.exec.clone()), ("c1", "", None));
        let p = ProcessId::parse("c1", "e1").unwrap();
        assert_eq!(p.exec_id(), "e1");
        assert!(ProcessId::parse("c1", "e/1").is_err());
        assert!(ProcessId::parse("", "e1").is_err());
    }

    #[test]
    fn signals_from_1_to_64_real_time_included() {
        for n in [1, 9, 15, 34, 37, 64] {
            assert_eq!(Signal::parse(n).unwrap().number(), n as i32);
        }
        for n in [0, 65, 1000, u32::MAX] {
            let e = Signal::parse(n).unwrap_err();
            assert_eq!(e.code(), Code::INVALID_ARGUMENT);
            assert!(e.to_string().contains(&format!("signal {n} ")), "{e}");
        }
    }
}
