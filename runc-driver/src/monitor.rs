//! Who starts the runtime's child processes and collects their exits.
//!
//! A containerd shim is a subreaper with a single `waitpid(-1)` loop, so the driver must
//! not wait for its own children: the shim supplies a [`Monitor`] that subscribes to its
//! reaper before spawning, and waits through it. [`StdMonitor`] is for processes without
//! a reaper of their own. Either way the driver drains the child's output itself
//! ([`run`]) between the monitor's start and wait, and kills the child's process group
//! when its deadline passes.

use std::any::Any;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
    /// Blocks until the started child has exited (`Some`), or `until` has passed while
    /// it still runs (`None`; it may be waited for again).
    fn wait(&self, started: &mut Started, until: Option<Instant>)
        -> io::Result<Option<ExitStatus>>;
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

    fn wait(
        &self,
        started: &mut Started,
        until: Option<Instant>,
    ) -> io::Result<Option<ExitStatus>> {
        let Some(until) = until else {
            return Ok(Some(ExitStatus::from(started.child.wait()?)));
        };
        loop {
            if let Some(s) = started.child.try_wait()? {
                return Ok(Some(ExitStatus::from(s)));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// After a child was killed at its deadline: how long its pipes may take to close and
/// its exit to arrive (a process that left the group may still hold a pipe).
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Runs `cmd` to completion through `monitor`, in a process group of its own: starts it,
/// drains its piped output, and waits for its exit. If it has not finished within
/// `deadline`, its whole process group (the runtime, its hooks, what they started) is
/// killed and the answer is `None`.
pub fn run(
    monitor: &dyn Monitor,
    mut cmd: Command,
    deadline: Option<Duration>,
) -> io::Result<Option<Output>> {
    cmd.process_group(0);
    let until = deadline.map(|d| Instant::now() + d);
    let mut started = monitor.start(&mut cmd)?;
    let mut pipes = Pipes::of(&mut started.child);
    pipes.drain(until)?;
    if let Some(status) = monitor.wait(&mut started, until)? {
        return Ok(Some(Output {
            status,
            stdout: pipes.out,
            stderr: pipes.err,
        }));
    }
    kill_group(&started.child);
    let grace = Some(Instant::now() + AFTER_KILL);
    pipes.drain(grace)?;
    if monitor.wait(&mut started, grace)?.is_none() {
        log::warn!(
            "runtime process {} did not die within {AFTER_KILL:?} of SIGKILL",
            started.child.id()
        );
    }
    Ok(None)
}

/// SIGKILL to the child's process group (its pid: the child leads it).
fn kill_group(child: &Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let pgrp = nix::unistd::Pid::from_raw(pid);
    if let Err(e) = nix::sys::signal::killpg(pgrp, nix::sys::signal::Signal::SIGKILL) {
        log::debug!("kill process group {pid}: {e}");
    }
}

/// The child's piped stdout and stderr and what was read from them so far.
struct Pipes {
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Pipes {
    fn of(child: &mut Child) -> Pipes {
        Pipes {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    /// Reads both pipes to their end, both at once so that neither can fill up and stall
    /// the child, or until `until` has passed. Pipes that were not requested read as
    /// empty.
    fn drain(&mut self, until: Option<Instant>) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        while self.stdout.is_some() || self.stderr.is_some() {
            let timeout = match until {
                None => PollTimeout::NONE,
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(());
                    }
                    PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
                }
            };
            let (out_ready, err_ready) = {
                let mut fds = Vec::with_capacity(2);
                if let Some(s) = &self.stdout {
                    fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                }
                if let Some(s) = &self.stderr {
                    fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                let mut it = fds.iter();
                let o = self.stdout.is_some() && it.next().is_some_and(ready);
                let e = self.stderr.is_some() && it.next().is_some_and(ready);
                (o, e)
            };
            if out_ready {
                if let Some(s) = self.stdout.as_mut() {
                    if read_some(s, &mut buf, &mut self.out)? == 0 {
                        self.stdout = None;
                    }
                }
            }
            if err_ready {
                if let Some(s) = self.stderr.as_mut() {
                    if read_some(s, &mut buf, &mut self.err)? == 0 {
                        self.stderr = None;
                    }
                }
            }
        }
        Ok(())
    }
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
        let o = run(&StdMonitor, cmd, None).unwrap().unwrap();
        assert_eq!(o.status, ExitStatus::exited(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn a_signal_maps_to_128_plus_signal() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -9 $$"]);
        assert_eq!(
            run(&StdMonitor, cmd, None).unwrap().unwrap().status.get(),
            137
        );
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
        let o = run(&StdMonitor, cmd, None).unwrap().unwrap();
        assert_eq!((o.stdout.len(), o.stderr.len()), (300000, 300000));
    }

    #[test]
    fn a_deadline_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        let mut cmd = Command::new("sh");
        // A grandchild that holds stdout open, and a child that waits for it.
        cmd.args([
            "-c",
            &format!("sleep 300 & echo $! > {}; wait", pid_file.display()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let out = run(&StdMonitor, cmd, Some(Duration::from_millis(300))).unwrap();
        assert!(out.is_none(), "{out:?}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with its group; gone once its parent (the init, here) reaped it.
        let gone = (0..500).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            if stat.is_empty() || state.starts_with('Z') {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            false
        });
        assert!(gone, "the grandchild {pid} outlived the deadline");
    }

    #[test]
    fn a_command_within_its_deadline_is_not_disturbed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.1; echo done"])
            .stdout(Stdio::piped());
        let o = run(&StdMonitor, cmd, Some(Duration::from_secs(60)))
            .unwrap()
            .unwrap();
        assert_eq!(o.stdout, b"done\n");
    }
}
