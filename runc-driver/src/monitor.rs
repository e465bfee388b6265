//! Who starts the runtime's child processes and collects their exits.
//!
//! A containerd shim is a subreaper with a single `waitpid(-1)` loop, so the driver must
//! not wait for its own children: the shim supplies a [`Monitor`] that subscribes to its
//! reaper before spawning, and waits through it. [`StdMonitor`] is for processes without
//! a reaper of their own. Either way the driver drains the child's output itself
//! ([`run`]) between the monitor's start and wait.

use std::any::Any;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::process::{Child, Command};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::ExitStatus;

/// What a finished runtime command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A child the monitor started, with what the monitor needs to collect its exit.
pub struct Started {
    pub child: Child,
    /// The monitor's own (a subscription to its reaper, say); given back to `wait`.
    pub token: Box<dyn Any + Send>,
}

/// Starts children and collects their exits (go-runc's ProcessMonitor).
pub trait Monitor: Send + Sync {
    /// Spawns `cmd` so that its exit cannot be missed by [`Monitor::wait`].
    fn start(&self, cmd: &mut Command) -> io::Result<Started>;
    /// Blocks until the started child has exited.
    fn wait(&self, started: Started) -> io::Result<ExitStatus>;
}

/// Waits with `Child::wait`, for a process where nothing else reaps children.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdMonitor;

impl Monitor for StdMonitor {
    fn start(&self, cmd: &mut Command) -> io::Result<Started> {
        Ok(Started {
            child: cmd.spawn()?,
            token: Box::new(()),
        })
    }

    fn wait(&self, mut started: Started) -> io::Result<ExitStatus> {
        Ok(ExitStatus::from(started.child.wait()?))
    }
}

/// Runs `cmd` to completion through `monitor`: starts it, drains its piped output, and
/// waits for its exit.
pub fn run(monitor: &dyn Monitor, mut cmd: Command) -> io::Result<Output> {
    let mut started = monitor.start(&mut cmd)?;
    let (stdout, stderr) = drain(&mut started.child)?;
    let status = monitor.wait(started)?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads the child's piped stdout and stderr to their end, both at once so that neither
/// pipe can fill up and stall the child. Pipes that were not requested read as empty.
fn drain(child: &mut Child) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut buf = [0u8; 4096];
    while stdout.is_some() || stderr.is_some() {
        let (out_ready, err_ready) = {
            let mut fds = Vec::with_capacity(2);
            if let Some(s) = &stdout {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &stderr {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let o = stdout.is_some() && it.next().is_some_and(ready);
            let e = stderr.is_some() && it.next().is_some_and(ready);
            (o, e)
        };
        if out_ready {
            if let Some(s) = stdout.as_mut() {
                if read_some(s, &mut buf, &mut out)? == 0 {
                    stdout = None;
                }
            }
        }
        if err_ready {
            if let Some(s) = stderr.as_mut() {
                if read_some(s, &mut buf, &mut err)? == 0 {
                    stderr = None;
                }
            }
        }
    }
    Ok((out, err))
}

fn read_some(r: &mut impl Read, buf: &mut [u8], into: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn captures_both_streams_and_the_code() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let o = run(&StdMonitor, cmd).unwrap();
        assert_eq!(o.status, ExitStatus::exited(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn a_signal_maps_to_128_plus_signal() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -9 $$"]);
        assert_eq!(run(&StdMonitor, cmd).unwrap().status.get(), 137);
    }

    #[test]
    fn large_output_on_both_pipes_does_not_stall() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let o = run(&StdMonitor, cmd).unwrap();
        assert_eq!((o.stdout.len(), o.stderr.len()), (300000, 300000));
    }
}
