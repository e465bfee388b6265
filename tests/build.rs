//! Compiles the end-to-end tests for one runtime, `RSRUNC_E2E_RUNTIME` (default: ours).
//!
//! Under containerd's Go shim the tests of what only rsrunc does must be reported as
//! ignored, not passed, and libtest decides what is ignored at compile time: so this
//! script sets `cfg(go_shim)` for the Go shim, and those tests carry
//! `#[cfg_attr(go_shim, ignore = "rsrunc only: ...")]`. The node tests, which boot the
//! test VM, are ignored unless `RSRUNC_E2E_NODE=1` sets `cfg(node_vm)`. Changing either
//! recompiles this crate (not its dependencies).

fn main() {
    println!("cargo::rerun-if-env-changed=RSRUNC_E2E_RUNTIME");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RSRUNC_E2E_NODE");
    println!("cargo::rustc-check-cfg=cfg(go_shim)");
    println!("cargo::rustc-check-cfg=cfg(node_vm)");
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
