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
        config_body: "Root = \"/body-root\"\nConfigPath = \"ignored\"\nTypeUrl = \"x\"\n".into(),
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
