//! Finishing a delete the runtime could not: when its `delete --force` passes its
//! deadline, the shim does what it would have done with what it knows of the container
//! (its init, its cgroups, the runtime's state directory), so that a forced delete always
//! finishes while the runtime hangs. The same for the cleanup of a create that failed or
//! timed out ([`remove_after_failed_create`]) and for containerd's cleanup after a shim
//! died (`delete`, [`remove_without_runtime`]), which know the container only by its
//! bundle.

use std::path::Path;
use std::time::Duration;

use runc_driver::Runtime;

use super::bundle::read_init_pid;
use super::{Container, Tasks, KILLED_EXIT_WAIT};
use crate::cgroups::Cgroups;
use crate::error::{Error, Result};
use crate::supervise::Status;

/// How long the killed processes may keep the container's cgroups busy.
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(5);

impl Tasks {
    /// The runtime's `delete --force` of `c` was killed at its deadline (`timed_out`): the
    /// shim kills every process left in the container's cgroups, waits for the init's exit,
    /// removes the cgroups, then the runtime's state directory, and logs a warning saying
    /// so. Called under the container's command lock. When a step fails, the error names
    /// what is left; the container stays, and a retried Delete starts over (each step
    /// finds done what was done).
    pub(super) fn delete_without_runtime(&self, c: &Container, timed_out: Error) -> Result<()> {
        let id = c.id.as_str();
        let failed = |what: String| {
            Error::internal(format!(
                "{timed_out}; the shim could not finish the delete of {id} itself: {what}"
            ))
        };
        let killed = self
            .kill_directly(c, id, true)
            .map_err(|e| failed(format!("{e}: its processes are left")))?;
        let init = self.sup.view(id, "")?;
        if init.pid > 0 && !matches!(init.status, Status::Stopped(_)) {
            let exited = self.sup.wait_timeout(id, "", KILLED_EXIT_WAIT)?;
            if exited.is_none() {
                return Err(failed(format!(
                    "its init {} did not exit within {} s of SIGKILL: it, its cgroups and the runtime's state are left",
                    init.pid,
                    KILLED_EXIT_WAIT.as_secs()
                )));
            }
        }
        let cgroups = c
            .cgroups
            .get()
            .ok_or_else(|| "unreadable at create".to_string());
        let left = remove_leftovers(&c.runtime, id, &c.bundle, cgroups, CGROUP_EMPTY_WAIT)
            .map_err(failed)?;
        log::warn!(
            "{timed_out}; the shim finished the delete of {id} itself: SIGKILL to {killed} process(es), {left}"
        );
        Ok(())
    }
}

/// The cleanup of a create that failed or timed out: the runtime's `delete --force` of
/// `id` was killed at its deadline (`timed_out`) after the runtime may have created the
/// container, so the shim removes what is left itself ([`remove_without_runtime`]), its
/// cgroups found from the spec's `cgroups_path` or the init the runtime wrote to the
/// bundle's `init.pid`. Logs what it did, or what is left.
pub(super) fn remove_after_failed_create(
    runtime: &Runtime,
    id: &str,
    bundle: &Path,
    cgroups_path: Option<&str>,
    timed_out: &runc_driver::Error,
) {
    match remove_without_runtime(runtime, id, bundle, cgroups_path, CGROUP_EMPTY_WAIT) {
        Ok(done) => log::warn!(
            "cleanup after failed create id={id}: {timed_out}; the shim removed the container itself: {done}"
        ),
        Err(left) => log::error!(
            "cleanup after failed create id={id}: {timed_out}; the shim could not remove the container itself: {left}"
        ),
    }
}

/// Removes container `id` (bundle `bundle`) without its runtime, which could not: SIGKILL
/// to every process in its cgroups (found from its spec's `cgroups_path` or the init in
/// the bundle's `init.pid`: [`Cgroups::of_container`]), the cgroups removed once empty
/// (within `empty_wait`), then the runtime's state directory. Says what it did, or what
/// failed and what is left.
pub fn remove_without_runtime(
    runtime: &Runtime,
    id: &str,
    bundle: &Path,
    cgroups_path: Option<&str>,
    empty_wait: Duration,
) -> std::result::Result<String, String> {
    let cgroups = Cgroups::of_container(id, cgroups_path, read_init_pid(bundle));
    let killed = match &cgroups {
        Ok(cg) => {
            let n = cg.kill_all().map_err(|e| {
                format!("{e}: its processes, its cgroups and the runtime's state are left")
            })?;
            format!("SIGKILL to {n} process(es) in its cgroups, ")
        }
        Err(_) => String::new(),
    };
    let cgroups = cgroups.as_ref().map_err(ToString::to_string);
    let left = remove_leftovers(runtime, id, bundle, cgroups, empty_wait)?;
    Ok(format!("{killed}{left}"))
}

/// Once the container's processes are dead: its cgroups (or why they are unknown) and the
/// runtime's state directory removed. Says what it did, or what failed and what is left.
fn remove_leftovers(
    runtime: &Runtime,
    id: &str,
    bundle: &Path,
    cgroups: std::result::Result<&Cgroups, String>,
    empty_wait: Duration,
) -> std::result::Result<String, String> {
    let cgroups = match cgroups {
        Ok(cg) => {
            let removed = cg
                .remove(empty_wait)
                .map_err(|e| format!("{e}: the cgroups and the runtime's state are left"))?;
            format!("removed {} cgroup(s)", removed.len())
        }
        Err(why) => format!("its cgroups are unknown ({why}): any left stay"),
    };
    let state = match runtime.remove_state(id, bundle) {
        Ok(Some(dir)) => format!("removed the runtime's state {}", dir.display()),
        Ok(None) => "the runtime's state was gone".to_string(),
        Err(e) => return Err(format!("{cgroups}; {e}: the runtime's state is left")),
    };
    Ok(format!("{cgroups}, {state}"))
}
