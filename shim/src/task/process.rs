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
    /// An exec's OCI process spec (JSON), as the client sent it; empty for init.
    pub spec: Vec<u8>,
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
    /// A container's init, created by the runtime with `pid`.
    pub fn init(container_id: &str, stdio: StdioPaths, pid: i32, io: ProcessIo) -> Self {
        Self::new(container_id, "", stdio, Vec::new(), pid, Some(io))
    }

    /// An exec, known to the shim but not started: no pid and no I/O yet.
    pub fn exec(container_id: &str, exec_id: &str, stdio: StdioPaths, spec: Vec<u8>) -> Self {
        Self::new(container_id, exec_id, stdio, spec, 0, None)
    }

    fn new(
        container_id: &str,
        exec_id: &str,
        stdio: StdioPaths,
        spec: Vec<u8>,
        pid: i32,
        io: Option<ProcessIo>,
    ) -> Self {
        Process {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            state: Mutex::new(State {
                pid,
                status: Status::Created,
                starting: false,
                pending_exit: None,
            }),
            exited: Condvar::new(),
            io: Mutex::new(io),
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

    pub fn resize(&self, rows: u16, cols: u16) -> crate::error::Result<()> {
        // A process without a terminal has no size to set: nothing to do, as containerd's
        // Go shim answers (clients resize whatever they attached to).
        if !self.stdio.terminal {
            return Ok(());
        }
        match self.io.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(io) => io.resize(rows, cols),
            None => Err(crate::error::Error::failed_precondition(format!(
                "resize the terminal of {} {}: the process has not started",
                self.container_id, self.exec_id
            ))),
        }
    }

    pub fn set_io(&self, io: ProcessIo) {
        *self.io.lock().unwrap_or_else(|e| e.into_inner()) = Some(io);
    }

    /// Running, or being started: an exit is still to come.
    pub fn is_live(&self) -> bool {
        let st = self.lock();
        st.starting || matches!(st.status, Status::Running | Status::Paused)
    }

    pub fn take_io(&self) -> Option<ProcessIo> {
        self.io.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
