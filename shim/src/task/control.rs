//! Requests on a container or process that exists: signals, pause and resume, resource
//! updates, state, wait, pids, stdin and terminal size. Each looks the process up in the
//! supervisor's table, runs the runtime if it must, and applies the result there.

use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};

use super::{ProcessView, Tasks};
use crate::error::{Error, Result};
use crate::supervise::{Exit, Op, Status};

impl Tasks {
    pub fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let p = self.sup.view(id, exec_id)?.process;
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        p.resize(clamp(height), clamp(width))
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let c = self.container(id)?;
        let stopped = matches!(self.sup.view(id, exec_id)?.status, Status::Stopped(_));
        if stopped && !all {
            return Err(Error::not_found(format!(
                "process already finished: container {id} has exited"
            )));
        }
        if !exec_id.is_empty() {
            return self.signal_exec(id, exec_id, signal);
        }
        match c.runtime.kill(id, signal, all) {
            Ok(()) => Ok(()),
            // `kill --all` after init exited reaches whatever is left, or nothing.
            Err(e) if stopped => {
                log::debug!("kill --all after exit id={id}: {e}");
                Ok(())
            }
            Err(e) => Err(Error::runtime(e)),
        }
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.pause_or_resume(id, Op::Pause)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.pause_or_resume(id, Op::Resume)
    }

    fn pause_or_resume(&self, id: &str, op: Op) -> Result<()> {
        let c = self.container(id)?;
        self.sup.check(id, "", op)?;
        match op {
            Op::Pause => c.runtime.pause(id),
            _ => c.runtime.resume(id),
        }
        .map_err(Error::runtime)?;
        // Refused if the container exited meanwhile: no TaskPaused after its TaskExit.
        self.sup.apply(id, "", op)?;
        if op == Op::Pause {
            self.events.publish(Box::new(TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            }));
        } else {
            self.events.publish(Box::new(TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            }));
        }
        log::info!("{op} done id={id}");
        Ok(())
    }

    /// Update: hands the container's new resources (an OCI LinuxResources JSON object)
    /// to the runtime's `update`.
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let c = self.container(id)?;
        self.sup.check(id, "", Op::Update)?;
        match serde_json::from_slice::<serde_json::Value>(resources) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(Error::invalid(format!(
                "update of container {id}: the resources are not an OCI LinuxResources JSON object"
            )))
            }
        }
        // One file per call, so that concurrent updates do not see each other's.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = c.bundle.join(format!("rsrunc-update-{n}.json"));
        std::fs::write(&file, resources)
            .map_err(|e| Error::io(format_args!("write {}", file.display()), e))?;
        let result = c.runtime.update(id, &file).map_err(Error::runtime);
        let _ = std::fs::remove_file(&file);
        result?;
        log::info!("update done id={id}");
        Ok(())
    }

    pub fn state(&self, id: &str, exec_id: &str) -> Result<ProcessView> {
        let c = self.container(id)?;
        let v = self.sup.view(id, exec_id)?;
        Ok(ProcessView {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            bundle: c.bundle.clone(),
            pid: v.pid,
            status: v.status,
            stdio: v.process.stdio.clone(),
        })
    }

    pub fn wait(&self, id: &str, exec_id: &str) -> Result<Exit> {
        self.container(id)?;
        self.sup.wait(id, exec_id)
    }

    /// Every pid in the container, with the exec id of those that belong to an exec.
    pub fn pids(&self, id: &str) -> Result<Vec<(u32, Option<String>)>> {
        let c = self.container(id)?;
        let pids = c.runtime.ps(id).map_err(Error::runtime)?;
        let execs = self.sup.exec_pids(id)?;
        Ok(pids
            .into_iter()
            .map(|p| (p as u32, execs.get(&p).cloned()))
            .collect())
    }

    pub fn close_io(&self, id: &str, exec_id: &str) -> Result<()> {
        self.sup.view(id, exec_id)?.process.close_stdin();
        Ok(())
    }

    /// The init pid of `id`, for Connect.
    pub fn init_pid(&self, id: &str) -> Result<u32> {
        Ok(self.sup.view(id, "")?.pid as u32)
    }
}
