#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! What kubelet asks of a pod's containers besides starting and stopping them, through
//! CRI on a private containerd configured as `packaging/containerd/config-*.x.toml` ship:
//! `kubectl exec` and `kubectl attach` through CRI's streaming server (stdin, stdout,
//! stderr, exit codes, a terminal), log rotation (ReopenContainerLog), an OOM kill seen as
//! `OOMKilled`, stats, resource updates, and a containerd restart under live pods. Each
//! under containerd 1.7 and 2.1, for both shims.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rsrunc_e2e::cri::{api, CriDaemon};
use rsrunc_e2e::cri_pod::{self, HOG};
use rsrunc_e2e::cri_stream::{attach_echo, check_streams_and_log, ECHOER};
use rsrunc_e2e::daemon::Flavor;
use rsrunc_e2e::runtime_name;

#[test]
fn exec_attach_and_log_rotation() {
    streaming_and_logs(&Flavor::default(), "containerd 1.7");
}

#[test]
fn exec_attach_and_log_rotation_containerd_2() {
    streaming_and_logs(&Flavor::containerd_2(), "containerd 2.1");
}

#[test]
fn oom_killed_stats_and_update() {
    oom_stats_update(&Flavor::default(), "containerd 1.7");
}

#[test]
fn oom_killed_stats_and_update_containerd_2() {
    oom_stats_update(&Flavor::containerd_2(), "containerd 2.1");
}

#[test]
fn containerd_restart_under_live_pods() {
    restart_with_pods(&Flavor::default(), "containerd 1.7");
}

#[test]
fn containerd_restart_under_live_pods_containerd_2() {
    restart_with_pods(&Flavor::containerd_2(), "containerd 2.1");
}

/// A pod running the echoer, its stdin open (as `stdin: true` in a pod spec); returns
/// the pod, the container and the container's log file.
fn echo_pod(c: &CriDaemon, pod_name: &str) -> (String, String, PathBuf) {
    let what = format!("{} via {}", runtime_name(), c.handler);
    let pod_config = c.pod_config(pod_name);
    let pod = c
        .cri
        .run_pod_sandbox(&pod_config, &c.handler)
        .unwrap_or_else(|e| panic!("{what}: RunPodSandbox: {e}\n{}", c.daemon.log()));
    let mut config = c.container_config("echoer", &["/bin/sh", "-c", ECHOER]);
    config.stdin = true;
    let with_log = |step: &str, e: &dyn Display| format!("{what}: {step}: {e}\n{}", c.daemon.log());
    let id = cri_pod::run_container(&c.cri, &pod, &config, &pod_config, &with_log);
    let log = Path::new(&pod_config.log_directory).join(&config.log_path);
    (pod, id, log)
}

fn streaming_and_logs(flavor: &Flavor, what: &str) {
    let c = CriDaemon::start_flavor(flavor);
    let what = format!("{what}, {} via {}", runtime_name(), c.handler);
    let (pod, id, log) = echo_pod(&c, "streams");

    check_streams_and_log(&c.cri, &id, &log, &what);
    cri_pod::remove_pod(&c, &pod, &ctx(&what));
}

fn oom_stats_update(flavor: &Flavor, what: &str) {
    let c = CriDaemon::start_flavor(flavor);
    let what = format!("{what}, {} via {}", runtime_name(), c.handler);
    let pod_config = c.pod_config("oom");
    let pod = c
        .cri
        .run_pod_sandbox(&pod_config, &c.handler)
        .unwrap_or_else(|e| panic!("{what}: RunPodSandbox: {e}\n{}", c.daemon.log()));
    let start = |name: &str, script: &str, limit: Option<i64>| {
        let mut config = c.container_config(name, &["/bin/sh", "-c", script]);
        if let Some(bytes) = limit {
            cri_pod::limit_memory(&mut config, bytes);
        }
        cri_pod::run_container(&c.cri, &pod, &config, &pod_config, &ctx(&what))
    };
    let idle = start("idle", "echo ready; exec sleep 600", None);

    // ContainerStats and ListContainerStats: what kubelet's summary API reads.
    let has_figures = |s: &api::ContainerStats| {
        s.cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds.as_ref())
            .is_some()
            && s.memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .is_some_and(|w| w.value > 0)
    };
    let stats = c
        .cri
        .container_stats(&idle)
        .unwrap_or_else(|e| panic!("{what}: ContainerStats: {e}"));
    assert!(has_figures(&stats), "{what}: ContainerStats {stats:?}");
    let all = c
        .cri
        .list_container_stats()
        .unwrap_or_else(|e| panic!("{what}: ListContainerStats: {e}"));
    let listed = all
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == idle));
    assert!(
        listed.is_some_and(has_figures),
        "{what}: ListContainerStats has no figures for {idle}: {all:?}"
    );

    // UpdateContainerResources: the new memory limit is in the container's cgroup.
    const LIMIT: i64 = 96 << 20;
    c.cri
        .update_container_resources(
            &idle,
            &api::LinuxContainerResources {
                memory_limit_in_bytes: LIMIT,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{what}: UpdateContainerResources: {e}"));
    let limits = memory_limits(&c, &idle);
    assert_eq!(
        limits,
        [LIMIT.to_string()],
        "{what}: memory limit in the cgroup of {idle} after UpdateContainerResources"
    );

    // An OOM kill: exited 137 with the reason kubelet shows, OOMKilled. 32 MiB, not less:
    // runc 1.1 charges its init's copy of itself to the container's cgroup.
    let hog = start("hog", HOG, Some(32 << 20));
    let s = c.cri.wait_exited(&hog, Duration::from_secs(60));
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

    cri_pod::remove_pod(&c, &pod, &ctx(&what));
}

fn restart_with_pods(flavor: &Flavor, what: &str) {
    let mut c = CriDaemon::start_flavor(flavor);
    let what = format!("{what}, {} via {}", runtime_name(), c.handler);
    let (pod, id, _log) = echo_pod(&c, "restart");
    let pid_before = status_pid(&c, &id);
    let shims = c.daemon.shim_pids();
    assert_eq!(shims.len(), 1, "{what}: shims serving the pod: {shims:?}");

    c.restart();

    // The pod and its container are still there and running, served by the same shim.
    let s = c.cri.status_of(&id);
    assert_eq!(
        s.state,
        api::ContainerState::ContainerRunning as i32,
        "{what}: after the restart: {s:?}\n--- containerd.log ---\n{}",
        c.daemon.log()
    );
    assert_eq!(status_pid(&c, &id), pid_before, "{what}: init pid changed");
    assert_eq!(
        c.daemon.shim_pids(),
        shims,
        "{what}: shims after the restart"
    );
    let r = c
        .cri
        .exec_sync(&id, &["/bin/sh", "-c", "echo still-here"], 10)
        .unwrap_or_else(|e| panic!("{what}: ExecSync after the restart: {e}"));
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
        ("still-here\n", 0),
        "{what}: ExecSync after the restart"
    );
    attach_echo(&c.cri, &id, "after-restart", &what);

    // A container added to the pod after the restart joins the same shim.
    let pod_config = c.pod_config("restart");
    let config = c.container_config("late", &["/bin/sh", "-c", "exec sleep 600"]);
    let after = format!("{what}, after the restart");
    cri_pod::run_container(&c.cri, &pod, &config, &pod_config, &ctx(&after));
    assert_eq!(
        c.daemon.shim_pids(),
        shims,
        "{what}: shims after a container was added"
    );

    // Stopping a container whose exit containerd learns from the reconnected shim.
    c.cri
        .stop_container(&id, 2)
        .unwrap_or_else(|e| panic!("{what}: StopContainer after the restart: {e}"));
    let s = c.cri.status_of(&id);
    assert_eq!(
        s.state,
        api::ContainerState::ContainerExited as i32,
        "{what}: after StopContainer: {s:?}"
    );

    cri_pod::remove_pod(&c, &pod, &ctx(&what));
}

/// A failure message naming the test (`what`), the step and what went wrong.
fn ctx(what: &str) -> impl Fn(&str, &dyn Display) -> String + '_ {
    move |step, e| format!("{what}: {step}: {e}")
}

/// The container's init pid, from verbose ContainerStatus.
fn status_pid(c: &CriDaemon, id: &str) -> i64 {
    let json = c
        .cri
        .container_info(id)
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"));
    json["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {json}"))
}

/// The memory limits (v1 memory.limit_in_bytes, v2 memory.max) of the cgroups named
/// after container `id`.
fn memory_limits(c: &CriDaemon, id: &str) -> Vec<String> {
    c.cgroups_left()
        .iter()
        .filter(|d| d.ends_with(id))
        .flat_map(|d| {
            ["memory.limit_in_bytes", "memory.max"]
                .iter()
                .filter_map(|f| std::fs::read_to_string(d.join(f)).ok())
                .map(|t| t.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}
