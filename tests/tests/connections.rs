#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Hundreds of connections to one shim, as a misbehaving client could open them: idle ones
//! cost the shim no thread, a call on every one of them at once grows it by a bounded
//! number of threads, and all of it is given back when they close. The same test runs
//! against both shims (the Go shim's goroutines cost no thread either; the ttrpc crate's
//! server, which rsrunc used before, ran five threads per connection).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use containerd_shim_protos::api::{ConnectRequest, ConnectResponse, StateRequest, StateResponse};
use containerd_shim_protos::protobuf::Message;
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{poll_until, unique_id, Daemon, Oci};

const CONNECTIONS: usize = 500;
/// Threads the shim may add while every connection makes a call at once: our pool's
/// maximum (shim/src/rpc/pool.rs) and a few of the shim's own that come and go (the
/// events connection's, say).
const FLOOD_THREADS: usize = 128 + 8;

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A State request frame for `id` on `stream`, as ttrpc puts it on the wire.
fn state_frame(id: &str, stream: u32) -> Vec<u8> {
    let payload = StateRequest {
        id: id.into(),
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap();
    let mut req = ttrpc::Request::new();
    req.service = "containerd.task.v2.Task".into();
    req.method = "State".into();
    req.payload = payload;
    let body = req.write_to_bytes().unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(stream.to_be_bytes());
    frame.extend([1u8, 0]); // a request, no flags
    frame.extend(body);
    frame
}

/// Reads one response frame and returns its status code.
fn read_response(sock: &mut UnixStream) -> ttrpc::Code {
    let mut header = [0u8; 10];
    sock.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).unwrap();
    let r = ttrpc::Response::parse_from_bytes(&body).unwrap();
    r.status.into_option().unwrap_or_default().code()
}

/// The shim's thread count once it holds still for half a second (workers that served
/// earlier calls end on their own schedule).
fn settled_threads(pid: i32) -> usize {
    let mut n = threads(pid);
    poll_until(Duration::from_secs(20), || {
        let before = threads(pid);
        std::thread::sleep(Duration::from_millis(500));
        n = threads(pid);
        n == before
    });
    n
}

#[test]
fn hundreds_of_connections_cost_a_bounded_number_of_threads() {
    let d = Daemon::start();
    let id = unique_id("conns");
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sleep", "600"]).ok();
    d.wait_status(&id, "RUNNING");
    let address = std::fs::read_to_string(d.bundle(&id).join("address"))
        .unwrap()
        .trim()
        .to_string();
    let first = ShimConn::connect(&address);
    let c: ConnectResponse = first
        .call(
            "Connect",
            &ConnectRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    let shim = c.shim_pid as i32;
    let state = StateRequest {
        id: id.clone(),
        ..Default::default()
    };
    let _: StateResponse = first.call("State", &state).unwrap();
    let base = settled_threads(shim);

    let path = address.strip_prefix("unix://").unwrap().to_string();
    let mut socks: Vec<UnixStream> = (0..CONNECTIONS)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    // A call on the first connection is served with all of them open (and accepted).
    let _: StateResponse = first.call("State", &state).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let idle = threads(shim);
    eprintln!("shim {shim}: {base} threads, {idle} with {CONNECTIONS} idle connections");
    assert!(
        idle <= base + 8,
        "{CONNECTIONS} idle connections took {} threads",
        idle.saturating_sub(base)
    );

    // Every connection calls at once; the most threads seen meanwhile.
    let most = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(threads(shim), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for sock in &mut socks {
            sock.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            sock.write_all(&state_frame(&id, 1)).unwrap();
        }
        for sock in &mut socks {
            assert_eq!(read_response(sock), ttrpc::Code::OK);
        }
        done.store(true, Ordering::Relaxed);
    });
    let most = most.into_inner();
    eprintln!("at most {most} threads while {CONNECTIONS} connections called at once");
    assert!(
        most <= base + FLOOD_THREADS,
        "{CONNECTIONS} calls at once took {} threads",
        most.saturating_sub(base)
    );

    drop(socks);
    // The workers that served the flood end once idle.
    let mut after = 0;
    let back = poll_until(Duration::from_secs(30), || {
        after = threads(shim);
        after <= base + 1
    });
    assert!(
        back,
        "{after} threads after the connections closed, {base} before"
    );
    let _: StateResponse = first.call("State", &state).unwrap();
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "rm", &id]).ok();
    d.ctr(&["containers", "rm", &id]).ok();
}
