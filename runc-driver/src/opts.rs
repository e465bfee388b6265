//! Argument vectors for the runtime CLI, built by pure functions.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Flags that precede every subcommand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalOpts {
    /// `--root`: where the runtime keeps its state.
    pub root: Option<PathBuf>,
    /// `--log`: the runtime's own log file (JSON lines).
    pub log: Option<PathBuf>,
    /// `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

/// `create` (and the creation half of `run`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOpts {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

/// `exec --detach --process FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOpts {
    pub process_file: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
}

impl GlobalOpts {
    /// The flags every subcommand starts with.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        push_value(&mut a, "--root", self.root.as_ref());
        if let Some(log) = &self.log {
            a.push("--log".into());
            a.push(log.into());
            a.push("--log-format".into());
            a.push("json".into());
        }
        push_flag(&mut a, "--systemd-cgroup", self.systemd_cgroup);
        a
    }
}

pub fn create_args(global: &GlobalOpts, id: &str, o: &CreateOpts) -> Vec<OsString> {
    let mut a = global.args();
    a.push("create".into());
    a.push("--bundle".into());
    a.push(o.bundle.as_os_str().into());
    push_value(&mut a, "--pid-file", o.pid_file.as_ref());
    push_value(&mut a, "--console-socket", o.console_socket.as_ref());
    push_flag(&mut a, "--no-pivot", o.no_pivot);
    push_flag(&mut a, "--no-new-keyring", o.no_new_keyring);
    a.push(id.into());
    a
}

pub fn exec_args(global: &GlobalOpts, id: &str, o: &ExecOpts) -> Vec<OsString> {
    let mut a = global.args();
    a.push("exec".into());
    a.push("--detach".into());
    a.push("--process".into());
    a.push(o.process_file.as_os_str().into());
    push_value(&mut a, "--pid-file", o.pid_file.as_ref());
    push_value(&mut a, "--console-socket", o.console_socket.as_ref());
    a.push(id.into());
    a
}

/// `kill [--all] ID SIGNAL`; the signal is passed as a number, which every runtime takes.
pub fn kill_args(global: &GlobalOpts, id: &str, signal: u32, all: bool) -> Vec<OsString> {
    let mut a = global.args();
    a.push("kill".into());
    push_flag(&mut a, "--all", all);
    a.push(id.into());
    a.push(signal.to_string().into());
    a
}

pub fn delete_args(global: &GlobalOpts, id: &str, force: bool) -> Vec<OsString> {
    let mut a = global.args();
    a.push("delete".into());
    push_flag(&mut a, "--force", force);
    a.push(id.into());
    a
}

/// Subcommands that take only the container id: `start`, `pause`, `resume`, `state`.
pub fn simple_args(global: &GlobalOpts, verb: &str, id: &str) -> Vec<OsString> {
    let mut a = global.args();
    a.push(verb.into());
    a.push(id.into());
    a
}

pub fn ps_args(global: &GlobalOpts, id: &str) -> Vec<OsString> {
    let mut a = global.args();
    a.push("ps".into());
    a.push("--format".into());
    a.push("json".into());
    a.push(id.into());
    a
}

pub fn update_args(global: &GlobalOpts, id: &str, resources_file: &Path) -> Vec<OsString> {
    let mut a = global.args();
    a.push("update".into());
    a.push("--resources".into());
    a.push(resources_file.into());
    a.push(id.into());
    a
}

/// `flag VALUE`, when there is a value: how every subcommand's argv takes an option.
pub(crate) fn push_value(a: &mut Vec<OsString>, flag: &str, value: Option<impl AsRef<OsStr>>) {
    if let Some(v) = value {
        a.push(flag.into());
        a.push(v.as_ref().into());
    }
}

/// `flag`, when it is on.
pub(crate) fn push_flag(a: &mut Vec<OsString>, flag: &str, on: bool) {
    if on {
        a.push(flag.into());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An argv as strings, to compare with a literal.
    pub(crate) fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    fn global() -> GlobalOpts {
        GlobalOpts {
            root: Some("/run/containerd/runc/default".into()),
            log: Some("/b/log.json".into()),
            systemd_cgroup: false,
        }
    }

    #[test]
    fn global_flags_come_first_and_log_is_json() {
        let a = strs(simple_args(&global(), "start", "c1"));
        assert_eq!(
            a,
            [
                "--root",
                "/run/containerd/runc/default",
                "--log",
                "/b/log.json",
                "--log-format",
                "json",
                "start",
                "c1"
            ]
        );
    }

    #[test]
    fn empty_global_opts_add_nothing() {
        assert!(GlobalOpts::default().args().is_empty());
        let g = GlobalOpts {
            systemd_cgroup: true,
            ..Default::default()
        };
        assert_eq!(strs(g.args()), ["--systemd-cgroup"]);
    }

    #[test]
    fn create_with_every_option() {
        let o = CreateOpts {
            bundle: "/b".into(),
            pid_file: Some("/b/init.pid".into()),
            console_socket: Some("/tmp/c.sock".into()),
            no_pivot: true,
            no_new_keyring: true,
        };
        let a = strs(create_args(&GlobalOpts::default(), "c1", &o));
        assert_eq!(
            a,
            [
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/init.pid",
                "--console-socket",
                "/tmp/c.sock",
                "--no-pivot",
                "--no-new-keyring",
                "c1"
            ]
        );
    }

    #[test]
    fn create_minimal() {
        let o = CreateOpts {
            bundle: "/b".into(),
            ..Default::default()
        };
        assert_eq!(
            strs(create_args(&GlobalOpts::default(), "c1", &o)),
            ["create", "--bundle", "/b", "c1"]
        );
    }

    #[test]
    fn exec_is_detached_with_a_process_file() {
        let o = ExecOpts {
            process_file: "/b/p.json".into(),
            pid_file: Some("/b/e.pid".into()),
            console_socket: None,
        };
        assert_eq!(
            strs(exec_args(&GlobalOpts::default(), "c1", &o)),
            [
                "exec",
                "--detach",
                "--process",
                "/b/p.json",
                "--pid-file",
                "/b/e.pid",
                "c1"
            ]
        );
    }

    #[test]
    fn kill_takes_a_numeric_signal_and_all() {
        assert_eq!(
            strs(kill_args(&GlobalOpts::default(), "c1", 9, true)),
            ["kill", "--all", "c1", "9"]
        );
        assert_eq!(
            strs(kill_args(&GlobalOpts::default(), "c1", 15, false)),
            ["kill", "c1", "15"]
        );
    }

    #[test]
    fn delete_force_ps_json_update() {
        assert_eq!(
            strs(delete_args(&GlobalOpts::default(), "c1", true)),
            ["delete", "--force", "c1"]
        );
        assert_eq!(
            strs(ps_args(&GlobalOpts::default(), "c1")),
            ["ps", "--format", "json", "c1"]
        );
        assert_eq!(
            strs(update_args(
                &GlobalOpts::default(),
                "c1",
                Path::new("/r.json")
            )),
            ["update", "--resources", "/r.json", "c1"]
        );
    }
}
