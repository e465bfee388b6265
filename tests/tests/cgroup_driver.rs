#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! The cgroup driver and the spec's `cgroupsPath` must agree: `slice:prefix:name` is the
//! systemd driver's form, a path is cgroupfs'. On this host (no systemd) only the refusals
//! can run; the systemd driver itself is checked in the node VM (tests/tests/node.rs).

use rsrunc_e2e::{ours_only, unique_id, CtrOutput, Daemon, Oci};

/// `SystemdCgroup = true` with a cgroupfs path: runc would reject the path's form, and the
/// container does not run.
#[test]
fn systemd_driver_with_a_cgroupfs_path_is_refused() {
    let d = Daemon::start();
    let id = unique_id("sdpath");
    let path = format!("/{}/{id}", d.namespace);
    // ctr takes --runc-systemd-cgroup for io.containerd.runc.v2 alone; ours reads an
    // options file.
    let mut extra: Vec<String> = vec!["--cgroup".into(), path.clone()];
    if d.is_go_shim() {
        extra.push("--runc-systemd-cgroup".into());
    } else {
        extra.push("--runtime-config-path".into());
        extra.push(d.options_file("systemd", "SystemdCgroup = true\n"));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let out = d.run(Oci::Runc, &extra, &id, &["/bin/true"]);
    assert_ne!(
        out.status, 0,
        "a systemd driver with path {path} ran: {out:?}"
    );
    let _ = d.ctr(&["containers", "rm", &id]);
}

/// Ours refuses before runc, naming the option, where it was set, and the path.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: options files, and refusing a driver and cgroupsPath that disagree"
)]
fn systemd_driver_with_a_cgroupfs_path_is_refused_naming_the_option() {
    ours_only();
    let d = Daemon::start();
    let id = unique_id("sdpath");
    let path = format!("/{}/{id}", d.namespace);
    let file = d.options_file("systemd", "SystemdCgroup = true\n");
    let out = run_true(&d, &id, &path, &file);
    assert_refused_naming(
        &out,
        &["invalid argument", "SystemdCgroup = true", &file, &path],
    );
    let _ = d.ctr(&["containers", "rm", &id]);
}

/// `SystemdCgroup = false` said explicitly, with a systemd-form path: cgroupfs would make a
/// directory named `system.slice:ctr:ID`. Only rsrunc reads the option from a file (the Go
/// shim has no way to be told `false` here), so only rsrunc can refuse.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: refusing SystemdCgroup = false with a systemd-form cgroupsPath"
)]
fn explicit_cgroupfs_with_a_systemd_form_path_is_refused() {
    ours_only();
    let d = Daemon::start();
    let id = unique_id("fspath");
    let path = format!("system.slice:rsrunc-test:{id}");
    let file = d.options_file("cgroupfs", "SystemdCgroup = false\n");
    let out = run_true(&d, &id, &path, &file);
    assert_refused_naming(
        &out,
        &["invalid argument", "SystemdCgroup = false", &file, &path],
    );
    // Nothing was made under that literal name in any hierarchy.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(!h.path().join(&path).exists(), "{}", h.path().display());
    }
    let _ = d.ctr(&["containers", "rm", &id]);
}

/// `ctr run` of `/bin/true` as `id` under runc, with cgroupsPath `path` and the options
/// file `file`.
fn run_true(d: &Daemon, id: &str, path: &str, file: &str) -> CtrOutput {
    d.run(
        Oci::Runc,
        &["--cgroup", path, "--runtime-config-path", file],
        id,
        &["/bin/true"],
    )
}

/// The run failed, and its error names each of `parts`.
fn assert_refused_naming(out: &CtrOutput, parts: &[&str]) {
    assert_ne!(out.status, 0, "{out:?}");
    for part in parts {
        assert!(
            out.stderr.contains(part),
            "{part:?} not in {:?}",
            out.stderr
        );
    }
}
