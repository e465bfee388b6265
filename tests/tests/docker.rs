#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Docker on the shim under test: what Docker users do, each checked end to end through a
//! private dockerd on a private containerd (see `rsrunc_e2e::docker`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rsrunc_e2e::docker::{Docker, IMAGE};
use rsrunc_e2e::{ours_only, testing_ours, CtrOutput, Oci};

/// Prints a numbered line five times a second.
const TICKER: &str = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done";

/// The shim binaries serving this test's containerd, by name.
fn shim_names(d: &Docker) -> Vec<String> {
    let pids = d.containerd.shim_pids();
    rsrunc_e2e::daemon::processes()
        .into_iter()
        .filter(|p| pids.contains(&p.pid))
        .filter_map(|p| p.cmdline.first().cloned())
        .collect()
}

fn expected_shim() -> &'static str {
    if testing_ours() {
        "containerd-shim-rsrunc-v2"
    } else {
        "containerd-shim-runc-v2"
    }
}

/// Whether `oci` knows container `id`, under the shims' default state root or the one
/// Docker hands to runc-type runtimes (its exec-root).
fn created_by(d: &Docker, oci: Oci, id: &str) -> bool {
    let roots = [
        std::path::PathBuf::from("/run/containerd/runc/moby"),
        d.dir().join("dexec/runtime-runc/moby"),
    ];
    roots.iter().any(|root| {
        Command::new(oci.binary())
            .arg("--root")
            .arg(root)
            .args(["state", id])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `sh -c SCRIPT`.
fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

/// `docker run --rm --runtime RUNTIME` of `sh -c SCRIPT`, attached.
fn run_rm(d: &Docker, runtime: &str, script: &str) -> CtrOutput {
    d.docker(&[
        "run",
        "--rm",
        "--runtime",
        runtime,
        IMAGE,
        "sh",
        "-c",
        script,
    ])
}

/// Polls `f` for up to `secs` seconds.
fn eventually(secs: u64, what: &str, f: impl FnMut() -> bool) {
    assert!(
        rsrunc_e2e::poll_until(Duration::from_secs(secs), f),
        "timed out waiting for {what}"
    );
}

#[test]
fn run_with_the_runtime_name_alone_and_with_a_daemon_json_entry() {
    let d = Docker::start();
    for oci in Oci::ALL {
        let rt = d.runtime(oci);
        // --rm, attached: output and exit code.
        let out = run_rm(&d, &rt, "echo hello; exit 3");
        assert_eq!(out.status, 3, "{oci:?}: {out:?}");
        assert_eq!(out.stdout.trim(), "hello", "{oci:?}");

        // -d: the container runs on the shim and OCI runtime asked for.
        let id = d.run_detached(&rt, &[], &["sleep", "300"]);
        let shims = shim_names(&d);
        assert!(
            shims.iter().any(|s| s.ends_with(expected_shim())),
            "{oci:?}: shims {shims:?}"
        );
        assert!(
            created_by(&d, oci, &id),
            "{oci:?}: the container was not created by {}",
            oci.binary()
        );
        d.ok(&["rm", "-f", &id]);

        // -d, then wait: the exit code comes back.
        let id = d.run_detached(&rt, &[], &sh("sleep 1; exit 5"));
        assert_eq!(d.ok(&["wait", &id]), "5", "{oci:?}");
        assert_eq!(d.inspect(&id, "{{.State.ExitCode}}"), "5");
        d.ok(&["rm", &id]);
    }
    assert!(
        d.containerd.shims_left().is_empty(),
        "a shim outlived its containers"
    );
}

#[test]
fn the_runtime_name_alone_needs_no_daemon_configuration() {
    let d = Docker::start_unconfigured();
    let out = run_rm(&d, &rsrunc_e2e::runtime_name(), "echo unconfigured; exit 4");
    assert_eq!(out.status, 4, "{out:?}");
    assert_eq!(out.stdout.trim(), "unconfigured");
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the packaging/docker examples, written for io.containerd.rsrunc.v2"
)]
fn the_shipped_daemon_json_examples_work() {
    ours_only();
    let d = Docker::start_from_example("daemon.json");
    for (rt, oci) in [("rsrunc", Oci::Runc), ("rsrunc-crun", Oci::Crun)] {
        let id = d.run_detached(rt, &[], &["sleep", "300"]);
        assert!(
            created_by(&d, oci, &id),
            "{rt}: not run by {}",
            oci.binary()
        );
        assert!(shim_names(&d).iter().any(|s| s.ends_with(expected_shim())));
        d.ok(&["rm", "-f", &id]);
    }
    drop(d);
    let d = Docker::start_from_example("daemon-default-runtime.json");
    let id = d.ok(&["run", "-d", IMAGE, "sleep", "300"]);
    assert_eq!(d.inspect(&id, "{{.HostConfig.Runtime}}"), "rsrunc-crun");
    assert!(
        created_by(&d, Oci::Crun, &id),
        "the default runtime did not run crun"
    );
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn a_daemon_json_entry_works_as_the_default_runtime() {
    let d = Docker::start_with(|_| serde_json::json!({ "default-runtime": "test-crun" }));
    let id = d.ok(&["run", "-d", IMAGE, "sleep", "300"]);
    assert_eq!(d.inspect(&id, "{{.HostConfig.Runtime}}"), "test-crun");
    let shims = shim_names(&d);
    assert!(
        shims.iter().any(|s| s.ends_with(expected_shim())),
        "shims {shims:?}"
    );
    assert!(created_by(&d, Oci::Crun, &id), "not run by crun");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn stop_kill_restart_and_restart_policy() {
    let d = Docker::start();
    let rt = d.runtime(Oci::Runc);
    // stop: SIGTERM first (the trap turns it into exit 7)...
    let id = d.run_detached(
        &rt,
        &[],
        &sh("trap 'exit 7' TERM; echo trap-set; while true; do sleep 0.1; done"),
    );
    let trap_set = |c: &str| eventually(10, "the trap", || d.ok(&["logs", c]).contains("trap-set"));
    trap_set(&id);
    d.ok(&["stop", "-t", "10", &id]);
    assert_eq!(d.inspect(&id, "{{.State.ExitCode}}"), "7");
    // ...then SIGKILL after -t when SIGTERM is ignored (pid 1 without a handler).
    d.ok(&["start", &id]);
    d.wait_state(&id, "running");
    let ignoring = d.run_detached(&rt, &[], &["sleep", "300"]);
    let t0 = Instant::now();
    d.ok(&["stop", "-t", "1", &ignoring]);
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert_eq!(d.inspect(&ignoring, "{{.State.ExitCode}}"), "137");

    // kill -s: the signal reaches the process.
    let sig = d.run_detached(
        &rt,
        &[],
        &sh("trap 'echo got-usr1; exit 9' USR1; echo trap-set; while true; do sleep 0.1; done"),
    );
    trap_set(&sig);
    d.ok(&["kill", "-s", "USR1", &sig]);
    assert_eq!(d.ok(&["wait", &sig]), "9");
    assert!(d.ok(&["logs", &sig]).contains("got-usr1"));

    // restart: a new init process, running again.
    let pid_before = d.inspect(&id, "{{.State.Pid}}");
    d.ok(&["restart", "-t", "1", &id]);
    d.wait_state(&id, "running");
    assert_ne!(d.inspect(&id, "{{.State.Pid}}"), pid_before);

    // --restart on-failure:2: every exit event arrives, so the count is exact.
    let flaky = d.run_detached(&rt, &["--restart", "on-failure:2"], &sh("exit 1"));
    eventually(30, "two restarts and a final exit", || {
        d.inspect(&flaky, "{{.State.Status}} {{.RestartCount}}") == "exited 2"
    });
    assert_eq!(d.inspect(&flaky, "{{.State.ExitCode}}"), "1");
    for c in [&id, &ignoring, &sig, &flaky] {
        d.ok(&["rm", "-f", c]);
    }
    assert!(d.containerd.shims_left().is_empty());
    assert!(d.containerd.zombies().is_empty());
}

#[test]
fn logs_follow_and_attach() {
    let d = Docker::start();
    let rt = d.runtime(Oci::Runc);
    let id = d.run_detached(
        &rt,
        &[],
        &sh("i=0; while true; do i=$((i+1)); echo line-$i; echo err-$i >&2; sleep 0.2; done"),
    );
    eventually(10, "the first lines in docker logs", || {
        d.ok(&["logs", &id]).contains("line-2")
    });
    let both = d.docker(&["logs", &id]);
    assert!(both.stderr.contains("err-1"), "{both:?}");

    // logs -f keeps delivering new lines.
    let mut follow = d.spawn(&["logs", "-f", "--since", "0s", &id]);
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let l = lines.next().expect("logs -f ended early").unwrap();
        if l.starts_with("line-") {
            seen.push(l);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // attach: the live output stream.
    let mut attach = d.spawn(&["attach", "--no-stdin", "--sig-proxy=false", &id]);
    let mut out = attach.stdout.take().unwrap();
    let mut buf = [0u8; 256];
    let n = out.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("line-"),
        "attach showed {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let _ = attach.kill();
    let _ = attach.wait();
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn exec_with_and_without_a_terminal() {
    let d = Docker::start();
    for oci in Oci::ALL {
        let id = d.run_detached(&d.runtime(oci), &[], &["sleep", "300"]);
        assert_eq!(d.ok(&["exec", &id, "echo", "from-exec"]), "from-exec");
        assert_eq!(d.docker(&["exec", &id, "sh", "-c", "exit 6"]).status, 6);
        // stdin reaches the exec, then EOF.
        let mut child = d
            .docker_cmd(&["exec", "-i", &id, "sh", "-c", "cat; echo done"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"via-stdin\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "via-stdin\ndone\n");

        // exec -it on a real terminal: the process sees the client's size.
        let cmd = format!(
            "stty rows 31 cols 93; {} -H unix://{} exec -it {id} sh -c 'sleep 0.5; stty size; exit 2'",
                rsrunc_e2e::docker::docker_client().display(),
            d.dir().join("docker.sock").display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("31 93"), "{oci:?}: {text:?}");
        assert_eq!(out.status.code(), Some(2), "{oci:?}: {text:?}");
        d.ok(&["rm", "-f", &id]);
    }
    assert!(d.containerd.zombies().is_empty());
}

#[test]
fn pause_top_stats_and_update() {
    let d = Docker::start();
    for oci in Oci::ALL {
        let id = d.run_detached(&d.runtime(oci), &[], &["sleep", "300"]);
        d.ok(&["pause", &id]);
        assert_eq!(d.inspect(&id, "{{.State.Status}}"), "paused");
        d.ok(&["unpause", &id]);
        assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");

        let top = d.ok(&["top", &id]);
        assert!(top.contains("sleep 300"), "{oci:?}: {top}");

        let stats = d.ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}} {{.PIDs}}",
            &id,
        ]);
        assert!(
            !stats.starts_with("0B"),
            "{oci:?}: no memory figure: {stats}"
        );
        assert!(stats.ends_with(" 1"), "{oci:?}: pids: {stats}");

        d.ok(&["update", "--memory", "64m", "--memory-swap", "128m", &id]);
        let pid = d.inspect(&id, "{{.State.Pid}}");
        assert_eq!(memory_limit(&pid), Some(64 << 20), "{oci:?}");
        d.ok(&["update", "--cpus", "0.5", &id]);
        assert_eq!(d.inspect(&id, "{{.HostConfig.NanoCpus}}"), "500000000");
        d.ok(&["rm", "-f", &id]);
    }
}

/// The memory limit of a process's cgroup, read on the host (cgroup v1 or v2).
fn memory_limit(pid: &str) -> Option<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        if ctrl.split(',').any(|c| c == "memory") {
            let file = format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes");
            return std::fs::read_to_string(file).ok()?.trim().parse().ok();
        }
    }
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let v = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
    v.trim().parse().ok()
}

#[test]
fn an_oom_kill_shows_in_inspect_and_events() {
    let d = Docker::start();
    let actions = oom_killed(&d);
    let has = |a: &str| actions.iter().any(|x| x == a);
    assert!(has("start") && has("oom") && has("die"), "{actions:?}");
}

/// The Go shim publishes TaskOOM whenever its watcher gets to it, often after TaskExit.
#[test]
#[cfg_attr(go_shim, ignore = "rsrunc only: TaskOOM before TaskExit")]
fn an_oom_kill_is_published_before_the_exit() {
    ours_only();
    let d = Docker::start();
    let actions = oom_killed(&d);
    let pos = |a: &str| actions.iter().position(|x| x == a);
    let (oom, die) = (pos("oom"), pos("die"));
    assert!(oom.is_some() && die.is_some(), "{actions:?}");
    assert!(oom < die, "oom must come before die: {actions:?}");
}

/// Runs a container into its memory limit, checks what inspect says, removes it: Docker's
/// event actions for it, in order.
fn oom_killed(d: &Docker) -> Vec<String> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let t0 = (now() - 1).to_string();
    let id = d.run_detached(
        &d.runtime(Oci::Runc),
        &["-m", "16m", "--memory-swap", "16m"],
        &sh("x=0123456789; while true; do x=$x$x; done"),
    );
    assert_eq!(d.ok(&["wait", &id]), "137");
    assert_eq!(d.inspect(&id, "{{.State.OOMKilled}}"), "true");
    let t1 = (now() + 1).to_string();
    let events = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}",
    ]);
    d.ok(&["rm", &id]);
    events.lines().map(str::to_string).collect()
}

#[test]
fn an_oom_kill_of_a_child_is_reported_while_the_container_runs() {
    let d = Docker::start();
    let t0 = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1)
    .to_string();
    let id = d.run_detached(
        &d.runtime(Oci::Runc),
        &["-m", "16m", "--memory-swap", "16m"],
        &sh("sh -c 'x=0123456789; while true; do x=$x$x; done'; echo child-gone; sleep 300"),
    );
    eventually(30, "the child's OOM kill", || {
        d.ok(&["logs", &id]).contains("child-gone")
    });
    let events = |until: &str| {
        d.ok(&[
            "events",
            "--since",
            &t0,
            "--until",
            until,
            "--filter",
            &format!("container={id}"),
            "--format",
            "{{.Action}}",
        ])
    };
    eventually(10, "an oom event", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        events(&now).lines().any(|a| a == "oom")
    });
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn live_restore_keeps_containers_running_across_a_dockerd_restart() {
    let mut d = Docker::start_with(|_| serde_json::json!({ "live-restore": true }));
    let id = d.run_detached(&d.runtime(Oci::Runc), &[], &sh(TICKER));
    d.wait_state(&id, "running");
    let pid = d.inspect(&id, "{{.State.Pid}}");
    d.restart(&[]);
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    assert_eq!(
        d.inspect(&id, "{{.State.Pid}}"),
        pid,
        "the container was restarted"
    );
    // Still manageable: output, exec, stop.
    let count = |d: &Docker| d.ok(&["logs", &id]).lines().count();
    let before = count(&d);
    eventually(10, "new output after the restart", || {
        count(&d) > before + 2
    });
    assert_eq!(d.ok(&["exec", &id, "echo", "still-here"]), "still-here");
    d.ok(&["stop", "-t", "1", &id]);
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "exited");
    d.ok(&["rm", &id]);
    assert!(d.containerd.shims_left().is_empty(), "a shim was left");
}

#[test]
fn a_containerd_restart_under_a_running_container() {
    let mut d = Docker::start();
    let id = d.run_detached(&d.runtime(Oci::Runc), &[], &sh(TICKER));
    d.wait_state(&id, "running");
    let pid = d.inspect(&id, "{{.State.Pid}}");
    d.containerd.restart();
    let count = |d: &Docker| d.ok(&["logs", &id]).lines().count();
    let before = count(&d);
    eventually(20, "output after containerd came back", || {
        count(&d) > before + 2
    });
    assert_eq!(d.inspect(&id, "{{.State.Pid}}"), pid);
    assert_eq!(d.ok(&["exec", &id, "echo", "still-here"]), "still-here");
    d.ok(&["stop", "-t", "1", &id]);
    assert_eq!(d.inspect(&id, "{{.State.ExitCode}}"), "137");
    d.ok(&["rm", &id]);
    assert!(d.containerd.shims_left().is_empty(), "a shim was left");
    assert!(d.containerd.zombies().is_empty());
}

#[test]
fn a_runtime_without_a_shim_is_named_in_the_error() {
    let d = Docker::start();
    let out = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.nosuch.v2",
        IMAGE,
        "true",
    ]);
    assert_ne!(out.status, 0);
    assert!(
        out.stderr.contains("containerd-shim-nosuch-v2"),
        "the error does not name the missing shim: {}",
        out.stderr
    );
}

#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: options files through runtimeoptions ConfigPath"
)]
fn bad_options_files_are_named_in_the_error() {
    ours_only();
    let d = Docker::start_with(|dir| {
        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "BinaryName = \"crun\"\nNoSuchField = 1\n").unwrap();
        serde_json::json!({ "runtimes": {
            "missing-file": {
                "runtimeType": rsrunc_e2e::RSRUNC,
                "options": { "ConfigPath": dir.join("nowhere.toml") }
            },
            "broken-file": {
                "runtimeType": rsrunc_e2e::RSRUNC,
                "options": { "ConfigPath": broken }
            }
        }})
    });
    let out = d.docker(&["run", "--rm", "--runtime", "missing-file", IMAGE, "true"]);
    assert_ne!(out.status, 0);
    assert!(
        out.stderr.contains("nowhere.toml"),
        "the error does not name the file: {}",
        out.stderr
    );
    let out = d.docker(&["run", "--rm", "--runtime", "broken-file", IMAGE, "true"]);
    assert_ne!(out.status, 0);
    assert!(
        out.stderr.contains("broken.toml") && out.stderr.contains("NoSuchField"),
        "the error does not name the file and the field: {}",
        out.stderr
    );
    assert!(d.containerd.shims_left().is_empty(), "a shim was left");
}

#[test]
fn youki_through_a_daemon_json_entry() {
    let d = Docker::start();
    let rt = d.runtime(Oci::Youki);
    let out = run_rm(&d, &rt, "echo hi; exit 6");
    assert_eq!(out.status, 6, "{out:?}");
    assert_eq!(out.stdout.trim(), "hi");
    let id = d.run_detached(&rt, &[], &["sleep", "300"]);
    assert!(created_by(&d, Oci::Youki, &id), "not run by youki");
    assert_eq!(d.ok(&["exec", &id, "echo", "from-exec"]), "from-exec");
    d.ok(&["rm", "-f", &id]);
    assert!(d.containerd.shims_left().is_empty());
}
