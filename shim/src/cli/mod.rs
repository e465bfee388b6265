//! What containerd runs: `start`, `delete`, no action (serve), `-info` and `-v`.

mod delete;
mod info;
mod serve;
mod start;

use containerd_shim::Flags;

use crate::error::{Error, Result};

pub const RUNTIME_NAME: &str = "io.containerd.rsrunc.v2";

/// Environment the `start` process hands to the serving shim it spawns.
pub(crate) const ENV_LISTEN_FD: &str = "RSRUNC_LISTEN_FD";
pub(crate) const ENV_PARENT_OOM: &str = "RSRUNC_PARENT_OOM_SCORE_ADJ";
pub(crate) const ENV_SHIM_CGROUP: &str = "RSRUNC_SHIM_CGROUP";

pub fn run() -> Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let flags =
        containerd_shim::parse(&args).map_err(|e| Error::invalid(format!("bad arguments: {e}")))?;
    if flags.version {
        print_version();
        return Ok(());
    }
    if flags.info {
        return info::run();
    }
    crate::trace::init(flags.debug);
    if flags.namespace.is_empty() {
        return Err(Error::invalid(
            "-namespace is required: this binary is meant to be started by containerd",
        ));
    }
    match flags.action.as_str() {
        "start" => start::run(&flags),
        "delete" => delete::run(&flags),
        "" => serve::run(&flags),
        other => Err(Error::invalid(format!(
            "unknown action {other:?}: expected start or delete"
        ))),
    }
}

fn print_version() {
    println!("containerd-shim-rsrunc-v2:");
    println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
    println!(
        "  Revision: {}",
        option_env!("RSRUNC_REVISION").unwrap_or("unknown")
    );
    println!("  Runtime:  {RUNTIME_NAME}");
}

/// The task id the flags name, required by start and delete.
fn require_id(flags: &Flags) -> Result<&str> {
    if flags.id.is_empty() {
        return Err(Error::invalid("-id is required"));
    }
    Ok(&flags.id)
}
