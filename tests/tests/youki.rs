#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! youki, the third runc-compatible runtime, chosen through BinaryName like crun: the
//! lifecycle, exec, pause, Pids and a failing create, end to end.
//!
//! youki (0.7) needs PATH in the container's environment even for an absolute command,
//! and `ctr run --rootfs` sets none, so every run here passes one.

use rsrunc_e2e::daemon::task_exec;
use rsrunc_e2e::{ours_only, unique_id, CtrOutput, Daemon, Oci};

const ENV: [&str; 2] = ["--env", "PATH=/bin"];

#[test]
fn youki_runs_execs_pauses_and_reports_failures() {
    let d = Daemon::start();

    // Attached, with output and the exit code.
    let out = d.run(
        Oci::Youki,
        &[&ENV[..], &["--rm"]].concat(),
        &unique_id("yk"),
        &["/bin/sh", "-c", "echo hello from youki; exit 3"],
    );
    assert_eq!(out.status, 3, "{out:?}");
    assert_eq!(out.stdout.trim(), "hello from youki");

    // Detached: exec, pause and resume, Pids, SIGKILL.
    let id = unique_id("ykd");
    d.run(
        Oci::Youki,
        &[&ENV[..], &["-d"]].concat(),
        &id,
        &["/bin/sleep", "300"],
    )
    .ok();
    d.wait_status(&id, "RUNNING");
    let exec = d.ctr(&task_exec(
        &unique_id("e"),
        &id,
        &["/bin/sh", "-c", "echo from-exec; exit 4"],
    ));
    assert_eq!(exec.status, 4, "{exec:?}");
    assert_eq!(exec.stdout.trim(), "from-exec");
    d.ctr(&["task", "pause", &id]).ok();
    d.wait_status(&id, "PAUSED");
    d.ctr(&["task", "resume", &id]).ok();
    d.wait_status(&id, "RUNNING");
    let ps = d.ctr(&["task", "ps", &id]).ok().stdout;
    assert_eq!(ps.lines().skip(1).count(), 1, "one process: {ps}");
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "rm", &id]).ok();
    d.ctr(&["containers", "rm", &id]).ok();

    // A command that does not exist.
    let bad = run_a_missing_command(&d);
    assert_ne!(bad.status, 0);

    assert!(d.shims_left().is_empty(), "a shim outlived its containers");
    assert!(d.zombies().is_empty());
}

/// containerd's Go shim reads runc's log format only ("msg"); youki writes "message".
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: youki's own error in the client's error"
)]
fn youki_errors_reach_the_client() {
    ours_only();
    let d = Daemon::start();
    let bad = run_a_missing_command(&d);
    assert_ne!(bad.status, 0);
    assert!(
        bad.stderr.contains("no-such-command"),
        "the error does not name the command: {}",
        bad.stderr
    );
}

/// `ctr run --rm` under youki of a command that does not exist.
fn run_a_missing_command(d: &Daemon) -> CtrOutput {
    d.run(
        Oci::Youki,
        &[&ENV[..], &["--rm"]].concat(),
        &unique_id("ykbad"),
        &["/bin/no-such-command"],
    )
}
