//! A process's lifecycle as an enum with legal transitions.

use std::fmt;
use std::time::SystemTime;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created by the runtime, waiting for Start.
    Created,
    Running,
    Paused,
    Stopped(ExitInfo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub status: u32,
    pub at: SystemTime,
}

/// What is being done to a process, for the error when it is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Pause,
    Resume,
    Delete,
    Exec,
    Update,
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped(_) => "stopped",
        }
    }

    pub fn exit(&self) -> Option<ExitInfo> {
        match self {
            Status::Stopped(e) => Some(*e),
            _ => None,
        }
    }

    /// The state after `op` succeeds, or FailedPrecondition naming both.
    pub fn after(&self, op: Op, what: &str) -> Result<Status> {
        let next = match (op, self) {
            (Op::Start, Status::Created) => Some(Status::Running),
            (Op::Pause, Status::Running) => Some(Status::Paused),
            (Op::Resume, Status::Paused) => Some(Status::Running),
            (Op::Delete, Status::Created | Status::Stopped(_)) => Some(*self),
            (Op::Exec, Status::Running) => Some(*self),
            (Op::Update, Status::Created | Status::Running | Status::Paused) => Some(*self),
            _ => None,
        };
        next.ok_or_else(|| {
            let hint = match (op, self) {
                (Op::Delete, Status::Running | Status::Paused) => ": kill it first",
                _ => "",
            };
            Error::failed_precondition(format!("cannot {op} {what}: it is {}{hint}", self.name()))
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Start => "start",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Delete => "delete",
            Op::Exec => "exec in",
            Op::Update => "update the resources of",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn stopped() -> Status {
        Status::Stopped(ExitInfo {
            status: 3,
            at: SystemTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn legal_transitions() {
        assert_eq!(
            Status::Created.after(Op::Start, "c").unwrap(),
            Status::Running
        );
        assert_eq!(
            Status::Running.after(Op::Pause, "c").unwrap(),
            Status::Paused
        );
        assert_eq!(
            Status::Paused.after(Op::Resume, "c").unwrap(),
            Status::Running
        );
        assert_eq!(stopped().after(Op::Delete, "c").unwrap(), stopped());
        assert_eq!(
            Status::Created.after(Op::Delete, "c").unwrap(),
            Status::Created
        );
    }

    #[test]
    fn illegal_transitions_name_both_states() {
        let e = Status::Running
            .after(Op::Start, "container c1")
            .unwrap_err();
        assert_eq!(e.kind, Kind::FailedPrecondition);
        assert_eq!(e.message, "cannot start container c1: it is running");
        let e = Status::Paused
            .after(Op::Delete, "container c1")
            .unwrap_err();
        assert_eq!(
            e.message,
            "cannot delete container c1: it is paused: kill it first"
        );
        let e = stopped().after(Op::Exec, "container c1").unwrap_err();
        assert_eq!(e.message, "cannot exec in container c1: it is stopped");
        let e = stopped().after(Op::Update, "container c1").unwrap_err();
        assert_eq!(
            e.message,
            "cannot update the resources of container c1: it is stopped"
        );
        assert!(Status::Paused.after(Op::Update, "c").is_ok());
        assert!(Status::Created.after(Op::Pause, "c").is_err());
        assert!(Status::Running.after(Op::Resume, "c").is_err());
    }
}
