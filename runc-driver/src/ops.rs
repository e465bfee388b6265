//! Running the runtime's subcommands.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::deadline::Deadlines;
use crate::env;
use crate::error::{Error, Result};
use crate::monitor::{self, Monitor, Output};
use crate::opts::{self, CreateOpts, ExecOpts, GlobalOpts};
use crate::runtime_log;

/// A runtime binary with its global flags, the monitor that starts it and collects its
/// exits, and the directory for the files it is handed (process specs, resources, pid
/// files), which the driver creates and removes around each command.
#[derive(Clone)]
pub struct Runtime {
    binary: PathBuf,
    global: GlobalOpts,
    monitor: Arc<dyn Monitor>,
    temp_dir: PathBuf,
    deadlines: Deadlines,
}

/// A file the driver writes for one command and removes after it.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    /// A new name in `dir` for `what` ("exec-process"), unique in this process.
    pub(crate) fn name(dir: &Path, what: &str, ext: &str) -> TempFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempFile(dir.join(format!(".rsrunc-{what}-{}-{n}.{ext}", std::process::id())))
    }

    /// Like [`TempFile::name`], with `content` written.
    fn with(dir: &Path, what: &str, ext: &str, content: &[u8]) -> Result<TempFile> {
        let f = TempFile::name(dir, what, ext);
        std::fs::write(&f.0, content).map_err(|source| Error::Io {
            op: "write",
            path: f.0.clone(),
            source,
        })?;
        Ok(f)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The standard streams given to a process the runtime creates; `None` is /dev/null.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("binary", &self.binary)
            .field("global", &self.global)
            .field("temp_dir", &self.temp_dir)
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(binary: impl Into<PathBuf>, global: GlobalOpts, monitor: Arc<dyn Monitor>) -> Self {
        Runtime {
            binary: binary.into(),
            global,
            monitor,
            temp_dir: std::env::temp_dir(),
            deadlines: Deadlines::default(),
        }
    }

    /// How long each command may run before it is killed ([`Deadlines::default`] unless
    /// set).
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// Where the files handed to the runtime are written (a container's bundle).
    pub fn with_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = dir.into();
        self
    }

    /// `create`: the container's init is created and waits for `start`; returns its pid.
    /// `stdio` becomes the container's standard streams, so the runtime's own
    /// complaints are read from its JSON log. The pid file is `o.pid_file` if given (and
    /// kept), else one of the driver's.
    pub fn create(&self, id: &str, o: &CreateOpts, stdio: Stdio) -> Result<i32> {
        let temp;
        let mut o = o.clone();
        let pid_file = match &o.pid_file {
            Some(p) => p.clone(),
            None => {
                temp = TempFile::name(&self.temp_dir, "create", "pid");
                o.pid_file = Some(temp.0.clone());
                temp.0.clone()
            }
        };
        self.run(
            "create",
            id,
            opts::create_args(&self.global, id, &o),
            Some(stdio),
        )?;
        self.read_pid("create", &pid_file)
    }

    pub(crate) fn global(&self) -> &GlobalOpts {
        &self.global
    }

    pub(crate) fn binary(&self) -> &Path {
        &self.binary
    }

    /// Where the driver puts the files it hands the runtime.
    pub(crate) fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.run(
            "start",
            id,
            opts::simple_args(&self.global, "start", id),
            None,
        )
        .map(drop)
    }

    /// `exec --detach`: runs `process` (an OCI process spec, JSON) in the container;
    /// returns its pid. The spec and pid files are the driver's, gone when it returns.
    pub fn exec(
        &self,
        id: &str,
        process: &[u8],
        console_socket: Option<PathBuf>,
        stdio: Stdio,
    ) -> Result<i32> {
        let process_file = TempFile::with(&self.temp_dir, "exec-process", "json", process)?;
        let pid_file = TempFile::name(&self.temp_dir, "exec", "pid");
        let o = ExecOpts {
            process_file: process_file.0.clone(),
            pid_file: Some(pid_file.0.clone()),
            console_socket,
        };
        self.run(
            "exec",
            id,
            opts::exec_args(&self.global, id, &o),
            Some(stdio),
        )?;
        self.read_pid("exec", &pid_file.0)
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        self.run(
            "kill",
            id,
            opts::kill_args(&self.global, id, signal, all),
            None,
        )
        .map(drop)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.run(
            "delete",
            id,
            opts::delete_args(&self.global, id, force),
            None,
        )
        .map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.run(
            "pause",
            id,
            opts::simple_args(&self.global, "pause", id),
            None,
        )
        .map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.run(
            "resume",
            id,
            opts::simple_args(&self.global, "resume", id),
            None,
        )
        .map(drop)
    }

    /// `update`: `resources` (an OCI LinuxResources object, JSON) for the container,
    /// handed over in a file of the driver's, gone when it returns.
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let file = TempFile::with(&self.temp_dir, "update", "json", resources)?;
        self.run(
            "update",
            id,
            opts::update_args(&self.global, id, &file.0),
            None,
        )
        .map(drop)
    }

    /// The pids of every process in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let out = self.run("ps", id, opts::ps_args(&self.global, id), None)?;
        let pids: Option<Vec<i32>> =
            serde_json::from_slice(&out.stdout).map_err(|e| self.parse_error("ps", e))?;
        Ok(pids.unwrap_or_default())
    }

    /// `features`: what the runtime supports, as JSON; older runtimes lack the command.
    pub fn features(&self) -> Result<Vec<u8>> {
        let mut args = self.global.args();
        args.push("features".into());
        Ok(self.run("features", "", args, None)?.stdout)
    }

    pub(crate) fn run(
        &self,
        verb: &'static str,
        id: &str,
        args: Vec<OsString>,
        stdio: Option<Stdio>,
    ) -> Result<Output> {
        let log_offset = self.global.log.as_deref().map(runtime_log::log_len);
        let mut cmd = Command::new(&self.binary);
        cmd.args(&args)
            .env_clear()
            .envs(env::runtime_env(std::env::vars_os()));
        let stderr_captured = stdio.is_none();
        match stdio {
            Some(s) => {
                cmd.stdin(to_stdio(s.stdin))
                    .stdout(to_stdio(s.stdout))
                    .stderr(to_stdio(s.stderr));
            }
            None => {
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
            }
        }
        log::debug!("run {} {:?}", self.binary.display(), args);
        let deadline = self.deadlines.of(verb);
        let out = monitor::run(self.monitor.as_ref(), cmd, Some(deadline))
            .map_err(|source| Error::Spawn {
                binary: self.binary.clone(),
                source,
            })?
            .ok_or_else(|| Error::DeadlineExceeded {
                binary: self.binary.clone(),
                verb,
                id: id.to_string(),
                deadline,
            })?;
        if out.status.success() {
            return Ok(out);
        }
        let from_log = match (self.global.log.as_deref(), log_offset) {
            (Some(log), Some(offset)) => runtime_log::last_error_after(log, offset),
            _ => None,
        };
        let message = from_log
            .or_else(|| last_line(&out.stderr))
            .unwrap_or_else(|| {
                if stderr_captured {
                    "the runtime printed no error message".to_string()
                } else {
                    "the runtime logged no error; look for its message in the container's stderr"
                        .to_string()
                }
            });
        Err(Error::Failed {
            binary: self.binary.clone(),
            verb,
            id: id.to_string(),
            status: out.status,
            message,
        })
    }

    /// The pid the runtime wrote to `path` for `verb`.
    pub(crate) fn read_pid(&self, verb: &'static str, path: &Path) -> Result<i32> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            op: "read pid file",
            path: path.to_path_buf(),
            source,
        })?;
        text.trim()
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::Parse {
                binary: self.binary.clone(),
                verb,
                reason: format!("pid file {} holds {text:?}, not a pid", path.display()),
            })
    }

    fn parse_error(&self, verb: &'static str, e: serde_json::Error) -> Error {
        Error::Parse {
            binary: self.binary.clone(),
            verb,
            reason: e.to_string(),
        }
    }
}

fn to_stdio(fd: Option<OwnedFd>) -> std::process::Stdio {
    fd.map_or_else(std::process::Stdio::null, std::process::Stdio::from)
}

/// The last non-empty line a runtime printed, with runc's text-log framing removed; a
/// command-line parser's `error: ...` line rather than the usage hints that follow it
/// (youki's "For more information, try '--help'.").
fn last_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let usage_error = text.lines().rev().find(|l| l.starts_with("error: "));
    let line = usage_error
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))?
        .trim();
    // runc's text logs look like: time="..." level=error msg="the message"
    let line = match line.find("msg=\"") {
        Some(i) => line[i + 5..].trim_end_matches('"'),
        None => line,
    };
    Some(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::StdMonitor;

    /// Runs `op`, again while the kernel says the script is busy: another test's fork
    /// may briefly hold our freshly written script open (ETXTBSY).
    fn retry<T>(op: impl Fn() -> Result<T>) -> Result<T> {
        for _ in 0..100 {
            match op() {
                Err(Error::Spawn { source, .. })
                    if source.raw_os_error() == Some(libc::ETXTBSY) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
        op()
    }

    fn fake_runtime(dir: &Path, script: &str) -> Runtime {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bin = dir.join(format!("fake-runtime-{n}"));
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let global = GlobalOpts {
            log: Some(dir.join("log.json")),
            ..Default::default()
        };
        Runtime::new(bin, global, Arc::new(StdMonitor)).with_temp_dir(dir)
    }

    #[test]
    fn failure_carries_the_json_log_message() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(
            dir.path(),
            r#"log="$2"; echo '{"level":"error","msg":"container does not exist"}' >> "$log"; exit 1"#,
        );
        let err = retry(|| rt.kill("c1", 9, false)).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(
            err.to_string().contains("kill c1 failed (exit status 1)"),
            "{err}"
        );
    }

    #[test]
    fn failure_without_log_uses_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(
            dir.path(),
            r#"echo 'time="x" level=error msg="container not running"' >&2; exit 1"#,
        );
        let err = retry(|| rt.pause("c1")).unwrap_err();
        assert!(err.is_not_running(), "{err}");
        assert!(
            err.to_string().ends_with(": container not running"),
            "{err}"
        );
    }

    #[test]
    fn ps_parses_pids_and_null() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(dir.path(), "echo '[12,34]'");
        assert_eq!(retry(|| rt.ps("c1")).unwrap(), vec![12, 34]);
        let rt = fake_runtime(dir.path(), "echo null");
        assert!(retry(|| rt.ps("c1")).unwrap().is_empty());
        let rt = fake_runtime(dir.path(), "echo garbage");
        assert!(matches!(retry(|| rt.ps("c1")), Err(Error::Parse { .. })));
    }

    #[test]
    fn the_runtime_does_not_get_the_service_managers_variables() {
        // Set as systemd sets them for containerd (and so for every shim it starts).
        std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify");
        std::env::set_var("LISTEN_FDS", "1");
        std::env::set_var("RSRUNC_DRIVER_TEST_KEPT", "kept");
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(
            dir.path(),
            r#"echo "[${#NOTIFY_SOCKET},${#LISTEN_FDS},${#RSRUNC_DRIVER_TEST_KEPT}]""#,
        );
        // ps prints the list of pids: here the lengths of the three variables.
        assert_eq!(retry(|| rt.ps("c1")).unwrap(), vec![0, 0, 4]);
    }

    #[test]
    fn exec_and_update_files_are_the_drivers_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Copies the process spec it was given and writes a pid, as runc exec does.
        let rt = fake_runtime(
            dir.path(),
            r#"while [ $# -gt 1 ]; do case "$1" in --process) cp "$2" "$(dirname "$2")/seen.json";; --pid-file) echo 4242 > "$2";; --resources) cp "$2" "$(dirname "$2")/res.json";; esac; shift; done"#,
        );
        let pid = retry(|| rt.exec("c1", br#"{"args":["sh"]}"#, None, Stdio::default())).unwrap();
        assert_eq!(pid, 4242);
        retry(|| rt.update("c1", br#"{"pids":{"limit":9}}"#)).unwrap();
        let seen = std::fs::read_to_string(dir.path().join("seen.json")).unwrap();
        assert_eq!(seen, r#"{"args":["sh"]}"#);
        let res = std::fs::read_to_string(dir.path().join("res.json")).unwrap();
        assert_eq!(res, r#"{"pids":{"limit":9}}"#);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".rsrunc-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn create_reads_the_pid_or_says_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("init.pid");
        let o = CreateOpts {
            bundle: dir.path().into(),
            pid_file: Some(pid_file.clone()),
            ..Default::default()
        };
        let rt = fake_runtime(dir.path(), &format!("echo 77 > {}", pid_file.display()));
        assert_eq!(retry(|| rt.create("c1", &o, Stdio::default())).unwrap(), 77);
        let rt = fake_runtime(dir.path(), &format!("echo x > {}", pid_file.display()));
        let e = retry(|| rt.create("c1", &o, Stdio::default())).unwrap_err();
        assert!(matches!(e, Error::Parse { .. }), "{e}");
        assert!(e.to_string().contains("init.pid holds"), "{e}");
        let rt = fake_runtime(dir.path(), &format!("rm -f {}", pid_file.display()));
        let e = retry(|| rt.create("c1", &o, Stdio::default())).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn a_hung_command_is_killed_at_its_deadline_naming_verb_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let rt = fake_runtime(dir.path(), "exec sleep 300").with_deadlines(Deadlines {
            control: std::time::Duration::from_millis(200),
            ..Default::default()
        });
        let err = retry(|| rt.kill("c1", 9, false)).unwrap_err();
        assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("kill c1 did not finish within its deadline of 0.2 s"),
            "{msg}"
        );
        assert_eq!(err.verb(), Some("kill"));
    }

    #[test]
    fn a_missing_binary_is_a_spawn_error_naming_it() {
        let rt = Runtime::new(
            "/nonexistent/crun",
            GlobalOpts::default(),
            Arc::new(StdMonitor),
        );
        let err = rt.start("c1").unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }));
        assert!(err.to_string().contains("/nonexistent/crun"), "{err}");
    }

    #[test]
    fn a_usage_error_is_quoted_rather_than_the_hint_after_it() {
        let clap = b"error: unrecognized subcommand 'checkpoint'\n\n  tip: a similar subcommand exists: 'checkpointt'\n\nUsage: youki [OPTIONS] [COMMAND]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            last_line(clap).as_deref(),
            Some("error: unrecognized subcommand 'checkpoint'")
        );
        assert_eq!(
            last_line(b"time=\"t\" level=error msg=\"container not running\"\n").as_deref(),
            Some("container not running")
        );
    }
}
