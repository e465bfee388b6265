#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Bad input gets a clear error with the right code, and leaves nothing behind.

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::{
    CreateTaskRequest, CreateTaskResponse, DeleteRequest, DeleteResponse, KillRequest,
    StateRequest, StateResponse,
};
use containerd_shim_protos::types::mount::Mount;
use protobuf::well_known_types::empty::Empty;
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{ours_only, rootfs, unique_id, Daemon, Oci};
use ttrpc::Code;

#[test]
fn a_runtime_binary_that_does_not_exist_is_named() {
    let d = Daemon::start();
    let id = unique_id("nobin");
    // ctr takes --runc-binary for io.containerd.runc.v2 alone; ours reads an options file.
    let extra: Vec<String> = if d.is_go_shim() {
        vec!["--runc-binary".into(), "no-such-runtime".into()]
    } else {
        let f = d.options_file("nobin", "BinaryName = \"no-such-runtime\"\n");
        vec!["--runtime-config-path".into(), f]
    };
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let out = d.run(Oci::Runc, &extra, &id, &["/bin/true"]);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stderr.contains("no-such-runtime"), "{out:?}");
    let _ = d.ctr(&["containers", "rm", &id]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

/// Ours also says where the name came from and what kind of error it is.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: options files, and errors naming where an option was set"
)]
fn a_runtime_binary_from_an_options_file_is_named_with_the_file() {
    ours_only();
    let d = Daemon::start();
    let id = unique_id("nobin");
    let f = d.options_file("nobin", "BinaryName = \"no-such-runtime\"\n");
    let out = d.run(
        Oci::Runc,
        &["--runtime-config-path", &f],
        &id,
        &["/bin/true"],
    );
    assert_ne!(out.status, 0, "{out:?}");
    for part in ["no-such-runtime", "nobin.toml", "invalid argument"] {
        assert!(out.stderr.contains(part), "{part:?} not in {out:?}");
    }
    let _ = d.ctr(&["containers", "rm", &id]);
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

#[test]
fn a_runtime_failure_carries_the_runtime_message() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("badcmd");
        let out = d.run(oci, &["--rm"], &id, &["/bin/no-such-command"]);
        assert_ne!(out.status, 0, "{oci:?}: {out:?}");
        // The last line is ctr's summary of the shim's error.
        let summary = out.stderr.lines().last().unwrap_or_default();
        assert!(
            summary.contains("/bin/no-such-command"),
            "{oci:?}: {summary}"
        );
        let _ = d.ctr(&["containers", "rm", &id]);
    }
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: runtime options as TOML through --runtime-config-path"
)]
fn malformed_options_are_invalid_argument_naming_the_field() {
    ours_only();
    let d = Daemon::start();
    let cases = [
        (
            "badtype",
            "BinaryName = \"crun\"\nSystemdCgroup = \"yes\"\n",
            "SystemdCgroup",
        ),
        ("badkey", "BinaryNmae = \"crun\"\n", "BinaryNmae"),
        ("badsyntax", "BinaryName = \n", "line 1"),
    ];
    for (name, toml, field) in cases {
        let f = d.options_file(name, toml);
        let id = unique_id(name);
        let out = d.run(
            Oci::Runc,
            &["--runtime-config-path", &f],
            &id,
            &["/bin/true"],
        );
        assert_ne!(out.status, 0, "{name}: {out:?}");
        assert!(out.stderr.contains(field), "{name}: {out:?}");
        assert!(out.stderr.contains(&f), "{name}: {out:?}");
        assert!(out.stderr.contains("invalid argument"), "{name}: {out:?}");
        let _ = d.ctr(&["containers", "rm", &id]);
    }
    let id = unique_id("nofile");
    let out = d.run(
        Oci::Runc,
        &["--runtime-config-path", "/nonexistent/rsrunc.toml"],
        &id,
        &["/bin/true"],
    );
    assert!(out.stderr.contains("/nonexistent/rsrunc.toml"), "{out:?}");
    assert!(out.stderr.contains("invalid argument"), "{out:?}");
    let _ = d.ctr(&["containers", "rm", &id]);
}

/// A bundle directory with an OCI spec from `ctr oci spec`, running `args`.
fn bundle(d: &Daemon, name: &str, args: &[&str], root: &Path) -> PathBuf {
    let dir = d.dir().join("bundles").join(name);
    d.write_bundle(&dir, root, args, &format!("/{}/{name}", d.namespace));
    dir
}

fn shim_binary(d: &Daemon) -> PathBuf {
    if d.is_go_shim() {
        PathBuf::from("containerd-shim-runc-v2")
    } else {
        rsrunc_e2e::shim_binary()
    }
}

fn create(
    conn: &ShimConn,
    id: &str,
    bundle: &Path,
    rootfs: Vec<Mount>,
) -> Result<CreateTaskResponse, (Code, String)> {
    let req = CreateTaskRequest {
        id: id.into(),
        bundle: bundle.display().to_string(),
        rootfs,
        ..Default::default()
    };
    conn.call("Create", &req)
}

#[test]
fn requests_containerd_never_sends_get_the_right_code() {
    let d = Daemon::start();
    let home = bundle(&d, "home", &["/bin/true"], rootfs::busybox());
    let conn = ShimConn::start(&d, &shim_binary(&d), &home, "home");

    // Unknown container ids.
    let st: Result<StateResponse, _> = conn.call(
        "State",
        &StateRequest {
            id: "nope".into(),
            ..Default::default()
        },
    );
    let st = st.unwrap_err();
    assert_eq!(st.0, Code::NOT_FOUND, "{st:?}");
    let k: Result<Empty, _> = conn.call(
        "Kill",
        &KillRequest {
            id: "nope".into(),
            signal: 9,
            ..Default::default()
        },
    );
    assert_eq!(k.unwrap_err().0, Code::NOT_FOUND);
    let del: Result<DeleteResponse, _> = conn.call(
        "Delete",
        &DeleteRequest {
            id: "nope".into(),
            ..Default::default()
        },
    );
    assert_eq!(del.unwrap_err().0, Code::NOT_FOUND);
    conn.shutdown();
}

#[test]
#[cfg_attr(go_shim, ignore = "rsrunc only: its codes for bad bundles and ids")]
fn bad_bundles_and_ids_get_the_right_code() {
    ours_only();
    let d = Daemon::start();
    let home = bundle(&d, "home", &["/bin/true"], rootfs::busybox());
    let conn = ShimConn::start(&d, &shim_binary(&d), &home, "home");

    // A bundle without config.json.
    let empty = d.dir().join("bundles").join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // Not NOT_FOUND: that code means no such task; the message names the file.
    let (code, msg) = create(&conn, "noconfig", &empty, vec![]).unwrap_err();
    assert_eq!(code, Code::FAILED_PRECONDITION, "{msg}");
    assert!(
        msg.contains(&format!("{}/config.json", empty.display())),
        "{msg}"
    );

    // A spec whose root filesystem does not exist.
    let b = bundle(
        &d,
        "noroot",
        &["/bin/true"],
        Path::new("/nonexistent/rootfs"),
    );
    let (code, msg) = create(&conn, "noroot", &b, vec![]).unwrap_err();
    assert_eq!(code, Code::FAILED_PRECONDITION, "{msg}");
    assert!(msg.contains("/nonexistent/rootfs"), "{msg}");

    // An id that cannot be a directory name.
    let (code, msg) = create(&conn, "a/b", &home, vec![]).unwrap_err();
    assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");

    // Checkpoint of a container the shim does not have is NotFound, naming it.
    let e: Result<Empty, _> = conn.call(
        "Checkpoint",
        &containerd_shim_protos::shim::shim::CheckpointTaskRequest {
            id: "nope".into(),
            path: "/tmp/nope".into(),
            ..Default::default()
        },
    );
    let (code, msg) = e.unwrap_err();
    assert_eq!(code, Code::NOT_FOUND, "{msg}");
    assert!(msg.contains("nope"), "{msg}");
    conn.shutdown();
}

#[test]
fn a_failed_create_leaves_nothing_mounted() {
    let d = Daemon::start();
    let home = bundle(&d, "home", &["/bin/true"], rootfs::busybox());
    let conn = ShimConn::start(&d, &shim_binary(&d), &home, "home");
    // The rootfs comes as a mount, as containerd passes snapshots; the command is missing.
    let b = bundle(
        &d,
        "failing",
        &["/bin/no-such-command"],
        Path::new("rootfs"),
    );
    let m = Mount {
        type_: "bind".into(),
        source: rootfs::busybox().display().to_string(),
        options: vec!["rbind".into(), "rw".into()],
        ..Default::default()
    };
    let (code, msg) = create(&conn, "failing", &b, vec![m]).unwrap_err();
    assert_ne!(code, Code::OK);
    assert!(msg.contains("no-such-command"), "{msg}");
    assert!(
        rsrunc_e2e::daemon::mounts_under(&b).is_empty(),
        "{:?}",
        rsrunc_e2e::daemon::mounts_under(&b)
    );
    conn.shutdown();
}

#[test]
fn stats_and_update_of_a_created_container() {
    use containerd_shim_protos::api::{StatsRequest, StatsResponse};
    let d = Daemon::start();
    let (conn, id) = created(&d, "res");

    let stats: StatsResponse = conn
        .call(
            "Stats",
            &StatsRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        stats.stats.type_url.starts_with("io.containerd.cgroups.v"),
        "{}",
        stats.stats.type_url
    );
    assert!(!stats.stats.value.is_empty());

    update(&conn, id, br#"{"pids": {"limit": 99}}"#).unwrap();
    remove(conn, id);
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: InvalidArgument for resources that are not JSON"
)]
fn resources_that_are_not_json_are_invalid_argument() {
    ours_only();
    let d = Daemon::start();
    let (conn, id) = created(&d, "badres");
    let (code, msg) = update(&conn, id, b"not json").unwrap_err();
    assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("LinuxResources"), "{msg}");
    remove(conn, id);
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: signals and exec ids checked before anything is done"
)]
fn signals_out_of_range_and_bad_exec_ids_are_invalid_argument() {
    ours_only();
    let d = Daemon::start();
    let (conn, id) = created(&d, "badsig");
    for signal in [0, 65, 1000] {
        let r: Result<Empty, _> = conn.call(
            "Kill",
            &KillRequest {
                id: id.into(),
                signal,
                ..Default::default()
            },
        );
        let (code, msg) = r.unwrap_err();
        assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
        assert!(msg.contains(&format!("signal {signal} ")), "{msg}");
    }
    let r: Result<StateResponse, _> = conn.call(
        "State",
        &StateRequest {
            id: id.into(),
            exec_id: "a/b".into(),
            ..Default::default()
        },
    );
    let (code, msg) = r.unwrap_err();
    assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("exec id \"a/b\""), "{msg}");
    // A well-formed exec id that names nothing is NOT_FOUND.
    let r: Result<StateResponse, _> = conn.call(
        "State",
        &StateRequest {
            id: id.into(),
            exec_id: "nope".into(),
            ..Default::default()
        },
    );
    assert_eq!(r.unwrap_err().0, Code::NOT_FOUND);
    remove(conn, id);
}

/// A created (not started) container `id` running `sleep 30`, on a shim of its own.
fn created<'a>(d: &Daemon, id: &'a str) -> (ShimConn, &'a str) {
    let b = bundle(d, id, &["/bin/sleep", "30"], rootfs::busybox());
    let conn = ShimConn::start(d, &shim_binary(d), &b, id);
    create(&conn, id, &b, vec![]).unwrap();
    (conn, id)
}

/// Update with `value` as the LinuxResources.
fn update(conn: &ShimConn, id: &str, value: &[u8]) -> Result<Empty, (Code, String)> {
    use containerd_shim_protos::api::UpdateTaskRequest;
    use protobuf::well_known_types::any::Any;
    conn.call(
        "Update",
        &UpdateTaskRequest {
            id: id.into(),
            resources: protobuf::MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: value.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// Kills and deletes container `id`, then ends its shim.
fn remove(conn: ShimConn, id: &str) {
    let _: Result<Empty, _> = conn.call(
        "Kill",
        &KillRequest {
            id: id.into(),
            signal: 9,
            ..Default::default()
        },
    );
    let _: Result<DeleteResponse, _> = conn.call(
        "Delete",
        &DeleteRequest {
            id: id.into(),
            ..Default::default()
        },
    );
    conn.shutdown();
}
