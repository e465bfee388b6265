#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Kubernetes pods on a node with the systemd cgroup driver: CRI of the node VM's system
//! containerd 1.7 (containerd.service), configured as a user would for kubelet's
//! `cgroupDriver: systemd`: `/etc/containerd/config.toml` (version 2) with
//! `SystemdCgroup = true` for the default `runc` handler, the test's pause image as
//! sandbox image, and `packaging/containerd/config-1.x.toml` appended as shipped; then
//! `systemctl restart containerd`.
//!
//! Pods get a cgroup parent as kubelet's systemd driver writes it, a slice name
//! (`kubepods-besteffort-pod<uid>.slice`), from which CRI makes systemd-form cgroupsPaths
//! (`<slice>:cri-containerd:<id>`). Under our shim the pods use the shipped handlers
//! `rsrunc` and `rsrunc-crun` (no SystemdCgroup option: the shim follows the path); under
//! containerd's Go shim (the reference) `runc` and [`GO_CRUN_HANDLER`], both typed
//! `io.containerd.runc.v2` with `SystemdCgroup = true`.
//!
//! Each test checks one host-network pod of two containers end to end: one shim serves
//! it, ExecSync, each process in `kubepods.slice/.../<slice>/cri-containerd-<id>.scope`,
//! ContainerStats, UpdateContainerResources reaching the scope's memory.max, StopContainer
//! with a grace period, and no shim, scope or cgroup left after RemovePodSandbox. It
//! prints what CRI sent the shim and which cgroup driver the shim chose.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rsrunc_e2e::cri::{self, api, Client, NAMESPACE, PAUSE_IMAGE};
use rsrunc_e2e::cri_pod::{self, HOG};
use rsrunc_e2e::cri_stream::{attach_echo, check_streams_and_log, ECHOER};
use rsrunc_e2e::daemon::processes;
use rsrunc_e2e::vm::{node_test, run, CONTAINERD_SOCKET};
use rsrunc_e2e::{poll_until, runtime_name, testing_ours, unique_id, Oci, GO_SHIM};

/// The shipped CRI snippet for containerd 1.6 / 1.7, appended to the node's config.
const SHIPPED: &str = include_str!("../../packaging/containerd/config-1.x.toml");
/// The Go shim's reference for `rsrunc-crun`: typed io.containerd.runc.v2, crun, systemd.
const GO_CRUN_HANDLER: &str = "runc-crun";
/// Where the system containerd keeps its bundles (`<root>/<namespace>/<id>`).
const TASK_DIR: &str = "/run/containerd/io.containerd.runtime.v2.task";
/// The parent slices systemd makes of a `kubepods-besteffort-pod<uid>.slice`.
const BESTEFFORT: &str = "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice";

/// The memory limit UpdateContainerResources sets.
const MEMORY_LIMIT: i64 = 96 << 20;

#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn systemd_driver_pod_runc() {
    node_test("systemd_driver_pod_runc", || pod_on_node(Oci::Runc));
}

#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn systemd_driver_pod_crun() {
    node_test("systemd_driver_pod_crun", || pod_on_node(Oci::Crun));
}

/// What kubelet does besides starting and stopping, on the systemd driver: `kubectl
/// exec` and `attach` through CRI's streaming server, a log rotation, and
/// `systemctl restart containerd` under the live pod (the container keeps running, its
/// stdin open, served by the same shim; exec and attach work after it).
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn streams_log_rotation_and_containerd_restart() {
    node_test("streams_log_rotation_and_containerd_restart", || {
        let cri = node_cri();
        let handler = handler(Oci::Runc);
        let what = format!("{} via handler {handler}", runtime_name());
        let (pod, slice, pod_config) = node_pod(&cri, "streams", handler);
        let _guard = PodGuard {
            cri: &cri,
            pod: pod.clone(),
            slice,
        };
        let mut config = cri::container_config("echoer", &["/bin/sh", "-c", ECHOER]);
        config.stdin = true;
        let ctx = |step: &str, e: &dyn Display| format!("{what}: {step}: {e}\n{}", journal_tail());
        let id = cri_pod::run_container(&cri, &pod, &config, &pod_config, &ctx);
        let log = Path::new(&pod_config.log_directory).join(&config.log_path);
        check_streams_and_log(&cri, &id, &log, &what);

        let shims = shims_of(&pod);
        let pid = task_pids().get(&id).copied();
        run("systemctl", &["restart", "containerd.service"]).ok();
        let cri = wait_for_cri();
        let s = cri.status_of(&id);
        assert_eq!(
            s.state,
            api::ContainerState::ContainerRunning as i32,
            "{what}: after systemctl restart containerd: {s:?}\n{}",
            journal_tail()
        );
        assert_eq!(task_pids().get(&id).copied(), pid, "{what}: init pid");
        assert_eq!(shims_of(&pod), shims, "{what}: shims after the restart");
        attach_echo(&cri, &id, "after-restart", &what);
        let r = cri
            .exec_sync(&id, &["/bin/sh", "-c", "echo still-here"], 30)
            .unwrap_or_else(|e| panic!("{what}: ExecSync after the restart: {e}"));
        assert_eq!(
            (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
            ("still-here\n", 0),
            "{what}: ExecSync after the restart"
        );
    });
}

/// An OOM kill in a pod on the systemd driver: ContainerStatus says `OOMKilled`, exit
/// 137. systemd removes the container's scope as soon as the OOM-killed init is gone;
/// rsrunc reads the kernel's counters in time (issue 17). containerd's Go shim may miss
/// the kill there (containerd/containerd#8893), so this is ours only.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
#[cfg_attr(
    all(node_vm, go_shim),
    ignore = "rsrunc only: the Go shim may lose an OOM kill on a systemd scope"
)]
fn oom_kill_in_a_pod_is_oomkilled() {
    node_test("oom_kill_in_a_pod_is_oomkilled", || {
        rsrunc_e2e::ours_only();
        let cri = node_cri();
        for oci in [Oci::Runc, Oci::Crun] {
            let handler = handler(oci);
            let what = format!("{} via handler {handler}", runtime_name());
            let (pod, slice, pod_config) = node_pod(&cri, "oom", handler);
            let _guard = PodGuard {
                cri: &cri,
                pod: pod.clone(),
                slice,
            };
            let mut config = cri::container_config("hog", &["/bin/sh", "-c", HOG]);
            cri_pod::limit_memory(&mut config, 32 << 20);
            let ctx = |step: &str, e: &dyn Display| format!("{what}: {step}: {e}");
            let id = cri_pod::run_container(&cri, &pod, &config, &pod_config, &ctx);
            let s = cri.wait_exited(&id, Duration::from_secs(90));
            assert_eq!(
                s.state,
                api::ContainerState::ContainerExited as i32,
                "{what}: the hog did not exit: {s:?}"
            );
            assert_eq!(
                (s.exit_code, s.reason.as_str()),
                (137, "OOMKilled"),
                "{what}: status of the OOM-killed container: {s:?}"
            );
        }
    });
}

/// A host-network pod under a BestEffort pod slice, as kubelet's systemd driver names
/// it: the pod, its slice, its config.
fn node_pod(cri: &Client, name: &str, handler: &str) -> (String, String, api::PodSandboxConfig) {
    // systemd reads '-' as nesting, so the uid has none.
    let uid = unique_id("uid").replace('-', "_");
    let slice = format!("kubepods-besteffort-pod{uid}.slice");
    let logs = PathBuf::from(format!("/tmp/rsrunc-node-cri-pods/{uid}"));
    std::fs::create_dir_all(&logs).unwrap();
    let pod_config = cri::pod_config(name, &uid, &logs, &slice);
    let pod = cri
        .run_pod_sandbox(&pod_config, handler)
        .unwrap_or_else(|e| {
            panic!(
                "RunPodSandbox {name} via {handler}: {e}\n{}",
                journal_tail()
            )
        });
    (pod, slice, pod_config)
}

/// The CRI handler of the pods under the runtime under test.
fn handler(oci: Oci) -> &'static str {
    match (testing_ours(), oci) {
        (true, Oci::Crun) => "rsrunc-crun",
        (true, _) => cri::OUR_HANDLER,
        (false, Oci::Crun) => GO_CRUN_HANDLER,
        (false, _) => "runc",
    }
}

/// The node's /etc/containerd/config.toml: Debian's file (its CNI directories and opt
/// path) with what a user adds for kubelet's systemd cgroup driver, then the shipped
/// snippet as it is. No `restrict_oom_score_adj`: containerd.service runs with every
/// capability. No CNI configuration: the pods use the host's network.
fn node_config() -> String {
    format!(
        r#"# Written by tests/tests/node_cri.rs: containerd 1.7 on a node whose kubelet uses the
# systemd cgroup driver.
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "{GO_SHIM}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
    # containerd's Go shim driving crun: the reference for rsrunc-crun.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{GO_CRUN_HANDLER}]
      runtime_type = "{GO_SHIM}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{GO_CRUN_HANDLER}.options]
        BinaryName = "crun"
        SystemdCgroup = true

# packaging/containerd/config-1.x.toml, as shipped:
{SHIPPED}"#
    )
}

/// Configures the system containerd, restarts it and imports the images, once per
/// process; every test then connects its own client.
fn node_cri() -> Client {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let path = Path::new("/etc/containerd/config.toml");
        match std::fs::read_to_string(path) {
            Ok(old) => println!("the image's {}:\n{}", path.display(), old.trim_end()),
            Err(e) => println!("the image has no {} ({e})", path.display()),
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, node_config()).unwrap();
        let t = Instant::now();
        run("systemctl", &["restart", "containerd.service"]).ok();
        let cri = wait_for_cri();
        println!("containerd restarted, CRI up in {:?}", t.elapsed());
        if let Ok(Some(status)) = cri.status().map(|s| s.status) {
            let conditions: Vec<String> = status
                .conditions
                .iter()
                .map(|c| format!("{}={} {}", c.r#type, c.status, c.reason))
                .collect();
            println!("CRI status (no CNI configuration): {conditions:?}");
        }

        let dir = PathBuf::from(format!("/tmp/rsrunc-node-cri-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = cri::images_archive(&dir).display().to_string();
        run(
            "ctr",
            &[
                "--address",
                CONTAINERD_SOCKET,
                "--namespace",
                NAMESPACE,
                "images",
                "import",
                &archive,
            ],
        )
        .ok();
        assert!(
            cri.sees_images(Duration::from_secs(30)),
            "CRI does not see the imported images\n{}",
            journal_tail()
        );
    });
    wait_for_cri()
}

/// Connects once CRI answers Version (its plugin comes up after containerd's socket).
fn wait_for_cri() -> Client {
    cri::connect_when_up(Path::new(CONTAINERD_SOCKET), Duration::from_secs(90))
        .unwrap_or_else(|last| panic!("CRI did not come up ({last})\n{}", journal_tail()))
}

/// The last lines of containerd's journal, for failure messages.
fn journal_tail() -> String {
    let j = run(
        "journalctl",
        &["-u", "containerd", "-n", "80", "--no-pager", "-o", "cat"],
    );
    format!(
        "--- journalctl -u containerd (last lines) ---\n{}",
        j.stdout
    )
}

/// Stops and removes the pod through CRI and stops its slice (as kubelet does) when the
/// test ends, passed or not.
struct PodGuard<'a> {
    cri: &'a Client,
    pod: String,
    slice: String,
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cri.stop_pod_sandbox(&self.pod);
        let _ = self.cri.remove_pod_sandbox(&self.pod);
        run("systemctl", &["stop", &self.slice]);
    }
}

fn pod_on_node(oci: Oci) {
    let t0 = Instant::now();
    let cri = node_cri();
    let handler = handler(oci);
    let what = format!("{} via handler {handler}", runtime_name());
    let ctx = |step: &str, e: &dyn Display| -> String {
        format!("{what}: {step}: {e}\n{}", journal_tail())
    };
    let v = cri.version().unwrap();
    println!(
        "CRI {} {} {}, handler {handler}, runtime under test {}",
        v.runtime_name,
        v.runtime_version,
        v.runtime_api_version,
        runtime_name()
    );
    match cri.runtime_config() {
        Ok(r) => println!(
            "RuntimeConfig: cgroup driver {:?}",
            r.linux
                .and_then(|l| api::CgroupDriver::try_from(l.cgroup_driver).ok())
        ),
        Err(e) => println!("RuntimeConfig: {:?}: {}", e.code(), e.message()),
    }

    let (pod, slice, pod_config) = node_pod(&cri, "node", handler);
    let slice_dir = PathBuf::from(BESTEFFORT).join(&slice);
    let _guard = PodGuard {
        cri: &cri,
        pod: pod.clone(),
        slice: slice.clone(),
    };
    let (trapper, stubborn) = cri_pod::run_trapper_and_stubborn(&cri, &pod, &pod_config, &ctx);
    let all = [pod.clone(), trapper.clone(), stubborn.clone()];

    // ExecSync: stdout, stderr and the exit code of the process run in the container.
    cri_pod::check_exec_sync(&cri, &trapper, &stubborn, 30, &ctx);

    // CRI ran the handler's runtime type; what it recorded as the options.
    for id in [&trapper, &stubborn] {
        let info = verbose_info(&cri, id);
        assert_eq!(
            info["runtimeType"].as_str(),
            Some(runtime_name().as_str()),
            "{what}: the runtime type CRI used for {id}"
        );
    }
    let info = verbose_info(&cri, &trapper);
    println!(
        "CRI info: runtimeType={} runtimeOptions={}",
        info["runtimeType"], info["runtimeOptions"]
    );

    // One shim serves the whole pod: the parent of the sandbox and of both containers.
    let pids = task_pids();
    let shims = shims_of(&pod);
    assert_eq!(shims.len(), 1, "{what}: shims serving pod {pod}: {shims:?}");
    let (shim, shim_cmd) = shims[0].clone();
    let want_shim = if testing_ours() {
        "containerd-shim-rsrunc-v2"
    } else {
        "containerd-shim-runc-v2"
    };
    assert!(shim_cmd.contains(want_shim), "{what}: the shim: {shim_cmd}");
    for id in &all {
        let pid = *pids
            .get(id)
            .unwrap_or_else(|| panic!("{what}: no task {id} in {pids:?}"));
        assert_eq!(
            parent(pid),
            shim,
            "{what}: the parent of {id} (pid {pid}) is not the pod's shim {shim} ({shim_cmd})"
        );
    }
    println!("one shim, pid {shim}: {shim_cmd}");

    // Each in a systemd scope under the pod's slice, from a systemd-form cgroupsPath.
    let mut scopes = HashMap::new();
    for id in &all {
        let spec = bundle_json(id, "config.json");
        assert_eq!(
            spec["linux"]["cgroupsPath"].as_str(),
            Some(format!("{slice}:cri-containerd:{id}").as_str()),
            "{what}: the cgroupsPath CRI wrote for {id}"
        );
        let scope =
            format!("/kubepods.slice/kubepods-besteffort.slice/{slice}/cri-containerd-{id}.scope");
        let pid = pids[id];
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = cgroup.trim().strip_prefix("0::").unwrap_or(cgroup.trim());
        assert!(
            path == scope || path.starts_with(&format!("{scope}/")),
            "{what}: {id} (pid {pid}) is in {path}, not in the scope {scope}"
        );
        let unit = format!("cri-containerd-{id}.scope");
        let show = run(
            "systemctl",
            &["show", "-p", "ActiveState", "-p", "Slice", &unit],
        );
        assert!(
            show.stdout.contains("ActiveState=active") && show.stdout.contains(&slice),
            "{what}: {unit}: {show:?}"
        );
        println!("{id}: pid {pid} in {path}");
        scopes.insert(id.clone(), (scope, path.to_string()));
    }
    let children = subdirs(&slice_dir);
    assert!(
        children
            .iter()
            .all(|c| c.starts_with("cri-containerd-") && c.ends_with(".scope")),
        "{what}: under {}: {children:?}",
        slice_dir.display()
    );

    report_options(&trapper);
    if testing_ours() {
        check_our_driver(&what, &all, oci);
    }

    // ContainerStats: CPU and memory figures from the shim's metrics.
    let s = cri
        .container_stats(&trapper)
        .unwrap_or_else(|e| panic!("{}", ctx("ContainerStats", &e)));
    let value = |v: Option<api::UInt64Value>| v.map(|v| v.value);
    let cpu = s.cpu.and_then(|c| value(c.usage_core_nano_seconds));
    let memory = s.memory.and_then(|m| value(m.working_set_bytes));
    let usage = s.memory.and_then(|m| value(m.usage_bytes));
    println!("ContainerStats: cpu {cpu:?} ns, working set {memory:?}, usage {usage:?} bytes");
    assert!(cpu.is_some_and(|n| n > 0), "{what}: ContainerStats: {s:?}");
    assert!(
        memory.is_some_and(|n| n > 0),
        "{what}: ContainerStats: {s:?}"
    );

    // UpdateContainerResources: the memory limit reaches the scope.
    let (scope, own) = scopes[&trapper].clone();
    let limits = |dir: &str| -> String {
        std::fs::read_to_string(format!("/sys/fs/cgroup{dir}/memory.max"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("({e})"))
    };
    let before = limits(&scope);
    cri.update_container_resources(
        &trapper,
        &api::LinuxContainerResources {
            memory_limit_in_bytes: MEMORY_LIMIT,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{}", ctx("UpdateContainerResources", &e)));
    let unit = format!("cri-containerd-{trapper}.scope");
    let unit_max = run("systemctl", &["show", "-p", "MemoryMax", "--value", &unit]);
    println!(
        "UpdateContainerResources: memory.max of the scope {before} -> {}, of the container's cgroup {}, the unit's MemoryMax {}",
        limits(&scope),
        limits(&own),
        unit_max.stdout.trim()
    );
    assert_eq!(
        limits(&scope),
        MEMORY_LIMIT.to_string(),
        "{what}: memory.max of {scope} after UpdateContainerResources"
    );
    let s = cri.container_stats(&trapper).unwrap();
    println!(
        "ContainerStats after the update: available {:?} bytes",
        s.memory.and_then(|m| value(m.available_bytes))
    );

    // StopContainer with a grace period: the trapper exits with its own code at once.
    let took = cri_pod::stop_expecting(&cri, "trapper", &trapper, 30, 42, &ctx);
    assert!(
        took < Duration::from_secs(15),
        "{what}: the trapper took {took:?} to stop"
    );

    // One that ignores SIGTERM is SIGKILLed after the timeout: 128 + 9.
    let took_stubborn = cri_pod::stop_expecting(&cri, "stubborn", &stubborn, 2, 137, &ctx);
    assert!(
        took_stubborn >= Duration::from_secs(2) && took_stubborn < Duration::from_secs(20),
        "{what}: StopContainer with a 2 s timeout took {took_stubborn:?}"
    );
    println!("StopContainer: trapper 42 in {took:?}, stubborn 137 in {took_stubborn:?}");

    cri.stop_pod_sandbox(&pod)
        .unwrap_or_else(|e| panic!("{}", ctx("StopPodSandbox", &e)));
    cri.remove_pod_sandbox(&pod)
        .unwrap_or_else(|e| panic!("{}", ctx("RemovePodSandbox", &e)));
    let pods = cri.list_pod_sandboxes().unwrap();
    assert!(
        pods.iter().all(|p| p.id != pod),
        "{what}: pod {pod} still listed"
    );

    // Nothing left: no shim, no scope unit, no cgroup under the pod's slice.
    poll_until(Duration::from_secs(20), || shims_of(&pod).is_empty());
    let shims = shims_of(&pod);
    assert!(
        shims.is_empty(),
        "{what}: shims left after RemovePodSandbox: {shims:?}"
    );
    let units_left = || -> Vec<String> {
        run(
            "systemctl",
            &[
                "list-units",
                "--all",
                "--plain",
                "--no-legend",
                "cri-containerd-*",
            ],
        )
        .stdout
        .lines()
        .filter(|l| all.iter().any(|id| l.contains(id.as_str())))
        .map(str::to_string)
        .collect()
    };
    poll_until(Duration::from_secs(20), || units_left().is_empty());
    let units = units_left();
    assert!(units.is_empty(), "{what}: scope units left: {units:#?}");
    poll_until(Duration::from_secs(10), || subdirs(&slice_dir).is_empty());
    let left = subdirs(&slice_dir);
    assert!(
        left.is_empty(),
        "{what}: cgroups left under {}: {left:?}",
        slice_dir.display()
    );
    let procs = std::fs::read_to_string(slice_dir.join("cgroup.procs")).unwrap_or_default();
    assert!(
        procs.trim().is_empty(),
        "{what}: processes left in {}: {procs}",
        slice_dir.display()
    );
    // The slice itself is kubelet's to remove (its pod cgroup manager stops the unit);
    // once stopped, nothing of the pod is left in /sys/fs/cgroup.
    let state = run(
        "systemctl",
        &["show", "-p", "ActiveState", "--value", &slice],
    );
    run("systemctl", &["stop", &slice]).ok();
    assert!(
        !slice_dir.exists(),
        "{what}: {} is still there after systemctl stop {slice}",
        slice_dir.display()
    );
    println!(
        "after RemovePodSandbox: no shim, no scope, no cgroup under {slice} (the slice unit was {}, stopped as kubelet does)",
        state.stdout.trim()
    );
    println!("pod test took {:?}", t0.elapsed());
}

/// The `info` JSON of a verbose ContainerStatus: runtime type and options, spec, pid.
fn verbose_info(cri: &Client, id: &str) -> serde_json::Value {
    cri.container_info(id)
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
}

/// The pid of every task in CRI's namespace, by id (`ctr task ls`).
fn task_pids() -> HashMap<String, i32> {
    let out = run(
        "ctr",
        &[
            "--address",
            CONTAINERD_SOCKET,
            "--namespace",
            NAMESPACE,
            "task",
            "ls",
        ],
    )
    .ok();
    out.stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// Serving shims (not the `start`/`delete` actions) of the pod whose sandbox is `pod`:
/// pid and command line.
fn shims_of(pod: &str) -> Vec<(i32, String)> {
    processes()
        .into_iter()
        .filter(|p| {
            p.is_shim()
                && p.has_arg("-id", pod)
                && !p
                    .cmdline
                    .last()
                    .is_some_and(|a| a == "start" || a == "delete")
        })
        .map(|p| (p.pid, p.cmdline.join(" ")))
        .collect()
}

/// The parent of process `pid`.
fn parent(pid: i32) -> i32 {
    processes()
        .into_iter()
        .find(|p| p.pid == pid)
        .map(|p| p.ppid)
        .unwrap_or(0)
}

/// The names of the directories in `dir` (none when it does not exist).
fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn bundle(id: &str) -> PathBuf {
    Path::new(TASK_DIR).join(NAMESPACE).join(id)
}

/// A JSON file of a task's bundle.
fn bundle_json(id: &str, name: &str) -> serde_json::Value {
    let path = bundle(id).join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Prints what the shim resolved from CRI's options (our `rsrunc-options.json`, the Go
/// shim's `options.json`).
fn report_options(id: &str) {
    for name in ["rsrunc-options.json", "options.json"] {
        if let Ok(text) = std::fs::read_to_string(bundle(id).join(name)) {
            println!("bundle {name}: {text}");
        }
    }
}

/// Our shim chose the systemd driver for the sandbox and both containers, from their
/// cgroupsPath (CRI sends no SystemdCgroup to a handler not typed io.containerd.runc.v2),
/// ran the handler's binary, and logged its choice into containerd's journal.
fn check_our_driver(what: &str, ids: &[String], oci: Oci) {
    let binary = match oci {
        Oci::Crun => "crun",
        _ => "runc",
    };
    for id in ids {
        let o = bundle_json(id, "rsrunc-options.json");
        assert_eq!(
            (o["binary_name"].as_str(), o["systemd_cgroup"].as_bool()),
            (Some(binary), Some(true)),
            "{what}: the options our shim resolved for {id}: {o}"
        );
        assert!(
            o["systemd_cgroup_source"]
                .as_str()
                .is_some_and(|s| s.contains("cgroupsPath")),
            "{what}: why the systemd driver for {id}: {o}"
        );
    }
    let mut lines = Vec::new();
    let logged = poll_until(Duration::from_secs(15), || {
        let journal = run(
            "journalctl",
            &["-u", "containerd", "--no-pager", "-o", "cat"],
        );
        lines = journal
            .stdout
            .lines()
            .filter(|l| {
                l.contains("cgroup driver id=") && ids.iter().any(|id| l.contains(id.as_str()))
            })
            .map(str::to_string)
            .collect();
        ids.iter().all(|id| {
            lines
                .iter()
                .any(|l| l.contains(&format!("cgroup driver id={id} driver=systemd")))
        })
    });
    for l in &lines {
        println!("journal: {l}");
    }
    assert!(
        logged,
        "{what}: the shim did not log the systemd driver for each of {ids:?}: {lines:#?}\n{}",
        journal_tail()
    );
}
