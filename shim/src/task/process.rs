//! What the task layer keeps with one process (a container's init or an exec): its stdio
//! and, for an exec, its spec. Its pid and status are in the supervisor's table.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::io::{ProcessIo, StdioPaths, Then};

pub struct Process {
    pub container_id: String,
    /// Empty for a container's init.
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// An exec's OCI process spec (JSON), as the client sent it; empty for init.
    pub spec: Vec<u8>,
    /// Guards the copy threads' handle; set when the process starts, taken at Delete.
    io: Mutex<Option<ProcessIo>>,
}

impl Process {
    /// A container's init, created by the runtime.
    pub fn init(container_id: &str, stdio: StdioPaths, io: ProcessIo) -> Self {
        Self::new(container_id, "", stdio, Vec::new(), Some(io))
    }

    /// A container's init that a Start will restore from a checkpoint: no I/O yet.
    pub fn pending_init(container_id: &str, stdio: StdioPaths) -> Self {
        Self::new(container_id, "", stdio, Vec::new(), None)
    }

    /// An exec, known to the shim but not started: no I/O yet.
    pub fn exec(container_id: &str, exec_id: &str, stdio: StdioPaths, spec: Vec<u8>) -> Self {
        Self::new(container_id, exec_id, stdio, spec, None)
    }

    fn new(
        container_id: &str,
        exec_id: &str,
        stdio: StdioPaths,
        spec: Vec<u8>,
        io: Option<ProcessIo>,
    ) -> Self {
        Process {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            io: Mutex::new(io),
        }
    }

    pub fn close_stdin(&self) {
        if let Some(io) = self.io().as_ref() {
            io.close_stdin();
        }
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        // A process without a terminal has no size to set: nothing to do, as containerd's
        // Go shim answers (clients resize whatever they attached to).
        if !self.stdio.terminal {
            return Ok(());
        }
        match self.io().as_ref() {
            Some(io) => io.resize(rows, cols),
            None => Err(Error::precondition(format!(
                "resize the terminal of {} {}: the process has not started",
                self.container_id, self.exec_id
            ))),
        }
    }

    /// The process was reaped: `then` runs once what it wrote before it exited is in its
    /// fifos (at once without any), within `bound`. Does not wait.
    pub fn flush(&self, bound: Duration, then: Then) {
        let flusher = self.io().as_ref().and_then(ProcessIo::flusher);
        match flusher {
            Some(f) => f.request(bound, then),
            None => then(),
        }
    }

    pub fn set_io(&self, io: ProcessIo) {
        *self.io() = Some(io);
    }

    pub fn take_io(&self) -> Option<ProcessIo> {
        self.io().take()
    }

    fn io(&self) -> std::sync::MutexGuard<'_, Option<ProcessIo>> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }
}
