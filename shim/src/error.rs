//! The shim's errors and their one mapping to ttrpc status codes.
//!
//! Each variant names what was being done and to what; [`Error::code`] derives the code
//! containerd sees (and turns into its errdefs) from the variant, nowhere else.
//! NOT_FOUND comes only from [`Error::NotFound`]: no such container or process, or one
//! that has finished. A file that is missing (a pid file, a fifo, a cgroup file, the
//! bundle's spec) is an [`Error::Io`] naming its path, FAILED_PRECONDITION.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use containerd_shim_protos::ttrpc::{self, Code};
use runc_driver::Refusal;

pub type Result<T> = std::result::Result<T, Error>;

/// An error that reaches containerd (or, from `cli/`, containerd's log).
#[derive(Debug)]
pub enum Error {
    /// The runtime failed: its own typed error. What the runtime's message means (by
    /// the driver's table) decides the code; a missing container is [`Error::NotFound`].
    Runtime(runc_driver::Error),
    /// `what` ("container c1", "exec e1 in container c1") is not there, or has finished.
    NotFound { what: String, why: Missing },
    /// `op` is not allowed on `what` in its state: `state` is what it is, `allowed` what
    /// it would have to be.
    Conflict {
        op: String,
        what: String,
        state: &'static str,
        allowed: &'static str,
        hint: &'static str,
    },
    /// Something the request relies on is not in place (the message says what).
    Precondition(String),
    /// A system call or file operation failed: `op` on `path`.
    Io {
        op: String,
        path: Option<PathBuf>,
        source: io::Error,
    },
    /// The request is malformed (the message names the field and the value).
    Invalid(String),
    /// `what` exists already.
    AlreadyExists { what: String },
    /// `op` did not finish within `after`.
    DeadlineExceeded { op: String, after: Duration },
    /// `what` is not implemented by rsrunc.
    Unimplemented { what: String },
    /// The shim failed on its own (the message says doing what).
    Internal(String),
}

/// Why a container or process is not found.
#[derive(Debug)]
pub enum Missing {
    /// This shim has no such container or exec.
    NotInShim,
    /// It has exited: a signal has nothing to reach.
    Exited,
    /// The runtime has no such container.
    InRuntime(Box<runc_driver::Error>),
    /// The runtime says it is not running any more (a kill of a finished process).
    FinishedInRuntime(Box<runc_driver::Error>),
    /// kill(2) found no such process.
    Signal(io::Error),
}

impl Error {
    /// No container or exec by that name in this shim.
    pub fn no_such(what: impl Into<String>) -> Self {
        Error::NotFound {
            what: what.into(),
            why: Missing::NotInShim,
        }
    }

    pub fn already_exists(what: impl Into<String>) -> Self {
        Error::AlreadyExists { what: what.into() }
    }

    pub fn precondition(m: impl Into<String>) -> Self {
        Error::Precondition(m.into())
    }

    pub fn invalid(m: impl Into<String>) -> Self {
        Error::Invalid(m.into())
    }

    pub fn unimplemented(what: impl Into<String>) -> Self {
        Error::Unimplemented { what: what.into() }
    }

    pub fn internal(m: impl Into<String>) -> Self {
        Error::Internal(m.into())
    }

    /// An I/O failure of `op` (a verb and what it acted on: "create stdin pipe").
    pub fn io(op: impl fmt::Display, e: io::Error) -> Self {
        Error::Io {
            op: op.to_string(),
            path: None,
            source: e,
        }
    }

    /// An I/O failure of `op` on the file at `path` ("open stdout fifo", "/x/fifo").
    pub fn io_at(op: impl fmt::Display, path: impl Into<PathBuf>, e: io::Error) -> Self {
        Error::Io {
            op: op.to_string(),
            path: Some(path.into()),
            source: e,
        }
    }

    /// A runtime command failed. A container it does not know is NotFound; a kill of a
    /// process it says is not running is NotFound("process already finished"), as
    /// containerd's Go shim answers; the rest keep the runtime's error.
    pub fn runtime(e: runc_driver::Error) -> Self {
        if let runc_driver::Error::DeadlineExceeded {
            binary,
            verb,
            id,
            deadline,
        } = &e
        {
            return Error::DeadlineExceeded {
                op: format!("runtime {} {verb} {id} (killed)", binary.display()),
                after: *deadline,
            };
        }
        let what = match &e {
            runc_driver::Error::Failed { id, .. } => format!("container {id}"),
            _ => String::new(),
        };
        match e.refusal() {
            Some(Refusal::NoSuchContainer) => Error::NotFound {
                what,
                why: Missing::InRuntime(Box::new(e)),
            },
            Some(Refusal::NotRunning) if e.verb() == Some("kill") => Error::NotFound {
                what,
                why: Missing::FinishedInRuntime(Box::new(e)),
            },
            _ => Error::Runtime(e),
        }
    }

    /// The same message and code for every request that shared the work that failed
    /// (coalesced kills).
    pub fn shared(&self) -> Error {
        match self {
            Error::DeadlineExceeded { op, after } => Error::DeadlineExceeded {
                op: op.clone(),
                after: *after,
            },
            Error::NotFound { what, .. } => Error::NotFound {
                what: what.clone(),
                why: Missing::Exited,
            },
            _ => self.again(),
        }
    }

    /// The same message again, with the same code, for an error kept and reported to every
    /// request that needs what failed (the host configuration). A kept error is never a
    /// missing task, so NOT_FOUND does not occur.
    pub fn again(&self) -> Error {
        let m = self.to_string();
        match self.code() {
            Code::INVALID_ARGUMENT => Error::Invalid(m),
            Code::FAILED_PRECONDITION => Error::Precondition(m),
            _ => Error::Internal(m),
        }
    }

    /// The ttrpc code: the one place it is decided.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound { .. } => Code::NOT_FOUND,
            Error::AlreadyExists { .. } => Code::ALREADY_EXISTS,
            Error::Conflict { .. } | Error::Precondition(_) => Code::FAILED_PRECONDITION,
            Error::Invalid(_) => Code::INVALID_ARGUMENT,
            Error::Unimplemented { .. } => Code::UNIMPLEMENTED,
            Error::DeadlineExceeded { .. } => Code::DEADLINE_EXCEEDED,
            // containerd shows UNKNOWN's message as it is, as for the Go shim's failures.
            Error::Internal(_) => Code::UNKNOWN,
            Error::Io { source, .. } => match source.kind() {
                // A file or directory that should be there is not: not a missing task.
                io::ErrorKind::NotFound => Code::FAILED_PRECONDITION,
                io::ErrorKind::InvalidInput => Code::INVALID_ARGUMENT,
                _ => Code::UNKNOWN,
            },
            Error::Runtime(e) => match (e, e.refusal()) {
                (_, Some(Refusal::AlreadyExists)) => Code::ALREADY_EXISTS,
                // Not running (for anything but kill), or a container the shim has and
                // the runtime lost: the state does not allow the command.
                (_, Some(Refusal::NotRunning | Refusal::NoSuchContainer)) => {
                    Code::FAILED_PRECONDITION
                }
                (runc_driver::Error::Spawn { .. }, None) => Code::FAILED_PRECONDITION,
                (_, None) => Code::UNKNOWN,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Runtime(e) => write!(f, "{e}"),
            Error::NotFound { what, why } => match why {
                Missing::NotInShim => write!(f, "{what} not found in this shim"),
                Missing::Exited => write!(f, "process already finished: {what} has exited"),
                Missing::InRuntime(e) => write!(f, "{e}"),
                Missing::FinishedInRuntime(e) => write!(f, "process already finished: {e}"),
                Missing::Signal(e) => write!(f, "process already finished: signal {what}: {e}"),
            },
            Error::Conflict {
                op,
                what,
                state,
                allowed,
                hint,
            } => write!(f, "cannot {op} {what}: it is {state}, not {allowed}{hint}"),
            Error::Precondition(m) | Error::Invalid(m) | Error::Internal(m) => f.write_str(m),
            Error::Io {
                op,
                path: Some(path),
                source,
            } => write!(f, "{op} {}: {source}", path.display()),
            Error::Io {
                op,
                path: None,
                source,
            } => write!(f, "{op}: {source}"),
            Error::AlreadyExists { what } => write!(f, "{what} already exists"),
            Error::DeadlineExceeded { op, after } => {
                write!(f, "{op}: no answer within {} s", after.as_secs_f64())
            }
            Error::Unimplemented { what } => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {}

impl From<runc_driver::Error> for Error {
    fn from(e: runc_driver::Error) -> Self {
        Error::runtime(e)
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(e: Error) -> (Code, String) {
        let msg = e.to_string();
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.message, msg);
                (s.code(), s.message)
            }
            other => panic!("not a status: {other:?}"),
        }
    }

    fn failed(verb: &'static str, m: &str) -> runc_driver::Error {
        runc_driver::Error::Failed {
            binary: "runc".into(),
            verb,
            id: "c1".into(),
            status: runc_driver::ExitStatus::exited(1),
            message: m.into(),
        }
    }

    fn enoent() -> io::Error {
        io::Error::from(io::ErrorKind::NotFound)
    }

    #[test]
    fn not_found_is_a_missing_task_or_process() {
        let (code, msg) = status_of(Error::no_such("container c1"));
        assert_eq!(code, Code::NOT_FOUND);
        assert_eq!(msg, "container c1 not found in this shim");
        let e = Error::NotFound {
            what: "exec e1 in container c1".into(),
            why: Missing::Exited,
        };
        assert_eq!(
            status_of(e),
            (
                Code::NOT_FOUND,
                "process already finished: exec e1 in container c1 has exited".into()
            )
        );
        let e = Error::runtime(failed("kill", "container does not exist"));
        assert_eq!(status_of(e).0, Code::NOT_FOUND);
        let (code, msg) = status_of(Error::runtime(failed("kill", "container not running")));
        assert_eq!(code, Code::NOT_FOUND);
        assert!(
            msg.starts_with("process already finished: runc kill c1"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_file_is_a_failed_precondition_naming_it() {
        let (code, msg) = status_of(Error::io_at("read pid file", "/b/init.pid", enoent()));
        assert_eq!(code, Code::FAILED_PRECONDITION);
        assert!(msg.starts_with("read pid file /b/init.pid: "), "{msg}");
    }

    #[test]
    fn failed_precondition_for_states_and_preconditions() {
        let e = Error::Conflict {
            op: "pause".into(),
            what: "container c1".into(),
            state: "stopped",
            allowed: "running",
            hint: "",
        };
        assert_eq!(
            status_of(e),
            (
                Code::FAILED_PRECONDITION,
                "cannot pause container c1: it is stopped, not running".into()
            )
        );
        assert_eq!(
            status_of(Error::precondition("root filesystem /r does not exist")).0,
            Code::FAILED_PRECONDITION
        );
        // Not running, for anything but kill, is the state's business.
        let e = Error::runtime(failed("pause", "container not running"));
        assert_eq!(status_of(e).0, Code::FAILED_PRECONDITION);
        let spawn = runc_driver::Error::Spawn {
            binary: "/no/runc".into(),
            source: enoent(),
        };
        assert_eq!(
            status_of(Error::runtime(spawn)).0,
            Code::FAILED_PRECONDITION
        );
    }

    #[test]
    fn invalid_argument() {
        assert_eq!(
            status_of(Error::invalid("signal 0 is not a signal")),
            (Code::INVALID_ARGUMENT, "signal 0 is not a signal".into())
        );
        let e = Error::io("mount", io::Error::from(io::ErrorKind::InvalidInput));
        assert_eq!(status_of(e).0, Code::INVALID_ARGUMENT);
    }

    #[test]
    fn already_exists() {
        assert_eq!(
            status_of(Error::already_exists("container c1")),
            (Code::ALREADY_EXISTS, "container c1 already exists".into())
        );
        let e = Error::runtime(failed(
            "create",
            "runc create failed: container with given ID already exists",
        ));
        assert_eq!(status_of(e).0, Code::ALREADY_EXISTS);
    }

    #[test]
    fn deadline_exceeded() {
        let e = Error::DeadlineExceeded {
            op: "runc start c1".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(
            status_of(e),
            (
                Code::DEADLINE_EXCEEDED,
                "runc start c1: no answer within 2 s".into()
            )
        );
    }

    #[test]
    fn a_kept_error_comes_again_with_its_code() {
        for e in [
            Error::invalid("bad option"),
            Error::io_at("read host config", "/etc/x", enoent()),
            Error::io("read", io::Error::from_raw_os_error(libc::EIO)),
        ] {
            let again = e.again();
            assert_eq!((again.code(), again.to_string()), (e.code(), e.to_string()));
        }
    }

    #[test]
    fn unimplemented() {
        assert_eq!(
            status_of(Error::unimplemented("Checkpoint is not supported")).0,
            Code::UNIMPLEMENTED
        );
    }

    #[test]
    fn unknown_for_the_runtimes_and_the_shims_own_failures() {
        let (code, msg) = status_of(Error::runtime(failed("start", "permission denied")));
        assert_eq!(code, Code::UNKNOWN);
        assert_eq!(
            msg,
            "runc start c1 failed (exit status 1): permission denied"
        );
        assert_eq!(
            status_of(Error::internal("encode options")).0,
            Code::UNKNOWN
        );
        let e = Error::io(
            "create stdin pipe",
            io::Error::from_raw_os_error(libc::EMFILE),
        );
        assert_eq!(status_of(e).0, Code::UNKNOWN);
    }
}
