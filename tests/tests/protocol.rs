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

/// Threads a shim may add for connections, whatever a client opens: at most 8 served at
/// once (shim/src/rpc.rs), each with the ttrpc crate's three threads and at most three
/// idle workers.
const CONNECTION_THREADS: usize = 8 * 6;

/// 500 idle connections to a container's shim: ours never grows by more than a fixed
/// number of threads while they are open, is back to its threads once they close, and
/// still serves containerd (an exec runs). The Go shim's goroutines are not threads: its
/// figures are printed, and only ours is held to the bound (strictness of ours only).
#[test]
fn five_hundred_idle_connections_cost_a_bounded_number_of_threads() {
    let d = Daemon::start();
    let id = unique_id("conns");
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sleep", "600"]).ok();
    d.wait_status(&id, "RUNNING");
    let address = std::fs::read_to_string(d.bundle(&id).join("address")).unwrap();
    let shim = d.shim_pids()[0];
    let before = threads(shim);
    let conns = idle_connections(&address, 500);
    // Every sample taken while the shim accepts them, and once it has accepted all.
    let mut most = 0;
    let accepted = poll_until(Duration::from_secs(30), || {
        most = most.max(threads(shim));
        accepted_all(&address)
    });
    assert!(accepted, "the shim did not accept 500 connections in 30 s");
    for _ in 0..20 {
        most = most.max(threads(shim));
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("shim threads: {before} before, at most {most} with 500 connections open");
    if testing_ours() {
        assert!(
            most <= before + CONNECTION_THREADS,
            "{most} threads with 500 idle connections, {before} before"
        );
    }
    drop(conns);
    let mut after = 0;
    let back = poll_until(Duration::from_secs(20), || {
        after = threads(shim);
        after <= before
    });
    eprintln!("shim threads: {after} once they closed");
    if testing_ours() {
        assert!(
            back,
            "{after} threads after the connections closed, {before} before"
        );
    }
    let out = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        &id,
        "/bin/echo",
        "still-served",
    ]);
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, "still-served\n");
    let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "rm", &id]).ok();
    d.ctr(&["containers", "rm", &id]).ok();
}

/// Connections that closed, at once or with a Wait still waiting on a running process, no
/// longer count against the shim's limit of connections served at once (8 for ours):
/// after 30 of each, one after another, a new connection is still served. A Wait kept
/// its connection counted until the process exited, so that a client reconnecting
/// (containerd, after restarts) could be refused.
#[test]
fn connections_that_closed_are_not_counted_even_with_a_wait_in_flight() {
    use containerd_shim_protos::api::{StateRequest, WaitRequest};
    use rsrunc_e2e::shim_client::{read_status, request_frame, send_request};
    use std::io::Write;
    use ttrpc::Code;
    let d = Daemon::start();
    let id = unique_id("closed");
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sleep", "600"]).ok();
    d.wait_status(&id, "RUNNING");
    let address = std::fs::read_to_string(d.bundle(&id).join("address")).unwrap();
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
        // The State behind the Wait is answered once the Wait is being served. A
        // connection is refused while 8 are counted: those closed before must be let go.
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
    // The container's own connection still serves containerd.
    let out = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        &id,
        "/bin/echo",
        "served",
    ]);
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "served\n"),
        "{out:?}"
    );
    let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "rm", &id]).ok();
    d.ctr(&["containers", "rm", &id]).ok();
}

fn accepted_all(address: &str) -> bool {
    accept_backlog(address) == 0
}
