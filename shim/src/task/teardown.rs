//! Finishing a delete the runtime could not: when its `delete --force` passes its
//! deadline, the shim does what it would have done with what it knows of the container
//! (its init, its cgroups, the runtime's state directory), so that a forced delete always
//! finishes while the runtime hangs.

use std::time::Duration;

use super::{Container, Tasks, KILLED_EXIT_WAIT};
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
        let cgroups = match c.cgroups.get() {
            Some(cg) => {
                let removed = cg.remove(CGROUP_EMPTY_WAIT).map_err(|e| {
                    failed(format!("{e}: the cgroups and the runtime's state are left"))
                })?;
                format!("removed {} cgroup(s)", removed.len())
            }
            None => "its cgroups are unknown (unreadable at create), any left stay".to_string(),
        };
        let state = match c.runtime.remove_state(id, &c.bundle) {
            Ok(Some(dir)) => format!("removed the runtime's state {}", dir.display()),
            Ok(None) => "the runtime's state was gone".to_string(),
            Err(e) => return Err(failed(format!("{e}: the runtime's state is left"))),
        };
        log::warn!(
            "{timed_out}; the shim finished the delete of {id} itself: SIGKILL to {killed} process(es), {cgroups}, {state}"
        );
        Ok(())
    }
}
