//! Events to containerd: the core's own [`TaskEvent`]s, turned into containerd's
//! protobuf messages here (the edge), queued in order, sent by one thread, retried.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::types::mount::Mount;
use runc_driver::ExitStatus;

use crate::io::StdioPaths;

/// What happened to a task, as the core reports it. `exec_id` is empty for an init.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Create {
        id: String,
        bundle: PathBuf,
        rootfs: Vec<Mount>,
        stdio: StdioPaths,
        checkpoint: String,
        pid: i32,
    },
    Start {
        id: String,
        pid: i32,
    },
    ExecAdded {
        id: String,
        exec_id: String,
    },
    ExecStarted {
        id: String,
        exec_id: String,
        pid: i32,
    },
    Exit {
        id: String,
        exec_id: String,
        pid: i32,
        status: ExitStatus,
        at: SystemTime,
    },
    Delete {
        id: String,
        pid: i32,
        status: ExitStatus,
        at: SystemTime,
    },
    Oom {
        id: String,
    },
    Paused {
        id: String,
    },
    Resumed {
        id: String,
    },
}

/// Where the core's events go: to containerd ([`Publisher`]), or a test's record.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: TaskEvent);
}

/// The protobuf message containerd expects for `e`: the one place they are built.
pub fn to_proto(e: TaskEvent) -> Box<dyn Event + Send> {
    let pid = |p: i32| p.max(0) as u32;
    match e {
        TaskEvent::Create {
            id,
            bundle,
            rootfs,
            stdio,
            checkpoint,
            pid: p,
        } => Box::new(TaskCreate {
            container_id: id,
            bundle: bundle.display().to_string(),
            rootfs,
            io: MessageField::some(TaskIO {
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: stdio.terminal,
                ..Default::default()
            }),
            checkpoint,
            pid: pid(p),
            ..Default::default()
        }),
        TaskEvent::Start { id, pid: p } => Box::new(TaskStart {
            container_id: id,
            pid: pid(p),
            ..Default::default()
        }),
        TaskEvent::ExecAdded { id, exec_id } => Box::new(TaskExecAdded {
            container_id: id,
            exec_id,
            ..Default::default()
        }),
        TaskEvent::ExecStarted {
            id,
            exec_id,
            pid: p,
        } => Box::new(TaskExecStarted {
            container_id: id,
            exec_id,
            pid: pid(p),
            ..Default::default()
        }),
        TaskEvent::Exit {
            id,
            exec_id,
            pid: p,
            status,
            at,
        } => Box::new(TaskExit {
            // TaskExit's id is the process's: the container's for its init.
            id: if exec_id.is_empty() {
                id.clone()
            } else {
                exec_id
            },
            container_id: id,
            pid: pid(p),
            exit_status: status.get(),
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        }),
        TaskEvent::Delete {
            id,
            pid: p,
            status,
            at,
        } => Box::new(TaskDelete {
            container_id: id.clone(),
            id,
            pid: pid(p),
            exit_status: status.get(),
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        }),
        TaskEvent::Oom { id } => Box::new(TaskOOM {
            container_id: id,
            ..Default::default()
        }),
        TaskEvent::Paused { id } => Box::new(TaskPaused {
            container_id: id,
            ..Default::default()
        }),
        TaskEvent::Resumed { id } => Box::new(TaskResumed {
            container_id: id,
            ..Default::default()
        }),
    }
}

/// Sends events to containerd's ttrpc address, in the order they were published.
pub struct Publisher {
    tx: Mutex<Option<SyncSender<Box<dyn Event + Send>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Upstream sends each event with a 5 s timeout and retries; so do we.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 5;
const QUEUE: usize = 1024;

impl Publisher {
    pub fn start(ttrpc_address: String, namespace: String) -> std::io::Result<Publisher> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || send_loop(&ttrpc_address, &namespace, rx))?;
        Ok(Publisher {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops taking events and waits up to `timeout` for the queue to be sent.
    pub fn close(&self, timeout: Duration) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl EventSink for Publisher {
    fn publish(&self, event: TaskEvent) {
        let event = to_proto(event);
        let topic = event.topic();
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => {
                if tx.send(event).is_err() {
                    log::error!("event lost: the publisher stopped, topic={topic}");
                }
            }
            None => log::error!("event lost: the shim is shutting down, topic={topic}"),
        }
    }
}

/// How long the connection to containerd is kept open with nothing to send; its client
/// holds two threads, which a long-running container does not need.
const IDLE: Duration = Duration::from_secs(2);

fn send_loop(address: &str, namespace: &str, rx: Receiver<Box<dyn Event + Send>>) {
    let mut client: Option<RemotePublisher> = None;
    loop {
        let event = match rx.recv_timeout(IDLE) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                if client.take().is_some() {
                    // The end of a burst of activity: give its memory back.
                    crate::sys::release_free_memory();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let topic = event.topic();
        let event: Box<dyn containerd_shim::protos::protobuf::MessageDyn> = event;
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            if client.is_none() {
                match RemotePublisher::new(address) {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        log::warn!("connect to containerd at {address} to publish {topic}: {e}")
                    }
                }
            }
            if let Some(c) = &client {
                let ctx = Context {
                    timeout_nano: SEND_TIMEOUT.as_nanos() as i64,
                    ..Default::default()
                };
                match c.publish(ctx, &topic, namespace, clone_event(event.as_ref())) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        log::warn!("publish {topic} (attempt {attempt}/{ATTEMPTS}): {e}");
                        client = None;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
        }
        if !sent {
            log::error!("event lost after {ATTEMPTS} attempts: topic={topic}");
        }
    }
}

/// `publish` takes the event by value; a retry needs another copy of it.
fn clone_event(
    e: &dyn containerd_shim::protos::protobuf::MessageDyn,
) -> Box<dyn containerd_shim::protos::protobuf::MessageDyn> {
    e.clone_box()
}

/// A time as the events and responses carry it.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use containerd_shim_protos::protobuf::MessageDyn;

    #[test]
    fn exits_carry_the_process_id_and_the_status() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let exit = |exec_id: &str| TaskEvent::Exit {
            id: "c1".into(),
            exec_id: exec_id.into(),
            pid: 42,
            status: ExitStatus::killed(9),
            at,
        };
        let e = to_proto(exit(""));
        assert_eq!(e.topic(), "/tasks/exit");
        let m: &dyn MessageDyn = &*e;
        let x = m.downcast_ref::<TaskExit>().unwrap();
        assert_eq!(
            (x.container_id.as_str(), x.id.as_str(), x.pid, x.exit_status),
            ("c1", "c1", 42, 137)
        );
        assert_eq!(x.exited_at.seconds, 5);
        let e = to_proto(exit("e1"));
        let m: &dyn MessageDyn = &*e;
        assert_eq!(m.downcast_ref::<TaskExit>().unwrap().id, "e1");
    }

    #[test]
    fn every_event_has_its_topic() {
        let id = || "c1".to_string();
        let topics: Vec<String> = [
            TaskEvent::Start { id: id(), pid: 1 },
            TaskEvent::ExecAdded {
                id: id(),
                exec_id: "e".into(),
            },
            TaskEvent::ExecStarted {
                id: id(),
                exec_id: "e".into(),
                pid: 2,
            },
            TaskEvent::Delete {
                id: id(),
                pid: 1,
                status: ExitStatus::exited(0),
                at: SystemTime::now(),
            },
            TaskEvent::Oom { id: id() },
            TaskEvent::Paused { id: id() },
            TaskEvent::Resumed { id: id() },
        ]
        .into_iter()
        .map(|e| to_proto(e).topic())
        .collect();
        assert_eq!(
            topics,
            [
                "/tasks/start",
                "/tasks/exec-added",
                "/tasks/exec-started",
                "/tasks/delete",
                "/tasks/oom",
                "/tasks/paused",
                "/tasks/resumed"
            ]
        );
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
