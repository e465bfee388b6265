//! What the CRI tests do to a pod, shared by tests/tests/cri.rs (a private containerd)
//! and tests/tests/node_cri.rs (the node VM's containerd): two containers that answer
//! SIGTERM differently, ExecSync into them, StopContainer with its exit code, and
//! removing a pod with nothing left behind.
//!
//! Each step takes `ctx`, which turns a step and what went wrong into the test's failure
//! message (the test's name for itself, and containerd's log or journal).

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::cri::{self, api, Client, CriDaemon};

/// Traps SIGTERM and exits 42; `wait` (unlike a foreground `sleep`) lets the trap run
/// at once.
pub const TRAPPER: &str = "trap 'exit 42' TERM; echo ready; while :; do sleep 1 & wait $!; done";
/// Ignores SIGTERM: only SIGKILL stops it.
pub const STUBBORN: &str = "trap '' TERM; echo ready; while :; do sleep 1; done";
/// Grows a shell variable until the OOM killer takes the shell.
pub const HOG: &str = "x=0123456789; while true; do x=$x$x; done";

/// Makes a failure message from a step and what went wrong.
pub type Ctx<'a> = dyn Fn(&str, &dyn Display) -> String + 'a;

/// CreateContainer then StartContainer in `pod`: the container's id.
pub fn run_container(
    cri: &Client,
    pod: &str,
    config: &api::ContainerConfig,
    pod_config: &api::PodSandboxConfig,
    ctx: &Ctx,
) -> String {
    let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
    let id = cri
        .create_container(pod, config, pod_config)
        .unwrap_or_else(|e| panic!("{}", ctx(&format!("CreateContainer {name}"), &e)));
    cri.start_container(&id)
        .unwrap_or_else(|e| panic!("{}", ctx(&format!("StartContainer {name}"), &e)));
    id
}

/// Runs [`TRAPPER`] and [`STUBBORN`] in `pod`: their ids, in that order.
pub fn run_trapper_and_stubborn(
    cri: &Client,
    pod: &str,
    pod_config: &api::PodSandboxConfig,
    ctx: &Ctx,
) -> (String, String) {
    let run = |name: &str, script: &str| {
        let config = cri::container_config(name, &["/bin/sh", "-c", script]);
        run_container(cri, pod, &config, pod_config, ctx)
    };
    (run("trapper", TRAPPER), run("stubborn", STUBBORN))
}

/// ExecSync into the containers of [`run_trapper_and_stubborn`], each call given
/// `timeout_s`: the stdout, stderr and exit code of the process run in the container, and
/// that a command runs in the container it names.
pub fn check_exec_sync(cri: &Client, trapper: &str, stubborn: &str, timeout_s: i64, ctx: &Ctx) {
    let r = cri
        .exec_sync(
            trapper,
            &["/bin/sh", "-c", "echo out-$((6*7)); echo err >&2; exit 3"],
            timeout_s,
        )
        .unwrap_or_else(|e| panic!("{}", ctx("ExecSync", &e)));
    assert_eq!(
        (
            String::from_utf8_lossy(&r.stdout).as_ref(),
            String::from_utf8_lossy(&r.stderr).as_ref(),
            r.exit_code
        ),
        ("out-42\n", "err\n", 3),
        "{}",
        ctx("ExecSync", &"output and exit code")
    );
    let r = cri
        .exec_sync(stubborn, &["/bin/cat", "/proc/1/cmdline"], timeout_s)
        .unwrap_or_else(|e| panic!("{}", ctx("ExecSync", &e)));
    assert_eq!(r.exit_code, 0, "{}", ctx("ExecSync", &format!("{r:?}")));
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("trap '' TERM"),
        "{}",
        ctx("ExecSync ran in the wrong container", &format!("{r:?}"))
    );
}

/// StopContainer `name` (its id `id`) with a grace period of `timeout_s`, then checks it
/// exited with `exit_code`: how long StopContainer took.
pub fn stop_expecting(
    cri: &Client,
    name: &str,
    id: &str,
    timeout_s: i64,
    exit_code: i32,
    ctx: &Ctx,
) -> Duration {
    let t = Instant::now();
    cri.stop_container(id, timeout_s)
        .unwrap_or_else(|e| panic!("{}", ctx(&format!("StopContainer {name}"), &e)));
    let took = t.elapsed();
    let s = cri.status_of(id);
    assert_eq!(
        (s.state, s.exit_code),
        (api::ContainerState::ContainerExited as i32, exit_code),
        "{}",
        ctx(&format!("{name} after StopContainer"), &format!("{s:?}"))
    );
    took
}

/// StopPodSandbox and RemovePodSandbox, then nothing of the daemon's pods left: no shim,
/// mount or cgroup.
pub fn remove_pod(c: &CriDaemon, pod: &str, ctx: &Ctx) {
    c.cri
        .stop_pod_sandbox(pod)
        .unwrap_or_else(|e| panic!("{}", ctx("StopPodSandbox", &e)));
    c.cri
        .remove_pod_sandbox(pod)
        .unwrap_or_else(|e| panic!("{}", ctx("RemovePodSandbox", &e)));
    let shims = c.daemon.shims_left();
    assert!(
        shims.is_empty(),
        "{}",
        ctx("shims left after RemovePodSandbox", &format!("{shims:?}"))
    );
    let mounts = c.daemon.mounts();
    assert!(
        mounts.is_empty(),
        "{}",
        ctx("mounts left", &format!("{mounts:#?}"))
    );
    let cgroups = c.cgroups_left();
    assert!(
        cgroups.is_empty(),
        "{}",
        ctx(
            &format!("cgroups left under {}", c.cgroup_parent),
            &format!("{cgroups:#?}")
        )
    );
}

/// Limits `config`'s memory, and memory with swap, to `bytes`.
pub fn limit_memory(config: &mut api::ContainerConfig, bytes: i64) {
    config.linux.get_or_insert_with(Default::default).resources =
        Some(api::LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            memory_swap_limit_in_bytes: bytes,
            ..Default::default()
        });
}
