//! `delete`: containerd's cleanup after a shim died. Removes the container with the
//! runtime, unmounts the rootfs, removes the dead shim's socket, and prints a
//! DeleteResponse.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::Flags;
use containerd_shim_protos::api::DeleteResponse;
use runc_driver::{ExitStatus, StdMonitor};

use super::require_id;
use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::options::RuntimeConfig;
use crate::request::{ContainerId, Signal};
use crate::task::{read_init_exit, read_persisted_config, runtime};

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
    remove_dead_socket(&bundle);
    let resp = response(&bundle);
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| Error::internal(format!("encode the delete response: {e}")))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write the delete response", e))
}

/// Removes the socket the bundle's `address` file names if no shim answers on it any
/// more (a shim that was killed could not remove it); one that answers serves other
/// tasks of its group and stays.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let Some(path) = address.trim().strip_prefix("unix://").map(Path::new) else {
        return;
    };
    if path.exists() && !super::start::is_live(path) {
        match std::fs::remove_file(path) {
            Ok(()) => log::info!("removed the dead shim's socket {}", path.display()),
            Err(e) => log::warn!("remove the dead shim's socket {}: {e}", path.display()),
        }
    }
}

/// The init's exit as the serving shim recorded it; when it died before it saw one, the
/// init was killed with the container (`delete --force`): SIGKILL's status, now, as
/// containerd's Go shim always reports.
fn response(bundle: &Path) -> DeleteResponse {
    let (pid, status, at) = match read_init_exit(bundle) {
        Some(e) => (e.pid, e.status, e.at),
        None => (
            std::fs::read_to_string(bundle.join("init.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(0),
            ExitStatus::killed(Signal::KILL.number()).get(),
            SystemTime::now(),
        ),
    };
    DeleteResponse {
        pid,
        exit_status: status,
        exited_at: MessageField::some(timestamp(at)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::InitExit;

    #[test]
    fn a_dead_socket_goes_and_a_live_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let address = format!("unix://{}", sock.display());
        std::fs::write(dir.path().join("address"), &address).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        remove_dead_socket(dir.path());
        assert!(sock.exists(), "a live shim's socket was removed");
        drop(listener);
        remove_dead_socket(dir.path());
        assert!(!sock.exists(), "the dead shim's socket is left");
    }

    #[test]
    fn the_recorded_exit_wins_over_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("init.pid"), "99\n").unwrap();
        let r = response(dir.path());
        assert_eq!((r.pid, r.exit_status), (99, 137));
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        crate::task::record_init_exit(
            dir.path(),
            &InitExit {
                pid: 42,
                status: 7,
                at,
            },
        )
        .unwrap();
        let r = response(dir.path());
        assert_eq!((r.pid, r.exit_status), (42, 7));
        assert_eq!((r.exited_at.seconds, r.exited_at.nanos), (1_700_000_000, 5));
    }
}
