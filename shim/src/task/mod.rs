//! The shim's core: its containers and what each request does to them. Processes, their
//! pids and statuses, and what happens when they exit are the supervisor's
//! ([`crate::supervise::Supervisor`]); this layer runs the runtime between its steps.
//!
//! Locks guard maps and small state, never work: no lock is held across a runtime call
//! or I/O, but for each container's command lock ([`serial`]), which lets one
//! state-changing runtime command run on it at a time.

mod bundle;
mod checkpoint;
mod control;
mod exec;
mod process;
mod serial;
mod teardown;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::types::mount::Mount;
use runc_driver::{CreateOpts, ExitStatus, Runtime};

use self::bundle::{persist_config, BundleConfig};
pub use self::bundle::{
    read_bundle_config, read_init_exit, read_init_pid, read_persisted_config, record_init_exit,
    runtime, InitExit,
};
pub use self::checkpoint::CheckpointSpec;
use self::checkpoint::RestoreFrom;
pub use self::exec::ExecSpec;
pub use self::process::Process;
pub use self::teardown::remove_without_runtime;
use crate::cgroups::{Cgroups, OomCount, OomKills, OomWatcher, Verdict};
use crate::error::{Error, Result};
use crate::events::{EventSink, TaskEvent};
use crate::io::{IoOwner, PendingIo, StdioPaths};
use crate::options::RuntimeConfig;
use crate::request::{ContainerId, ProcessId, Signal};
use crate::supervise::{
    Exit, Expect, Flushed, InFlight, Op, Reaper, ReaperMonitor, Status, Supervisor,
};

/// How long Delete waits for a process's output to drain before letting go of it, and
/// how long a process's exit waits for its output to reach its fifos (a client that reads
/// nothing holds neither back longer).
const IO_DRAIN: Duration = Duration::from_secs(2);
/// How long Delete of a created (never started) container waits for its init to die.
const KILLED_EXIT_WAIT: Duration = Duration::from_secs(5);

/// What Create needs, converted from the request.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub id: ContainerId,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub stdio: StdioPaths,
    pub options: Option<Any>,
    pub checkpoint: String,
    pub parent_checkpoint: String,
}

impl CreateSpec {
    /// The TaskCreate event of this container, its init at `pid` (0 when restored: the
    /// restored init's pid comes with its TaskStart).
    fn create_event(&self, pid: i32) -> TaskEvent {
        TaskEvent::Create {
            id: self.id.to_string(),
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            stdio: self.stdio.clone(),
            checkpoint: self.checkpoint.clone(),
            pid,
        }
    }
}

/// A snapshot of one process for State.
#[derive(Debug, Clone)]
pub struct ProcessView {
    pub container_id: String,
    pub exec_id: String,
    pub bundle: PathBuf,
    pub pid: i32,
    pub status: Status,
    pub stdio: StdioPaths,
}

pub struct Tasks {
    namespace: String,
    defaults: Result<RuntimeConfig>,
    reaper: Arc<Reaper>,
    events: Arc<dyn EventSink>,
    /// Guards the map of containers by id.
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Every container's processes: pids, statuses, exit routing.
    sup: Supervisor<Process>,
    /// Set by Shutdown once no container is left.
    shutdown: (Mutex<bool>, Condvar),
    /// Names containers whose memory cgroup reported an OOM.
    oom: Arc<OomWatcher>,
    /// Creates and runtime commands under way: Shutdown waits for them.
    in_flight: Arc<InFlight>,
}

pub struct Container {
    id: String,
    bundle: PathBuf,
    runtime: Runtime,
    /// The rootfs we mounted (empty when the client mounted it).
    mounted_rootfs: Option<PathBuf>,
    /// No pid namespace of its own: when init exits, the rest must be killed.
    shares_pid_ns: bool,
    /// Owner of the stdio pipes of this container's processes (IoUid/IoGid).
    io_owner: (u32, u32),
    /// The init's cgroups, found at Create or at a restoring Start (unset if they could
    /// not be read).
    cgroups: OnceLock<Cgroups>,
    /// The OOM kills already reported, which decide whether a notification is news.
    oom_kills: OomKills,
    /// Set when Create named a checkpoint: Start restores it.
    restore: Option<RestoreFrom>,
    /// One state-changing runtime command at a time; identical kills coalesced.
    serial: serial::Serial,
}

impl Tasks {
    /// Builds the core and starts the thread that routes exits from the reaper.
    /// `defaults` is the host configuration, or why it could not be read (then every
    /// Create reports that).
    pub fn new(
        namespace: String,
        defaults: Result<RuntimeConfig>,
        reaper: Arc<Reaper>,
        events: Arc<dyn EventSink>,
    ) -> std::io::Result<Arc<Tasks>> {
        let tasks = Arc::new_cyclic(|me: &Weak<Tasks>| {
            let me = me.clone();
            let hook = me.clone();
            let on_init_exit = move |id: &str, exit: &Exit| {
                if let Some(t) = hook.upgrade() {
                    t.init_exited(id, exit);
                }
            };
            let flush = |p: &Process, then: Flushed| p.flush(IO_DRAIN, then);
            Tasks {
                namespace,
                defaults,
                reaper,
                sup: Supervisor::new(Arc::clone(&events), Box::new(on_init_exit), Box::new(flush)),
                events,
                containers: Mutex::new(HashMap::new()),
                shutdown: (Mutex::new(false), Condvar::new()),
                oom: OomWatcher::new(move |id| me.upgrade().is_none_or(|t| t.oom_event(id))),
                in_flight: Arc::default(),
            }
        });
        let sub = tasks.reaper.subscribe();
        let weak = Arc::downgrade(&tasks);
        std::thread::Builder::new()
            .name("exits".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                while let Some(exit) = sub.recv() {
                    match weak.upgrade() {
                        Some(t) => t.sup.exited(exit),
                        None => return,
                    }
                }
            })?;
        Ok(tasks)
    }

    pub fn create(&self, spec: CreateSpec) -> Result<u32> {
        let _busy = self.in_flight.enter();
        let id = spec.id.as_str();
        let mut t = crate::trace::span("create", id);
        if lock(&self.containers).contains_key(id) {
            return Err(Error::already_exists(format!("container {id}")));
        }
        let defaults = self.defaults.as_ref().map_err(Error::again)?.clone();
        let mut cfg = defaults.with_request(spec.options.as_ref())?;
        let config = read_bundle_config(&spec.bundle)?;
        cfg.choose_cgroup_driver(id, config.cgroups_path())?;
        let runtime = runtime(
            &cfg,
            Some((&self.namespace, &spec.bundle)),
            Arc::new(ReaperMonitor {
                reaper: Arc::clone(&self.reaper),
                in_flight: Arc::clone(&self.in_flight),
            }),
        )?;

        crate::trace::mark(&mut t, "config");
        let rootfs_dir = spec.bundle.join("rootfs");
        crate::mounts::mount_all(&spec.rootfs, &rootfs_dir)?;
        let mounted = (!spec.rootfs.is_empty()).then(|| rootfs_dir.clone());
        let undo_mount = |e: Error| {
            if let Some(m) = &mounted {
                crate::mounts::unmount_all(m);
            }
            e
        };
        let root = config.root_path(&spec.bundle);
        if !root.is_dir() {
            return Err(undo_mount(Error::precondition(format!(
                "create {}: root filesystem {} does not exist: pass rootfs mounts or fix root.path in {}",
                spec.id,
                root.display(),
                spec.bundle.join("config.json").display()
            ))));
        }
        crate::trace::mark(&mut t, "mount");
        persist_config(&spec.bundle, &cfg).map_err(undo_mount)?;
        crate::trace::mark(&mut t, "persist");

        if !spec.checkpoint.is_empty() {
            let shares_pid_ns = !config.has_own_pid_namespace();
            return self.create_restored(&spec, &cfg, runtime, mounted, shares_pid_ns);
        }
        let (stdio, io) =
            PendingIo::prepare(&spec.stdio, self.io_owner(id, (cfg.io_uid, cfg.io_gid)))
                .map_err(undo_mount)?;
        let opts = CreateOpts {
            bundle: spec.bundle.clone(),
            // Kept in the bundle: the delete action reads it after a crash.
            pid_file: Some(spec.bundle.join(bundle::INIT_PID_FILE)),
            console_socket: io.console_socket(),
            no_pivot: cfg.no_pivot_root,
            no_new_keyring: cfg.no_new_keyring,
        };

        crate::trace::mark(&mut t, "prepare_io");
        let expect = self.sup.expect_pid();
        let created = runtime.create(id, &opts, stdio).map_err(Error::runtime);
        let (pid, io) = match created {
            Ok(pid) => match io.complete(&spec.stdio) {
                Ok(io) => (pid, io),
                Err(e) => {
                    let e = undo_mount(e);
                    return self.failed_create(&runtime, &spec, &config, expect, None, e);
                }
            },
            Err(e) => {
                let e = undo_mount(e);
                return self.failed_create(&runtime, &spec, &config, expect, Some(io), e);
            }
        };

        crate::trace::mark(&mut t, "runtime_create");
        let init = Arc::new(Process::init(id, spec.stdio.clone(), io));
        let cgroups = (self.track_cgroups(id, pid)).map_or_else(OnceLock::new, OnceLock::from);
        let oom_kills = OomKills::new(cgroups.get().map_or(OomCount::Gone, Cgroups::oom_kills));
        let container = Arc::new(Container {
            id: id.to_string(),
            bundle: spec.bundle.clone(),
            runtime,
            mounted_rootfs: mounted,
            shares_pid_ns: !config.has_own_pid_namespace(),
            io_owner: (cfg.io_uid, cfg.io_gid),
            cgroups,
            oom_kills,
            restore: None,
            serial: serial::Serial::default(),
        });
        crate::trace::mark(&mut t, "cgroups");
        lock(&self.containers).insert(id.to_string(), container);
        self.events.publish(spec.create_event(pid));
        log::info!(
            "created id={} pid={pid} runtime={}",
            spec.id,
            cfg.binary_name
        );
        self.sup.add_init(id, pid, init, expect);
        crate::trace::mark(&mut t, "publish");
        Ok(pid as u32)
    }

    /// The cgroups of init `pid` of container `id`, watched for OOM kills; None (with a
    /// warning) if they cannot be read. Found at Create, or at the Start that restored it.
    fn track_cgroups(&self, id: &str, pid: i32) -> Option<Cgroups> {
        let cg = Cgroups::of_pid(pid)
            .map_err(|e| log::warn!("no stats or OOM events for {id}: {e}"))
            .ok()?;
        if let Some((dir, unified)) = cg.memory_dir() {
            if let Err(e) = self.oom.watch(id, dir, unified) {
                log::warn!("no OOM events for {id}: watch {}: {e}", dir.display());
            }
        }
        Some(cg)
    }

    /// Undoes a create the runtime failed (or whose terminal never arrived): the runtime's
    /// `delete --force`, finished by the shim itself if it passes its deadline.
    fn failed_create(
        &self,
        runtime: &Runtime,
        spec: &CreateSpec,
        config: &BundleConfig,
        expect: Expect<'_, Process>,
        io: Option<PendingIo>,
        e: Error,
    ) -> Result<u32> {
        drop(expect);
        let id = spec.id.as_str();
        match runtime.delete(id, true) {
            Ok(()) => {}
            Err(d @ runc_driver::Error::DeadlineExceeded { .. }) => {
                teardown::remove_after_failed_create(
                    runtime,
                    id,
                    &spec.bundle,
                    config.cgroups_path(),
                    &d,
                )
            }
            Err(d) => log::debug!("cleanup after failed create id={id}: {d}"),
        }
        if let Some(io) = io {
            io.abandon();
        }
        Err(e)
    }

    fn io_owner<'a>(&'a self, id: &'a str, (uid, gid): (u32, u32)) -> IoOwner<'a> {
        IoOwner {
            uid,
            gid,
            container_id: id,
            namespace: &self.namespace,
        }
    }

    pub fn start(&self, p: &ProcessId) -> Result<u32> {
        let (id, exec_id) = (p.id(), p.exec_id());
        let c = self.container(id)?;
        if !exec_id.is_empty() {
            return self.start_exec(&c, exec_id);
        }
        if let Some(from) = &c.restore {
            return self.start_restore(&c, from);
        }
        let mut t = crate::trace::span("start", id);
        let start = self.sup.begin_start(id, "")?;
        c.runtime.start(id).map_err(Error::runtime)?;
        crate::trace::mark(&mut t, "runtime_start");
        if let Some(Err(e)) = c.cgroups.get().map(Cgroups::enable_controllers) {
            log::warn!("enable cgroup controllers above container {id}: {e}");
        }
        crate::trace::mark(&mut t, "controllers");
        let pid = start.started(None) as u32;
        crate::trace::mark(&mut t, "started");
        Ok(pid)
    }

    pub fn delete(&self, p: &ProcessId) -> Result<(u32, Exit)> {
        let (id, exec_id) = (p.id(), p.exec_id());
        let c = self.container(id)?;
        if !exec_id.is_empty() {
            return self.delete_exec(&c, exec_id);
        }
        let mut t = crate::trace::span("delete", id);
        // An init reaped a moment ago: its exit is made final (and published) first.
        self.sup.settle(id, "", IO_DRAIN)?;
        let op = c.serial.lock();
        let init = self.sup.check(id, "", Op::Delete)?;
        match c.runtime.delete(id, true) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            // A hung runtime must not keep a forced delete from finishing.
            Err(e @ runc_driver::Error::DeadlineExceeded { .. }) => {
                self.delete_without_runtime(&c, Error::runtime(e))?
            }
            Err(e) => return Err(Error::runtime(e)),
        }
        crate::trace::mark(&mut t, "runtime_delete");
        drop(op);
        let pid = init.pid;
        let exit = match init.status {
            Status::Stopped(e) => e,
            // Created from a checkpoint and never restored: no process ever ran.
            _ if pid == 0 => Exit {
                pid,
                status: ExitStatus::killed(libc::SIGKILL),
                at: SystemTime::now(),
            },
            // delete --force killed the init of a container that never started.
            _ => self
                .sup
                .wait_timeout(id, "", KILLED_EXIT_WAIT)?
                .unwrap_or(Exit {
                    pid,
                    status: ExitStatus::killed(Signal::KILL.number()),
                    at: SystemTime::now(),
                }),
        };
        crate::trace::mark(&mut t, "exit");
        if let Some(root) = &c.mounted_rootfs {
            crate::mounts::unmount_all(root);
        }
        crate::trace::mark(&mut t, "unmount");
        if let Some(io) = init.process.take_io() {
            io.finish(IO_DRAIN);
        }
        crate::trace::mark(&mut t, "io_drain");
        self.oom.unwatch(id);
        lock(&self.containers).remove(id);
        self.sup.remove_container(id);
        self.events.publish(TaskEvent::Delete {
            id: id.to_string(),
            pid,
            status: exit.status,
            at: exit.at,
        });
        log::info!("deleted id={id} pid={pid} exit_status={}", exit.status);
        crate::trace::mark(&mut t, "publish");
        crate::sys::release_free_memory();
        crate::trace::mark(&mut t, "trim");
        Ok((pid as u32, exit))
    }

    /// Stats: the container's cgroup metrics.
    pub fn stats(&self, id: &ContainerId) -> Result<Any> {
        let c = self.container(id.as_str())?;
        let cg = c.cgroups.get().ok_or_else(|| {
            Error::internal(format!(
                "stats of container {id}: its cgroups could not be read (see the shim log)"
            ))
        })?;
        cg.metrics()
            .map_err(|e| Error::io(format_args!("stats of container {id}"), e))
    }

    /// The OOM watcher saw an event in container `id`'s memory cgroup; false asks it to
    /// look again shortly (the kill is not counted yet).
    fn oom_event(&self, id: &str) -> bool {
        let Ok(c) = self.container(id) else {
            return true;
        };
        let Some(now) = c.cgroups.get().map(Cgroups::oom_kills) else {
            return true;
        };
        match c.oom_kills.notified(now, || self.publish_oom(&c, now)) {
            Verdict::Publish => true,
            Verdict::LookAgain => false,
            Verdict::Done => {
                log::debug!("oom notification id={id} count={now:?}: nothing new");
                true
            }
        }
    }

    /// Publishes TaskOOM if the kernel killed a process in the container's cgroup since
    /// the last one. Called before the init's exit is handled, so that an OOM that killed
    /// the init comes before its TaskExit.
    fn report_oom(&self, c: &Container) {
        if let Some(cg) = c.cgroups.get() {
            let now = cg.oom_kills();
            c.oom_kills.exited(now, || self.publish_oom(c, now));
        }
    }

    fn publish_oom(&self, c: &Container, count: OomCount) {
        self.events.publish(TaskEvent::Oom { id: c.id.clone() });
        log::info!("oom id={} count={count:?}", c.id);
    }

    /// Shutdown: the shim may exit once it has no container left, and no Create or
    /// runtime command is under way (it waits for those: their runtime processes would
    /// die with the shim, halfway).
    pub fn shutdown(&self) -> bool {
        self.in_flight.wait_idle();
        if !lock(&self.containers).is_empty() {
            return false;
        }
        let (m, cv) = &self.shutdown;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        true
    }

    /// Blocks until [`Tasks::shutdown`] succeeded.
    pub fn wait_shutdown(&self) {
        let (m, cv) = &self.shutdown;
        let mut done = m.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        lock(&self.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::no_such(format!("container {id}")))
    }

    /// The supervisor routed the init's exit: it is recorded in the bundle (for `delete`
    /// if this shim dies), an OOM that killed it is reported before its TaskExit, and a
    /// container sharing the host's pid namespace is emptied.
    fn init_exited(&self, id: &str, exit: &Exit) {
        if let Ok(c) = self.container(id) {
            let record = InitExit {
                pid: exit.pid as u32,
                status: exit.status.get(),
                at: exit.at,
            };
            if let Err(e) = record_init_exit(&c.bundle, &record) {
                log::warn!("{e}: a delete after this shim dies will report status 137");
            }
            self.report_oom(&c);
            self.after_init_exit(&c);
        }
    }

    /// A container without its own pid namespace leaves its other processes behind.
    fn after_init_exit(&self, c: &Arc<Container>) {
        if !c.shares_pid_ns {
            return;
        }
        let c = Arc::clone(c);
        let id = c.id.clone();
        let spawned = std::thread::Builder::new()
            .name("kill-all".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let kill = Signal::KILL.number() as u32;
                let killed = c.serial.kill((kill, true), || {
                    c.runtime.kill(&id, kill, true).map_err(Error::runtime)
                });
                if let Err(e) = killed {
                    log::debug!("kill --all after init exit id={id}: {e}");
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start kill --all thread: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
