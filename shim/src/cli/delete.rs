//! `delete`: containerd's cleanup after a shim died. Removes the container with the
//! runtime (or, when the runtime's delete passes its deadline, without it), unmounts the
//! rootfs, removes the dead shim's socket, and prints a DeleteResponse.
//!
//! containerd gives this command 5 s (its `io.containerd.timeout.shim.cleanup`) and then
//! kills it: the runtime's `delete` gets the options' `DeleteTimeout` (the options the
//! serving shim kept in the bundle), but never more than [`RUNTIME_DELETE_DEADLINE`], so
//! that there is time left to finish the delete without the runtime. The runtime dies
//! with this command.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::Flags;
use containerd_shim_protos::api::DeleteResponse;
use runc_driver::{Deadlines, ExitStatus, Monitor, Runtime, Started, StdMonitor};

use super::require_id;
use crate::error::{Error, Result};
use crate::events::timestamp;
use crate::options::RuntimeConfig;
use crate::request::{ContainerId, Signal};
use crate::task::{
    read_bundle_config, read_init_exit, read_init_pid, read_persisted_config,
    remove_without_runtime, runtime,
};

/// The longest the runtime's `delete` may take here: containerd kills this command after
/// 5 s, and finishing the delete without the runtime takes the rest.
pub const RUNTIME_DELETE_DEADLINE: Duration = Duration::from_secs(3);
/// How long the processes killed without the runtime may keep its cgroups busy here.
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(1);

pub fn run(flags: &Flags) -> Result<()> {
    let id = ContainerId::parse(require_id(flags)?)?;
    log_to_stderr(flags);
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
        Arc::new(DiesWithUs),
    ) {
        Ok(rt) => delete(&with_short_delete(rt), id.as_str(), &bundle),
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

/// The runtime's `delete --force` of `id`; when it passes its deadline, the container is
/// removed without it (its processes killed, its cgroups and the runtime's state
/// removed), as the serving shim would have. Logs what is left.
fn delete(rt: &Runtime, id: &str, bundle: &Path) {
    let e = match rt.delete(id, true) {
        Ok(()) => return,
        Err(e @ runc_driver::Error::DeadlineExceeded { .. }) => e,
        Err(e) if e.is_not_found() => return,
        Err(e) => return log::warn!("delete {id}: {e}"),
    };
    let cgroups_path = match read_bundle_config(bundle) {
        Ok(config) => config.cgroups_path().map(str::to_string),
        Err(c) => {
            log::warn!("delete {id}: {c}: its cgroups are looked for through its init");
            None
        }
    };
    match remove_without_runtime(rt, id, bundle, cgroups_path.as_deref(), CGROUP_EMPTY_WAIT) {
        Ok(done) => log::warn!("{e}; the shim finished the delete of {id} itself: {done}"),
        Err(left) => {
            log::error!("{e}; the shim could not finish the delete of {id} itself: {left}")
        }
    }
}

/// `rt` with its delete deadline cut to [`RUNTIME_DELETE_DEADLINE`].
fn with_short_delete(rt: Runtime) -> Runtime {
    let d = *rt.deadlines();
    rt.with_deadlines(Deadlines {
        delete: d.delete.min(RUNTIME_DELETE_DEADLINE),
        ..d
    })
}

/// Warnings go to stderr, which containerd copies into its log ("cleanup warnings").
fn log_to_stderr(flags: &Flags) {
    let level = if flags.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => crate::logger::Logger::install(fd.into(), &flags.namespace, &flags.id, level),
        Err(e) => eprintln!("containerd-shim-rsrunc-v2: no log: duplicate stderr: {e}"),
    }
}

/// Runs the runtime as [`StdMonitor`] does, with a parent-death signal: containerd kills
/// this command at its cleanup timeout, and the runtime must not outlive it.
struct DiesWithUs;

impl Monitor for DiesWithUs {
    fn start(&self, cmd: &mut Command) -> std::io::Result<Started> {
        crate::sys::die_with_parent(cmd);
        StdMonitor.start(cmd)
    }

    fn wait(
        &self,
        started: &mut Started,
        until: Option<Instant>,
    ) -> std::io::Result<Option<runc_driver::ExitStatus>> {
        StdMonitor.wait(started, until)
    }
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
            read_init_pid(bundle).map_or(0, |p| p as u32),
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
    fn the_runtimes_delete_gets_at_most_the_deadline_of_the_cleanup() {
        let rt = |delete: Duration| {
            Runtime::new(
                "runc",
                runc_driver::GlobalOpts::default(),
                Arc::new(StdMonitor),
            )
            .with_deadlines(Deadlines {
                delete,
                ..Deadlines::default()
            })
        };
        let cut = with_short_delete(rt(Duration::from_secs(120)));
        assert_eq!(cut.deadlines().delete, RUNTIME_DELETE_DEADLINE);
        assert_eq!(cut.deadlines().create, Deadlines::default().create);
        let short = Duration::from_millis(500);
        assert_eq!(with_short_delete(rt(short)).deadlines().delete, short);
    }

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
