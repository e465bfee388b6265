//! Node tests: tests that run on a node-like host, the test VM of `scripts/vm` (Debian
//! trixie, systemd as PID 1, pure cgroup v2, containerd and dockerd started by their
//! systemd units), and report back as ordinary cargo test results.
//!
//! A node test wraps its body in [`node_test`]. On the host, the first node test of the
//! test process copies the test binary itself and the freshly built shim into a share
//! directory, boots the VM once with `scripts/vm/run.sh` and waits for it; inside, the
//! guest's `rsrunc-test.service` runs the share's `run.sh`, which installs the shim as
//! `/usr/local/bin/containerd-shim-rsrunc-v2` and runs the same test binary with
//! `RSRUNC_IN_VM=1` (every node test, one at a time). There [`node_test`] runs the body.
//! Back on the host, the guest's libtest output is parsed, and each host test passes or
//! fails as its guest run did, with the guest's output of that test and, when the VM did
//! not run it, the reason and the tail of the serial console.
//!
//! The image is built by `scripts/vm/build-image.sh` (once, cached under
//! /opt/rsrunc-test/vm). Without it every node test fails and says so. Inside the guest,
//! tests use the system's daemons (`/run/containerd/containerd.sock`,
//! `/var/run/docker.sock`) through the helpers below: that is the point of the VM.
//!
//! Environment: `RSRUNC_VM_TIMEOUT` (seconds for the whole boot, default 1200),
//! `RSRUNC_VM_KEEP` (keep the share directory, with guest.log and console.log),
//! `RSRUNC_VM_ONLY` (a test name: the guest runs only the node tests that contain it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::daemon::exit_code;
use crate::{rootfs, runtime_name, shim_binary};

/// Whether this process runs inside the test VM.
pub fn in_vm() -> bool {
    std::env::var("RSRUNC_IN_VM").as_deref() == Ok("1")
}

/// Runs `body` inside the test VM. `name` is the test function's name, as libtest
/// reports it (`module::name` for a test inside a module).
///
/// On the host this returns when the guest's run of that test passed, prints so when it
/// was ignored there, and panics with the guest's output otherwise.
pub fn node_test(name: &str, body: impl FnOnce()) {
    if in_vm() {
        body();
        return;
    }
    // libtest names each test's thread after the test: catch a wrong `name` here rather
    // than as a missing result.
    if let Some(thread) = std::thread::current().name() {
        assert!(
            thread == "main" || thread == name,
            "node_test is called with {name:?} in test {thread:?}"
        );
    }
    let run = match guest_run() {
        Ok(run) => run,
        Err(reason) => panic!("node test {name}: the test VM did not run the tests: {reason}"),
    };
    let output = run.outputs.get(name).map(String::as_str).unwrap_or("");
    match run.results.get(name) {
        Some(Outcome::Ok) => {
            if !output.is_empty() {
                println!("--- in the VM ---\n{output}");
            }
        }
        Some(Outcome::Ignored) => println!("node test {name}: ignored in the VM"),
        Some(Outcome::Failed) => panic!(
            "node test {name} FAILED in the VM:\n{output}{}",
            section("guest console", &run.console_tail)
        ),
        None => panic!(
            "node test {name}: no result from the VM ({}){}{}",
            run.status,
            section("guest log", &run.log_tail),
            section("guest console", &run.console_tail)
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Ignored,
}

/// What one boot of the VM reported.
struct GuestRun {
    results: HashMap<String, Outcome>,
    /// Each test's captured output (`---- NAME stdout ----`).
    outputs: HashMap<String, String>,
    /// How run.sh ended, for tests without a result.
    status: String,
    log_tail: String,
    console_tail: String,
}

/// Boots the VM once per test process; every node test reads the same run.
fn guest_run() -> Result<&'static GuestRun, &'static str> {
    static RUN: OnceLock<Result<GuestRun, String>> = OnceLock::new();
    RUN.get_or_init(boot)
        .as_ref()
        .map_err(|reason| reason.as_str())
}

/// The scripts directory of this repository.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm")
}

fn boot() -> Result<GuestRun, String> {
    let share = tempfile::Builder::new()
        .prefix("rsrunc-vm-")
        .tempdir_in("/tmp")
        .map_err(|e| format!("cannot make a share directory: {e}"))?;
    let dir = share.path();
    let run = prepare_share(dir)?;
    let timeout = std::env::var("RSRUNC_VM_TIMEOUT").unwrap_or_else(|_| "1200".into());
    eprintln!("node tests: booting the test VM (share {})", dir.display());
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(scripts_dir().join("run.sh"))
        .arg(dir)
        .arg(&timeout)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/vm/run.sh: {e}"))?;
    let code = exit_code(out.status);
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    eprintln!(
        "node tests: the VM ran for {:.0} s, run.sh exited {code}",
        started.elapsed().as_secs_f64()
    );
    let log = std::fs::read_to_string(dir.join("guest.log")).unwrap_or_default();
    let console =
        console_tail(&std::fs::read_to_string(dir.join("console.log")).unwrap_or_default());
    if std::env::var_os("RSRUNC_VM_KEEP").is_some() {
        eprintln!("node tests: keeping {}", share.keep().display());
    }
    // Otherwise the share is removed when `share` drops: the logs are read by now.
    let (results, outputs) = parse_libtest(&log);
    if results.is_empty() {
        return Err(format!(
            "{run} exited {code}: {said}{}{}",
            section("guest log", &tail(&log, 30)),
            section("guest console", &console)
        ));
    }
    Ok(GuestRun {
        results,
        outputs,
        status: format!("run.sh exited {code}: {said}"),
        log_tail: tail(&log, 30),
        console_tail: console,
    })
}

/// Puts the test binary, the shim and the guest's run.sh into the share; returns a
/// description of the run for messages.
fn prepare_share(dir: &Path) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no current_exe: {e}"))?;
    std::fs::copy(&exe, dir.join("node-tests"))
        .map_err(|e| format!("cannot copy {}: {e}", exe.display()))?;
    let shim = shim_binary();
    std::fs::copy(&shim, dir.join("containerd-shim-rsrunc-v2"))
        .map_err(|e| format!("cannot copy {}: {e}", shim.display()))?;
    // The Debian package `make deb` built, for the package test (it says so when absent).
    let debian = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let deb = std::fs::read_dir(&debian).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    });
    if let Some(deb) = deb {
        std::fs::copy(&deb, dir.join("rsrunc.deb"))
            .map_err(|e| format!("cannot copy {}: {e}", deb.display()))?;
    }
    // The host's choice of ignored tests goes along; the guest runs every node test of
    // this binary (a name filter on the host only chooses which results it reports).
    let ignored: Vec<String> = std::env::args()
        .filter(|a| a == "--ignored" || a == "--include-ignored")
        .collect();
    // While working on one test: RSRUNC_VM_ONLY=NAME runs only the node tests whose name
    // contains NAME in the guest (the others then have no result).
    let only = std::env::var("RSRUNC_VM_ONLY").unwrap_or_default();
    if !only
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("RSRUNC_VM_ONLY={only:?} is not a test name"));
    }
    let backtrace = std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "0".into());
    let script = format!(
        r#"#!/bin/sh
# Written by tests/src/vm.rs; run as root in the test VM by rsrunc-test.service.
set -e
install -m 0755 /host/containerd-shim-rsrunc-v2 /usr/local/bin/containerd-shim-rsrunc-v2
install -m 0755 /host/node-tests /usr/local/bin/rsrunc-node-tests
echo "guest: up $(cut -d' ' -f1 /proc/uptime) s; $(uname -r), $(containerd --version), $(runc --version | head -1), $(docker --version)"
cd /tmp
export RSRUNC_IN_VM=1 RSRUNC_E2E_RUNTIME='{runtime}' RUST_BACKTRACE='{backtrace}'
export RSRUNC_SHIM_BIN=/usr/local/bin/containerd-shim-rsrunc-v2
exec /usr/local/bin/rsrunc-node-tests --test-threads 1 --show-output {ignored} {only}
"#,
        runtime = runtime_name(),
        ignored = ignored.join(" "),
    );
    std::fs::write(dir.join("run.sh"), script).map_err(|e| format!("cannot write run.sh: {e}"))?;
    Ok(format!(
        "scripts/vm/run.sh (tests of {} under {})",
        exe.display(),
        runtime_name()
    ))
}

/// Reads libtest's output: `test NAME ... ok|FAILED|ignored` lines, and the captured
/// output of each test (`---- NAME stdout ----` up to the next section).
fn parse_libtest(log: &str) -> (HashMap<String, Outcome>, HashMap<String, String>) {
    let mut results = HashMap::new();
    let mut outputs: HashMap<String, String> = HashMap::new();
    let mut section: Option<String> = None;
    for line in log.lines() {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            section = Some(name.to_string());
            continue;
        }
        if matches!(line, "successes:" | "failures:") || line.starts_with("test result: ") {
            section = None;
        }
        if let Some(name) = &section {
            let text = outputs.entry(name.clone()).or_default();
            text.push_str(line);
            text.push('\n');
            continue;
        }
        if let Some((name, result)) = line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... "))
        {
            let outcome = match result.split([' ', ',']).next() {
                Some("ok") => Outcome::Ok,
                Some("FAILED") => Outcome::Failed,
                Some("ignored") => Outcome::Ignored,
                _ => continue,
            };
            results.insert(name.to_string(), outcome);
        }
    }
    for text in outputs.values_mut() {
        let trimmed = text.trim_end().len();
        text.truncate(trimmed);
    }
    (results, outputs)
}

/// The last lines of the serial console up to the end of the guest's run (what follows is
/// the power-off), without colours.
fn console_tail(console: &str) -> String {
    let console = strip_ansi(console);
    let end = console
        .find(GUEST_DONE)
        .and_then(|i| console[i..].find('\n').map(|n| i + n))
        .unwrap_or(console.len());
    tail(&console[..end], 40)
}

/// What the guest's rsrunc-test-run prints on the console when run.sh has ended.
const GUEST_DONE: &str = "rsrunc-test: /host/run.sh exited";

/// A titled block for a failure message; nothing when `text` is empty.
fn section(title: &str, text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- {title} (last lines) ---\n{text}")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The console without systemd's colours and terminal queries.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

// --- Inside the guest ---------------------------------------------------------------------

/// The system containerd's socket (containerd.service).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// The system dockerd's socket (docker.service).
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The image [`docker_busybox`] imports.
pub const DOCKER_IMAGE: &str = "busybox:local";

/// What a command did.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmd: String,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with everything the command said unless it exited 0.
    pub fn ok(self) -> Output {
        assert_eq!(self.status, 0, "{} failed: {self:?}", self.cmd);
        self
    }
}

/// Runs `program ARGS` to completion, stdin empty.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Output {
        cmd: format!("{program} {}", args.join(" ")),
        status: exit_code(out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `docker ARGS` against the system dockerd.
pub fn docker(args: &[&str]) -> Output {
    run("docker", args)
}

/// Imports the busybox rootfs into the system dockerd as [`DOCKER_IMAGE`], once per
/// process; returns the image name.
pub fn docker_busybox() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs::busybox())
            .args(["--owner=0", "--group=0", "-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Command::new("docker")
            .args(["import", "-c", "CMD [\"/bin/sh\"]", "-", DOCKER_IMAGE])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar of the busybox rootfs");
        assert!(out.status.success(), "docker import: {out:?}");
    });
    DOCKER_IMAGE
}

/// A containerd namespace of the system containerd for one test; what the test left in
/// it (tasks, containers, images) and its cgroup go when it drops.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        Namespace {
            name: crate::unique_id(prefix),
        }
    }

    /// `ctr --namespace NAME ARGS` against the system containerd.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut a = vec!["--address", CONTAINERD_SOCKET, "--namespace", &self.name];
        a.extend_from_slice(args);
        run("ctr", &a)
    }

    /// `ctr run --rm --runtime <runtime under test> EXTRA --rootfs <busybox> ID CMD...`.
    pub fn run(&self, extra: &[&str], id: &str, cmd: &[&str]) -> Output {
        let runtime = runtime_name();
        let rootfs = rootfs::busybox().display().to_string();
        let mut a = vec!["run", "--rm", "--runtime", &runtime];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--rootfs", &rootfs, id]);
        a.extend_from_slice(cmd);
        self.ctr(&a)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let lines = |out: Output| -> Vec<String> {
            out.stdout
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        for id in lines(self.ctr(&["task", "ls", "-q"])) {
            self.ctr(&["task", "kill", "-s", "SIGKILL", "--all", &id]);
            self.ctr(&["task", "rm", "-f", &id]);
        }
        for id in lines(self.ctr(&["containers", "ls", "-q"])) {
            self.ctr(&["containers", "rm", &id]);
        }
        for image in lines(self.ctr(&["images", "ls", "-q"])) {
            self.ctr(&["images", "rm", &image]);
        }
        self.ctr(&["namespaces", "rm", &self.name]);
        // ctr's default cgroup is /NAMESPACE/ID; runc removes the container's only.
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.name));
    }
}

/// The value of `var` in the environment of process `pid`.
pub fn process_env(pid: i32, var: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    environ
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_output() {
        let log = "guest: 6.12\n\nrunning 3 tests\ntest a ... ok\ntest m::b ... FAILED\n\
                   test c ... ignored, needs a thing\n\nsuccesses:\n\n---- a stdout ----\nfacts\n\n\
                   successes:\n    a\n\nfailures:\n\n---- m::b stdout ----\nthread 'm::b' panicked\n\n\
                   failures:\n    m::b\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored\n";
        let (results, outputs) = parse_libtest(log);
        assert_eq!(results["a"], Outcome::Ok);
        assert_eq!(results["m::b"], Outcome::Failed);
        assert_eq!(results["c"], Outcome::Ignored);
        assert_eq!(outputs["a"], "facts");
        assert_eq!(outputs["m::b"], "thread 'm::b' panicked");
    }

    #[test]
    fn console_tail_ends_with_the_run() {
        let console = "boot\nrsrunc-test: running /host/run.sh\n\
                       rsrunc-test: /host/run.sh exited 101\npower off\n";
        assert_eq!(
            console_tail(console),
            "boot\nrsrunc-test: running /host/run.sh\nrsrunc-test: /host/run.sh exited 101"
        );
        assert_eq!(console_tail("boot\npanic\n"), "boot\npanic");
    }

    #[test]
    fn strips_console_colours() {
        assert_eq!(
            strip_ansi("[\x1b[0;32m  OK  \x1b[0m] Started\r\n"),
            "[  OK  ] Started\n"
        );
    }
}
