#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! A shim that dies (SIGKILL, the OOM killer) after its container's init exited: containerd
//! runs `containerd-shim-*-v2 delete` and publishes a TaskExit with the status that command
//! reports. containerd's Go shim always reports 137 (SIGKILL) and the time of the delete;
//! ours reports the status and time the serving shim recorded in the bundle when it saw
//! the exit, and 137 only when it never saw one.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rsrunc_e2e::daemon::{flavors, processes, Events};
use rsrunc_e2e::{poll_until, runtime_name, unique_id, Daemon, Oci};

/// An init that exits 7 on SIGTERM (pid 1 in its namespace ignores signals it has no
/// handler for, so the trap is what ends it).
const EXITS_7_ON_TERM: &[&str] = &["/bin/sh", "-c", "trap 'exit 7' TERM; sleep 300 & wait"];

/// The serving shim saw the init exit 7, then died: under ours the TaskExit containerd
/// publishes for the dead shim carries 7 and the exit's own time, as the first one did
/// (containerd 1.6, 1.7 and 2.1).
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim's delete always reports 137"
)]
fn a_dead_shim_still_reports_the_exit_it_saw() {
    rsrunc_e2e::ours_only();
    for (version, flavor) in flavors() {
        let d = Daemon::start_flavor(&runtime_name(), &flavor);
        let ev = d.events();
        let id = unique_id("seen");
        d.run(Oci::Runc, &["-d"], &id, &["/bin/sh", "-c", "exit 7"])
            .ok();
        let first = next_exit(&d, &ev, &id, 0);
        assert_eq!(
            first.status, 7,
            "{version}: the shim's own TaskExit: {first:?}"
        );
        // The shim records the status before it publishes TaskExit: the record is there.
        let record = d.bundle(&id).join("rsrunc-init-exit.json");
        assert!(
            record.is_file(),
            "{version}: no {} after TaskExit",
            record.display()
        );

        kill_shim(&d, &id, Signal::SIGKILL);
        let after = next_exit(&d, &ev, &id, 1);
        assert_eq!(
            (after.status, &after.exited_at),
            (7, &first.exited_at),
            "{version}: TaskExit after the shim died: {after:?}, the shim's own was {first:?}"
        );
        assert_eq!(
            d.task_status(&id),
            None,
            "{version}: containerd dropped the task"
        );
        d.ctr(&["container", "rm", &id]).ok();
    }
}

/// The shim was stopped when the init exited and killed before it could reap it: nobody
/// knows the status, and both shims report what containerd's always did, 137.
#[test]
fn a_shim_killed_before_it_saw_the_exit_reports_137() {
    for (version, flavor) in flavors() {
        let d = Daemon::start_flavor(&runtime_name(), &flavor);
        let ev = d.events();
        let id = unique_id("unseen");
        d.run(Oci::Runc, &["-d"], &id, EXITS_7_ON_TERM).ok();
        d.wait_status(&id, "RUNNING");
        let init = d
            .task_pid(&id)
            .unwrap_or_else(|| panic!("{id} not in ctr task ls"));
        // The init's trap must be set before the signal: it is once sh started its sleep.
        let trapped = poll_until(Duration::from_secs(10), || {
            processes().iter().any(|p| p.ppid == init)
        });
        assert!(trapped, "{version}: the init never started its sleep");

        let shim = kill_shim(&d, &id, Signal::SIGSTOP);
        kill(Pid::from_raw(init), Signal::SIGTERM).unwrap();
        // Exited, and not reaped: its parent, the shim, is stopped.
        let zombie = poll_until(Duration::from_secs(20), || {
            processes().iter().any(|p| p.pid == init && p.state == 'Z')
        });
        assert!(
            zombie,
            "{version}: the init (pid {init}) did not exit on SIGTERM"
        );
        kill(Pid::from_raw(shim), Signal::SIGKILL).unwrap();

        let after = next_exit(&d, &ev, &id, 0);
        assert_eq!(
            after.status, 137,
            "{version}: TaskExit after the shim died: {after:?}"
        );
        d.ctr(&["container", "rm", &id]).ok();
    }
}

#[derive(Debug)]
struct TaskExit {
    status: u32,
    exited_at: String,
}

/// The `n`th (from 0) /tasks/exit event of container `id`, waited for.
fn next_exit(d: &Daemon, ev: &Events, id: &str, n: usize) -> TaskExit {
    let exits = |text: &str| -> Vec<TaskExit> {
        text.lines()
            .filter(|l| l.contains("/tasks/exit"))
            .filter_map(|l| {
                let json: serde_json::Value = serde_json::from_str(&l[l.find('{')?..]).ok()?;
                (json["container_id"] == id).then(|| TaskExit {
                    status: json["exit_status"].as_u64().unwrap_or(0) as u32,
                    exited_at: json["exited_at"].to_string(),
                })
            })
            .collect()
    };
    let arrived = ev.wait_for(Duration::from_secs(30), |t| exits(t).len() > n);
    assert!(
        arrived,
        "no TaskExit #{n} for {id}; events:\n{}\ncontainerd log:\n{}",
        ev.text(),
        d.log()
    );
    exits(&ev.text()).swap_remove(n)
}

/// Sends `sig` to the shim serving container `id`; returns its pid.
fn kill_shim(d: &Daemon, id: &str, sig: Signal) -> i32 {
    let shim = d
        .shim_serving(id)
        .unwrap_or_else(|| panic!("no shim serving {id} among {:?}", d.shim_pids()));
    kill(Pid::from_raw(shim), sig).unwrap();
    shim
}
