#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! The shim protocol as containerd drives it: sockets and groups, the address file,
//! cleanup after a dead shim, and the binary's own flags.

use std::time::Duration;

use containerd_shim_protos::types::introspection::RuntimeInfo;
use protobuf::Message;
use rsrunc_e2e::load::threads;
use rsrunc_e2e::shim_client::{accept_backlog, idle_connections};
use rsrunc_e2e::{ours_only, poll_until, testing_ours, unique_id, Daemon, Oci};

#[test]
fn containers_of_one_group_share_one_shim() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let group = format!("io.containerd.runc.v2.group={}", unique_id("grp"));
        let (a, b) = (unique_id("ga"), unique_id("gb"));
        for id in [&a, &b] {
            d.run(
                oci,
                &["-d", "--annotation", &group],
                id,
                &["/bin/sleep", "300"],
            )
            .ok();
            d.wait_status(id, "RUNNING");
        }
        assert_eq!(d.shim_pids().len(), 1, "{oci:?}: one shim serves the group");
        // The first container going away does not take the shim with it.
        d.ctr(&["task", "kill", "-s", "SIGKILL", &a]).ok();
        d.wait_status(&a, "STOPPED");
        d.ctr(&["task", "rm", &a]).ok();
        assert_eq!(d.task_status(&b).as_deref(), Some("RUNNING"), "{oci:?}");
        assert_eq!(d.shim_pids().len(), 1, "{oci:?}");
        d.ctr(&["task", "kill", "-s", "SIGKILL", &b]).ok();
        d.wait_status(&b, "STOPPED");
        d.ctr(&["task", "rm", &b]).ok();
        assert_eq!(
            d.shims_left(),
            Vec::<i32>::new(),
            "{oci:?}: the shim exits after its last container"
        );
        for id in [&a, &b] {
            d.ctr(&["containers", "rm", id]).ok();
        }
    }
}

#[test]
fn start_writes_the_address_file() {
    let d = Daemon::start();
    let id = unique_id("addr");
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sleep", "300"]).ok();
    let address = std::fs::read_to_string(d.bundle(&id).join("address")).unwrap();
    assert_eq!(
        address.trim(),
        format!("unix://{}", d.shim_socket(&id).display())
    );
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "rm", &id]).ok();
    d.ctr(&["containers", "rm", &id]).ok();
}

#[test]
fn a_killed_shim_is_cleaned_up_by_delete() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("dead");
        d.run(oci, &["-d"], &id, &["/bin/sleep", "300"]).ok();
        d.wait_status(&id, "RUNNING");
        let ls = d.ctr(&["task", "ls"]).ok().stdout;
        let pid: i32 = ls
            .lines()
            .find(|l| l.starts_with(&id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap();
        let shims = d.shim_pids();
        assert_eq!(shims.len(), 1);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shims[0]),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // containerd sees the shim go, runs `<shim> delete`, which removes the container.
        wait_until(
            || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the container's process is killed by the shim's delete action",
        );
        wait_until(
            || d.task_status(&id).is_none(),
            "containerd forgets the task",
        );
        d.ctr(&["containers", "rm", &id]).ok();
        assert!(d.mounts().is_empty(), "{oci:?}: {:?}", d.mounts());
    }
}

#[test]
#[cfg_attr(go_shim, ignore = "rsrunc only: the rsrunc binary's -v flag")]
fn version_flag_prints_the_version() {
    ours_only();
    let out = std::process::Command::new(rsrunc_e2e::shim_binary())
        .arg("-v")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("containerd-shim-rsrunc-v2"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
#[cfg_attr(go_shim, ignore = "rsrunc only: the rsrunc binary's -info flag")]
fn info_describes_the_runtime_and_its_features() {
    ours_only();
    let out = std::process::Command::new(rsrunc_e2e::shim_binary())
        .arg("-info")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(info.name, "io.containerd.rsrunc.v2");
    let features = info
        .features
        .into_option()
        .expect("runc reports its features");
    let json: serde_json::Value = serde_json::from_slice(&features.value).unwrap();
    assert!(json["ociVersionMax"].is_string(), "{json}");
}

fn wait_until(cond: impl FnMut() -> bool, what: &str) {
    assert!(
        poll_until(Duration::from_secs(20), cond),
        "timed out waiting: {what}"
    );
}

/// containerd's Go ttrpc answers a call to a service or method a server does not have with
/// Unimplemented, and a frame over the 4 MiB limit with ResourceExhausted; containerd reads
/// "not implemented" from that code (the ttrpc crate alone answers InvalidArgument).
#[test]
fn unknown_services_and_oversize_frames_get_go_ttrpc_codes() {
    use containerd_shim_protos::api::StateRequest;
    use rsrunc_e2e::shim_client::ShimConn;
    use ttrpc::Code;

    let d = Daemon::start();
    let bundle = d.dir().join("bundles").join("codes");
    d.write_bundle(
        &bundle,
        rsrunc_e2e::rootfs::busybox(),
        &["/bin/true"],
        &format!("/{}/codes", d.namespace),
    );
    let conn = ShimConn::start(&d, &ShimConn::binary_for(&d), &bundle, "codes");
    let req = StateRequest {
        id: "codes".into(),
        ..Default::default()
    };

    let (code, msg) = conn
        .call_service("containerd.task.v2.Task", "Frobnicate", &req)
        .unwrap_err();
    assert_eq!(code, Code::UNIMPLEMENTED, "{msg}");
    assert!(msg.contains("Frobnicate"), "{msg}");
    let (code, msg) = conn
        .call_service("containerd.rsrunc.test.v1.Nope", "State", &req)
        .unwrap_err();
    assert_eq!(code, Code::UNIMPLEMENTED, "{msg}");
    assert!(msg.contains("containerd.rsrunc.test.v1.Nope"), "{msg}");

    let (code, msg) = conn.send_frame_of((4 << 20) + 1);
    assert_eq!(code, Code::RESOURCE_EXHAUSTED, "{msg}");
    assert!(msg.contains("4194305"), "{msg}");

    // The connection still serves the calls it knows after all of that.
    let (code, _) = conn
        .call::<_, containerd_shim_protos::api::StateResponse>("State", &req)
        .unwrap_err();
    assert_eq!(code, Code::NOT_FOUND);
    conn.shutdown();
}

/// Threads our shim may add while every one of hundreds of connections makes a call at
/// once: its pool's maximum of workers (shim/src/rpc/pool.rs) and a few of its own that
/// come and go (the events connection's, say).
const FLOOD_THREADS: usize = 128 + 8;

/// 500 connections to a container's shim, as a misbehaving client could open them: idle,
/// they cost no thread; all calling at once, a bounded number; closed, the shim is back
/// to its threads and still serves containerd. Both shims are held to it (the Go shim's
/// goroutines are not threads; the ttrpc crate's server, which ours used before, ran five
/// threads per connection).
#[test]
fn five_hundred_connections_cost_a_bounded_number_of_threads() {
    use containerd_shim_protos::api::StateRequest;
    use rsrunc_e2e::shim_client::{read_status, request_frame};
    use std::io::Write;
    let d = Daemon::start();
    let (id, address) = sleeper(&d, "conns");
    let shim = d.shim_pids()[0];
    let before = settled_threads(shim);
    let mut conns = idle_connections(&address, 500);
    let accepted = poll_until(Duration::from_secs(30), || accepted_all(&address));
    assert!(accepted, "the shim did not accept 500 connections in 30 s");
    let idle = settled_threads(shim);
    eprintln!("shim threads: {before} before, {idle} with 500 idle connections");
    assert!(
        idle <= before + 8,
        "500 idle connections took {} threads",
        idle.saturating_sub(before)
    );

    // Every connection calls at once; the most threads seen meanwhile.
    let state = StateRequest {
        id: id.clone(),
        ..Default::default()
    };
    let most = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most.fetch_max(threads(shim), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for c in &mut conns {
            c.write_all(&request_frame(1, "State", &state)).unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            assert_eq!(read_status(c), Some(ttrpc::Code::OK), "connection {i}");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let most = most.into_inner();
    eprintln!("shim threads: at most {most} while 500 connections called at once");
    assert!(
        most <= before + FLOOD_THREADS,
        "500 calls at once took {} threads",
        most.saturating_sub(before)
    );

    drop(conns);
    // Our workers that served them end once idle. Go's runtime keeps the OS threads it
    // started (parked, for its scheduler): a couple more are the Go shim's normal.
    let kept = if testing_ours() { 0 } else { 2 };
    let mut after = 0;
    let back = poll_until(Duration::from_secs(30), || {
        after = threads(shim);
        after <= before + kept
    });
    eprintln!("shim threads: {after} once they closed");
    assert!(
        back,
        "{after} threads after the connections closed, {before} before"
    );
    served_then_removed(&d, &id);
}

/// The shim's thread count once it has held still for half a second.
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

/// Connections that closed, at once or with a Wait still waiting on a running process, do
/// not hold the shim: after 30 of each, one after another, a new connection is still
/// served at once.
#[test]
fn connections_that_closed_with_a_wait_in_flight_do_not_hold_the_shim() {
    use containerd_shim_protos::api::{StateRequest, WaitRequest};
    use rsrunc_e2e::shim_client::{read_status, request_frame, send_request};
    use std::io::Write;
    use ttrpc::Code;
    let d = Daemon::start();
    let (id, address) = sleeper(&d, "closed");
    let state = StateRequest {
        id: id.clone(),
        ..Default::default()
    };
    for i in 0..30 {
        let mut conn = send_request(&address, "State", &state);
        assert_eq!(read_status(&mut conn), Some(Code::OK), "connection {i}");
    }
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    for i in 0..30 {
        // The State behind the Wait is answered once the Wait is being served.
        let served = poll_until(Duration::from_secs(20), || {
            let mut conn = send_request(&address, "Wait", &wait);
            let _ = conn.write_all(&request_frame(3, "State", &state));
            read_status(&mut conn) == Some(Code::OK)
        });
        assert!(
            served,
            "connection {i} was not served after {i} closed with a Wait in flight"
        );
    }
    served_then_removed(&d, &id);
}

/// Waits in progress, more than a shim has threads for calls, do not hold up other
/// calls (a State behind 300 Waits on one connection is answered while they wait), and
/// each of them is answered with the exit once the container is killed.
#[test]
fn three_hundred_waits_in_flight_hold_up_no_other_call() {
    use containerd_shim_protos::api::{StateRequest, WaitRequest, WaitResponse};
    use rsrunc_e2e::shim_client::{read_answer, request_frame, send_request};
    use std::io::Write;
    use ttrpc::Code;
    const WAITS: u32 = 300;
    let d = Daemon::start();
    let (id, address) = sleeper(&d, "waits");
    let wait = WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    let mut conn = send_request(&address, "Wait", &wait);
    let mut frames = Vec::new();
    for i in 1..WAITS {
        frames.extend(request_frame(2 * i + 1, "Wait", &wait));
    }
    let state = StateRequest {
        id: id.clone(),
        ..Default::default()
    };
    let state_stream = 2 * WAITS + 1;
    frames.extend(request_frame(state_stream, "State", &state));
    conn.write_all(&frames).unwrap();
    let first = read_answer(&mut conn).map(|(stream, code, _)| (stream, code));
    assert_eq!(
        first,
        Some((state_stream, Code::OK)),
        "the State behind {WAITS} Waits was not answered first"
    );
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    let mut answered = Vec::new();
    for _ in 0..WAITS {
        let (stream, code, payload) = read_answer(&mut conn)
            .unwrap_or_else(|| panic!("{} of {WAITS} Waits answered", answered.len()));
        assert_eq!(code, Code::OK, "Wait on stream {stream}");
        let w = WaitResponse::parse_from_bytes(&payload).unwrap();
        assert_eq!(w.exit_status, 137, "Wait on stream {stream}");
        answered.push(stream);
    }
    answered.sort_unstable();
    let want: Vec<u32> = (0..WAITS).map(|i| 2 * i + 1).collect();
    assert_eq!(answered, want, "every Wait answered once");
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "rm", &id]).ok();
    d.ctr(&["containers", "rm", &id]).ok();
}

/// A running container for the connection tests: its id and its shim's address.
fn sleeper(d: &Daemon, prefix: &str) -> (String, String) {
    let id = unique_id(prefix);
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sleep", "600"]).ok();
    d.wait_status(&id, "RUNNING");
    let address = std::fs::read_to_string(d.bundle(&id).join("address")).unwrap();
    (id, address)
}

/// containerd's own connection still serves it (an exec runs); then the container goes.
fn served_then_removed(d: &Daemon, id: &str) {
    let out = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        id,
        "/bin/echo",
        "served",
    ]);
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "served\n"),
        "{out:?}"
    );
    let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    d.wait_status(id, "STOPPED");
    d.ctr(&["task", "rm", id]).ok();
    d.ctr(&["containers", "rm", id]).ok();
}

fn accepted_all(address: &str) -> bool {
    accept_backlog(address) == 0
}
