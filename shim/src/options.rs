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
        self.apply_shared(Shared {
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            shim_cgroup: &o.shim_cgroup,
            io_uid: o.io_uid,
            io_gid: o.io_gid,
            criu_image_path: &o.criu_image_path,
            criu_work_path: &o.criu_work_path,
        });
    }

    fn apply_legacy(&mut self, o: &LegacyCreateOptions) {
        self.apply_shared(Shared {
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            shim_cgroup: &o.shim_cgroup,
            io_uid: o.io_uid,
            io_gid: o.io_gid,
            criu_image_path: &o.criu_image_path,
            criu_work_path: &o.criu_work_path,
        });
    }

    /// The fields runc's Options and the legacy CreateOptions have in common.
    fn apply_shared(&mut self, o: Shared<'_>) {
        self.no_pivot_root |= o.no_pivot_root;
        self.no_new_keyring |= o.no_new_keyring;
        set_plain(&mut self.shim_cgroup, o.shim_cgroup);
        set_u32(&mut self.io_uid, o.io_uid);
        set_u32(&mut self.io_gid, o.io_gid);
        set_plain(&mut self.criu_image_path, o.criu_image_path);
        set_plain(&mut self.criu_work_path, o.criu_work_path);
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
        let opt_str = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        opt_str(&mut self.root, &f.root);
        opt_str(&mut self.shim_cgroup, &f.shim_cgroup);
        opt_str(&mut self.criu_path, &f.criu_path);
        opt_str(&mut self.criu_image_path, &f.criu_image_path);
        opt_str(&mut self.criu_work_path, &f.criu_work_path);
        let opt_bool = |dst: &mut bool, v: Option<bool>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        if let Some(v) = f.systemd_cgroup {
            self.systemd_cgroup = Some(v);
            self.systemd_cgroup_source = format!("SystemdCgroup in {source}");
        }
        opt_bool(&mut self.no_pivot_root, f.no_pivot_root);
        opt_bool(&mut self.no_new_keyring, f.no_new_keyring);
        if let Some(v) = f.io_uid {
            self.io_uid = v;
        }
        if let Some(v) = f.io_gid {
            self.io_gid = v;
        }
    }
}

struct Shared<'a> {
    no_pivot_root: bool,
    no_new_keyring: bool,
    shim_cgroup: &'a str,
    io_uid: u32,
    io_gid: u32,
    criu_image_path: &'a str,
    criu_work_path: &'a str,
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

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.to_string(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn no_options_means_defaults() {
        let cfg = RuntimeConfig::default().with_request(None).unwrap();
        assert_eq!(cfg.binary_name, "runc");
        assert_eq!(
            cfg.root_for("k8s.io"),
            Path::new("/run/containerd/runc/k8s.io")
        );
        let empty = any("", vec![]);
        assert_eq!(
            RuntimeConfig::default().with_request(Some(&empty)).unwrap(),
            RuntimeConfig::default()
        );
    }

    #[test]
    fn runc_options_any_with_either_url_form() {
        let o = RuncOptions {
            binary_name: "crun".into(),
            root: "/run/crun-root".into(),
            systemd_cgroup: true,
            io_uid: 5,
            ..Default::default()
        };
        for url in [
            "containerd.runc.v1.Options",
            "type.googleapis.com/containerd.runc.v1.Options",
        ] {
            let cfg = RuntimeConfig::default()
                .with_request(Some(&any(url, o.write_to_bytes().unwrap())))
                .unwrap();
            assert_eq!(cfg.binary_name, "crun");
            assert!(cfg.binary_source.contains("containerd.runc.v1.Options"));
            assert_eq!(cfg.root, "/run/crun-root");
            assert_eq!(cfg.systemd_cgroup, Some(true));
            assert_eq!(cfg.io_uid, 5);
        }
    }

    #[test]
    fn legacy_create_options() {
        let o = LegacyCreateOptions {
            no_pivot_root: true,
            shim_cgroup: "/shim".into(),
            io_gid: 7,
            ..Default::default()
        };
        let cfg = RuntimeConfig::default()
            .with_request(Some(&any(
                "containerd.linux.runc.CreateOptions",
                o.encode(),
            )))
            .unwrap();
        assert!(cfg.no_pivot_root);
        assert_eq!(cfg.shim_cgroup, "/shim");
        assert_eq!(cfg.io_gid, 7);
        assert_eq!(cfg.binary_name, "runc");
    }

    #[test]
    fn runtime_options_path_then_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crun.toml");
        std::fs::write(
            &path,
            "BinaryName = \"crun\"\nSystemdCgroup = true\nRoot = \"/r\"\n",
        )
        .unwrap();
        let o = RuntimeOptions {
            config_path: path.display().to_string(),
            config_body: "Root = \"/body-root\"\nConfigPath = \"ignored\"\nTypeUrl = \"x\"\n"
                .into(),
            ..Default::default()
        };
        let cfg = RuntimeConfig::default()
            .with_request(Some(&any("runtimeoptions.v1.Options", o.encode())))
            .unwrap();
        assert_eq!(cfg.binary_name, "crun");
        assert!(
            cfg.binary_source.contains("crun.toml"),
            "{}",
            cfg.binary_source
        );
        assert_eq!(cfg.systemd_cgroup, Some(true));
        assert!(cfg.systemd_cgroup_source.contains("crun.toml"));
        assert_eq!(cfg.root, "/body-root");
    }

    #[test]
    fn the_cgroup_driver_follows_the_spec_unless_an_option_says() {
        let choose = |opt: Option<bool>, path: Option<&str>| {
            let mut cfg = RuntimeConfig {
                systemd_cgroup: opt,
                systemd_cgroup_source: "SystemdCgroup in /etc/x.toml".into(),
                ..Default::default()
            };
            cfg.choose_cgroup_driver("c1", path).map(|()| cfg)
        };
        // Docker's and kubelet's systemd form, with no option: systemd, and why.
        let cfg = choose(None, Some("system.slice:docker:0123abcd")).unwrap();
        assert!(cfg.uses_systemd_cgroup());
        assert!(cfg.systemd_cgroup_source.contains("cgroupsPath"), "{cfg:?}");
        let cfg = choose(
            None,
            Some("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
        )
        .unwrap();
        assert!(cfg.uses_systemd_cgroup());
        // cgroupfs paths, or none at all: cgroupfs.
        for p in [
            Some("/docker/abc"),
            Some("/kubepods/besteffort/pod1/abc"),
            Some("ns/c1"),
            None,
        ] {
            assert!(!choose(None, p).unwrap().uses_systemd_cgroup(), "{p:?}");
        }
        // An option that agrees, or no path to disagree with: the option.
        assert!(choose(Some(true), Some(":ctr:c1"))
            .unwrap()
            .uses_systemd_cgroup());
        assert!(choose(Some(true), None).unwrap().uses_systemd_cgroup());
        assert!(!choose(Some(false), Some("/c1"))
            .unwrap()
            .uses_systemd_cgroup());
        // A mismatch names the option, its source and the path.
        for (opt, path) in [
            (Some(false), "system.slice:docker:abc"),
            (Some(true), "/docker/abc"),
        ] {
            let e = choose(opt, Some(path)).unwrap_err();
            let m = e.to_string();
            assert_eq!(e.code(), Code::INVALID_ARGUMENT);
            assert!(
                m.contains(&format!("SystemdCgroup = {}", opt.unwrap())),
                "{e}"
            );
            assert!(m.contains("/etc/x.toml") && m.contains(path), "{e}");
        }
    }

    #[test]
    fn systemd_cgroups_path_form() {
        for p in ["system.slice:docker:abc", ":ctr:c1", "user.slice:x:y"] {
            assert!(is_systemd_cgroups_path(p), "{p}");
        }
        for p in [
            "/docker/abc",
            "abc",
            "a:b",
            "a:b:c:d",
            "/x.slice:a:b",
            "notaslice:a:b",
            "x.slice:a:",
        ] {
            assert!(!is_systemd_cgroups_path(p), "{p}");
        }
    }

    #[test]
    fn snake_case_keys_are_accepted() {
        let f = parse_toml("binary_name = \"youki\"\nno_pivot_root = true\n", "t").unwrap();
        assert_eq!(f.binary_name.as_deref(), Some("youki"));
        assert_eq!(f.no_pivot_root, Some(true));
    }

    #[test]
    fn bad_toml_names_the_field_and_source() {
        let e = parse_toml(
            "BinaryName = \"crun\"\nSystemdCgroup = \"yes\"\n",
            "/etc/x.toml",
        )
        .unwrap_err();
        let m = e.to_string();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(m.contains("/etc/x.toml"), "{e}");
        assert!(m.contains("line 2: SystemdCgroup = \"yes\""), "{e}");
        let e = parse_toml("BinaryNmae = \"crun\"\n", "body").unwrap_err();
        assert!(e.to_string().contains("BinaryNmae"), "{e}");
    }

    #[test]
    fn a_missing_config_path_is_invalid_argument_naming_it() {
        let o = RuntimeOptions {
            config_path: "/nonexistent/rsrunc.toml".into(),
            ..Default::default()
        };
        let e = RuntimeConfig::default()
            .with_request(Some(&any("runtimeoptions.v1.Options", o.encode())))
            .unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("/nonexistent/rsrunc.toml"), "{e}");
    }

    #[test]
    fn malformed_protobuf_and_unknown_types_are_invalid_argument() {
        let e = RuntimeConfig::default()
            .with_request(Some(&any(
                "containerd.runc.v1.Options",
                vec![0x0a, 0x05, b'a'],
            )))
            .unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("containerd.runc.v1.Options"), "{e}");
        let e = RuntimeConfig::default()
            .with_request(Some(&any("example.com/Other", vec![])))
            .unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("example.com/Other"), "{e}");
    }
}
