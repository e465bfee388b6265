//! The serving shim: the long-lived process containerd talks to over ttrpc.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::Flags;
use nix::fcntl::OFlag;

use super::{require_id, ENV_LISTEN_FD, ENV_PARENT_OOM, ENV_SHIM_CGROUP};
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::options::RuntimeConfig;
use crate::service::Service;
use crate::supervise::Reaper;
use crate::task::Tasks;

pub fn run(flags: &Flags) -> Result<()> {
    let id = require_id(flags)?;
    let mut span = serve_span(id);
    let level = if flags.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    // containerd holds the read end of the bundle's `log` fifo while the shim runs.
    if let Ok(f) = crate::sys::open_fifo("log".as_ref(), OFlag::O_WRONLY | OFlag::O_NONBLOCK) {
        crate::logger::Logger::install(f, &flags.namespace, id, level);
    }
    crate::logger::log_panics();
    crate::trace::mark(&mut span, "log");
    // Set by `start` for this process's allocator only; the runtimes we run do not need it.
    std::env::remove_var("GLIBC_TUNABLES");

    let fd: i32 = std::env::var(ENV_LISTEN_FD)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::precondition(format!(
                "{ENV_LISTEN_FD} is not set: the serving shim is started by `start`"
            ))
        })?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| Error::precondition("TTRPC_ADDRESS is not set"))?;
    crate::sys::set_subreaper().map_err(|e| Error::io("become a child subreaper", e))?;
    join_shim_cgroup();
    adjust_oom_score();
    report_core_scheduling();
    // What `start` handed over is read; the runtimes this process starts inherit the rest
    // of its environment (less containerd's service-manager variables: runc_driver::env).
    for var in [
        ENV_LISTEN_FD,
        ENV_PARENT_OOM,
        ENV_SHIM_CGROUP,
        crate::trace::ENV_T0,
    ] {
        std::env::remove_var(var);
    }
    crate::trace::mark(&mut span, "setup");

    let reaper = Reaper::start().map_err(|e| Error::io("start the reaper", e))?;
    let publisher = Arc::new(
        Publisher::start(ttrpc_address, flags.namespace.clone())
            .map_err(|e| Error::io("start the event publisher", e))?,
    );
    crate::trace::mark(&mut span, "reaper_publisher");
    let defaults = RuntimeConfig::host_defaults();
    if let Err(e) = &defaults {
        log::error!("{e}: containers will fail to create until it is fixed");
    }
    let tasks = Tasks::new(flags.namespace.clone(), defaults, reaper, publisher.clone())
        .map_err(|e| Error::io("start the exit router", e))?;

    crate::trace::mark(&mut span, "defaults_tasks");
    let routes = Service::new(Arc::clone(&tasks)).routes();
    let listener = crate::sys::inherited_listener(fd)
        .map_err(|e| Error::io(format!("take the listening socket at fd {fd}"), e))?;
    crate::rpc::serve(listener, routes).map_err(|e| Error::io("start the ttrpc server", e))?;
    log::info!("serving on {} pid={}", flags.socket, std::process::id());
    crate::trace::mark(&mut span, "server");
    drop(span);

    tasks.wait_shutdown();
    log::info!("shutting down: no containers left");
    if let Some(path) = flags.socket.strip_prefix("unix://") {
        let _ = std::fs::remove_file(path);
    }
    publisher.close(Duration::from_secs(10));
    // Calls still in flight (a client waiting on a process that is gone) end with the
    // process.
    drop(tasks);
    std::process::exit(0)
}

/// The serving shim's start-up, from `start`'s spawn (its first phase, `exec`, is the
/// exec of this binary up to here) when `start` handed the time over.
fn serve_span(id: &str) -> Option<crate::trace::Span> {
    let t0 = std::env::var(crate::trace::ENV_T0).ok()?.parse().ok()?;
    let mut span = crate::trace::span_since("serve", id, t0);
    crate::trace::mark(&mut span, "exec");
    span
}

/// With SCHED_CORE set, `start` gave this process the cookie its containers inherit: the
/// log says which, for an operator comparing it with a container's.
fn report_core_scheduling() {
    if std::env::var_os("SCHED_CORE").is_none_or(|v| v.is_empty()) {
        return;
    }
    match crate::sys::sched_core_cookie(0) {
        Ok(cookie) => log::info!("core scheduling cookie={cookie:#x}"),
        Err(e) => log::warn!("{e}"),
    }
}

fn join_shim_cgroup() {
    let Ok(cg) = std::env::var(ENV_SHIM_CGROUP) else {
        return;
    };
    if let Err(e) = crate::cgroups::join(Path::new("/sys/fs/cgroup"), &cg, std::process::id()) {
        log::error!("join shim cgroup {cg} (ShimCgroup): {e}");
    }
}

/// One above containerd's score, so the kernel kills a shim before containerd. Lowering
/// a score needs CAP_SYS_RESOURCE; without it this is logged and the shim carries on.
fn adjust_oom_score() {
    let Some(parent) = std::env::var(ENV_PARENT_OOM)
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
    else {
        return;
    };
    let score = (parent + 1).min(1000);
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", score.to_string()) {
        log::warn!("set oom_score_adj to {score}: {e}; carrying on with the inherited score");
    }
}
