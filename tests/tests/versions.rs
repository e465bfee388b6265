#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! The shim under containerd 1.6 and 2.x as well as the installed 1.7: each reads the
//! start reply differently (1.x rejects JSON version 3; 2.x takes a plain address as
//! version 2) and calls a different Task service name.

use rsrunc_e2e::daemon::flavors;
use rsrunc_e2e::{runtime_name, unique_id, Daemon, Oci};

#[test]
fn lifecycle_under_each_containerd_version() {
    for (version, flavor) in flavors() {
        let d = Daemon::start_flavor(&runtime_name(), &flavor);
        for oci in Oci::ALL {
            let out = d.run(
                oci,
                &["--rm"],
                &unique_id("ver"),
                &["/bin/sh", "-c", "echo hi; exit 4"],
            );
            assert_eq!(
                (out.status, out.stdout.as_str()),
                (4, "hi\n"),
                "containerd {version} {oci:?}: {out:?}"
            );

            let id = unique_id("verd");
            d.run(oci, &["-d"], &id, &["/bin/sleep", "300"]).ok();
            d.wait_status(&id, "RUNNING");
            d.ctr(&["task", "pause", &id]).ok();
            assert_eq!(
                d.task_status(&id).as_deref(),
                Some("PAUSED"),
                "containerd {version}"
            );
            d.ctr(&["task", "resume", &id]).ok();
            d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
            d.wait_status(&id, "STOPPED");
            d.ctr(&["task", "rm", &id]).ok();
            d.ctr(&["containers", "rm", &id]).ok();
        }
        assert!(
            d.shims_left().is_empty(),
            "containerd {version}: shims left"
        );
    }
}
