#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! A pod with its own user namespace (`hostUsers: false`) through CRI of containerd 2.1, as
//! kubelet asks for one: the pod sandbox and the container each carry
//! `namespace_options.userns_options` with mode POD and one uid and one gid mapping of
//! 65536 ids starting at a multiple of 65536.
//!
//! containerd 2.1 lets kubelet use user namespaces only under a handler whose features
//! (`shim -info`, the OCI runtime's `features`) list the user namespace and idmapped mounts,
//! and it asks only handlers typed `io.containerd.runc.v2`: the test uses the runc-typed
//! way (packaging/containerd/config-2.x-runc-type.toml, `runtime_path` naming the shim under
//! test) and its crun handler, crun 1.21 doing idmapped mounts. The host's runc 1.1.5 does
//! not (idmapped mounts came in runc 1.2), and CRI reports that handler without user
//! namespace support.
//!
//! The overlay snapshotter then hands the shim a rootfs whose options carry `uidmap=` and
//! `gidmap=`, which the shim turns into idmapped lower layers; CRI's bind mounts
//! (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`) carry mappings for the runtime.
//! The user sees the image's files owned by root inside the container, the container's
//! processes and the files they create owned by the mapped ids outside.
//!
//! The pod has its own network namespace, as kubelet requires with `hostUsers: false`
//! (containerd 2.1 then makes the network namespace inside the pod's user namespace). This
//! host has no CNI plugins: the test installs [`CNI_PLUGIN`], a small real one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rsrunc_e2e::cri::{self, api, CriDaemon, CriSetup};
use rsrunc_e2e::daemon::Flavor;
use rsrunc_e2e::{poll_until, runtime_name, shim_binary, testing_ours, Oci};

/// Where the Debian package installs the shim, the runc-typed config's `runtime_path`.
const INSTALLED_SHIM: &str = "/usr/bin/containerd-shim-rsrunc-v2";
/// The shipped handlers: ours driving runc and ours driving crun.
const RUNC_HANDLER: &str = cri::OUR_HANDLER;
const CRUN_HANDLER: &str = "rsrunc-crun";
/// How many ids kubelet gives a pod.
const IDS: u32 = 65536;

/// A CNI plugin (spec 1.0) for pods that need their own network namespace on a host without
/// CNI plugins, installed as `loopback` (which CRI adds to every network) and as the
/// network's plugin. For `lo` it brings the loopback interface up; for any other interface
/// CNI names (`eth0`) it makes that one end of a veth pair kept inside the pod's namespace,
/// with [`POD_ADDRESS`]. The namespace goes with the pod, and the pair with it: DEL has
/// nothing to do.
const CNI_PLUGIN: &str = r#"#!/bin/sh
set -e
cat >/dev/null
in_pod() { nsenter --net="$CNI_NETNS" "$@"; }
result() {
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"%s","interface":0}]}\n' \
    "$CNI_IFNAME" "$CNI_NETNS" "$1"
}
case "$CNI_COMMAND" in
VERSION)
  echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
ADD)
  if [ "$CNI_IFNAME" = lo ]; then
    in_pod ip link set lo up
    result 127.0.0.1/8
  else
    in_pod ip link add "$CNI_IFNAME" type veth peer name rsrunc-peer
    in_pod ip addr add "$POD_ADDRESS" dev "$CNI_IFNAME"
    in_pod ip link set rsrunc-peer up
    in_pod ip link set "$CNI_IFNAME" up
    result "$POD_ADDRESS"
  fi ;;
esac
"#;
/// The address [`CNI_PLUGIN`] gives every pod (each in its own namespace).
const POD_ADDRESS: &str = "10.250.0.2/24";

#[test]
fn user_namespace_pod_containerd_2() {
    let flavor = Flavor::containerd_2();
    let shim = if testing_ours() {
        shim_binary()
    } else {
        flavor.go_shim()
    };
    let what = format!("containerd 2.1, runc-typed handlers, {}", runtime_name());
    let c = CriDaemon::start_setup(&flavor, &setup(&flavor, &shim));
    let log = |c: &CriDaemon| format!("\n--- containerd.log ---\n{}", c.daemon.log());
    install_cni(&c);

    // What kubelet reads before it sends a pod with hostUsers: false to a handler.
    let status = c
        .cri
        .status()
        .unwrap_or_else(|e| panic!("{what}: Status: {e}"));
    let userns = |handler: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == handler)
            .and_then(|h| h.features)
            .map(|f| f.user_namespaces)
    };
    eprintln!(
        "{what}: user namespaces: {CRUN_HANDLER} {:?}, {RUNC_HANDLER} {:?}",
        userns(CRUN_HANDLER),
        userns(RUNC_HANDLER)
    );
    assert_eq!(
        userns(CRUN_HANDLER),
        Some(true),
        "{what}: CRI does not report user namespaces for {CRUN_HANDLER} (crun 1.21){}",
        log(&c)
    );
    assert_eq!(
        userns(RUNC_HANDLER),
        Some(oci_idmap(&Oci::Runc.binary())),
        "{what}: user namespaces for {RUNC_HANDLER} are not what `runc features` says"
    );

    // As kubelet picks them: a range of 65536 ids at a multiple of 65536, not the host's.
    let host_id = IDS * (16 + std::process::id() % 4096);
    let mapping = |host_id: u32| api::IdMapping {
        host_id,
        container_id: 0,
        length: IDS,
    };
    let userns_options = api::UserNamespace {
        mode: api::NamespaceMode::Pod as i32,
        uids: vec![mapping(host_id)],
        gids: vec![mapping(host_id)],
    };
    let mut pod_config = c.pod_config("userns");
    pod_namespaces(
        pod_config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut()),
        &userns_options,
    );
    let pod = c
        .cri
        .run_pod_sandbox(&pod_config, CRUN_HANDLER)
        .unwrap_or_else(|e| panic!("{what}: RunPodSandbox: {e}{}", log(&c)));

    let mut config = c.container_config(
        "userns",
        &["/bin/sh", "-c", "touch /made-inside; exec sleep 3600"],
    );
    pod_namespaces(
        config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut()),
        &userns_options,
    );
    let id = c
        .cri
        .create_container(&pod, &config, &pod_config)
        .unwrap_or_else(|e| panic!("{what}: CreateContainer: {e}{}", log(&c)));
    c.cri
        .start_container(&id)
        .unwrap_or_else(|e| panic!("{what}: StartContainer: {e}{}", log(&c)));

    let shims = c.daemon.shim_pids();
    assert_eq!(shims.len(), 1, "{what}: shims {shims:?}{}", log(&c));
    let exe = std::fs::read_link(format!("/proc/{}/exe", shims[0])).unwrap();
    assert_eq!(
        exe,
        std::fs::canonicalize(&shim).unwrap(),
        "{what}: the serving shim"
    );

    // Inside: the user namespace's map, and the image's files and CRI's files owned by
    // root (an unmapped owner reads as 65534, "nobody").
    let inside = |cmd: &[&str]| {
        let r = c
            .cri
            .exec_sync(&id, cmd, 10)
            .unwrap_or_else(|e| panic!("{what}: ExecSync {cmd:?}: {e}{}", log(&c)));
        assert_eq!(r.exit_code, 0, "{what}: ExecSync {cmd:?}: {r:?}");
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    let uid_map: Vec<String> = inside(&["/bin/cat", "/proc/self/uid_map"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        uid_map,
        ["0".to_string(), host_id.to_string(), IDS.to_string()],
        "{what}: uid_map inside the container"
    );
    let owners = inside(&[
        "/bin/stat",
        "-c",
        "%n %u:%g",
        "/",
        "/bin",
        "/bin/busybox",
        "/made-inside",
        "/etc/hosts",
        "/etc/resolv.conf",
    ]);
    eprintln!("{what}: owners inside:\n{owners}");
    let wrong: Vec<&str> = owners.lines().filter(|l| !l.ends_with(" 0:0")).collect();
    assert!(
        wrong.is_empty(),
        "{what}: not owned by root inside the container: {wrong:?}"
    );

    // Outside: the container's process runs as the mapped id, and its rootfs (seen through
    // /proc/PID/root) shows the mapped owner for the image's files and for what the
    // container created.
    let pid = container_pid(&c, &id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|u| u.parse::<u32>().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        uids, [host_id; 4],
        "{what}: the container's process seen from the host"
    );
    // How the rootfs is mounted: an overlay whose lower layers are idmapped mounts the shim
    // made (their paths in lowerdir=), not the snapshots themselves.
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let rootfs = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/"));
    eprintln!("{what}: the container's / : {rootfs:?}");
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    for f in ["bin/busybox", "made-inside"] {
        let m = std::fs::metadata(root.join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (host_id, host_id),
            "{what}: /{f} seen from the host"
        );
    }

    c.cri
        .stop_pod_sandbox(&pod)
        .unwrap_or_else(|e| panic!("{what}: StopPodSandbox: {e}{}", log(&c)));
    c.cri
        .remove_pod_sandbox(&pod)
        .unwrap_or_else(|e| panic!("{what}: RemovePodSandbox: {e}{}", log(&c)));
    let left = c.daemon.shims_left();
    assert!(left.is_empty(), "{what}: shims left: {left:?}");
}

/// Installs [`CNI_PLUGIN`] and a network of it in the daemon's CNI directories and waits
/// until CRI reports its network ready.
fn install_cni(c: &CriDaemon) {
    use std::os::unix::fs::PermissionsExt;
    let dir = c.daemon.dir().join("cni");
    for name in ["loopback", "rsrunc-veth"] {
        let plugin = dir.join("bin").join(name);
        std::fs::write(&plugin, CNI_PLUGIN.replace("$POD_ADDRESS", POD_ADDRESS)).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        dir.join("net.d/10-rsrunc.conflist"),
        r#"{"cniVersion":"1.0.0","name":"rsrunc-e2e","plugins":[{"type":"rsrunc-veth"}]}"#,
    )
    .unwrap();
    let mut last = None;
    let ready = poll_until(Duration::from_secs(20), || {
        let status = c.cri.status().ok().and_then(|s| s.status);
        let network = status.and_then(|s| {
            s.conditions
                .into_iter()
                .find(|c| c.r#type == "NetworkReady")
        });
        let ok = network.as_ref().is_some_and(|n| n.status);
        last = network;
        ok
    });
    assert!(
        ready,
        "CRI's network is not ready with the test's CNI plugin: {last:?}\n{}",
        c.daemon.log()
    );
}

/// The shipped runc-typed config for containerd 2.x with `runtime_path` naming `shim`.
fn setup(flavor: &Flavor, shim: &Path) -> CriSetup {
    let name = "config-2.x-runc-type.toml";
    let text = cri::packaging_file(&format!("containerd/{name}"));
    assert_eq!(
        text.matches(INSTALLED_SHIM).count(),
        2,
        "{name}: runtime_path is no longer {INSTALLED_SHIM} in both handlers"
    );
    let text = text.replace(INSTALLED_SHIM, &shim.display().to_string());
    let mut setup = CriSetup::shipped(flavor);
    setup.handlers = format!("\n# {name}, runtime_path = the shim under test:\n{text}\n");
    setup
}

/// Gives a pod's or a container's namespaces (of a host-network config) the pod's own
/// network and the user namespace `userns`.
fn pod_namespaces(namespaces: Option<&mut api::NamespaceOption>, userns: &api::UserNamespace) {
    let namespaces = namespaces.expect("a host-network config names its namespaces");
    namespaces.network = api::NamespaceMode::Pod as i32;
    namespaces.userns_options = Some(userns.clone());
}

/// The pid of a container's process (verbose ContainerStatus).
fn container_pid(c: &CriDaemon, id: &str) -> u32 {
    let json = c.cri.container_info(id).unwrap_or_default();
    json["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in ContainerStatus: {json}"))
}

/// Whether `<binary> features` says the runtime does idmapped mounts.
fn oci_idmap(binary: &str) -> bool {
    let out = std::process::Command::new(binary)
        .arg("features")
        .output()
        .unwrap_or_else(|e| panic!("{binary} features: {e}"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["linux"]["mountExtensions"]["idmap"]["enabled"] == true
}
