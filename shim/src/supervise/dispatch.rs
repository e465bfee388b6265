//! The dispatcher: exits routed to the processes of the table, and the order of their
//! TaskStart and TaskExit events.
//!
//! What holds, all of it here:
//! - An exit is routed by pid. One whose pid is not known yet (a create or exec in flight)
//!   or whose process is still starting is parked, and the start that finishes claims it:
//!   one mechanism for every exit that comes too early.
//! - A process's TaskStart (TaskExecStarted) is published while it is still starting; its
//!   TaskExit is published only once it has left that state, so always after.
//! - A routed exit is not final at once: the process is exiting until everything it wrote
//!   before it exited is in its fifos (the flush hook says so, from the copiers' threads,
//!   so that no exit waits for another's output). Only then is Wait answered and TaskExit
//!   published. Its pid is free meanwhile: it is never signalled by pid again.
//! - An init's exit is held while any of its execs is live: every exec's TaskExit comes
//!   before the init's.
//! - Exits made final go through one outbox, published in the order they were made final
//!   whichever thread made them so.
//! - The table lock is never held across a runtime call, I/O or a publish (a Wait's
//!   answer included: waiters are told as the exit is published).
//!
//! The table knows nothing of runtimes or of `waitpid`: the reaper's thread hands it exits
//! ([`Supervisor::exited`]) and the task layer tells it what the runtime did ([`Start`]),
//! so tests drive it with synthetic exits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use runc_driver::ExitStatus;

use super::state::{Exit, Op, Status};
use super::table::{lock, Entry, Family, Key, Parked, Table};
use super::watch::{ExitCell, ExitWatch};
use crate::error::{Error, Missing, Result};
use crate::events::{EventSink, TaskEvent};

/// Called with a container id and its init's exit when that exit is routed, before its
/// TaskExit is published or held (the status is recorded in the bundle, TaskOOM goes out
/// first, a shared pid namespace is emptied).
pub type InitExitHook = Box<dyn Fn(&str, &Exit) + Send + Sync>;

/// Called with a process that was reaped, and what to run once everything it wrote before
/// it exited is in its fifos: at once if it has none, else from another thread, within a
/// bound. It must not block: the reaper's exits wait behind it.
pub type FlushHook<P> = Box<dyn Fn(&P, Flushed) + Send + Sync>;

/// What a [`FlushHook`] runs once the process's output is flushed: its exit is made final.
pub type Flushed = Box<dyn FnOnce() + Send>;

/// The processes of every container in this shim. `P` is what the task layer keeps with
/// each process (its stdio, its spec); the table hands it back on lookup.
pub struct Supervisor<P: Send + Sync + 'static> {
    on_init_exit: InitExitHook,
    flush: FlushHook<P>,
    shared: Arc<Shared<P>>,
}

/// What a flush's continuation reaches, from whichever thread runs it.
struct Shared<P> {
    events: Arc<dyn EventSink>,
    /// Guards every process's pid and status, the pid index, the parked exits and the
    /// outbox.
    table: Mutex<Table<P>>,
    /// Held while the outbox is emptied and published: one publisher at a time.
    publishing: Mutex<()>,
}

/// One process as a lookup sees it.
pub struct View<P> {
    pub process: Arc<P>,
    pub pid: i32,
    pub status: Status,
}

/// A create in flight: until it is dropped (or handed to [`Supervisor::add_init`]), an
/// exit nobody claims may be its init's and is parked.
pub struct Expect<'a, P: Send + Sync + 'static> {
    sup: &'a Supervisor<P>,
    /// Where the create began among parked exits ([`Parked::mark`]).
    since: u64,
}

/// A start in flight, from [`Supervisor::begin_start`]. [`Start::started`] when the
/// runtime started the process; dropped otherwise, which returns it to created.
pub struct Start<'a, P: Send + Sync + 'static> {
    sup: &'a Supervisor<P>,
    key: Key,
    /// Where the start began among parked exits ([`Parked::mark`]).
    since: u64,
    done: bool,
}

impl<P: Send + Sync + 'static> Supervisor<P> {
    pub fn new(
        events: Arc<dyn EventSink>,
        on_init_exit: InitExitHook,
        flush: FlushHook<P>,
    ) -> Self {
        Supervisor {
            on_init_exit,
            flush,
            shared: Arc::new(Shared {
                events,
                table: Mutex::new(Table {
                    containers: HashMap::new(),
                    by_pid: HashMap::new(),
                    parked: Parked::default(),
                    outbox: Vec::new(),
                }),
                publishing: Mutex::new(()),
            }),
        }
    }

    /// Call before the runtime's create: its init may exit before its pid is recorded.
    pub fn expect_pid(&self) -> Expect<'_, P> {
        let mut t = self.lock();
        t.parked.in_flight += 1;
        Expect {
            sup: self,
            since: t.parked.mark(),
        }
    }

    /// Records a created container's init with `pid`, then routes an exit that came first.
    pub fn add_init(&self, id: &str, pid: i32, process: Arc<P>, expect: Expect<'_, P>) {
        let key = Key::init(id);
        let early = {
            let mut t = self.lock();
            t.containers.insert(
                id.to_string(),
                Family {
                    init: Entry::new(process, pid),
                    execs: HashMap::new(),
                    init_held: false,
                },
            );
            match t.parked.take(pid, expect.since) {
                Some(e) => Some(e),
                None => {
                    t.by_pid.insert(pid, key.clone());
                    None
                }
            }
        };
        drop(expect);
        if let Some(exit) = early {
            self.deliver(&key, exit);
        }
    }

    /// Records an exec, not started, in a running container.
    pub fn add_exec(&self, id: &str, exec_id: &str, process: Arc<P>) -> Result<()> {
        let mut t = self.lock();
        let f = t.family(id)?;
        f.init.status.after(Op::Exec, &Key::init(id).what())?;
        if f.execs.contains_key(exec_id) {
            return Err(Error::already_exists(format!(
                "exec {exec_id} in container {id}"
            )));
        }
        f.execs.insert(exec_id.to_string(), Entry::new(process, 0));
        Ok(())
    }

    /// Created to starting; an exec also needs its container running.
    pub fn begin_start(&self, id: &str, exec_id: &str) -> Result<Start<'_, P>> {
        let key = Key::new(id, exec_id);
        let mut t = self.lock();
        let f = t.family(id)?;
        f.entry(&key)?.status.after(Op::Start, &key.what())?;
        if !key.is_init() {
            f.init.status.after(Op::Exec, &Key::init(id).what())?;
        }
        f.entry(&key)?.transition(Op::Start, &key)?;
        t.parked.in_flight += 1;
        let since = t.parked.mark();
        Ok(Start {
            sup: self,
            key,
            since,
            done: false,
        })
    }

    /// Routes an exit from the reaper: to its process, or parked if that is not known or
    /// still starting. The exits of processes nobody supervises (the runtime's own) are
    /// dropped once no start is in flight.
    pub fn exited(&self, exit: Exit) {
        let key = {
            let mut t = self.lock();
            let starting = t
                .by_pid
                .get(&exit.pid)
                .map(|k| t.status(k) == Some(Status::Starting));
            match starting {
                Some(false) => t.by_pid.remove(&exit.pid),
                _ => {
                    t.parked.park(exit);
                    None
                }
            }
        };
        if let Some(key) = key {
            self.deliver(&key, exit);
        }
    }

    /// The process, its pid and status.
    pub fn view(&self, id: &str, exec_id: &str) -> Result<View<P>> {
        let key = Key::new(id, exec_id);
        let mut t = self.lock();
        let e = t.family(id)?.entry(&key)?;
        Ok(View {
            process: Arc::clone(&e.process),
            pid: e.pid,
            status: e.status,
        })
    }

    /// Like [`Supervisor::view`], FailedPrecondition if `op` is not allowed now.
    pub fn check(&self, id: &str, exec_id: &str, op: Op) -> Result<View<P>> {
        let v = self.view(id, exec_id)?;
        v.status.after(op, &Key::new(id, exec_id).what())?;
        Ok(v)
    }

    /// The pid to signal the process by: only while it runs (or is paused) and has not
    /// been reaped, for a reaped pid may already be another process's. NotFound (exited)
    /// once it was reaped, FailedPrecondition before it started.
    pub fn signal_pid(&self, id: &str, exec_id: &str) -> Result<i32> {
        let key = Key::new(id, exec_id);
        let mut t = self.lock();
        let e = t.family(id)?.entry(&key)?;
        if e.status.reaped().is_some() {
            return Err(Error::NotFound {
                what: key.what(),
                why: Missing::Exited,
            });
        }
        e.status.after(Op::Signal, &key.what())?;
        Ok(e.pid)
    }

    /// Waits up to `timeout` for the exit of an exiting process to be made final (its
    /// output flushed), then makes it final anyway; returns at once for any other, and
    /// for an init whose execs are live (its exit waits for theirs). Every exit made final
    /// is published when this returns: a Delete after it publishes TaskDelete after the
    /// TaskExit.
    pub fn settle(&self, id: &str, exec_id: &str, timeout: Duration) -> Result<()> {
        let key = Key::new(id, exec_id);
        let exiting = {
            let mut t = self.lock();
            let f = t.family(id)?;
            let held = key.is_init() && f.exec_live();
            matches!(f.entry(&key)?.status, Status::Exiting(_)) && !held
        };
        if exiting && self.wait_timeout(id, exec_id, timeout)?.is_none() {
            log::warn!(
                "{}: output not flushed within {timeout:?}; its exit is made final",
                key.what()
            );
            self.shared.flushed(&key);
        }
        self.shared.publish();
        Ok(())
    }

    /// Applies `op` (pause, resume) after the runtime did it; FailedPrecondition if the
    /// process moved on meanwhile (it exited).
    pub fn apply(&self, id: &str, exec_id: &str, op: Op) -> Result<Status> {
        let key = Key::new(id, exec_id);
        let mut t = self.lock();
        t.family(id)?.entry(&key)?.transition(op, &key)
    }

    /// The process's exit to come, for a Wait: [`ExitWatch::notify`] tells a waiter once
    /// it is final, without a thread waiting meanwhile.
    pub fn watch(&self, id: &str, exec_id: &str) -> Result<ExitWatch> {
        Ok(ExitWatch(self.exit_cell(id, exec_id)?))
    }

    /// Blocks until the process has exited; None after `timeout`.
    pub fn wait_timeout(&self, id: &str, exec_id: &str, timeout: Duration) -> Result<Option<Exit>> {
        Ok(self.exit_cell(id, exec_id)?.wait_timeout(timeout))
    }

    /// The container's execs that have a pid, by pid.
    pub fn exec_pids(&self, id: &str) -> Result<HashMap<i32, String>> {
        let mut t = self.lock();
        Ok(t.family(id)?
            .execs
            .iter()
            .filter(|(_, e)| e.pid > 0)
            .map(|(exec_id, e)| (e.pid, exec_id.clone()))
            .collect())
    }

    /// Removes a created or stopped exec. One that never ran gets status 0 (as containerd's
    /// Go shim answers), so that whoever waits for it gets an answer. A held init exit
    /// it was the last to hold back is published. Returns the exec and its exit.
    pub fn remove_exec(&self, id: &str, exec_id: &str) -> Result<(Arc<P>, Exit)> {
        let key = Key::new(id, exec_id);
        let removed = {
            let mut t = self.lock();
            let f = t.family(id)?;
            f.entry(&key)?.status.after(Op::Delete, &key.what())?;
            let Some(e) = f.execs.remove(exec_id) else {
                return Err(key.not_found());
            };
            f.execs.shrink_to(f.execs.len() * 2);
            let released = f.release_held(id);
            t.outbox.extend(released);
            let exit = e.status.exit().unwrap_or(Exit {
                pid: e.pid,
                status: ExitStatus::exited(0),
                at: SystemTime::now(),
            });
            if e.pid > 0 {
                t.by_pid.remove(&e.pid);
                let n = t.by_pid.len() * 2;
                t.by_pid.shrink_to(n);
            }
            (e.process, exit, e.exited)
        };
        let (process, exit, waiters) = removed;
        waiters.set(exit);
        let removed = (process, exit);
        self.shared.publish();
        Ok(removed)
    }

    /// Forgets a deleted container and all its processes. Whoever still waits for one of
    /// them is answered as if it was killed (an exec that never ran: status 0, as
    /// [`Supervisor::remove_exec`] answers): no Wait outlives its container.
    pub fn remove_container(&self, id: &str) {
        let f = {
            let mut t = self.lock();
            let Some(f) = t.containers.remove(id) else {
                return;
            };
            for pid in std::iter::once(f.init.pid).chain(f.execs.values().map(|e| e.pid)) {
                t.by_pid.remove(&pid);
            }
            f
        };
        let now = SystemTime::now();
        let killed = ExitStatus::killed(libc::SIGKILL);
        let execs = f.execs.values().map(|e| (e, e.pid <= 0));
        for (e, never_ran) in std::iter::once((&f.init, false)).chain(execs) {
            // An exit reaped but not final yet (its output still flushing) is the one
            // told; one already final is kept.
            e.exited.set(e.status.reaped().unwrap_or(Exit {
                pid: e.pid,
                status: if never_ran {
                    ExitStatus::exited(0)
                } else {
                    killed
                },
                at: now,
            }));
        }
    }

    fn exit_cell(&self, id: &str, exec_id: &str) -> Result<Arc<ExitCell>> {
        let key = Key::new(id, exec_id);
        let mut t = self.lock();
        Ok(Arc::clone(&t.family(id)?.entry(&key)?.exited))
    }

    /// Gives a routed exit to its process, which is exiting from now on, and asks for its
    /// output to be flushed: then its exit is made final ([`Shared::flushed`]). An init's
    /// hook runs first (it may be what ends the output).
    fn deliver(&self, key: &Key, exit: Exit) {
        if key.is_init() {
            (self.on_init_exit)(&key.id, &exit);
        }
        let process = {
            let mut t = self.lock();
            // None if deleted meanwhile (a created container's init killed by Delete).
            t.containers
                .get_mut(&key.id)
                .and_then(|f| f.reaped(key, exit))
        };
        if let Some(p) = process {
            let shared = Arc::clone(&self.shared);
            let key = key.clone();
            (self.flush)(&p, Box::new(move || shared.flushed(&key)));
        }
    }

    /// Records an exec's pid, known once the runtime returned: from now on its exit is
    /// routed to it (and parked while it is starting).
    fn record_pid(&self, key: &Key, pid: i32) {
        let mut t = self.lock();
        let t = &mut *t;
        if let Some(e) = t.containers.get_mut(&key.id).and_then(|f| f.get_mut(key)) {
            e.pid = pid;
            t.by_pid.insert(pid, key.clone());
        }
    }

    /// The end of a start: TaskStart published while the process is still starting,
    /// then it is running and an exit that came meanwhile is delivered. Returns its pid.
    fn finish_start(&self, key: &Key, since: u64) -> i32 {
        let pid = {
            let mut t = self.lock();
            let e = t.containers.get_mut(&key.id).and_then(|f| f.get_mut(key));
            e.map(|e| e.pid)
        };
        let Some(pid) = pid else {
            // The container was deleted while its exec started: nobody to tell.
            self.lock().parked.done();
            return 0;
        };
        self.publish_start(key, pid);
        let early = {
            let mut t = self.lock();
            let early = t.started(key, pid, since);
            t.parked.done();
            early
        };
        if let Some(exit) = early {
            self.deliver(key, exit);
        }
        pid
    }

    /// A start the runtime failed: back to created. An init that died meanwhile stops;
    /// an exec no longer holds back its init's exit.
    fn fail_start(&self, key: &Key, since: u64) {
        let early = {
            let mut t = self.lock();
            let t = &mut *t;
            let mut early = None;
            if let Some(f) = t.containers.get_mut(&key.id) {
                if let Some(e) = f.get_mut(key) {
                    if let Err(err) = e.transition(Op::StartFailed, key) {
                        log::warn!("{err}");
                    }
                    if key.is_init() {
                        early = t.parked.take(e.pid, since);
                        if early.is_some() {
                            t.by_pid.remove(&e.pid);
                        }
                    }
                }
                t.outbox.extend(f.release_held(&key.id));
            }
            t.parked.done();
            early
        };
        self.shared.publish();
        if let Some(exit) = early {
            self.deliver(key, exit);
        }
    }

    fn publish_start(&self, key: &Key, pid: i32) {
        if key.is_init() {
            self.shared.events.publish(TaskEvent::Start {
                id: key.id.clone(),
                pid,
            });
            log::info!("started id={} pid={pid}", key.id);
        } else {
            self.shared.events.publish(TaskEvent::ExecStarted {
                id: key.id.clone(),
                exec_id: key.exec_id.clone(),
                pid,
            });
            log::info!(
                "exec started id={} exec_id={} pid={pid}",
                key.id,
                key.exec_id
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table<P>> {
        self.shared.lock()
    }
}

impl<P> Shared<P> {
    /// The output of exiting `key` is flushed: its exit is made final and published, and
    /// an exec's may release its init's. Nothing if it was made final already, or is gone.
    fn flushed(&self, key: &Key) {
        {
            let mut t = self.lock();
            let t = &mut *t;
            if let Some(f) = t.containers.get_mut(&key.id) {
                t.outbox.extend(f.settle(key));
            }
        }
        self.publish();
    }

    /// Publishes the exits in the outbox, in order. Whoever made one final publishes it
    /// and whatever came before; one publisher at a time keeps the order between threads.
    fn publish(&self) {
        let _order = lock(&self.publishing);
        let stopped = std::mem::take(&mut self.lock().outbox);
        for s in stopped {
            // Outside the table lock: a Wait's answer is queued from here.
            s.waiters.set(s.exit);
            log::info!(
                "exited id={} exec_id={} pid={} status={}",
                s.key.id,
                s.key.exec_id,
                s.pid,
                s.exit.status
            );
            self.events.publish(TaskEvent::Exit {
                id: s.key.id,
                exec_id: s.key.exec_id,
                pid: s.pid,
                status: s.exit.status,
                at: s.exit.at,
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table<P>> {
        lock(&self.table)
    }
}

impl<P: Send + Sync + 'static> Start<'_, P> {
    /// The runtime started the process; `pid` is an exec's, known only now (an init's was
    /// recorded at create). Publishes its TaskStart, then an exit that came meanwhile.
    /// Returns its pid.
    pub fn started(self, pid: Option<i32>) -> i32 {
        if let Some(pid) = pid {
            self.record_pid(pid);
        }
        self.finish()
    }

    fn record_pid(&self, pid: i32) {
        self.sup.record_pid(&self.key, pid);
    }

    fn finish(mut self) -> i32 {
        self.done = true;
        self.sup.finish_start(&self.key, self.since)
    }
}

impl<P: Send + Sync + 'static> Drop for Start<'_, P> {
    fn drop(&mut self) {
        if !self.done {
            self.sup.fail_start(&self.key, self.since);
        }
    }
}

impl<P: Send + Sync + 'static> Drop for Expect<'_, P> {
    fn drop(&mut self) {
        self.sup.lock().parked.done();
    }
}

#[cfg(test)]
mod tests;
