//! A private dockerd for one test, on its own private containerd ([`Daemon`]): its own
//! data-root, exec-root, socket and pidfile, no iptables and no bridge; stopped by pid
//! when dropped, even when the test failed.
//!
//! The runtime under test is reached the two ways Docker users have: a dotted runtime
//! name handed to containerd verbatim (`--runtime io.containerd.rsrunc.v2`, no daemon
//! configuration), and a daemon.json `runtimes` entry with `runtimeType` and `options`
//! (how crun is chosen).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{exit_code, mounts_under, stop_child};
use crate::{poll_until, rootfs, runtime_name, CtrOutput, Daemon, Oci};

/// The local image every Docker test runs: a busybox rootfs imported with `docker import`.
pub const IMAGE: &str = "busybox:local";
/// The daemon.json runtime entries that run crun and youki under the shim being tested.
pub const CRUN_ENTRY: &str = "test-crun";
pub const YOUKI_ENTRY: &str = "test-youki";

pub struct Docker {
    /// Dropped after dockerd has stopped (field order matters: see Drop).
    pub containerd: Daemon,
    child: Child,
    socket: PathBuf,
    /// dockerd's arguments, to start it again.
    args: Vec<String>,
}

impl Docker {
    /// dockerd with a daemon.json that defines [`CRUN_ENTRY`] and [`YOUKI_ENTRY`] for the
    /// shim under test.
    pub fn start() -> Docker {
        Self::start_with(|_| serde_json::json!({}))
    }

    /// dockerd with extra daemon.json settings (merged over the runtime entries),
    /// built from the containerd daemon's directory (where option files go).
    pub fn start_with(extra: impl FnOnce(&Path) -> serde_json::Value) -> Docker {
        Self::start_config(|containerd| {
            let mut config = serde_json::json!({ "runtimes": {
                    CRUN_ENTRY: entry(containerd, Oci::Crun),
                    YOUKI_ENTRY: entry(containerd, Oci::Youki),
                } });
            if let (Some(base), serde_json::Value::Object(more)) =
                (config.as_object_mut(), extra(containerd.dir()))
            {
                for (k, v) in more {
                    match (base.get_mut(&k), v) {
                        (Some(serde_json::Value::Object(b)), serde_json::Value::Object(m)) => {
                            b.extend(m)
                        }
                        (_, v) => {
                            base.insert(k, v);
                        }
                    }
                }
            }
            Some(config)
        })
    }

    /// dockerd without any daemon.json.
    pub fn start_unconfigured() -> Docker {
        Self::start_config(|_| None)
    }

    /// dockerd with one of the daemon.json examples in packaging/docker, its options
    /// file paths pointed at a copy of packaging/crun.toml.
    pub fn start_from_example(name: &str) -> Docker {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("packaging/docker").join(name)).unwrap();
        let crun = std::fs::read_to_string(root.join("packaging/crun.toml")).unwrap();
        Self::start_config(|containerd| {
            let file = containerd.options_file("example-crun", &crun);
            let text = text.replace("/etc/containerd/rsrunc-crun.toml", &file);
            Some(serde_json::from_str(&text).expect("the example is valid JSON"))
        })
    }

    fn start_config(config: impl FnOnce(&Daemon) -> Option<serde_json::Value>) -> Docker {
        let containerd = Daemon::start();
        let dir = containerd.dir().to_path_buf();
        let socket = dir.join("docker.sock");
        let mut args: Vec<String> = vec![
            "--containerd".into(),
            containerd.socket.display().to_string(),
            "--data-root".into(),
            dir.join("docker").display().to_string(),
            "--exec-root".into(),
            dir.join("dexec").display().to_string(),
            "--pidfile".into(),
            dir.join("docker.pid").display().to_string(),
            "-H".into(),
            format!("unix://{}", socket.display()),
            "--iptables=false".into(),
            "--ip6tables=false".into(),
            "--bridge=none".into(),
            "--userland-proxy=false".into(),
        ];
        if let Some(config) = config(&containerd) {
            std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
            args.push("--config-file".into());
            args.push(dir.join("daemon.json").display().to_string());
        }
        let child = spawn_dockerd(&dir, &args, &[]);
        let d = Docker {
            containerd,
            child,
            socket,
            args,
        };
        d.wait_ready();
        d.import_busybox();
        d
    }

    pub fn dir(&self) -> &Path {
        self.containerd.dir()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let up = poll_until(Duration::from_secs(30), || {
            self.docker(&["version"]).status == 0
        });
        assert!(up, "dockerd did not come up:\n{}", self.log());
    }

    fn import_busybox(&self) {
        let dir = self.dir().join("busybox-rootfs");
        rootfs::build(&dir);
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = self
            .docker_cmd(&["import", "-c", "CMD [\"/bin/sh\"]", "-", IMAGE])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            tar.wait().unwrap().success(),
            "tar of the busybox rootfs failed"
        );
        assert!(out.status.success(), "docker import: {out:?}");
    }

    /// The `--runtime` value that runs the shim under test with `oci`.
    pub fn runtime(&self, oci: Oci) -> String {
        match oci {
            Oci::Runc => runtime_name(),
            Oci::Crun => CRUN_ENTRY.to_string(),
            Oci::Youki => YOUKI_ENTRY.to_string(),
        }
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(docker_client());
        c.arg("-H").arg(format!("unix://{}", self.socket.display()));
        c.args(args);
        c
    }

    /// Runs the docker client to completion.
    pub fn docker(&self, args: &[&str]) -> CtrOutput {
        let out = self
            .docker_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the docker client");
        CtrOutput {
            status: exit_code(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the docker client and panics with what it said unless it exited 0; returns
    /// its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert_eq!(out.status, 0, "docker {args:?} failed: {out:?}");
        out.stdout.trim().to_string()
    }

    /// The docker client in the background (`logs -f`, `events`, `attach`).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.docker_cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `docker run -d --runtime RUNTIME [OPTIONS] IMAGE CMD...`; returns the container id.
    pub fn run_detached(&self, runtime: &str, options: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--runtime", runtime];
        args.extend_from_slice(options);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.ok(&args)
    }

    /// `docker inspect -f FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name])
    }

    /// Waits up to 20 s for `.State.Status` to become `want`.
    pub fn wait_state(&self, name: &str, want: &str) {
        let mut s = String::new();
        let reached = poll_until(Duration::from_secs(20), || {
            s = self.inspect(name, "{{.State.Status}}");
            s == want
        });
        assert!(reached, "container {name} is {s}, expected {want}");
    }

    /// Stops dockerd and starts it again with the same configuration plus `extra_args`.
    pub fn restart(&mut self, extra_args: &[&str]) {
        self.stop_dockerd();
        self.child = spawn_dockerd(self.containerd.dir(), &self.args, extra_args);
        self.wait_ready();
    }

    fn stop_dockerd(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]).stdout;
        for id in ids.lines().filter(|l| !l.is_empty()) {
            let _ = self.docker(&["rm", "-f", id]);
        }
        self.stop_dockerd();
        for m in mounts_under(&self.dir().join("docker")).iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // containerd (and whatever shim is left) is stopped when `self.containerd` drops.
    }
}

fn spawn_dockerd(dir: &Path, args: &[String], extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap();
    Command::new(crate::tool("dockerd"))
        .args(args)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start dockerd: the test command installs docker.io")
}

/// Debian's docker client that belongs to the dockerd under test (another client, of
/// another version, may come first on PATH).
pub fn docker_client() -> PathBuf {
    crate::tool("docker")
}

/// The daemon.json runtime entry that runs `oci` under the shim being tested: ours reads
/// an options file (`ConfigPath`), the Go shim takes `BinaryName`.
fn entry(containerd: &Daemon, oci: Oci) -> serde_json::Value {
    if containerd.is_go_shim() {
        serde_json::json!({
            "runtimeType": containerd.runtime,
            "options": { "BinaryName": oci.binary() }
        })
    } else {
        let file = containerd.options_file(
            &format!("docker-{oci:?}").to_lowercase(),
            &format!("BinaryName = \"{}\"\n", oci.binary()),
        );
        serde_json::json!({
            "runtimeType": containerd.runtime,
            "options": { "ConfigPath": file }
        })
    }
}
