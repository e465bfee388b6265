//! Compiles the end-to-end tests for one runtime, `RSRUNC_E2E_RUNTIME` (default: ours).
//!
//! Under containerd's Go shim the tests of what only rsrunc does must be reported as
//! ignored, not passed, and libtest decides what is ignored at compile time: so this
//! script sets `cfg(go_shim)` for the Go shim, and those tests carry
//! `#[cfg_attr(go_shim, ignore = "rsrunc only: ...")]`. The node tests, which boot the
//! test VM, are ignored unless `RSRUNC_E2E_NODE=1` sets `cfg(node_vm)`. Changing either
//! recompiles this crate (not its dependencies). A kernel without core scheduling sets
//! `cfg(no_sched_core)`: the test that needs it is reported as ignored, saying why.

fn main() {
    println!("cargo::rerun-if-env-changed=RSRUNC_E2E_RUNTIME");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RSRUNC_E2E_NODE");
    println!("cargo::rustc-check-cfg=cfg(go_shim)");
    println!("cargo::rustc-check-cfg=cfg(node_vm)");
    println!("cargo::rustc-check-cfg=cfg(no_sched_core)");
    if !kernel_has_core_scheduling() {
        println!("cargo::rustc-cfg=no_sched_core");
    }
    // The node tests (tests/tests/node*.rs) boot the test VM: ignored unless the suite is
    // compiled for them (`make node` sets RSRUNC_E2E_NODE=1).
    if std::env::var("RSRUNC_E2E_NODE").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=node_vm");
    }
    let runtime =
        std::env::var("RSRUNC_E2E_RUNTIME").unwrap_or_else(|_| "io.containerd.rsrunc.v2".into());
    match runtime.as_str() {
        "io.containerd.rsrunc.v2" => {}
        "io.containerd.runc.v2" => println!("cargo::rustc-cfg=go_shim"),
        other => panic!(
            "RSRUNC_E2E_RUNTIME={other}: the tests know io.containerd.rsrunc.v2 (ours) \
             and io.containerd.runc.v2 (containerd's Go shim)"
        ),
    }
    // What the tests were compiled for, checked against the environment they run in.
    println!("cargo::rustc-env=RSRUNC_E2E_BUILT_FOR={runtime}");
}

/// Whether the kernel the tests are built on (and run on) knows core scheduling: asking
/// for this process's cookie fails with EINVAL without CONFIG_SCHED_CORE.
fn kernel_has_core_scheduling() -> bool {
    let mut cookie: u64 = 0;
    // SAFETY: PR_SCHED_CORE_GET writes one u64 to the address given, a live local.
    let r = unsafe {
        libc::prctl(
            libc::PR_SCHED_CORE,
            libc::PR_SCHED_CORE_GET as libc::c_ulong,
            0 as libc::c_ulong, // this process
            0 as libc::c_ulong, // PIDTYPE_PID
            &mut cookie as *mut u64 as libc::c_ulong,
        )
    };
    r == 0
}
