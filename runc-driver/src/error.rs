//! Typed failures of the runtime CLI, and the one table of what each runtime's error
//! messages mean.

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
    /// The runtime did not finish within its deadline: it and its process group were
    /// killed.
    DeadlineExceeded {
        binary: PathBuf,
        verb: &'static str,
        id: String,
        deadline: std::time::Duration,
    },
    /// A file the driver reads or writes around a command (pid file, process spec).
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// What a runtime's refusal meant, whichever runtime said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The container does not exist (in the runtime's state directory).
    NoSuchContainer,
    /// The container or process is not running any more: it has stopped.
    NotRunning,
    /// A container with that id exists already.
    AlreadyExists,
}

/// Which runtime a phrasing was seen from (documentation and tests; matching does not
/// depend on it, since the shim may run any of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Runc,
    Crun,
    Youki,
    /// go-runc's and the kernel's wording, which any runtime may pass on.
    Any,
}

/// One phrasing: every part must occur in the message (lower-cased), in that order.
pub struct Phrasing {
    pub dialect: Dialect,
    pub parts: &'static [&'static str],
    pub means: Refusal,
}

const fn p(dialect: Dialect, parts: &'static [&'static str], means: Refusal) -> Phrasing {
    Phrasing {
        dialect,
        parts,
        means,
    }
}

/// Every runtime error message the shim acts on, as runc 1.1.5, crun 1.8 and 1.21, and
/// youki 0.7 print them (checked against a missing and a stopped container). The first
/// match wins.
pub const PHRASINGS: &[Phrasing] = {
    use Dialect::*;
    use Refusal::*;
    &[
        // runc: every verb on a missing id.
        p(Runc, &["container does not exist"], NoSuchContainer),
        // crun reads the container's status file or opens its directory first.
        p(
            Crun,
            &[
                "error opening file `",
                "/status`: no such file or directory",
            ],
            NoSuchContainer,
        ),
        p(
            Crun,
            &["cannot open directory ", ": no such file or directory"],
            NoSuchContainer,
        ),
        // youki: "container nosuch does not exist.", and exec's wording.
        p(Youki, &["container ", " does not exist."], NoSuchContainer),
        p(
            Youki,
            &["container state directory does not exist"],
            NoSuchContainer,
        ),
        p(Any, &["no such container"], NoSuchContainer),
        // runc: kill, pause, update of a stopped container; start and exec.
        p(Runc, &["container not running"], NotRunning),
        p(
            Runc,
            &["cannot start a container that has stopped"],
            NotRunning,
        ),
        p(Runc, &["cannot exec in a stopped container"], NotRunning),
        // crun: kill of a stopped container; pause, resume, start, exec.
        p(Crun, &["kill container: no such process"], NotRunning),
        p(Crun, &["container `", "` is not running"], NotRunning),
        // youki: kill; pause, resume, start and exec name the status.
        p(
            Youki,
            &["incompatible container status: `stopped`"],
            NotRunning,
        ),
        p(Any, &["process already finished"], NotRunning),
        p(Any, &["no such process"], NotRunning),
        p(Any, &["container is stopped"], NotRunning),
        // create with an id in use.
        p(
            Runc,
            &["container with given id already exists"],
            AlreadyExists,
        ),
        p(Crun, &["container `", "` already exists"], AlreadyExists),
        p(Youki, &["container already exists"], AlreadyExists),
    ]
};

/// What `message` means, by the table.
pub fn classify(message: &str) -> Option<Refusal> {
    let m = message.to_ascii_lowercase();
    PHRASINGS
        .iter()
        .find(|ph| contains_in_order(&m, ph.parts))
        .map(|ph| ph.means)
}

fn contains_in_order(text: &str, parts: &[&str]) -> bool {
    let mut rest = text;
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl Error {
    /// What the runtime's refusal meant, if it ran and said something the table knows.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Failed { message, .. } => classify(message),
            _ => None,
        }
    }

    /// The runtime said the container does not exist.
    pub fn is_not_found(&self) -> bool {
        self.refusal() == Some(Refusal::NoSuchContainer)
    }

    /// The runtime said the container or process is not running (already stopped).
    pub fn is_not_running(&self) -> bool {
        self.refusal() == Some(Refusal::NotRunning)
    }

    /// The subcommand that failed ("kill", "start", ...), if the runtime was run.
    pub fn verb(&self) -> Option<&'static str> {
        match self {
            Error::Failed { verb, .. }
            | Error::Parse { verb, .. }
            | Error::DeadlineExceeded { verb, .. } => Some(verb),
            _ => None,
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
            Error::DeadlineExceeded {
                binary,
                verb,
                id,
                deadline,
            } => write!(
                f,
                "{} {verb} {id} did not finish within its deadline of {} s: killed it",
                binary.display(),
                deadline.as_secs_f64()
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

    fn means(m: &str) -> Option<Refusal> {
        failed(m).refusal()
    }

    // Each message below is what the runtime printed on this host (see PHRASINGS).

    #[test]
    fn runc_phrasings() {
        use Refusal::*;
        assert_eq!(means("container does not exist"), Some(NoSuchContainer));
        assert_eq!(
            means("exec failed: container does not exist"),
            Some(NoSuchContainer)
        );
        assert_eq!(means("container not running"), Some(NotRunning));
        assert_eq!(
            means("cannot start a container that has stopped"),
            Some(NotRunning)
        );
        assert_eq!(
            means("exec failed: cannot exec in a stopped container"),
            Some(NotRunning)
        );
        assert_eq!(
            means("runc create failed: container with given ID already exists"),
            Some(AlreadyExists)
        );
        // resume of a running container is a state conflict the table leaves alone.
        assert_eq!(means("container not paused"), None);
    }

    #[test]
    fn crun_phrasings() {
        use Refusal::*;
        assert_eq!(
            means("error opening file `/run/crun/nosuch/status`: No such file or directory"),
            Some(NoSuchContainer)
        );
        assert_eq!(
            means("cannot open directory `/run/crun/nosuch`: No such file or directory"),
            Some(NoSuchContainer)
        );
        assert_eq!(
            means("cannot open directory '/run/crun/nosuch': No such file or directory"),
            Some(NoSuchContainer)
        );
        assert_eq!(means("kill container: No such process"), Some(NotRunning));
        assert_eq!(means("the container `c1` is not running"), Some(NotRunning));
        assert_eq!(means("container `c1` is not running"), Some(NotRunning));
        assert_eq!(means("container `c1` already exists"), Some(AlreadyExists));
        // Another file missing is not the container missing.
        assert_eq!(
            means("error opening file `/b/rootfs/etc/hosts`: No such file or directory"),
            None
        );
    }

    #[test]
    fn youki_phrasings() {
        use Refusal::*;
        assert_eq!(
            means("error in executing command: container nosuch does not exist."),
            Some(NoSuchContainer)
        );
        assert_eq!(
            means("error in executing command: container state directory does not exist"),
            Some(NoSuchContainer)
        );
        assert_eq!(
            means("error in executing command: container not running\n\nCaused by:\n    failed operation due to incompatible container status: `Stopped`"),
            Some(NotRunning)
        );
        assert_eq!(
            means("error in executing command: failed to pause container c1\n\nCaused by:\n    failed operation due to incompatible container status: `Stopped`"),
            Some(NotRunning)
        );
        assert_eq!(
            means("error in executing command: container already exists"),
            Some(AlreadyExists)
        );
    }

    #[test]
    fn other_failures_mean_nothing_to_the_table() {
        assert_eq!(means("permission denied"), None);
        assert_eq!(
            means("exec: \"nope\": executable file not found in $PATH"),
            None
        );
        let spawn = Error::Spawn {
            binary: "/x".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(spawn.refusal(), None);
        assert!(failed("container does not exist").is_not_found());
        assert!(failed("container not running").is_not_running());
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
