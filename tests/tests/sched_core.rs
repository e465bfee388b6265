#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Core scheduling: with `SCHED_CORE=1` in a shim's environment (containerd 1.x's
//! `sched_core = true`, 2.x's shim manager `env`), the shim gives itself a new
//! core-scheduling cookie that its containers inherit, so that processes of different
//! shims never run on SMT siblings of one core at the same time. It needs a kernel built
//! with CONFIG_SCHED_CORE.

use rsrunc_e2e::daemon::flavors;
use rsrunc_e2e::{runtime_name, testing_ours, unique_id, Daemon, Oci};

/// Every containerd version, each told to start shims with SCHED_CORE=1: `sched_core` of
/// the runtime plugin in 1.x, the shim manager's `env` in 2.x.
fn daemons() -> Vec<(String, Daemon)> {
    flavors()
        .into_iter()
        .map(|(version, flavor)| {
            let config = if flavor.config_version >= 3 {
                "[plugins.\"io.containerd.shim.v1.manager\"]\n  env = [\"SCHED_CORE=1\"]\n"
            } else {
                "[plugins.\"io.containerd.runtime.v2.task\"]\n  sched_core = true\n"
            };
            let d = Daemon::start_configured(&runtime_name(), &flavor, config);
            (format!("containerd {version}"), d)
        })
        .collect()
}

/// A container's processes carry their shim's cookie, and another shim's containers
/// another one.
#[test]
#[cfg_attr(
    no_sched_core,
    ignore = "the kernel has no core scheduling (CONFIG_SCHED_CORE): no cookie to compare"
)]
fn containers_share_their_shims_core_scheduling_cookie() {
    if let Err(e) = cookie(0) {
        panic!(
            "core scheduling is not available on this kernel ({}): prctl(PR_SCHED_CORE, \
             PR_SCHED_CORE_GET): {e}. It needs a kernel built with CONFIG_SCHED_CORE=y, so \
             SCHED_CORE cannot be checked here",
            kernel_release()
        );
    }
    for (what, d) in daemons() {
        let (a, b) = (unique_id("core-a"), unique_id("core-b"));
        for id in [&a, &b] {
            d.run(Oci::Runc, &["-d"], id, &["/bin/sleep", "300"]).ok();
            d.wait_status(id, "RUNNING");
        }
        let shim_a = cookie(shim_pid(&d, &a)).unwrap();
        let init_a = cookie(init_pid(&d, &a)).unwrap();
        let init_b = cookie(init_pid(&d, &b)).unwrap();
        assert_ne!(shim_a, 0, "{what}: the shim of {a} has no cookie");
        assert_eq!(init_a, shim_a, "{what}: {a}'s init and its shim");
        assert_ne!(
            init_b, init_a,
            "{what}: containers of two shims share a cookie"
        );
        for id in [&a, &b] {
            d.ctr(&["task", "kill", "-s", "SIGKILL", id]).ok();
        }
    }
}

/// SCHED_CORE asked for on a kernel without core scheduling fails the container's start
/// with an error that says so, under both shims (containerd's Go shim fails it too); on a
/// kernel with it, the container runs.
#[test]
fn sched_core_runs_or_names_what_the_kernel_lacks() {
    let supported = cookie(0).is_ok();
    for (what, d) in daemons() {
        let out = d.run(Oci::Runc, &["--rm"], &unique_id("core"), &["/bin/true"]);
        if supported {
            assert_eq!(out.status, 0, "{what}: {out:?}");
            continue;
        }
        assert_ne!(
            out.status, 0,
            "{what}: ran without core scheduling: {out:?}"
        );
        println!("{what}: {}", out.stderr.trim());
        let said = out.stderr.to_lowercase();
        assert!(
            said.contains("sched") && said.contains("core"),
            "{what}: the error does not name core scheduling: {out:?}"
        );
        if testing_ours() {
            assert!(
                out.stderr.contains("CONFIG_SCHED_CORE"),
                "{what}: our shim names the kernel option: {out:?}"
            );
        }
    }
}

/// The core-scheduling cookie of `pid` (0: this process).
fn cookie(pid: i32) -> std::io::Result<u64> {
    use nix::libc;
    let mut cookie: u64 = 0;
    // SAFETY: PR_SCHED_CORE_GET writes one u64 to the address given, a live local.
    let r = unsafe {
        libc::prctl(
            libc::PR_SCHED_CORE,
            libc::PR_SCHED_CORE_GET as libc::c_ulong,
            pid as libc::c_ulong,
            0 as libc::c_ulong, // PIDTYPE_PID
            &mut cookie as *mut u64 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The pid of the shim serving container `id`.
fn shim_pid(d: &Daemon, id: &str) -> i32 {
    d.shim_serving(id)
        .unwrap_or_else(|| panic!("no shim serving {id} among {:?}", d.shim_pids()))
}

/// The init's pid, from `ctr task ls`.
fn init_pid(d: &Daemon, id: &str) -> i32 {
    d.task_pid(id)
        .unwrap_or_else(|| panic!("{id} not in ctr task ls"))
}
