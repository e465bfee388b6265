//! The shim's only `waitpid` caller.
//!
//! The shim is a child subreaper: container processes, runtime CLI invocations and
//! orphans all become its children and all exit through SIGCHLD. One thread reaps them
//! and hands every exit to every current subscriber. Whoever starts a child subscribes
//! first, so no exit can be reaped before someone is listening for it.

use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use runc_driver::{ExitStatus, Monitor, Started};
use signal_hook::consts::SIGCHLD;
use signal_hook::iterator::Signals;

use super::state::Exit;

pub struct Reaper {
    /// Guards the subscriber list only; sends are non-blocking.
    subscribers: Mutex<Vec<(u64, Sender<Exit>)>>,
    next_id: AtomicU64,
}

/// Receives every exit reaped while it lives.
pub struct Subscription {
    id: u64,
    rx: Receiver<Exit>,
    reaper: Arc<Reaper>,
}

impl Reaper {
    /// Registers for SIGCHLD and starts the reaping thread. Call before spawning anything.
    pub fn start() -> io::Result<Arc<Reaper>> {
        let mut signals = Signals::new([SIGCHLD])?;
        let reaper = Arc::new(Reaper {
            subscribers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let r = Arc::clone(&reaper);
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // A child may have exited before the handler was installed.
                r.reap_all();
                for _ in signals.forever() {
                    r.reap_all();
                }
            })?;
        Ok(reaper)
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, tx));
        Subscription {
            id,
            rx,
            reaper: Arc::clone(self),
        }
    }

    fn reap_all(&self) {
        loop {
            let exit = match crate::sys::wait_any() {
                Ok(None) => return,
                Ok(Some((pid, raw))) => match exit_of(pid, raw) {
                    Some(e) => e,
                    None => continue,
                },
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("waitpid failed: {e}");
                    return;
                }
            };
            log::debug!("reaped pid={} status={}", exit.pid, exit.status);
            self.lock().retain(|(_, tx)| tx.send(exit).is_ok());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Sender<Exit>)>> {
        // The list stays consistent even if a holder panicked: pushes and retains are atomic.
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Subscription {
    /// The next exit of any process; None once the reaper is gone.
    pub fn recv(&self) -> Option<Exit> {
        self.rx.recv().ok()
    }

    /// Waits for `pid` to exit, dropping the exits of other processes: `Ok(None)` once
    /// `until` has passed, `Err` once the reaper is gone.
    pub fn wait_for(&self, pid: i32, until: Option<Instant>) -> Result<Option<Exit>, ()> {
        loop {
            let e = match until {
                None => self.rx.recv().map_err(drop)?,
                Some(u) => match self
                    .rx
                    .recv_timeout(u.saturating_duration_since(Instant::now()))
                {
                    Ok(e) => e,
                    Err(RecvTimeoutError::Timeout) => return Ok(None),
                    Err(RecvTimeoutError::Disconnected) => return Err(()),
                },
            };
            if e.pid == pid {
                return Ok(Some(e));
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.reaper.lock().retain(|(id, _)| *id != self.id);
    }
}

/// A final wait status as an [`Exit`], stamped now; None for statuses that are not an
/// exit (stopped, continued).
fn exit_of(pid: i32, raw: i32) -> Option<Exit> {
    let status = ExitStatus::of_raw(raw)?;
    Some(Exit {
        pid,
        status,
        at: SystemTime::now(),
    })
}

/// The driver's [`Monitor`] for a process whose children are reaped by [`Reaper`]: it
/// subscribes before spawning, so the child's exit cannot be reaped unseen. Each child
/// gets SIGKILL if the shim dies ([`crate::sys::die_with_parent`]: the driver starts
/// and waits for it on the requesting thread), and is counted in [`InFlight`] until it
/// has exited, which keeps the shim from shutting down under it.
pub struct ReaperMonitor {
    pub reaper: Arc<Reaper>,
    pub in_flight: Arc<InFlight>,
}

/// How many runtime calls and Creates are under way.
#[derive(Default)]
pub struct InFlight {
    count: Mutex<usize>,
    idle: std::sync::Condvar,
}

/// One unit of [`InFlight`], given back when dropped.
pub struct Busy(Arc<InFlight>);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> Busy {
        *self.lock() += 1;
        Busy(Arc::clone(self))
    }

    /// Blocks until nothing is under way.
    pub fn wait_idle(&self) {
        let mut n = self.lock();
        while *n > 0 {
            n = self.idle.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut n = self.0.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl Monitor for ReaperMonitor {
    fn start(&self, cmd: &mut Command) -> io::Result<Started> {
        let busy = self.in_flight.enter();
        let sub = self.reaper.subscribe();
        crate::sys::die_with_parent(cmd);
        let child = cmd.spawn()?;
        Ok(Started {
            child,
            token: Box::new((sub, busy)),
        })
    }

    fn wait(
        &self,
        started: &mut Started,
        until: Option<Instant>,
    ) -> io::Result<Option<ExitStatus>> {
        let pid = i32::try_from(started.child.id()).map_err(io::Error::other)?;
        let (sub, _) = started
            .token
            .downcast_ref::<(Subscription, Busy)>()
            .ok_or_else(|| io::Error::other("a child started by another monitor"))?;
        let exit = sub
            .wait_for(pid, until)
            .map_err(|()| io::Error::other("the reaper stopped before the runtime exited"))?;
        Ok(exit.map(|e| e.status))
    }
}
