#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Terminals: `ctr run -t` and `ctr task exec -t` driven through a real pseudo-terminal
//! (util-linux `script`), under runc and crun.

use rsrunc_e2e::{unique_id, Daemon, Oci};

#[test]
fn run_t_sees_the_client_terminal_size() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let args = d.run_args(
            oci,
            &["-t", "--rm"],
            &unique_id("tty"),
            &["/bin/sh", "-c", "sleep 0.5; stty size; exit 4"],
        );
        let (out, code) = d.ctr_in_pty(40, 100, &args);
        assert!(out.contains("40 100"), "{oci:?}: {out:?}");
        assert_eq!(code, 4, "{oci:?}: {out:?}");
    }
}

#[test]
fn exec_t_sees_the_size_and_output_arrives_whole() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("ttyhost");
        d.run(oci, &["-d"], &id, &["/bin/sleep", "300"]).ok();
        d.wait_status(&id, "RUNNING");
        let exec = |cmd: &str| -> Vec<String> {
            [
                "task",
                "exec",
                "-t",
                "--exec-id",
                &unique_id("t"),
                &id,
                "/bin/sh",
                "-c",
                cmd,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let (out, code) = d.ctr_in_pty(33, 77, &exec("sleep 0.5; stty size"));
        assert!(out.contains("33 77"), "{oci:?}: {out:?}");
        assert_eq!(code, 0, "{oci:?}");

        // One MiB through the terminal, then a marker: nothing may be lost at exit.
        let (out, code) = d.ctr_in_pty(
            24,
            80,
            &exec("head -c 1048576 /dev/zero | tr '\\0' x; echo; echo END-OF-OUTPUT"),
        );
        assert_eq!(code, 0, "{oci:?}");
        assert_eq!(
            out.matches('x').count(),
            1_048_576,
            "{oci:?}: {} bytes",
            out.len()
        );
        assert!(out.contains("END-OF-OUTPUT"), "{oci:?}");

        let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}
