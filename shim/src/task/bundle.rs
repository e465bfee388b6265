//! What the shim reads and writes in a bundle directory, and the runtime it runs there:
//! its binary, found on PATH, and its flags, built in one place for create, delete and
//! info.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use runc_driver::{GlobalOpts, Monitor, Runtime};

use crate::error::{Error, Result};
use crate::options::RuntimeConfig;

/// The runtime `cfg` names, for the container of `namespace` whose bundle is `bundle`:
/// `--root` for the namespace, `--log` in the bundle, `--systemd-cgroup` if configured,
/// and the bundle for the files the driver hands it. Without a container (`-info`, which
/// asks only for the binary's features) no global flag is set.
pub fn runtime(
    cfg: &RuntimeConfig,
    container: Option<(&str, &Path)>,
    monitor: Arc<dyn Monitor>,
) -> Result<Runtime> {
    let binary = resolve_binary(cfg)?;
    Ok(match container {
        Some((namespace, bundle)) => {
            let global = GlobalOpts {
                root: Some(cfg.root_for(namespace)),
                log: Some(bundle.join("log.json")),
                systemd_cgroup: cfg.uses_systemd_cgroup(),
            };
            Runtime::new(binary, global, monitor).with_temp_dir(bundle)
        }
        None => Runtime::new(binary, GlobalOpts::default(), monitor),
    }
    .with_deadlines(cfg.timeouts.deadlines()))
}

/// Finds the runtime binary the options name, on PATH unless it is a path.
pub fn resolve_binary(cfg: &RuntimeConfig) -> Result<PathBuf> {
    let name = &cfg.binary_name;
    let not_found = |looked: &str| {
        Error::invalid(format!(
            "runtime binary {name:?} not found{looked} (set by {}): install it or fix BinaryName",
            cfg.binary_source
        ))
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(not_found(""))
        };
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| not_found(&format!(" in PATH {path}")))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The few parts of the bundle's config.json the shim needs itself. (oci-spec's full
/// model would do, but it brings a regex engine: a fifth of the binary.)
#[derive(Debug, serde::Deserialize)]
pub struct BundleConfig {
    #[serde(default)]
    root: Option<Root>,
    #[serde(default)]
    linux: Option<Linux>,
}

#[derive(Debug, serde::Deserialize)]
struct Root {
    path: PathBuf,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Linux {
    #[serde(default)]
    namespaces: Vec<Namespace>,
    #[serde(default, rename = "cgroupsPath")]
    cgroups_path: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Namespace {
    #[serde(rename = "type")]
    typ: String,
    #[serde(default)]
    path: Option<String>,
}

impl BundleConfig {
    pub fn root_path(&self, bundle: &Path) -> PathBuf {
        let p = self
            .root
            .as_ref()
            .map(|r| r.path.clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        if p.is_absolute() {
            p
        } else {
            bundle.join(p)
        }
    }

    /// `linux.cgroupsPath`: a path for cgroupfs, `slice:prefix:name` for systemd.
    pub fn cgroups_path(&self) -> Option<&str> {
        self.linux.as_ref().and_then(|l| l.cgroups_path.as_deref())
    }

    /// A new pid namespace (one without a path to join).
    pub fn has_own_pid_namespace(&self) -> bool {
        self.linux.as_ref().is_some_and(|l| {
            l.namespaces
                .iter()
                .any(|ns| ns.typ == "pid" && ns.path.as_deref().unwrap_or("").is_empty())
        })
    }
}

pub fn read_bundle_config(bundle: &Path) -> Result<BundleConfig> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::precondition(format!(
                "read OCI spec {}: {e}: the bundle must contain config.json",
                path.display()
            ))
        } else {
            Error::io_at("read OCI spec", &path, e)
        }
    })?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::invalid(format!("parse OCI spec {}: {e}", path.display())))
}

/// The resolved options, kept in the bundle for the `delete` action after a crash.
pub const OPTIONS_FILE: &str = "rsrunc-options.json";

pub fn persist_config(bundle: &Path, cfg: &RuntimeConfig) -> Result<()> {
    let path = bundle.join(OPTIONS_FILE);
    let text =
        serde_json::to_vec(cfg).map_err(|e| Error::internal(format!("encode options: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io_at("write", &path, e))
}

pub fn read_persisted_config(bundle: &Path) -> Option<RuntimeConfig> {
    let text = std::fs::read(bundle.join(OPTIONS_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The init's exit as the serving shim saw it, kept in the bundle so that `delete`, run
/// by containerd after the shim died, reports the real status instead of SIGKILL's.
/// Where the runtime writes the init's pid (`--pid-file`), in the bundle.
pub const INIT_PID_FILE: &str = "init.pid";

/// The init's pid the runtime wrote to the bundle's `init.pid`, if it did.
pub fn read_init_pid(bundle: &Path) -> Option<i32> {
    std::fs::read_to_string(bundle.join(INIT_PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

pub const INIT_EXIT_FILE: &str = "rsrunc-init-exit.json";

/// What [`INIT_EXIT_FILE`] holds: the init's pid, its wait status as containerd reports
/// it (128 + signal for a killed process) and when it exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InitExit {
    pub pid: u32,
    pub status: u32,
    pub at: SystemTime,
}

/// Records the init's exit: written to a temporary file, flushed to the disk and renamed,
/// so a reader finds the whole record or none, even after the host crashed (a rename lost
/// in a crash leaves no record: `delete` then says the status is unknown, as it would
/// without this file).
pub fn record_init_exit(bundle: &Path, exit: &InitExit) -> Result<()> {
    use std::io::Write;
    let path = bundle.join(INIT_EXIT_FILE);
    let tmp = bundle.join(format!("{INIT_EXIT_FILE}.tmp"));
    let text =
        serde_json::to_vec(exit).map_err(|e| Error::internal(format!("encode init exit: {e}")))?;
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_data()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io_at("record the init's exit", &path, e)
    })
}

/// The init's exit recorded by the serving shim; None if it never saw one (it died first)
/// or the record cannot be read.
pub fn read_init_exit(bundle: &Path) -> Option<InitExit> {
    let text = std::fs::read(bundle.join(INIT_EXIT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    #[test]
    fn a_missing_binary_names_itself_and_its_source() {
        let cfg = RuntimeConfig {
            binary_name: "no-such-runtime-xyz".into(),
            binary_source: "BinaryName in /etc/x.toml".into(),
            ..Default::default()
        };
        let e = resolve_binary(&cfg).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(
            e.to_string().contains("\"no-such-runtime-xyz\" not found"),
            "{e}"
        );
        assert!(e.to_string().contains("/etc/x.toml"), "{e}");
        let cfg = RuntimeConfig {
            binary_name: "/nonexistent/crun".into(),
            ..Default::default()
        };
        assert!(resolve_binary(&cfg)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/crun"));
        let cfg = RuntimeConfig {
            binary_name: "sh".into(),
            ..Default::default()
        };
        assert!(resolve_binary(&cfg).unwrap().ends_with("sh"));
    }

    #[test]
    fn bundle_config_errors_have_the_right_kind() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bundle_config(dir.path()).unwrap_err();
        assert_eq!(e.code(), Code::FAILED_PRECONDITION);
        assert!(e.to_string().contains("config.json"), "{e}");
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = read_bundle_config(dir.path()).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    }

    #[test]
    fn the_init_exit_record_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_init_exit(dir.path()), None);
        let exit = InitExit {
            pid: 42,
            status: 7,
            at: SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789),
        };
        record_init_exit(dir.path(), &exit).unwrap();
        assert_eq!(read_init_exit(dir.path()), Some(exit));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [INIT_EXIT_FILE], "no temporary file is left");
        // A torn or foreign file is no record.
        std::fs::write(dir.path().join(INIT_EXIT_FILE), "{\"pid\":4").unwrap();
        assert_eq!(read_init_exit(dir.path()), None);
        let e = record_init_exit(&dir.path().join("gone"), &exit).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }

    #[test]
    fn pid_namespace_and_root_path_from_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let write = |json: &str| {
            std::fs::write(dir.path().join("config.json"), json).unwrap();
            read_bundle_config(dir.path()).unwrap()
        };
        let c = write(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"cgroupsPath":"system.slice:docker:abc","namespaces":[{"type":"pid"},{"type":"mount"}]}}"#,
        );
        assert!(c.has_own_pid_namespace());
        assert_eq!(c.cgroups_path(), Some("system.slice:docker:abc"));
        assert_eq!(c.root_path(dir.path()), dir.path().join("rootfs"));
        let c = write(
            r#"{"ociVersion":"1.0.2","root":{"path":"/abs/root"},"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#,
        );
        assert!(!c.has_own_pid_namespace());
        assert_eq!(c.root_path(dir.path()), Path::new("/abs/root"));
    }
}
