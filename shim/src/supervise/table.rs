//! The process table's data: every container's processes with their pid and status, the
//! pid index, the exits parked for starts in flight and the exits to publish. Pure
//! bookkeeping under the dispatcher's lock ([`super::dispatch`]): no events, no runtime,
//! no waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::state::{Exit, Op, Status};
use super::watch::ExitCell;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) id: String,
    /// Empty for a container's init.
    pub(super) exec_id: String,
}

pub(super) struct Table<P> {
    pub(super) containers: HashMap<String, Family<P>>,
    pub(super) by_pid: HashMap<i32, Key>,
    pub(super) parked: Parked,
    /// Exits made final, in the order they were, until they are published: whoever
    /// publishes takes them all, so two threads never publish them out of order.
    pub(super) outbox: Vec<Stopped>,
}

/// A container's init and its execs.
pub(super) struct Family<P> {
    pub(super) init: Entry<P>,
    pub(super) execs: HashMap<String, Entry<P>>,
    /// The init is exiting and its output is flushed, but an exec is live: its exit is
    /// made final once none is.
    pub(super) init_held: bool,
}

pub(super) struct Entry<P> {
    pub(super) process: Arc<P>,
    /// 0 until an exec is started.
    pub(super) pid: i32,
    pub(super) status: Status,
    pub(super) exited: Arc<ExitCell>,
}

/// Exits that came before the process they belong to could take them.
#[derive(Default)]
pub(super) struct Parked {
    /// Creates and starts in flight. While any is, an unclaimed exit may be theirs.
    pub(super) in_flight: usize,
    /// Each exit with the number of exits parked before it.
    pub(super) exits: Vec<(u64, Exit)>,
    /// How many exits were ever parked: a create or start notes it when it begins, and
    /// claims only exits parked since, so the exit of an earlier process whose pid the
    /// kernel gave again is not taken for its own.
    pub(super) seq: u64,
}

/// A process that stopped under the lock: its waiters are answered, its exit logged and
/// published once the lock is released.
pub(super) struct Stopped {
    pub(super) key: Key,
    pub(super) pid: i32,
    pub(super) exit: Exit,
    pub(super) waiters: Arc<ExitCell>,
}

/// How long, and how many, unclaimed exits are kept while starts are in flight.
const PARKED_TTL: Duration = Duration::from_secs(60);
const PARKED_MAX: usize = 4096;

impl Key {
    pub(super) fn new(id: &str, exec_id: &str) -> Self {
        Key {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        }
    }

    pub(super) fn init(id: &str) -> Self {
        Key::new(id, "")
    }

    pub(super) fn is_init(&self) -> bool {
        self.exec_id.is_empty()
    }

    /// The process as errors name it.
    pub(super) fn what(&self) -> String {
        if self.is_init() {
            format!("container {}", self.id)
        } else {
            format!("exec {} in container {}", self.exec_id, self.id)
        }
    }

    pub(super) fn not_found(&self) -> Error {
        Error::no_such(self.what())
    }
}

impl<P> Table<P> {
    pub(super) fn family(&mut self, id: &str) -> Result<&mut Family<P>> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| Key::init(id).not_found())
    }

    pub(super) fn status(&self, key: &Key) -> Option<Status> {
        let f = self.containers.get(&key.id)?;
        let e = if key.is_init() {
            &f.init
        } else {
            f.execs.get(&key.exec_id)?
        };
        Some(e.status)
    }

    /// Starting to running; returns the exit parked for `pid` while it was starting (since
    /// `since`, the start's [`Parked::mark`]).
    pub(super) fn started(&mut self, key: &Key, pid: i32, since: u64) -> Option<Exit> {
        let e = self.containers.get_mut(&key.id)?.get_mut(key)?;
        if let Err(err) = e.transition(Op::Started, key) {
            log::warn!("{err}");
        }
        let early = self.parked.take(pid, since);
        if early.is_some() {
            self.by_pid.remove(&pid);
        }
        early
    }
}

impl<P> Family<P> {
    pub(super) fn entry(&mut self, key: &Key) -> Result<&mut Entry<P>> {
        self.get_mut(key).ok_or_else(|| key.not_found())
    }

    pub(super) fn get_mut(&mut self, key: &Key) -> Option<&mut Entry<P>> {
        if key.is_init() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(&key.exec_id)
        }
    }

    /// Records that `key` was reaped (it is exiting); returns the process, whose output
    /// is to be flushed before its exit is made final ([`Family::settle`]).
    pub(super) fn reaped(&mut self, key: &Key, exit: Exit) -> Option<Arc<P>> {
        let e = self.get_mut(key)?;
        if let Err(err) = e.transition(Op::Exit(exit), key) {
            // A second exit for one pid, which the kernel does not give.
            log::warn!("exit pid={} dropped: {err}", exit.pid);
            return None;
        }
        Some(Arc::clone(&e.process))
    }

    /// Makes the exit of exiting `key` final, its output being flushed; an init's waits
    /// while an exec is live. Returns what stopped, in the order to publish: an exec may
    /// release its init. Nothing if `key` is not exiting (any more).
    pub(super) fn settle(&mut self, key: &Key) -> Vec<Stopped> {
        if key.is_init() {
            if self.init_held || !matches!(self.init.status, Status::Exiting(_)) {
                return Vec::new();
            }
            self.init_held = true;
            return self.release_held(&key.id);
        }
        let Some(e) = self.execs.get_mut(&key.exec_id) else {
            return Vec::new();
        };
        if !matches!(e.status, Status::Exiting(_)) {
            return Vec::new();
        }
        let mut stopped: Vec<Stopped> = e.settle(key).into_iter().collect();
        stopped.extend(self.release_held(&key.id));
        stopped
    }

    /// Whether an exec is live, which holds the init's exit back.
    pub(super) fn exec_live(&self) -> bool {
        self.execs.values().any(|e| e.status.is_live())
    }

    /// The held init exit, once no exec is live.
    pub(super) fn release_held(&mut self, id: &str) -> Vec<Stopped> {
        if !self.init_held || self.exec_live() {
            return Vec::new();
        }
        self.init_held = false;
        self.init.settle(&Key::init(id)).into_iter().collect()
    }
}

impl<P> Entry<P> {
    pub(super) fn new(process: Arc<P>, pid: i32) -> Self {
        Entry {
            process,
            pid,
            status: Status::Created,
            exited: Arc::new(ExitCell::default()),
        }
    }

    pub(super) fn transition(&mut self, op: Op, key: &Key) -> Result<Status> {
        self.status = self.status.after(op, &key.what())?;
        Ok(self.status)
    }

    /// Exiting to stopped: the exit is final (whoever waits for it is answered when it
    /// is published).
    pub(super) fn settle(&mut self, key: &Key) -> Option<Stopped> {
        let exit = self.status.reaped()?;
        if let Err(err) = self.transition(Op::Settle, key) {
            log::warn!("{err}");
            return None;
        }
        Some(Stopped {
            key: key.clone(),
            pid: self.pid,
            exit,
            waiters: Arc::clone(&self.exited),
        })
    }
}

impl Parked {
    /// Keeps an exit for a start in flight, if any is. Most are the runtime CLI's own
    /// processes, which nobody claims: under a steady stream of overlapping starts
    /// `in_flight` may never reach zero, so old entries are dropped (a start claims its
    /// pid within moments of the runtime returning).
    pub(super) fn park(&mut self, exit: Exit) {
        if self.in_flight == 0 {
            return;
        }
        let cutoff = exit.at.checked_sub(PARKED_TTL);
        self.exits.retain(|(_, e)| cutoff.is_none_or(|c| e.at >= c));
        if self.exits.len() >= PARKED_MAX {
            self.exits.remove(0);
        }
        self.exits.push((self.seq, exit));
        self.seq += 1;
    }

    /// Where a create or start begins: it may claim only exits parked from here on.
    pub(super) fn mark(&self) -> u64 {
        self.seq
    }

    /// The exit of `pid` parked since `since` (a [`Parked::mark`]).
    pub(super) fn take(&mut self, pid: i32, since: u64) -> Option<Exit> {
        let i = self
            .exits
            .iter()
            .position(|(seq, e)| e.pid == pid && *seq >= since)?;
        Some(self.exits.remove(i).1)
    }

    /// A create or start is over; with none left, nothing parked can be claimed.
    pub(super) fn done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.exits = Vec::new();
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runc_driver::ExitStatus;
    use std::time::SystemTime;

    #[test]
    fn parked_exits_are_bounded_by_age_and_count() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let exit = |pid, secs| Exit {
            pid,
            status: ExitStatus::exited(0),
            at: t0 + Duration::from_secs(secs),
        };
        let mut p = Parked {
            in_flight: 1,
            ..Default::default()
        };
        p.park(exit(1, 0));
        p.park(exit(2, 30));
        p.park(exit(3, 61));
        let pids: Vec<i32> = p.exits.iter().map(|(_, e)| e.pid).collect();
        assert_eq!(pids, [2, 3], "the exit older than the TTL is dropped");
        for i in 0..(PARKED_MAX as i32 + 10) {
            p.park(exit(100 + i, 61));
        }
        assert_eq!(p.exits.len(), PARKED_MAX);
        assert_eq!(p.take(3, 0).map(|e| e.pid), None, "the oldest went first");
        assert!(p.take(100 + PARKED_MAX as i32, 0).is_some());
        p.done();
        assert!(
            p.exits.is_empty(),
            "nothing is kept once no start is in flight"
        );
        p.park(exit(4, 61));
        assert!(p.exits.is_empty());
    }

    #[test]
    fn a_start_claims_only_exits_parked_since_it_began() {
        let exit = |pid| Exit {
            pid,
            status: ExitStatus::exited(7),
            at: SystemTime::now(),
        };
        let mut p = Parked {
            in_flight: 2,
            ..Default::default()
        };
        // An earlier process with pid 42 exited while another start was in flight.
        p.park(exit(42));
        let since = p.mark();
        // The new process got pid 42 again and exits before its start recorded it.
        assert_eq!(
            p.take(42, since).map(|e| e.pid),
            None,
            "the old exit is not its own"
        );
        p.park(exit(42));
        assert_eq!(p.take(42, since).map(|e| e.pid), Some(42));
        assert_eq!(p.exits.len(), 1, "the old one stays until it ages out");
    }
}
