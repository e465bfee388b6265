//! `delete`: containerd's cleanup after a shim died. Removes the container with the
//! runtime, unmounts the rootfs, and prints a DeleteResponse.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::Flags;
use containerd_shim_protos::api::DeleteResponse;
use runc_driver::{ExitStatus, StdMonitor};

use super::require_id;
use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::options::RuntimeConfig;
use crate::request::{ContainerId, Signal};
use crate::task::{read_persisted_config, runtime};

pub fn run(flags: &Flags) -> Result<()> {
    let id = ContainerId::parse(require_id(flags)?)?;
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().map_err(|e| Error::io("read the bundle directory (cwd)", e))?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let cfg = read_persisted_config(&bundle)
        .or_else(|| RuntimeConfig::host_defaults().ok())
        .unwrap_or_default();
    // Failures are not fatal: the container may be gone already, and containerd needs
    // the response either way.
    match runtime(
        &cfg,
        Some((&flags.namespace, &bundle)),
        Arc::new(StdMonitor),
    ) {
        Ok(rt) => {
            let _ = rt.delete(id.as_str(), true);
        }
        Err(e) => log::warn!("delete {id}: {e}"),
    }
    crate::mounts::unmount_all(&bundle.join("rootfs"));
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let resp = DeleteResponse {
        pid,
        exit_status: ExitStatus::killed(Signal::KILL.number()).get(),
        exited_at: MessageField::some(timestamp(std::time::SystemTime::now())),
        ..Default::default()
    };
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| Error::internal(format!("encode the delete response: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write the delete response", e))
}
