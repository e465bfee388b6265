//! The workers that run requests: as many as there are calls running (a Wait is not one
//! once it is registered: see [`super::Deferred`]), at most [`MAX_WORKERS`]; past that,
//! calls wait their turn. A worker with nothing to do for [`IDLE_EXIT`] ends, down to
//! [`KEEP_IDLE`].

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The most workers at once, whatever the number of connections and calls.
pub const MAX_WORKERS: usize = 128;
/// Workers kept waiting for work when there is none.
const KEEP_IDLE: usize = 1;
/// How long a worker beyond [`KEEP_IDLE`] waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Workers alive.
    workers: usize,
    /// Workers waiting for work.
    idle: usize,
    /// Whether the queue was found full of waiting calls (logged once per episode).
    saturated: bool,
}

impl Pool {
    pub fn new() -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        })
    }

    /// Runs `job` on a waiting worker, a new one, or (all [`MAX_WORKERS`] busy) the
    /// first to come free.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let mut st = self.lock();
        st.queue.push_back(job);
        if st.queue.len() <= st.idle {
            self.work.notify_one();
            return;
        }
        if st.workers >= MAX_WORKERS {
            if !st.saturated {
                st.saturated = true;
                log::warn!("all {MAX_WORKERS} workers are busy: calls wait for one to come free");
            }
            return;
        }
        st.workers += 1;
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("rpc-worker".into())
            .spawn(move || pool.work());
        if let Err(e) = spawned {
            st.workers -= 1;
            log::error!("start a worker: {e}");
            if st.workers == 0 {
                // Nobody would ever run it: run it here rather than leave a call hanging.
                if let Some(job) = st.queue.pop_back() {
                    drop(st);
                    job();
                }
            }
        }
    }

    fn work(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                // A call that panicked (a bug, logged by the panic hook) goes unanswered;
                // its worker carries on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                st = self.lock();
                continue;
            }
            st.saturated = false;
            st.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(st, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if waited.timed_out() && st.queue.is_empty() && st.workers > KEEP_IDLE {
                st.workers -= 1;
                let calm = st.workers == KEEP_IDLE;
                drop(st);
                if calm {
                    // The end of a burst of calls: give its memory back.
                    crate::sys::release_free_memory();
                }
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent if a job panicked: jobs run outside the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.workers, st.idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Instant;

    fn until(mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn every_job_runs_and_blocked_ones_do_not_hold_up_the_rest() {
        let pool = Pool::new();
        let (release_tx, release_rx) = channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (done_tx, done_rx) = channel();
        // Ten calls that block (like Waits), then a hundred quick ones.
        for _ in 0..10 {
            let (rx, done) = (Arc::clone(&release_rx), done_tx.clone());
            pool.submit(Box::new(move || {
                let _ = rx.lock().unwrap().recv();
                done.send("blocked").unwrap();
            }));
        }
        for _ in 0..100 {
            let done = done_tx.clone();
            pool.submit(Box::new(move || done.send("quick").unwrap()));
        }
        let quick = (0..100)
            .map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .filter(|k| *k == "quick")
            .count();
        assert_eq!(quick, 100);
        drop(release_tx);
        for _ in 0..10 {
            assert_eq!(
                done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
                "blocked"
            );
        }
        assert!(pool.counts().0 <= MAX_WORKERS);
    }

    #[test]
    fn never_more_than_the_maximum_and_calls_wait_their_turn() {
        let pool = Pool::new();
        let (release_tx, release_rx) = channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (done_tx, done_rx) = channel();
        for _ in 0..MAX_WORKERS + 20 {
            let (rx, done) = (Arc::clone(&release_rx), done_tx.clone());
            pool.submit(Box::new(move || {
                let _ = rx.lock().unwrap().recv();
                done.send(()).unwrap();
            }));
        }
        assert!(until(|| pool.counts().0 == MAX_WORKERS));
        drop(release_tx);
        for _ in 0..MAX_WORKERS + 20 {
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(pool.counts().0, MAX_WORKERS, "no worker beyond the maximum");
    }
}
