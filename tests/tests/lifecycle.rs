#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! The task lifecycle through `ctr`, under runc and crun, against a private containerd.

use std::time::Duration;

use rsrunc_e2e::{poll_until, unique_id, Daemon, Oci};

#[test]
fn run_rm_prints_output_and_returns_exit_codes() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let out = d.run(
            oci,
            &["--rm"],
            &unique_id("out"),
            &["/bin/sh", "-c", "echo hello; echo oops >&2"],
        );
        assert_eq!(out.status, 0, "{oci:?}: {out:?}");
        assert_eq!(out.stdout, "hello\n", "{oci:?}");
        assert!(out.stderr.contains("oops\n"), "{oci:?}: {out:?}");
        for code in [0, 3, 42] {
            let out = d.run(
                oci,
                &["--rm"],
                &unique_id("code"),
                &["/bin/sh", "-c", &format!("exit {code}")],
            );
            assert_eq!(out.status, code, "{oci:?}: {out:?}");
        }
    }
}

#[test]
fn sigkill_from_outside_is_exit_137() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("kill");
        let args = d.run_args(oci, &["--rm"], &id, &["/bin/sleep", "300"]);
        let run = d.ctr_spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        d.wait_status(&id, "RUNNING");
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        let out = run.wait_with_output().unwrap();
        assert_eq!(
            rsrunc_e2e::daemon::exit_code(out.status),
            137,
            "{oci:?}: {out:?}"
        );
    }
}

#[test]
fn detached_task_ps_pause_resume_kill_delete() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("detached");
        d.run(
            oci,
            &["-d"],
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'exit 0' TERM; sleep 300 & sleep 301 & wait",
            ],
        )
        .ok();
        d.wait_status(&id, "RUNNING");

        // RUNNING means sh started; it forks the two sleeps a moment later.
        let mut ps = String::new();
        let three = poll_until(Duration::from_secs(10), || {
            ps = d.ctr(&["task", "ps", &id]).ok().stdout;
            ps.lines().skip(1).filter(|l| !l.trim().is_empty()).count() == 3
        });
        assert!(three, "{oci:?}: sh and two sleeps expected in {ps}");

        d.ctr(&["task", "pause", &id]).ok();
        assert_eq!(d.task_status(&id).as_deref(), Some("PAUSED"), "{oci:?}");
        d.ctr(&["task", "resume", &id]).ok();
        assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"), "{oci:?}");

        // Deleting a running task is refused.
        let refused = d.ctr(&["task", "rm", &id]);
        assert_ne!(refused.status, 0, "{oci:?}: {refused:?}");
        assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));

        d.ctr(&["task", "kill", "-s", "SIGTERM", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        assert_eq!(d.task_status(&id), None);
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// `kill --all` signals every process of the container, `kill` its init alone. Here the
/// init catches SIGTERM and lives on while its child `sleep 301` does not: only `--all`
/// ends the sleep. (SIGKILL could not tell them apart: the init's death ends the rest,
/// by the kernel in a pid namespace of the container's own, and by the shim's own
/// `kill --all` after the init's exit in the host's, in both shims.)
#[test]
fn kill_all_reaches_every_process() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("killall");
        d.run(
            oci,
            &["-d"],
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap : TERM; sleep 301 & while :; do sleep 1; done",
            ],
        )
        .ok();
        d.wait_status(&id, "RUNNING");
        // `ctr task ps` lists host pids. The trap is set before the sleep starts.
        let mut sleeper = None;
        poll_until(Duration::from_secs(10), || {
            let ps = d.ctr(&["task", "ps", &id]).ok().stdout;
            sleeper = ps
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next()?.parse::<i32>().ok())
                .find(|pid| is_sleep_301(*pid));
            sleeper.is_some()
        });
        let sleeper = sleeper.unwrap_or_else(|| panic!("{oci:?}: no sleep 301 in {id}"));

        d.ctr(&["task", "kill", "--all", "-s", "SIGTERM", &id]).ok();
        assert!(
            poll_until(Duration::from_secs(10), || !is_sleep_301(sleeper)),
            "{oci:?}: kill --all did not reach the init's child (pid {sleeper})"
        );
        assert_eq!(
            d.task_status(&id).as_deref(),
            Some("RUNNING"),
            "{oci:?}: the init catches SIGTERM"
        );

        d.ctr(&["task", "kill", "--all", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// Whether `pid` is the test's `sleep 301` (not a zombie, whose cmdline is empty, nor a
/// process that took the pid over).
fn is_sleep_301(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00301\x00")
}

#[test]
fn a_process_that_exits_at_once_is_not_lost() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        for _ in 0..5 {
            let out = d.run(oci, &["--rm"], &unique_id("quick"), &["/bin/true"]);
            assert_eq!(out.status, 0, "{oci:?}: {out:?}");
            let out = d.run(oci, &["--rm"], &unique_id("quick"), &["/bin/false"]);
            assert_eq!(out.status, 1, "{oci:?}: {out:?}");
        }
    }
}

#[test]
fn stdin_is_piped_in() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let args = d.run_args(
            oci,
            &["--rm"],
            &unique_id("stdin"),
            &["/bin/sh", "-c", "read v; echo got $v"],
        );
        let out = d.ctr_input(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            Some(b"x\n"),
        );
        assert_eq!(out.status, 0, "{oci:?}: {out:?}");
        assert_eq!(out.stdout, "got x\n", "{oci:?}");
    }
}

#[test]
fn events_arrive_in_order() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let events = d.events();
        let id = unique_id("events");
        d.run(oci, &["-d"], &id, &["/bin/sleep", "300"]).ok();
        d.wait_status(&id, "RUNNING");
        d.ctr(&["task", "pause", &id]).ok();
        d.ctr(&["task", "resume", &id]).ok();
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
        // Events are published asynchronously: wait for the last one.
        events.wait_for(Duration::from_secs(10), |t| {
            task_topics(t, &id).iter().any(|x| x == "/tasks/delete")
        });
        let text = events.text();
        let want = [
            "/tasks/create",
            "/tasks/start",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete",
        ];
        assert_eq!(task_topics(&text, &id), want, "{oci:?}: {text}");
        let exit = text
            .lines()
            .find(|l| l.contains("/tasks/exit"))
            .unwrap_or_default();
        assert!(exit.contains("\"exit_status\":137"), "{oci:?}: {exit}");
    }
}

/// The task topics `ctr events` printed for container `id`, in order.
fn task_topics(text: &str, id: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(&format!("\"{id}\"")))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/tasks/"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_hundred_containers_leave_nothing_behind() {
    let d = Daemon::start();
    let n: usize = std::env::var("RSRUNC_E2E_CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for oci in Oci::ALL {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = unique_id("churn");
            let out = d.run(oci, &["--rm"], &id, &["/bin/true"]);
            assert_eq!(out.status, 0, "{oci:?}: {out:?}");
            ids.push(id);
        }
        assert_eq!(
            d.shims_left(),
            Vec::<i32>::new(),
            "{oci:?}: shims left running"
        );
        assert_eq!(d.zombies(), Vec::<i32>::new(), "{oci:?}: zombies left");
        assert_eq!(d.mounts(), Vec::<String>::new(), "{oci:?}: mounts left");
        let sockets: Vec<_> = ids
            .iter()
            .map(|id| d.shim_socket(id))
            .filter(|p| p.exists())
            .collect();
        assert!(sockets.is_empty(), "{oci:?}: sockets left: {sockets:?}");
        assert!(d.ctr(&["containers", "ls", "-q"]).stdout.trim().is_empty());
    }
}

/// The shim keeps a reader on the output fifos: when the client and containerd go away,
/// a container that keeps printing is not killed by SIGPIPE.
#[test]
fn a_containerd_restart_does_not_kill_a_printing_container() {
    let mut d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("restart");
        let args = d.run_args(
            oci,
            &[],
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'exit 0' TERM; while true; do echo tick; sleep 0.05; done",
            ],
        );
        let mut client = d.ctr_spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        d.wait_status(&id, "RUNNING");
        d.restart();
        // The attached client lost its daemon; make sure it is gone with its fifo ends.
        let _ = client.kill();
        let _ = client.wait();
        // A time, not a condition: the container writes every 50 ms, and a write into a
        // fifo without a reader would end it by SIGPIPE; ten writes later it must live.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            d.task_status(&id).as_deref(),
            Some("RUNNING"),
            "{oci:?}: the container survived"
        );
        d.ctr(&["task", "kill", "-s", "SIGTERM", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}
