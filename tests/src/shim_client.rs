//! Talks to a shim directly over ttrpc, for requests containerd itself would never send
//! (a bundle without config.json, an unknown id). Uses the v2 service name, which both
//! our shim and containerd 1.7's Go shim serve.

use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim_protos::api::{
    DeleteRequest, DeleteResponse, ExecProcessRequest, StartRequest, StartResponse, WaitRequest,
    WaitResponse,
};
use containerd_shim_protos::protobuf::Message;
use oci_spec::runtime::Process;
use ttrpc::sync::Client;

use crate::Daemon;

pub struct ShimConn {
    client: Client,
    pub address: String,
    /// The read end of the bundle's `log` fifo, held as containerd holds it.
    _log: Option<std::fs::File>,
}

impl ShimConn {
    /// Runs `<binary> start` in `bundle` as containerd would and connects to the shim.
    pub fn start(daemon: &Daemon, binary: &Path, bundle: &Path, id: &str) -> ShimConn {
        let log_path = bundle.join("log");
        nix::unistd::mkfifo(&log_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let log = std::fs::File::from(
            nix::fcntl::open(
                &log_path,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK,
                nix::sys::stat::Mode::empty(),
            )
            .unwrap(),
        );
        let out = Command::new(binary)
            .current_dir(bundle)
            .args(["-namespace", &daemon.namespace, "-id", id])
            .arg("-address")
            .arg(&daemon.socket)
            .args(["-publish-binary", "containerd", "start"])
            .env("TTRPC_ADDRESS", &daemon.ttrpc_socket)
            .env("GRPC_ADDRESS", &daemon.socket)
            .env("NAMESPACE", &daemon.namespace)
            // As containerd starts it: with containerd's PATH (criu, crun, youki).
            .env("PATH", daemon.path_env())
            .env("MAX_SHIM_VERSION", "2")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "shim start failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let address = if text.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["address"].as_str().unwrap().to_string()
        } else {
            text
        };
        let client = Client::connect(&address).unwrap();
        ShimConn {
            client,
            address,
            _log: Some(log),
        }
    }

    /// Connects to a running shim at `address` (`unix://...`).
    pub fn connect(address: &str) -> ShimConn {
        ShimConn {
            client: Client::connect(address).unwrap(),
            address: address.to_string(),
            _log: None,
        }
    }

    /// One Task RPC; Err carries the ttrpc status code and message.
    pub fn call<Req: Message, Resp: Message>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp, (ttrpc::Code, String)> {
        let payload = self.call_service("containerd.task.v2.Task", method, req)?;
        Ok(Resp::parse_from_bytes(&payload).unwrap())
    }

    /// One RPC to any service; the response's payload, or its status code and message.
    pub fn call_service<Req: Message>(
        &self,
        service: &str,
        method: &str,
        req: &Req,
    ) -> Result<Vec<u8>, (ttrpc::Code, String)> {
        let mut r = ttrpc::Request::new();
        r.service = service.into();
        r.method = method.into();
        r.timeout_nano = 20_000_000_000;
        r.payload = req.write_to_bytes().unwrap();
        match self.client.request(r) {
            Ok(resp) => Ok(resp.payload),
            Err(ttrpc::Error::RpcStatus(s)) => Err((s.code(), s.message)),
            Err(e) => Err((ttrpc::Code::UNKNOWN, e.to_string())),
        }
    }

    /// Sends one request frame of `len` bytes (zeros) on a connection of its own, as no
    /// ttrpc client would (theirs refuse to send over the limit), and returns the status
    /// of the answer to its stream.
    pub fn send_frame_of(&self, len: u32) -> (ttrpc::Code, String) {
        use std::io::{Read, Write};
        let path = self.address.strip_prefix("unix://").unwrap();
        let mut sock = std::os::unix::net::UnixStream::connect(path).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        const STREAM: u32 = 1;
        let mut frame = Vec::with_capacity(10 + len as usize);
        frame.extend(len.to_be_bytes());
        frame.extend(STREAM.to_be_bytes());
        frame.extend([1u8, 0]); // a request, no flags
        frame.resize(10 + len as usize, 0);
        sock.write_all(&frame).unwrap();
        let mut header = [0u8; 10];
        sock.read_exact(&mut header).unwrap();
        let body_len = u32::from_be_bytes(header[..4].try_into().unwrap());
        let stream = u32::from_be_bytes(header[4..8].try_into().unwrap());
        assert_eq!((stream, header[8]), (STREAM, 2), "a response to stream 1");
        let mut body = vec![0u8; body_len as usize];
        sock.read_exact(&mut body).unwrap();
        let resp = ttrpc::Response::parse_from_bytes(&body).unwrap();
        let status = resp.status.into_option().unwrap_or_default();
        (status.code(), status.message)
    }

    /// Start of process `exec_id` of container `id` ("" for its init).
    pub fn start_process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<StartResponse, (ttrpc::Code, String)> {
        self.call(
            "Start",
            &StartRequest {
                id: id.into(),
                exec_id: exec_id.into(),
                ..Default::default()
            },
        )
    }

    /// Waits for process `exec_id` of container `id` ("" for its init) to exit.
    pub fn wait_process(&self, id: &str, exec_id: &str) -> WaitResponse {
        self.call(
            "Wait",
            &WaitRequest {
                id: id.into(),
                exec_id: exec_id.into(),
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// Wait for, then Delete, process `exec_id` of container `id` ("" for its init): the
    /// exit status Wait and Delete reported.
    pub fn wait_and_delete(&self, id: &str, exec_id: &str) -> (u32, u32) {
        let w = self.wait_process(id, exec_id);
        let d: DeleteResponse = self
            .call(
                "Delete",
                &DeleteRequest {
                    id: id.into(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                },
            )
            .unwrap();
        (w.exit_status, d.exit_status)
    }

    /// Runs `args` as exec `exec_id` in container `id` with the container's own process
    /// spec otherwise (`base`, the `process` of its config.json): Exec, Start, Wait,
    /// Delete. Returns the exit status Wait and Delete reported.
    pub fn exec_and_wait(
        &self,
        id: &str,
        exec_id: &str,
        base: &Process,
        args: &[&str],
    ) -> (u32, u32) {
        let (wait, delete, _) = self.exec_and_wait_timed(id, exec_id, base, args);
        (wait, delete)
    }

    /// [`ShimConn::exec_and_wait`], with how long each of the four calls took as the
    /// client saw it (Exec, Start, Wait, Delete).
    pub fn exec_and_wait_timed(
        &self,
        id: &str,
        exec_id: &str,
        base: &Process,
        args: &[&str],
    ) -> (u32, u32, [std::time::Duration; 4]) {
        use containerd_shim_protos::protobuf::well_known_types::{any::Any, empty::Empty};
        use std::time::Instant;
        let mut process = base.clone();
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        process.set_terminal(Some(false));
        let req = ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            spec: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(&process).unwrap(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let t = Instant::now();
        let _: Empty = self.call("Exec", &req).unwrap();
        let exec = t.elapsed();
        let t = Instant::now();
        self.start_process(id, exec_id).unwrap();
        let start = t.elapsed();
        let t = Instant::now();
        let w = self.wait_process(id, exec_id);
        let wait = t.elapsed();
        let t = Instant::now();
        let d: DeleteResponse = self
            .call(
                "Delete",
                &DeleteRequest {
                    id: id.into(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let delete = t.elapsed();
        (w.exit_status, d.exit_status, [exec, start, wait, delete])
    }

    /// The shim binary containerd runs for `daemon`'s runtime: ours, or the Go shim of the
    /// containerd on PATH.
    pub fn binary_for(daemon: &Daemon) -> std::path::PathBuf {
        if daemon.is_go_shim() {
            crate::tool("containerd-shim-runc-v2")
        } else {
            crate::shim_binary()
        }
    }

    /// Asks the shim to exit (it has no containers) and waits until its socket is gone.
    pub fn shutdown(&self) {
        let req = containerd_shim_protos::shim::shim::ShutdownRequest::new();
        let _ = self.call::<_, containerd_shim_protos::protobuf::well_known_types::empty::Empty>(
            "Shutdown", &req,
        );
    }
}

/// Opens `n` connections to a shim's ttrpc socket and sends nothing on them, as a client
/// that leaks its connections would.
pub fn idle_connections(address: &str, n: usize) -> Vec<std::os::unix::net::UnixStream> {
    let path = address
        .trim()
        .strip_prefix("unix://")
        .unwrap_or(address.trim());
    (0..n)
        .map(|_| std::os::unix::net::UnixStream::connect(path).unwrap())
        .collect()
}

/// Connections waiting in the backlog of the listening socket at `address` (`ss`'s
/// Recv-Q), not yet accepted by the shim.
pub fn accept_backlog(address: &str) -> usize {
    let path = address
        .trim()
        .strip_prefix("unix://")
        .unwrap_or(address.trim());
    let out = std::process::Command::new("ss")
        .args(["-xlnH"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == path))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|q| q.parse().ok())
        .unwrap_or(0)
}

/// One Task request frame on `stream` (odd: a client's).
pub fn request_frame<Req: Message>(stream: u32, method: &str, req: &Req) -> Vec<u8> {
    let mut r = ttrpc::Request::new();
    r.service = "containerd.task.v2.Task".into();
    r.method = method.into();
    r.payload = req.write_to_bytes().unwrap();
    let body = r.write_to_bytes().unwrap();
    let mut frame = Vec::with_capacity(10 + body.len());
    frame.extend((body.len() as u32).to_be_bytes());
    frame.extend(stream.to_be_bytes());
    frame.extend([1u8, 0]); // a request, no flags
    frame.extend(body);
    frame
}

/// Sends one Task request (stream 1) on a connection of its own and returns the
/// connection, to read the answer from ([`read_status`]) or to hang up on.
pub fn send_request<Req: Message>(
    address: &str,
    method: &str,
    req: &Req,
) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let path = address
        .trim()
        .strip_prefix("unix://")
        .unwrap_or(address.trim());
    let mut sock = std::os::unix::net::UnixStream::connect(path).unwrap();
    // A connection the shim refused is closed already: reading says so.
    let _ = sock.write_all(&request_frame(1, method, req));
    sock
}

/// The status code of the first answer on `sock` (OK for an answer without one),
/// or None if the connection closed, or nothing came within 20 s.
pub fn read_status(sock: &mut std::os::unix::net::UnixStream) -> Option<ttrpc::Code> {
    read_answer(sock).map(|(_, code, _)| code)
}

/// The next answer on `sock`: its stream, status code (OK for an answer without one) and
/// payload; None if the connection closed, or nothing came within 20 s.
pub fn read_answer(
    sock: &mut std::os::unix::net::UnixStream,
) -> Option<(u32, ttrpc::Code, Vec<u8>)> {
    use std::io::Read;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut header = [0u8; 10];
    sock.read_exact(&mut header).ok()?;
    let len = u32::from_be_bytes(header[..4].try_into().unwrap());
    let stream = u32::from_be_bytes(header[4..8].try_into().unwrap());
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body).ok()?;
    let resp = ttrpc::Response::parse_from_bytes(&body).ok()?;
    let code = resp.status.into_option().unwrap_or_default().code();
    Some((stream, code, resp.payload))
}
