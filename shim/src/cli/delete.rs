//! `delete`: containerd's cleanup after a shim died. Removes the container with the
//! runtime, unmounts the rootfs, and prints a DeleteResponse.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::Flags;
use containerd_shim_protos::api::DeleteResponse;
use runc_driver::{ExitStatus, GlobalOpts, Runtime, StdWaiter};

use super::require_id;
use crate::events::timestamp;
use crate::options::RuntimeConfig;
use crate::task::read_persisted_config;

pub fn run(flags: &Flags) -> Result<(), String> {
    let id = require_id(flags)?;
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().map_err(|e| format!("read the bundle directory (cwd): {e}"))?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let cfg = read_persisted_config(&bundle)
        .or_else(|| RuntimeConfig::host_defaults().ok())
        .unwrap_or_default();
    let runtime = Runtime::new(
        &cfg.binary_name,
        GlobalOpts {
            root: Some(cfg.root_for(&flags.namespace)),
            log: Some(bundle.join("log.json")),
            systemd_cgroup: cfg.uses_systemd_cgroup(),
        },
        Arc::new(StdWaiter),
    );
    // Failures are not fatal: the container may be gone already, and containerd needs
    // the response either way.
    let _ = runtime.delete(id, true);
    crate::mounts::unmount_all(&bundle.join("rootfs"));
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let resp = DeleteResponse {
        pid,
        exit_status: ExitStatus::killed(libc::SIGKILL).get(),
        exited_at: MessageField::some(timestamp(std::time::SystemTime::now())),
        ..Default::default()
    };
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| format!("encode the delete response: {e}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| format!("write the delete response: {e}"))
}
