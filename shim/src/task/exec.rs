//! Exec processes: added by Exec, started by the runtime's `exec --detach`, signalled
//! by pid, removed by Delete.

use std::sync::Arc;

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use super::{Container, Process, Tasks, IO_DRAIN};
use crate::error::{Error, Missing, Result};
use crate::events::TaskEvent;
use crate::io::{PendingIo, StdioPaths};
use crate::request::{ContainerId, ExecId, Signal};
use crate::supervise::Exit;

/// What Exec needs, converted from the request.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub id: ContainerId,
    pub exec_id: ExecId,
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
        let mut t = crate::trace::span("exec", req.id.as_str());
        self.container(req.id.as_str())?;
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
        crate::trace::mark(&mut t, "spec");
        let (id, exec_id) = (req.id.as_str(), req.exec_id.as_str());
        let p = Process::exec(id, exec_id, req.stdio, spec_json);
        self.sup.add_exec(id, exec_id, Arc::new(p))?;
        crate::trace::mark(&mut t, "add");
        self.events.publish(TaskEvent::ExecAdded {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        });
        log::info!("exec added id={id} exec_id={exec_id}");
        crate::trace::mark(&mut t, "publish");
        Ok(())
    }

    pub(super) fn start_exec(&self, c: &Container, exec_id: &str) -> Result<u32> {
        let mut t = crate::trace::span("start_exec", &c.id);
        let p = self.sup.view(&c.id, exec_id)?.process;
        let start = self.sup.begin_start(&c.id, exec_id)?;
        crate::trace::mark(&mut t, "begin");
        let (stdio, io) = PendingIo::prepare(&p.stdio, self.io_owner(&c.id, c.io_owner))?;
        crate::trace::mark(&mut t, "prepare_io");
        let console_socket = io.console_socket();
        let mut io = Some(io);
        let started = c
            .runtime
            .exec(&c.id, &p.spec, console_socket, stdio)
            .map_err(Error::runtime)
            .and_then(|pid| {
                crate::trace::mark(&mut t, "runtime_exec");
                let io = io.take().map(|io| io.complete(&p.stdio)).transpose()?;
                if let Some(io) = io {
                    p.set_io(io);
                }
                Ok(pid)
            });
        crate::trace::mark(&mut t, "complete_io");
        match started {
            Ok(pid) => Ok(start.started(Some(pid)) as u32),
            Err(e) => {
                // Back to created (dropping `start`), then the pipes go.
                drop(start);
                if let Some(io) = io {
                    io.abandon();
                }
                Err(e)
            }
        }
    }

    pub(super) fn delete_exec(&self, c: &Container, exec_id: &str) -> Result<(u32, Exit)> {
        let mut t = crate::trace::span("delete_exec", &c.id);
        // An exec reaped a moment ago: its exit is made final (and published) first.
        self.sup.settle(&c.id, exec_id, IO_DRAIN)?;
        let (p, exit) = self.sup.remove_exec(&c.id, exec_id)?;
        crate::trace::mark(&mut t, "remove");
        if let Some(io) = p.take_io() {
            io.finish(IO_DRAIN);
        }
        crate::trace::mark(&mut t, "io_drain");
        log::info!(
            "exec deleted id={} exec_id={exec_id} pid={}",
            c.id,
            exit.pid
        );
        crate::sys::release_free_memory();
        crate::trace::mark(&mut t, "trim");
        Ok((exit.pid.max(0) as u32, exit))
    }

    /// Kill for an exec: by its pid, which is our child (reparented to the subreaper)
    /// until we reap it; once reaped (exiting or stopped) it answers as exited, for its
    /// pid may be another process's.
    pub(super) fn signal_exec(&self, id: &str, exec_id: &str, signal: Signal) -> Result<()> {
        let pid = self.sup.signal_pid(id, exec_id)?;
        crate::sys::kill(pid, signal.number()).map_err(|e| Error::NotFound {
            what: format!("exec {exec_id} in container {id}"),
            why: Missing::Signal(e),
        })
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
