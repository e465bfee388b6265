//! The Task service: each method parses the request into typed ids and signals
//! ([`crate::request`]), calls one [`Tasks`] method and builds the protobuf response;
//! errors become ttrpc statuses by their variant ([`Error::code`]). Registered under both
//! `containerd.task.v2.Task` (containerd 1.x, and 2.x for shims that answered version 2)
//! and `containerd.task.v3.Task`. Wait is deferred ([`crate::rpc::Deferred`]): it is
//! answered when the exit is routed, with no thread waiting meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_shim_protos::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, PidsRequest, PidsResponse, StateRequest, StateResponse, WaitRequest,
    WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{EnumOrUnknown, Message, MessageField};
use containerd_shim_protos::shim::shim::{
    CheckpointTaskRequest, CloseIORequest, ExecProcessRequest, KillRequest, PauseRequest,
    ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse, StatsRequest,
    StatsResponse, UpdateTaskRequest,
};
use containerd_shim_protos::ttrpc::{self, MethodHandler, TtrpcContext};
use containerd_shim_protos::types::task::{ProcessInfo, Status as PbStatus};
use containerd_shim_protos::Task;

use crate::error::Error;
use crate::events::timestamp;
use crate::io::StdioPaths;
use crate::request::{ContainerId, ExecId, ProcessId, Signal};
use crate::rpc::{Deferred, Reply, Routes};
use crate::supervise::{Exit, ExitWaiter, Status};
use crate::task::{CheckpointSpec, CreateSpec, ExecSpec, Tasks};

pub struct Service {
    tasks: Arc<Tasks>,
}

type Methods = HashMap<String, Box<dyn MethodHandler + Send + Sync>>;

const V3: &str = "/containerd.task.v3.Task/";
const V2: &str = "/containerd.task.v2.Task/";

impl Service {
    pub fn new(tasks: Arc<Tasks>) -> Self {
        Service { tasks }
    }

    /// Every method of both Task API versions.
    pub fn routes(self) -> Routes {
        let tasks = Arc::clone(&self.tasks);
        let mut deferred = Deferred::new();
        for version in [V2, V3] {
            let tasks = Arc::clone(&tasks);
            deferred.insert(
                format!("{version}Wait"),
                Box::new(move |payload: &[u8], reply: Reply| wait(&tasks, payload, reply)),
            );
        }
        Routes {
            methods: both_versions(Arc::new(self)),
            deferred,
        }
    }
}

/// Wait: the process's exit, sent once it is final (at once if it is already).
fn wait(tasks: &Tasks, payload: &[u8], reply: Reply) {
    let req = match WaitRequest::parse_from_bytes(payload) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the Wait request does not decode: {e}");
            return reply.send::<WaitResponse>(Err(Error::Invalid(msg).into()));
        }
    };
    log::debug!("Wait id={} exec_id={}", req.id, req.exec_id);
    match process(&req.id, &req.exec_id).and_then(|p| tasks.watch(&p)) {
        Ok(watch) => watch.notify(Box::new(WaitAnswer(reply))),
        Err(e) => reply.send::<WaitResponse>(Err(e.into())),
    }
}

/// A Wait in progress.
struct WaitAnswer(Reply);

impl ExitWaiter for WaitAnswer {
    fn gone(&self) -> bool {
        self.0.gone()
    }

    fn exited(self: Box<Self>, exit: Exit) {
        self.0.send(Ok(WaitResponse {
            exit_status: exit.status.get(),
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        }));
    }
}

/// Every Task method of `svc` under the v3 and the v2 service name.
fn both_versions(svc: Arc<dyn Task + Send + Sync>) -> Methods {
    let mut methods = containerd_shim_protos::create_task(Arc::clone(&svc));
    let v2: Methods = containerd_shim_protos::create_task(svc)
        .into_iter()
        .map(|(path, h)| (path.replacen(V3, V2, 1), h))
        .collect();
    methods.extend(v2);
    methods
}

type R<T> = ttrpc::Result<T>;

impl Task for Service {
    fn state(&self, _: &TtrpcContext, req: StateRequest) -> R<StateResponse> {
        log::debug!("State id={} exec_id={}", req.id, req.exec_id);
        let v = self.tasks.state(&process(&req.id, &req.exec_id)?)?;
        let exit = v.status.exit();
        Ok(StateResponse {
            id: v.container_id,
            bundle: v.bundle.display().to_string(),
            pid: v.pid as u32,
            status: EnumOrUnknown::new(pb_status(v.status)),
            stdin: v.stdio.stdin,
            stdout: v.stdio.stdout,
            stderr: v.stdio.stderr,
            terminal: v.stdio.terminal,
            exit_status: exit.map_or(0, |e| e.status.get()),
            exited_at: exit
                .map_or_else(MessageField::none, |e| MessageField::some(timestamp(e.at))),
            exec_id: v.exec_id,
            ..Default::default()
        })
    }

    fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> R<CreateTaskResponse> {
        log::debug!("Create id={} bundle={}", req.id, req.bundle);
        let spec = CreateSpec {
            id: ContainerId::parse(&req.id)?,
            bundle: req.bundle.into(),
            rootfs: req.rootfs,
            stdio: StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
            options: req.options.into_option(),
            checkpoint: req.checkpoint,
            parent_checkpoint: req.parent_checkpoint,
        };
        let id = spec.id.clone();
        let pid = self
            .tasks
            .create(spec)
            .inspect_err(|e| log::warn!("create id={id}: {e}"))?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> R<StartResponse> {
        log::debug!("Start id={} exec_id={}", req.id, req.exec_id);
        let pid = self.tasks.start(&process(&req.id, &req.exec_id)?)?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> R<DeleteResponse> {
        log::debug!("Delete id={} exec_id={}", req.id, req.exec_id);
        let (pid, exit) = self.tasks.delete(&process(&req.id, &req.exec_id)?)?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.status.get(),
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> R<PidsResponse> {
        log::debug!("Pids id={}", req.id);
        let processes = self
            .tasks
            .pids(&ContainerId::parse(&req.id)?)?
            .into_iter()
            .map(|(pid, exec_id)| ProcessInfo {
                pid,
                info: exec_id.map_or_else(MessageField::none, |exec_id| {
                    MessageField::some(Any {
                        type_url: rsrunc_protos::PROCESS_DETAILS_NAME.to_string(),
                        value: rsrunc_protos::ProcessDetails { exec_id }.encode(),
                        ..Default::default()
                    })
                }),
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> R<Empty> {
        log::debug!("Pause id={}", req.id);
        self.tasks.pause(&ContainerId::parse(&req.id)?)?;
        Ok(Empty::new())
    }

    fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> R<Empty> {
        log::debug!("Resume id={}", req.id);
        self.tasks.resume(&ContainerId::parse(&req.id)?)?;
        Ok(Empty::new())
    }

    fn checkpoint(&self, _: &TtrpcContext, req: CheckpointTaskRequest) -> R<Empty> {
        log::debug!("Checkpoint id={} path={}", req.id, req.path);
        self.tasks.checkpoint(CheckpointSpec {
            id: ContainerId::parse(&req.id)?.to_string(),
            path: req.path,
            options: req.options.into_option(),
        })?;
        Ok(Empty::new())
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> R<Empty> {
        log::debug!(
            "Kill id={} exec_id={} signal={} all={}",
            req.id,
            req.exec_id,
            req.signal,
            req.all
        );
        let p = process(&req.id, &req.exec_id)?;
        let signal = Signal::parse(req.signal)?;
        self.tasks.kill(&p, signal, req.all)?;
        Ok(Empty::new())
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> R<Empty> {
        log::debug!("Exec id={} exec_id={}", req.id, req.exec_id);
        self.tasks.exec(ExecSpec {
            id: ContainerId::parse(&req.id)?,
            exec_id: ExecId::parse(&req.exec_id)?,
            stdio: StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
            spec: req.spec.into_option(),
        })?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> R<Empty> {
        log::debug!(
            "ResizePty id={} exec_id={} {}x{}",
            req.id,
            req.exec_id,
            req.width,
            req.height
        );
        self.tasks
            .resize_pty(&process(&req.id, &req.exec_id)?, req.width, req.height)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> R<Empty> {
        log::debug!("CloseIO id={} exec_id={}", req.id, req.exec_id);
        if req.stdin {
            self.tasks.close_io(&process(&req.id, &req.exec_id)?)?;
        }
        Ok(Empty::new())
    }

    fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> R<Empty> {
        log::debug!("Update id={}", req.id);
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or(b"");
        self.tasks
            .update(&ContainerId::parse(&req.id)?, resources)?;
        Ok(Empty::new())
    }

    fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> R<StatsResponse> {
        log::debug!("Stats id={}", req.id);
        Ok(StatsResponse {
            stats: MessageField::some(self.tasks.stats(&ContainerId::parse(&req.id)?)?),
            ..Default::default()
        })
    }

    fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> R<ConnectResponse> {
        log::debug!("Connect id={}", req.id);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: ContainerId::parse(&req.id)
                .and_then(|id| self.tasks.init_pid(&id))
                .unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> R<Empty> {
        log::debug!("Shutdown id={}", req.id);
        if !self.tasks.shutdown() {
            log::debug!("shutdown refused: containers remain");
        }
        Ok(Empty::new())
    }
}

/// The process a request names by `id` and `exec_id` (empty for the init).
fn process(id: &str, exec_id: &str) -> Result<ProcessId, Error> {
    ProcessId::parse(id, exec_id)
}

fn pb_status(s: Status) -> PbStatus {
    match s {
        // Starting is ours: containerd's Go shim stays created until start returns.
        Status::Created | Status::Starting => PbStatus::CREATED,
        // Reaped, its exit not final yet (its output on its way to its fifos): as for
        // Wait and TaskExit, it has not exited until it is.
        Status::Running | Status::Exiting(_) => PbStatus::RUNNING,
        Status::Paused => PbStatus::PAUSED,
        Status::Stopped(_) => PbStatus::STOPPED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_api_versions_are_registered_for_every_method() {
        let methods = both_versions(Arc::new(Nop));
        let v3: Vec<&String> = methods.keys().filter(|m| m.starts_with(V3)).collect();
        assert_eq!(v3.len(), 17);
        assert_eq!(methods.len(), 34);
        for m in v3 {
            let v2 = m.replacen(V3, V2, 1);
            assert!(methods.contains_key(&v2), "{v2} missing");
        }
        assert!(methods.contains_key("/containerd.task.v2.Task/Create"));
        assert!(methods.contains_key("/containerd.task.v3.Task/Shutdown"));
    }

    struct Nop;
    impl Task for Nop {}

    #[test]
    fn statuses_map_to_containerd_values() {
        assert_eq!(pb_status(Status::Created), PbStatus::CREATED);
        assert_eq!(pb_status(Status::Running), PbStatus::RUNNING);
        assert_eq!(pb_status(Status::Paused), PbStatus::PAUSED);
    }
}
