//! Runtime options: which OCI runtime to run and how, from every form clients send.
//!
//! Precedence, lowest first (README.md documents the same):
//! 1. built-in defaults (runc, root /run/containerd/runc);
//! 2. the host-wide config file ([`HOST_CONFIG_PATH`], or `$RSRUNC_CONFIG`);
//! 3. the options that came with the request: `containerd.runc.v1.Options`, or
//!    `containerd.linux.runc.CreateOptions`, or `runtimeoptions.v1.Options` whose
//!    `config_path` file is read first and whose `config_body` overrides it.
//!
//! Protobuf cannot tell "false" from "unset", so a request can switch a flag on but not
//! off, and an empty string leaves the lower layer's value in place.

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::{well_known_types::any::Any, Message, MessageFull};
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use rsrunc_protos::{LegacyCreateOptions, RuntimeOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use deadlines::Timeouts;

mod deadlines;

/// The host-wide defaults file.
pub const HOST_CONFIG_PATH: &str = "/etc/containerd/rsrunc.toml";
/// Overrides [`HOST_CONFIG_PATH`] (tests, unusual installs).
pub const HOST_CONFIG_ENV: &str = "RSRUNC_CONFIG";
pub const DEFAULT_BINARY: &str = "runc";
pub const DEFAULT_ROOT: &str = "/run/containerd/runc";

/// The resolved options for one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    pub binary_name: String,
    /// Where `binary_name` was set, for error messages ("default", a file path, ...).
    pub binary_source: String,
    pub root: String,
    /// `SystemdCgroup` when some layer set it (protobuf can only say `true`); otherwise the
    /// driver follows the spec's `cgroupsPath` ([`RuntimeConfig::choose_cgroup_driver`]).
    #[serde(default)]
    pub systemd_cgroup: Option<bool>,
    /// Where `systemd_cgroup` was set, or why it was chosen, for errors and the log.
    #[serde(default)]
    pub systemd_cgroup_source: String,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub shim_cgroup: String,
    pub io_uid: u32,
    pub io_gid: u32,
    pub criu_path: String,
    pub criu_image_path: String,
    pub criu_work_path: String,
    /// The runtime commands' deadlines (options files only).
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// The TOML form: the same field names as `containerd.runc.v1.Options` in Go, which is
/// what CRI's `options` table and Docker's `options` use. snake_case is accepted too.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsFile {
    #[serde(rename = "BinaryName", alias = "binary_name")]
    pub binary_name: Option<String>,
    #[serde(rename = "Root", alias = "root")]
    pub root: Option<String>,
    #[serde(rename = "SystemdCgroup", alias = "systemd_cgroup")]
    pub systemd_cgroup: Option<bool>,
    #[serde(rename = "NoPivotRoot", alias = "no_pivot_root")]
    pub no_pivot_root: Option<bool>,
    #[serde(rename = "NoNewKeyring", alias = "no_new_keyring")]
    pub no_new_keyring: Option<bool>,
    #[serde(rename = "ShimCgroup", alias = "shim_cgroup")]
    pub shim_cgroup: Option<String>,
    #[serde(rename = "IoUid", alias = "io_uid")]
    pub io_uid: Option<u32>,
    #[serde(rename = "IoGid", alias = "io_gid")]
    pub io_gid: Option<u32>,
    #[serde(rename = "CriuPath", alias = "criu_path")]
    pub criu_path: Option<String>,
    #[serde(rename = "CriuImagePath", alias = "criu_image_path")]
    pub criu_image_path: Option<String>,
    #[serde(rename = "CriuWorkPath", alias = "criu_work_path")]
    pub criu_work_path: Option<String>,
    /// The runtime commands' deadlines ([`Timeouts`]), as "300ms", "30s" or "5m".
    #[serde(rename = "CreateTimeout", alias = "create_timeout", default)]
    #[serde(deserialize_with = "deadlines::duration")]
    pub create_timeout: Option<u64>,
    #[serde(rename = "DeleteTimeout", alias = "delete_timeout", default)]
    #[serde(deserialize_with = "deadlines::duration")]
    pub delete_timeout: Option<u64>,
    #[serde(rename = "ControlTimeout", alias = "control_timeout", default)]
    #[serde(deserialize_with = "deadlines::duration")]
    pub control_timeout: Option<u64>,
    #[serde(rename = "QueryTimeout", alias = "query_timeout", default)]
    #[serde(deserialize_with = "deadlines::duration")]
    pub query_timeout: Option<u64>,
    /// CRI copies the whole options table into `config_body`, these two included.
    #[serde(rename = "ConfigPath", alias = "config_path")]
    pub config_path: Option<String>,
    #[serde(rename = "TypeUrl", alias = "type_url")]
    pub type_url: Option<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            binary_name: DEFAULT_BINARY.to_string(),
            binary_source: "the default".to_string(),
            root: DEFAULT_ROOT.to_string(),
            systemd_cgroup: None,
            systemd_cgroup_source: String::new(),
            no_pivot_root: false,
            no_new_keyring: false,
            shim_cgroup: String::new(),
            io_uid: 0,
            io_gid: 0,
            criu_path: String::new(),
            criu_image_path: String::new(),
            criu_work_path: String::new(),
            timeouts: Timeouts::default(),
        }
    }
}

impl RuntimeConfig {
    /// Defaults with the host config file laid over them. A missing file is fine; one
    /// that does not parse is an error naming it.
    pub fn host_defaults() -> Result<Self> {
        let path = std::env::var_os(HOST_CONFIG_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(HOST_CONFIG_PATH));
        let mut cfg = RuntimeConfig::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => cfg.apply_file(
                &parse_toml(&text, &path.display().to_string())?,
                &path.display().to_string(),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io_at("read host config", &path, e)),
        }
        Ok(cfg)
    }

    /// These defaults with a request's options laid over them.
    pub fn with_request(&self, any: Option<&Any>) -> Result<Self> {
        let mut cfg = self.clone();
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(cfg);
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name == RuncOptions::descriptor().full_name() {
            let o = RuncOptions::parse_from_bytes(&any.value)
                .map_err(|e| Error::invalid(format!("malformed runtime options {name}: {e}")))?;
            cfg.apply_runc(&o);
        } else if name == rsrunc_protos::LEGACY_CREATE_OPTIONS_NAME {
            let o = LegacyCreateOptions::decode(&any.value)
                .map_err(|e| Error::invalid(e.to_string()))?;
            cfg.apply_legacy(&o);
        } else if name == rsrunc_protos::RUNTIME_OPTIONS_NAME {
            let o =
                RuntimeOptions::decode(&any.value).map_err(|e| Error::invalid(e.to_string()))?;
            cfg.apply_runtime_options(&o)?;
        } else {
            return Err(Error::invalid(format!(
                "unsupported runtime options type {:?}: send {}, {} or {}",
                any.type_url,
                RuncOptions::descriptor().full_name(),
                rsrunc_protos::RUNTIME_OPTIONS_NAME,
                rsrunc_protos::LEGACY_CREATE_OPTIONS_NAME
            )));
        }
        Ok(cfg)
    }

    /// The runtime's state directory for one containerd namespace, as the Go shim uses.
    pub fn root_for(&self, namespace: &str) -> PathBuf {
        Path::new(&self.root).join(namespace)
    }

    /// Whether the runtime is told `--systemd-cgroup`.
    pub fn uses_systemd_cgroup(&self) -> bool {
        self.systemd_cgroup == Some(true)
    }

    /// Settles the cgroup driver for container `id` from the options and the spec's
    /// `cgroupsPath`. An explicit `SystemdCgroup` wins; without one, a path of systemd's
    /// form (`slice:prefix:name`, what Docker and kubelet write on systemd hosts, while
    /// Docker sends no options to a runtime it knows only by name) means the systemd
    /// driver, and anything else cgroupfs. A setting the runtime would misread (systemd
    /// with a cgroupfs path, or cgroupfs with a systemd-form one, which cgroupfs would take
    /// as a directory named `system.slice:docker:ID`) is InvalidArgument naming both.
    pub fn choose_cgroup_driver(&mut self, id: &str, cgroups_path: Option<&str>) -> Result<()> {
        let path = cgroups_path.filter(|p| !p.is_empty());
        let systemd_form = path.is_some_and(is_systemd_cgroups_path);
        match (self.systemd_cgroup, path) {
            (Some(explicit), Some(p)) if explicit != systemd_form => {
                let (driver, form) = if explicit {
                    (
                        "true",
                        "a cgroupfs path; the systemd driver needs slice:prefix:name",
                    )
                } else {
                    ("false", "of the systemd driver's form slice:prefix:name")
                };
                return Err(Error::invalid(format!(
                    "create {id}: SystemdCgroup = {driver} ({}) but the spec's cgroupsPath {p:?} is {form}: set SystemdCgroup to match the cgroup driver that wrote the spec, or leave it unset",
                    self.systemd_cgroup_source
                )));
            }
            (Some(_), _) => {}
            (None, Some(p)) => {
                self.systemd_cgroup = Some(systemd_form);
                self.systemd_cgroup_source = format!(
                    "chosen from the spec's cgroupsPath {p:?}, no SystemdCgroup option set"
                );
            }
            (None, None) => {
                self.systemd_cgroup = Some(false);
                self.systemd_cgroup_source =
                    "the default: no SystemdCgroup option and no cgroupsPath".to_string();
            }
        }
        log::info!(
            "cgroup driver id={id} driver={} ({})",
            if self.uses_systemd_cgroup() {
                "systemd"
            } else {
                "cgroupfs"
            },
            self.systemd_cgroup_source
        );
        Ok(())
    }

    fn apply_runc(&mut self, o: &RuncOptions) {
        let src = format!("{} (BinaryName)", RuncOptions::descriptor().full_name());
        set_str(
            &mut self.binary_name,
            &o.binary_name,
            &mut self.binary_source,
            &src,
        );
        set_plain(&mut self.root, &o.root);
        if o.systemd_cgroup {
            self.systemd_cgroup = Some(true);
            self.systemd_cgroup_source =
                format!("{} (SystemdCgroup)", RuncOptions::descriptor().full_name());
        }
        self.no_pivot_root |= o.no_pivot_root;
        self.no_new_keyring |= o.no_new_keyring;
        set_plain(&mut self.shim_cgroup, &o.shim_cgroup);
        set_u32(&mut self.io_uid, o.io_uid);
        set_u32(&mut self.io_gid, o.io_gid);
        set_plain(&mut self.criu_image_path, &o.criu_image_path);
        set_plain(&mut self.criu_work_path, &o.criu_work_path);
    }

    /// The legacy CreateOptions carry a part of runc's Options, with the same meanings.
    fn apply_legacy(&mut self, o: &LegacyCreateOptions) {
        self.apply_runc(&RuncOptions {
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            shim_cgroup: o.shim_cgroup.clone(),
            io_uid: o.io_uid,
            io_gid: o.io_gid,
            criu_image_path: o.criu_image_path.clone(),
            criu_work_path: o.criu_work_path.clone(),
            ..Default::default()
        });
    }

    fn apply_runtime_options(&mut self, o: &RuntimeOptions) -> Result<()> {
        if !o.config_path.is_empty() {
            let text = std::fs::read_to_string(&o.config_path).map_err(|e| {
                // A path the client named that cannot be read is its mistake.
                Error::invalid(format!(
                    "read runtime options file {} (ConfigPath): {e}",
                    o.config_path
                ))
            })?;
            let file = parse_toml(&text, &o.config_path)?;
            self.apply_file(&file, &o.config_path);
        }
        if !o.config_body.is_empty() {
            let file = parse_toml(&o.config_body, "the options body (config_body)")?;
            self.apply_file(&file, "the options body (config_body)");
        }
        Ok(())
    }

    fn apply_file(&mut self, f: &OptionsFile, source: &str) {
        if let Some(b) = f.binary_name.as_deref().filter(|b| !b.is_empty()) {
            self.binary_name = b.to_string();
            self.binary_source = format!("BinaryName in {source}");
        }
        set_some(&mut self.root, &f.root);
        set_some(&mut self.shim_cgroup, &f.shim_cgroup);
        set_some(&mut self.criu_path, &f.criu_path);
        set_some(&mut self.criu_image_path, &f.criu_image_path);
        set_some(&mut self.criu_work_path, &f.criu_work_path);
        if let Some(v) = f.systemd_cgroup {
            self.systemd_cgroup = Some(v);
            self.systemd_cgroup_source = format!("SystemdCgroup in {source}");
        }
        set_some(&mut self.no_pivot_root, &f.no_pivot_root);
        set_some(&mut self.no_new_keyring, &f.no_new_keyring);
        set_some(&mut self.io_uid, &f.io_uid);
        set_some(&mut self.io_gid, &f.io_gid);
        self.timeouts.apply(f);
    }
}

/// Whether a `cgroupsPath` has the systemd driver's form `slice:prefix:name` (runc, crun and
/// youki split it on its two colons; the slice may be empty, a cgroupfs path has slashes).
pub fn is_systemd_cgroups_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split(':').collect();
    parts.len() == 3
        && !path.contains('/')
        && (parts[0].is_empty() || parts[0].ends_with(".slice"))
        && !parts[2].is_empty()
}

/// Parses the TOML options form; the error names the source and the offending field.
pub fn parse_toml(text: &str, source: &str) -> Result<OptionsFile> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let at = e.span().map(|s| locate(text, s.start)).unwrap_or_default();
        Error::invalid(format!("invalid runtime options in {source}{at}: {msg}"))
    })
}

/// Describes where a TOML error is: the line number and the line itself, which names
/// the field.
fn locate(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default().trim();
    format!(" (line {line_no}: {line})")
}

fn set_str(dst: &mut String, v: &str, src_dst: &mut String, src: &str) {
    if !v.is_empty() {
        *dst = v.to_string();
        *src_dst = src.to_string();
    }
}

fn set_plain(dst: &mut String, v: &str) {
    if !v.is_empty() {
        *dst = v.to_string();
    }
}

fn set_u32(dst: &mut u32, v: u32) {
    if v != 0 {
        *dst = v;
    }
}

/// An options file's value, where the file sets one (any value, false and "" included).
fn set_some<T: Clone>(dst: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        dst.clone_from(v);
    }
}

#[cfg(test)]
mod tests;
