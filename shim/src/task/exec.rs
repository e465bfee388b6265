//! Exec processes: added by Exec, started by the runtime's `exec --detach`, signalled
//! by pid, removed by Delete.

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskExecAdded, TaskExecStarted};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use runc_driver::ExecOpts;

use super::state::{ExitInfo, Op, Status};
use super::{bundle, lock, validate_id, Container, Process, Tasks, IO_DRAIN};
use crate::error::{Error, Result};
use crate::io::{PendingIo, StdioPaths};

/// What Exec needs, converted from the request.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub id: String,
    pub exec_id: String,
    pub stdio: StdioPaths,
    pub spec: Option<Any>,
}

/// What the shim checks of an exec's process spec before handing it to the runtime.
#[derive(serde::Deserialize)]
struct ProcessSpec {
    #[allow(dead_code)] // parsed to reject a spec without arguments early
    args: Vec<String>,
}

impl Tasks {
    /// Exec: records the process; Start runs it.
    pub fn exec(&self, req: ExecSpec) -> Result<()> {
        let c = self.container(&req.id)?;
        validate_id(&req.exec_id).map_err(|e| Error::invalid(format!("exec id: {e}")))?;
        let spec = req.spec.filter(|a| !a.value.is_empty()).ok_or_else(|| {
            Error::invalid(format!(
                "exec {} in {}: the request has no process spec",
                req.exec_id, req.id
            ))
        })?;
        // The spec must be an OCI process; the runtime checks the rest.
        let malformed = |e: serde_json::Error| {
            Error::invalid(format!(
                "exec {} in {}: malformed process spec: {e}",
                req.exec_id, req.id
            ))
        };
        serde_json::from_slice::<ProcessSpec>(&spec.value).map_err(malformed)?;
        let spec_json = with_terminal(&spec.value, req.stdio.terminal).map_err(malformed)?;
        c.init
            .lock()
            .status
            .after(Op::Exec, &format!("container {}", req.id))?;
        {
            let mut t = lock(&c.execs);
            if t.by_id.contains_key(&req.exec_id) {
                return Err(Error::already_exists(format!(
                    "exec {} already exists in container {}",
                    req.exec_id, req.id
                )));
            }
            let p = Process::exec(&req.id, &req.exec_id, req.stdio, spec_json);
            t.by_id.insert(req.exec_id.clone(), Arc::new(p));
        }
        self.events.publish(Box::new(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        }));
        log::info!("exec added id={} exec_id={}", req.id, req.exec_id);
        Ok(())
    }

    pub(super) fn start_exec(&self, c: &Container, p: &Arc<Process>) -> Result<u32> {
        let what = format!("exec {} in container {}", p.exec_id, c.id);
        p.lock().status.after(Op::Start, &what)?;
        c.init
            .lock()
            .status
            .after(Op::Exec, &format!("container {}", c.id))?;
        let (stdio, io) = PendingIo::prepare(&p.stdio, self.io_owner(&c.id, c.io_owner))?;
        let stem = format!(".exec-{}", p.exec_id);
        let process_file = c.bundle.join(format!("{stem}.json"));
        let pid_file = c.bundle.join(format!("{stem}.pid"));
        std::fs::write(&process_file, &p.spec)
            .map_err(|e| Error::io(format!("write {}", process_file.display()), e))?;
        let opts = ExecOpts {
            process_file: process_file.clone(),
            pid_file: Some(pid_file.clone()),
            console_socket: io.console_socket(),
        };

        p.lock().starting = true;
        let pending = self.begin_pending();
        let mut io = Some(io);
        let started = c
            .runtime
            .exec(&c.id, &opts, stdio)
            .map_err(Error::runtime)
            .and_then(|()| bundle::read_pid(&pid_file))
            .and_then(|pid| {
                let io = io.take().map(|io| io.complete(&p.stdio)).transpose()?;
                if let Some(io) = io {
                    p.set_io(io);
                }
                Ok(pid)
            });
        let _ = std::fs::remove_file(&process_file);
        let _ = std::fs::remove_file(&pid_file);
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                drop(pending);
                p.lock().starting = false;
                if let Some(io) = io {
                    io.abandon();
                }
                self.release_held_init_exit(c);
                return Err(e);
            }
        };
        let early = self.claim_pid(pid, p);
        drop(pending);

        let mut st = p.lock();
        st.pid = pid;
        st.starting = false;
        st.status = Status::Running;
        self.events.publish(Box::new(TaskExecStarted {
            container_id: c.id.clone(),
            exec_id: p.exec_id.clone(),
            pid: pid as u32,
            ..Default::default()
        }));
        log::info!("exec started id={} exec_id={} pid={pid}", c.id, p.exec_id);
        let exit = early.or(st.pending_exit.take());
        if let Some(exit) = exit {
            self.set_exited(p, &mut st, exit);
        }
        drop(st);
        if exit.is_some() {
            self.release_held_init_exit(c);
        }
        Ok(pid as u32)
    }

    pub(super) fn delete_exec(&self, c: &Container, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let p = c.process(exec_id)?;
        let status = p.lock().status;
        status.after(Op::Delete, &format!("exec {exec_id} in container {}", c.id))?;
        {
            let mut t = lock(&c.execs);
            t.by_id.remove(exec_id);
            let n = t.by_id.len() * 2;
            t.by_id.shrink_to(n);
        }
        let pid = p.pid();
        if pid > 0 {
            let mut r = lock(&self.routes);
            r.by_pid.remove(&pid);
            let n = r.by_pid.len() * 2;
            r.by_pid.shrink_to(n);
        }
        if let Some(io) = p.take_io() {
            io.finish(IO_DRAIN);
        }
        let exit = match status.exit() {
            Some(e) => e,
            None => {
                // It never ran (its start failed, or nobody started it): whoever is still
                // waiting for it gets an answer instead of waiting forever. No process,
                // no failure to report: status 0, as containerd's Go shim answers.
                let e = ExitInfo {
                    status: 0,
                    at: std::time::SystemTime::now(),
                };
                p.lock().status = Status::Stopped(e);
                p.notify_exited();
                e
            }
        };
        log::info!("exec deleted id={} exec_id={exec_id} pid={pid}", c.id);
        // A created exec that never ran may have been all that held the init exit back.
        self.release_held_init_exit(c);
        crate::sys::release_free_memory();
        Ok((pid.max(0) as u32, exit))
    }
}

/// The process spec as the runtime gets it: the request's terminal flag replaces the
/// spec's, as containerd's Go shim does (runc refuses a console socket for a process whose
/// spec says no terminal, and a terminal without one).
fn with_terminal(spec: &[u8], terminal: bool) -> std::result::Result<Vec<u8>, serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_slice(spec)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("terminal".to_string(), terminal.into());
    }
    serde_json::to_vec(&v)
}

/// Kill for an exec: its pid is our child (reparented to the subreaper) until we reap
/// it, so it cannot have been reused while it is not marked stopped.
pub fn signal(p: &Process, signal: u32) -> Result<()> {
    let st = p.lock();
    let what = format!("exec {} in container {}", p.exec_id, p.container_id);
    match st.status {
        Status::Stopped(_) => Err(Error::not_found(format!(
            "process already finished: {what} has exited"
        ))),
        Status::Created => Err(Error::failed_precondition(format!(
            "cannot signal {what}: it is created, not started"
        ))),
        Status::Running | Status::Paused => {
            let sig = nix::sys::signal::Signal::try_from(signal as i32)
                .map_err(|_| Error::invalid(format!("signal {signal} is not a valid signal")))?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid), sig).map_err(|e| {
                Error::not_found(format!("process already finished: signal {what}: {e}"))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requests_terminal_flag_replaces_the_specs() {
        let spec = br#"{"args":["sh"],"terminal":false,"cwd":"/"}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&with_terminal(spec, true).unwrap()).unwrap();
        assert_eq!(v["terminal"], true);
        assert_eq!(v["cwd"], "/");
        let v: serde_json::Value =
            serde_json::from_slice(&with_terminal(br#"{"args":["sh"]}"#, false).unwrap()).unwrap();
        assert_eq!(v["terminal"], false);
        assert!(with_terminal(b"{not json", true).is_err());
    }
}
