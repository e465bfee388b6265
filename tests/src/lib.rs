//! End-to-end test harness: a private containerd per test, a busybox rootfs, and the
//! runtime under test chosen by `RSRUNC_E2E_RUNTIME` (default: ours).
//!
//! The same tests run against containerd's Go shim (`io.containerd.runc.v2`): a test that
//! shim fails is a wrong test. A test of something only rsrunc does is ignored there, with
//! its reason in libtest's output, and starts with the [`ours_only`] guard:
//!
//! ```text
//! #[test]
//! #[cfg_attr(go_shim, ignore = "rsrunc only: what it checks")]
//! fn something_only_rsrunc_does() {
//!     rsrunc_e2e::ours_only();
//!     // ...
//! }
//! ```
//!
//! `cfg(go_shim)` comes from the build script (tests/build.rs), which reads
//! `RSRUNC_E2E_RUNTIME` when the tests are compiled; `cargo test` recompiles them when it
//! changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness: failing loudly is the point

pub mod cri;
pub mod cri_pod;
pub mod cri_stream;
pub mod daemon;
pub mod docker;
pub mod image;
pub mod load;
pub mod rootfs;
pub mod shim_client;
pub mod vm;

use std::path::PathBuf;

pub use daemon::{CtrOutput, Daemon};

/// Our runtime name.
pub const RSRUNC: &str = "io.containerd.rsrunc.v2";
/// containerd's Go shim, the reference the tests are checked against.
pub const GO_SHIM: &str = "io.containerd.runc.v2";

/// The containerd runtime name under test: the one the tests were compiled for, which must
/// be the one `RSRUNC_E2E_RUNTIME` names when they run (a test binary run by hand under
/// another name would ignore the wrong tests).
pub fn runtime_name() -> String {
    let built_for = env!("RSRUNC_E2E_BUILT_FOR");
    let now = std::env::var("RSRUNC_E2E_RUNTIME").unwrap_or_else(|_| RSRUNC.to_string());
    assert_eq!(
        now, built_for,
        "the tests were compiled for RSRUNC_E2E_RUNTIME={built_for} and run with {now}: \
         run them through cargo test, which recompiles them"
    );
    now
}

pub fn testing_ours() -> bool {
    runtime_name() == RSRUNC
}

/// The first line of a test of what only rsrunc does, which is ignored under the Go shim
/// (see the crate's documentation): run anyway (`--ignored`, `--include-ignored`), it
/// stops here instead of failing on what the Go shim never claimed to do.
pub fn ours_only() {
    assert!(
        testing_ours(),
        "an rsrunc-only test run under {}: it checks what only rsrunc does",
        runtime_name()
    );
}

/// The OCI runtimes the tests run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oci {
    Runc,
    Crun,
    /// Built from the crate registry by the test command (tests/tests/youki.rs).
    Youki,
}

impl Oci {
    /// Those every lifecycle test runs under.
    pub const ALL: [Oci; 2] = [Oci::Runc, Oci::Crun];

    /// How options files and `--runc-binary` name it: runc from PATH (the machine's own),
    /// crun and youki as the set-up provides them in [`TOOLS_DIR`].
    pub fn binary(self) -> String {
        match self {
            Oci::Runc => "runc".to_string(),
            Oci::Crun => tool("crun").display().to_string(),
            Oci::Youki => tool("youki").display().to_string(),
        }
    }
}

/// Where `scripts/setup-host.sh` links the daemons and clients the tests run by default
/// (containerd 1.7 with its Go shim, Docker 26), extracted from Debian's newer releases
/// without installing them over the machine's own.
pub const TOOLS_DIR: &str = "/opt/rsrunc-test/bin";

/// A daemon or client from [`TOOLS_DIR`], or the one on PATH where the set-up did not
/// provide it.
pub fn tool(name: &str) -> PathBuf {
    let p = std::path::Path::new(TOOLS_DIR).join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from(name)
    }
}

/// A container id like Docker's and Kubernetes': 64 hex digits, unique in the run.
pub fn long_id() -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(unique_id("long").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The freshly built shim binary.
pub fn shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RSRUNC_SHIM_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["release", "debug"] {
        let p = root
            .join("target")
            .join(profile)
            .join("containerd-shim-rsrunc-v2");
        if p.exists() {
            return p;
        }
    }
    panic!("containerd-shim-rsrunc-v2 is not built: run `cargo build` (or set RSRUNC_SHIM_BIN)");
}

/// Polls `done` every 20 ms for up to `timeout`; returns whether it came true.
pub fn poll_until(timeout: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The spec in a bundle's config.json.
pub fn bundle_spec(bundle: &std::path::Path) -> oci_spec::runtime::Spec {
    let path = bundle.join("config.json");
    oci_spec::runtime::Spec::load(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A unique, short id for a container in a test.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
