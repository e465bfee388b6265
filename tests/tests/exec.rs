#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! `ctr task exec` into running containers, under runc and crun.

use std::time::Duration;

use rsrunc_e2e::daemon::task_exec;
use rsrunc_e2e::{poll_until, unique_id, CtrOutput, Daemon, Oci};

fn running(d: &Daemon, oci: Oci) -> String {
    let id = unique_id("host");
    d.run_detached(oci, &id, &["/bin/sleep", "300"]);
    id
}

fn remove(d: &Daemon, id: &str) {
    let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    d.wait_status(id, "STOPPED");
    d.ctr(&["task", "rm", id]).ok();
    d.ctr(&["containers", "rm", id]).ok();
}

#[test]
fn exec_output_exit_codes_and_stdin() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = running(&d, oci);
        for code in [0, 5] {
            let out = d.ctr(&task_exec(
                &unique_id("x"),
                &id,
                &[
                    "/bin/sh",
                    "-c",
                    &format!("echo in exec; echo err >&2; exit {code}"),
                ],
            ));
            assert_eq!(out.status, code, "{oci:?}: {out:?}");
            assert_eq!(out.stdout, "in exec\n", "{oci:?}");
            assert!(out.stderr.contains("err\n"), "{oci:?}: {out:?}");
        }
        let out = d.ctr_input(
            &task_exec(
                &unique_id("x"),
                &id,
                &["/bin/sh", "-c", "read v; echo got $v"],
            ),
            Some(b"hello\n"),
        );
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (0, "got hello\n"),
            "{oci:?}: {out:?}"
        );
        remove(&d, &id);
    }
}

#[test]
fn exec_pids_kill_and_duplicate_ids() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = running(&d, oci);
        let exec_id = unique_id("long");
        let bg = d.ctr_spawn(&task_exec(&exec_id, &id, &["/bin/sleep", "300"]));
        // The exec shows in ps once the background ctr has started it.
        let mut ps = String::new();
        poll_until(Duration::from_secs(20), || {
            ps = d.ctr(&["task", "ps", &id]).ok().stdout;
            ps.contains(&exec_id)
        });
        assert!(
            ps.contains(&format!("exec_id:\"{exec_id}\"")),
            "{oci:?}: {ps}"
        );
        assert_eq!(
            ps.lines().count(),
            3,
            "{oci:?}: header, init and the exec: {ps}"
        );

        let dup = d.ctr(&task_exec(&exec_id, &id, &["/bin/true"]));
        assert_ne!(dup.status, 0, "{oci:?}: {dup:?}");
        assert!(dup.stderr.contains("already exists"), "{oci:?}: {dup:?}");

        d.ctr(&["task", "kill", "--exec-id", &exec_id, "-s", "SIGKILL", &id])
            .ok();
        let out = bg.wait_with_output().unwrap();
        assert_eq!(
            rsrunc_e2e::daemon::exit_code(out.status),
            137,
            "{oci:?}: {out:?}"
        );
        assert_eq!(
            d.task_status(&id).as_deref(),
            Some("RUNNING"),
            "{oci:?}: the container lives on"
        );
        remove(&d, &id);
    }
}

/// A real-time signal (37, SIGRTMIN+3: what systemd takes to halt) reaches an init that
/// handles it and an exec that does not, through both shims.
#[test]
fn real_time_signals_reach_the_init_and_execs() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("rt");
        let script = "trap 'exit 7' 37; while :; do sleep 1; done";
        let args = d.run_args(oci, &[], &id, &["/bin/sh", "-c", script]);
        let init = d.ctr_spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        d.wait_status(&id, "RUNNING");
        let exec_id = unique_id("rt");
        let exec = d.ctr_spawn(&task_exec(&exec_id, &id, &["/bin/sleep", "300"]));
        poll_until(Duration::from_secs(20), || {
            d.ctr(&["task", "ps", &id]).ok().stdout.contains(&exec_id)
        });
        d.ctr(&["task", "kill", "--exec-id", &exec_id, "-s", "37", &id])
            .ok();
        // A shim that loses the exit leaves ctr waiting: bounded, and said so.
        let code = exit_within(exec, "the exec's exit");
        assert_eq!(code, 128 + 37, "{oci:?}");
        d.ctr(&["task", "kill", "-s", "37", &id]).ok();
        let code = exit_within(init, "the init's exit");
        assert_eq!(code, 7, "{oci:?}: the init's trap ran");
        // ctr run removed the task when it ended; the container is left.
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// The exit code of `ctr`, which exits as its task did; fails if it has not within 60 s.
fn exit_within(mut ctr: std::process::Child, what: &str) -> i32 {
    let done = poll_until(Duration::from_secs(60), || {
        ctr.try_wait().ok().flatten().is_some()
    });
    if !done {
        let _ = ctr.kill();
        let _ = ctr.wait();
        panic!("{what} never reached ctr");
    }
    let out = ctr.wait_with_output().unwrap();
    rsrunc_e2e::daemon::exit_code(out.status)
}

#[test]
fn a_failed_exec_leaves_no_shim_behind() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = running(&d, oci);
        let out = d.ctr(&task_exec(
            &unique_id("missing"),
            &id,
            &["/bin/no-such-command"],
        ));
        assert_ne!(out.status, 0, "{oci:?}: {out:?}");
        assert!(out.stderr.contains("no-such-command"), "{oci:?}: {out:?}");
        remove(&d, &id);
        assert_eq!(
            d.shims_left(),
            Vec::<i32>::new(),
            "{oci:?}: the shim must exit after its last container"
        );
    }
}

#[test]
fn exec_in_a_stopped_container_is_refused() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let (id, out) = exec_after_the_end(&d, oci);
        assert_ne!(out.status, 0, "{oci:?}: {out:?}");
        assert!(out.stderr.contains("stopped"), "{oci:?}: {out:?}");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: exec into a stopped container is FailedPrecondition"
)]
fn exec_in_a_stopped_container_is_a_failed_precondition() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    for oci in Oci::ALL {
        let (id, out) = exec_after_the_end(&d, oci);
        assert!(
            out.stderr.contains("stopped") && out.stderr.contains("failed precondition"),
            "{oci:?}: {out:?}"
        );
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// An exec into a container whose init was killed: the container's id and ctr's output.
fn exec_after_the_end(d: &Daemon, oci: Oci) -> (String, CtrOutput) {
    let id = running(d, oci);
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    let out = d.ctr(&task_exec(&unique_id("late"), &id, &["/bin/true"]));
    (id, out)
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: exec into a paused container is refused, naming the state"
)]
fn exec_in_a_paused_container_is_refused() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = running(&d, oci);
        d.ctr(&["task", "pause", &id]).ok();
        let out = d.ctr(&task_exec(&unique_id("frozen"), &id, &["/bin/true"]));
        assert_ne!(out.status, 0, "{oci:?}: {out:?}");
        assert!(
            out.stderr.contains("paused") && out.stderr.contains("failed precondition"),
            "{oci:?}: {out:?}"
        );
        d.ctr(&["task", "resume", &id]).ok();
        remove(&d, &id);
    }
}

#[test]
fn exec_exits_are_published_before_the_init_exit() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let events = d.events();
        let id = running(&d, oci);
        let execs: Vec<String> = (0..3).map(|_| unique_id("bg")).collect();
        for e in &execs {
            d.ctr(&[
                "task",
                "exec",
                "--detach",
                "--exec-id",
                e,
                &id,
                "/bin/sleep",
                "300",
            ])
            .ok();
        }
        // Killing the init ends its pid namespace, and with it every exec.
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        // Three exec exits and the init's.
        events.wait_for(Duration::from_secs(10), |t| {
            t.lines()
                .filter(|l| l.contains("/tasks/exit") && l.contains(&id))
                .count()
                >= 4
        });
        let text = events.text();
        let exits: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("/tasks/exit") && l.contains(&id))
            .collect();
        assert_eq!(exits.len(), 4, "{oci:?}: {text}");
        assert!(
            exits[3].contains(&format!("\"id\":\"{id}\"")),
            "{oci:?}: init exit last: {exits:?}"
        );
        for (i, e) in execs.iter().enumerate() {
            let added = text
                .find(&format!(
                    "/tasks/exec-added {{\"container_id\":\"{id}\",\"exec_id\":\"{e}\""
                ))
                .unwrap_or(usize::MAX);
            let started = text
                .find(&format!("\"exec_id\":\"{e}\",\"pid\""))
                .unwrap_or(usize::MAX);
            assert!(
                added < started && started != usize::MAX,
                "{oci:?} exec {i}: {text}"
            );
        }
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}
