//! The shim's only `waitpid` caller.
//!
//! The shim is a child subreaper: container processes, runtime CLI invocations and
//! orphans all become its children and all exit through SIGCHLD. One thread reaps them
//! and hands every exit to every current subscriber. Whoever starts a child subscribes
//! first, so no exit can be reaped before someone is listening for it.

use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

    /// Waits for `pid` to exit, dropping the exits of other processes.
    pub fn wait_for(&self, pid: i32) -> Option<Exit> {
        loop {
            let e = self.recv()?;
            if e.pid == pid {
                return Some(e);
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
/// subscribes before spawning, so the child's exit cannot be reaped unseen.
pub struct ReaperMonitor(pub Arc<Reaper>);

impl Monitor for ReaperMonitor {
    fn start(&self, cmd: &mut Command) -> io::Result<Started> {
        let sub = self.0.subscribe();
        let child = cmd.spawn()?;
        Ok(Started {
            child,
            token: Box::new(sub),
        })
    }

    fn wait(&self, started: Started) -> io::Result<ExitStatus> {
        let pid = i32::try_from(started.child.id()).map_err(io::Error::other)?;
        let sub = started
            .token
            .downcast::<Subscription>()
            .map_err(|_| io::Error::other("a child started by another monitor"))?;
        let exit = sub
            .wait_for(pid)
            .ok_or_else(|| io::Error::other("the reaper stopped before the runtime exited"))?;
        Ok(exit.status)
    }
}
