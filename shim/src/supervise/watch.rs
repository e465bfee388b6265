//! A process's exit for those who wait for it: set once, when the exit is final, and
//! told to every waiter then. A Wait registers an [`ExitWaiter`] and returns; no thread
//! is held while the process runs, however many Waits are in progress.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::state::Exit;
use super::table::lock;

/// Someone waiting for a process's exit (a Wait call), told once it is known.
pub trait ExitWaiter: Send {
    /// Whether whoever asked has gone (their connection closed): nobody is told then,
    /// and the waiter is let go of before the exit.
    fn gone(&self) -> bool;
    /// The exit. Must not block: it may run on the thread that routes every exit.
    fn exited(self: Box<Self>, exit: Exit);
}

/// A process's exit and who waits for it, without the table lock.
#[derive(Default)]
pub struct ExitCell {
    slot: Mutex<Slot>,
    set: Condvar,
}

#[derive(Default)]
struct Slot {
    exit: Option<Exit>,
    waiters: Vec<Box<dyn ExitWaiter>>,
}

/// A process's exit to come, from [`super::Supervisor::watch`]: the lookup succeeded, so
/// [`ExitWatch::notify`] cannot fail.
pub struct ExitWatch(pub(super) Arc<ExitCell>);

impl ExitCell {
    /// Records the exit (the first one only) and tells everyone waiting.
    pub(super) fn set(&self, exit: Exit) {
        let waiters = {
            let mut s = lock(&self.slot);
            if s.exit.is_some() {
                return;
            }
            s.exit = Some(exit);
            self.set.notify_all();
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            if !w.gone() {
                w.exited(exit);
            }
        }
    }

    /// The exit, once it is recorded; None after `timeout`.
    pub(super) fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.slot);
        loop {
            if let Some(e) = s.exit {
                return Some(e);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self
                .set
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl ExitWatch {
    /// Tells `waiter` the exit: now if it is known, otherwise once it is. Waiters whose
    /// caller has gone are dropped here, so a client that reconnects and waits again
    /// (containerd after a restart) does not pile them up.
    pub fn notify(self, waiter: Box<dyn ExitWaiter>) {
        let mut s = lock(&self.0.slot);
        if let Some(e) = s.exit {
            drop(s);
            return waiter.exited(e);
        }
        s.waiters.retain(|w| !w.gone());
        s.waiters.push(waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runc_driver::ExitStatus;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{channel, Sender};
    use std::time::SystemTime;

    struct Told {
        to: Sender<i32>,
        gone: Arc<AtomicBool>,
    }

    impl ExitWaiter for Told {
        fn gone(&self) -> bool {
            self.gone.load(Ordering::SeqCst)
        }
        fn exited(self: Box<Self>, exit: Exit) {
            self.to.send(exit.pid).unwrap();
        }
    }

    fn exit(pid: i32) -> Exit {
        Exit {
            pid,
            status: ExitStatus::exited(0),
            at: SystemTime::now(),
        }
    }

    #[test]
    fn waiters_are_told_once_before_or_after_the_exit_and_gone_ones_never() {
        let cell = Arc::new(ExitCell::default());
        let (tx, rx) = channel();
        let gone = Arc::new(AtomicBool::new(false));
        let told = |gone: &Arc<AtomicBool>| {
            Box::new(Told {
                to: tx.clone(),
                gone: Arc::clone(gone),
            })
        };
        ExitWatch(Arc::clone(&cell)).notify(told(&gone));
        let left = Arc::new(AtomicBool::new(false));
        ExitWatch(Arc::clone(&cell)).notify(told(&left));
        left.store(true, Ordering::SeqCst);
        // A third waiter's registration drops the one whose caller left.
        ExitWatch(Arc::clone(&cell)).notify(told(&gone));
        assert_eq!(lock(&cell.slot).waiters.len(), 2);
        assert!(rx.try_recv().is_err(), "nobody is told before the exit");
        cell.set(exit(7));
        cell.set(exit(8));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![7, 7]);
        // After the exit: told at once, the first exit.
        ExitWatch(Arc::clone(&cell)).notify(told(&gone));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![7]);
        assert_eq!(cell.wait_timeout(Duration::ZERO).map(|e| e.pid), Some(7));
    }

    #[test]
    fn wait_timeout_ends_without_an_exit() {
        let cell = ExitCell::default();
        assert!(cell.wait_timeout(Duration::from_millis(10)).is_none());
    }
}
