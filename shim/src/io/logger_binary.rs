//! `binary://PATH?key=value`: a logging program that gets the process's stdout on fd 3,
//! its stderr on fd 4, and a pipe on fd 5 that it closes once it is ready.
//!
//! `binary-v2://` (containerd 2.3) is the same program with a stricter handshake: it
//! writes a byte to fd 5 before closing it, so a logger that crashes (closing fd 5 by
//! dying) is told from one that is ready. With `binary://` either counts as ready, as
//! containerd's Go shim does for backward compatibility.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};

use crate::error::{Error, Result};
use crate::sys;

/// How long the logger may take to say it is ready, and to exit after SIGTERM.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running logging program.
pub struct BinaryLogger {
    pid: i32,
    pidfd: Option<OwnedFd>,
}

/// The program and its arguments, from the URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerCommand {
    pub path: PathBuf,
    pub args: Vec<String>,
    /// `binary-v2://`: ready only once the logger wrote a byte to fd 5.
    pub ready_byte: bool,
}

impl LoggerCommand {
    /// Whether `uri` names a logging binary.
    pub fn is_logger_uri(uri: &str) -> bool {
        uri.starts_with("binary://") || uri.starts_with("binary-v2://")
    }

    /// `binary:///usr/bin/logger?tag=x&flag` -> /usr/bin/logger tag x flag
    pub fn parse(uri: &str) -> Result<LoggerCommand> {
        let (rest, ready_byte) = match uri.strip_prefix("binary-v2://") {
            Some(rest) => (rest, true),
            None => (
                uri.strip_prefix("binary://").ok_or_else(|| {
                    Error::invalid(format!("{uri:?} is not a binary:// or binary-v2:// URI"))
                })?,
                false,
            ),
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = percent_decode(path);
        if !path.starts_with('/') {
            return Err(Error::invalid(format!(
                "logging binary {uri:?}: the path must be absolute (binary:///path/to/logger)"
            )));
        }
        let mut args = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            args.push(percent_decode(k));
            if !v.is_empty() {
                args.push(percent_decode(v));
            }
        }
        Ok(LoggerCommand {
            path: PathBuf::from(path),
            args,
            ready_byte,
        })
    }
}

impl BinaryLogger {
    /// Starts the logger reading `stdout` and `stderr` (pipe read ends) and waits until it
    /// is ready.
    pub fn start(
        cmd: &LoggerCommand,
        container_id: &str,
        namespace: &str,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<BinaryLogger> {
        let what = format!("logging binary {}", cmd.path.display());
        let (ready_r, ready_w) = sys::pipe().map_err(|e| Error::io(format!("start {what}"), e))?;
        let mut c = Command::new(&cmd.path);
        c.args(&cmd.args)
            .env_clear()
            .env("CONTAINER_ID", container_id)
            .env("CONTAINER_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.fd_mappings(vec![
            FdMapping {
                parent_fd: stdout,
                child_fd: 3,
            },
            FdMapping {
                parent_fd: stderr,
                child_fd: 4,
            },
            FdMapping {
                parent_fd: ready_w,
                child_fd: 5,
            },
        ])
        .map_err(|_| Error::internal(format!("start {what}: descriptor numbers collide")))?;
        let child = c
            .spawn()
            .map_err(|e| Error::io(format!("start {what}"), e))?;
        // Our copies of the pipe ends go with the Command.
        drop(c);
        let pid = child.id() as i32;
        let pidfd = sys::pidfd_open(pid).ok();
        let logger = BinaryLogger { pid, pidfd };
        let mut ready = File::from(ready_r);
        if !readable_within(&ready, READY_TIMEOUT).unwrap_or(false) {
            logger.stop();
            return Err(Error::internal(format!(
                "{what} did not signal ready (close fd 5) within {READY_TIMEOUT:?}"
            )));
        }
        let got_byte = matches!(ready.read(&mut [0u8; 1]), Ok(1));
        if cmd.ready_byte && !got_byte {
            logger.stop();
            return Err(Error::internal(format!(
                "{what} closed fd 5 without writing a byte: a binary-v2:// logger signals \
                 ready by writing one first (it may have crashed or exited early)"
            )));
        }
        log::info!("started {what} pid={pid} for id={container_id}");
        Ok(logger)
    }

    /// SIGTERM, then SIGKILL if it has not exited in time. Our reaper collects it.
    pub fn stop(&self) {
        let Some(pidfd) = &self.pidfd else {
            // Without a pidfd the pid could be reused; ask once and leave it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            return;
        };
        let _ = sys::pidfd_send_signal(pidfd, libc::SIGTERM);
        if !readable_within(pidfd, STOP_TIMEOUT).unwrap_or(false) {
            log::warn!(
                "logging binary pid={} ignored SIGTERM; killing it",
                self.pid
            );
            let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits up to `timeout` for `fd` to become readable (or hung up).
fn readable_within(fd: &impl std::os::fd::AsFd, timeout: Duration) -> std::io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(ms))?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    #[test]
    fn uri_to_command() {
        let c = LoggerCommand::parse(
            "binary:///usr/local/bin/my%20logger?tag=web&verbose&out=%2Ftmp%2Fx",
        )
        .unwrap();
        assert_eq!(c.path, PathBuf::from("/usr/local/bin/my logger"));
        assert_eq!(c.args, ["tag", "web", "verbose", "out", "/tmp/x"]);
        assert!(!c.ready_byte);
        let c = LoggerCommand::parse("binary:///bin/cat").unwrap();
        assert!(c.args.is_empty());
        let c = LoggerCommand::parse("binary-v2:///bin/sh?-c=printf%20x%20%3E%265").unwrap();
        assert_eq!(c.path, PathBuf::from("/bin/sh"));
        assert_eq!(c.args, ["-c", "printf x >&5"]);
        assert!(c.ready_byte);
        assert_eq!(
            LoggerCommand::parse("binary://relative/logger")
                .unwrap_err()
                .code(),
            Code::INVALID_ARGUMENT
        );
    }

    fn start(uri: &str) -> Result<BinaryLogger> {
        let cmd = LoggerCommand::parse(uri).unwrap();
        let (out, _) = sys::pipe().unwrap();
        let (err, _) = sys::pipe().unwrap();
        BinaryLogger::start(&cmd, "c1", "ns", out, err)
    }

    #[test]
    fn binary_v2_is_ready_only_after_a_byte() {
        let logger =
            start("binary-v2:///bin/sh?-c=printf%20x%20%3E%265%3B%20exec%20sleep%2030").unwrap();
        logger.stop();
        let e = start("binary-v2:///bin/true").err().unwrap();
        assert!(e.to_string().contains("without writing a byte"), "{e}");
        // The first scheme takes a plain close as ready.
        start("binary:///bin/true").unwrap().stop();
    }
}
