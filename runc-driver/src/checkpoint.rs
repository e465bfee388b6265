//! `checkpoint` and `restore`: the runtime runs CRIU to dump a container's processes into
//! an image directory and to bring them back from one. Argument vectors are built by pure
//! functions, as for every other subcommand; a failed dump is explained from CRIU's own
//! log ([`criu_errors`]), which the runtime only names.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::ops::{Runtime, Stdio};
use crate::opts::{push_flag, push_value, GlobalOpts};

/// What CRIU is told, at dump and at restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriuOpts {
    /// `--image-path`: where the images are written (dump) or read (restore).
    pub image_path: PathBuf,
    /// `--work-path`: where CRIU writes its logs (`dump.log`, `restore.log`).
    pub work_path: Option<PathBuf>,
    /// `--parent-path`: a previous (pre-)dump the images are relative to.
    pub parent_path: Option<PathBuf>,
    /// `--tcp-established`: established TCP connections are dumped.
    pub tcp_established: bool,
    /// `--ext-unix-sk`: unix sockets connected to outside the container are allowed.
    pub ext_unix_sk: bool,
    /// `--shell-job`: the processes have a terminal from outside the container.
    pub shell_job: bool,
    /// `--file-locks`.
    pub file_locks: bool,
    /// `--manage-cgroups-mode`: one of [`CGROUPS_MODES`].
    pub cgroups_mode: Option<String>,
    /// `--empty-ns`: namespaces (`network`) that CRIU recreates empty instead of dumping.
    pub empty_namespaces: Vec<String>,
}

/// `checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointOpts {
    pub criu: CriuOpts,
    /// `--leave-running`: the container goes on after the dump (else it is stopped).
    pub leave_running: bool,
}

/// `restore --detach`: the restored init ends up a child of the caller's subreaper, like
/// a created one. (containerd's Go shim adds `--no-subreaper`, which crun does not know;
/// a detached runc exits once the process is restored, so the process is reparented to
/// the caller's subreaper either way.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOpts {
    pub criu: CriuOpts,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
}

/// The values `--manage-cgroups-mode` takes.
pub const CGROUPS_MODES: [&str; 4] = ["soft", "full", "strict", "ignore"];

/// How many of CRIU's last error lines a failure quotes.
pub const QUOTED_ERRORS: usize = 3;

impl Runtime {
    /// `checkpoint`: dumps the container into `o.criu.image_path`. On failure, CRIU's log
    /// is `dump.log` in the work path.
    pub fn checkpoint(&self, id: &str, o: &CheckpointOpts) -> Result<()> {
        self.run(
            "checkpoint",
            id,
            checkpoint_args(self.global(), id, o),
            None,
        )
        .map(drop)
    }

    /// `restore`: creates container `id` from `o.bundle` and the images, with `stdio`
    /// as its standard streams, and returns the restored init's pid once it runs (from
    /// `o.pid_file`, or a temporary one in the driver's directory).
    pub fn restore(&self, id: &str, o: &RestoreOpts, stdio: Stdio) -> Result<i32> {
        let temp;
        let mut o = o.clone();
        let pid_file = match &o.pid_file {
            Some(p) => p.clone(),
            None => {
                temp = crate::ops::TempFile::name(self.temp_dir(), "restore", "pid");
                o.pid_file = Some(temp.0.clone());
                temp.0.clone()
            }
        };
        self.run(
            "restore",
            id,
            restore_args(self.global(), id, &o),
            Some(stdio),
        )?;
        self.read_pid("restore", &pid_file)
    }
}

pub fn checkpoint_args(global: &GlobalOpts, id: &str, o: &CheckpointOpts) -> Vec<OsString> {
    let mut a = global.args();
    a.push("checkpoint".into());
    push_criu(&mut a, &o.criu);
    push_flag(&mut a, "--leave-running", o.leave_running);
    a.push(id.into());
    a
}

pub fn restore_args(global: &GlobalOpts, id: &str, o: &RestoreOpts) -> Vec<OsString> {
    let mut a = global.args();
    a.push("restore".into());
    push_criu(&mut a, &o.criu);
    a.push("--detach".into());
    push_value(&mut a, "--pid-file", o.pid_file.as_ref());
    push_value(&mut a, "--console-socket", o.console_socket.as_ref());
    push_flag(&mut a, "--no-pivot", o.no_pivot);
    a.push("--bundle".into());
    a.push(o.bundle.as_os_str().into());
    a.push(id.into());
    a
}

/// The last `max` error lines of a CRIU log (`Error (file:line): ...`, with the
/// timestamp CRIU puts in front removed), oldest first.
pub fn criu_errors(log: &str, max: usize) -> Vec<String> {
    let mut errors: Vec<String> = log
        .lines()
        .filter_map(|l| l.find("Error (").map(|i| l[i..].trim().to_string()))
        .collect();
    let skip = errors.len().saturating_sub(max);
    errors.drain(..skip);
    errors
}

/// [`criu_errors`] of the log file at `path`; empty if it cannot be read.
pub fn criu_log_errors(path: &Path, max: usize) -> Vec<String> {
    std::fs::read(path)
        .map(|b| criu_errors(&String::from_utf8_lossy(&b), max))
        .unwrap_or_default()
}

fn push_criu(a: &mut Vec<OsString>, o: &CriuOpts) {
    a.push("--image-path".into());
    a.push(o.image_path.as_os_str().into());
    push_value(a, "--work-path", o.work_path.as_ref());
    push_value(a, "--parent-path", o.parent_path.as_ref());
    push_flag(a, "--tcp-established", o.tcp_established);
    push_flag(a, "--ext-unix-sk", o.ext_unix_sk);
    push_flag(a, "--shell-job", o.shell_job);
    push_flag(a, "--file-locks", o.file_locks);
    push_value(a, "--manage-cgroups-mode", o.cgroups_mode.as_ref());
    for ns in &o.empty_namespaces {
        push_value(a, "--empty-ns", Some(ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opts::tests::strs;

    fn global() -> GlobalOpts {
        GlobalOpts {
            root: Some("/r".into()),
            log: None,
            systemd_cgroup: false,
        }
    }

    #[test]
    fn a_bare_checkpoint_names_only_the_image_path() {
        let o = CheckpointOpts {
            criu: CriuOpts {
                image_path: "/img".into(),
                ..Default::default()
            },
            leave_running: false,
        };
        assert_eq!(
            strs(checkpoint_args(&global(), "c1", &o)),
            ["--root", "/r", "checkpoint", "--image-path", "/img", "c1"]
        );
    }

    #[test]
    fn every_checkpoint_option_has_its_flag() {
        let o = CheckpointOpts {
            criu: CriuOpts {
                image_path: "/img".into(),
                work_path: Some("/work".into()),
                parent_path: Some("/parent".into()),
                tcp_established: true,
                ext_unix_sk: true,
                shell_job: true,
                file_locks: true,
                cgroups_mode: Some("soft".into()),
                empty_namespaces: vec!["network".into(), "ipc".into()],
            },
            leave_running: true,
        };
        assert_eq!(
            strs(checkpoint_args(&global(), "c1", &o)),
            [
                "--root",
                "/r",
                "checkpoint",
                "--image-path",
                "/img",
                "--work-path",
                "/work",
                "--parent-path",
                "/parent",
                "--tcp-established",
                "--ext-unix-sk",
                "--shell-job",
                "--file-locks",
                "--manage-cgroups-mode",
                "soft",
                "--empty-ns",
                "network",
                "--empty-ns",
                "ipc",
                "--leave-running",
                "c1"
            ]
        );
    }

    #[test]
    fn restore_is_detached_and_names_the_bundle() {
        let o = RestoreOpts {
            criu: CriuOpts {
                image_path: "/img".into(),
                work_path: Some("/work".into()),
                ..Default::default()
            },
            bundle: "/b".into(),
            pid_file: Some("/b/init.pid".into()),
            console_socket: Some("/tmp/c.sock".into()),
            no_pivot: true,
        };
        assert_eq!(
            strs(restore_args(&global(), "c1", &o)),
            [
                "--root",
                "/r",
                "restore",
                "--image-path",
                "/img",
                "--work-path",
                "/work",
                "--detach",
                "--pid-file",
                "/b/init.pid",
                "--console-socket",
                "/tmp/c.sock",
                "--no-pivot",
                "--bundle",
                "/b",
                "c1"
            ]
        );
    }

    #[test]
    fn criu_errors_are_the_last_error_lines_without_timestamps() {
        let log = "(00.000001) Version: 4.1\n\
                   (00.049153) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE\n\
                   (00.100000) Warn  (criu/x.c:1): something\n\
                   (00.213121) Error (criu/files-reg.c:1790): Can't lookup mount=27 for fd=1\n\
                   (00.213149) Error (criu/cr-dump.c:1681): Dump files (pid: 23846) failed with -1\n\
                   (00.312735) Error (criu/cr-dump.c:2111): Dumping FAILED.\n";
        assert_eq!(
            criu_errors(log, 3),
            [
                "Error (criu/files-reg.c:1790): Can't lookup mount=27 for fd=1",
                "Error (criu/cr-dump.c:1681): Dump files (pid: 23846) failed with -1",
                "Error (criu/cr-dump.c:2111): Dumping FAILED.",
            ]
        );
        assert!(criu_errors("(00.1) Info all fine\n", 3).is_empty());
        assert_eq!(
            criu_errors(log, 1),
            ["Error (criu/cr-dump.c:2111): Dumping FAILED."]
        );
    }

    #[test]
    fn an_unreadable_log_quotes_nothing() {
        assert!(criu_log_errors(Path::new("/nonexistent/dump.log"), 3).is_empty());
    }
}
