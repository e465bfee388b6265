#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Rootfs mounts in the forms containerd's snapshotters emit: an overlay of more layers
//! than fit in a page of mount options, and (driven over ttrpc, where no snapshotter of
//! the tested containerd emits them) `loop` and `Mount.target`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim_protos::api::{CreateTaskRequest, CreateTaskResponse};
use containerd_shim_protos::types::mount::Mount;
use rsrunc_e2e::daemon::flavors;
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{image, runtime_name, unique_id, Daemon};
use ttrpc::Code;

const LAYERED: &str = "docker.io/library/rsrunc-layered:latest";
const LAYERS: usize = 130;

#[test]
fn an_image_of_130_layers_runs_under_each_containerd() {
    for (version, flavor) in flavors() {
        let d = Daemon::start_flavor(&runtime_name(), &flavor);
        image::import_layered(&d, LAYERED, LAYERS);
        // The overlay's lowerdir alone is longer than a page: every layer is a snapshot
        // directory `<root>/io.containerd.snapshotter.v1.overlayfs/snapshots/<n>/fs`.
        let snapshots = d
            .dir()
            .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
        let one = snapshots.join("100/fs").display().to_string().len() + 1;
        assert!(
            one * (LAYERS + 1) > 4096,
            "{} is too short",
            d.dir().display()
        );

        let id = unique_id("layers");
        let script = format!("ls /layers | wc -l; cat /layers/1 /layers/{LAYERS}");
        let out = d.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &runtime_name(),
            LAYERED,
            &id,
            "/bin/sh",
            "-c",
            &script,
        ]);
        assert_eq!(
            (out.status, out.stdout.trim()),
            (0, format!("{LAYERS}\n1\n{LAYERS}").as_str()),
            "containerd {version}: {out:?}"
        );
        assert!(
            d.mounts().is_empty(),
            "containerd {version}: {:?}",
            d.mounts()
        );
    }
}

/// A filesystem image holding a busybox rootfs with `/marker`, `/tmp/below` and
/// `/link -> /tmp`, as containerd's blockfile snapshotter hands one over: a file mounted
/// with the `loop` option.
fn ext4_image(d: &Daemon) -> Option<PathBuf> {
    let content = d.dir().join("image-content");
    rsrunc_e2e::rootfs::build(&content);
    std::fs::write(content.join("marker"), "in the image\n").unwrap();
    std::fs::create_dir_all(content.join("tmp/below")).unwrap();
    std::os::unix::fs::symlink("/tmp", content.join("link")).unwrap();
    let image = d.dir().join("rootfs.ext4");
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(&content)
        .arg(&image)
        .arg("64M")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    std::fs::remove_dir_all(&content).unwrap();
    assert!(
        made,
        "mkfs.ext4 failed (e2fsprogs, which the set-up installs)"
    );
    made.then_some(image)
}

/// Nothing of a loop mount of `image` is left: no loop device on it (within 5 s) and no
/// mount under the daemon's directory.
fn assert_no_loop_device_and_no_mount(d: &Daemon, image: &Path) {
    let freed = rsrunc_e2e::poll_until(Duration::from_secs(5), || loops_of(image).is_empty());
    assert!(freed, "loop devices left: {:?}", loops_of(image));
    let mounts = rsrunc_e2e::daemon::mounts_under(d.dir());
    assert!(mounts.is_empty(), "{mounts:?}");
}

/// The loop devices whose backing file is `image`.
fn loops_of(image: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap() {
        let e = e.unwrap();
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim()) == image {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The shim under test, started directly: ours, or containerd 1.7's Go shim (the first
/// whose `core/mount` takes `Mount.target`, and which serves the v2 Task service).
fn shim_binary(d: &Daemon) -> PathBuf {
    if d.is_go_shim() {
        rsrunc_e2e::tool("containerd-shim-runc-v2")
    } else {
        rsrunc_e2e::shim_binary()
    }
}

/// A bundle running `script` in `sh -c`, its root the `rootfs` the shim mounts.
fn bundle(d: &Daemon, name: &str, script: &str) -> PathBuf {
    let dir = d.dir().join("bundles").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = d.ctr(&["oci", "spec"]).ok().stdout;
    let mut spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    spec["root"]["path"] = "rootfs".into();
    spec["root"]["readonly"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    spec["process"]["terminal"] = false.into();
    spec["linux"]["cgroupsPath"] = format!("/{}/{name}", d.namespace).into();
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    dir
}

/// Create, Start, Wait and Delete of container `id` with `rootfs`: the exit status, or
/// the Create error.
fn run_with_mounts(
    conn: &ShimConn,
    id: &str,
    bundle: &Path,
    rootfs: Vec<Mount>,
) -> Result<u32, (Code, String)> {
    let create = CreateTaskRequest {
        id: id.into(),
        bundle: bundle.display().to_string(),
        rootfs,
        ..Default::default()
    };
    let _: CreateTaskResponse = conn.call("Create", &create)?;
    conn.start_process(id, "").unwrap();
    Ok(conn.wait_and_delete(id, "").0)
}

#[test]
fn a_loop_image_rootfs_with_a_mount_below_it() {
    let d = Daemon::start();
    let Some(image) = ext4_image(&d) else {
        return;
    };
    let script = "test \"$(cat /marker)\" = 'in the image' \
                  && grep -q ' /tmp/below .* - tmpfs ' /proc/self/mountinfo \
                  && touch /tmp/below/x";
    let b = bundle(&d, "loop", script);
    let conn = ShimConn::start(&d, &shim_binary(&d), &b, "loop");
    let rootfs = vec![
        Mount {
            type_: "ext4".into(),
            source: image.display().to_string(),
            options: vec!["rw".into(), "loop".into()],
            ..Default::default()
        },
        // Below the image's root, through its symlink (resolved inside the rootfs).
        Mount {
            type_: "tmpfs".into(),
            source: "tmpfs".into(),
            target: "link/below".into(),
            options: vec!["size=1m".into()],
            ..Default::default()
        },
    ];
    let status = run_with_mounts(&conn, "loop", &b, rootfs).unwrap();
    assert_eq!(status, 0);
    assert_no_loop_device_and_no_mount(&d, &image);
    conn.shutdown();
}

#[test]
fn a_failed_loop_mount_leaves_no_device_and_no_mount() {
    let d = Daemon::start();
    let Some(image) = ext4_image(&d) else {
        return;
    };
    let b = bundle(&d, "bad", "true");
    let conn = ShimConn::start(&d, &shim_binary(&d), &b, "bad");
    let rootfs = vec![
        Mount {
            type_: "ext4".into(),
            source: image.display().to_string(),
            options: vec!["loop".into()],
            ..Default::default()
        },
        Mount {
            type_: "tmpfs".into(),
            source: "tmpfs".into(),
            target: "no/such/dir".into(),
            ..Default::default()
        },
    ];
    let (code, msg) = run_with_mounts(&conn, "bad", &b, rootfs).unwrap_err();
    assert_ne!(code, Code::OK, "{msg}");
    if rsrunc_e2e::testing_ours() {
        assert_eq!(code, Code::INVALID_ARGUMENT, "{msg}");
        assert!(
            msg.contains("mount rootfs 2 of 2 (tmpfs tmpfs on ")
                && msg.contains("target no/such/dir: no such file or directory in the rootfs"),
            "{msg}"
        );
    }
    assert_no_loop_device_and_no_mount(&d, &image);
    conn.shutdown();
}

/// containerd 2.x's overlay snapshotter asks for an idmapped rootfs (`uidmap=`, `gidmap=`)
/// for a container with its own user namespace and `--remap-labels`: the image's files,
/// owned by root on disk, are the container's root's. A one-layer image comes as an
/// idmapped bind mount, a layered one as an overlay of idmapped layers.
///
/// containerd 2.1.9's Go shim fails both here ("failed to mount rootfs component: invalid
/// argument", on Linux 6.18), so this runs under ours only.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: an idmapped rootfs (containerd 2.1.9's Go shim fails it with EINVAL here)"
)]
fn a_user_namespaced_container_owns_its_idmapped_rootfs() {
    rsrunc_e2e::ours_only();
    let Some((version, flavor)) = flavors().into_iter().find(|(v, _)| v.starts_with('2')) else {
        panic!("no containerd 2.x: scripts/setup-host.sh extracts 2.1");
    };
    let d = Daemon::start_flavor(&runtime_name(), &flavor);
    image::import_busybox(&d);
    image::import_layered(&d, LAYERED, 2);
    for (name, file) in [(LAYERED, "/layers/1"), (image::IMAGE, "/bin/busybox")] {
        let id = unique_id("userns");
        let script = format!("stat -c %u:%g {file} /bin/busybox; id -u");
        let out = d.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &runtime_name(),
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:100000:65536",
            "--remap-labels",
            name,
            &id,
            "/bin/sh",
            "-c",
            &script,
        ]);
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (0, "0:0\n0:0\n0\n"),
            "containerd {version} {name}: {out:?}"
        );
    }
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    // Shifted by the mount, not by a chown of the snapshots.
    let snapshots = d
        .dir()
        .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
    let mut owners = Vec::new();
    for e in std::fs::read_dir(&snapshots).unwrap() {
        if let Ok(m) = std::fs::metadata(e.unwrap().path().join("fs/layers/1")) {
            owners.push(std::os::unix::fs::MetadataExt::uid(&m));
        }
    }
    assert_eq!(owners, [0], "owners of /layers/1 in the snapshots");
}
