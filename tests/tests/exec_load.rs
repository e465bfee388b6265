#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! 1,000 execs, 50 at a time, straight over ttrpc into one container's shim: every exit
//! code right, no zombie, and (for our shim) no descriptor left open and RSS afterwards
//! within 10% of RSS before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use containerd_shim_protos::api::{ConnectRequest, ConnectResponse};
use oci_spec::runtime::Process;
use rsrunc_e2e::load::ctr_exec_burst;
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{
    bundle_spec, daemon, ours_only, poll_until, testing_ours, unique_id, Daemon, Oci,
};

const EXECS: usize = 1000;
const PARALLEL: usize = 50;
/// `ctr task exec` with output, per OCI runtime, and how many at a time.
const CTR_EXECS: usize = 1000;
const CTR_PARALLEL: usize = 100;

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn a_thousand_execs_fifty_at_a_time() {
    let d = Daemon::start();
    let (id, b) = burst(&d);
    assert_eq!(b.wrong, 0, "execs reported the wrong exit code");
    let mut zombies = Vec::new();
    let none = poll_until(Duration::from_secs(10), || {
        zombies = daemon::processes()
            .iter()
            .filter(|p| p.ppid == b.shim && p.state == 'Z')
            .map(|p| p.pid)
            .collect();
        zombies.is_empty()
    });
    assert!(none, "zombies: {zombies:?}");
    remove(&d, &id);
}

/// 1,000 `ctr task exec`, 100 at a time, with runc and with crun: each exec's stdout and
/// stderr reach ctr whole and its exit code is right. ctr closes its fifos as soon as
/// Delete returns, so a shim must not answer Delete before ctr has read everything.
/// containerd's Go shim has been seen losing about 1 in 1,000: under it the losses are
/// reported, and only exit codes asserted (strictness of ours only).
#[test]
fn ctr_execs_lose_no_output() {
    let d = Daemon::start();
    for oci in [Oci::Runc, Oci::Crun] {
        let id = unique_id("out");
        d.run(oci, &["-d"], &id, &["/bin/sleep", "600"]).ok();
        d.wait_status(&id, "RUNNING");
        let b = ctr_exec_burst(&d, &id, CTR_EXECS, CTR_PARALLEL);
        eprintln!(
            "{oci:?}: {} execs, {} lost output, {} wrong exit codes",
            b.execs, b.lost_output, b.wrong_exit
        );
        assert_eq!(b.wrong_exit, 0, "{oci:?}: execs with the wrong exit code");
        if testing_ours() {
            assert_eq!(b.lost_output, 0, "{oci:?}: execs whose output was lost");
        }
        remove(&d, &id);
    }
}

/// The test's connections gone and the shim idle again, it holds no more descriptors and
/// about as much memory as before the burst. (containerd 1.7's Go shim has been seen
/// holding a dozen more descriptors 10 s later.)
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the shim back to its descriptors and size after 1,000 execs"
)]
fn a_thousand_execs_leave_the_shim_as_they_found_it() {
    ours_only();
    let d = Daemon::start();
    let (id, b) = burst(&d);
    assert_eq!(b.wrong, 0, "execs reported the wrong exit code");
    // The shim notices closed connections on its own schedule.
    let mut fds1 = 0;
    let fewer = poll_until(Duration::from_secs(10), || {
        fds1 = fds(b.shim);
        fds1 < b.fds0
    });
    assert!(
        fewer,
        "descriptors left open: {} before (with our first connection), {fds1} after",
        b.fds0
    );
    // Both figures are taken after the warm-up exec, so the exec path's code is resident
    // in each; the shim hands memory back once the burst is over.
    let mut rss1 = 0;
    let back = poll_until(Duration::from_secs(10), || {
        rss1 = rss_kib(b.shim);
        rss1 * 10 <= b.rss0 * 11
    });
    eprintln!(
        "shim RSS {} KiB before, {rss1} KiB after {EXECS} execs; fds {} -> {fds1}",
        b.rss0, b.fds0
    );
    assert!(
        back,
        "shim RSS {rss1} KiB after {EXECS} execs is more than 10% above {} KiB before",
        b.rss0
    );
    remove(&d, &id);
}

/// What a burst of execs met in a container's shim.
struct Burst {
    shim: i32,
    /// Execs that reported the wrong exit code.
    wrong: usize,
    /// The shim's RSS and open descriptors after one warm-up exec, before the burst.
    rss0: u64,
    fds0: usize,
}

/// Starts a container and runs [`EXECS`] execs in it, [`PARALLEL`] at a time, straight
/// over one ttrpc connection to its shim, closed at the end; returns the container's id.
fn burst(d: &Daemon) -> (String, Burst) {
    let id = unique_id("load");
    d.run(Oci::Runc, &["-d"], &id, &["/bin/sleep", "600"]).ok();
    d.wait_status(&id, "RUNNING");
    let bundle = d.bundle(&id);
    let address = std::fs::read_to_string(bundle.join("address"))
        .unwrap()
        .trim()
        .to_string();
    let spec = bundle_spec(&bundle).process().clone().unwrap();
    let first = ShimConn::connect(&address);
    let shim = {
        let c: ConnectResponse = first
            .call(
                "Connect",
                &ConnectRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        c.shim_pid as i32
    };
    // One warm-up round so the figures compare a shim that has already run an exec.
    run_execs(std::slice::from_ref(&first), &id, &spec, 0..1);
    // A time, not a condition: the exec is deleted when its Delete returns, and the figures
    // wait for the shim's own settling after it (worker threads ending), which shows in
    // nothing to poll.
    std::thread::sleep(Duration::from_millis(300));
    let (rss0, fds0) = (rss_kib(shim), fds(shim));
    // containerd keeps one connection per shim and sends it concurrent calls; so does
    // this test (ttrpc multiplexes the calls of all fifty workers).
    let conn = &first;

    let wrong = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..PARALLEL {
            let (id, spec, wrong) = (&id, &spec, &wrong);
            s.spawn(move || {
                wrong.fetch_add(
                    run_execs(
                        std::slice::from_ref(conn),
                        id,
                        spec,
                        (w..EXECS).step_by(PARALLEL),
                    ),
                    Ordering::Relaxed,
                )
            });
        }
    });
    drop(first);
    let b = Burst {
        shim,
        wrong: wrong.into_inner(),
        rss0,
        fds0,
    };
    (id, b)
}

fn remove(d: &Daemon, id: &str) {
    let _ = d.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    d.wait_status(id, "STOPPED");
    d.ctr(&["task", "rm", id]).ok();
    d.ctr(&["containers", "rm", id]).ok();
}

/// `sh -c 'exit K'` for each i; returns how many reported the wrong status.
fn run_execs(
    conns: &[ShimConn],
    id: &str,
    process: &Process,
    range: impl Iterator<Item = usize>,
) -> usize {
    let conn = &conns[0];
    let mut wrong = 0;
    for i in range {
        let code = (i * 7 % 256) as u32;
        let (waited, deleted) = conn.exec_and_wait(
            id,
            &format!("load-{i}"),
            process,
            &["/bin/sh", "-c", &format!("exit {code}")],
        );
        if waited != code || deleted != code {
            wrong += 1;
        }
    }
    wrong
}
