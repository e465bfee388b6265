//! Requests on a container or process that exists: signals, pause and resume, resource
//! updates, state, wait, pids, stdin and terminal size. Each looks the process up in the
//! supervisor's table, runs the runtime if it must, and applies the result there.

use super::{Container, ProcessView, Tasks};
use crate::error::{Error, Missing, Result};
use crate::events::TaskEvent;
use crate::request::{ContainerId, ProcessId, Signal};
use crate::supervise::{ExitWatch, Op};

impl Tasks {
    pub fn resize_pty(&self, p: &ProcessId, width: u32, height: u32) -> Result<()> {
        let p = self.sup.view(p.id(), p.exec_id())?.process;
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        p.resize(clamp(height), clamp(width))
    }

    /// Kill: an exec by its pid, the init through the runtime's `kill`.
    pub fn kill(&self, p: &ProcessId, signal: Signal, all: bool) -> Result<()> {
        let (id, exec_id) = (p.id(), p.exec_id());
        let c = self.container(id)?;
        // Reaped, if only exiting: it answers as exited.
        let stopped = self.sup.view(id, exec_id)?.status.reaped().is_some();
        if stopped && !all {
            return Err(Error::NotFound {
                what: format!("container {id}"),
                why: Missing::Exited,
            });
        }
        if !exec_id.is_empty() {
            return self.signal_exec(id, exec_id, signal);
        }
        let number = signal.number() as u32;
        let killed = c.serial.kill((number, all), || {
            c.runtime.kill(id, number, all).map_err(Error::runtime)
        });
        match killed {
            Ok(()) => Ok(()),
            // `kill --all` after init exited reaches whatever is left, or nothing.
            Err(e) if stopped && !matches!(e, Error::DeadlineExceeded { .. }) => {
                log::debug!("kill --all after exit id={id}: {e}");
                Ok(())
            }
            // A SIGKILL the runtime could not deliver in time: the shim knows the
            // processes and delivers it itself, so that `ctr task rm -f` (and a pod's
            // removal) finishes while the runtime hangs.
            Err(e @ Error::DeadlineExceeded { .. }) if signal == Signal::KILL => {
                match self.kill_directly(&c, id, all) {
                    Ok(n) => {
                        log::warn!("{e}; sent SIGKILL to {n} process(es) of {id} directly");
                        Ok(())
                    }
                    Err(direct) => {
                        log::warn!("kill {id} directly after the runtime's deadline: {direct}");
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// SIGKILL without the runtime: to the init, and with `all` (or when the container
    /// shares the host's pid namespace, where the init's death takes nothing with it) to
    /// every process in its cgroup. How many processes were signalled.
    pub(super) fn kill_directly(&self, c: &Container, id: &str, all: bool) -> Result<usize> {
        let mut n = 0;
        let init = self.sup.view(id, "")?;
        if init.status.reaped().is_none() && init.pid > 0 {
            crate::sys::kill(init.pid, libc::SIGKILL)
                .map_err(|e| Error::io(format!("kill init {} of {id}", init.pid), e))?;
            n += 1;
        }
        if all || c.shares_pid_ns {
            if let Some(cg) = c.cgroups.get() {
                n += cg
                    .kill_all()
                    .map_err(|e| Error::io(format!("kill the processes of {id}"), e))?;
            }
        }
        Ok(n)
    }

    pub fn pause(&self, id: &ContainerId) -> Result<()> {
        self.pause_or_resume(id.as_str(), Op::Pause)
    }

    pub fn resume(&self, id: &ContainerId) -> Result<()> {
        self.pause_or_resume(id.as_str(), Op::Resume)
    }

    fn pause_or_resume(&self, id: &str, op: Op) -> Result<()> {
        let c = self.container(id)?;
        let _op = c.serial.lock();
        self.sup.check(id, "", op)?;
        match op {
            Op::Pause => c.runtime.pause(id),
            _ => c.runtime.resume(id),
        }
        .map_err(Error::runtime)?;
        // Refused if the container exited meanwhile: no TaskPaused after its TaskExit.
        self.sup.apply(id, "", op)?;
        log::info!("{op} done id={id}");
        let id = id.to_string();
        self.events.publish(if op == Op::Pause {
            TaskEvent::Paused { id }
        } else {
            TaskEvent::Resumed { id }
        });
        Ok(())
    }

    /// Update: hands the container's new resources (an OCI LinuxResources JSON object)
    /// to the runtime's `update`.
    pub fn update(&self, id: &ContainerId, resources: &[u8]) -> Result<()> {
        let id = id.as_str();
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
        let _op = c.serial.lock();
        c.runtime.update(id, resources).map_err(Error::runtime)?;
        log::info!("update done id={id}");
        Ok(())
    }

    pub fn state(&self, p: &ProcessId) -> Result<ProcessView> {
        let (id, exec_id) = (p.id(), p.exec_id());
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

    /// The process's exit to come, for a Wait (answered from the exit's routing, with no
    /// thread held meanwhile).
    pub fn watch(&self, p: &ProcessId) -> Result<ExitWatch> {
        self.container(p.id())?;
        self.sup.watch(p.id(), p.exec_id())
    }

    /// Every pid in the container, with the exec id of those that belong to an exec.
    pub fn pids(&self, id: &ContainerId) -> Result<Vec<(u32, Option<String>)>> {
        let id = id.as_str();
        let c = self.container(id)?;
        let pids = c.runtime.ps(id).map_err(Error::runtime)?;
        let execs = self.sup.exec_pids(id)?;
        Ok(pids
            .into_iter()
            .map(|p| (p as u32, execs.get(&p).cloned()))
            .collect())
    }

    pub fn close_io(&self, p: &ProcessId) -> Result<()> {
        self.sup.view(p.id(), p.exec_id())?.process.close_stdin();
        Ok(())
    }

    /// The init pid of `id`, for Connect.
    pub fn init_pid(&self, id: &ContainerId) -> Result<u32> {
        Ok(self.sup.view(id.as_str(), "")?.pid as u32)
    }
}
