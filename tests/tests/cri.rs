#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Pods through Kubernetes' CRI, against a private containerd whose CRI plugin is
//! configured from packaging/containerd/config-*.x.toml as shipped: one pod of two
//! containers, ExecSync, statuses, graceful and forced stops, and nothing left behind.
//! Under containerd 1.7 (the default) and 2.1.

use std::fmt::Display;
use std::time::{Duration, Instant};

use rsrunc_e2e::cri::{api, CriDaemon};
use rsrunc_e2e::cri_pod;
use rsrunc_e2e::daemon::Flavor;
use rsrunc_e2e::runtime_name;

#[test]
fn pod_with_two_containers() {
    pod_lifecycle(&Flavor::default(), "containerd 1.7");
}

#[test]
fn pod_with_two_containers_containerd_2() {
    pod_lifecycle(&Flavor::containerd_2(), "containerd 2.1");
}

fn pod_lifecycle(flavor: &Flavor, what: &str) {
    let t0 = Instant::now();
    let c = CriDaemon::start_flavor(flavor);
    let cri = &c.cri;
    let ctx = |step: &str, e: &dyn Display| -> String {
        format!(
            "{what}, {} via handler {}: {step}: {e}\n--- containerd.log ---\n{}",
            runtime_name(),
            c.handler,
            c.daemon.log()
        )
    };
    let v = cri
        .version()
        .unwrap_or_else(|e| panic!("{}", ctx("Version", &e)));
    eprintln!(
        "{what}: CRI {} {} {}, handler {}",
        v.runtime_name, v.runtime_version, v.runtime_api_version, c.handler
    );

    let pod_config = c.pod_config("two");
    let pod = cri
        .run_pod_sandbox(&pod_config, &c.handler)
        .unwrap_or_else(|e| panic!("{}", ctx("RunPodSandbox", &e)));
    let (trapper, stubborn) = cri_pod::run_trapper_and_stubborn(cri, &pod, &pod_config, &ctx);
    let ids = [trapper.clone(), stubborn.clone()];

    // ExecSync: stdout, stderr and the exit code of the process run in the container.
    cri_pod::check_exec_sync(cri, &trapper, &stubborn, 10, &ctx);

    for id in &ids {
        let s = cri.status_of(id);
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
    let took = cri_pod::stop_expecting(cri, "trapper", &trapper, 10, 42, &ctx);
    // Exit code 42 says the trap ran; it must also not have waited out the grace period
    // (a bound, not a speed check: under load SIGTERM's delivery takes seconds).
    assert!(
        took < Duration::from_secs(10),
        "{what}: the trapper took {took:?} to stop, the whole grace period"
    );

    // One that ignores SIGTERM is SIGKILLed after the timeout: 128 + 9.
    let took = cri_pod::stop_expecting(cri, "stubborn", &stubborn, 2, 137, &ctx);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{what}: StopContainer with a 2 s timeout took {took:?}"
    );

    cri_pod::remove_pod(&c, &pod, &ctx);
    assert!(
        cri.list_pod_sandboxes().unwrap().is_empty(),
        "{what}: pods left"
    );
    eprintln!("{what}: pod test took {:?}", t0.elapsed());
}

/// Prints how CRI passed the handler's options to the shim: the runtime type and
/// options containerd recorded (verbose ContainerStatus), and what the shim resolved
/// (our `rsrunc-options.json`, the Go shim's `options.json`) in the bundle.
fn report_options(c: &CriDaemon, id: &str) {
    if let Some(json) = c.cri.container_info(id).ok().filter(|j| !j.is_null()) {
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
