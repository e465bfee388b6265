#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! containerd as systemd runs it: `Type=notify`, so containerd and every shim it starts
//! carry `NOTIFY_SOCKET` (and `INVOCATION_ID`), which every test daemon here also does
//! (see `rsrunc_e2e::daemon`). With the 64-character ids Docker and Kubernetes use, a
//! runtime that is handed `NOTIFY_SOCKET` puts an sd_notify proxy socket under its state
//! directory, a path too long to bind, and `runc start` fails. These tests run, exec and
//! open terminals with such ids under runc, crun and youki, through ctr and through
//! Docker, and check that containers see nothing of containerd's service manager.

use rsrunc_e2e::daemon::task_exec;
use rsrunc_e2e::docker::{Docker, IMAGE};
use rsrunc_e2e::{long_id, Daemon, Oci};

/// What a systemd-started containerd has in its environment and no container may see.
const SUPERVISOR_VARS: [&str; 3] = ["NOTIFY_SOCKET=", "INVOCATION_ID=", "LISTEN_FDS="];

/// youki (0.7) needs PATH in the environment even for absolute commands.
const PATH_ENV: [&str; 2] = ["--env", "PATH=/bin"];

fn assert_no_supervisor_vars(what: &str, env: &str) {
    for var in SUPERVISOR_VARS {
        assert!(
            !env.lines().any(|l| l.starts_with(var)),
            "{what}: the container sees {var}..., which belongs to containerd's unit:\n{env}"
        );
    }
}

#[test]
fn run_exec_and_terminals_with_64_character_ids_under_every_runtime() {
    let d = Daemon::start();
    // The daemon really runs as a notify service: containerd reported itself ready.
    assert!(
        d.notifications().iter().any(|n| n.contains("READY=1")),
        "containerd did not notify the test's NOTIFY_SOCKET; the test would prove nothing"
    );
    for oci in [Oci::Runc, Oci::Crun, Oci::Youki] {
        // Attached run: output, exit code, environment.
        let id = long_id();
        let out = d.run(
            oci,
            &[&PATH_ENV[..], &["--rm"]].concat(),
            &id,
            &["/bin/sh", "-c", "env; echo ran; exit 3"],
        );
        assert_eq!(out.status, 3, "{oci:?} run {id}: {out:?}");
        assert!(out.stdout.contains("ran"), "{oci:?}: {out:?}");
        assert_no_supervisor_vars(&format!("{oci:?} run"), &out.stdout);

        // Detached, then exec with and without a terminal.
        let id = long_id();
        d.run(
            oci,
            &[&PATH_ENV[..], &["-d"]].concat(),
            &id,
            &["/bin/sleep", "300"],
        )
        .ok();
        d.wait_status(&id, "RUNNING");
        let exec = d.ctr(&task_exec("e1", &id, &["/bin/sh", "-c", "env; exit 5"]));
        assert_eq!(exec.status, 5, "{oci:?} exec: {exec:?}");
        assert_no_supervisor_vars(&format!("{oci:?} exec"), &exec.stdout);
        let args: Vec<String> = [
            "task",
            "exec",
            "-t",
            "--exec-id",
            "t1",
            &id,
            "/bin/sh",
            "-c",
            "sleep 0.5; stty size; exit 6",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (tty, code) = d.ctr_in_pty(30, 90, &args);
        assert_eq!(code, 6, "{oci:?} exec -t: {tty:?}");
        assert!(tty.contains("30 90"), "{oci:?} exec -t: {tty:?}");
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();

        // A terminal for the init itself.
        let args = d.run_args(
            oci,
            &[&PATH_ENV[..], &["-t", "--rm"]].concat(),
            &long_id(),
            &["/bin/sh", "-c", "sleep 0.5; stty size; exit 4"],
        );
        let (tty, code) = d.ctr_in_pty(40, 100, &args);
        assert_eq!(code, 4, "{oci:?} run -t: {tty:?}");
        assert!(tty.contains("40 100"), "{oci:?} run -t: {tty:?}");
    }
}

/// A container that wants sd_notify itself names its socket in its own spec; that value
/// reaches it unchanged (a runtime given containerd's NOTIFY_SOCKET would replace it with
/// the path of its proxy).
#[test]
fn a_containers_own_notify_socket_reaches_it_unchanged() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let out = d.run(
            oci,
            &["--rm", "--env", "NOTIFY_SOCKET=/run/app/notify.sock"],
            &long_id(),
            &["/bin/sh", "-c", "echo \"socket=$NOTIFY_SOCKET\""],
        );
        assert_eq!(out.status, 0, "{oci:?}: {out:?}");
        assert_eq!(out.stdout.trim(), "socket=/run/app/notify.sock", "{oci:?}");
    }
}

/// Docker's own ids, through the dotted runtime name and through daemon.json entries.
#[test]
fn docker_runs_and_execs_with_its_real_ids() {
    let d = Docker::start();
    for oci in [Oci::Runc, Oci::Crun, Oci::Youki] {
        let rt = d.runtime(oci);
        let out = d.docker(&[
            "run",
            "--rm",
            "--runtime",
            &rt,
            "-e",
            "PATH=/bin",
            IMAGE,
            "sh",
            "-c",
            "env; exit 3",
        ]);
        assert_eq!(out.status, 3, "{oci:?} docker run: {out:?}");
        assert_no_supervisor_vars(&format!("{oci:?} docker run"), &out.stdout);

        let id = d.ok(&[
            "run",
            "-d",
            "--runtime",
            &rt,
            "-e",
            "PATH=/bin",
            IMAGE,
            "sleep",
            "300",
        ]);
        assert_eq!(id.len(), 64, "a Docker id: {id}");
        let exec = d.docker(&["exec", &id, "sh", "-c", "env; exit 5"]);
        assert_eq!(exec.status, 5, "{oci:?} docker exec: {exec:?}");
        assert_no_supervisor_vars(&format!("{oci:?} docker exec"), &exec.stdout);
        d.ok(&["rm", "-f", &id]);
    }
}
