//! The ttrpc server containerd talks to.
//!
//! The ttrpc crate's sync server runs five or six threads for each connection, idle or
//! not (a reader, a writer, a supervisor and its workers): 500 idle connections cost
//! about 2,900 threads. This one costs a file descriptor and a read buffer per idle
//! connection. One thread ([`serve`]'s, "rpc") waits on the listening socket and every
//! connection at once (epoll), accepts, and reads whatever arrives into each connection's
//! [`wire::Decoder`]; each request it completes runs on a worker of a [`pool::Pool`] that
//! grows with the calls in progress up to [`pool::MAX_WORKERS`], whatever the number of
//! connections, and shrinks back when idle. The worker writes the response itself (one
//! writer at a time per connection). A method that waits for an event (Wait, for a
//! process's exit) is [`Deferred`]: its worker hands a [`Reply`] to whoever will know the
//! answer and moves on, so calls in progress that wait hold no thread.
//!
//! It answers as containerd's Go ttrpc does where the crate does not: a call to a service
//! or method the shim does not serve is Unimplemented (containerd reads "not implemented"
//! from that code), a frame over 4 MiB is ResourceExhausted (and the connection goes on),
//! a request that does not decode is InvalidArgument. Only the socket owner's uid (root:
//! containerd) may connect.

mod pool;
mod wire;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::{
    context, get_status, Code, ConnectionContext, MessageHeader, MethodHandler, Request, Response,
    TtrpcContext,
};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use self::pool::Pool;
use self::wire::{Decoder, Frame, MAX_PAYLOAD};

/// The generated services' handlers by method path, `/service/method`.
pub type Methods = HashMap<String, Box<dyn MethodHandler + Send + Sync>>;

/// Methods answered later, by method path: each gets the request's payload and a
/// [`Reply`] to send the answer with when it is known.
pub type Deferred = HashMap<String, Box<dyn Fn(&[u8], Reply) + Send + Sync>>;

/// Every method served.
pub struct Routes {
    pub methods: Methods,
    pub deferred: Deferred,
}

/// Where a deferred call's answer goes: its connection (if it is still open then) and
/// its stream. Sending queues the write on a worker, so it never blocks the sender.
pub struct Reply {
    conn: Weak<Conn>,
    stream: u32,
    pool: Arc<Pool>,
}

/// The listener's epoll token; connections count from 1.
const LISTENER: u64 = 0;
/// The most read at once from one connection.
const READ_SIZE: usize = 64 * 1024;

/// Serves `routes` on `listener` from a thread of its own, for as long as the process
/// lives.
pub fn serve(listener: UnixListener, routes: Routes) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
    epoll
        .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        .map_err(io::Error::from)?;
    let server = Server {
        listener,
        epoll,
        routes: Arc::new(routes),
        pool: Pool::new(),
        conns: HashMap::new(),
        next: LISTENER + 1,
    };
    std::thread::Builder::new()
        .name("rpc".into())
        .spawn(move || server.run())?;
    Ok(())
}

struct Server {
    listener: UnixListener,
    epoll: Epoll,
    routes: Arc<Routes>,
    pool: Arc<Pool>,
    /// Each connection and its frames so far.
    conns: HashMap<u64, (Arc<Conn>, Decoder)>,
    next: u64,
}

/// A connection as the workers see it: where to write a response.
struct Conn {
    stream: UnixStream,
    /// One response written at a time.
    writing: Mutex<()>,
    /// Set once the client has closed it: a deferred call's waiter is then let go of.
    closed: AtomicBool,
}

impl Server {
    fn run(mut self) {
        let mut events = vec![EpollEvent::empty(); 32];
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // Nothing more could ever be served: containerd sees the socket fail.
                    log::error!("wait for connections: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    LISTENER => self.accept(),
                    token => self.read(token, &mut buf),
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the pending connection stays queued.
                    log::warn!("accept a connection: {e}");
                    return;
                }
            };
            let own = nix::unistd::geteuid().as_raw();
            match peer_uid(&stream) {
                Ok(uid) if uid == own => {}
                Ok(uid) => {
                    log::warn!("refused a connection from uid {uid}");
                    continue;
                }
                Err(e) => {
                    log::warn!("refused a connection whose peer is unknown: {e}");
                    continue;
                }
            }
            let token = self.next;
            self.next += 1;
            // Level-triggered: a read left unread is reported again.
            let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, token);
            if let Err(e) = self.epoll.add(&stream, ev) {
                log::warn!("watch a connection: {e}");
                continue;
            }
            let conn = Arc::new(Conn {
                stream,
                writing: Mutex::new(()),
                closed: AtomicBool::new(false),
            });
            self.conns.insert(token, (conn, Decoder::default()));
        }
    }

    /// One read from connection `token`; its complete requests go to the workers. The
    /// socket is blocking, but a read after readiness returns what is there.
    fn read(&mut self, token: u64, buf: &mut [u8]) {
        let Some((conn, decoder)) = self.conns.get_mut(&token) else {
            return;
        };
        let n = match (&conn.stream).read(buf) {
            Ok(0) => return self.close(token),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                log::debug!("read a connection: {e}");
                return self.close(token);
            }
        };
        let mut frames = Vec::new();
        decoder.push(&buf[..n], &mut frames);
        for frame in frames {
            let (conn, routes, pool) = (
                Arc::clone(conn),
                Arc::clone(&self.routes),
                Arc::clone(&self.pool),
            );
            self.pool
                .submit(Box::new(move || answer(&conn, &routes, &pool, frame)));
        }
    }

    /// Stops watching `token`; calls running on it keep the socket until they end. A
    /// deferred call's [`Reply`] does not keep it.
    fn close(&mut self, token: u64) {
        if let Some((conn, _)) = self.conns.remove(&token) {
            conn.closed.store(true, Ordering::Release);
            let _ = self.epoll.delete(conn.stream.as_fd());
        }
    }
}

/// Runs one request and writes its response, or hands a deferred one its [`Reply`].
fn answer(conn: &Arc<Conn>, routes: &Routes, pool: &Arc<Pool>, frame: Frame) {
    let (stream, payload) = match frame {
        Frame::Request { stream, payload } => (stream, payload),
        Frame::Oversize { stream, len } => {
            let msg = format!("message length {len} exceed maximum message size of {MAX_PAYLOAD}");
            return conn.respond(stream, &status(Code::RESOURCE_EXHAUSTED, msg));
        }
    };
    let req = match Request::parse_from_bytes(&payload) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the request does not decode: {e}");
            return conn.respond(stream, &status(Code::INVALID_ARGUMENT, msg));
        }
    };
    let path = format!("/{}/{}", req.service, req.method);
    if let Some(deferred) = routes.deferred.get(&path) {
        let reply = Reply {
            conn: Arc::downgrade(conn),
            stream,
            pool: Arc::clone(pool),
        };
        return deferred(&req.payload, reply);
    }
    let Some(handler) = routes.methods.get(&path) else {
        return conn.respond(stream, &unserved(routes, &req.service, &req.method));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let ctx = TtrpcContext {
        fd: conn.stream.as_raw_fd(),
        cancel_rx: never_cancelled(),
        mh: MessageHeader {
            length: payload.len() as u32,
            stream_id: stream,
            type_: wire::TYPE_REQUEST,
            flags: 0,
        },
        res_tx: tx,
        metadata: context::from_pb(&req.metadata),
        timeout_nano: req.timeout_nano,
        conn_ctx: plain_connection(),
    };
    match handler.handler(ctx, req) {
        // The generated handler has encoded its response, or its error's, into the channel.
        Ok(()) => match rx.try_recv() {
            Ok((_, encoded)) => conn.write(stream, &encoded),
            Err(_) => conn.respond(
                stream,
                &status(Code::INTERNAL, format!("{path} gave no response")),
            ),
        },
        // A payload the method could not decode (the crate's server closes the
        // connection here; Go's ttrpc answers, as this does).
        Err(e) => conn.respond(stream, &Response::from(e)),
    }
}

impl Conn {
    fn respond(&self, stream: u32, response: &Response) {
        match response.write_to_bytes() {
            Ok(encoded) => self.write(stream, &encoded),
            Err(e) => log::error!("encode a response: {e}"),
        }
    }

    fn write(&self, stream: u32, payload: &[u8]) {
        let payload = if payload.len() > MAX_PAYLOAD {
            let msg = format!(
                "the response of {} bytes exceeds the maximum message size of {MAX_PAYLOAD}",
                payload.len()
            );
            match status(Code::RESOURCE_EXHAUSTED, msg).write_to_bytes() {
                Ok(p) => std::borrow::Cow::Owned(p),
                Err(_) => return,
            }
        } else {
            std::borrow::Cow::Borrowed(payload)
        };
        let frame = wire::response(stream, &payload);
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = (&self.stream).write_all(&frame) {
            // The client went away: nobody is left to tell.
            log::debug!("write a response: {e}");
        }
    }
}

/// The uid of the process at the other end of a connection.
fn peer_uid(sock: &UnixStream) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(cred.uid())
}

impl Reply {
    /// Whether the client has closed the connection: nobody would read the answer.
    pub fn gone(&self) -> bool {
        self.conn
            .upgrade()
            .is_none_or(|c| c.closed.load(Ordering::Acquire))
    }

    /// Sends the answer (a message, or an error's status) from any thread, without
    /// blocking it.
    pub fn send<M: Message>(self, result: containerd_shim_protos::ttrpc::Result<M>) {
        use containerd_shim_protos::ttrpc::Error as RpcError;
        let response = match result.map(|m| m.write_to_bytes()) {
            Ok(Ok(payload)) => {
                let mut r = status(Code::OK, String::new());
                r.payload = payload;
                r
            }
            Ok(Err(e)) => status(Code::INTERNAL, format!("encode a response: {e}")),
            Err(RpcError::RpcStatus(s)) => {
                let mut r = Response::new();
                r.status = Some(s).into();
                r
            }
            Err(e) => status(Code::UNKNOWN, format!("{e:?}")),
        };
        let Some(conn) = self.conn.upgrade() else {
            return;
        };
        let stream = self.stream;
        self.pool
            .submit(Box::new(move || conn.respond(stream, &response)));
    }
}

/// The answer to a call nobody serves, in the words of Go's ttrpc.
fn unserved(routes: &Routes, service: &str, method: &str) -> Response {
    let prefix = format!("/{service}/");
    let mut paths = routes.methods.keys().chain(routes.deferred.keys());
    let msg = if paths.any(|p| p.starts_with(&prefix)) {
        format!("method {method} of service {service} is not implemented")
    } else {
        format!("service {service} is not served by this shim")
    };
    status(Code::UNIMPLEMENTED, msg)
}

fn status(code: Code, message: String) -> Response {
    let mut r = Response::new();
    r.status = Some(get_status(code, message)).into();
    r
}

/// The cancel channel a synchronous handler's context needs: no such handler waits (the
/// ones that would are [`Deferred`]), so it is never cancelled.
fn never_cancelled() -> crossbeam_channel::Receiver<()> {
    static NEVER: OnceLock<(
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    )> = OnceLock::new();
    NEVER
        .get_or_init(|| crossbeam_channel::bounded(0))
        .1
        .clone()
}

/// The context of a connection without the crate's security extension (no transform).
fn plain_connection() -> Arc<ConnectionContext> {
    static PLAIN: OnceLock<Arc<ConnectionContext>> = OnceLock::new();
    Arc::clone(PLAIN.get_or_init(|| Arc::new(ConnectionContext::default())))
}

#[cfg(test)]
mod tests;
