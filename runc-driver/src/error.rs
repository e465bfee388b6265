//! Typed failures of the runtime CLI.

use std::fmt;
use std::io;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// The runtime binary could not be found or executed.
    Spawn { binary: PathBuf, source: io::Error },
    /// The runtime ran and failed. `message` is its last error line (JSON log, else stderr).
    Failed {
        binary: PathBuf,
        verb: &'static str,
        id: String,
        status: crate::ExitStatus,
        message: String,
    },
    /// The runtime's output could not be understood.
    Parse {
        binary: PathBuf,
        verb: &'static str,
        reason: String,
    },
    /// A file the driver reads or writes around a command (pid file, process spec).
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl Error {
    /// The runtime said the container does not exist.
    pub fn is_not_found(&self) -> bool {
        self.message_has(&["does not exist", "not exist", "no such container"])
    }

    /// The runtime said the container or process is not running (already stopped).
    pub fn is_not_running(&self) -> bool {
        self.message_has(&[
            "not running",
            "no such process",
            "process already finished",
            "container is stopped",
        ])
    }

    fn message_has(&self, needles: &[&str]) -> bool {
        match self {
            Error::Failed { message, .. } => {
                let m = message.to_ascii_lowercase();
                needles.iter().any(|n| m.contains(n))
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { binary, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(f, "runtime binary {} not found: {source}", binary.display())
            }
            Error::Spawn { binary, source } => {
                write!(
                    f,
                    "cannot run runtime binary {}: {source}",
                    binary.display()
                )
            }
            Error::Failed {
                binary,
                verb,
                id,
                status,
                message,
            } => write!(
                f,
                "{} {verb} {id} failed (exit status {status}): {message}",
                binary.display()
            ),
            Error::Parse {
                binary,
                verb,
                reason,
            } => write!(
                f,
                "cannot read the output of {} {verb}: {reason}",
                binary.display()
            ),
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
        }
    }
}

// Each variant's message already includes its source, so none is returned here.
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> Error {
        Error::Failed {
            binary: "runc".into(),
            verb: "kill",
            id: "c1".into(),
            status: crate::ExitStatus::exited(1),
            message: message.into(),
        }
    }

    #[test]
    fn classifies_runc_and_crun_messages() {
        assert!(failed("container does not exist").is_not_found());
        assert!(failed("container `c1` does not exist").is_not_found());
        assert!(failed("container not running").is_not_running());
        assert!(failed("kill container: No such process").is_not_running());
        assert!(!failed("permission denied").is_not_found());
        assert!(!failed("permission denied").is_not_running());
    }

    #[test]
    fn messages_name_the_binary_verb_and_id() {
        let m = failed("boom").to_string();
        assert_eq!(m, "runc kill c1 failed (exit status 1): boom");
        let s = Error::Spawn {
            binary: "/no/such/runtime".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(s.to_string().contains("/no/such/runtime not found"), "{s}");
    }
}
