//! Each ttrpc connection: who may open one, and the status codes containerd expects.
//!
//! The ttrpc crate's sync server answers a call to a service or method it does not serve,
//! and a frame over its 4 MiB limit, with InvalidArgument. containerd's Go ttrpc answers
//! Unimplemented and ResourceExhausted, and containerd tells "not implemented" from a bad
//! request by that code. The crate has no fallback handler; what it does have is a
//! per-connection payload transform that sees every request as it is read and every
//! response before it is written. [`StatusCodes`] uses it to note which stream asked for
//! a path nobody serves, and which stream got an answer without a request ever arriving
//! (the crate read an oversize frame, discarded it and answered its stream), and gives
//! those two answers Go's codes. Every other payload passes through untouched.
//!
//! The crate's server runs five threads for each connection, idle or not. The hook bounds
//! what connections can cost: at most [`MAX_CONNECTIONS`] are served at once (containerd
//! keeps one per shim, two across its own restart), and one over the limit is closed as
//! it is accepted. A connection served is never ended to make room: containerd takes its
//! connection closing for the shim's death.

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use containerd_shim_protos::ttrpc::security_extension::{AcceptHook, HookError, HookOutput};
use containerd_shim_protos::ttrpc::{Code, PayloadTransform, Response};

/// The most connections served at once (see the module's documentation).
pub const MAX_CONNECTIONS: usize = 8;

/// Accepts connections from the socket owner's uid only (root: containerd), at most
/// [`MAX_CONNECTIONS`] at a time, and gives each one a [`StatusCodes`] transform.
#[derive(Debug)]
pub struct ConnectionHook {
    /// The method paths the server serves, `/service/method`.
    served: Arc<HashSet<String>>,
    /// The connections open, each counted until the crate lets go of its transform.
    open: Arc<AtomicUsize>,
}

impl ConnectionHook {
    pub fn new(served: impl IntoIterator<Item = String>) -> ConnectionHook {
        ConnectionHook {
            served: Arc::new(served.into_iter().collect()),
            open: Arc::default(),
        }
    }
}

impl AcceptHook for ConnectionHook {
    fn on_accept(&self, fd: RawFd) -> Result<HookOutput, HookError> {
        let uid = crate::sys::peer_uid_of_lent(fd).map_err(HookError::Io)?;
        let own = nix::unistd::geteuid().as_raw();
        if uid != own {
            log::warn!("refused a connection from uid {uid}");
            return Err(HookError::Rejected(format!("peer uid {uid} is not {own}")));
        }
        let counted = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            });
        if counted.is_err() {
            log::warn!("refused a connection: {MAX_CONNECTIONS} are open");
            return Err(HookError::Rejected(format!(
                "{MAX_CONNECTIONS} connections are open"
            )));
        }
        let mut codes = StatusCodes::new(Arc::clone(&self.served));
        codes.open = Some(Arc::clone(&self.open));
        Ok(HookOutput {
            data: Default::default(),
            payload_transform: Some(Box::new(codes)),
        })
    }
}

/// One connection's view of its calls in flight (see the module's documentation).
#[derive(Debug)]
pub struct StatusCodes {
    served: Arc<HashSet<String>>,
    /// Stream id -> the path the request asked for, if nobody serves it. Entries are
    /// added as a request is read and taken when its response is written.
    in_flight: Mutex<HashMap<u32, Option<Unserved>>>,
    /// Where the connection is counted: the crate drops the transform once the
    /// connection's threads have ended, calls in flight included (a Wait ends when its
    /// connection closes: Supervisor::wait).
    open: Option<Arc<AtomicUsize>>,
}

impl Drop for StatusCodes {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A call to a path the server does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unserved {
    service: String,
    method: String,
    /// Whether any method of the service is served.
    service_known: bool,
}

impl StatusCodes {
    fn new(served: Arc<HashSet<String>>) -> StatusCodes {
        StatusCodes {
            served,
            in_flight: Mutex::new(HashMap::new()),
            open: None,
        }
    }

    fn unserved(&self, request: &[u8]) -> Option<Unserved> {
        // A request that does not decode is answered InvalidArgument by the crate, which
        // is right; only a well-formed call to a path nobody serves is noted.
        let (service, method) = service_and_method(request)?;
        if self.served.contains(&format!("/{service}/{method}")) {
            return None;
        }
        let prefix = format!("/{service}/");
        let service_known = self.served.iter().any(|p| p.starts_with(&prefix));
        Some(Unserved {
            service,
            method,
            service_known,
        })
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Option<Unserved>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PayloadTransform for StatusCodes {
    fn transform_inbound(&self, data: Vec<u8>, aad: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(stream) = stream_id(aad) {
            let unserved = self.unserved(&data);
            self.in_flight().insert(stream, unserved);
        }
        Ok(data)
    }

    fn transform_outbound(&self, data: Vec<u8>, aad: &[u8]) -> Result<Vec<u8>, String> {
        let Some(stream) = stream_id(aad) else {
            return Ok(data);
        };
        let (code, message) = match self.in_flight().remove(&stream) {
            Some(None) => return Ok(data),
            Some(Some(u)) if u.service_known => (
                Code::UNIMPLEMENTED,
                format!(
                    "method {} of service {} is not implemented",
                    u.method, u.service
                ),
            ),
            Some(Some(u)) => (
                Code::UNIMPLEMENTED,
                format!("service {} is not served by this shim", u.service),
            ),
            // An answer to a stream whose request was never read: the frame was over the
            // size limit, and the crate's message says so.
            None => (Code::RESOURCE_EXHAUSTED, String::new()),
        };
        Ok(recode(data, code, message))
    }

    /// Rewriting a status keeps a response about the size it was.
    fn max_overhead(&self) -> usize {
        0
    }
}

/// The stream id at the head of the transform's additional data
/// (`stream_id(4, big-endian) || type || flags`).
fn stream_id(aad: &[u8]) -> Option<u32> {
    aad.get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
}

/// The service and method of an encoded ttrpc Request (fields 1 and 2), read without
/// copying its payload.
fn service_and_method(request: &[u8]) -> Option<(String, String)> {
    let mut input = CodedInputStream::from_bytes(request);
    let (mut service, mut method) = (None, None);
    while service.is_none() || method.is_none() {
        let tag = input.read_raw_tag_or_eof().ok()??;
        match tag {
            // field 1 (service) and 2 (method), length-delimited
            0x0a => service = Some(input.read_string().ok()?),
            0x12 => method = Some(input.read_string().ok()?),
            _ => {
                let wire_type = containerd_shim::protos::protobuf::rt::WireType::new(tag & 7)?;
                input.skip_field(wire_type).ok()?;
            }
        }
    }
    Some((service?, method?))
}

/// The response with an InvalidArgument status changed to `code` (and `message`, unless
/// empty); any other response as it was.
fn recode(data: Vec<u8>, code: Code, message: String) -> Vec<u8> {
    let Ok(mut response) = Response::parse_from_bytes(&data) else {
        return data;
    };
    let Some(status) = response.status.as_mut() else {
        return data;
    };
    if status.code() != Code::INVALID_ARGUMENT {
        return data;
    }
    status.set_code(code);
    if !message.is_empty() {
        status.message = message;
    }
    response.write_to_bytes().unwrap_or(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::{get_status, Request};

    const SERVED: &str = "/containerd.task.v2.Task/State";

    fn codes() -> StatusCodes {
        StatusCodes::new(Arc::new([SERVED.to_string()].into_iter().collect()))
    }

    fn request(service: &str, method: &str) -> Vec<u8> {
        let mut r = Request::new();
        r.service = service.into();
        r.method = method.into();
        r.payload = vec![7; 100];
        r.timeout_nano = 5;
        r.write_to_bytes().unwrap()
    }

    fn status_answer(code: Code, message: &str) -> Vec<u8> {
        let mut r = Response::new();
        r.status = Some(get_status(code, message)).into();
        r.write_to_bytes().unwrap()
    }

    fn aad(stream: u32) -> Vec<u8> {
        let mut a = stream.to_be_bytes().to_vec();
        a.extend([2, 0]);
        a
    }

    fn code_of(data: &[u8]) -> (Code, String) {
        let r = Response::parse_from_bytes(data).unwrap();
        let s = r.status.into_option().unwrap();
        (s.code(), s.message)
    }

    #[test]
    fn reads_service_and_method() {
        assert_eq!(
            service_and_method(&request("a.b.v1.S", "M")),
            Some(("a.b.v1.S".into(), "M".into()))
        );
        assert_eq!(service_and_method(b"\xff\xff"), None);
    }

    #[test]
    fn unknown_method_and_service_are_unimplemented() {
        let c = codes();
        let crate_says = status_answer(Code::INVALID_ARGUMENT, "/x does not exist");
        c.transform_inbound(request("containerd.task.v2.Task", "Frob"), &aad(1))
            .unwrap();
        c.transform_inbound(request("containerd.nope.v1.Nope", "State"), &aad(3))
            .unwrap();
        let (code, msg) = code_of(&c.transform_outbound(crate_says.clone(), &aad(1)).unwrap());
        assert_eq!(code, Code::UNIMPLEMENTED);
        assert!(
            msg.contains("Frob") && msg.contains("containerd.task.v2.Task"),
            "{msg}"
        );
        let (code, msg) = code_of(&c.transform_outbound(crate_says, &aad(3)).unwrap());
        assert_eq!(code, Code::UNIMPLEMENTED);
        assert!(msg.contains("containerd.nope.v1.Nope"), "{msg}");
        assert!(c.in_flight().is_empty());
    }

    #[test]
    fn served_calls_pass_untouched_even_when_invalid() {
        let c = codes();
        c.transform_inbound(request("containerd.task.v2.Task", "State"), &aad(5))
            .unwrap();
        let ours = status_answer(Code::INVALID_ARGUMENT, "id \"a/b\" is not valid");
        assert_eq!(c.transform_outbound(ours.clone(), &aad(5)).unwrap(), ours);
    }

    #[test]
    fn an_answer_without_a_request_is_resource_exhausted() {
        let c = codes();
        let msg = "message length 4194305 exceed maximum message size of 4194304";
        let out = c
            .transform_outbound(status_answer(Code::INVALID_ARGUMENT, msg), &aad(9))
            .unwrap();
        assert_eq!(code_of(&out), (Code::RESOURCE_EXHAUSTED, msg.to_string()));
    }
}
