//! The shim's errors and their one mapping to ttrpc status codes.

use std::fmt;

use containerd_shim_protos::ttrpc::{self, Code};

pub type Result<T> = std::result::Result<T, Error>;

/// An error that reaches containerd. The kind becomes the ttrpc code (which containerd
/// turns into its own errdefs), the message is what a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Unimplemented,
    /// The runtime or the system failed; containerd shows the message as is.
    Unknown,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, m)
    }

    pub fn already_exists(m: impl Into<String>) -> Self {
        Self::new(Kind::AlreadyExists, m)
    }

    pub fn failed_precondition(m: impl Into<String>) -> Self {
        Self::new(Kind::FailedPrecondition, m)
    }

    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Kind::InvalidArgument, m)
    }

    pub fn unimplemented(m: impl Into<String>) -> Self {
        Self::new(Kind::Unimplemented, m)
    }

    pub fn unknown(m: impl Into<String>) -> Self {
        Self::new(Kind::Unknown, m)
    }

    /// An I/O failure around `what` (a verb and its object, e.g. "open stdout fifo /x").
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => Kind::NotFound,
            std::io::ErrorKind::InvalidInput => Kind::InvalidArgument,
            _ => Kind::Unknown,
        };
        Self::new(kind, format!("{what}: {e}"))
    }

    /// A runtime command failed. Its "does not exist" becomes NotFound, "not running"
    /// becomes NotFound("process already finished") as the Go shim does; the rest keep the
    /// runtime's own message.
    pub fn runtime(e: runc_driver::Error) -> Self {
        if e.is_not_found() {
            return Self::not_found(e.to_string());
        }
        if e.is_not_running() {
            return Self::not_found(format!("process already finished: {e}"));
        }
        match &e {
            runc_driver::Error::Spawn { .. } => Self::failed_precondition(e.to_string()),
            _ => Self::unknown(e.to_string()),
        }
    }

    pub fn code(&self) -> Code {
        match self.kind {
            Kind::NotFound => Code::NOT_FOUND,
            Kind::AlreadyExists => Code::ALREADY_EXISTS,
            Kind::FailedPrecondition => Code::FAILED_PRECONDITION,
            Kind::InvalidArgument => Code::INVALID_ARGUMENT,
            Kind::Unimplemented => Code::UNIMPLEMENTED,
            Kind::Unknown => Code::UNKNOWN,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(e: Error) -> (Code, String) {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn every_kind_keeps_its_code_and_message() {
        let cases = [
            (Error::not_found("a"), Code::NOT_FOUND),
            (Error::already_exists("b"), Code::ALREADY_EXISTS),
            (Error::failed_precondition("c"), Code::FAILED_PRECONDITION),
            (Error::invalid("d"), Code::INVALID_ARGUMENT),
            (Error::unimplemented("e"), Code::UNIMPLEMENTED),
            (Error::unknown("f"), Code::UNKNOWN),
        ];
        for (e, code) in cases {
            let msg = e.message.clone();
            assert_eq!(status_of(e), (code, msg));
        }
    }

    #[test]
    fn runtime_errors_map_by_what_the_runtime_said() {
        let failed = |m: &str| runc_driver::Error::Failed {
            binary: "runc".into(),
            verb: "kill",
            id: "c1".into(),
            status: runc_driver::ExitStatus::exited(1),
            message: m.into(),
        };
        assert_eq!(
            Error::runtime(failed("container does not exist")).kind,
            Kind::NotFound
        );
        let e = Error::runtime(failed("container not running"));
        assert_eq!(e.kind, Kind::NotFound);
        assert!(e.message.starts_with("process already finished"), "{e}");
        let e = Error::runtime(failed("mount failed: permission denied"));
        assert_eq!(e.kind, Kind::Unknown);
        assert!(e.message.contains("permission denied"), "{e}");
    }

    #[test]
    fn io_errors_name_the_operation() {
        let e = Error::io(
            "open bundle /b/config.json",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.kind, Kind::NotFound);
        assert!(e.message.starts_with("open bundle /b/config.json: "), "{e}");
    }
}
