#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! The task lifecycle through `ctr`, under runc and crun, against a private containerd.

use std::time::Duration;

use rsrunc_e2e::daemon::{flavors, Flavor};
use rsrunc_e2e::{poll_until, runtime_name, unique_id, Daemon, Oci};

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
        d.run_detached(
            oci,
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'exit 0' TERM; sleep 300 & sleep 301 & wait",
            ],
        );

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
        d.run_detached(
            oci,
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap : TERM; sleep 301 & while :; do sleep 1; done",
            ],
        );
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
        d.run_detached(oci, &id, &["/bin/sleep", "300"]);
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

/// A task that exits while containerd is down (restarting, or stopped by a service
/// manager) has its exit published once containerd is back: the shim retries the event
/// with backoff for about 15 s, as the Go shim does (five requeues, after 1 to 5 s).
/// containerd 1.6 keeps the stopped task it finds at start, and both shims deliver.
#[test]
fn an_exit_while_containerd_is_down_is_published_when_it_is_back() {
    let (version, flavor) = flavors()
        .into_iter()
        .find(|(v, _)| v.starts_with("1.6"))
        .expect("scripts/setup-host.sh extracts containerd 1.6");
    let mut d = Daemon::start_flavor(&runtime_name(), &flavor);
    for oci in Oci::ALL {
        let id = unique_id("down");
        let log = exit_while_containerd_is_down(&mut d, oci, &id);
        assert!(
            forwarded(&log, &d.namespace, "/tasks/exit").is_some(),
            "containerd {version} {oci:?}: it never got the exit event after its restart:\n{log}"
        );
        assert_eq!(
            d.task_status(&id).as_deref(),
            Some("STOPPED"),
            "containerd {version} {oci:?}"
        );
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// Exit statuses are kept by the shim, not only sent as events: an exec and an init that
/// exit while containerd is down, and containerd back (1.6, which keeps the tasks it
/// finds at start), `ctr task ls` shows the task stopped, and deleting the exec and the
/// task reports each one's own status (SIGTERM: 143, SIGKILL: 137).
#[test]
fn exit_statuses_of_an_init_and_an_exec_survive_a_containerd_restart() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let (version, flavor) = flavors()
        .into_iter()
        .find(|(v, _)| v.starts_with("1.6"))
        .expect("scripts/setup-host.sh extracts containerd 1.6");
    let mut d = Daemon::start_flavor(&runtime_name(), &flavor);
    let gone = |pid: i32| {
        poll_until(Duration::from_secs(20), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
    };
    for oci in Oci::ALL {
        let what = format!("containerd {version} {oci:?}");
        let id = unique_id("kept");
        d.run(oci, &["-d"], &id, &["/bin/sleep", "300"]).ok();
        d.wait_status(&id, "RUNNING");
        let init = task_pid(&d, &id);
        let exec_args = ["/bin/sleep", "3517"];
        let mut args = vec!["task", "exec", "--detach", "--exec-id", "e1", &id];
        args.extend(exec_args);
        d.ctr(&args).ok();
        // The exec is the shim's child (its subreaper), as the init is. The runtime may
        // return before the exec's process has replaced itself with the command (crun).
        let procs = rsrunc_e2e::daemon::processes();
        let shim = procs.iter().find(|p| p.pid == init).unwrap().ppid;
        let mut exec = None;
        poll_until(Duration::from_secs(10), || {
            exec = rsrunc_e2e::daemon::processes()
                .into_iter()
                .find(|p| p.ppid == shim && p.cmdline == exec_args)
                .map(|p| p.pid);
            exec.is_some()
        });
        let exec = exec.unwrap_or_else(|| panic!("{what}: no exec under shim {shim}"));

        d.stop_containerd();
        // The exec first: the init's death would take it along.
        kill(Pid::from_raw(exec), Signal::SIGTERM).unwrap();
        assert!(gone(exec), "{what}: the exec was not reaped");
        kill(Pid::from_raw(init), Signal::SIGKILL).unwrap();
        assert!(gone(init), "{what}: the init was not reaped");
        d.start_containerd();

        assert_eq!(d.task_status(&id).as_deref(), Some("STOPPED"), "{what}");
        let exec_deleted = d.ctr(&["task", "delete", "--exec-id", "e1", &id]);
        assert_eq!(
            reported_code(&exec_deleted),
            143,
            "{what}: {exec_deleted:?}"
        );
        let deleted = d.ctr(&["task", "delete", &id]);
        assert_eq!(reported_code(&deleted), 137, "{what}: {deleted:?}");
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// The exit status `ctr task delete` reports: its own exit status for an exec, a warning
/// ("exit with non-zero exit code N") for a task.
fn reported_code(out: &rsrunc_e2e::CtrOutput) -> i32 {
    let warned = out
        .stderr
        .split("exit code ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    match (out.status, warned) {
        (0, Some(code)) => code,
        (status, _) => status,
    }
}

/// containerd 1.7 and 2.x delete a stopped task they find at start ("cleaning leaked shim
/// process"), at once: the Go shim exits on that Delete with the exit event still waiting
/// for its next retry, and containerd never gets it (seen here under both versions). rsrunc
/// sends what is queued before it exits: the exit, then the delete.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim loses an exit still queued for retry when containerd 1.7/2.x deletes its task at start"
)]
fn an_exit_while_containerd_is_down_is_published_before_the_task_is_deleted() {
    rsrunc_e2e::ours_only();
    let mut versions = vec![("1.7".to_string(), Flavor::default())];
    versions.extend(flavors().into_iter().filter(|(v, _)| v.starts_with('2')));
    for (version, flavor) in versions {
        let mut d = Daemon::start_flavor(&runtime_name(), &flavor);
        let id = unique_id("down");
        let log = exit_while_containerd_is_down(&mut d, Oci::Runc, &id);
        let exit = forwarded(&log, &d.namespace, "/tasks/exit");
        let delete = forwarded(&log, &d.namespace, "/tasks/delete");
        assert!(
            exit.is_some() && exit < delete,
            "containerd {version}: exit at {exit:?}, delete at {delete:?} in\n{log}"
        );
        let _ = d.ctr(&["task", "rm", &id]);
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// Runs container `id` (`sleep`), stops containerd, kills the container and brings
/// containerd back once the shim has tried to publish the exit four times; returns what
/// containerd logged from its restart on, at trace level.
///
/// While containerd is down its ttrpc socket is held by a [`TurnAway`], which closes every
/// connection and counts them (the shim's first attempt may use the connection containerd
/// closed, and not be counted): containerd comes back 6 to 10 s after the exit, when a shim
/// that retried for a second or two has long given up. What containerd got is read from
/// its own log ("event forwarded", a trace line): a `ctr events` started after the restart
/// could miss an event sent between containerd answering and the subscription.
fn exit_while_containerd_is_down(d: &mut Daemon, oci: Oci, id: &str) -> String {
    d.set_log_level("trace");
    d.run(oci, &["-d"], id, &["/bin/sleep", "300"]).ok();
    d.wait_status(id, "RUNNING");
    let pid = task_pid(d, id);
    d.stop_containerd();
    let away = TurnAway::listen(&d.ttrpc_socket);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        poll_until(Duration::from_secs(30), || away.attempts() >= 4),
        "{oci:?}: the shim tried to publish the exit {} times",
        away.attempts()
    );
    drop(away);
    let before = d.log().len();
    d.start_containerd();
    // The exit, and for 1.7/2.x the delete that follows it, or 30 s.
    poll_until(Duration::from_secs(30), || {
        let log = d.log();
        let after = log.get(before..).unwrap_or_default();
        forwarded(after, &d.namespace, "/tasks/exit").is_some()
            && (!after.contains("cleaning leaked shim")
                || forwarded(after, &d.namespace, "/tasks/delete").is_some())
    });
    d.log().get(before..).unwrap_or_default().to_string()
}

/// The line number at which containerd's `log` says it was forwarded an event of `topic`
/// in namespace `ns`.
fn forwarded(log: &str, ns: &str, topic: &str) -> Option<usize> {
    let (ns, topic) = (format!("ns={ns} "), format!("topic={topic} "));
    log.lines()
        .position(|l| l.contains("event forwarded") && l.contains(&ns) && l.contains(&topic))
}

/// The pid `ctr task ls` shows for task `id`.
fn task_pid(d: &Daemon, id: &str) -> i32 {
    let ls = d.ctr(&["task", "ls"]).ok().stdout;
    ls.lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid for {id} in {ls}"))
}

/// Holds a socket path while its daemon is down and closes every connection made to it,
/// counting them.
struct TurnAway {
    path: std::path::PathBuf,
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TurnAway {
    fn listen(path: &std::path::Path) -> TurnAway {
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (attempts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TurnAway {
            path: path.to_path_buf(),
            attempts,
            stop,
            thread: Some(thread),
        }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TurnAway {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
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
