#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Node tests: the shim under the system containerd and dockerd of a node-like host, the
//! test VM (see `rsrunc_e2e::vm`), where containerd runs as systemd runs it (`Type=notify`,
//! `NOTIFY_SOCKET` in its environment) and Docker uses the systemd cgroup driver.

use std::time::{Duration, Instant};

use rsrunc_e2e::vm::{self, docker, node_test, run, Namespace};
use rsrunc_e2e::{runtime_name, unique_id, Oci};

/// The guest is what the other node tests rely on: systemd as PID 1, pure cgroup v2,
/// containerd and dockerd running under their units, Docker on the systemd driver.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn guest_is_a_node() {
    node_test("guest_is_a_node", || {
        let init = std::fs::read_to_string("/proc/1/comm").unwrap();
        assert_eq!(init.trim(), "systemd", "PID 1");
        assert!(
            std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            "no cgroup v2 at /sys/fs/cgroup"
        );
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let v1: Vec<&str> = mounts
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some("cgroup"))
            .collect();
        assert!(v1.is_empty(), "cgroup v1 hierarchies mounted: {v1:?}");

        let active = run(
            "systemctl",
            &["is-active", "containerd.service", "docker.service"],
        );
        assert_eq!(active.stdout, "active\nactive\n", "{active:?}");
        let pid = run(
            "systemctl",
            &["show", "-p", "MainPID", "--value", "containerd"],
        )
        .ok();
        let pid: i32 = pid.stdout.trim().parse().unwrap();
        let notify = vm::process_env(pid, "NOTIFY_SOCKET");
        assert!(
            notify.is_some(),
            "containerd (pid {pid}) has no NOTIFY_SOCKET"
        );

        let info = docker(&["info", "--format", "{{.CgroupDriver}} {{.CgroupVersion}}"]).ok();
        assert_eq!(info.stdout.trim(), "systemd 2", "docker info: {info:?}");

        println!(
            "kernel {}containerd {}docker {}runtime under test {}, containerd's NOTIFY_SOCKET {}",
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap(),
            run("containerd", &["--version"]).stdout,
            docker(&["version", "--format", "{{.Server.Version}}"]).stdout,
            runtime_name(),
            notify.unwrap()
        );
    });
}

/// `ctr run` through the system containerd: the container's output and exit code come
/// back.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn ctr_run_through_system_containerd() {
    node_test("ctr_run_through_system_containerd", || {
        let ns = Namespace::new("node-ctr");
        let id = unique_id("ctr");
        let out = ns.run(
            &[],
            &id,
            &["/bin/sh", "-c", "echo hello from the container; exit 7"],
        );
        assert_eq!(out.status, 7, "{out:?}");
        assert!(out.stdout.contains("hello from the container"), "{out:?}");
    });
}

/// `docker run` through the system dockerd with the runtime under test as a dotted
/// runtime name: the output and the exit code come back.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn docker_run_exit_code() {
    node_test("docker_run_exit_code", || {
        let image = vm::docker_busybox();
        let out = docker(&[
            "run",
            "--rm",
            "--runtime",
            &runtime_name(),
            image,
            "sh",
            "-c",
            "echo hi; exit 3",
        ]);
        assert_eq!(out.status, 3, "{out:?}");
        assert_eq!(out.stdout, "hi\n", "{out:?}");
    });
}

/// Docker's systemd cgroup driver puts a container in `system.slice/docker-ID.scope`;
/// also reports what the shim of that container got from containerd.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn docker_container_in_systemd_scope() {
    node_test("docker_container_in_systemd_scope", || {
        let image = vm::docker_busybox();
        let name = unique_id("node-scope");
        let _cleanup = RemoveContainer(name.clone());
        // The reference under the Go shim is Docker's default runtime, which Docker itself
        // configures with SystemdCgroup = true; named by its runtime type, a shim gets no
        // options from Docker, only a systemd-form cgroupsPath (what this test is about).
        let runtime = runtime_name();
        let mut args = vec!["run", "-d", "--name", &name];
        if rsrunc_e2e::testing_ours() {
            args.extend(["--runtime", &runtime]);
        }
        args.push(image);
        let id = docker(&[&args[..], &["sleep", "300"]].concat())
            .ok()
            .stdout
            .trim()
            .to_string();
        let pid: i32 = docker(&["inspect", "-f", "{{.State.Pid}}", &id])
            .ok()
            .stdout
            .trim()
            .parse()
            .unwrap();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let shim = parent(pid);
        let shim_cmd = std::fs::read(format!("/proc/{shim}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        println!(
            "container {id} pid {pid} cgroup {}\nits parent {shim}: {shim_cmd}\n  NOTIFY_SOCKET={:?} cgroup {}",
            cgroup.trim(),
            vm::process_env(shim, "NOTIFY_SOCKET"),
            std::fs::read_to_string(format!("/proc/{shim}/cgroup"))
                .unwrap_or_default()
                .trim(),
        );
        assert_eq!(
            cgroup.trim(),
            format!("0::/system.slice/docker-{id}.scope"),
            "the container's cgroup"
        );
    });
}

/// The parent of process `pid`.
fn parent(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // "pid (comm) S ppid ...": comm may hold spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Removes a Docker container when the test ends, passed or not.
struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}

// --- Docker on the systemd cgroup driver: containers in systemd scopes (issue 17) -----------

/// The shipped options file that selects crun, and where the shipped daemon.json expects it.
const CRUN_TOML: &str = include_str!("../../packaging/crun.toml");
const CRUN_TOML_PATH: &str = "/etc/containerd/rsrunc-crun.toml";
/// The shipped daemon.json: `rsrunc` and `rsrunc-crun` entries.
const SHIPPED_DAEMON_JSON: &str = include_str!("../../packaging/docker/daemon.json");
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// One way of reaching a runtime through the system dockerd.
struct Way {
    /// Names the way in every assertion message.
    label: String,
    /// `docker run --runtime VALUE`; `None` runs Docker's default runtime.
    runtime: Option<String>,
    /// The OCI runtime the way selects.
    oci: Oci,
}

impl Way {
    fn new(label: &str, runtime: Option<&str>, oci: Oci) -> Way {
        let oci_name = match oci {
            Oci::Runc => "runc",
            _ => "crun",
        };
        Way {
            label: format!("{label} ({oci_name}, shim {})", runtime_name()),
            runtime: runtime.map(str::to_string),
            oci,
        }
    }
}

/// The runtime under test named by its dotted runtime type alone, with no daemon.json.
/// Under the Go shim the reference is Docker's default runtime (`runc`, which Docker
/// itself configures with `SystemdCgroup = true`). This test runs before
/// `docker_scopes_runtime_in_daemon_json` (libtest orders tests by name), which writes the
/// daemon.json.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn docker_scopes_runtime_by_type_alone() {
    node_test("docker_scopes_runtime_by_type_alone", || {
        assert!(
            !std::path::Path::new(DAEMON_JSON).exists(),
            "{DAEMON_JSON} exists: this test is about a runtime named without any"
        );
        vm::docker_busybox();
        let way = if rsrunc_e2e::testing_ours() {
            Way::new(
                &format!("--runtime {}", runtime_name()),
                Some(&runtime_name()),
                Oci::Runc,
            )
        } else {
            Way::new("Docker's default runtime", None, Oci::Runc)
        };
        check_ways(&[way]);
        if !rsrunc_e2e::testing_ours() {
            // Not asserted: where the Go shim's container goes when Docker is given its
            // dotted name.
            observe(
                &format!("--runtime {}", rsrunc_e2e::GO_SHIM),
                rsrunc_e2e::GO_SHIM,
            );
        }
    });
}

/// The runtime under test through daemon.json entries, with runc and with crun: the
/// shipped `packaging/docker/daemon.json` (entries `rsrunc` and `rsrunc-crun`, the latter
/// with the shipped `packaging/crun.toml` as its ConfigPath). Under the Go shim the
/// references are Docker's default runtime and Docker's own way to run crun, an entry
/// `{"runtimeType": "io.containerd.runc.v2", "options": {"BinaryName": "crun",
/// "SystemdCgroup": true}}`. One dockerd restart for all of them.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn docker_scopes_runtime_in_daemon_json() {
    node_test("docker_scopes_runtime_in_daemon_json", || {
        vm::docker_busybox();
        let ways = if rsrunc_e2e::testing_ours() {
            let shipped: serde_json::Value = serde_json::from_str(SHIPPED_DAEMON_JSON).unwrap();
            let entry = |name: &str| &shipped["runtimes"][name];
            assert_eq!(
                entry("rsrunc")["runtimeType"],
                runtime_name(),
                "shipped daemon.json: {shipped}"
            );
            assert_eq!(
                entry("rsrunc-crun")["runtimeType"],
                runtime_name(),
                "shipped daemon.json: {shipped}"
            );
            assert_eq!(
                entry("rsrunc-crun")["options"]["ConfigPath"],
                CRUN_TOML_PATH,
                "shipped daemon.json: {shipped}"
            );
            std::fs::write(CRUN_TOML_PATH, CRUN_TOML).unwrap();
            std::fs::write(DAEMON_JSON, SHIPPED_DAEMON_JSON).unwrap();
            vec![
                Way::new("daemon.json entry rsrunc", Some("rsrunc"), Oci::Runc),
                Way::new(
                    "daemon.json entry rsrunc-crun",
                    Some("rsrunc-crun"),
                    Oci::Crun,
                ),
            ]
        } else {
            let config = serde_json::json!({"runtimes": {
                "runc-crun": {
                    "runtimeType": rsrunc_e2e::GO_SHIM,
                    "options": {"BinaryName": "crun", "SystemdCgroup": true}
                },
                // Only observed: the Go shim named by an entry without options.
                "runc-typed": {"runtimeType": rsrunc_e2e::GO_SHIM}
            }});
            std::fs::write(DAEMON_JSON, config.to_string()).unwrap();
            vec![
                Way::new("Docker's default runtime", None, Oci::Runc),
                Way::new("daemon.json entry runc-crun", Some("runc-crun"), Oci::Crun),
            ]
        };
        restart_docker();
        check_ways(&ways);
        if !rsrunc_e2e::testing_ours() {
            observe(
                &format!(
                    "daemon.json entry runc-typed {{\"runtimeType\": \"{}\"}}",
                    rsrunc_e2e::GO_SHIM
                ),
                "runc-typed",
            );
        }
    });
}

/// An OOM kill of a container's init on a systemd scope reaches Docker as exactly one oom
/// event, before the exit, so `.State.OOMKilled` is true once `docker wait` returns:
/// rsrunc reads the kernel's counters as soon as they change, and when systemd removes the
/// emptied scope before the kill could be read, the "oom" it saw first stands for it.
/// containerd's Go shim may send none (containerd/containerd#8893): this is ours only,
/// and Docker's default runtime is run beside it as the reference, reported, not asserted.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
#[cfg_attr(
    all(node_vm, go_shim),
    ignore = "rsrunc only: the Go shim may lose an OOM kill on a systemd scope"
)]
fn docker_oom_kill_on_a_scope_is_reported_once() {
    node_test("docker_oom_kill_on_a_scope_is_reported_once", || {
        rsrunc_e2e::ours_only();
        vm::docker_busybox();
        const KILLS: usize = 4;
        let ours = Way::new(
            &format!("--runtime {}", runtime_name()),
            Some(&runtime_name()),
            Oci::Runc,
        );
        let reference = Way::new("Docker's default runtime", None, Oci::Runc);
        let mut reference_seen = 0;
        for round in 0..KILLS {
            for way in [&ours, &reference] {
                let l = way.label.as_str();
                let since = (epoch() - 1).to_string();
                let name = unique_id("node-oom-once");
                let _cleanup = RemoveContainer(name.clone());
                let id = run_detached(
                    way,
                    &name,
                    &["--memory", "32m", "--memory-swap", "32m"],
                    &["sh", "-c", "x=0123456789; while true; do x=$x$x; done"],
                );
                assert_eq!(dk(l, &["wait", &id]), "137", "[{l}] exit of round {round}");
                let killed = dk(l, &["inspect", "-f", "{{.State.OOMKilled}}", &id]) == "true";
                dk(l, &["rm", "-f", &id]);
                // Removed: every event of the container is in.
                let ooms = oom_event_count(&since, &id);
                if way.runtime.is_none() {
                    reference_seen += usize::from(killed);
                    continue;
                }
                assert!(
                    killed,
                    "[{l}] round {round}: .State.OOMKilled is false once docker wait returned \
                     137 ({ooms} oom events)"
                );
                assert_eq!(ooms, 1, "[{l}] round {round}: oom events for one OOM kill");
            }
        }
        println!(
            "{KILLS} OOM kills on scopes: rsrunc reported each once before the exit; \
             Docker's default runtime had OOMKilled true on exit for {reference_seen}"
        );
    });
}

/// `systemctl restart docker`, then waits until `docker info` answers.
fn restart_docker() {
    let started = Instant::now();
    run("systemctl", &["restart", "docker"]).ok();
    assert!(
        rsrunc_e2e::poll_until(Duration::from_secs(90), || {
            docker(&["info", "--format", "{{.ServerVersion}}"]).status == 0
        }),
        "docker info does not answer after systemctl restart docker: {:?}",
        run("systemctl", &["status", "--no-pager", "docker"])
    );
    println!(
        "dockerd restarted with {DAEMON_JSON} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Checks every way at once, each in its own thread; fails with every way that failed.
fn check_ways(ways: &[Way]) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = ways
            .iter()
            .map(|way| {
                let thread = std::thread::Builder::new()
                    .name(way.label.clone())
                    .spawn_scoped(s, || check_way(way))
                    .unwrap();
                (way, thread)
            })
            .collect();
        threads
            .into_iter()
            .filter_map(|(way, thread)| {
                let panic = thread.join().err()?;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("[{}] {message}", way.label))
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} ways failed:\n{}",
        failures.len(),
        ways.len(),
        failures.join("\n")
    );
}

/// `docker ARGS`, which must succeed; its trimmed stdout. `l` names the way.
fn dk(l: &str, args: &[&str]) -> String {
    let out = docker(args);
    assert_eq!(out.status, 0, "[{l}] {} failed: {out:?}", out.cmd);
    out.stdout.trim().to_string()
}

/// `docker run -d --name NAME [--runtime R] EXTRA busybox CMD...`; the container's id.
fn run_detached(way: &Way, name: &str, extra: &[&str], cmd: &[&str]) -> String {
    // No network: it has nothing to do with cgroups, and setting one up is slow in the VM.
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    if let Some(runtime) = &way.runtime {
        args.extend(["--runtime", runtime]);
    }
    args.extend_from_slice(extra);
    args.push(vm::DOCKER_IMAGE);
    args.extend_from_slice(cmd);
    dk(&way.label, &args)
}

/// Seconds since the epoch, for `docker events --since/--until`.
fn epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `/sys/fs/cgroup` entries named like a cgroupfs-driver path of Docker's systemd form
/// (`system.slice:docker:ID`): what a runtime creates when it takes that path literally.
fn literal_systemd_paths() -> Vec<String> {
    let out = run(
        "find",
        &["/sys/fs/cgroup", "-name", "*system.slice:docker:*"],
    );
    // Cgroups that go while find walks the tree are the only errors it may report.
    assert!(
        out.status == 0
            || out
                .stderr
                .lines()
                .all(|e| e.ends_with("No such file or directory")),
        "{out:?}"
    );
    out.stdout.lines().map(str::to_string).collect()
}

/// Everything issue 17 asks of a container through Docker's systemd cgroup driver.
fn check_way(way: &Way) {
    let l = way.label.as_str();
    let started = Instant::now();
    let mut laps = Laps::new();
    let t0 = (epoch() - 1).to_string();

    // A container for the OOM kill, started beside the one checked first and checked
    // last. 32m, not less: runc 1.1 charges its init's copy of its own binary (a memfd,
    // some 8 MiB of shmem besides its heap) to the container's cgroup, and at 16m the OOM
    // killer took `runc:[2:INIT]` before start at times ("cannot start a stopped process").
    let oom_name = unique_id("node-oom");
    let _oom_cleanup = RemoveContainer(oom_name.clone());
    let name = unique_id("node-scope");
    let _cleanup = RemoveContainer(name.clone());
    let (oom_id, id) = std::thread::scope(|s| {
        let oom = s.spawn(|| {
            run_detached(
                way,
                &oom_name,
                &["--memory", "32m", "--memory-swap", "32m"],
                &["sh", "-c", "x=0123456789; while true; do x=$x$x; done"],
            )
        });
        let id = run_detached(way, &name, &[], &["sleep", "300"]);
        let oom_id = oom
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (oom_id, id)
    });
    laps.lap("2 runs");
    let pid = dk(l, &["inspect", "-f", "{{.State.Pid}}", &id]);
    let pid: i32 = pid.parse().unwrap();

    // Served by the shim under test, with the OCI runtime of the way.
    let shim = parent(pid);
    let shim_exe = std::fs::read_link(format!("/proc/{shim}/exe")).unwrap_or_default();
    let want_shim = if rsrunc_e2e::testing_ours() {
        "containerd-shim-rsrunc-v2"
    } else {
        "containerd-shim-runc-v2"
    };
    assert!(
        shim_exe.ends_with(want_shim),
        "[{l}] the container's parent {shim} is {}, not {want_shim}",
        shim_exe.display()
    );
    // runc keeps state.json in its root, crun status; the Go shim's root is
    // /run/containerd/runc unless Docker sets its own (its default runtime).
    let state = match way.oci {
        Oci::Runc => "state.json",
        _ => "status",
    };
    let roots = ["/run/containerd/runc/moby", "/run/docker/runtime-runc/moby"];
    assert!(
        roots
            .iter()
            .any(|root| std::path::Path::new(&format!("{root}/{id}/{state}")).exists()),
        "[{l}] no {state} for {id} under {roots:?}: not run by {:?}",
        way.oci
    );

    // In the scope systemd made for it. crun on cgroup v2 puts the container in a
    // `container` child of the scope (its run.oci.systemd.subgroup default), under either
    // shim.
    let scope = format!("docker-{id}.scope");
    let scope_dir = format!("/sys/fs/cgroup/system.slice/{scope}");
    let own = match way.oci {
        Oci::Runc => format!("/system.slice/{scope}"),
        _ => format!("/system.slice/{scope}/container"),
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        cgroup.trim(),
        format!("0::{own}"),
        "[{l}] the container's /proc/{pid}/cgroup"
    );
    let own_dir = format!("/sys/fs/cgroup{own}");
    let unit_state = |scope: &str| {
        run(
            "systemctl",
            &["show", scope, "-p", "ActiveState", "--value"],
        )
        .stdout
        .trim()
        .to_string()
    };
    assert_eq!(unit_state(&scope), "active", "[{l}] systemd's {scope}");
    laps.lap("placement");

    // docker update reaches the scope (and the container's own cgroup)...
    dk(
        l,
        &["update", "--memory", "64m", "--memory-swap", "64m", &id],
    );
    for dir in [&scope_dir, &own_dir] {
        let max = std::fs::read_to_string(format!("{dir}/memory.max")).unwrap_or_default();
        assert_eq!(
            max.trim(),
            "67108864",
            "[{l}] {dir}/memory.max after docker update --memory 64m"
        );
    }
    laps.lap("update");
    // ... and docker stats reads the same cgroup.
    let stats = dk(
        l,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}} {{.PIDs}}",
            &id,
        ],
    );
    let fields: Vec<&str> = stats.split_whitespace().collect();
    let usage = fields.first().and_then(|f| bytes_of(f));
    assert!(
        fields.len() == 4 && usage.is_some_and(|b| b > 0.0),
        "[{l}] docker stats gives no memory figure: {stats:?}"
    );
    assert_eq!(
        bytes_of(fields[2]),
        Some(67108864.0),
        "[{l}] docker stats' limit after docker update: {stats:?}"
    );
    let pids: u64 = fields[3].parse().unwrap_or(0);
    assert!(pids >= 1, "[{l}] docker stats' PIDs: {stats:?}");

    laps.lap("stats");
    let top = dk(l, &["top", &id]);
    assert!(
        top.lines().any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.get(1) == Some(&pid.to_string().as_str()) && line.ends_with("sleep 300")
        }),
        "[{l}] docker top does not list {pid} (sleep 300):\n{top}"
    );

    laps.lap("top");
    // docker pause freezes the container's cgroup.
    let frozen = |want: &str| {
        let freeze =
            std::fs::read_to_string(format!("{own_dir}/cgroup.freeze")).unwrap_or_default();
        let events =
            std::fs::read_to_string(format!("{own_dir}/cgroup.events")).unwrap_or_default();
        freeze.trim() == want && events.lines().any(|e| e == format!("frozen {want}"))
    };
    dk(l, &["pause", &id]);
    assert_eq!(
        dk(l, &["inspect", "-f", "{{.State.Paused}}", &id]),
        "true",
        "[{l}] .State.Paused after docker pause"
    );
    assert!(
        rsrunc_e2e::poll_until(Duration::from_secs(5), || frozen("1")),
        "[{l}] {own_dir} is not frozen after docker pause: cgroup.freeze {:?}, cgroup.events {:?}",
        std::fs::read_to_string(format!("{own_dir}/cgroup.freeze")),
        std::fs::read_to_string(format!("{own_dir}/cgroup.events")),
    );
    dk(l, &["unpause", &id]);
    assert_eq!(
        dk(
            l,
            &["inspect", "-f", "{{.State.Paused}} {{.State.Status}}", &id]
        ),
        "false running",
        "[{l}] after docker unpause"
    );
    assert!(
        rsrunc_e2e::poll_until(Duration::from_secs(5), || frozen("0")),
        "[{l}] {own_dir} is still frozen after docker unpause"
    );

    laps.lap("pause");
    // The OOM kill: exit 137, OOMKilled, an oom event.
    assert_eq!(
        dk(l, &["wait", &oom_id]),
        "137",
        "[{l}] exit code of the container run with --memory 32m"
    );
    // Docker sets OOMKilled only from the oom event (containerd's TaskOOM), not from the
    // exit.
    let oom_killed = || dk(l, &["inspect", "-f", "{{.State.OOMKilled}}", &oom_id]) == "true";
    let mut ooms = 0;
    let mut oom_events = || {
        ooms = oom_event_count(&t0, &oom_id);
        ooms > 0
    };
    // containerd 1.7's Go shim publishes TaskOOM whenever its watcher gets to it, at
    // times after TaskExit, and at times never: its watcher reads memory.events of a scope
    // that systemd removes as soon as the last process is gone (containerd/containerd#8893).
    // Checked, not required, for both shims here; what rsrunc promises about it is
    // required by `docker_oom_kill_on_a_scope_is_reported_once`.
    {
        let waited = Instant::now();
        if rsrunc_e2e::poll_until(Duration::from_secs(15), oom_killed) {
            if waited.elapsed() > Duration::from_millis(100) {
                println!(
                    "[{l}] .State.OOMKilled turned true {:.1} s after docker wait returned",
                    waited.elapsed().as_secs_f64()
                );
            }
            assert!(
                rsrunc_e2e::poll_until(Duration::from_secs(15), &mut oom_events),
                "[{l}] no oom event for {oom_id} from docker events"
            );
        } else {
            println!(
                "[{l}] not seen under {}: no TaskOOM for the OOM kill of {oom_id} \
                 (.State.OOMKilled false 15 s after exit 137; the scope went before its \
                 kill count was read, containerd/containerd#8893)",
                runtime_name()
            );
        }
    }

    laps.lap("oom");
    // docker rm -f: the scopes go, and nothing took Docker's path literally.
    dk(l, &["rm", "-f", &id, &oom_id]);
    let oom_scope_dir = format!("/sys/fs/cgroup/system.slice/docker-{oom_id}.scope");
    for dir in [&scope_dir, &oom_scope_dir] {
        assert!(
            rsrunc_e2e::poll_until(Duration::from_secs(10), || !std::path::Path::new(dir)
                .exists()),
            "[{l}] {dir} is left after docker rm -f"
        );
    }
    let state = unit_state(&scope);
    assert!(
        state == "inactive",
        "[{l}] {scope} is {state} after docker rm -f"
    );
    let literal = literal_systemd_paths();
    assert!(
        literal.is_empty(),
        "[{l}] cgroups named with Docker's systemd path taken literally: {literal:?}"
    );
    laps.lap("rm");
    // What the shim logged about the OOM kill (rsrunc logs "oom id=ID oom_kills=N"), for
    // the count of oom events.
    let journal = run(
        "journalctl",
        &["-u", "containerd", "-o", "cat", "--no-pager"],
    )
    .stdout;
    let oom_log: Vec<&str> = journal
        .lines()
        .filter(|line| line.contains(&oom_id) && line.to_lowercase().contains("oom"))
        .collect();
    // Every event of the container is in by now (it is removed).
    let ooms = oom_event_count(&t0, &oom_id);
    println!(
        "[{l}] {own}: stats {stats:?}, {ooms} oom event(s) for one OOM kill \
         (containerd's log: {oom_log:?}); {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        laps.steps.join(", ")
    );
}

/// Docker's oom events for container `id` from `since` (epoch seconds) until now.
fn oom_event_count(since: &str, id: &str) -> usize {
    let until = (epoch() + 1).to_string();
    let container = format!("container={id}");
    docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &container,
        "--filter",
        "event=oom",
        "--format",
        "{{.Action}}",
    ])
    .stdout
    .lines()
    .filter(|a| *a == "oom")
    .count()
}

/// How long each step of a check took, for its report.
struct Laps {
    last: Instant,
    steps: Vec<String>,
}

impl Laps {
    fn new() -> Laps {
        Laps {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    fn lap(&mut self, step: &str) {
        let now = Instant::now();
        self.steps
            .push(format!("{step} {:.1} s", (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// `340KiB`, `2.844GiB`, `0B` (docker stats' figures) in bytes.
fn bytes_of(figure: &str) -> Option<f64> {
    let unit_at = figure.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = figure.split_at(unit_at);
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// Runs a container with `--runtime RUNTIME` and prints where it lands; asserts nothing.
fn observe(label: &str, runtime: &str) {
    let name = unique_id("node-observe");
    let _cleanup = RemoveContainer(name.clone());
    let out = docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "--runtime",
        runtime,
        vm::DOCKER_IMAGE,
        "sleep",
        "300",
    ]);
    if out.status != 0 {
        println!("observed, {label}: docker run failed: {out:?}");
        return;
    }
    let id = out.stdout.trim().to_string();
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &id]).stdout;
    let cgroup =
        std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap_or_default();
    let root = ["/run/containerd/runc/moby", "/run/docker/runtime-runc/moby"]
        .into_iter()
        .find(|root| std::path::Path::new(&format!("{root}/{id}")).exists());
    let literal = literal_systemd_paths();
    docker(&["rm", "-f", &id]);
    println!(
        "observed, {label}: cgroup {}, runtime root {root:?}, literal system.slice:docker: \
         cgroups while it ran {literal:?}, after docker rm -f {:?}",
        cgroup.trim(),
        literal_systemd_paths()
    );
}

// --- The Debian package on Debian's containerd (issue 13) -----------------------------------

/// Where the host's run puts the package built by `make deb` (see `rsrunc_e2e::vm`).
const DEB_IN_GUEST: &str = "/host/rsrunc.deb";
/// Where the run's own copy of the shim is installed; the package's copy is in /usr/bin.
const LOCAL_SHIM: &str = "/usr/local/bin/containerd-shim-rsrunc-v2";
const PACKAGED_SHIM: &str = "/usr/bin/containerd-shim-rsrunc-v2";

/// `apt install ./rsrunc_*.deb` on the node, whose containerd is Debian's own: containerd
/// finds the packaged shim by its runtime name alone, a container runs with it, and
/// purging the package removes what it installed. The package is ours: ignored under the
/// Go shim.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
#[cfg_attr(
    all(node_vm, go_shim),
    ignore = "rsrunc only: the Debian package of rsrunc"
)]
fn debian_package_runs_a_container() {
    node_test("debian_package_runs_a_container", || {
        rsrunc_e2e::ours_only();
        assert!(
            std::path::Path::new(DEB_IN_GUEST).exists(),
            "no package in the share: make deb builds target/debian/rsrunc_*.deb"
        );
        let containerd = run("dpkg-query", &["-W", "-f", "${Version}", "containerd"]).ok();
        let _restore = RestoreLocalShim::hide();

        // apt resolves the package's dependencies (runc | crun) from what is installed.
        let install = run("apt-get", &["install", "-y", DEB_IN_GUEST]);
        assert_eq!(install.status, 0, "apt-get install: {install:?}");
        let files = run("dpkg-query", &["-L", "rsrunc"]).ok().stdout;
        for want in [
            PACKAGED_SHIM,
            "/usr/share/man/man8/containerd-shim-rsrunc-v2.8.gz",
            "/usr/share/doc/rsrunc/copyright",
            "/usr/share/doc/rsrunc/examples/containerd-config-1.x.toml",
            "/usr/share/doc/rsrunc/examples/containerd-config-2.x.toml",
        ] {
            assert!(
                files.lines().any(|l| l == want),
                "{want} not in the package: {files}"
            );
            assert!(std::path::Path::new(want).exists(), "{want} not installed");
        }
        let version = run(PACKAGED_SHIM, &["-v"]).ok();
        // containerd remembers where it found a runtime's shim: a restart makes it look
        // again, and find the packaged one.
        assert!(
            restart_containerd(),
            "containerd did not come back after a restart"
        );

        let ns = Namespace::new("node-deb");
        let id = unique_id("deb");
        let rootfs = rsrunc_e2e::rootfs::busybox().display().to_string();
        ns.ctr(&[
            "run",
            "-d",
            "--runtime",
            rsrunc_e2e::RSRUNC,
            "--rootfs",
            &rootfs,
            &id,
            "/bin/sleep",
            "300",
        ])
        .ok();
        let shims: Vec<(i32, String)> = rsrunc_e2e::daemon::processes()
            .into_iter()
            .filter(|p| {
                p.cmdline
                    .windows(2)
                    .any(|w| w[0] == "-namespace" && w[1] == ns.name)
            })
            .map(|p| {
                let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid))
                    .map(|e| e.display().to_string())
                    .unwrap_or_default();
                (p.pid, exe)
            })
            .collect();
        assert_eq!(shims.len(), 1, "one shim for the namespace: {shims:?}");
        assert_eq!(shims[0].1, PACKAGED_SHIM, "the shim's executable");
        let exec = ns.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "/bin/sh",
            "-c",
            "echo from-deb; exit 5",
        ]);
        assert_eq!(exec.status, 5, "{exec:?}");
        assert_eq!(exec.stdout, "from-deb\n", "{exec:?}");
        ns.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        let stopped = rsrunc_e2e::poll_until(Duration::from_secs(20), || {
            ns.ctr(&["task", "ls"]).stdout.contains("STOPPED")
        });
        assert!(
            stopped,
            "the task did not stop: {:?}",
            ns.ctr(&["task", "ls"])
        );
        ns.ctr(&["task", "rm", &id]).ok();
        ns.ctr(&["containers", "rm", &id]).ok();
        let gone = rsrunc_e2e::poll_until(Duration::from_secs(15), || {
            shims
                .iter()
                .all(|(pid, _)| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        });
        assert!(
            gone,
            "the shim {shims:?} is still there after the task's delete"
        );

        let purge = run("dpkg", &["--purge", "rsrunc"]).ok();
        for gone in [
            PACKAGED_SHIM,
            "/usr/share/doc/rsrunc",
            "/usr/share/man/man8/containerd-shim-rsrunc-v2.8.gz",
        ] {
            assert!(
                !std::path::Path::new(gone).exists(),
                "{gone} left after dpkg --purge: {purge:?}"
            );
        }
        println!(
            "installed on containerd {} and ran a container; shim {}",
            containerd.stdout,
            version.stdout.lines().next().unwrap_or("")
        );
    });
}

/// Moves the run's own shim out of containerd's PATH for the Debian package test, and
/// puts it back (purging the package if the test left it) when the test ends.
struct RestoreLocalShim;

impl RestoreLocalShim {
    fn hide() -> RestoreLocalShim {
        std::fs::rename(LOCAL_SHIM, format!("{LOCAL_SHIM}.hidden")).unwrap();
        RestoreLocalShim
    }
}

impl Drop for RestoreLocalShim {
    fn drop(&mut self) {
        if std::path::Path::new(PACKAGED_SHIM).exists() {
            run("dpkg", &["--purge", "rsrunc"]);
        }
        let _ = std::fs::rename(format!("{LOCAL_SHIM}.hidden"), LOCAL_SHIM);
        restart_containerd();
    }
}

/// Restarts the system containerd and waits until it (and dockerd through it) answers;
/// false if they did not within a minute.
fn restart_containerd() -> bool {
    run("systemctl", &["restart", "containerd.service"]);
    rsrunc_e2e::poll_until(Duration::from_secs(60), || {
        run("ctr", &["--address", vm::CONTAINERD_SOCKET, "version"]).status == 0
            && docker(&["info", "--format", "{{.ServerVersion}}"]).status == 0
    })
}

/// Stats on cgroup v2 carry pressure (PSI: cpu, memory, io) and memory events, as
/// containerd's cgroups library reports them, through the node's containerd 1.7 and
/// containerd 2.1.9 (extracted in the image, run as a private daemon), under either shim.
#[test]
#[cfg_attr(not(node_vm), ignore = "boots the node VM: run by make node")]
fn v2_stats_carry_pressure_and_memory_events() {
    node_test("v2_stats_carry_pressure_and_memory_events", || {
        let runtime = runtime_name();
        let rootfs = rsrunc_e2e::rootfs::busybox().display().to_string();
        let ns = Namespace::new("node-stats");
        let id = unique_id("stats");
        let cmd = [
            "/bin/sh",
            "-c",
            "cat /proc/self/status >/dev/null; exec sleep 300",
        ];
        let mut run = vec!["run", "-d", "--runtime", &runtime, "--rootfs", &rootfs, &id];
        run.extend_from_slice(&cmd);
        ns.ctr(&run).ok();
        let metrics = ns.ctr(&["task", "metrics", "--format", "json", &id]).ok();
        check_v2_metrics("containerd 1.7 (the node's)", &metrics.stdout);
        ns.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();

        let flavor = rsrunc_e2e::daemon::Flavor {
            bin_dir: Some("/opt/containerd-2.1.9/usr/bin".into()),
            config_version: 3,
        };
        let d = rsrunc_e2e::Daemon::start_flavor(&runtime, &flavor);
        let id = unique_id("stats");
        d.run(Oci::Runc, &["-d"], &id, &cmd).ok();
        let metrics = d.ctr(&["task", "metrics", "--format", "json", &id]).ok();
        check_v2_metrics("containerd 2.1.9", &metrics.stdout);
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    });
}

/// `ctr task metrics --format json` of a running container on cgroup v2: each pressure
/// file's "some" and "full" lines and memory.events are there (zeros are left out of the
/// JSON, so the objects are what is checked, and one counter that cannot be zero).
fn check_v2_metrics(what: &str, json: &str) {
    let m: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{what}: metrics are not JSON ({e}): {json}"));
    for (controller, psi) in [
        ("cpu", &m["cpu"]["psi"]),
        ("memory", &m["memory"]["psi"]),
        ("io", &m["io"]["psi"]),
    ] {
        for line in ["some", "full"] {
            assert!(
                psi[line].is_object(),
                "{what}: no {controller} pressure {line:?} in the metrics: {json}"
            );
        }
    }
    assert!(
        m["memory_events"].is_object(),
        "{what}: no memory events in the metrics: {json}"
    );
    assert!(
        m["memory"]["usage"].as_u64().is_some_and(|u| u > 0),
        "{what}: no memory usage in the metrics: {json}"
    );
    println!(
        "{what}: cpu psi {} memory_events {}",
        m["cpu"]["psi"], m["memory_events"]
    );
}
