#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Checkpoint and restore with CRIU through `ctr`, under runc.
//!
//! The daemon is containerd 2.x: its `ctr task checkpoint` sends its flags (`--exit`,
//! `--image-path`) as `containerd.runc.v1.CheckpointOptions` to any runtime, where 1.7's
//! sends them only to runtimes named `io.containerd.runc.*` and drops them for ours (the
//! container checkpoint and live restore, which need no options, also run on 1.7).
//! criu is trixie's (scripts/setup-host.sh): bookworm's cannot dump on this kernel.
//!
//! A counter proves a restore: a shell loop counting in a variable and writing each value
//! to a file on a bind mount (renamed into place, so a kill never leaves it half
//! written), so a restored process goes on from where it was, not from 1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rsrunc_e2e::cri::{self, CriDaemon, Status};
use rsrunc_e2e::daemon::{flavors, processes};
use rsrunc_e2e::docker::Docker;
use rsrunc_e2e::{image, poll_until, runtime_name, unique_id, Daemon, Oci};

const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /out/n.new; mv /out/n.new /out/n; sleep 0.05; done";

fn daemon() -> Daemon {
    let (_, flavor) = flavors()
        .into_iter()
        .find(|(v, _)| v.starts_with('2'))
        .expect("setup-host.sh extracts containerd 2.x under /opt/rsrunc-test");
    Daemon::start_flavor(&runtime_name(), &flavor)
}

/// A directory to bind-mount at /out, and the `--mount` flag for it.
fn out_dir(d: &Daemon, id: &str) -> (PathBuf, String) {
    let dir = d.dir().join(format!("out-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = format!("type=bind,src={},dst=/out,options=rbind:rw", dir.display());
    (dir, flag)
}

/// The counter's last value (each value is written whole to a new file, then renamed).
fn count(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("n"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits until the counter reaches at least `n`; returns the value seen.
fn wait_count(dir: &Path, n: u64) -> u64 {
    let mut seen = None;
    let ok = poll_until(Duration::from_secs(30), || {
        seen = count(dir).or(seen);
        seen.is_some_and(|v| v >= n)
    });
    assert!(ok, "the counter did not reach {n}: it is at {seen:?}");
    seen.unwrap()
}

/// Runs the counter detached from the busybox rootfs.
fn run_counter(d: &Daemon, id: &str) -> PathBuf {
    let (dir, mount) = out_dir(d, id);
    d.run(
        Oci::Runc,
        &["-d", "--mount", &mount],
        id,
        &["/bin/sh", "-c", COUNTER],
    )
    .ok();
    d.wait_status(id, "RUNNING");
    dir
}

/// Runs the counter detached from the imported busybox image (restore needs an image).
fn run_counter_from_image(d: &Daemon, id: &str) -> PathBuf {
    let (dir, mount) = out_dir(d, id);
    d.ctr(&[
        "run",
        "-d",
        "--runtime",
        &runtime_name(),
        "--mount",
        &mount,
        image::IMAGE,
        id,
        "/bin/sh",
        "-c",
        COUNTER,
    ])
    .ok();
    d.wait_status(id, "RUNNING");
    dir
}

fn kill_and_remove(d: &Daemon, id: &str) {
    d.ctr(&["task", "kill", "-s", "SIGKILL", id]).ok();
    d.wait_status(id, "STOPPED");
    d.ctr(&["task", "delete", id]).ok();
    d.ctr(&["container", "rm", id]).ok();
}

/// Checkpoint images are named by the second they were taken in: the next one of the
/// same task could collide.
fn remove_checkpoint_images(d: &Daemon) {
    let ls = d.ctr(&["images", "ls", "-q"]).ok();
    for name in ls.stdout.lines().filter(|l| l.contains("/checkpoint/")) {
        d.ctr(&["images", "rm", "--sync", name]).ok();
    }
}

/// criu processes under this daemon's shims (other tests' may be running meanwhile).
fn criu_processes(d: &Daemon) -> Vec<i32> {
    let shims = d.shim_pids();
    let all = processes();
    let parent = |pid: i32| all.iter().find(|p| p.pid == pid).map(|p| p.ppid);
    all.iter()
        .filter(|p| p.cmdline.first().is_some_and(|a| a.ends_with("criu")))
        .filter(|p| {
            let mut pid = p.ppid;
            for _ in 0..8 {
                if shims.contains(&pid) {
                    return true;
                }
                match parent(pid) {
                    Some(pp) if pp > 1 => pid = pp,
                    _ => return false,
                }
            }
            false
        })
        .map(|p| p.pid)
        .collect()
}

#[test]
fn task_checkpoint_leaves_the_task_running_or_stops_it_with_exit() {
    let d = daemon();
    let id = unique_id("ckpt");
    let out = run_counter(&d, &id);
    wait_count(&out, 3);

    // Into containerd's content store: ctr prints the checkpoint's name.
    let r = d.ctr(&["task", "checkpoint", &id]).ok();
    assert!(r.stdout.contains(&id), "checkpoint name: {r:?}");
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    let after = wait_count(&out, 1);
    wait_count(&out, after + 3);
    remove_checkpoint_images(&d);

    // Into a directory of the client's: CRIU's images are there.
    let images = d.dir().join("images");
    let r = d
        .ctr(&[
            "task",
            "checkpoint",
            "--image-path",
            images.to_str().unwrap(),
            &id,
        ])
        .ok();
    assert!(r.stdout.trim().is_empty(), "{r:?}");
    assert!(
        images.join("inventory.img").exists(),
        "no CRIU images in {}",
        images.display()
    );
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    remove_checkpoint_images(&d);

    // --exit: the task is stopped by the dump.
    d.ctr(&["task", "checkpoint", "--exit", &id]).ok();
    d.wait_status(&id, "STOPPED");
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "rm", &id]).ok();
    assert!(criu_processes(&d).is_empty(), "criu left running");
}

#[test]
fn container_checkpoint_and_live_restore_into_a_new_id_keep_memory() {
    // containerd 2.x, and 1.7 (whose ctr sends no options: these flows need none).
    for d in [daemon(), Daemon::start()] {
        live_restore_keeps_memory(d);
    }
}

fn live_restore_keeps_memory(d: Daemon) {
    image::import_busybox(&d);
    let id = unique_id("orig");
    let out = run_counter_from_image(&d, &id);
    let before = wait_count(&out, 20);
    let reference = format!("checkpoint/{id}:1");
    d.ctr(&["container", "checkpoint", "--task", &id, &reference])
        .ok();
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    kill_and_remove(&d, &id);
    let at_kill = count(&out).unwrap();

    let restored = unique_id("restored");
    d.ctr(&["container", "restore", "--live", &restored, &reference])
        .ok();
    d.wait_status(&restored, "RUNNING");
    // The bind mount is the original's: the restored counter writes the same file, from
    // where it was at the checkpoint (at least `before`), never from 1.
    let mut first = None;
    let moved = poll_until(Duration::from_secs(30), || {
        first = count(&out).filter(|&v| v != at_kill);
        first.is_some()
    });
    assert!(moved, "the restored counter never wrote (still {at_kill})");
    let first = first.unwrap();
    assert!(
        first > before,
        "the restored counter started again at {first} (it was past {before} at the checkpoint)"
    );
    wait_count(&out, first + 5);

    // The restored task is a task like any other: exec into it, kill it, delete it.
    let r = d
        .ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &restored,
            "/bin/sh",
            "-c",
            "echo $((40+2))",
        ])
        .ok();
    assert_eq!(r.stdout, "42\n");
    // Its cgroups are known: stats work as for a created task.
    let m = d.ctr(&["task", "metrics", &restored]).ok();
    assert!(m.stdout.contains("memory"), "{m:?}");
    kill_and_remove(&d, &restored);
    assert!(criu_processes(&d).is_empty(), "criu left running");
}

#[test]
fn a_paused_container_stays_paused_after_a_checkpoint() {
    let d = daemon();
    let id = unique_id("paused");
    let out = run_counter(&d, &id);
    wait_count(&out, 3);
    d.ctr(&["task", "pause", &id]).ok();
    d.wait_status(&id, "PAUSED");
    d.ctr(&["task", "checkpoint", &id]).ok();
    assert_eq!(d.task_status(&id).as_deref(), Some("PAUSED"));
    let frozen = count(&out).unwrap();
    d.ctr(&["task", "resume", &id]).ok();
    d.wait_status(&id, "RUNNING");
    wait_count(&out, frozen + 3);
    kill_and_remove(&d, &id);
}

#[test]
fn a_failed_dump_names_criu_log_and_leaves_the_task_running() {
    let d = daemon();
    let id = unique_id("tcp");
    // An established TCP connection inside the container, which CRIU refuses to dump
    // without --tcp-established (ctr has no flag for it).
    let script = "mkfifo /tmp/f; sleep 1000 > /tmp/f & \
                  sleep 1000 | nc -l -p 7777 > /dev/null & \
                  until nc 127.0.0.1 7777 < /tmp/f > /dev/null; do sleep 0.1; done";
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sh", "-c", script])
        .ok();
    d.wait_status(&id, "RUNNING");
    let pid = task_pid(&d, &id);
    let established = poll_until(Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).is_ok_and(|t| {
            t.lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(3) == Some("01"))
        })
    });
    assert!(established, "no established connection in the container");

    let r = d.ctr(&["task", "checkpoint", &id]);
    assert_ne!(r.status, 0, "{r:?}");
    assert!(
        r.stderr.contains("criu-dump.log"),
        "the error names no CRIU log: {r:?}"
    );
    // The Go shim says "path= FILE", ours "CRIU log FILE: ...".
    let log = r
        .stderr
        .split_whitespace()
        .find_map(|w| {
            let end = w.find("criu-dump.log")? + "criu-dump.log".len();
            Some(w[..end].trim_start_matches("path="))
        })
        .unwrap();
    eprintln!("checkpoint failed as expected: {}", r.stderr.trim());
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(
        text.contains("TCP"),
        "CRIU's log does not mention TCP: {log}"
    );
    if rsrunc_e2e::testing_ours() {
        // Ours also quotes CRIU's last error lines.
        assert!(r.stderr.contains("Error (criu/"), "{r:?}");
    }
    assert!(criu_processes(&d).is_empty(), "criu left running");
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    let ls = d.ctr(&["task", "ls"]).ok();
    assert_eq!(ls.stdout.lines().count(), 2, "{ls:?}");
    kill_and_remove(&d, &id);
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim publishes no TaskCheckpointed"
)]
fn a_checkpoint_publishes_task_checkpointed() {
    rsrunc_e2e::ours_only();
    let d = daemon();
    let id = unique_id("event");
    let out = run_counter(&d, &id);
    wait_count(&out, 2);
    let ev = d.events();
    d.ctr(&["task", "checkpoint", &id]).ok();
    assert!(
        ev.wait_for(Duration::from_secs(10), |t| t
            .contains("/tasks/checkpointed")
            && t.contains(&id)),
        "no /tasks/checkpointed event:\n{}",
        ev.text()
    );
    kill_and_remove(&d, &id);
}

fn task_pid(d: &Daemon, id: &str) -> i32 {
    let ls = d.ctr(&["task", "ls"]).ok();
    ls.stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no task {id}: {ls:?}"))
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the Go shim leaves the CRIU work directory to the runtime, which crun does not make"
)]
fn crun_checkpoints_and_restores() {
    rsrunc_e2e::ours_only();
    let d = daemon();
    image::import_busybox(&d);
    let id = unique_id("crun");
    let (out, mount) = out_dir(&d, &id);
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--runtime".into(),
        runtime_name(),
    ];
    args.extend(d.oci_flags(Oci::Crun));
    args.extend(["--mount".into(), mount, image::IMAGE.into(), id.clone()]);
    args.extend(["/bin/sh".into(), "-c".into(), COUNTER.into()]);
    d.ctr(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    d.wait_status(&id, "RUNNING");
    let before = wait_count(&out, 20);

    let images = d.dir().join("images-crun");
    d.ctr(&[
        "task",
        "checkpoint",
        "--image-path",
        images.to_str().unwrap(),
        &id,
    ])
    .ok();
    assert!(images.join("inventory.img").exists(), "no CRIU images");
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    let reference = format!("checkpoint/{id}:1");
    d.ctr(&["container", "checkpoint", "--task", &id, &reference])
        .ok();
    kill_and_remove(&d, &id);
    let at_kill = count(&out).unwrap();

    let restored = unique_id("crun-restored");
    d.ctr(&["container", "restore", "--live", &restored, &reference])
        .ok();
    d.wait_status(&restored, "RUNNING");
    let mut first = None;
    let moved = poll_until(Duration::from_secs(30), || {
        first = count(&out).filter(|&v| v != at_kill);
        first.is_some()
    });
    assert!(moved, "the restored counter never wrote");
    assert!(
        first.unwrap() > before,
        "restarted at {first:?}, was past {before}"
    );
    kill_and_remove(&d, &restored);
}

#[test]
fn youki_cannot_checkpoint_and_says_so() {
    let d = daemon();
    let id = unique_id("youki");
    let (out, mount) = out_dir(&d, &id);
    // youki 0.7 needs PATH in the container's environment (tests/tests/youki.rs).
    let flags = ["-d", "--env", "PATH=/bin", "--mount", &mount];
    d.run(Oci::Youki, &flags, &id, &["/bin/sh", "-c", COUNTER])
        .ok();
    d.wait_status(&id, "RUNNING");
    wait_count(&out, 3);
    // youki 0.7 has no `checkpoint` (only a misspelt, unfinished `checkpointt`).
    let r = d.ctr(&["task", "checkpoint", &id]);
    eprintln!("youki: {r:?}");
    assert_ne!(r.status, 0, "{r:?}");
    assert!(
        r.stderr.contains("unrecognized subcommand 'checkpoint'"),
        "{r:?}"
    );
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));
    kill_and_remove(&d, &id);
}

/// The digests of the blobs in containerd's content store for Docker.
fn moby_content(d: &Docker) -> Vec<String> {
    let out = std::process::Command::new(rsrunc_e2e::tool("ctr"))
        .arg("--address")
        .arg(&d.containerd.socket)
        .args(["--namespace", "moby", "content", "ls", "-q"])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The counter's values in `docker logs`.
fn docker_counts(d: &Docker, id: &str) -> Vec<u64> {
    d.ok(&["logs", id])
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Docker's default `checkpoint create` (the container exits after the dump) reaches only
/// runtimes named `io.containerd.runc.*`: containerd's client library
/// (`WithCheckpointTaskExit`) drops the exit for any other name, so ours would be left
/// running. `--leave-running` and a kill give the same user-visible flow under both.
#[test]
fn docker_checkpoint_create_and_start_from_it() {
    let d = Docker::start_with(|_| serde_json::json!({ "experimental": true }));
    let rt = d.runtime(Oci::Runc);
    let counter = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done";
    let id = d.run_detached(&rt, &[], &["sh", "-c", counter]);
    let reached = poll_until(Duration::from_secs(30), || {
        docker_counts(&d, &id).last().is_some_and(|&v| v >= 20)
    });
    assert!(
        reached,
        "the counter did not count: {:?}",
        docker_counts(&d, &id)
    );

    let content_before = moby_content(&d);
    d.ok(&["checkpoint", "create", "--leave-running", &id, "cp1"]);
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    assert!(d.ok(&["checkpoint", "ls", &id]).contains("cp1"));
    d.ok(&["kill", &id]);
    d.wait_state(&id, "exited");
    let at_kill = *docker_counts(&d, &id).last().unwrap();

    // Docker uploads the checkpoint to containerd again and fails ("already exists") if
    // containerd still holds the identical upload of `checkpoint create`: a user waits
    // for containerd's garbage collector as this does.
    let collected = poll_until(Duration::from_secs(30), || {
        moby_content(&d) == content_before
    });
    assert!(collected, "containerd kept the checkpoint's content");
    d.ok(&["start", "--checkpoint", "cp1", &id]);
    d.wait_state(&id, "running");
    let mut counts = Vec::new();
    let went_on = poll_until(Duration::from_secs(30), || {
        counts = docker_counts(&d, &id);
        counts.last().is_some_and(|&v| v > at_kill + 5)
    });
    assert!(went_on, "the restored counter did not go on: {counts:?}");
    assert_eq!(
        counts.iter().filter(|&&v| v == 1).count(),
        1,
        "the restored counter started again from 1: {counts:?}"
    );
    d.ok(&["rm", "-f", &id]);
    assert!(
        criu_processes(&d.containerd).is_empty(),
        "criu left running"
    );
}

/// The counter file of a container of a pod, read through ExecSync.
fn cri_count(c: &CriDaemon, id: &str) -> Option<u64> {
    let r = c.cri.exec_sync(id, &["/bin/cat", "/tmp/n"], 10).ok()?;
    String::from_utf8_lossy(&r.stdout).trim().parse().ok()
}

fn cri_wait_count(c: &CriDaemon, id: &str, n: u64) -> u64 {
    let mut seen = None;
    let ok = poll_until(Duration::from_secs(30), || {
        seen = cri_count(c, id).or(seen);
        seen.is_some_and(|v| v >= n)
    });
    assert!(ok, "the counter of {id} did not reach {n}: {seen:?}");
    seen.unwrap()
}

#[test]
fn cri_checkpoint_container_exports_an_archive_and_the_container_goes_on() {
    let (_, flavor) = flavors()
        .into_iter()
        .find(|(v, _)| v.starts_with('2'))
        .expect("setup-host.sh extracts containerd 2.x under /opt/rsrunc-test");
    let c = CriDaemon::start_flavor(&flavor);
    let fail = |step: &str, e: Status| -> String {
        format!("{step}: {e}\n--- containerd.log ---\n{}", c.daemon.log())
    };
    let pod_config = c.pod_config("ckpt");
    let pod = c
        .cri
        .run_pod_sandbox(&pod_config, &c.handler)
        .unwrap_or_else(|e| panic!("{}", fail("RunPodSandbox", e)));
    let counter = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done";
    let config = c.container_config("counter", &["/bin/sh", "-c", counter]);
    let id = c
        .cri
        .create_container(&pod, &config, &pod_config)
        .unwrap_or_else(|e| panic!("{}", fail("CreateContainer", e)));
    c.cri
        .start_container(&id)
        .unwrap_or_else(|e| panic!("{}", fail("StartContainer", e)));
    let before = cri_wait_count(&c, &id, 20);

    // Kubernetes' forensic checkpoint: the container goes on running.
    let archive = c.daemon.dir().join("counter-checkpoint.tar");
    c.cri
        .checkpoint_container(&id, &archive)
        .unwrap_or_else(|e| panic!("{}", fail("CheckpointContainer", e)));
    assert!(archive.exists(), "no archive at {}", archive.display());
    let state = c
        .cri
        .container_status(&id, false)
        .unwrap()
        .status
        .unwrap()
        .state;
    assert_eq!(state, cri::api::ContainerState::ContainerRunning as i32);
    cri_wait_count(&c, &id, before + 5);
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.ends_with("checkpoint/inventory.img")),
        "no CRIU images in the archive:\n{list}"
    );
    // Restoring it (CreateContainer with the archive as image) is containerd's: 2.1
    // pulls the checkpoint's base image by digest from its registry first, which a
    // locally imported image does not have, so it fails before any shim is asked.
    c.cri.stop_container(&id, 0).unwrap();
    c.cri.remove_container(&id).unwrap();
    c.cri.stop_pod_sandbox(&pod).unwrap();
    c.cri.remove_pod_sandbox(&pod).unwrap();
    assert!(criu_processes(&c.daemon).is_empty(), "criu left running");
}

#[test]
fn a_task_with_a_terminal_is_checkpointed_and_restored_on_a_terminal() {
    let d = std::sync::Arc::new(daemon());
    image::import_busybox(&d);
    let id = unique_id("pty");
    let (out, mount) = out_dir(&d, &id);
    let script = "[ -t 1 ] && echo on-a-tty; i=0; while :; do i=$((i+1)); echo $i > /out/n.new; mv /out/n.new /out/n; sleep 0.05; done";
    let args: Vec<String> = ["run", "-t", "--runtime", &runtime_name(), "--mount", &mount]
        .iter()
        .map(|s| s.to_string())
        .chain([
            image::IMAGE.into(),
            id.clone(),
            "/bin/sh".into(),
            "-c".into(),
            script.into(),
        ])
        .collect();
    let first = {
        let d = std::sync::Arc::clone(&d);
        std::thread::spawn(move || d.ctr_in_pty(24, 80, &args))
    };
    d.wait_status(&id, "RUNNING");
    let before = wait_count(&out, 20);
    let reference = format!("checkpoint/{id}:1");
    let r = d.ctr(&["container", "checkpoint", "--task", &id, &reference]);
    eprintln!("checkpoint of a task with a terminal: {r:?}");
    assert_eq!(r.status, 0, "{r:?}");
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    let (screen, _) = first.join().unwrap();
    assert!(screen.contains("on-a-tty"), "{screen:?}");
    d.ctr(&["task", "delete", &id]);
    d.ctr(&["container", "rm", &id]).ok();
    let at_kill = count(&out).unwrap();

    let restored = unique_id("pty-restored");
    let args: Vec<String> = ["container", "restore", "--live", &restored, &reference]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let second = {
        let d = std::sync::Arc::clone(&d);
        std::thread::spawn(move || d.ctr_in_pty(24, 80, &args))
    };
    let mut value = None;
    let moved = poll_until(Duration::from_secs(30), || {
        value = count(&out).filter(|&v| v != at_kill);
        value.is_some()
    });
    if !moved {
        let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", &restored]);
        let (screen, code) = second.join().unwrap();
        panic!("the restored counter never wrote: ctr exited {code}: {screen}");
    }
    assert!(
        value.unwrap() > before,
        "restarted at {value:?}, was past {before}"
    );
    d.wait_status(&restored, "RUNNING");
    d.ctr(&["task", "kill", "-s", "SIGKILL", &restored]).ok();
    let (_, code) = second.join().unwrap();
    assert_eq!(code, 137, "ctr container restore's exit code");
    d.ctr(&["container", "rm", &restored]).ok();
}

#[test]
fn a_failed_restore_names_criu_log_and_leaves_no_container_in_the_runtime() {
    use containerd_shim_protos::api::{
        CreateTaskRequest, CreateTaskResponse, DeleteRequest, DeleteResponse,
    };
    use containerd_shim_protos::shim::shim::{StartRequest, StartResponse};
    use rsrunc_e2e::shim_client::ShimConn;

    // CRIU's images of a counter, then one of them garbled.
    let d = daemon();
    let orig = unique_id("garbled");
    let out = run_counter(&d, &orig);
    wait_count(&out, 3);
    let images = d.dir().join("garbled-images");
    d.ctr(&[
        "task",
        "checkpoint",
        "--image-path",
        images.to_str().unwrap(),
        &orig,
    ])
    .ok();
    kill_and_remove(&d, &orig);
    std::fs::write(images.join("inventory.img"), b"not an image").unwrap();

    let id = unique_id("badrestore");
    let bundle = d.dir().join("bundles").join(&id);
    d.write_bundle(
        &bundle,
        rsrunc_e2e::rootfs::busybox(),
        &["/bin/sleep", "300"],
        &format!("/{}/{id}", d.namespace),
    );
    let binary = if d.is_go_shim() {
        rsrunc_e2e::tool("containerd-shim-runc-v2")
    } else {
        rsrunc_e2e::shim_binary()
    };
    let conn = ShimConn::start(&d, &binary, &bundle, &id);
    let created: Result<CreateTaskResponse, _> = conn.call(
        "Create",
        &CreateTaskRequest {
            id: id.clone(),
            bundle: bundle.display().to_string(),
            checkpoint: images.display().to_string(),
            ..Default::default()
        },
    );
    created.expect("a Create that names a checkpoint is only recorded");
    let started: Result<StartResponse, _> = conn.call(
        "Start",
        &StartRequest {
            id: id.clone(),
            ..Default::default()
        },
    );
    let (_, msg) = started.expect_err("a restore from a garbled image");
    eprintln!("restore failed as expected: {msg}");
    assert!(msg.contains("restore"), "{msg}");
    if rsrunc_e2e::testing_ours() {
        // Ours names CRIU's log, kept in the bundle, and quotes its errors.
        assert!(msg.contains("criu-restore.log"), "{msg}");
        assert!(msg.contains("Error (criu/"), "{msg}");
        assert!(bundle.join("criu-restore.log").exists());
    }
    let state = std::process::Command::new("runc")
        .args(["--root", &format!("/run/containerd/runc/{}", d.namespace)])
        .args(["state", &id])
        .output()
        .unwrap();
    assert!(
        !state.status.success(),
        "runc still has {id}: {}",
        String::from_utf8_lossy(&state.stdout)
    );
    assert!(criu_processes(&d).is_empty(), "criu left running");
    let deleted: Result<DeleteResponse, _> = conn.call(
        "Delete",
        &DeleteRequest {
            id: id.clone(),
            ..Default::default()
        },
    );
    deleted.expect("Delete of a container that was never restored");
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    conn.shutdown();
}
