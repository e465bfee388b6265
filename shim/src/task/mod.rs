//! The shim's core: its containers, their processes, and what happens when they exit.
//!
//! Locks guard maps and small state, never work: no lock is held across a runtime call
//! or I/O. Events are queued (not sent) while a process's state lock is held, which is
//! what orders TaskStart before that process's TaskExit.

mod bundle;
mod exec;
mod process;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::types::mount::Mount;
use runc_driver::{CreateOpts, GlobalOpts, Runtime};

pub use self::bundle::read_persisted_config;
use self::bundle::{persist_config, read_bundle_config, read_pid, resolve_binary};
pub use self::exec::ExecSpec;
pub use self::process::Process;
use self::state::{ExitInfo, Op, Status};
use crate::cgroups::{Cgroups, OomCount, OomKills, OomWatcher, Verdict};
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::io::{IoOwner, PendingIo, StdioPaths};
use crate::options::RuntimeConfig;
use crate::supervise::{Exit, Reaper, ReaperWaiter};

/// How long Delete waits for a process's output to drain before letting go of it.
const IO_DRAIN: Duration = Duration::from_secs(2);
/// How long Delete of a created (never started) container waits for its init to die.
const KILLED_EXIT_WAIT: Duration = Duration::from_secs(5);

/// What Create needs, converted from the request.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub stdio: StdioPaths,
    pub options: Option<Any>,
    pub checkpoint: String,
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
    /// Guards exit routing (see [`Routes`]).
    routes: Mutex<Routes>,
    /// Set by Shutdown once no container is left.
    shutdown: (Mutex<bool>, Condvar),
    /// Names containers whose memory cgroup reported an OOM.
    oom: Arc<OomWatcher>,
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
    init: Arc<Process>,
    /// Guards the execs and the init exit held back for them. Lock order: this before
    /// any process's state lock.
    execs: Mutex<ExecTable>,
    /// The init's cgroups, found at Create (None if they could not be read).
    cgroups: Option<Cgroups>,
    /// The OOM kills already reported, which decide whether a notification is news.
    oom_kills: OomKills,
}

#[derive(Default)]
struct ExecTable {
    by_id: HashMap<String, Arc<Process>>,
    /// The init's exit, published once no exec is left running: every exec's TaskExit
    /// comes before the init's.
    held_init_exit: Option<ExitInfo>,
}

/// Which pid belongs to which process, and exits no process claimed yet.
#[derive(Default)]
struct Routes {
    by_pid: HashMap<i32, Arc<Process>>,
    /// Creates and execs whose pid is not recorded yet. While any is pending, an exit
    /// nobody claims may be theirs and is kept in `early`.
    pending: usize,
    early: Vec<Exit>,
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
            Tasks {
                namespace,
                defaults,
                reaper,
                events,
                containers: Mutex::new(HashMap::new()),
                routes: Mutex::new(Routes::default()),
                shutdown: (Mutex::new(false), Condvar::new()),
                oom: OomWatcher::new(move |id| me.upgrade().is_none_or(|t| t.oom_event(id))),
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
                        Some(t) => t.route_exit(exit),
                        None => return,
                    }
                }
            })?;
        Ok(tasks)
    }

    pub fn create(&self, spec: CreateSpec) -> Result<u32> {
        validate_id(&spec.id)?;
        if lock(&self.containers).contains_key(&spec.id) {
            return Err(Error::already_exists(format!(
                "container {} already exists",
                spec.id
            )));
        }
        if !spec.checkpoint.is_empty() {
            return Err(Error::unimplemented(format!(
                "create {}: restoring from a checkpoint is not supported",
                spec.id
            )));
        }
        let mut cfg = self.defaults.clone()?.with_request(spec.options.as_ref())?;
        let binary = resolve_binary(&cfg)?;
        let config = read_bundle_config(&spec.bundle)?;
        cfg.choose_cgroup_driver(&spec.id, config.cgroups_path())?;

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
            return Err(undo_mount(Error::failed_precondition(format!(
                "create {}: root filesystem {} does not exist: pass rootfs mounts or fix root.path in {}",
                spec.id,
                root.display(),
                spec.bundle.join("config.json").display()
            ))));
        }
        persist_config(&spec.bundle, &cfg).map_err(undo_mount)?;

        let runtime = Runtime::new(
            binary,
            GlobalOpts {
                root: Some(cfg.root_for(&self.namespace)),
                log: Some(spec.bundle.join("log.json")),
                systemd_cgroup: cfg.uses_systemd_cgroup(),
            },
            Arc::new(ReaperWaiter(Arc::clone(&self.reaper))),
        );
        let (stdio, io) = PendingIo::prepare(
            &spec.stdio,
            self.io_owner(&spec.id, (cfg.io_uid, cfg.io_gid)),
        )
        .map_err(undo_mount)?;
        let pid_file = spec.bundle.join("init.pid");
        let opts = CreateOpts {
            bundle: spec.bundle.clone(),
            pid_file: Some(pid_file.clone()),
            console_socket: io.console_socket(),
            no_pivot: cfg.no_pivot_root,
            no_new_keyring: cfg.no_new_keyring,
        };

        let pending = self.begin_pending();
        let created = runtime
            .create(&spec.id, &opts, stdio)
            .map_err(Error::runtime)
            .and_then(|()| read_pid(&pid_file));
        let (pid, io) = match created {
            Ok(pid) => match io.complete(&spec.stdio) {
                Ok(io) => (pid, io),
                Err(e) => {
                    return self.failed_create(&runtime, &spec.id, pending, None, undo_mount(e))
                }
            },
            Err(e) => {
                return self.failed_create(&runtime, &spec.id, pending, Some(io), undo_mount(e))
            }
        };

        let init = Arc::new(Process::init(&spec.id, spec.stdio.clone(), pid, io));
        let cgroups = Cgroups::of_pid(pid)
            .map_err(|e| log::warn!("no stats or OOM events for {}: {e}", spec.id))
            .ok();
        let oom_kills = OomKills::new(cgroups.as_ref().map_or(OomCount::Gone, Cgroups::oom_kills));
        if let Some((dir, unified)) = cgroups.as_ref().and_then(Cgroups::memory_dir) {
            if let Err(e) = self.oom.watch(&spec.id, dir, unified) {
                log::warn!(
                    "no OOM events for {}: watch {}: {e}",
                    spec.id,
                    dir.display()
                );
            }
        }
        let container = Arc::new(Container {
            id: spec.id.clone(),
            bundle: spec.bundle.clone(),
            runtime,
            mounted_rootfs: mounted,
            shares_pid_ns: !config.has_own_pid_namespace(),
            io_owner: (cfg.io_uid, cfg.io_gid),
            init: Arc::clone(&init),
            execs: Mutex::new(ExecTable::default()),
            cgroups,
            oom_kills,
        });
        lock(&self.containers).insert(spec.id.clone(), container);
        self.events.publish(Box::new(TaskCreate {
            container_id: spec.id.clone(),
            bundle: spec.bundle.display().to_string(),
            rootfs: spec.rootfs.clone(),
            io: MessageField::some(task_io(&spec.stdio)),
            checkpoint: spec.checkpoint.clone(),
            pid: pid as u32,
            ..Default::default()
        }));
        log::info!(
            "created id={} pid={pid} runtime={}",
            spec.id,
            cfg.binary_name
        );
        let early = self.claim_pid(pid, &init);
        drop(pending);
        if let Some(exit) = early {
            self.process_exited(&init, exit);
        }
        Ok(pid as u32)
    }

    /// Undoes a create the runtime failed (or whose terminal never arrived).
    fn failed_create(
        &self,
        runtime: &Runtime,
        id: &str,
        pending: Pending<'_>,
        io: Option<PendingIo>,
        e: Error,
    ) -> Result<u32> {
        drop(pending);
        if let Err(d) = runtime.delete(id, true) {
            log::debug!("cleanup after failed create id={id}: {d}");
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

    pub fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        p.resize(clamp(height), clamp(width))
    }

    pub fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        if !exec_id.is_empty() {
            return self.start_exec(&c, &p);
        }
        {
            let mut st = p.lock();
            st.status.after(Op::Start, &format!("container {id}"))?;
            st.starting = true;
        }
        let result = c.runtime.start(id).map_err(Error::runtime);
        let mut st = p.lock();
        st.starting = false;
        let pending_exit = st.pending_exit.take();
        if result.is_ok() {
            st.status = Status::Running;
            self.events.publish(Box::new(TaskStart {
                container_id: id.to_string(),
                pid: st.pid as u32,
                ..Default::default()
            }));
            log::info!("started id={id} pid={}", st.pid);
        }
        let pid = st.pid as u32;
        drop(st);
        // It exited while starting: its TaskExit goes out now, after the TaskStart queued
        // above, through the same path as any exit (which also cleans up after an init).
        if let Some(exit) = pending_exit {
            self.process_exited(&p, exit);
        }
        result.map(|()| pid)
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        let stopped = matches!(p.lock().status, Status::Stopped(_));
        if stopped && !all {
            return Err(Error::not_found(format!(
                "process already finished: container {id} has exited"
            )));
        }
        if !exec_id.is_empty() {
            return exec::signal(&p, signal);
        }
        match c.runtime.kill(id, signal, all) {
            Ok(()) => Ok(()),
            // `kill --all` after init exited reaches whatever is left, or nothing.
            Err(e) if stopped => {
                log::debug!("kill --all after exit id={id}: {e}");
                Ok(())
            }
            Err(e) => Err(Error::runtime(e)),
        }
    }

    pub fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let c = self.container(id)?;
        if !exec_id.is_empty() {
            return self.delete_exec(&c, exec_id);
        }
        let status = p_status(&c.init);
        status.after(Op::Delete, &format!("container {id}"))?;
        if let Err(e) = c.runtime.delete(id, true) {
            if !e.is_not_found() {
                return Err(Error::runtime(e));
            }
        }
        let exit = match status {
            Status::Stopped(e) => e,
            // delete --force killed the init of a container that never started.
            _ => c.init.wait_timeout(KILLED_EXIT_WAIT).unwrap_or(ExitInfo {
                status: 128 + libc::SIGKILL as u32,
                at: SystemTime::now(),
            }),
        };
        if let Some(root) = &c.mounted_rootfs {
            crate::mounts::unmount_all(root);
        }
        if let Some(io) = c.init.take_io() {
            io.finish(IO_DRAIN);
        }
        let pid = c.init.pid();
        self.oom.unwatch(id);
        lock(&self.containers).remove(id);
        lock(&self.routes).by_pid.remove(&pid);
        self.events.publish(Box::new(TaskDelete {
            container_id: id.to_string(),
            pid: pid as u32,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            id: id.to_string(),
            ..Default::default()
        }));
        log::info!("deleted id={id} pid={pid} exit_status={}", exit.status);
        crate::sys::release_free_memory();
        Ok((pid as u32, exit))
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.pause_or_resume(id, Op::Pause)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.pause_or_resume(id, Op::Resume)
    }

    fn pause_or_resume(&self, id: &str, op: Op) -> Result<()> {
        let c = self.container(id)?;
        p_status(&c.init).after(op, &format!("container {id}"))?;
        match op {
            Op::Pause => c.runtime.pause(id),
            _ => c.runtime.resume(id),
        }
        .map_err(Error::runtime)?;
        let mut st = c.init.lock();
        if let Ok(next) = st.status.after(op, id) {
            st.status = next;
        }
        if op == Op::Pause {
            self.events.publish(Box::new(TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            }));
        } else {
            self.events.publish(Box::new(TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            }));
        }
        log::info!("{op} done id={id}");
        Ok(())
    }

    /// Update: hands the container's new resources (an OCI LinuxResources JSON object)
    /// to the runtime's `update`.
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let c = self.container(id)?;
        p_status(&c.init).after(Op::Update, &format!("container {id}"))?;
        match serde_json::from_slice::<serde_json::Value>(resources) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(Error::invalid(format!(
                "update of container {id}: the resources are not an OCI LinuxResources JSON object"
            )))
            }
        }
        // One file per call, so that concurrent updates do not see each other's.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = c.bundle.join(format!("rsrunc-update-{n}.json"));
        std::fs::write(&file, resources)
            .map_err(|e| Error::io(format_args!("write {}", file.display()), e))?;
        let result = c.runtime.update(id, &file).map_err(Error::runtime);
        let _ = std::fs::remove_file(&file);
        result?;
        log::info!("update done id={id}");
        Ok(())
    }

    /// Stats: the container's cgroup metrics.
    pub fn stats(&self, id: &str) -> Result<Any> {
        let c = self.container(id)?;
        let cg = c.cgroups.as_ref().ok_or_else(|| {
            Error::unknown(format!(
                "stats of container {id}: its cgroups could not be read at create (see the shim log)"
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
        let Some(now) = c.cgroups.as_ref().map(Cgroups::oom_kills) else {
            return true;
        };
        match c.oom_kills.notified(now) {
            Verdict::Publish => self.publish_oom(&c, now),
            Verdict::LookAgain => return false,
            Verdict::Done => log::debug!("oom notification id={id} count={now:?}: nothing new"),
        }
        true
    }

    /// Publishes TaskOOM if the kernel killed a process in the container's cgroup since
    /// the last one. Called before the init's exit is handled, so that an OOM that killed
    /// the init comes before its TaskExit.
    fn report_oom(&self, c: &Container) {
        if let Some(cg) = &c.cgroups {
            let now = cg.oom_kills();
            if c.oom_kills.exited(now) {
                self.publish_oom(c, now);
            }
        }
    }

    fn publish_oom(&self, c: &Container, count: OomCount) {
        self.events.publish(Box::new(TaskOOM {
            container_id: c.id.clone(),
            ..Default::default()
        }));
        log::info!("oom id={} count={count:?}", c.id);
    }

    pub fn state(&self, id: &str, exec_id: &str) -> Result<ProcessView> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        let st = p.lock();
        Ok(ProcessView {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            bundle: c.bundle.clone(),
            pid: st.pid,
            status: st.status,
            stdio: p.stdio.clone(),
        })
    }

    pub fn wait(&self, id: &str, exec_id: &str) -> Result<ExitInfo> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        Ok(p.wait())
    }

    /// Every pid in the container, with the exec id of those that belong to an exec.
    pub fn pids(&self, id: &str) -> Result<Vec<(u32, Option<String>)>> {
        let c = self.container(id)?;
        let pids = c.runtime.ps(id).map_err(Error::runtime)?;
        let execs: HashMap<i32, String> = lock(&c.execs)
            .by_id
            .values()
            .map(|e| (e.pid(), e.exec_id.clone()))
            .filter(|(pid, _)| *pid > 0)
            .collect();
        Ok(pids
            .into_iter()
            .map(|p| (p as u32, execs.get(&p).cloned()))
            .collect())
    }

    pub fn close_io(&self, id: &str, exec_id: &str) -> Result<()> {
        let c = self.container(id)?;
        c.process(exec_id)?.close_stdin();
        Ok(())
    }

    /// The init pid of `id`, for Connect.
    pub fn init_pid(&self, id: &str) -> Result<u32> {
        Ok(self.container(id)?.init.pid() as u32)
    }

    /// Shutdown: the shim may exit once it has no container left.
    pub fn shutdown(&self) -> bool {
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
            .ok_or_else(|| Error::not_found(format!("container {id} not found in this shim")))
    }

    fn begin_pending(&self) -> Pending<'_> {
        lock(&self.routes).pending += 1;
        Pending(self)
    }

    /// Records that `pid` is `p`'s; returns its exit if it already happened.
    fn claim_pid(&self, pid: i32, p: &Arc<Process>) -> Option<ExitInfo> {
        let mut r = lock(&self.routes);
        if let Some(i) = r.early.iter().position(|e| e.pid == pid) {
            let e = r.early.remove(i);
            return Some(ExitInfo {
                status: e.status,
                at: e.at,
            });
        }
        r.by_pid.insert(pid, Arc::clone(p));
        None
    }

    fn route_exit(&self, exit: Exit) {
        let p = {
            let mut r = lock(&self.routes);
            match r.by_pid.remove(&exit.pid) {
                Some(p) => p,
                None => {
                    if r.pending > 0 {
                        r.keep_early(exit);
                    }
                    return;
                }
            }
        };
        self.process_exited(
            &p,
            ExitInfo {
                status: exit.status,
                at: exit.at,
            },
        );
    }

    fn process_exited(&self, p: &Arc<Process>, exit: ExitInfo) {
        {
            let mut st = p.lock();
            if st.starting {
                // Start publishes TaskStart first, then this exit.
                st.pending_exit = Some(exit);
                return;
            }
        }
        let Ok(c) = self.container(&p.container_id) else {
            // Deleted meanwhile (a created container's init killed by Delete).
            self.set_exited(p, &mut p.lock(), exit);
            return;
        };
        if p.exec_id.is_empty() {
            self.init_exited(&c, exit);
        } else {
            self.set_exited(p, &mut p.lock(), exit);
            self.release_held_init_exit(&c);
        }
    }

    /// Publishes the init's exit now, or holds it until the last exec has exited.
    fn init_exited(&self, c: &Arc<Container>, exit: ExitInfo) {
        self.report_oom(c);
        {
            let mut t = lock(&c.execs);
            if t.by_id.values().any(|e| e.is_live()) {
                t.held_init_exit = Some(exit);
            } else {
                drop(t);
                self.set_exited(&c.init, &mut c.init.lock(), exit);
            }
        }
        self.after_init_exit(c);
    }

    /// After an exec exited: the held init exit goes out once no exec is live.
    fn release_held_init_exit(&self, c: &Container) {
        let exit = {
            let mut t = lock(&c.execs);
            if t.held_init_exit.is_none() || t.by_id.values().any(|e| e.is_live()) {
                return;
            }
            t.held_init_exit.take()
        };
        if let Some(exit) = exit {
            self.set_exited(&c.init, &mut c.init.lock(), exit);
        }
    }

    /// Marks the process stopped and queues its TaskExit; the caller holds its lock.
    fn set_exited(&self, p: &Process, st: &mut process::State, exit: ExitInfo) {
        if matches!(st.status, Status::Stopped(_)) {
            return;
        }
        st.status = Status::Stopped(exit);
        self.events.publish(Box::new(TaskExit {
            container_id: p.container_id.clone(),
            id: if p.exec_id.is_empty() {
                p.container_id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: st.pid as u32,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        }));
        log::info!(
            "exited id={} exec_id={} pid={} status={}",
            p.container_id,
            p.exec_id,
            st.pid,
            exit.status
        );
        p.notify_exited();
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
                if let Err(e) = c.runtime.kill(&id, libc::SIGKILL as u32, true) {
                    log::debug!("kill --all after init exit id={id}: {e}");
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start kill --all thread: {e}");
        }
    }
}

impl Container {
    fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(Arc::clone(&self.init));
        }
        lock(&self.execs)
            .by_id
            .get(exec_id)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!("exec {exec_id} not found in container {}", self.id))
            })
    }
}

impl Routes {
    /// Keeps an unclaimed exit for a start in flight. Most are the runtime CLI's own
    /// processes, which nobody claims: under a steady stream of overlapping starts
    /// `pending` may never reach zero, so old entries are dropped (a start claims its
    /// pid within moments of the runtime returning).
    fn keep_early(&mut self, exit: Exit) {
        let cutoff = exit.at.checked_sub(EARLY_EXIT_TTL);
        self.early.retain(|e| cutoff.is_none_or(|c| e.at >= c));
        if self.early.len() >= EARLY_EXIT_MAX {
            self.early.remove(0);
        }
        self.early.push(exit);
    }
}

/// How long, and how many, unclaimed exits are kept while starts are in flight.
const EARLY_EXIT_TTL: Duration = Duration::from_secs(60);
const EARLY_EXIT_MAX: usize = 4096;

/// A create or exec in flight; see [`Routes::pending`].
struct Pending<'a>(&'a Tasks);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut r = lock(&self.0.routes);
        r.pending -= 1;
        if r.pending == 0 {
            r.early = Vec::new();
        }
    }
}

fn p_status(p: &Process) -> Status {
    p.lock().status
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

fn task_io(s: &StdioPaths) -> TaskIO {
    TaskIO {
        stdin: s.stdin.clone(),
        stdout: s.stdout.clone(),
        stderr: s.stderr.clone(),
        terminal: s.terminal,
        ..Default::default()
    }
}

fn validate_id(id: &str) -> Result<()> {
    let ok =
        !id.is_empty() && id.len() <= 1024 && id != "." && id != ".." && !id.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid container id {id:?}: it must be non-empty and contain no '/'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("abc-123_x.y").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert_eq!(
                validate_id(bad).unwrap_err().kind,
                crate::error::Kind::InvalidArgument
            );
        }
    }

    #[test]
    fn unclaimed_exits_are_bounded_by_age_and_count() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let exit = |pid, secs| Exit {
            pid,
            status: 0,
            at: t0 + Duration::from_secs(secs),
        };
        let mut r = Routes::default();
        r.keep_early(exit(1, 0));
        r.keep_early(exit(2, 30));
        r.keep_early(exit(3, 61));
        let pids: Vec<i32> = r.early.iter().map(|e| e.pid).collect();
        assert_eq!(pids, [2, 3], "the exit older than the TTL is dropped");
        for i in 0..(EARLY_EXIT_MAX as i32 + 10) {
            r.keep_early(exit(100 + i, 61));
        }
        assert_eq!(r.early.len(), EARLY_EXIT_MAX);
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
