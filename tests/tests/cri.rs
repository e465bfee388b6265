#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Pods through Kubernetes' CRI, against a private containerd whose CRI plugin is
//! configured from packaging/containerd/config-*.x.toml as shipped: one pod of two
//! containers, ExecSync, statuses, graceful and forced stops, and nothing left behind.
//! Under containerd 1.7 (the default) and 2.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rsrunc_e2e::cri::{api, CriDaemon, Status};
use rsrunc_e2e::daemon::Flavor;
use rsrunc_e2e::runtime_name;

/// containerd 2.1 as `scripts/setup-host.sh` extracts it.
const CONTAINERD_2: &str = "/opt/rsrunc-test/containerd-2.1.9/usr/bin";

/// Traps SIGTERM and exits 42; `wait` (unlike a foreground `sleep`) lets the trap run
/// at once.
const TRAPPER: &str = "trap 'exit 42' TERM; echo ready; while :; do sleep 1 & wait $!; done";
/// Ignores SIGTERM: only SIGKILL stops it.
const STUBBORN: &str = "trap '' TERM; echo ready; while :; do sleep 1; done";

#[test]
fn pod_with_two_containers() {
    pod_lifecycle(&Flavor::default(), "containerd 1.7");
}

#[test]
fn pod_with_two_containers_containerd_2() {
    assert!(
        PathBuf::from(CONTAINERD_2).join("containerd").exists(),
        "{CONTAINERD_2}/containerd is not there: scripts/setup-host.sh extracts it"
    );
    let flavor = Flavor {
        bin_dir: Some(PathBuf::from(CONTAINERD_2)),
        config_version: 3,
    };
    pod_lifecycle(&flavor, "containerd 2.1");
}

fn pod_lifecycle(flavor: &Flavor, what: &str) {
    let t0 = Instant::now();
    let c = CriDaemon::start_flavor(flavor);
    let cri = &c.cri;
    let ctx = |step: &str, e: Status| -> String {
        format!(
            "{what}, {} via handler {}: {step}: {e}\n--- containerd.log ---\n{}",
            runtime_name(),
            c.handler,
            c.daemon.log()
        )
    };
    let v = cri
        .version()
        .unwrap_or_else(|e| panic!("{}", ctx("Version", e)));
    eprintln!(
        "{what}: CRI {} {} {}, handler {}",
        v.runtime_name, v.runtime_version, v.runtime_api_version, c.handler
    );

    let pod_config = c.pod_config("two");
    let pod = cri
        .run_pod_sandbox(&pod_config, &c.handler)
        .unwrap_or_else(|e| panic!("{}", ctx("RunPodSandbox", e)));
    let mut ids = Vec::new();
    for (name, script) in [("trapper", TRAPPER), ("stubborn", STUBBORN)] {
        let config = c.container_config(name, &["/bin/sh", "-c", script]);
        let id = cri
            .create_container(&pod, &config, &pod_config)
            .unwrap_or_else(|e| panic!("{}", ctx(&format!("CreateContainer {name}"), e)));
        cri.start_container(&id)
            .unwrap_or_else(|e| panic!("{}", ctx(&format!("StartContainer {name}"), e)));
        ids.push(id);
    }
    let (trapper, stubborn) = (ids[0].clone(), ids[1].clone());

    // ExecSync: stdout, stderr and the exit code of the process run in the container.
    let r = cri
        .exec_sync(
            &trapper,
            &["/bin/sh", "-c", "echo out-$((6*7)); echo err >&2; exit 3"],
            10,
        )
        .unwrap_or_else(|e| panic!("{}", ctx("ExecSync", e)));
    assert_eq!(
        (
            String::from_utf8_lossy(&r.stdout).as_ref(),
            String::from_utf8_lossy(&r.stderr).as_ref(),
            r.exit_code
        ),
        ("out-42\n", "err\n", 3),
        "{what}: ExecSync"
    );
    let r = cri
        .exec_sync(&stubborn, &["/bin/cat", "/proc/1/cmdline"], 10)
        .unwrap_or_else(|e| panic!("{}", ctx("ExecSync", e)));
    assert_eq!(r.exit_code, 0, "{what}: ExecSync: {r:?}");
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("trap '' TERM"),
        "{what}: ExecSync ran in the wrong container: {r:?}"
    );

    for id in &ids {
        let s = status(&c, id);
        assert_eq!(
            s.state,
            api::ContainerState::ContainerRunning as i32,
            "{what}: {s:?}"
        );
    }

    // One shim serves the whole pod: sandbox and both containers.
    let shims = c.daemon.shim_pids();
    assert_eq!(shims.len(), 1, "{what}: shims serving the pod: {shims:?}");

    // The pod's cgroups are where the test looks for leftovers at the end.
    let cgroups = c.cgroups_left();
    assert!(
        cgroups.iter().any(|p| p.ends_with(&trapper)),
        "{what}: no cgroup of the trapper under {}: {cgroups:#?}",
        c.cgroup_parent
    );

    report_options(&c, &trapper);

    // StopContainer with a grace period: the trapper exits with its own code at once.
    let t = Instant::now();
    cri.stop_container(&trapper, 10)
        .unwrap_or_else(|e| panic!("{}", ctx("StopContainer trapper", e)));
    let took = t.elapsed();
    let s = status(&c, &trapper);
    assert_eq!(
        (s.state, s.exit_code),
        (api::ContainerState::ContainerExited as i32, 42),
        "{what}: trapper after StopContainer: {s:?}"
    );
    // Exit code 42 says the trap ran; it must also not have waited out the grace period
    // (a bound, not a speed check: under load SIGTERM's delivery takes seconds).
    assert!(
        took < Duration::from_secs(10),
        "{what}: the trapper took {took:?} to stop, the whole grace period"
    );

    // One that ignores SIGTERM is SIGKILLed after the timeout: 128 + 9.
    let t = Instant::now();
    cri.stop_container(&stubborn, 2)
        .unwrap_or_else(|e| panic!("{}", ctx("StopContainer stubborn", e)));
    let took = t.elapsed();
    let s = status(&c, &stubborn);
    assert_eq!(
        (s.state, s.exit_code),
        (api::ContainerState::ContainerExited as i32, 137),
        "{what}: stubborn after StopContainer: {s:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{what}: StopContainer with a 2 s timeout took {took:?}"
    );

    cri.stop_pod_sandbox(&pod)
        .unwrap_or_else(|e| panic!("{}", ctx("StopPodSandbox", e)));
    cri.remove_pod_sandbox(&pod)
        .unwrap_or_else(|e| panic!("{}", ctx("RemovePodSandbox", e)));
    assert!(
        cri.list_pod_sandboxes().unwrap().is_empty(),
        "{what}: pods left"
    );

    let shims = c.daemon.shims_left();
    assert!(
        shims.is_empty(),
        "{what}: shims left after RemovePodSandbox: {shims:?}"
    );
    let mounts = c.daemon.mounts();
    assert!(mounts.is_empty(), "{what}: mounts left: {mounts:#?}");
    let cgroups = c.cgroups_left();
    assert!(
        cgroups.is_empty(),
        "{what}: cgroups left under {}: {cgroups:#?}",
        c.cgroup_parent
    );
    eprintln!("{what}: pod test took {:?}", t0.elapsed());
}

fn status(c: &CriDaemon, id: &str) -> api::ContainerStatus {
    c.cri
        .container_status(id, false)
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .status
        .expect("ContainerStatus without a status")
}

/// Prints how CRI passed the handler's options to the shim: the runtime type and
/// options containerd recorded (verbose ContainerStatus), and what the shim resolved
/// (our `rsrunc-options.json`, the Go shim's `options.json`) in the bundle.
fn report_options(c: &CriDaemon, id: &str) {
    let info = c
        .cri
        .container_status(id, true)
        .map(|r| r.info)
        .unwrap_or_default();
    if let Some(json) = info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
    {
        eprintln!(
            "CRI info: runtimeType={} runtimeOptions={}",
            json["runtimeType"], json["runtimeOptions"]
        );
    }
    for name in ["rsrunc-options.json", "options.json"] {
        if let Ok(text) = std::fs::read_to_string(c.bundle(id).join(name)) {
            eprintln!("bundle {name}: {text}");
        }
    }
}
