#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Failure injection: the shim runs `rsrunc-fp` (tests/src/bin/rsrunc-fp.rs) as its runtime
//! through the ordinary BinaryName option, and the container's annotations make a runtime
//! command fail or stall. The same tests run against both shims.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rsrunc_e2e::daemon::{flavors, processes};
use rsrunc_e2e::{poll_until, runtime_name, unique_id, Daemon, Oci};

/// `ctr run` flags that make the shim run the failpoint runtime, and set the failpoint
/// `rsrunc.failpoint.<command>=<action>` on the container.
fn fp_flags(d: &Daemon, command: &str, action: &str) -> Vec<String> {
    fp_flags_with(d, command, action, "")
}

const FP: &str = env!("CARGO_BIN_EXE_rsrunc-fp");

/// [`fp_flags`], with more lines for our shim's options file (deadlines: the Go shim has
/// no such options).
fn fp_flags_with(d: &Daemon, command: &str, action: &str, toml: &str) -> Vec<String> {
    let mut flags: Vec<String> = if d.is_go_shim() {
        vec!["--runc-binary".into(), FP.into()]
    } else {
        let toml = format!("BinaryName = \"{FP}\"\n{toml}");
        vec!["--runtime-config-path".into(), d.options_file("fp", &toml)]
    };
    flags.push("--annotation".into());
    flags.push(format!("rsrunc.failpoint.{command}={action}"));
    flags
}

fn run(d: &Daemon, flags: &[String], id: &str, cmd: &[&str]) -> rsrunc_e2e::CtrOutput {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    d.run(Oci::Runc, &flags, id, cmd)
}

/// The container's cgroup directories that still exist (ctr gives it /NAMESPACE/ID).
fn cgroups_left(d: &Daemon, id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|r| r.flatten().map(|h| h.path()).collect())
        .unwrap_or_default();
    dirs.push(root.to_path_buf());
    dirs.into_iter()
        .map(|h| h.join(&d.namespace).join(id))
        .filter(|p| p.is_dir())
        .collect()
}

fn remove(d: &Daemon, id: &str) {
    let _ = d.ctr(&["task", "rm", "-f", id]);
    let _ = d.ctr(&["containers", "rm", id]);
}

/// Nothing of the container left: no shim, no mount, no cgroup.
fn assert_nothing_left(d: &Daemon, id: &str) {
    assert_eq!(d.shims_left(), Vec::<i32>::new(), "shims left");
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    let gone = poll_until(Duration::from_secs(10), || cgroups_left(d, id).is_empty());
    assert!(gone, "cgroups left: {:?}", cgroups_left(d, id));
}

#[test]
fn a_failed_start_reaches_the_client_and_leaves_nothing() {
    let d = Daemon::start();
    let id = unique_id("fpstart");
    let out = run(
        &d,
        &fp_flags(&d, "start", "fail"),
        &id,
        &["/bin/sleep", "300"],
    );
    assert_ne!(out.status, 0, "{out:?}");
    assert!(
        out.stderr.contains("rsrunc-fp: injected start failure"),
        "the runtime's own message reaches the client: {out:?}"
    );
    // The task was created and never started: it can be deleted as it is.
    assert_eq!(d.task_status(&id).as_deref(), Some("CREATED"));
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

#[test]
fn a_failed_create_reaches_the_client_and_leaves_nothing() {
    let d = Daemon::start();
    let id = unique_id("fpcreate");
    let out = run(
        &d,
        &fp_flags(&d, "create", "fail"),
        &id,
        &["/bin/sleep", "300"],
    );
    assert_ne!(out.status, 0, "{out:?}");
    assert!(
        out.stderr.contains("rsrunc-fp: injected create failure"),
        "{out:?}"
    );
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

#[test]
fn a_failed_exec_is_a_clear_error_and_the_container_runs_on() {
    let d = Daemon::start();
    let id = unique_id("fpexec");
    let flags = fp_flags(&d, "exec", "fail");
    let mut detached = vec!["-d".to_string()];
    detached.extend(flags);
    run(&d, &detached, &id, &["/bin/sleep", "300"]).ok();
    d.wait_status(&id, "RUNNING");
    let out = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        &unique_id("e"),
        &id,
        "/bin/true",
    ]);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(
        out.stderr.contains("rsrunc-fp: injected exec failure"),
        "{out:?}"
    );
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    // (the check for leftovers sees a live container's cgroup)
    assert!(
        !cgroups_left(&d, &id).is_empty(),
        "no cgroup found for {id}"
    );
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

/// The container's process exits while the runtime's start has not returned yet: its
/// exit still comes after its start, with its status.
#[test]
fn an_exit_during_a_stalled_start_comes_after_the_start() {
    let d = Daemon::start();
    let events = d.events();
    let id = unique_id("fpstall");
    let t0 = Instant::now();
    let out = run(
        &d,
        &fp_flags(&d, "start", "stall-after:700"),
        &id,
        &["/bin/sh", "-c", "exit 3"],
    );
    assert_eq!(out.status, 3, "{out:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "the start did not stall"
    );
    remove(&d, &id);
    events.wait_for(Duration::from_secs(10), |t| {
        t.lines()
            .any(|l| l.contains("/tasks/delete") && l.contains(&id))
    });
    let text = events.text();
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("\"{id}\"")))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{text}"
    );
    let exit = text.lines().find(|l| l.contains("/tasks/exit")).unwrap();
    assert!(exit.contains("\"exit_status\":3"), "{exit}");
    assert_nothing_left(&d, &id);
}

/// The failpoint runtime's processes still running for container `id`.
fn fp_processes(id: &str) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.cmdline.first().is_some_and(|a| a == FP) && p.cmdline.iter().any(|a| a == id))
        .map(|p| p.pid)
        .collect()
}

/// How many times the shim ran the runtime's `command` for the container.
fn calls(d: &Daemon, id: &str, command: &str) -> usize {
    std::fs::read_to_string(d.bundle(id).join("rsrunc-fp.calls"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == command)
        .count()
}

/// Where runc keeps the container's state (both shims: Root's default, by namespace).
fn runc_state(d: &Daemon, id: &str) -> PathBuf {
    Path::new("/run/containerd/runc")
        .join(&d.namespace)
        .join(id)
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits up to `timeout` for a background ctr; None if it is still running (then killed).
fn finish(mut child: Child, timeout: Duration) -> Option<(i32, String)> {
    let done = poll_until(timeout, || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let out = child.wait_with_output().ok()?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    Some((out.status.code().unwrap_or(-1), err))
}

/// The shim is SIGKILLed while the runtime's create is under way (runc has created the
/// container, the failpoint runtime stalls before answering). containerd's cleanup
/// (`shim delete`) then leaves no container process, cgroup, mount or runc state, and the
/// stalled runtime process died with the shim (a parent-death signal under both shims);
/// under ours the dead shim's socket is gone too, while the Go shim leaves it in
/// /run/containerd/s.
#[test]
fn a_shim_killed_mid_create_leaves_nothing_behind() {
    let d = Daemon::start();
    let id = unique_id("fpkilled");
    let mut args = d.run_args(Oci::Runc, &["-d"], &id, &["/bin/sleep", "300"]);
    let at = args.iter().position(|a| a == "--rootfs").unwrap();
    let tail = args.split_off(at);
    args.extend(fp_flags(&d, "create", "stall-after:120000"));
    args.extend(tail);
    let ctr = d.ctr_spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let state = runc_state(&d, &id).join("state.json");
    assert!(
        poll_until(Duration::from_secs(30), || state.is_file()
            && !fp_processes(&id).is_empty()),
        "runc never created {id}"
    );
    let init: i32 = poll_until(Duration::from_secs(10), || {
        std::fs::read_to_string(d.bundle(&id).join("init.pid")).is_ok_and(|s| !s.trim().is_empty())
    })
    .then(|| {
        std::fs::read_to_string(d.bundle(&id).join("init.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
    .expect("no init.pid");
    let runtime_procs = fp_processes(&id);
    let socket = d.shim_socket(&id);
    let shims = d.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    kill(Pid::from_raw(shims[0]), Signal::SIGKILL).unwrap();

    let run = finish(ctr, Duration::from_secs(60)).expect("ctr run hung after the shim died");
    assert_ne!(run.0, 0, "ctr run succeeded: {run:?}");
    remove(&d, &id);
    assert!(
        poll_until(Duration::from_secs(15), || !alive(init)),
        "the container's init {init} is left"
    );
    assert!(
        !runc_state(&d, &id).exists(),
        "runc state {} is left",
        runc_state(&d, &id).display()
    );
    assert_nothing_left(&d, &id);

    let runtime_left: Vec<i32> = runtime_procs
        .iter()
        .copied()
        .filter(|p| alive(*p))
        .collect();
    let socket_left = socket.exists();
    eprintln!("after cleanup: runtime processes left {runtime_left:?}, socket left {socket_left}");
    if d.is_go_shim() {
        // Ours only (the Go shim leaves both): end the orphan so that it does not linger.
        for p in runtime_left {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(&socket);
        return;
    }
    assert!(
        runtime_left.is_empty(),
        "runtime processes outlived the shim: {runtime_left:?}"
    );
    assert!(
        !socket_left,
        "the dead shim's socket {} is left",
        socket.display()
    );
}

/// The shim is SIGKILLed while its container runs, and the runtime's `delete` hangs.
/// containerd runs the cleanup (`shim delete`) by itself once the shim's connection
/// closed, and kills it after 5 s; ours gives the runtime's delete 3 s of them (the
/// options' DeleteTimeout is left at its 2 minutes), then removes the container itself: no
/// container process, runtime process, runc state or cgroup is left, and containerd's log
/// carries the cleanup's warning saying what it did (containerd 1.6, 1.7 and 2.x). The Go
/// shim's cleanup hangs with the runtime until containerd kills it, and leaves all of
/// them.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim's cleanup hangs with the runtime's delete until containerd kills it, and leaves the container"
)]
fn a_killed_shims_cleanup_finishes_while_the_runtime_delete_hangs() {
    rsrunc_e2e::ours_only();
    for (version, flavor) in flavors() {
        killed_shim_with_a_hung_delete(&version, &Daemon::start_flavor(&runtime_name(), &flavor));
    }
}

/// [`a_killed_shims_cleanup_finishes_while_the_runtime_delete_hangs`] under containerd
/// `version`, `d`.
fn killed_shim_with_a_hung_delete(version: &str, d: &Daemon) {
    let id = unique_id("fpdeadshim");
    let mut flags = vec!["-d".to_string()];
    flags.extend(fp_flags(d, "delete", "hang"));
    run(
        d,
        &flags,
        &id,
        &["/bin/sh", "-c", "sleep 3047 & exec sleep 3048"],
    )
    .ok();
    d.wait_status(&id, "RUNNING");
    let init = d.task_pid(&id).expect("the task's pid");
    assert!(
        runc_state(d, &id).is_dir(),
        "{version}: no runc state for {id}"
    );
    assert!(
        !cgroups_left(d, &id).is_empty(),
        "{version}: no cgroup found for {id}"
    );
    let shims = d.shim_pids();
    assert_eq!(shims.len(), 1, "{version}: {shims:?}");
    kill(Pid::from_raw(shims[0]), Signal::SIGKILL).unwrap();

    // containerd's own cleanup, nothing asked of it.
    let cleaned = poll_until(Duration::from_secs(30), || {
        !runc_state(d, &id).exists() && cgroups_left(d, &id).is_empty()
    });
    assert!(
        cleaned,
        "{version}: runc state {} or cgroups {:?} are left",
        runc_state(d, &id).display(),
        cgroups_left(d, &id)
    );
    assert!(
        poll_until(Duration::from_secs(10), || !alive(init)),
        "{version}: the container's init {init} is alive"
    );
    let sleeps = || {
        processes()
            .iter()
            .any(|p| p.cmdline.get(1).is_some_and(|a| a == "3047" || a == "3048"))
    };
    assert!(
        poll_until(Duration::from_secs(10), || !sleeps()),
        "{version}: the container's processes are alive"
    );
    assert!(
        fp_processes(&id).is_empty(),
        "{version}: the hung runtime outlived the cleanup"
    );
    let said = format!("finished the delete of {id} itself");
    let log = d.log();
    let line = log.lines().find(|l| l.contains(&said));
    eprintln!("{version}: containerd's log: {line:?}");
    assert!(
        line.is_some(),
        "{version}: containerd's log does not carry the cleanup's warning:\n{log}"
    );
    remove(d, &id);
    assert_nothing_left(d, &id);
}

/// A kill the runtime never answers: ten concurrent Kills start the runtime once, every
/// one fails at the kill deadline with DeadlineExceeded naming the runtime, the verb and
/// the container, State and Pids answer meanwhile, the hung runtime is killed, and a
/// retry kills the container. The Go shim has no deadline: its Kills hang as long as the
/// runtime does, and so does `ctr task ls` (its State waits for the kill's lock).
#[test]
fn a_hung_kill_runs_once_times_out_and_can_be_retried() {
    let d = Daemon::start();
    let id = unique_id("fpkill");
    let mut flags = vec!["-d".to_string()];
    flags.extend(fp_flags_with(
        &d,
        "kill",
        "hang-first",
        "ControlTimeout = \"4s\"\n",
    ));
    run(&d, &flags, &id, &["/bin/sleep", "300"]).ok();
    d.wait_status(&id, "RUNNING");

    // SIGTERM: a SIGKILL the runtime cannot deliver in time the shim delivers itself
    // (a_forced_delete_finishes_while_the_runtime_kill_hangs).
    let kills: Vec<Child> = (0..10)
        .map(|_| d.ctr_spawn(&["task", "kill", "-s", "SIGTERM", &id]))
        .collect();
    assert!(
        poll_until(Duration::from_secs(20), || !fp_processes(&id).is_empty()),
        "the runtime's kill never started"
    );
    // State and Pids while the kill hangs.
    let ls = finish(d.ctr_spawn(&["task", "ls"]), Duration::from_secs(3));
    let ps = finish(d.ctr_spawn(&["task", "ps", &id]), Duration::from_secs(3));
    eprintln!("during the hung kill: task ls {ls:?}, task ps {ps:?}");
    if d.is_go_shim() {
        let answered: Vec<Option<(i32, String)>> = kills
            .into_iter()
            .map(|k| finish(k, Duration::from_secs(3)))
            .collect();
        eprintln!(
            "Go shim: kills after 3 s more: {answered:?}, runtime kills run: {}",
            calls(&d, &id, "kill")
        );
        for p in fp_processes(&id) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        remove(&d, &id);
        assert_nothing_left(&d, &id);
        return;
    }
    rsrunc_e2e::ours_only();
    let (code, err) = ls.expect("State hung behind the kill");
    assert_eq!(code, 0, "{err}");
    assert_eq!(ps.expect("Pids hung behind the kill").0, 0);
    for k in kills {
        let (code, err) = finish(k, Duration::from_secs(30)).expect("a Kill outlived its deadline");
        assert_ne!(code, 0, "{err}");
        assert!(
            err.contains(FP)
                && err.contains(&format!("kill {id}"))
                && err.contains("no answer within 4 s"),
            "{err}"
        );
        assert!(
            err.to_lowercase().contains("deadline"),
            "not DeadlineExceeded: {err}"
        );
    }
    assert_eq!(
        calls(&d, &id, "kill"),
        1,
        "the ten Kills were not coalesced"
    );
    assert!(
        fp_processes(&id).is_empty(),
        "the hung runtime was not killed"
    );
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    // The retry runs the runtime again (no failpoint the second time).
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

/// A runtime whose `kill` never answers: `ctr task rm -f` still finishes. At the kill
/// deadline the shim delivers the SIGKILL itself (to the init and, for `--all`, to every
/// process in the container's cgroup), the task exits and is deleted, and nothing is left.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr task rm -f hangs as long as the runtime's kill"
)]
fn a_forced_delete_finishes_while_the_runtime_kill_hangs() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let id = unique_id("fprmf");
    let mut flags = vec!["-d".to_string()];
    flags.extend(fp_flags_with(
        &d,
        "kill",
        "hang",
        "ControlTimeout = \"3s\"\n",
    ));
    // A second process beside the init: in its own pid namespace it dies with the init,
    // and `--all` (which ctr task rm -f sends) reaches it through the cgroup anyway.
    run(
        &d,
        &flags,
        &id,
        &["/bin/sh", "-c", "sleep 3017 & exec sleep 3018"],
    )
    .ok();
    d.wait_status(&id, "RUNNING");
    let init = d.task_pid(&id).expect("the task's pid");
    let rm = d.ctr_spawn(&["task", "rm", "-f", &id]);
    // (The bundle, which counts the calls, is gone once the task is deleted.)
    assert!(
        poll_until(Duration::from_secs(20), || !fp_processes(&id).is_empty()),
        "the runtime's kill never started"
    );
    let (code, err) =
        finish(rm, Duration::from_secs(60)).expect("ctr task rm -f still hangs after 60 s");
    assert_eq!(code, 0, "ctr task rm -f: {err}");
    assert_eq!(d.task_status(&id), None, "the task is still there");
    assert!(!alive(init), "the init {init} is alive");
    let sleeps_left = poll_until(Duration::from_secs(10), || {
        !processes()
            .iter()
            .any(|p| p.cmdline.get(1).is_some_and(|a| a == "3017"))
    });
    assert!(sleeps_left, "the container's second process is alive");
    assert!(fp_processes(&id).is_empty(), "the hung runtime is left");
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

/// A runtime whose `delete` never answers: `ctr task rm -f` still finishes. At the delete
/// deadline the shim finishes the delete itself: it kills what is left in the container's
/// cgroups, waits for the init's exit, removes the cgroups and the runtime's state
/// directory, says so in its log, and the task is deleted with nothing left.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr task rm -f hangs as long as the runtime's delete"
)]
fn a_forced_delete_finishes_while_the_runtime_delete_hangs() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let id = unique_id("fpdelhang");
    let mut flags = vec!["-d".to_string()];
    flags.extend(fp_flags_with(
        &d,
        "delete",
        "hang",
        "DeleteTimeout = \"3s\"\n",
    ));
    run(
        &d,
        &flags,
        &id,
        &["/bin/sh", "-c", "sleep 3027 & exec sleep 3028"],
    )
    .ok();
    d.wait_status(&id, "RUNNING");
    let init = d.task_pid(&id).expect("the task's pid");
    delete_with_a_hung_runtime(&d, &["task", "rm", "-f", &id], &id, init);
    assert!(
        !processes()
            .iter()
            .any(|p| p.cmdline.get(1).is_some_and(|a| a == "3027" || a == "3028")),
        "the container's processes are alive"
    );
}

/// The same for a container that was created and never started (its runtime's `start`
/// failed).
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr task rm -f hangs as long as the runtime's delete"
)]
fn a_forced_delete_of_a_created_container_finishes_while_the_runtime_delete_hangs() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let id = unique_id("fpdelcreated");
    let mut flags = fp_flags_with(&d, "delete", "hang", "DeleteTimeout = \"3s\"\n");
    flags.extend(["--annotation".into(), "rsrunc.failpoint.start=fail".into()]);
    let out = run(&d, &flags, &id, &["/bin/sleep", "300"]);
    assert!(
        out.stderr.contains("rsrunc-fp: injected start failure"),
        "{out:?}"
    );
    assert_eq!(d.task_status(&id).as_deref(), Some("CREATED"));
    let init = d.task_pid(&id).expect("the created task's pid");
    delete_with_a_hung_runtime(&d, &["task", "rm", "-f", &id], &id, init);
}

/// A container in the host's pid namespace whose init died while the runtime's `kill
/// --all` failed leaves a process in its cgroup; its runtime's `delete` hangs: at the
/// delete deadline the shim kills that process itself, and `ctr task rm` finishes with
/// nothing left.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr task rm hangs as long as the runtime's delete"
)]
fn a_delete_while_the_runtime_hangs_kills_what_is_left_in_the_cgroup() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let id = unique_id("fpdelleft");
    // The host's pid namespace, through this test's own (pid 1's may not be open to it).
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    let mut flags = vec!["-d".to_string(), "--with-ns".into(), host_pid_ns];
    flags.extend(fp_flags_with(
        &d,
        "delete",
        "hang",
        "DeleteTimeout = \"3s\"\n",
    ));
    flags.extend(["--annotation".into(), "rsrunc.failpoint.kill=fail".into()]);
    run(
        &d,
        &flags,
        &id,
        &["/bin/sh", "-c", "sleep 3037 & exec sleep 3038"],
    )
    .ok();
    d.wait_status(&id, "RUNNING");
    let init = d.task_pid(&id).expect("the task's pid");
    let left = || {
        processes()
            .into_iter()
            .find(|p| p.cmdline.get(1).is_some_and(|a| a == "3037"))
            .map(|p| p.pid)
    };
    assert!(
        poll_until(Duration::from_secs(10), || left().is_some()),
        "no sleep 3037 in {id}"
    );
    // The runtime cannot kill: the init dies from outside, its child stays.
    kill(Pid::from_raw(init), Signal::SIGKILL).unwrap();
    d.wait_status(&id, "STOPPED");
    let child = left().expect("the init's child died with it");
    delete_with_a_hung_runtime(&d, &["task", "rm", &id], &id, init);
    assert!(
        !alive(child),
        "the process left in the cgroup ({child}) is alive"
    );
}

/// `ctr task rm` (`rm`, its arguments) of container `id` (init `init`), whose runtime
/// hangs in `delete`: it succeeds once the delete deadline has passed, and leaves no task,
/// init, runtime process, runtime state or cgroup; the shim's log says what it did;
/// `ctr c rm` then leaves nothing at all.
fn delete_with_a_hung_runtime(d: &Daemon, rm: &[&str], id: &str, init: i32) {
    assert!(runc_state(d, id).is_dir(), "no runc state for {id}");
    assert!(!cgroups_left(d, id).is_empty(), "no cgroup found for {id}");
    let ctr = d.ctr_spawn(rm);
    assert!(
        poll_until(Duration::from_secs(20), || !fp_processes(id).is_empty()),
        "the runtime's delete never started"
    );
    let (code, err) =
        finish(ctr, Duration::from_secs(60)).expect("ctr task rm still hangs after 60 s");
    assert_eq!(code, 0, "ctr {rm:?}: {err}");
    assert_eq!(d.task_status(id), None, "the task is still there");
    assert!(!alive(init), "the init {init} is alive");
    assert!(fp_processes(id).is_empty(), "the hung runtime is left");
    assert!(
        !runc_state(d, id).exists(),
        "runc state {} is left",
        runc_state(d, id).display()
    );
    // Removed by the shim before it answered: nothing to wait for.
    assert_eq!(cgroups_left(d, id), Vec::<PathBuf>::new(), "cgroups left");
    let log = d.log();
    let said = format!("finished the delete of {id} itself");
    let line = log.lines().find(|l| l.contains(&said));
    eprintln!("the shim's log: {line:?}");
    assert!(
        line.is_some(),
        "the shim's log does not say it finished the delete:\n{log}"
    );
    remove(d, id);
    assert_nothing_left(d, id);
}

/// A create the runtime never finishes (runc created the container, then the runtime
/// hangs): at the create deadline the runtime is killed, Create fails with
/// DeadlineExceeded, and nothing of the container is left.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr run hangs as long as the runtime"
)]
fn a_hung_create_times_out_and_leaves_nothing() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let id = unique_id("fphungcreate");
    let flags = fp_flags_with(
        &d,
        "create",
        "stall-after:600000",
        "CreateTimeout = \"5s\"\n",
    );
    let out = run(&d, &flags, &id, &["/bin/sleep", "300"]);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!("create {id}")) && out.stderr.contains("no answer within 5 s"),
        "{out:?}"
    );
    assert!(fp_processes(&id).is_empty(), "the hung runtime is left");
    assert!(!runc_state(&d, &id).exists(), "runc state is left");
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

/// A create the runtime never finishes (runc created the container, then the runtime
/// hangs), and the runtime's `delete` of its cleanup hangs too: at the delete deadline the
/// shim removes the container itself (SIGKILL to runc's init in its cgroups, the cgroups and
/// runc's state removed), says so in its log, and nothing of the container is left.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr run hangs as long as the runtime"
)]
fn a_hung_create_whose_cleanup_hangs_too_leaves_nothing() {
    rsrunc_e2e::ours_only();
    create_whose_cleanup_hangs("stall-after:600000", "no answer within 5 s");
}

/// The same for a create that fails after runc created the container.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim has no deadline, ctr run hangs as long as the runtime's delete"
)]
fn a_failed_create_whose_cleanup_hangs_leaves_nothing() {
    rsrunc_e2e::ours_only();
    create_whose_cleanup_hangs("fail-after", "rsrunc-fp: injected create failure");
}

/// `ctr run` of a container whose runtime's `create` does `action` (after running runc's)
/// and whose runtime's `delete` hangs: it fails with `error`, and nothing is left, the
/// shim having removed the container itself at the delete deadline.
fn create_whose_cleanup_hangs(action: &str, error: &str) {
    let d = Daemon::start();
    let id = unique_id("fpcreatedel");
    let mut flags = fp_flags_with(
        &d,
        "create",
        action,
        "CreateTimeout = \"5s\"\nDeleteTimeout = \"3s\"\n",
    );
    flags.extend(["--annotation".into(), "rsrunc.failpoint.delete=hang".into()]);
    let out = run(&d, &flags, &id, &["/bin/sleep", "300"]);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stderr.contains(error), "{out:?}");
    assert!(fp_processes(&id).is_empty(), "the hung runtime is left");
    assert!(
        !runc_state(&d, &id).exists(),
        "runc state {} is left",
        runc_state(&d, &id).display()
    );
    assert_eq!(cgroups_left(&d, &id), Vec::<PathBuf>::new(), "cgroups left");
    let runc_inits: Vec<i32> = processes()
        .into_iter()
        .filter(|p| p.cmdline.get(1).is_some_and(|a| a == "init"))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid))
                .is_ok_and(|c| c.contains(&format!("/{}/{id}", d.namespace)))
        })
        .map(|p| p.pid)
        .collect();
    assert_eq!(runc_inits, Vec::<i32>::new(), "runc init of {id} is left");
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("the shim removed the container itself"));
    eprintln!("the shim's log: {line:?}");
    assert!(
        line.is_some(),
        "the shim's log does not say it removed {id}:\n{log}"
    );
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}

/// A runtime that prints garbage for `ps`: Pids fails with an error that says the output
/// could not be read, and the container runs on.
#[test]
fn garbage_from_the_runtime_is_an_error_not_a_crash() {
    let d = Daemon::start();
    let id = unique_id("fpgarbage");
    let mut flags = vec!["-d".to_string()];
    flags.extend(fp_flags(&d, "ps", "garbage"));
    run(&d, &flags, &id, &["/bin/sleep", "300"]).ok();
    d.wait_status(&id, "RUNNING");
    let out = d.ctr(&["task", "ps", &id]);
    assert_ne!(out.status, 0, "{out:?}");
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    remove(&d, &id);
    assert_nothing_left(&d, &id);
}
