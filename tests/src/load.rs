//! Bursts of `ctr task exec`, as an operator's scripts run them: each exec prints a line
//! of its own on stdout and on stderr and exits with a code of its own, and what ctr
//! printed and returned is checked against it. Shared by tests/tests/exec_load.rs and the
//! bench's soak.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Daemon;

/// What a burst met.
#[derive(Debug, Default, Clone, Copy)]
pub struct CtrBurst {
    pub execs: usize,
    /// Execs whose stdout or stderr did not arrive whole.
    pub lost_output: usize,
    /// Execs whose ctr returned another exit code than the process's.
    pub wrong_exit: usize,
}

/// Runs `execs` execs in container `id`, `parallel` at a time, each its own `ctr task exec`.
pub fn ctr_exec_burst(d: &Daemon, id: &str, execs: usize, parallel: usize) -> CtrBurst {
    let (lost, wrong) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for w in 0..parallel {
            let (lost, wrong) = (&lost, &wrong);
            s.spawn(move || {
                for i in (w..execs).step_by(parallel) {
                    let code = (i * 7 % 100) as i32;
                    let exec_id = format!("burst-{i}");
                    let script = format!("echo out-{i}; echo err-{i} >&2; exit {code}");
                    let out = d.ctr(&[
                        "task",
                        "exec",
                        "--exec-id",
                        &exec_id,
                        id,
                        "/bin/sh",
                        "-c",
                        &script,
                    ]);
                    if out.stdout != format!("out-{i}\n")
                        || !out.stderr.contains(&format!("err-{i}\n"))
                    {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    if out.status != code {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    CtrBurst {
        execs,
        lost_output: lost.into_inner(),
        wrong_exit: wrong.into_inner(),
    }
}

/// The number of threads of process `pid` (0 once it is gone).
pub fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}
