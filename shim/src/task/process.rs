//! One process the shim supervises: a container's init or an exec.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::state::{ExitInfo, Status};
use crate::io::{ProcessIo, StdioPaths};

pub struct Process {
    pub container_id: String,
    /// Empty for a container's init.
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// Guards the lifecycle fields.
    state: Mutex<State>,
    /// Signalled when `state.status` becomes Stopped.
    exited: Condvar,
    /// Guards the copy threads' handle; taken at Delete.
    io: Mutex<Option<ProcessIo>>,
}

pub struct State {
    pub pid: i32,
    pub status: Status,
    /// Start is running the runtime's start; an exit now waits in `pending_exit`.
    pub starting: bool,
    pub pending_exit: Option<ExitInfo>,
}

impl Process {
    pub fn new(
        container_id: &str,
        exec_id: &str,
        stdio: StdioPaths,
        pid: i32,
        io: ProcessIo,
    ) -> Self {
        Process {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            stdio,
            state: Mutex::new(State {
                pid,
                status: Status::Created,
                starting: false,
                pending_exit: None,
            }),
            exited: Condvar::new(),
            io: Mutex::new(Some(io)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> i32 {
        self.lock().pid
    }

    pub fn notify_exited(&self) {
        self.exited.notify_all();
    }

    /// Blocks until the process has exited.
    pub fn wait(&self) -> ExitInfo {
        let mut st = self.lock();
        loop {
            if let Some(e) = st.status.exit() {
                return e;
            }
            st = self.exited.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Like [`Process::wait`], giving up after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitInfo> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(e) = st.status.exit() {
                return Some(e);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            st = self
                .exited
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn close_stdin(&self) {
        if let Some(io) = self.io.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            io.close_stdin();
        }
    }

    pub fn take_io(&self) -> Option<ProcessIo> {
        self.io.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
