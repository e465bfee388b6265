#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Node tests: the shim under the system containerd and dockerd of a node-like host, the
//! test VM (see `rsrunc_e2e::vm`), where containerd runs as systemd runs it (`Type=notify`,
//! `NOTIFY_SOCKET` in its environment) and Docker uses the systemd cgroup driver.

use rsrunc_e2e::vm::{self, docker, node_test, run, Namespace};
use rsrunc_e2e::{runtime_name, unique_id};

/// The guest is what the other node tests rely on: systemd as PID 1, pure cgroup v2,
/// containerd and dockerd running under their units, Docker on the systemd driver.
#[test]
#[ignore = "boots the node VM: run by make node"]
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
#[ignore = "boots the node VM: run by make node"]
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
#[ignore = "boots the node VM: run by make node"]
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
#[ignore = "boots the node VM: run by make node"]
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
