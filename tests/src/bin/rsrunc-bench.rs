//! `make bench`: rsrunc against containerd's Go shim, side by side in one run.
//!
//! One private containerd; peers are our shim and the Go shim, each with runc and crun,
//! and bare `runc run` / `crun run` of an equivalent bundle as the floor. Timed samples
//! are interleaved round by round so machine noise hits every peer alike. Prints
//! min / median / max and the ratio to the Go shim with the same OCI runtime, and writes
//! every raw sample as JSON.
//!
//! Pods go through Kubernetes' CRI on a second private containerd (2.1), configured with
//! the shipped `packaging/containerd/config-2.x.toml`: our `rsrunc` handler against a
//! handler for the Go shim, both driving runc.
//!
//! Our shim runs with phase tracing on (`RSRUNC_TRACE`, shim/src/trace.rs): the report
//! adds the median of each phase of its Create, Start, Exec and Delete and of its
//! start-up, beside the bare runtime's figures. The load average is checked before and
//! after: above the core count the figures are noisy, and the report says so loudly.
//!
//! Usage: rsrunc-bench [--quick] [--latency-only] [--exec-only] [--soak N] [--soak-only] [--pods-only]
//! [--out FILE.json] [--markdown FILE.md]

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rsrunc_e2e::cri::{self, CriDaemon, GO_HANDLER, OUR_HANDLER};
use rsrunc_e2e::daemon::Flavor;
use rsrunc_e2e::image::{import_busybox, IMAGE};
use rsrunc_e2e::load::{ctr_exec_burst, threads};
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{bundle_spec, daemon, rootfs, Daemon, Oci, GO_SHIM, RSRUNC};

/// Idle time before each timed lifecycle or exec, for every peer alike. Moving a process
/// into a cgroup (which every runtime does for create and exec) waits for an RCU grace
/// period on a cgroup v1 host, unless another move happened a few milliseconds before:
/// back to back, a bare runtime would skip that wait that a shim's runtime, called after
/// ctr and containerd have had their turn, pays; paced, all pay it alike (about 10 ms
/// here).
const PACE: Duration = Duration::from_millis(100);

/// How long after the last call a shim is measured at rest: our shim's idle timers (2 s:
/// workers beyond one end, the events connection closes) have run by then.
const STEADY: Duration = Duration::from_millis(2500);

/// containerd 2.x for the pods, as `scripts/setup-host.sh` extracts it.
const CONTAINERD_2: &str = "/opt/rsrunc-test/containerd-2.1.9/usr/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shim {
    Ours,
    Go,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Shim(Shim, Oci),
    Bare(Oci),
}

impl Peer {
    fn name(self) -> String {
        match self {
            Peer::Shim(Shim::Ours, o) => format!("rsrunc+{}", oci_name(o)),
            Peer::Shim(Shim::Go, o) => format!("go-shim+{}", oci_name(o)),
            Peer::Bare(o) => format!("bare {}", oci_name(o)),
        }
    }

    fn oci(self) -> Oci {
        match self {
            Peer::Shim(_, o) | Peer::Bare(o) => o,
        }
    }
}

const SHIMS: [Peer; 4] = [
    Peer::Shim(Shim::Ours, Oci::Runc),
    Peer::Shim(Shim::Go, Oci::Runc),
    Peer::Shim(Shim::Ours, Oci::Crun),
    Peer::Shim(Shim::Go, Oci::Crun),
];
const ALL: [Peer; 6] = [
    SHIMS[0],
    SHIMS[1],
    SHIMS[2],
    SHIMS[3],
    Peer::Bare(Oci::Runc),
    Peer::Bare(Oci::Crun),
];

struct Config {
    rounds: usize,
    soak_execs: usize,
    churn: usize,
    /// Pods started (and kept running) per shim through CRI.
    pods: usize,
    busy: usize,
    out: PathBuf,
    markdown: Option<PathBuf>,
    quick: bool,
    /// Only the exec soak (for investigating the shim's memory under load).
    soak_only: bool,
    /// Only the pods through CRI.
    pods_only: bool,
    /// Only checkpoint and restore.
    checkpoint_only: bool,
    /// Only the cold lifecycles and exec latency (with their phases).
    latency_only: bool,
    /// Only exec latency (with its phases).
    exec_only: bool,
}

/// A traced operation's phases in order ("total" first), each with its samples (ms).
type Phases = Vec<(String, Vec<f64>)>;

/// metric -> peer -> samples
type Samples = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

struct Bench {
    d: Daemon,
    crun_toml: String,
    cgroup: Option<PathBuf>,
    samples: Samples,
    counter: usize,
    /// Which peer each container id belongs to, to sort the shim's trace lines.
    owners: BTreeMap<String, Peer>,
    trace: PathBuf,
    /// Load averages seen (1 min) at the start and end.
    load: Vec<f64>,
}

fn main() {
    let cfg = parse_args();
    let started = Instant::now();
    let load = check_load();
    // Inherited by containerd, then by every shim it starts.
    let trace = std::env::current_dir()
        .unwrap()
        .join("target/bench/trace.log");
    std::fs::create_dir_all(trace.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&trace);
    std::env::set_var("RSRUNC_TRACE", &trace);
    let mut b = Bench::new(trace);
    b.load.push(load);
    eprintln!(
        "bench: containerd {} in {}",
        daemon_version(),
        b.d.dir().display()
    );
    if cfg.checkpoint_only {
        b.checkpoint_restore(cfg.rounds);
        b.report(&cfg, started.elapsed());
        return;
    }
    if cfg.pods_only {
        b.pods(cfg.pods, 4);
        b.report(&cfg, started.elapsed());
        return;
    }
    if cfg.exec_only {
        b.exec_latency(cfg.rounds);
        b.load.push(check_load());
        b.report(&cfg, started.elapsed());
        return;
    }
    if cfg.latency_only {
        b.cold(cfg.rounds, true);
        b.cold(cfg.rounds, false);
        b.cold_direct(cfg.rounds);
        b.exec_latency(cfg.rounds);
        b.load.push(check_load());
        b.report(&cfg, started.elapsed());
        return;
    }
    if !cfg.soak_only {
        b.cold(cfg.rounds, true);
        b.cold(cfg.rounds, false);
        b.cold_direct(cfg.rounds);
        b.exec_latency(cfg.rounds);
        b.checkpoint_restore(cfg.rounds);
        b.memory(1);
        b.memory(cfg.busy);
        b.churn(cfg.churn, 4);
        b.pods(cfg.pods, 4);
    }
    b.exec_soak(cfg.soak_execs, 100);
    b.load.push(check_load());
    b.report(&cfg, started.elapsed());
}

fn parse_args() -> Config {
    let mut cfg = Config {
        rounds: 15,
        soak_execs: 10_000,
        churn: 50,
        pods: 50,
        busy: 20,
        out: PathBuf::from("target/bench/results.json"),
        markdown: None,
        quick: false,
        soak_only: false,
        pods_only: false,
        checkpoint_only: false,
        latency_only: false,
        exec_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                cfg.quick = true;
                cfg.rounds = 3;
                cfg.soak_execs = 200;
                cfg.churn = 20;
                cfg.pods = 12;
            }
            "--soak-only" => cfg.soak_only = true,
            "--pods-only" => cfg.pods_only = true,
            "--checkpoint-only" => cfg.checkpoint_only = true,
            "--latency-only" => cfg.latency_only = true,
            "--exec-only" => cfg.exec_only = true,
            "--rounds" => cfg.rounds = args.next().and_then(|n| n.parse().ok()).expect("--rounds N"),
            "--soak" => cfg.soak_execs = args.next().and_then(|n| n.parse().ok()).expect("--soak N"),
            "--out" => cfg.out = PathBuf::from(args.next().expect("--out FILE")),
            "--markdown" => cfg.markdown = Some(PathBuf::from(args.next().expect("--markdown FILE"))),
            other => panic!("unknown argument {other:?}; usage: rsrunc-bench [--quick] [--rounds N] [--soak N] [--soak-only] [--pods-only] [--checkpoint-only] [--latency-only] [--exec-only] [--out FILE] [--markdown FILE]"),
        }
    }
    cfg
}

fn daemon_version() -> String {
    let out = Command::new(rsrunc_e2e::tool("containerd"))
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or("?")
        .to_string()
}

impl Bench {
    fn new(trace: PathBuf) -> Bench {
        let d = Daemon::start_with(RSRUNC);
        import_busybox(&d);
        let crun_toml = d.options_file("crun", "BinaryName = \"crun\"\n");
        let cgroup = cpu_cgroup(d.pid());
        Bench {
            d,
            crun_toml,
            cgroup,
            samples: Samples::new(),
            counter: 0,
            owners: BTreeMap::new(),
            trace,
            load: Vec::new(),
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{}", self.counter)
    }

    fn record(&mut self, metric: &str, peer: Peer, value: f64) {
        self.samples
            .entry(metric.to_string())
            .or_default()
            .entry(peer.name())
            .or_default()
            .push(value);
    }

    /// `ctr run` arguments selecting the shim and the OCI runtime.
    fn run_flags(&self, peer: Peer) -> Vec<String> {
        let Peer::Shim(shim, oci) = peer else {
            unreachable!("bare peers do not use ctr")
        };
        let mut f = vec!["--runtime".to_string()];
        match shim {
            Shim::Ours => {
                f.push(RSRUNC.into());
                if oci == Oci::Crun {
                    f.extend(["--runtime-config-path".to_string(), self.crun_toml.clone()]);
                }
            }
            Shim::Go => {
                f.push(GO_SHIM.into());
                if oci == Oci::Crun {
                    f.extend(["--runc-binary".to_string(), "crun".to_string()]);
                }
            }
        }
        f
    }

    fn ctr_run(
        &self,
        peer: Peer,
        extra: &[&str],
        id: &str,
        image: bool,
        cmd: &[&str],
    ) -> daemon::CtrOutput {
        let mut a: Vec<String> = vec!["run".into()];
        a.extend(self.run_flags(peer));
        a.extend(extra.iter().map(|s| s.to_string()));
        if image {
            a.push(IMAGE.into());
        } else {
            a.extend([
                "--rootfs".to_string(),
                rootfs::busybox().display().to_string(),
            ]);
        }
        a.push(id.into());
        a.extend(cmd.iter().map(|s| s.to_string()));
        self.d
            .ctr(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Cold lifecycle: `ctr run --rm ... /bin/true`, from the image or from --rootfs.
    /// With the image, also the CPU the shim side spent on it.
    fn cold(&mut self, rounds: usize, image: bool) {
        let metric = if image {
            "cold lifecycle, image (ms)"
        } else {
            "cold lifecycle, --rootfs (ms)"
        };
        eprintln!("bench: {metric}");
        for round in 0..rounds {
            for peer in rotated(&ALL, round) {
                let id = self.id("cold");
                self.owners.insert(id.clone(), peer);
                std::thread::sleep(PACE);
                let cpu_before = self.shim_side_cpu_ns();
                let children_before = children_cpu_ns();
                let t = Instant::now();
                match peer {
                    Peer::Shim(..) => {
                        self.ctr_run(peer, &["--rm"], &id, image, &["/bin/true"])
                            .ok();
                    }
                    Peer::Bare(oci) => bare_run(&self.bare_bundle(&id, &["/bin/true"]), oci, &id),
                }
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.record(metric, peer, ms);
                if image {
                    let cpu = match peer {
                        Peer::Shim(..) => self
                            .shim_side_cpu_ns()
                            .zip(cpu_before)
                            .map(|(a, b)| a.saturating_sub(b)),
                        Peer::Bare(_) => Some(children_cpu_ns().saturating_sub(children_before)),
                    };
                    if let Some(ns) = cpu {
                        self.record(
                            "CPU per lifecycle: start + shim + runtime calls (ms)",
                            peer,
                            ns as f64 / 1e6,
                        );
                    }
                }
            }
        }
    }

    /// A cold lifecycle straight to the shim, as containerd drives one but without it:
    /// `<shim> start`, then Create, Start, Wait, Delete and Shutdown over ttrpc, for a
    /// bundle on the busybox rootfs running `/bin/true` (bare: `runc run` of the same
    /// bundle). What the shim costs without ctr's start-up and containerd's own work.
    fn cold_direct(&mut self, rounds: usize) {
        use containerd_shim_protos::api::{
            CreateTaskRequest, CreateTaskResponse, DeleteRequest, DeleteResponse, StartRequest,
            StartResponse, WaitRequest, WaitResponse,
        };
        use containerd_shim_protos::protobuf::Message;
        let metric = "cold lifecycle straight to the shim (ms)";
        eprintln!("bench: {metric}");
        for round in 0..rounds {
            for peer in rotated(&ALL, round) {
                let id = self.id("direct");
                self.owners.insert(id.clone(), peer);
                let bundle = self.bare_bundle(&id, &["/bin/true"]);
                let Peer::Shim(shim, oci) = peer else {
                    std::thread::sleep(PACE);
                    let t = Instant::now();
                    bare_run(&bundle, peer.oci(), &id);
                    self.record(metric, peer, t.elapsed().as_secs_f64() * 1e3);
                    continue;
                };
                let binary = match shim {
                    Shim::Ours => rsrunc_e2e::shim_binary(),
                    Shim::Go => rsrunc_e2e::tool("containerd-shim-runc-v2"),
                };
                // The runtime as containerd's CRI names it: the options of the request.
                let options = containerd_shim_protos::shim::oci::Options {
                    binary_name: oci.binary(),
                    ..Default::default()
                };
                let options = containerd_shim_protos::protobuf::well_known_types::any::Any {
                    type_url: "containerd.runc.v1.Options".into(),
                    value: options.write_to_bytes().unwrap(),
                    ..Default::default()
                };
                std::thread::sleep(PACE);
                let t = Instant::now();
                let conn = ShimConn::start(&self.d, &binary, &bundle, &id);
                let _: CreateTaskResponse = conn
                    .call(
                        "Create",
                        &CreateTaskRequest {
                            id: id.clone(),
                            bundle: bundle.display().to_string(),
                            options: Some(options).into(),
                            ..Default::default()
                        },
                    )
                    .unwrap_or_else(|e| panic!("{}: Create: {e:?}", peer.name()));
                let start = StartRequest {
                    id: id.clone(),
                    ..Default::default()
                };
                let _: StartResponse = conn.call("Start", &start).unwrap();
                let wait = WaitRequest {
                    id: id.clone(),
                    ..Default::default()
                };
                let w: WaitResponse = conn.call("Wait", &wait).unwrap();
                let delete = DeleteRequest {
                    id: id.clone(),
                    ..Default::default()
                };
                let _: DeleteResponse = conn.call("Delete", &delete).unwrap();
                conn.shutdown();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                assert_eq!(w.exit_status, 0, "{}: /bin/true", peer.name());
                self.record(metric, peer, ms);
                drop(conn);
                let _ = std::fs::remove_dir_all(&bundle);
            }
        }
    }

    /// `ctr task exec /bin/true` into a running container, and the same exec straight
    /// over ttrpc to the shim (Exec, Start, Wait, Delete: what the shim itself costs,
    /// without ctr's start-up and containerd); bare: `runc exec`. Every sample is paced
    /// ([`PACE`]).
    fn exec_latency(&mut self, rounds: usize) {
        eprintln!("bench: exec latency");
        let mut hosts = Vec::new();
        for peer in ALL {
            let id = self.id("exechost");
            self.owners.insert(id.clone(), peer);
            let conn = match peer {
                Peer::Shim(..) => {
                    self.ctr_run(peer, &["-d"], &id, true, &["/bin/sleep", "100000"])
                        .ok();
                    let bundle = self.d.bundle(&id);
                    let address = std::fs::read_to_string(bundle.join("address")).unwrap();
                    let process = bundle_spec(&bundle).process().clone().unwrap();
                    Some((ShimConn::connect(address.trim()), process))
                }
                Peer::Bare(oci) => {
                    bare_start(&self.bare_bundle(&id, &["/bin/sleep", "100000"]), oci, &id);
                    None
                }
            };
            hosts.push((peer, id, conn));
        }
        let mut n = 0;
        for round in 0..rounds {
            let k = round % hosts.len();
            for (peer, id, conn) in hosts[k..].iter().chain(hosts[..k].iter()) {
                let peer = *peer;
                if let Peer::Bare(oci) = peer {
                    // One sample serves both metrics: there is no ctr or ttrpc to skip.
                    std::thread::sleep(PACE);
                    let t = Instant::now();
                    bare_exec(&self.d, oci, id);
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    self.record("exec latency (ms)", peer, ms);
                    self.record("exec straight over ttrpc (ms)", peer, ms);
                    continue;
                }
                n += 1;
                let exec_id = format!("x{n}");
                std::thread::sleep(PACE);
                let t = Instant::now();
                self.d
                    .ctr(&["task", "exec", "--exec-id", &exec_id, id, "/bin/true"])
                    .ok();
                self.record("exec latency (ms)", peer, t.elapsed().as_secs_f64() * 1e3);
                if let Some((conn, process)) = conn {
                    std::thread::sleep(PACE);
                    let t = Instant::now();
                    let (status, _, calls) = conn.exec_and_wait_timed(
                        id,
                        &format!("{exec_id}-direct"),
                        process,
                        &["/bin/true"],
                    );
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    assert_eq!(status, 0, "{}: exec /bin/true over ttrpc", peer.name());
                    self.record("exec straight over ttrpc (ms)", peer, ms);
                    for (call, d) in ["Exec", "Start", "Wait", "Delete"].iter().zip(calls) {
                        self.record(
                            &format!("exec straight over ttrpc: {call} (ms)"),
                            peer,
                            d.as_secs_f64() * 1e3,
                        );
                    }
                }
            }
        }
        for (peer, id, conn) in hosts {
            drop(conn);
            match peer {
                Peer::Shim(..) => self.remove(&id),
                Peer::Bare(oci) => bare_remove(&self.d, oci, &id),
            }
        }
    }

    /// `ctr container checkpoint --task` of a running container (CRIU's dump, which the
    /// client brackets with a pause and a resume) and `ctr container restore --live` of it
    /// into a new container, through each shim with runc (crun checkpoints only under
    /// ours: the Go shim leaves it without the work directory crun expects).
    fn checkpoint_restore(&mut self, rounds: usize) {
        eprintln!("bench: checkpoint and restore");
        let peers = [SHIMS[0], SHIMS[1]];
        for round in 0..rounds {
            for peer in rotated(&peers, round) {
                let id = self.id("ckpt");
                self.ctr_run(peer, &["-d"], &id, true, &["/bin/sleep", "100000"])
                    .ok();
                self.d.wait_status(&id, "RUNNING");
                let reference = format!("checkpoint/{id}:bench");
                let t = Instant::now();
                self.d
                    .ctr(&["container", "checkpoint", "--task", &id, &reference])
                    .ok();
                self.record("checkpoint (ms)", peer, t.elapsed().as_secs_f64() * 1e3);
                self.remove(&id);
                let restored = self.id("restored");
                let t = Instant::now();
                self.d
                    .ctr(&["container", "restore", "--live", &restored, &reference])
                    .ok();
                self.record("restore (ms)", peer, t.elapsed().as_secs_f64() * 1e3);
                self.d.wait_status(&restored, "RUNNING");
                self.remove(&restored);
                self.d.ctr(&["images", "rm", &reference]).ok();
            }
        }
    }

    /// Shim memory with `n` containers running: RSS and PSS per container.
    fn memory(&mut self, n: usize) {
        eprintln!("bench: shim memory with {n} containers");
        for peer in SHIMS {
            let ids: Vec<String> = (0..n).map(|_| self.id("mem")).collect();
            for id in &ids {
                self.ctr_run(peer, &["-d"], id, true, &["/bin/sleep", "100000"])
                    .ok();
            }
            std::thread::sleep(STEADY);
            let shims = self.d.shim_pids();
            let (rss, pss) = shims
                .iter()
                .map(|p| smaps_rollup(*p))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            self.record(
                &format!("shim RSS per container, {n} running (KiB)"),
                peer,
                rss as f64 / n as f64,
            );
            self.record(
                &format!("shim PSS per container, {n} running (KiB)"),
                peer,
                pss as f64 / n as f64,
            );
            for id in &ids {
                self.remove(id);
            }
            self.wait_no_shims();
        }
    }

    /// `total` containers run and removed, `parallel` at a time: wall time.
    fn churn(&mut self, total: usize, parallel: usize) {
        eprintln!("bench: {total} containers, {parallel} at a time");
        for peer in ALL {
            let ids: Vec<String> = (0..total).map(|_| self.id("churn")).collect();
            let flags = if matches!(peer, Peer::Shim(..)) {
                self.run_flags(peer)
            } else {
                vec![]
            };
            let t = Instant::now();
            std::thread::scope(|s| {
                for chunk in ids.chunks(total.div_ceil(parallel)) {
                    let flags = &flags;
                    let b = &*self;
                    s.spawn(move || {
                        for id in chunk {
                            match peer {
                                Peer::Shim(..) => {
                                    let mut a: Vec<String> = vec!["run".into(), "--rm".into()];
                                    a.extend(flags.iter().cloned());
                                    a.extend([IMAGE.to_string(), id.clone(), "/bin/true".into()]);
                                    b.d.ctr(&a.iter().map(String::as_str).collect::<Vec<_>>())
                                        .ok();
                                }
                                Peer::Bare(oci) => {
                                    bare_run(&b.bare_bundle(id, &["/bin/true"]), oci, id)
                                }
                            }
                        }
                    });
                }
            });
            self.record(
                &format!("{total} containers, {parallel} at a time (s)"),
                peer,
                t.elapsed().as_secs_f64(),
            );
        }
    }

    /// `total` pods through CRI, `parallel` at a time, each a pod sandbox and one
    /// container: the start latency of each pod (RunPodSandbox + CreateContainer +
    /// StartContainer), then, with all of them running, the PSS of the shims per pod.
    fn pods(&mut self, total: usize, parallel: usize) {
        eprintln!("bench: {total} pods through CRI, {parallel} at a time");
        let flavor = Flavor {
            bin_dir: Some(PathBuf::from(CONTAINERD_2)),
            config_version: 3,
        };
        let c = CriDaemon::start_flavor(&flavor);
        let per_pod =
            format!("pod start (CRI, containerd 2.1), {total} pods {parallel} at a time (ms)");
        for peer in [SHIMS[0], SHIMS[1]] {
            let handler = match peer {
                Peer::Shim(Shim::Ours, _) => OUR_HANDLER,
                _ => GO_HANDLER,
            };
            let names: Vec<String> = (0..total).map(|_| self.id(handler)).collect();
            let configs: Vec<_> = names.iter().map(|n| c.pod_config(n)).collect();
            let container = c.container_config("app", &["/bin/sleep", "100000"]);
            let latencies = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for chunk in configs.chunks(total.div_ceil(parallel)) {
                    let (latencies, container, socket) = (&latencies, &container, &c.daemon.socket);
                    s.spawn(move || {
                        let client = cri::Client::connect(socket).unwrap();
                        for pod_config in chunk {
                            let t = Instant::now();
                            let pod = client.run_pod_sandbox(pod_config, handler).unwrap();
                            let id = client
                                .create_container(&pod, container, pod_config)
                                .unwrap();
                            client.start_container(&id).unwrap();
                            let ms = t.elapsed().as_secs_f64() * 1e3;
                            latencies.lock().unwrap().push(ms);
                        }
                    });
                }
            });
            for ms in latencies.into_inner().unwrap() {
                self.record(&per_pod, peer, ms);
            }
            std::thread::sleep(STEADY);
            let shims = c.daemon.shim_pids();
            assert_eq!(shims.len(), total, "{handler}: one shim per pod");
            let pss: u64 = shims.iter().map(|p| smaps_rollup(*p).1).sum();
            self.record(
                &format!("shim PSS per pod (CRI, containerd 2.1), {total} pods running (KiB)"),
                peer,
                pss as f64 / total as f64,
            );
            let errors = c.remove_all_pods();
            assert!(
                errors.is_empty(),
                "{handler}: removing the pods: {errors:?}"
            );
            let left = c.daemon.shims_left();
            assert!(
                left.is_empty(),
                "{handler}: shims left after the pods' removal: {left:?}"
            );
        }
    }

    /// `execs` execs of `sh -c 'exit K'` straight over ttrpc, `parallel` at a time, into
    /// one container per shim (runc): wrong exit codes, the shim's RSS and open fds before
    /// and after, zombies, and whether the shim exits after delete.
    /// The soak: `execs` `ctr task exec` with output in one container, `parallel` at a
    /// time, for each shim and OCI runtime: lost outputs, wrong exit codes, zombies and
    /// orphaned runtime processes counted, the shim's threads, RSS and descriptors before
    /// and after.
    fn exec_soak(&mut self, execs: usize, parallel: usize) {
        eprintln!(
            "bench: {execs} ctr execs with output per shim and OCI runtime, {parallel} at a time"
        );
        for peer in SHIMS {
            let id = self.id("soak");
            self.ctr_run(peer, &["-d"], &id, true, &["/bin/sleep", "100000"])
                .ok();
            let shim = self.d.shim_pids()[0];
            let (rss0, _) = smaps_rollup(shim);
            let (fds0, threads0) = (fd_count(shim), threads(shim));
            let t = Instant::now();
            let burst = ctr_exec_burst(&self.d, &id, execs, parallel);
            let elapsed = t.elapsed().as_secs_f64();
            let threads_end = threads(shim);
            // "After" is the shim settled: its idle workers and events connection end on
            // their own timers (2 s; the Go shim keeps its threads).
            rsrunc_e2e::poll_until(Duration::from_secs(10), || threads(shim) <= threads0);
            std::thread::sleep(STEADY);
            let (rss1, _) = smaps_rollup(shim);
            let (fds1, threads1) = (fd_count(shim), threads(shim));
            let procs = daemon::processes();
            let zombies = procs
                .iter()
                .filter(|p| p.ppid == shim && p.state == 'Z')
                .count();
            // Runtime processes the shim left running: reparented to PID 1, or still its
            // children with nothing in flight.
            let orphans = procs
                .iter()
                .filter(|p| p.ppid == 1 || p.ppid == shim)
                .filter(|p| {
                    p.cmdline.first().is_some_and(|c| {
                        let name = Path::new(c).file_name().and_then(|n| n.to_str());
                        matches!(name, Some("runc" | "crun"))
                    })
                })
                .count();
            self.remove(&id);
            let leaked = self.wait_no_shims();
            eprintln!(
                "bench: soak {}: {} lost outputs, {} wrong exit codes, {zombies} zombies, {orphans} orphans, threads {threads0} -> {threads_end} at the end -> {threads1} settled, RSS {rss0} -> {rss1} KiB",
                peer.name(),
                burst.lost_output,
                burst.wrong_exit
            );
            let m = |what: &str| format!("soak, {execs} ctr execs: {what}");
            let figures = [
                ("wall time (s)", elapsed),
                ("lost outputs", burst.lost_output as f64),
                ("wrong exit codes", burst.wrong_exit as f64),
                ("zombies", zombies as f64),
                ("orphaned runtime processes", orphans as f64),
                ("shim threads before", threads0 as f64),
                ("shim threads at the end of the burst", threads_end as f64),
                ("shim threads after, settled", threads1 as f64),
                ("shim RSS before (KiB)", rss0 as f64),
                ("shim RSS after (KiB)", rss1 as f64),
                ("shim open fds before", fds0 as f64),
                ("shim open fds after", fds1 as f64),
                ("shims left after delete", leaked as f64),
            ];
            for (what, value) in figures {
                self.record(&m(what), peer, value);
            }
        }
    }

    fn remove(&self, id: &str) {
        let _ = self.d.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        self.d.wait_status(id, "STOPPED");
        self.d.ctr(&["task", "rm", id]).ok();
        self.d.ctr(&["containers", "rm", id]).ok();
    }

    /// How many shims are still there once they have had time to exit.
    fn wait_no_shims(&self) -> usize {
        self.d.shims_left().len()
    }

    /// A bundle for the bare runtimes: ctr's default spec over the busybox rootfs.
    fn bare_bundle(&self, id: &str, args: &[&str]) -> PathBuf {
        let dir = self.d.dir().join("bare").join(id);
        let cgroup = format!("/rsrunc-bench-bare/{id}");
        self.d.write_bundle(&dir, rootfs::busybox(), args, &cgroup);
        dir
    }

    /// CPU used by everything in containerd's cgroup except containerd itself: the
    /// `start` processes, the serving shims and the runtime calls they make. The
    /// containers run in cgroups of their own.
    fn shim_side_cpu_ns(&self) -> Option<u64> {
        let cg = self.cgroup.as_ref()?;
        let total: u64 = std::fs::read_to_string(cg.join("cpuacct.usage"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(total.saturating_sub(threads_cpu_ns(self.d.pid())))
    }

    fn report(&self, cfg: &Config, elapsed: Duration) {
        let mut md = String::new();
        md.push_str("| metric | peer | min | median | p99 | max | ratio to Go shim |\n|---|---|---:|---:|---:|---:|---:|\n");
        for (metric, peers) in &self.samples {
            for peer in ALL {
                let Some(v) = peers.get(&peer.name()) else {
                    continue;
                };
                let (min, med, max) = stats(v);
                let p99 = percentile(v, 0.99);
                let go = peers
                    .get(&Peer::Shim(Shim::Go, peer.oci()).name())
                    .map(|g| stats(g).1);
                let ratio = match go {
                    Some(g) if g > 0.0 && peer != Peer::Shim(Shim::Go, peer.oci()) => {
                        format!("{:.2}x", med / g)
                    }
                    _ => "-".into(),
                };
                md.push_str(&format!(
                    "| {metric} | {} | {} | {} | {} | {} | {ratio} |\n",
                    peer.name(),
                    num(min),
                    num(med),
                    num(p99),
                    num(max)
                ));
            }
        }
        println!("{md}");
        let phases = self.phases();
        println!("{phases}");
        md.push_str(&format!("\n{phases}"));
        let load = self
            .load
            .iter()
            .map(|l| format!("{l:.2}"))
            .collect::<Vec<_>>()
            .join(" -> ");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let loaded = if self.load.iter().any(|l| *l > cores as f64) {
            " ABOVE THE CORE COUNT: the figures are noisy"
        } else {
            ""
        };
        let machine = format!(
            "{} cores, {} GiB, kernel {}, containerd {}, runc {}, crun {}",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            mem_gib(),
            uname_r(),
            daemon_version(),
            tool_version(&Oci::Runc.binary()),
            tool_version(&Oci::Crun.binary())
        );
        let machine = format!("{machine}; load average {load}{loaded}");
        let mode = if cfg.quick { "quick" } else { "full" };
        println!("{mode} run in {:.0} s on {machine}", elapsed.as_secs_f64());
        if let Some(p) = &cfg.out.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        let json = serde_json::json!({"mode": mode, "machine": machine, "seconds": elapsed.as_secs_f64(), "samples": self.samples});
        std::fs::write(&cfg.out, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        if let Some(p) = &cfg.markdown {
            std::fs::write(
                p,
                format!(
                    "{md}\n{mode} run, {:.0} s, on {machine}\n",
                    elapsed.as_secs_f64()
                ),
            )
            .unwrap();
        }
        eprintln!("bench: raw samples in {}", cfg.out.display());
    }
}

impl Bench {
    /// The medians of our shim's traced phases, per OCI runtime and operation, from
    /// the trace file, with the bare runtime's figure for the same work beside them.
    fn phases(&self) -> String {
        let text = std::fs::read_to_string(&self.trace).unwrap_or_default();
        // (peer, op) -> phase -> samples (ms); "total" first.
        let mut by: BTreeMap<(String, String), Phases> = BTreeMap::new();
        for line in text.lines() {
            let mut op = None;
            let mut id = None;
            let mut fields = Vec::new();
            for kv in line.split_whitespace().skip(1) {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                match k {
                    "op" => op = Some(v.to_string()),
                    "id" => id = Some(v.to_string()),
                    _ => {
                        if let Ok(us) = v.parse::<f64>() {
                            fields.push((k.trim_end_matches("_us").to_string(), us / 1e3));
                        }
                    }
                }
            }
            let (Some(op), Some(id)) = (op, id) else {
                continue;
            };
            let Some(peer) = self.owners.get(&id) else {
                continue;
            };
            // Cold containers and exec hosts are told apart: their creates differ.
            let kind = if id.starts_with("cold") {
                "cold"
            } else if id.starts_with("direct") {
                "cold, direct"
            } else {
                "exec"
            };
            let entry = by
                .entry((peer.name(), format!("{kind}: {op}")))
                .or_default();
            for (k, v) in fields {
                match entry.iter_mut().find(|(n, _)| *n == k) {
                    Some((_, vs)) => vs.push(v),
                    None => entry.push((k, vec![v])),
                }
            }
        }
        let mut out = String::from(
            "Phases of our shim (median ms; `make bench` traces them, shim/src/trace.rs):\n\n| peer | operation | n | total | phases |\n|---|---|---:|---:|---|\n",
        );
        for ((peer, op), phases) in &by {
            let n = phases.first().map_or(0, |(_, v)| v.len());
            let total = phases.first().map_or(0.0, |(_, v)| stats(v).1);
            let rest: Vec<String> = phases
                .iter()
                .skip(1)
                .map(|(k, v)| format!("{k} {:.2}", stats(v).1))
                .collect();
            out.push_str(&format!(
                "| {peer} | {op} | {n} | {total:.2} | {} |\n",
                rest.join(", ")
            ));
        }
        for oci in [Oci::Runc, Oci::Crun] {
            let bare = Peer::Bare(oci).name();
            let med = |metric: &str| {
                self.samples
                    .get(metric)
                    .and_then(|m| m.get(&bare))
                    .map_or("-".to_string(), |v| num(stats(v).1))
            };
            out.push_str(&format!(
                "\n{bare}: exec {} ms, cold run --rootfs {} ms (the runtime's own share of the phases above)",
                med("exec latency (ms)"),
                med("cold lifecycle, --rootfs (ms)")
            ));
        }
        out.push_str(&self.own_share());
        out.push('\n');
        out
    }

    /// Straight to the shim minus the bare runtime doing the same work: the shim's own
    /// share of an exec and of a cold lifecycle.
    fn own_share(&self) -> String {
        let mut out = String::new();
        for (metric, what) in [
            ("exec straight over ttrpc (ms)", "an exec"),
            (
                "cold lifecycle straight to the shim (ms)",
                "a cold lifecycle",
            ),
        ] {
            let Some(m) = self.samples.get(metric) else {
                continue;
            };
            let med = |p: Peer| m.get(&p.name()).map(|v| stats(v).1);
            out.push_str(&format!(
                "\n\nThe shim's own share of {what} ({metric} minus the bare runtime, medians):"
            ));
            for oci in [Oci::Runc, Oci::Crun] {
                let Some(bare) = med(Peer::Bare(oci)) else {
                    continue;
                };
                let ours = med(Peer::Shim(Shim::Ours, oci)).map(|v| v - bare);
                let go = med(Peer::Shim(Shim::Go, oci)).map(|v| v - bare);
                let ratio = match (ours, go) {
                    (Some(o), Some(g)) if g > 0.0 => format!("{:.2}x", o / g),
                    _ => "-".into(),
                };
                out.push_str(&format!(
                    "\n- {}: rsrunc {} ms, Go shim {} ms ({ratio})",
                    oci_name(oci),
                    ours.map_or("-".into(), num),
                    go.map_or("-".into(), num)
                ));
            }
        }
        out
    }
}

/// The 1-minute load average, with a loud warning when it is above the core count
/// (other work on the machine makes every figure noisy; interleaving keeps the ratios
/// fair, not the absolute times).
fn check_load() -> f64 {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if load > cores as f64 {
        eprintln!(
            "bench: WARNING: load average {load:.2} is above the {cores} cores: the machine is busy, every figure below is noisy (ratios stay fair: runs are interleaved)"
        );
    }
    load
}

impl Drop for Bench {
    fn drop(&mut self) {
        for oci in Oci::ALL {
            let _ = std::fs::remove_dir_all(bare_root(&self.d, oci));
        }
        if let Some(cg) = &self.cgroup {
            // Move what is left (containerd until it stops) back to the root group first.
            if let Ok(procs) = std::fs::read_to_string(cg.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(
                        cg.parent().unwrap_or(Path::new("/")).join("cgroup.procs"),
                        pid,
                    );
                }
            }
            let _ = std::fs::remove_dir(cg);
        }
    }
}

/// Puts containerd into a cpuacct cgroup of its own (cgroup v1), so the CPU of its
/// children can be read; None where that hierarchy does not exist.
fn cpu_cgroup(pid: i32) -> Option<PathBuf> {
    let root = ["/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cpuacct.usage").exists())?;
    let cg = root.join(format!("rsrunc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&cg).ok()?;
    std::fs::write(cg.join("cgroup.procs"), pid.to_string()).ok()?;
    Some(cg)
}

fn threads_cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn children_cpu_ns() -> u64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1000;
    tv(u.user_time()) + tv(u.system_time())
}

fn bare_root(d: &Daemon, oci: Oci) -> String {
    d.dir()
        .join(format!("bare-{}", oci.binary()))
        .display()
        .to_string()
}

fn bare_run(bundle: &Path, oci: Oci, id: &str) {
    bare(bundle, oci, id, false);
}

fn bare_start(bundle: &Path, oci: Oci, id: &str) {
    bare(bundle, oci, id, true);
}

/// `<runtime> run [-d] --bundle B ID` with the runtime's state next to the bundles.
fn bare(bundle: &Path, oci: Oci, id: &str, detach: bool) {
    let root = bundle
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(format!("bare-{}", oci.binary()));
    let mut cmd = Command::new(oci.binary());
    cmd.arg("--root").arg(&root).arg("run");
    if detach {
        cmd.arg("-d");
    }
    let st = cmd
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if detach {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .status()
        .unwrap();
    assert!(st.success(), "{} run {id}: {st}", oci.binary());
}

/// `<runtime> exec ID /bin/true` into a container `bare_start` started.
fn bare_exec(d: &Daemon, oci: Oci, id: &str) {
    let st = Command::new(oci.binary())
        .args(["--root", &bare_root(d, oci)])
        .args(["exec", id, "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{} exec {id}: {st}", oci.binary());
}

fn bare_remove(d: &Daemon, oci: Oci, id: &str) {
    let root = bare_root(d, oci);
    let _ = Command::new(oci.binary())
        .args(["--root", &root, "delete", "--force", id])
        .status();
}

/// (Rss, Pss) in KiB.
fn smaps_rollup(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rotated<T: Copy>(items: &[T], round: usize) -> Vec<T> {
    let k = round % items.len();
    items[k..]
        .iter()
        .chain(items[..k].iter())
        .copied()
        .collect()
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let med = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (s[0], med, s[s.len() - 1])
}

/// The `q` quantile (0..=1) by the nearest-rank method: the smallest sample with at least
/// q of the samples at or below it.
fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn mem_gib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
        / 1024
}

fn uname_r() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The OCI runtime's name for the report (its binary may be a path).
fn oci_name(oci: Oci) -> String {
    let bin = oci.binary();
    Path::new(&bin)
        .file_name()
        .map_or(bin.clone(), |n| n.to_string_lossy().into_owned())
}

/// The version `bin --version` prints (the last word of its first line).
fn tool_version(bin: &str) -> String {
    let out = Command::new(bin).arg("--version").output().ok();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_string()
    })
    .unwrap_or_default()
}
