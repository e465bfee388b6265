use super::*;
use containerd_shim_protos::ttrpc::sync::Client;
use std::time::Duration;

/// Answers `/test.v1.Echo/Say` with its payload, and fails `/test.v1.Echo/Fail` as a
/// generated handler fails a payload it cannot decode.
struct Echo {
    fail: bool,
}

impl MethodHandler for Echo {
    fn handler(
        &self,
        ctx: TtrpcContext,
        req: Request,
    ) -> containerd_shim_protos::ttrpc::Result<()> {
        if self.fail {
            return Err(containerd_shim_protos::ttrpc::Error::Others(
                "Unpack request error".into(),
            ));
        }
        let mut r = Response::new();
        r.status = Some(get_status(Code::OK, String::new())).into();
        r.payload = req.payload;
        ctx.respond(ctx.mh.stream_id, r)
    }
}

/// Replies to `/test.v1.Echo/Later` calls, kept with their payload until a test sends
/// them.
type Later = Arc<Mutex<Vec<(Vec<u8>, Reply)>>>;

fn server() -> (tempfile::TempDir, String) {
    let (dir, address, _) = server_with_later();
    (dir, address)
}

fn server_with_later() -> (tempfile::TempDir, String, Later) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut methods = Methods::new();
    methods.insert("/test.v1.Echo/Say".into(), Box::new(Echo { fail: false }));
    methods.insert("/test.v1.Echo/Fail".into(), Box::new(Echo { fail: true }));
    let later = Later::default();
    let kept = Arc::clone(&later);
    let mut deferred = Deferred::new();
    deferred.insert(
        "/test.v1.Echo/Later".into(),
        Box::new(move |payload: &[u8], reply: Reply| {
            kept.lock().unwrap().push((payload.to_vec(), reply));
        }),
    );
    serve(listener, Routes { methods, deferred }).unwrap();
    (dir, format!("unix://{}", path.display()), later)
}

fn call(c: &Client, service: &str, method: &str, payload: &[u8]) -> Response {
    let mut req = Request::new();
    req.service = service.into();
    req.method = method.into();
    req.payload = payload.to_vec();
    req.timeout_nano = Duration::from_secs(10).as_nanos() as i64;
    match c.request(req) {
        Ok(r) => r,
        Err(containerd_shim_protos::ttrpc::Error::RpcStatus(s)) => {
            let mut r = Response::new();
            r.status = Some(s).into();
            r
        }
        Err(e) => panic!("{service}/{method}: {e:?}"),
    }
}

fn code(r: &Response) -> (Code, String) {
    let s = r.status.clone().into_option().unwrap_or_default();
    (s.code(), s.message)
}

#[test]
fn serves_answers_go_codes_and_keeps_the_connection() {
    let (_dir, address) = server();
    let c = Client::connect(&address).unwrap();
    let r = call(&c, "test.v1.Echo", "Say", b"hello");
    assert_eq!(
        (code(&r).0, r.payload.as_slice()),
        (Code::OK, &b"hello"[..])
    );

    let (c1, m1) = code(&call(&c, "test.v1.Echo", "Frob", b""));
    assert_eq!(c1, Code::UNIMPLEMENTED);
    assert!(m1.contains("Frob") && m1.contains("test.v1.Echo"), "{m1}");
    let (c2, m2) = code(&call(&c, "test.v1.Nope", "Say", b""));
    assert_eq!(c2, Code::UNIMPLEMENTED);
    assert!(m2.contains("test.v1.Nope"), "{m2}");
    // A method that cannot decode its payload answers; the connection goes on.
    assert_ne!(code(&call(&c, "test.v1.Echo", "Fail", b"")).0, Code::OK);
    let r = call(&c, "test.v1.Echo", "Say", &vec![7u8; 3 << 20]);
    assert_eq!(r.payload.len(), 3 << 20);
}

#[test]
fn an_oversize_frame_is_resource_exhausted_and_the_connection_goes_on() {
    let (_dir, address) = server();
    let path = address.strip_prefix("unix://").unwrap();
    let mut sock = UnixStream::connect(path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let len = MAX_PAYLOAD + 1;
    let mut frame = (len as u32).to_be_bytes().to_vec();
    frame.extend(1u32.to_be_bytes());
    frame.extend([wire::TYPE_REQUEST, 0]);
    frame.resize(wire::HEADER_LEN + len, 0);
    // Then a request that does not decode, on stream 3.
    frame.extend(3u32.to_be_bytes());
    frame.extend(3u32.to_be_bytes());
    frame.extend([wire::TYPE_REQUEST, 0]);
    frame.extend(b"\xff\xff\xff");
    sock.write_all(&frame).unwrap();
    for (stream, want) in [(1, Code::RESOURCE_EXHAUSTED), (3, Code::INVALID_ARGUMENT)] {
        let mut header = [0u8; wire::HEADER_LEN];
        sock.read_exact(&mut header).unwrap();
        let h = MessageHeader::from(&header[..]);
        assert_eq!((h.stream_id, h.type_), (stream, wire::TYPE_RESPONSE));
        let mut body = vec![0u8; h.length as usize];
        sock.read_exact(&mut body).unwrap();
        let (c, msg) = code(&Response::parse_from_bytes(&body).unwrap());
        assert_eq!(c, want, "{msg}");
        if stream == 1 {
            assert!(msg.contains(&len.to_string()), "{msg}");
        }
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn idle_connections_cost_no_thread() {
    let (_dir, address) = server();
    let path = address.strip_prefix("unix://").unwrap().to_string();
    // One call first, so the server's thread and a worker exist before counting.
    let c = Client::connect(&address).unwrap();
    call(&c, "test.v1.Echo", "Say", b"x");
    let before = threads();
    let idle: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    // Every one of them accepted, and the first still served.
    call(&c, "test.v1.Echo", "Say", b"x");
    std::thread::sleep(Duration::from_millis(200));
    let with_idle = threads();
    // Other tests of this binary run threads of their own meanwhile: allow for them.
    assert!(
        with_idle < before + 20,
        "300 idle connections took {} threads",
        with_idle.saturating_sub(before)
    );
    drop(idle);
    let c2 = Client::connect(&address).unwrap();
    assert_eq!(code(&call(&c2, "test.v1.Echo", "Say", b"y")).0, Code::OK);
}

/// A raw request frame for `/test.v1.Echo/METHOD`.
fn frame(stream: u32, method: &str, payload: &[u8]) -> Vec<u8> {
    let mut req = Request::new();
    req.service = "test.v1.Echo".into();
    req.method = method.into();
    req.payload = payload.to_vec();
    let body = req.write_to_bytes().unwrap();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend(stream.to_be_bytes());
    f.extend([wire::TYPE_REQUEST, 0]);
    f.extend(body);
    f
}

/// The next response on `sock`: its stream and payload.
fn next_response(sock: &mut UnixStream) -> (u32, Vec<u8>) {
    let mut header = [0u8; wire::HEADER_LEN];
    sock.read_exact(&mut header).unwrap();
    let h = MessageHeader::from(&header[..]);
    let mut body = vec![0u8; h.length as usize];
    sock.read_exact(&mut body).unwrap();
    let r = Response::parse_from_bytes(&body).unwrap();
    assert_eq!(code(&r).0, Code::OK, "{:?}", code(&r));
    (h.stream_id, r.payload)
}

/// More deferred calls in progress than there are workers hold none of them: a call
/// behind them is answered at once, and every one of them later, each on its stream.
#[test]
fn deferred_calls_hold_no_worker_and_all_are_answered() {
    let (_dir, address, later) = server_with_later();
    let path = address.strip_prefix("unix://").unwrap();
    let mut sock = UnixStream::connect(path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = pool::MAX_WORKERS as u32 * 3;
    let mut frames = Vec::new();
    for i in 0..n {
        frames.extend(frame(2 * i + 1, "Later", &i.to_be_bytes()));
    }
    frames.extend(frame(2 * n + 1, "Say", b"behind"));
    sock.write_all(&frames).unwrap();
    assert_eq!(next_response(&mut sock), (2 * n + 1, b"behind".to_vec()));
    // The calls ahead of it run on other workers: some may be registering still.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while later.lock().unwrap().len() < n as usize && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let kept: Vec<_> = later.lock().unwrap().drain(..).collect();
    assert_eq!(kept.len(), n as usize);
    let mut kept_by_id = Vec::new();
    for (payload, reply) in kept {
        assert!(!reply.gone());
        kept_by_id.push(u32::from_be_bytes(payload.try_into().unwrap()));
        // From another thread than the server's, as the exit router does.
        std::thread::spawn(move || reply.send(Ok(containerd_shim_protos::api::Empty::new())))
            .join()
            .unwrap();
    }
    let mut answered: Vec<u32> = (0..n).map(|_| next_response(&mut sock).0).collect();
    answered.sort_unstable();
    kept_by_id.sort_unstable();
    let want: Vec<u32> = kept_by_id.iter().map(|i| 2 * i + 1).collect();
    assert_eq!(answered, want);
}

/// A deferred call whose client hung up is gone, and sending to it is harmless.
#[test]
fn a_deferred_reply_is_gone_once_its_connection_closed() {
    let (_dir, address, later) = server_with_later();
    let path = address.strip_prefix("unix://").unwrap();
    let mut sock = UnixStream::connect(path).unwrap();
    sock.write_all(&frame(1, "Later", b"x")).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while later.lock().unwrap().is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_, reply) = later.lock().unwrap().pop().unwrap();
    assert!(!reply.gone());
    drop(sock);
    while !reply.gone() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(reply.gone(), "still there 10 s after the client closed");
    reply.send(Ok(containerd_shim_protos::api::Empty::new()));
}
