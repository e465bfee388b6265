//! A process's lifecycle: its status, what is done to it, and the legal transitions.
//!
//! Every change of a process's status goes through [`Status::after`], which refuses an
//! illegal one with FailedPrecondition naming the operation and the current status.

use std::fmt;
use std::time::SystemTime;

use runc_driver::ExitStatus;

use crate::error::{Error, Result};

/// One finished process: reaped by the reaper, recorded as a process's final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    pub status: ExitStatus,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created by the runtime (an init) or recorded by Exec (an exec), waiting for Start.
    Created,
    /// Start is running the runtime; an exit that arrives now waits for it to finish.
    Starting,
    Running,
    Paused,
    /// Reaped: its pid is free and may already be another process's. Its exit becomes
    /// final (Wait answered, TaskExit published) once its output is in its fifos, and
    /// for an init once no exec is live.
    Exiting(Exit),
    Stopped(Exit),
}

/// What is done to a process: a request, or what supervision saw happen to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Start was asked: created to starting.
    Start,
    /// The runtime started it: starting to running.
    Started,
    /// The runtime failed to start it: starting back to created.
    StartFailed,
    Pause,
    Resume,
    /// Its exit was routed to it: to exiting.
    Exit(Exit),
    /// Its output is in its fifos (and an init's execs are gone): its exit is final.
    Settle,
    /// Checks only, the status stays.
    Delete,
    Exec,
    Update,
    Signal,
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exiting(_) => "exiting",
            Status::Stopped(_) => "stopped",
        }
    }

    pub fn exit(&self) -> Option<Exit> {
        match self {
            Status::Stopped(e) => Some(*e),
            _ => None,
        }
    }

    /// Its exit once it has been reaped, final or not: it can no longer be signalled by
    /// pid, and a Kill answers as for a process that has exited.
    pub fn reaped(&self) -> Option<Exit> {
        match self {
            Status::Exiting(e) | Status::Stopped(e) => Some(*e),
            _ => None,
        }
    }

    /// Started and not stopped: a final exit is still to come (or is waiting for Start).
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Status::Starting | Status::Running | Status::Paused | Status::Exiting(_)
        )
    }

    /// The status after `op`, or FailedPrecondition naming both. `what` names the process
    /// ("container c1", "exec e1 in container c1").
    pub fn after(&self, op: Op, what: &str) -> Result<Status> {
        use Status::*;
        let next = match (op, self) {
            (Op::Start, Created) => Some(Starting),
            (Op::Started, Starting) => Some(Running),
            (Op::StartFailed, Starting) => Some(Created),
            (Op::Pause, Running) => Some(Paused),
            (Op::Resume, Paused) => Some(Running),
            // An init killed before it was started exits from created.
            (Op::Exit(e), Created | Running | Paused) => Some(Exiting(e)),
            (Op::Settle, Exiting(e)) => Some(Stopped(*e)),
            (Op::Delete, Created | Stopped(_)) => Some(*self),
            (Op::Exec, Running) => Some(*self),
            (Op::Update, Created | Running | Paused) => Some(*self),
            (Op::Signal, Running | Paused) => Some(*self),
            _ => None,
        };
        next.ok_or_else(|| Error::Conflict {
            op: op.to_string(),
            what: what.to_string(),
            state: self.name(),
            allowed: op.allowed(),
            hint: match (op, self) {
                (Op::Delete, Running | Paused) => ": kill it first",
                (Op::Delete, Exiting(_)) => ": wait for its exit",
                _ => "",
            },
        })
    }
}

impl Op {
    /// The statuses `op` is allowed from, as errors name them.
    fn allowed(&self) -> &'static str {
        match self {
            Op::Start => "created",
            Op::Started | Op::StartFailed => "starting",
            Op::Pause | Op::Exec => "running",
            Op::Resume => "paused",
            Op::Exit(_) | Op::Update => "created, running or paused",
            Op::Settle => "exiting",
            Op::Delete => "created or stopped",
            Op::Signal => "running or paused",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Start => "start",
            Op::Started => "mark as started",
            Op::StartFailed => "mark as not started",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Exit(_) => "record the exit of",
            Op::Settle => "make final the exit of",
            Op::Delete => "delete",
            Op::Exec => "exec in",
            Op::Update => "update the resources of",
            Op::Signal => "signal",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit() -> Exit {
        Exit {
            pid: 7,
            status: ExitStatus::exited(3),
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn stopped() -> Status {
        Status::Stopped(exit())
    }

    #[test]
    fn legal_transitions() {
        let ok = |s: Status, op| s.after(op, "c").unwrap();
        assert_eq!(ok(Status::Created, Op::Start), Status::Starting);
        assert_eq!(ok(Status::Starting, Op::Started), Status::Running);
        assert_eq!(ok(Status::Starting, Op::StartFailed), Status::Created);
        assert_eq!(ok(Status::Running, Op::Pause), Status::Paused);
        assert_eq!(ok(Status::Paused, Op::Resume), Status::Running);
        assert_eq!(
            ok(Status::Paused, Op::Exit(exit())),
            Status::Exiting(exit())
        );
        assert_eq!(
            ok(Status::Created, Op::Exit(exit())),
            Status::Exiting(exit())
        );
        assert_eq!(ok(Status::Exiting(exit()), Op::Settle), stopped());
        assert_eq!(ok(stopped(), Op::Delete), stopped());
        assert_eq!(ok(Status::Created, Op::Delete), Status::Created);
        assert_eq!(ok(Status::Paused, Op::Update), Status::Paused);
    }

    #[test]
    fn illegal_transitions_name_both_states() {
        let err = |s: Status, op| s.after(op, "container c1").unwrap_err();
        let e = err(Status::Running, Op::Start);
        assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
        assert_eq!(
            e.code(),
            containerd_shim_protos::ttrpc::Code::FAILED_PRECONDITION
        );
        assert_eq!(
            e.to_string(),
            "cannot start container c1: it is running, not created"
        );
        assert_eq!(
            err(Status::Paused, Op::Delete).to_string(),
            "cannot delete container c1: it is paused, not created or stopped: kill it first"
        );
        assert_eq!(
            err(stopped(), Op::Exec).to_string(),
            "cannot exec in container c1: it is stopped, not running"
        );
        assert_eq!(
            err(stopped(), Op::Update).to_string(),
            "cannot update the resources of container c1: it is stopped, not created, running or paused"
        );
        assert_eq!(
            err(Status::Created, Op::Signal).to_string(),
            "cannot signal container c1: it is created, not running or paused"
        );
        assert_eq!(
            err(stopped(), Op::Pause).to_string(),
            "cannot pause container c1: it is stopped, not running"
        );
        // A second exit, or an exit while starting, is never recorded over the first.
        assert!(stopped().after(Op::Exit(exit()), "c").is_err());
        assert!(Status::Starting.after(Op::Exit(exit()), "c").is_err());
        let exiting = Status::Exiting(exit());
        assert!(exiting.after(Op::Exit(exit()), "c").is_err());
        assert!(stopped().after(Op::Settle, "c").is_err());
        assert!(Status::Running.after(Op::Settle, "c").is_err());
        // Reaped: no signal by pid, no exec, and Delete only once the exit is final.
        assert_eq!(
            err(exiting, Op::Signal).to_string(),
            "cannot signal container c1: it is exiting, not running or paused"
        );
        assert!(exiting.after(Op::Exec, "c").is_err());
        assert_eq!(
            err(exiting, Op::Delete).to_string(),
            "cannot delete container c1: it is exiting, not created or stopped: wait for its exit"
        );
        assert_eq!(exiting.reaped(), Some(exit()));
        assert!(exiting.is_live());
        assert_eq!(exiting.exit(), None);
        assert!(Status::Created.after(Op::Pause, "c").is_err());
        assert!(Status::Running.after(Op::Resume, "c").is_err());
        assert!(Status::Running.after(Op::Started, "c").is_err());
    }
}
