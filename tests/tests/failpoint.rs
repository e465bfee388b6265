#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Failure injection: the shim runs `rsrunc-fp` (tests/src/bin/rsrunc-fp.rs) as its runtime
//! through the ordinary BinaryName option, and the container's annotations make a runtime
//! command fail or stall. The same tests run against both shims.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rsrunc_e2e::{poll_until, unique_id, Daemon, Oci};

/// `ctr run` flags that make the shim run the failpoint runtime, and set the failpoint
/// `rsrunc.failpoint.<command>=<action>` on the container.
fn fp_flags(d: &Daemon, command: &str, action: &str) -> Vec<String> {
    let fp = env!("CARGO_BIN_EXE_rsrunc-fp");
    let mut flags: Vec<String> = if d.is_go_shim() {
        vec!["--runc-binary".into(), fp.into()]
    } else {
        let toml = format!("BinaryName = \"{fp}\"\n");
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
