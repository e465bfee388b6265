//! One state-changing runtime command per container at a time (kill, pause, resume,
//! update, delete), and identical kills coalesced: a runtime that hangs is run once per
//! container, not once per request, and requests queue behind it until its deadline.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// A container's serialisation of its runtime commands.
#[derive(Default)]
pub struct Serial {
    /// Held for the length of each state-changing runtime command.
    op: Mutex<()>,
    /// The kills under way, by (signal, all).
    kills: Mutex<HashMap<(u32, bool), Arc<Flight>>>,
}

/// A kill under way; identical kills wait for its outcome instead of running their own.
#[derive(Default)]
struct Flight {
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
}

/// A finished kill's result, as every request that joined it gets it.
#[derive(Clone)]
enum Outcome {
    Ok,
    Failed(Arc<Error>),
}

impl Serial {
    /// Holds the container's command lock: call before a state-changing runtime command
    /// and keep until its result is applied.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.op.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `kill` under the command lock, unless the same kill is under way: then waits
    /// for that one's result.
    pub fn kill(&self, key: (u32, bool), kill: impl FnOnce() -> Result<()>) -> Result<()> {
        let (flight, leader) = {
            let mut kills = self.kills.lock().unwrap_or_else(|e| e.into_inner());
            match kills.get(&key) {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight::default());
                    kills.insert(key, Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if !leader {
            let mut outcome = flight.outcome.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(o) = outcome.as_ref() {
                    return match o {
                        Outcome::Ok => Ok(()),
                        Outcome::Failed(e) => Err(e.shared()),
                    };
                }
                outcome = flight.done.wait(outcome).unwrap_or_else(|e| e.into_inner());
            }
        }
        let result = {
            let _op = self.lock();
            kill()
        };
        let (outcome, result) = match result {
            Ok(()) => (Outcome::Ok, Ok(())),
            Err(e) => {
                let e = Arc::new(e);
                (Outcome::Failed(Arc::clone(&e)), Err(e.shared()))
            }
        };
        // Later kills start afresh: this one's result is only for those that joined it.
        self.kills
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        *flight.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        flight.done.notify_all();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn identical_kills_run_once_and_share_the_result() {
        let serial = Arc::new(Serial::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let (serial, runs, gate) = (serial.clone(), runs.clone(), gate.clone());
                std::thread::spawn(move || {
                    serial.kill((15, false), || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let (m, cv) = &*gate;
                        let mut open = m.lock().unwrap();
                        while !*open {
                            open = cv.wait(open).unwrap();
                        }
                        Err(Error::internal("the runtime hung"))
                    })
                })
            })
            .collect();
        // Let every thread join the one kill, then let it finish.
        let joined = || {
            serial
                .kills
                .lock()
                .unwrap()
                .values()
                .next()
                .map(Arc::strong_count)
        };
        while joined() < Some(11) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (m, cv) = &*gate;
        *m.lock().unwrap() = true;
        cv.notify_all();
        for t in threads {
            let e = t.join().unwrap().unwrap_err();
            assert!(e.to_string().contains("the runtime hung"), "{e}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // The next kill runs again.
        serial.kill((15, false), || Ok(())).unwrap();
    }
}
