//! A private containerd for one test: its own root, state, sockets and namespace,
//! stopped by pid when dropped, even when the test failed.
//!
//! It runs the way systemd runs containerd's unit (`Type=notify`): with `NOTIFY_SOCKET`
//! pointing at a datagram socket the daemon owns, and an `INVOCATION_ID`. containerd
//! hands both to every shim it starts, as on a real host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Spec;

use crate::{poll_until, rootfs, runtime_name, shim_binary, Oci, GO_SHIM};

pub struct Daemon {
    dir: tempfile::TempDir,
    /// The service manager's notification socket (`NOTIFY_SOCKET`), read by the tests.
    notify: std::os::unix::net::UnixDatagram,
    child: Child,
    /// The ctr that belongs to this containerd.
    ctr: PathBuf,
    /// The containerd binary and its PATH, to start it again.
    containerd: PathBuf,
    path_env: String,
    pub socket: PathBuf,
    pub ttrpc_socket: PathBuf,
    pub namespace: String,
    pub runtime: String,
}

#[derive(Debug, Clone)]
pub struct CtrOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CtrOutput {
    /// Panics with everything ctr said unless it exited 0.
    pub fn ok(self) -> CtrOutput {
        assert_eq!(self.status, 0, "ctr failed: {self:?}");
        self
    }
}

/// Which containerd to start: the installed one, or one extracted under a directory.
#[derive(Debug, Clone)]
pub struct Flavor {
    /// Directory holding `containerd` and `ctr`; None for the ones on PATH.
    pub bin_dir: Option<PathBuf>,
    /// Config file format: 2 for containerd 1.x, 3 for 2.x.
    pub config_version: u8,
}

/// The containerd versions `scripts/setup-host.sh` extracts under /opt/rsrunc-test
/// (1.6, 1.7, 2.x), by version, oldest first.
pub fn flavors() -> Vec<(String, Flavor)> {
    let root = PathBuf::from("/opt/rsrunc-test");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root)
        .expect("setup-host.sh extracts containerd 1.6 and 2.x under /opt/rsrunc-test")
    {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name.strip_prefix("containerd-") else {
            continue;
        };
        let config_version = if version.starts_with('1') { 2 } else { 3 };
        out.push((
            version.to_string(),
            Flavor {
                bin_dir: Some(entry.path().join("usr/bin")),
                config_version,
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 2,
        "expected containerd 1.6 and 2.x under {}",
        root.display()
    );
    out
}

/// containerd 2.1 as `scripts/setup-host.sh` extracts it.
pub const CONTAINERD_2_DIR: &str = "/opt/rsrunc-test/containerd-2.1.9/usr/bin";

impl Flavor {
    /// containerd 2.1 from [`CONTAINERD_2_DIR`]; panics when it is not there.
    pub fn containerd_2() -> Flavor {
        assert!(
            Path::new(CONTAINERD_2_DIR).join("containerd").exists(),
            "{CONTAINERD_2_DIR}/containerd is not there: scripts/setup-host.sh extracts it"
        );
        Flavor {
            bin_dir: Some(PathBuf::from(CONTAINERD_2_DIR)),
            config_version: 3,
        }
    }

    /// The Go shim that comes with this containerd, else [`crate::tool`]'s.
    pub fn go_shim(&self) -> PathBuf {
        self.bin_dir
            .as_ref()
            .map(|d| d.join("containerd-shim-runc-v2"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| crate::tool("containerd-shim-runc-v2"))
    }
}

impl Default for Flavor {
    fn default() -> Self {
        Flavor {
            bin_dir: None,
            config_version: 2,
        }
    }
}

impl Daemon {
    /// Starts containerd with the runtime under test ([`runtime_name`]).
    pub fn start() -> Daemon {
        Self::start_flavor(&runtime_name(), &Flavor::default())
    }

    pub fn start_with(runtime: &str) -> Daemon {
        Self::start_flavor(runtime, &Flavor::default())
    }

    pub fn start_flavor(runtime: &str, flavor: &Flavor) -> Daemon {
        Self::start_config(runtime, flavor, false, &|_| String::new())
    }

    /// Starts containerd with its CRI plugin enabled and `extra(daemon dir)` appended to
    /// the generated config (tests/src/cri.rs).
    pub fn start_cri(runtime: &str, flavor: &Flavor, extra: &dyn Fn(&Path) -> String) -> Daemon {
        Self::start_config(runtime, flavor, true, extra)
    }

    /// Starts containerd (without CRI) with `extra` appended to the generated config.
    pub fn start_configured(runtime: &str, flavor: &Flavor, extra: &str) -> Daemon {
        Self::start_config(runtime, flavor, false, &|_| extra.to_string())
    }

    fn start_config(
        runtime: &str,
        flavor: &Flavor,
        cri: bool,
        extra: &dyn Fn(&Path) -> String,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("rsrunc-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(shim_binary(), bin.join("containerd-shim-rsrunc-v2")).unwrap();
        let socket = d.join("c.sock");
        let ttrpc_socket = d.join("c.sock.ttrpc");
        let disabled = if cri {
            "[]"
        } else if flavor.config_version >= 3 {
            r#"["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim"]"#
        } else {
            r#"["io.containerd.grpc.v1.cri"]"#
        };
        let config = format!(
            r#"version = {version}
root = "{root}"
state = "{state}"
disabled_plugins = {disabled}
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{ttrpc}"
[debug]
  address = "{debug}"
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            version = flavor.config_version,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            ttrpc = ttrpc_socket.display(),
            debug = d.join("debug.sock").display(),
            opt = d.join("opt").display(),
        );
        let config = config + &extra(d);
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let path = format!(
            "{}:{}:{}",
            bin.display(),
            crate::TOOLS_DIR,
            std::env::var("PATH").unwrap_or_default()
        );
        let (containerd, ctr) = match &flavor.bin_dir {
            Some(dir) => (dir.join("containerd"), dir.join("ctr")),
            None => (crate::tool("containerd"), crate::tool("ctr")),
        };
        let notify = std::os::unix::net::UnixDatagram::bind(d.join(NOTIFY_SOCKET)).unwrap();
        notify.set_nonblocking(true).unwrap();
        let child = spawn_containerd(&containerd, d, &path, log);
        let daemon = Daemon {
            dir,
            notify,
            child,
            ctr,
            containerd,
            path_env: path,
            socket,
            ttrpc_socket,
            namespace: crate::unique_id("rsrunc-e2e"),
            runtime: runtime.to_string(),
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&self) {
        let up = poll_until(Duration::from_secs(20), || {
            self.ctr(&["version"]).status == 0
        });
        assert!(up, "containerd did not come up:\n{}", self.log());
    }

    /// Stops containerd (SIGTERM, as a service manager would) and starts it again with
    /// the same configuration; shims and containers are left running across it.
    pub fn restart(&mut self) {
        self.stop_containerd();
        self.start_containerd();
    }

    /// Stops containerd alone (SIGTERM to its pid, as a service manager would); shims and
    /// containers go on running. [`Daemon::start_containerd`] brings it back.
    pub fn stop_containerd(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }

    /// Starts containerd again on the same root, state and sockets, after
    /// [`Daemon::stop_containerd`], and waits until it answers.
    pub fn start_containerd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir().join("containerd.log"))
            .unwrap();
        self.child = spawn_containerd(&self.containerd, self.dir.path(), &self.path_env, log);
        self.wait_ready();
    }

    /// Sets containerd's log level (`debug` at first) from its next start on. `trace`
    /// logs every event it is forwarded ("event forwarded", with topic and namespace).
    pub fn set_log_level(&self, level: &str) {
        let path = self.dir().join("config.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let config: Vec<String> = config
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("level = ") {
                    format!("  level = \"{level}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&path, config.join("\n") + "\n").unwrap();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle containerd made for container `id` (its config.json, the shim's
    /// address file).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id)
    }

    /// The spec `ctr oci spec` prints: containerd's defaults, for bundles made by hand.
    pub fn default_spec(&self) -> Spec {
        serde_json::from_str(&self.ctr(&["oci", "spec"]).ok().stdout).unwrap()
    }

    /// What arrived on the service manager's notification socket so far, one message
    /// per datagram (containerd says READY=1 when it is up).
    pub fn notifications(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// Runs `ctr ARGS` (with this daemon's address and namespace) inside util-linux
    /// `script`, on a pseudo-terminal of `rows` x `cols`; returns what the terminal showed
    /// and ctr's exit code.
    pub fn ctr_in_pty(&self, rows: u16, cols: u16, args: &[String]) -> (String, i32) {
        let mut ctr = vec![
            self.ctr.display().to_string(),
            "--address".into(),
            self.socket.display().to_string(),
            "--namespace".into(),
            self.namespace.clone(),
        ];
        ctr.extend(args.iter().cloned());
        let quoted: Vec<String> = ctr
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let cmd = format!("stty rows {rows} cols {cols}; {}", quoted.join(" "));
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux) runs commands on a pseudo-terminal");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            exit_code(out.status),
        )
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The PATH containerd runs with, which its shims inherit.
    pub fn path_env(&self) -> &str {
        &self.path_env
    }

    pub fn is_go_shim(&self) -> bool {
        self.runtime == GO_SHIM
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> CtrOutput {
        self.ctr_input(args, None)
    }

    /// Makes `dir` a bundle: ctr's default spec (`ctr oci spec`) running `args` over the
    /// root filesystem `root`, in a cgroup of its own, `cgroups_path` (the default spec
    /// names one cgroup shared by every bundle made from it).
    pub fn write_bundle(&self, dir: &Path, root: &Path, args: &[&str], cgroups_path: &str) {
        use oci_spec::runtime::RootBuilder;
        let mut spec = self.default_spec();
        spec.set_root(Some(
            RootBuilder::default()
                .path(root)
                .readonly(false)
                .build()
                .unwrap(),
        ));
        let process = spec
            .process_mut()
            .as_mut()
            .expect("ctr's default spec has a process");
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        process.set_terminal(Some(false));
        spec.linux_mut()
            .as_mut()
            .expect("ctr's default spec has a linux section")
            .set_cgroups_path(Some(cgroups_path.into()));
        std::fs::create_dir_all(dir).unwrap();
        spec.save(dir.join("config.json")).unwrap();
    }

    pub fn ctr_input(&self, args: &[&str], input: Option<&[u8]>) -> CtrOutput {
        let mut cmd = self.ctr_cmd(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run ctr");
        if let Some(data) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        CtrOutput {
            status: exit_code(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// ctr in the background (an attached `run` to signal from outside).
    pub fn ctr_spawn(&self, args: &[&str]) -> Child {
        self.ctr_cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// How the OCI runtime is chosen: our shim reads a TOML options file
    /// (`--runtime-config-path`); the Go shim only takes `--runc-binary`.
    pub fn oci_flags(&self, oci: Oci) -> Vec<String> {
        match oci {
            Oci::Runc => vec![],
            _ if self.is_go_shim() => vec!["--runc-binary".into(), oci.binary()],
            _ => vec![
                "--runtime-config-path".into(),
                self.options_file(
                    &format!("{oci:?}").to_lowercase(),
                    &format!("BinaryName = \"{}\"\n", oci.binary()),
                ),
            ],
        }
    }

    /// Writes a runtime options file into the daemon's directory.
    pub fn options_file(&self, name: &str, toml: &str) -> String {
        let p = self.dir().join(format!("{name}.toml"));
        std::fs::write(&p, toml).unwrap();
        p.display().to_string()
    }

    /// `ctr run` arguments for `cmd` in the busybox rootfs under `oci`.
    pub fn run_args(&self, oci: Oci, extra: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into(), "--runtime".into(), self.runtime.clone()];
        a.extend(self.oci_flags(oci));
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push("--rootfs".into());
        a.push(rootfs::busybox().display().to_string());
        a.push(id.into());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    }

    pub fn run(&self, oci: Oci, extra: &[&str], id: &str, cmd: &[&str]) -> CtrOutput {
        let a = self.run_args(oci, extra, id, cmd);
        self.ctr(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `ctr run -d` of `cmd` as container `id` under `oci`, then waits until its task is
    /// RUNNING.
    pub fn run_detached(&self, oci: Oci, id: &str, cmd: &[&str]) {
        self.run(oci, &["-d"], id, cmd).ok();
        self.wait_status(id, "RUNNING");
    }

    /// The task's status column in `ctr task ls` (RUNNING, PAUSED, STOPPED, ...).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    }

    /// The task's init pid (the PID column of `ctr task ls`).
    pub fn task_pid(&self, id: &str) -> Option<i32> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(1)?.parse().ok())?
        })
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        let mut s = None;
        let reached = poll_until(Duration::from_secs(20), || {
            s = self.task_status(id);
            s.as_deref() == Some(want)
        });
        assert!(reached, "task {id} is {s:?}, expected {want}");
    }

    /// Shim processes serving this daemon (found by the address they were given).
    pub fn shim_pids(&self) -> Vec<i32> {
        let sock = self.socket.display().to_string();
        processes()
            .into_iter()
            .filter(|p| p.is_shim() && p.has_arg("-address", &sock))
            .map(|p| p.pid)
            .collect()
    }

    /// The pid of the shim of this daemon started for container `id` (its `-id`).
    pub fn shim_serving(&self, id: &str) -> Option<i32> {
        let sock = self.socket.display().to_string();
        processes()
            .into_iter()
            .find(|p| p.is_shim() && p.has_arg("-address", &sock) && p.has_arg("-id", id))
            .map(|p| p.pid)
    }

    /// Waits up to 15 s for every shim of this daemon to exit (they do so after the
    /// Shutdown that follows their last container's delete); returns those still there.
    pub fn shims_left(&self) -> Vec<i32> {
        poll_until(Duration::from_secs(15), || self.shim_pids().is_empty());
        self.shim_pids()
    }

    /// Zombie children of this daemon or of its shims.
    pub fn zombies(&self) -> Vec<i32> {
        let mut parents = self.shim_pids();
        parents.push(self.pid());
        processes()
            .into_iter()
            .filter(|p| p.state == 'Z' && parents.contains(&p.ppid))
            .map(|p| p.pid)
            .collect()
    }

    /// Mount points under this daemon's directory.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(self.dir())
    }

    /// The shim socket containerd and the shim derive for a task of this daemon.
    pub fn shim_socket(&self, group: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let joined = self.socket.join(&self.namespace).join(group);
        let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        PathBuf::from("/run/containerd/s").join(hex)
    }

    /// Deletes whatever a failed test left, through containerd, in every namespace of
    /// this private daemon (Docker's `moby` too).
    fn remove_leftovers(&self) {
        let namespaces = self.ctr(&["namespaces", "ls", "-q"]).stdout;
        for ns in namespaces.lines().filter(|l| !l.is_empty()) {
            let ctr = |args: &[&str]| {
                let mut a = vec!["--namespace", ns];
                a.extend_from_slice(args);
                self.ctr(&a).stdout
            };
            for id in ctr(&["task", "ls", "-q"]).lines().filter(|l| !l.is_empty()) {
                ctr(&["task", "kill", "-s", "SIGKILL", "--all", id]);
                ctr(&["task", "rm", "-f", id]);
            }
            for id in ctr(&["containers", "ls", "-q"])
                .lines()
                .filter(|l| !l.is_empty())
            {
                ctr(&["containers", "rm", id]);
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.remove_leftovers();
        let shims = self.shim_pids();
        self.stop_containerd();
        for s in shims {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(s),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for m in self.mounts().iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        remove_namespace_cgroups(&self.namespace);
    }
}

/// Containers get the cgroup /NAMESPACE/ID; the runtime removes the container's own, not
/// the namespace's. This daemon's namespace is its alone, so its (empty) cgroups go too.
fn remove_namespace_cgroups(namespace: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = hierarchies
        .flatten()
        .map(|h| h.path().join(namespace))
        .collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(namespace));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// The daemon's notification socket, in its directory.
const NOTIFY_SOCKET: &str = "notify.sock";

fn spawn_containerd(containerd: &Path, dir: &Path, path_env: &str, log: std::fs::File) -> Child {
    // As systemd starts a Type=notify service: the notification socket and an id for this
    // run of the unit. (Containers must see neither: the shim keeps them to itself.)
    let invocation: String = format!("{:032x}", rand_u128());
    Command::new(containerd)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path_env)
        .env("NOTIFY_SOCKET", dir.join(NOTIFY_SOCKET))
        .env("INVOCATION_ID", invocation)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start containerd: the test command installs it")
}

/// 128 random-enough bits for an invocation id (no cryptographic use).
fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    (u128::from(a) << 64) | u128::from(h.finish())
}

/// The arguments of `ctr task exec --exec-id EXEC_ID ID CMD...`, for [`Daemon::ctr`],
/// [`Daemon::ctr_input`] or [`Daemon::ctr_spawn`].
pub fn task_exec<'a>(exec_id: &'a str, id: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["task", "exec", "--exec-id", exec_id, id];
    args.extend_from_slice(cmd);
    args
}

/// Stops a daemon as a service manager would: SIGTERM, then SIGKILL after `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    poll_until(grace, || child.try_wait().ok().flatten().is_some());
    let _ = child.kill();
    let _ = child.wait();
}

pub fn exit_code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub cmdline: Vec<String>,
}

impl ProcInfo {
    /// Whether this is a containerd shim, ours or the Go one (any action).
    pub fn is_shim(&self) -> bool {
        self.cmdline
            .first()
            .is_some_and(|a| a.contains("containerd-shim"))
    }

    /// Whether the command line holds `flag` followed by `value`, e.g. `-id <id>`.
    pub fn has_arg(&self, flag: &str, value: &str) -> bool {
        self.cmdline
            .windows(2)
            .any(|w| w[0] == flag && w[1] == value)
    }
}

pub fn processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ProcInfo {
            pid,
            ppid,
            state,
            cmdline,
        });
    }
    out
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// `ctr events` of one daemon, read in the background: started and known to be
/// subscribed before [`Daemon::events`] returns, so no event of the test is missed.
pub struct Events {
    child: Child,
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    pub fn events(&self) -> Events {
        use std::io::BufRead;
        let mut child = self.ctr_spawn(&["events"]);
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = std::sync::Arc::clone(&text);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut t = sink.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        let ev = Events { child, text };
        // A labelled namespace publishes /namespaces/update: once one shows up, the
        // subscription is live. (The namespace may not exist yet: then create it.)
        let _ = self.ctr(&["namespaces", "create", &self.namespace]);
        for n in 0.. {
            let label = format!("rsrunc-probe={n}");
            self.ctr(&["namespaces", "label", &self.namespace, &label]);
            let seen = format!("\"rsrunc-probe\":\"{n}\"");
            if ev.wait_for(Duration::from_millis(200), |t| t.contains(&seen)) {
                break;
            }
            assert!(n < 100, "ctr events never showed a namespace update");
        }
        ev
    }
}

impl Events {
    /// Waits up to `timeout` for the text so far to satisfy `done`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        poll_until(timeout, || done(&self.text()))
    }

    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
