//! Checkpoint and restore with CRIU, through the runtime's `checkpoint` and `restore`.
//!
//! Checkpoint dumps a running or paused container's processes into the image directory
//! the request names, with the request's `containerd.runc.v1.CheckpointOptions`; a
//! container that is not told to exit goes on as it was (a paused one stays paused).
//! Restore is a Create that names a checkpoint: the container is recorded without a
//! process, and its Start runs `restore` instead of `start`, with the request's stdio,
//! so that the restored init becomes the container's init with its memory and open files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::CheckpointOptions;
use runc_driver::checkpoint::{criu_log_errors, CGROUPS_MODES, QUOTED_ERRORS};
use runc_driver::{CheckpointOpts, CriuOpts, RestoreOpts, Runtime};

use super::{Container, CreateSpec, Process, Tasks};
use crate::cgroups::{OomCount, OomKills};
use crate::error::{Error, Result};
use crate::events::TaskEvent;
use crate::io::PendingIo;
use crate::options::RuntimeConfig;
use crate::supervise::Status;

/// The type of the options containerd sends with a Checkpoint.
pub const CHECKPOINT_OPTIONS_NAME: &str = "containerd.runc.v1.CheckpointOptions";

/// What Checkpoint needs, converted from the request.
#[derive(Debug, Clone, Default)]
pub struct CheckpointSpec {
    pub id: String,
    /// Where containerd wants the images (its temporary directory, or the client's path).
    pub path: String,
    pub options: Option<Any>,
}

/// What a Create that names a checkpoint keeps for its Start.
#[derive(Debug, Clone)]
pub struct RestoreFrom {
    image: PathBuf,
    parent: Option<PathBuf>,
    /// Where CRIU writes `restore.log`; kept, as containerd's Go shim keeps it.
    work: PathBuf,
    no_pivot: bool,
}

impl Tasks {
    /// Checkpoint: dumps container `spec.id` with CRIU, then publishes TaskCheckpointed.
    pub fn checkpoint(&self, spec: CheckpointSpec) -> Result<()> {
        let c = self.container(&spec.id)?;
        let status = self.sup.view(&spec.id, "")?.status;
        if !matches!(status, Status::Running | Status::Paused) {
            return Err(Error::precondition(format!(
                "cannot checkpoint container {}: it is {}",
                spec.id,
                status.name()
            )));
        }
        let opts = decode_options(&spec.id, spec.options.as_ref())?;
        // containerd passes the client's image path as `path` for runtimes it knows as
        // runc's; for other names it passes a directory of its own and the client's path
        // only in the options, where the client asked for it.
        let image = if opts.image_path.is_empty() {
            spec.path.clone()
        } else {
            opts.image_path.clone()
        };
        if image.is_empty() {
            return Err(Error::invalid(format!(
                "checkpoint container {}: the request names no image path",
                spec.id
            )));
        }
        let (work, keep_work) = if opts.work_path.is_empty() {
            (default_work_dir(&c.bundle).join("criu-work"), false)
        } else {
            (PathBuf::from(&opts.work_path), true)
        };
        let o = checkpoint_opts(&opts, PathBuf::from(&image), work.clone())?;
        // runc makes both directories; crun expects them.
        for dir in [Path::new(&image), work.as_path()] {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::io(
                    format_args!("checkpoint {}: create {}", spec.id, dir.display()),
                    e,
                )
            })?;
        }
        log::info!(
            "checkpoint id={} image={image} exit={} work={}",
            spec.id,
            opts.exit,
            work.display()
        );
        // A state-changing runtime command: none other runs on the container meanwhile.
        let op = c.serial.lock();
        let dumped = c.runtime.checkpoint(&spec.id, &o);
        drop(op);
        let result = match dumped {
            Ok(()) => Ok(()),
            Err(e) => Err(criu_failure(
                &format!("checkpoint container {}", spec.id),
                Error::runtime(e),
                &work.join("dump.log"),
                &c.bundle.join("criu-dump.log"),
            )),
        };
        if !keep_work {
            let _ = std::fs::remove_dir_all(&work);
        }
        result?;
        self.events.publish(TaskEvent::Checkpointed {
            id: spec.id.clone(),
            checkpoint: image,
        });
        Ok(())
    }

    /// The end of a Create that names a checkpoint: the container is recorded with an
    /// init that has no pid yet; Start restores it ([`Tasks::start_restore`]).
    pub(super) fn create_restored(
        &self,
        spec: &CreateSpec,
        cfg: &RuntimeConfig,
        runtime: Runtime,
        mounted_rootfs: Option<PathBuf>,
        shares_pid_ns: bool,
    ) -> Result<u32> {
        let work = if cfg.criu_work_path.is_empty() {
            default_work_dir(&spec.bundle)
        } else {
            PathBuf::from(&cfg.criu_work_path)
        };
        let restore = RestoreFrom {
            image: PathBuf::from(&spec.checkpoint),
            parent: (!spec.parent_checkpoint.is_empty())
                .then(|| PathBuf::from(&spec.parent_checkpoint)),
            work,
            no_pivot: cfg.no_pivot_root,
        };
        let container = Arc::new(Container {
            id: spec.id.to_string(),
            bundle: spec.bundle.clone(),
            runtime,
            mounted_rootfs,
            shares_pid_ns,
            io_owner: (cfg.io_uid, cfg.io_gid),
            cgroups: OnceLock::new(),
            oom_kills: OomKills::new(OomCount::Gone),
            restore: Some(restore),
            serial: super::serial::Serial::default(),
        });
        let expect = self.sup.expect_pid();
        let id = spec.id.as_str();
        let init = Arc::new(Process::pending_init(id, spec.stdio.clone()));
        super::lock(&self.containers).insert(id.to_string(), container);
        self.events.publish(spec.create_event(0));
        log::info!(
            "created id={} from checkpoint {} runtime={}",
            spec.id,
            spec.checkpoint,
            cfg.binary_name
        );
        self.sup.add_init(id, 0, init, expect);
        Ok(0)
    }

    /// Start of a container created from a checkpoint: `restore --detach` with the
    /// init's stdio. A failed restore leaves no container behind in the runtime.
    pub(super) fn start_restore(&self, c: &Container, from: &RestoreFrom) -> Result<u32> {
        let p = self.sup.view(&c.id, "")?.process;
        std::fs::create_dir_all(&from.work).map_err(|e| {
            Error::io(
                format_args!("restore {}: create {}", c.id, from.work.display()),
                e,
            )
        })?;
        let start = self.sup.begin_start(&c.id, "")?;
        let (stdio, io) = PendingIo::prepare(&p.stdio, self.io_owner(&c.id, c.io_owner))?;
        let pid_file = c.bundle.join(super::bundle::INIT_PID_FILE);
        let o = RestoreOpts {
            criu: CriuOpts {
                image_path: from.image.clone(),
                work_path: Some(from.work.clone()),
                parent_path: from.parent.clone(),
                shell_job: false,
                ..Default::default()
            },
            bundle: c.bundle.clone(),
            pid_file: Some(pid_file.clone()),
            console_socket: io.console_socket(),
            no_pivot: from.no_pivot,
        };
        log::info!("restore id={} image={}", c.id, from.image.display());
        let mut io = Some(io);
        let restored = c
            .runtime
            .restore(&c.id, &o, stdio)
            .map_err(|e| {
                criu_failure(
                    &format!("restore container {}", c.id),
                    Error::runtime(e),
                    &from.work.join("restore.log"),
                    &c.bundle.join("criu-restore.log"),
                )
            })
            .and_then(|pid| {
                if let Some(io) = io.take() {
                    p.set_io(io.complete(&p.stdio)?);
                }
                Ok(pid)
            });
        match restored {
            Ok(pid) => {
                if let Some(cg) = self.track_cgroups(&c.id, pid) {
                    let _ = c.cgroups.set(cg);
                }
                Ok(start.started(Some(pid)) as u32)
            }
            Err(e) => {
                drop(start);
                if let Some(io) = io {
                    io.abandon();
                }
                if let Err(d) = c.runtime.delete(&c.id, true) {
                    log::debug!("cleanup after failed restore id={}: {d}", c.id);
                }
                Err(e)
            }
        }
    }
}

/// The request's options, or the defaults (leave running, nothing allowed) without any.
fn decode_options(id: &str, any: Option<&Any>) -> Result<CheckpointOptions> {
    let Some(any) = any.filter(|a| !a.type_url.is_empty() || !a.value.is_empty()) else {
        return Ok(CheckpointOptions::default());
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != CHECKPOINT_OPTIONS_NAME {
        return Err(Error::invalid(format!(
            "checkpoint container {id}: options of type {:?}, expected {CHECKPOINT_OPTIONS_NAME}",
            any.type_url
        )));
    }
    CheckpointOptions::parse_from_bytes(&any.value).map_err(|e| {
        Error::invalid(format!(
            "checkpoint container {id}: malformed {CHECKPOINT_OPTIONS_NAME}: {e}"
        ))
    })
}

/// The runtime's checkpoint options from containerd's.
fn checkpoint_opts(o: &CheckpointOptions, image: PathBuf, work: PathBuf) -> Result<CheckpointOpts> {
    let cgroups_mode = match o.cgroups_mode.as_str() {
        "" => None,
        m if CGROUPS_MODES.contains(&m) => Some(m.to_string()),
        m => {
            return Err(Error::invalid(format!(
                "checkpoint: unknown cgroups mode {m:?}: expected one of {}",
                CGROUPS_MODES.join(", ")
            )))
        }
    };
    Ok(CheckpointOpts {
        criu: CriuOpts {
            image_path: image,
            work_path: Some(work),
            parent_path: None,
            tcp_established: o.open_tcp,
            ext_unix_sk: o.external_unix_sockets,
            shell_job: o.terminal,
            file_locks: o.file_locks,
            cgroups_mode,
            empty_namespaces: o.empty_namespaces.clone(),
        },
        leave_running: !o.exit,
    })
}

/// containerd's work directory for the task (the bundle's `work` link), else the bundle.
fn default_work_dir(bundle: &Path) -> PathBuf {
    let work = bundle.join("work");
    if work.is_dir() {
        work
    } else {
        bundle.to_path_buf()
    }
}

/// A failed dump or restore: the runtime's error, where CRIU's log was kept (copied
/// to `keep`, since the work directory may go) and its last error lines.
fn criu_failure(what: &str, e: Error, log: &Path, keep: &Path) -> Error {
    // The runtime's message often spans lines (runc: "criu failed: ...\nlog file: ...").
    if e.code() == containerd_shim_protos::ttrpc::Code::NOT_FOUND {
        return e;
    }
    let message = e.to_string();
    let first = message.lines().next().unwrap_or_default().to_string();
    let kept = match std::fs::copy(log, keep) {
        Ok(_) => keep,
        Err(err) if log.exists() => {
            log::debug!(
                "{what}: copy {} to {}: {err}",
                log.display(),
                keep.display()
            );
            log
        }
        // The runtime failed before CRIU ran (or cannot checkpoint at all).
        Err(_) => return Error::internal(format!("{what}: {first}")),
    };
    let errors = criu_log_errors(kept, QUOTED_ERRORS);
    let quoted = if errors.is_empty() {
        String::from("no error lines")
    } else {
        errors.join(" | ")
    };
    Error::internal(format!(
        "{what}: {first}; CRIU log {}: {quoted}",
        kept.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    fn any(name: &str, o: &CheckpointOptions) -> Any {
        Any {
            type_url: format!("types.containerd.io/{name}"),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn no_options_leave_the_container_running() {
        let o = decode_options("c1", None).unwrap();
        let r = checkpoint_opts(&o, "/img".into(), "/w".into()).unwrap();
        assert!(r.leave_running);
        assert_eq!(r.criu.work_path.as_deref(), Some(Path::new("/w")));
        assert!(!r.criu.tcp_established && !r.criu.shell_job && r.criu.cgroups_mode.is_none());
    }

    #[test]
    fn every_option_reaches_the_runtime() {
        let sent = CheckpointOptions {
            exit: true,
            open_tcp: true,
            external_unix_sockets: true,
            terminal: true,
            file_locks: true,
            empty_namespaces: vec!["network".into()],
            cgroups_mode: "soft".into(),
            ..Default::default()
        };
        let o = decode_options("c1", Some(&any(CHECKPOINT_OPTIONS_NAME, &sent))).unwrap();
        let r = checkpoint_opts(&o, "/img".into(), "/w".into()).unwrap();
        assert!(!r.leave_running);
        let c = &r.criu;
        assert!(c.tcp_established && c.ext_unix_sk && c.shell_job && c.file_locks);
        assert_eq!(c.empty_namespaces, ["network"]);
        assert_eq!(c.cgroups_mode.as_deref(), Some("soft"));
    }

    #[test]
    fn a_bad_cgroups_mode_or_options_type_is_invalid() {
        let o = CheckpointOptions {
            cgroups_mode: "bogus".into(),
            ..Default::default()
        };
        let e = checkpoint_opts(&o, "/i".into(), "/w".into()).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("\"bogus\""), "{e}");
        let e = decode_options("c1", Some(&any("containerd.runc.v1.Options", &o))).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains(CHECKPOINT_OPTIONS_NAME), "{e}");
    }

    #[test]
    fn a_failure_names_the_kept_log_and_quotes_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        std::fs::write(
            &log,
            "(00.1) Info x\n(00.2) Error (criu/a.c:1): first\n(00.3) Error (criu/b.c:2): Dumping FAILED.\n",
        )
        .unwrap();
        let keep = dir.path().join("criu-dump.log");
        let e = criu_failure(
            "checkpoint container c1",
            Error::internal("runc checkpoint c1 failed (exit status 1): criu failed: type DUMP errno 0\nlog file: /w/dump.log"),
            &log,
            &keep,
        );
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint container c1: runc checkpoint c1 failed (exit status 1): criu failed: type DUMP errno 0; \
                 CRIU log {}: Error (criu/a.c:1): first | Error (criu/b.c:2): Dumping FAILED.",
                keep.display()
            )
        );
        assert!(keep.exists());
    }

    #[test]
    fn a_failure_before_criu_ran_names_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let e = criu_failure(
            "checkpoint container c1",
            Error::internal("youki checkpoint c1 failed (exit status 2): error: unrecognized subcommand 'checkpoint'"),
            &dir.path().join("dump.log"),
            &dir.path().join("criu-dump.log"),
        );
        assert_eq!(
            e.to_string(),
            "checkpoint container c1: youki checkpoint c1 failed (exit status 2): error: unrecognized subcommand 'checkpoint'"
        );
    }
}
