//! Events to containerd: queued in order, sent by one thread, retried.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

/// Where events go. The service publishes through this; tests record.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: Box<dyn Event + Send>);
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
    fn publish(&self, event: Box<dyn Event + Send>) {
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

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
