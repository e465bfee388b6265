//! Events to containerd: the core's own [`TaskEvent`]s, turned into containerd's
//! protobuf messages here (the edge), queued in order, sent by one thread, retried with
//! backoff.
//!
//! A publish that fails (containerd is restarting, or too busy to answer in time) is
//! retried after 1 s, 2 s, ... 5 s, as the Go shim requeues a failed event up to five
//! times (`pkg/shim/publisher.go`): containerd has about 15 s to come back. Unlike the Go
//! shim, which requeues a failed event behind the ones published after it, the events
//! behind a retried one wait for it, so containerd sees TaskStart before TaskExit however
//! the sends fail. An event is dropped only after its last retry, with an error line
//! naming its topic and container (and exec) id.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use containerd_shim_protos::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO,
    TaskOOM, TaskPaused, TaskResumed, TaskStart,
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
    /// A checkpoint of the container was written to `checkpoint` (the image path).
    Checkpointed {
        id: String,
        checkpoint: String,
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
        TaskEvent::Checkpointed { id, checkpoint } => Box::new(TaskCheckpointed {
            container_id: id,
            checkpoint,
            ..Default::default()
        }),
    }
}

/// One attempt to hand an event to containerd: the seam where tests make sends fail.
pub trait Forwarder: Send {
    fn forward(&mut self, topic: &str, event: &dyn MessageDyn) -> Result<(), String>;

    /// Nothing was sent for a while: let go of the connection. Returns whether there was
    /// one.
    fn idle(&mut self) -> bool {
        false
    }
}

/// How a failed publish is retried: after `step`, 2 x `step`, ... up to `requeues` times.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub requeues: u32,
    pub step: Duration,
}

/// The Go shim's: five requeues, the n-th after n seconds.
pub const GO_SHIM_RETRY: Retry = Retry {
    requeues: 5,
    step: Duration::from_secs(1),
};

/// Sends events to containerd's ttrpc address, in the order they were published.
pub struct Publisher {
    tx: Mutex<Option<SyncSender<Box<dyn Event + Send>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Upstream sends each event with a 5 s timeout; so do we.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting while one is retried; upstream's requeue channel holds 2048.
const QUEUE: usize = 2048;

impl Publisher {
    pub fn start(ttrpc_address: String, namespace: String) -> std::io::Result<Publisher> {
        let remote = Remote {
            address: ttrpc_address,
            namespace,
            client: None,
        };
        Publisher::start_with(Box::new(remote), GO_SHIM_RETRY)
    }

    /// A publisher sending through `forwarder`.
    pub fn start_with(
        mut forwarder: Box<dyn Forwarder>,
        retry: Retry,
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || send_loop(forwarder.as_mut(), retry, &rx))?;
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
    /// Queues the event; never blocks the caller (an RPC, or the exit dispatcher).
    fn publish(&self, event: TaskEvent) {
        let event = to_proto(event);
        let guard = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            log::error!(
                "event lost: the shim is shutting down: {}",
                describe(event.as_ref())
            );
            return;
        };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => log::error!(
                "event lost: {QUEUE} events already wait for containerd: {}",
                describe(event.as_ref())
            ),
            Err(TrySendError::Disconnected(event)) => log::error!(
                "event lost: the publisher stopped: {}",
                describe(event.as_ref())
            ),
        }
    }
}

/// containerd's events service at its ttrpc address, connected on first use.
struct Remote {
    address: String,
    namespace: String,
    client: Option<RemotePublisher>,
}

impl Forwarder for Remote {
    fn forward(&mut self, topic: &str, event: &dyn MessageDyn) -> Result<(), String> {
        let client = match self.client.take() {
            Some(c) => c,
            None => RemotePublisher::new(&self.address)
                .map_err(|e| format!("connect to containerd at {}: {e}", self.address))?,
        };
        let ctx = Context {
            timeout_nano: SEND_TIMEOUT.as_nanos() as i64,
            ..Default::default()
        };
        // On failure the connection is dropped: the next attempt opens a new one.
        client
            .publish(ctx, topic, &self.namespace, event.clone_box())
            .map_err(|e| e.to_string())?;
        self.client = Some(client);
        Ok(())
    }

    fn idle(&mut self) -> bool {
        self.client.take().is_some()
    }
}

/// How long the connection to containerd is kept open with nothing to send; its client
/// holds two threads, which a long-running container does not need.
const IDLE: Duration = Duration::from_secs(2);

fn send_loop(forwarder: &mut dyn Forwarder, retry: Retry, rx: &Receiver<Box<dyn Event + Send>>) {
    loop {
        let event = match rx.recv_timeout(IDLE) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                if forwarder.idle() {
                    // The end of a burst of activity: give its memory back.
                    crate::sys::release_free_memory();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if !deliver(forwarder, retry, event.as_ref()) {
            log::error!(
                "event lost: containerd did not take it in {} attempts: {}",
                retry.requeues + 1,
                describe(event.as_ref())
            );
        }
    }
}

/// Sends `event`, retrying as `retry` says; whether it was sent.
fn deliver(forwarder: &mut dyn Forwarder, retry: Retry, event: &(dyn Event + Send)) -> bool {
    let topic = event.topic();
    let attempts = retry.requeues + 1;
    for attempt in 1..=attempts {
        if attempt > 1 {
            std::thread::sleep(retry.step * (attempt - 1));
        }
        match forwarder.forward(&topic, event) {
            Ok(()) => return true,
            Err(e) => log::warn!(
                "publish {} (attempt {attempt}/{attempts}): {e}",
                describe(event)
            ),
        }
    }
    false
}

/// An event for the log: its topic and whose it is, `/tasks/exit id=c1 exec_id=e1`.
fn describe(event: &(dyn Event + Send)) -> String {
    let message: &dyn MessageDyn = event;
    let descriptor = message.descriptor_dyn();
    let field = |name: &str| {
        descriptor
            .field_by_name(name)
            .and_then(|f| {
                f.get_singular_field_or_default(message)
                    .to_str()
                    .map(str::to_string)
            })
            .filter(|v| !v.is_empty())
    };
    let mut out = event.topic();
    let id = field("container_id");
    if let Some(id) = &id {
        out.push_str(&format!(" id={id}"));
    }
    // TaskExit and TaskDelete name the process as `id`: the exec's, or the container's.
    let exec = field("exec_id").or_else(|| field("id").filter(|e| Some(e) != id.as_ref()));
    if let Some(exec) = exec {
        out.push_str(&format!(" exec_id={exec}"));
    }
    out
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
    use std::sync::{Arc, Mutex};

    use super::*;

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

    /// A containerd that refuses the first `failures` sends, then takes everything.
    struct Flaky {
        failures: usize,
        attempts: Arc<Mutex<Vec<(String, bool)>>>,
    }

    impl Forwarder for Flaky {
        fn forward(&mut self, topic: &str, event: &dyn MessageDyn) -> Result<(), String> {
            let id = event
                .descriptor_dyn()
                .field_by_name("container_id")
                .and_then(|f| {
                    f.get_singular_field_or_default(event)
                        .to_str()
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let ok = self.failures == 0;
            self.failures = self.failures.saturating_sub(1);
            self.attempts
                .lock()
                .unwrap()
                .push((format!("{topic} {id}"), ok));
            if ok {
                Ok(())
            } else {
                Err("connection refused".into())
            }
        }
    }

    const FAST: Retry = Retry {
        requeues: 5,
        step: Duration::from_millis(1),
    };

    /// Publishes start then exit of container `c` through a containerd failing `failures`
    /// times; returns every attempt in order.
    fn publish_through(failures: usize) -> Vec<(String, bool)> {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let flaky = Flaky {
            failures,
            attempts: Arc::clone(&attempts),
        };
        let p = Publisher::start_with(Box::new(flaky), FAST).unwrap();
        p.publish(TaskEvent::Start {
            id: "c".into(),
            pid: 1,
        });
        p.publish(TaskEvent::Exit {
            id: "c".into(),
            exec_id: String::new(),
            pid: 1,
            status: ExitStatus::exited(3),
            at: SystemTime::now(),
        });
        p.close(Duration::from_secs(10));
        let a = attempts.lock().unwrap().clone();
        a
    }

    #[test]
    fn a_failed_publish_is_retried_and_start_stays_before_exit() {
        let attempts = publish_through(4);
        let delivered: Vec<_> = attempts.iter().filter(|(_, ok)| *ok).collect();
        assert_eq!(
            delivered,
            [
                &("/tasks/start c".to_string(), true),
                &("/tasks/exit c".to_string(), true)
            ]
        );
        // Four refusals, all of them of the start event: nothing overtook it.
        assert_eq!(attempts.len(), 6);
        assert!(attempts[..4].iter().all(|(e, _)| e == "/tasks/start c"));
    }

    #[test]
    fn an_event_is_dropped_only_after_five_requeues() {
        // Six refusals: the start event's first attempt and five requeues.
        let attempts = publish_through(6);
        assert_eq!(attempts.len(), 7);
        assert!(attempts[..6]
            .iter()
            .all(|a| a == &("/tasks/start c".to_string(), false)));
        assert_eq!(attempts[6], ("/tasks/exit c".to_string(), true));
    }

    #[test]
    fn a_lost_event_is_named_by_topic_and_ids() {
        let exec_exit = TaskExit {
            container_id: "c1".into(),
            id: "e1".into(),
            ..Default::default()
        };
        assert_eq!(describe(&exec_exit), "/tasks/exit id=c1 exec_id=e1");
        let init_exit = TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(describe(&init_exit), "/tasks/exit id=c1");
        let start = TaskStart {
            container_id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(describe(&start), "/tasks/start id=c1");
    }
}
