//! cgroup v2 statistics: the files containerd's cgroups library reads (`cgroup2`
//! `Stat`), into the fields of `io.containerd.cgroups.v2.Metrics`.

use std::io;
use std::path::Path;

use rsrunc_protos::metrics::v2::*;
use rsrunc_protos::metrics::Writer;

use super::files::{hugepage_sizes, kv, must_exist, parse_u64, read, uint};

/// MemoryStat fields read from files of their own ("max" reads as u64::MAX).
const MEMORY_FILES: [(&str, u32); 6] = [
    ("memory.current", memory_stat::USAGE),
    ("memory.max", memory_stat::USAGE_LIMIT),
    ("memory.swap.current", memory_stat::SWAP_USAGE),
    ("memory.swap.max", memory_stat::SWAP_LIMIT),
    ("memory.peak", memory_stat::MAX_USAGE),
    ("memory.swap.peak", memory_stat::SWAP_MAX_USAGE),
];

/// Metrics from the cgroup's directory; an error if it is gone.
pub(super) fn metrics(dir: &Path) -> io::Result<Writer> {
    must_exist(dir)?;
    let mut m = Writer::default();
    if let Some(current) = uint(dir, "pids.current", u64::MAX)? {
        let mut p = Writer::default();
        p.uint(pids_stat::CURRENT, current);
        p.uint(
            pids_stat::LIMIT,
            uint(dir, "pids.max", u64::MAX)?.unwrap_or(0),
        );
        m.message(PIDS, p);
    }
    if let Some(text) = read(dir, "cpu.stat")? {
        let mut cpu = Writer::from_table(&kv(&text), CPU_STAT_KEYS);
        if let Some(p) = pressure(dir, "cpu.pressure") {
            cpu.message(cpu_stat::PSI, p);
        }
        m.message(CPU, cpu);
    }
    if let Some(text) = read(dir, "memory.stat")? {
        let s = kv(&text);
        let mut mem = Writer::from_table(&s, MEMORY_STAT_KEYS);
        // Since Linux 5.9 the workingset counters are split into _anon and _file.
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        for (key, field) in [
            ("workingset_refault", memory_stat::WORKINGSET_REFAULT),
            ("workingset_activate", memory_stat::WORKINGSET_ACTIVATE),
        ] {
            let v = s.get(key).copied().unwrap_or_else(|| {
                g(&format!("{key}_anon")).saturating_add(g(&format!("{key}_file")))
            });
            mem.uint(field, v);
        }
        for (file, field) in MEMORY_FILES {
            mem.uint(field, uint(dir, file, u64::MAX)?.unwrap_or(0));
        }
        if let Some(p) = pressure(dir, "memory.pressure") {
            mem.message(memory_stat::PSI, p);
        }
        m.message(MEMORY, mem);
    }
    let io_stat = read(dir, "io.stat")?;
    let io_pressure = pressure(dir, "io.pressure");
    if io_stat.is_some() || io_pressure.is_some() {
        let mut io = Writer::default();
        for e in io_entries(io_stat.as_deref().unwrap_or("")) {
            io.message(io_stat::USAGE, e);
        }
        if let Some(p) = io_pressure {
            io.message(io_stat::PSI, p);
        }
        m.message(IO, io);
    }
    let rdma_current = read(dir, "rdma.current")?;
    let rdma_max = read(dir, "rdma.max")?;
    if rdma_current.is_some() || rdma_max.is_some() {
        let mut r = Writer::default();
        for (field, text) in [
            (rdma_stat::CURRENT, &rdma_current),
            (rdma_stat::LIMIT, &rdma_max),
        ] {
            for e in rdma_entries(text.as_deref().unwrap_or("")) {
                r.message(field, e);
            }
        }
        m.message(RDMA, r);
    }
    for size in hugepage_sizes(dir, ".current")? {
        let f = |name: &str| uint(dir, &format!("hugetlb.{size}.{name}"), u64::MAX);
        let events = read(dir, &format!("hugetlb.{size}.events"))?;
        let mut h = Writer::default();
        h.uint(hugetlb_stat::CURRENT, f("current")?.unwrap_or(0));
        h.uint(hugetlb_stat::MAX, f("max")?.unwrap_or(0));
        h.string(hugetlb_stat::PAGESIZE, &size);
        h.uint(
            hugetlb_stat::FAILCNT,
            events.map_or(0, |t| kv(&t).get("max").copied().unwrap_or(0)),
        );
        m.message(HUGETLB, h);
    }
    if let Some(text) = read(dir, "memory.events")? {
        m.message(
            MEMORY_EVENTS,
            Writer::from_table(&kv(&text), MEMORY_EVENTS_KEYS),
        );
    }
    Ok(m)
}

/// Enables every controller the hierarchy's root offers in the `cgroup.subtree_control` of
/// each cgroup from `mountpoint` down to `dir`'s parent, so that the container's own
/// cgroup can use them and delegate them further (containerd's Go shim does this after it
/// starts an init, through cgroups' `ToggleControllers`). A write refused above (an
/// ancestor that holds processes, one owned by someone else) does not matter when a lower
/// one succeeds: only the last write's failure is returned, naming the file.
pub(super) fn enable_controllers(mountpoint: &Path, dir: &Path) -> io::Result<()> {
    let controllers =
        std::fs::read_to_string(mountpoint.join("cgroup.controllers")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("read {}/cgroup.controllers: {e}", mountpoint.display()),
            )
        })?;
    let line = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        return Ok(());
    }
    let Ok(below) = dir.strip_prefix(mountpoint) else {
        return Ok(());
    };
    // One write above each component of the path below the mount: the mount itself,
    // then each ancestor, never `dir`.
    let mut last = Ok(());
    let mut at = mountpoint.to_path_buf();
    for part in below.components() {
        last = write_subtree_control(&at, &line);
        at.push(part);
    }
    last
}

fn write_subtree_control(cgroup: &Path, line: &str) -> io::Result<()> {
    use std::io::Write;
    let path = cgroup.join("cgroup.subtree_control");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("write {line:?} to {}: {e}", path.display()),
            )
        })
}

/// PSIStats from a `*.pressure` file: "some avg10=0.12 avg60=0.05 avg300=0.01 total=1234"
/// and a "full" line alike. None when the file is missing, unreadable (a kernel booted
/// with psi=0 answers EOPNOTSUPP) or malformed, as containerd's cgroups library does:
/// pressure is never a reason to fail Stats.
fn pressure(dir: &Path, name: &str) -> Option<Writer> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let mut stats = Writer::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let field = match f.next() {
            Some("some") => psi_stats::SOME,
            Some("full") => psi_stats::FULL,
            _ => continue,
        };
        let mut data = Writer::default();
        for kv in f {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => data.double(psi_data::AVG10, v.parse().ok()?),
                "avg60" => data.double(psi_data::AVG60, v.parse().ok()?),
                "avg300" => data.double(psi_data::AVG300, v.parse().ok()?),
                "total" => data.uint(psi_data::TOTAL, v.parse().ok()?),
                _ => {}
            }
        }
        stats.message(field, data);
    }
    Some(stats)
}

/// RdmaEntry messages from "mlx4_0 hca_handle=2 hca_object=2000" lines ("max" reads as
/// the largest uint32); lines of another shape are skipped.
fn rdma_entries(text: &str) -> Vec<Writer> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [device, a, b] = f[..] else { return None };
            let mut e = Writer::default();
            e.string(rdma_entry::DEVICE, device);
            for (k, v) in [a, b].iter().filter_map(|kv| kv.split_once('=')) {
                let v = match v {
                    "max" => u64::from(u32::MAX),
                    n => match n.parse::<u32>() {
                        Ok(n) => u64::from(n),
                        Err(_) => continue,
                    },
                };
                match k {
                    "hca_handle" => e.uint(rdma_entry::HCA_HANDLES, v),
                    "hca_object" => e.uint(rdma_entry::HCA_OBJECTS, v),
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// IOEntry messages from "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0" lines.
fn io_entries(text: &str) -> Vec<Writer> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            let mut e = Writer::default();
            e.uint(io_entry::MAJOR, major.parse().ok()?);
            e.uint(io_entry::MINOR, minor.parse().ok()?);
            for (k, v) in f.filter_map(|kv| kv.split_once('=')) {
                let Some(v) = parse_u64(v) else { continue };
                match k {
                    "rbytes" => e.uint(io_entry::RBYTES, v),
                    "wbytes" => e.uint(io_entry::WBYTES, v),
                    "rios" => e.uint(io_entry::RIOS, v),
                    "wios" => e.uint(io_entry::WIOS, v),
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cgroups::files::tests::write;
    use crate::cgroups::Cgroups;
    use containerd_shim_protos::cgroups_v2::metrics as pb;
    use containerd_shim_protos::protobuf::Message;
    use rsrunc_protos::metrics::V2_TYPE_URL;

    const MEMORY_STAT_V2: &str = "\
anon 1314816
file 4521984
kernel 1249280
kernel_stack 65536
pagetables 94208
sec_pagetables 0
percpu 504
sock 4096
vmalloc 0
shmem 12288
zswap 0
zswapped 0
file_mapped 2478080
file_dirty 8192
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 1298432
active_anon 28672
inactive_file 3072000
active_file 1437696
unevictable 0
slab_reclaimable 871872
slab_unreclaimable 164680
slab 1036552
workingset_refault_anon 3
workingset_refault_file 40
workingset_activate_anon 1
workingset_activate_file 20
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 5
pgdemote_kswapd 0
pgdemote_direct 0
pgdemote_khugepaged 0
pgscan 100
pgsteal 90
pgscan_kswapd 0
pgscan_direct 100
pgscan_khugepaged 0
pgsteal_kswapd 0
pgsteal_direct 90
pgsteal_khugepaged 0
pgfault 4620
pgmajfault 33
pgrefill 7
pgactivate 400
pgdeactivate 6
pglazyfree 0
pglazyfreed 0
zswpin 0
zswpout 0
zswpwb 0
thp_fault_alloc 2
thp_collapse_alloc 1
thp_swpout 0
thp_swpout_fallback 0
";

    /// A v2 cgroup with every controller's files.
    pub(in crate::cgroups) fn tree(dir: &Path) -> Cgroups {
        write(
            dir,
            &[
                (
                    "cgroup.controllers",
                    "cpuset cpu io memory hugetlb pids rdma misc\n",
                ),
                ("pids.current", "4\n"),
                ("pids.max", "1024\n"),
                (
                    "cpu.stat",
                    "usage_usec 3063960\nuser_usec 2004137\nsystem_usec 1059823\n\
                     core_sched.force_idle_usec 0\nnr_periods 50\nnr_throttled 3\n\
                     throttled_usec 120000\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.stat", MEMORY_STAT_V2),
                ("memory.current", "6029312\n"),
                ("memory.max", "max\n"),
                ("memory.peak", "9039872\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "268435456\n"),
                (
                    "memory.events",
                    "low 0\nhigh 5\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n",
                ),
                (
                    "io.stat",
                    "259:0 rbytes=1875968 wbytes=8192 rios=66 wios=2 dbytes=0 dios=0\n\
                     8:16 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
                ),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.events", "max 3\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
                (
                    "cpu.pressure",
                    "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=789\n",
                ),
                (
                    "memory.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                (
                    "io.pressure",
                    "some avg10=3.25 avg60=0.00 avg300=0.00 total=42\n\
                     full avg10=2.00 avg60=0.00 avg300=0.00 total=40\n",
                ),
                ("rdma.current", "mlx5_0 hca_handle=2 hca_object=100\n"),
                (
                    "rdma.max",
                    "mlx5_0 hca_handle=max hca_object=max\nbroken line\n",
                ),
            ],
        );
        Cgroups::V2(dir.to_path_buf())
    }

    fn decode_v2(cg: &Cgroups) -> pb::Metrics {
        let any = cg.metrics().unwrap();
        assert_eq!(any.type_url, V2_TYPE_URL);
        pb::Metrics::parse_from_bytes(&any.value).unwrap()
    }

    #[test]
    fn metrics_land_in_their_fields() {
        let root = tempfile::tempdir().unwrap();
        let m = decode_v2(&tree(&root.path().join("c1")));

        assert_eq!((m.pids.current, m.pids.limit), (4, 1024));

        let c = &m.cpu;
        assert_eq!(
            (c.usage_usec, c.user_usec, c.system_usec),
            (3063960, 2004137, 1059823)
        );
        assert_eq!(
            (c.nr_periods, c.nr_throttled, c.throttled_usec),
            (50, 3, 120000)
        );

        let mem = &m.memory;
        assert_eq!(
            (mem.anon, mem.file, mem.kernel_stack),
            (1314816, 4521984, 65536)
        );
        assert_eq!((mem.slab, mem.sock, mem.shmem), (1036552, 4096, 12288));
        assert_eq!(
            (mem.file_mapped, mem.file_dirty, mem.file_writeback),
            (2478080, 8192, 0)
        );
        assert_eq!((mem.inactive_anon, mem.active_anon), (1298432, 28672));
        assert_eq!((mem.inactive_file, mem.active_file), (3072000, 1437696));
        assert_eq!(
            (mem.slab_reclaimable, mem.slab_unreclaimable),
            (871872, 164680)
        );
        assert_eq!((mem.pgfault, mem.pgmajfault), (4620, 33));
        assert_eq!((mem.workingset_refault, mem.workingset_activate), (43, 21));
        assert_eq!(mem.workingset_nodereclaim, 5);
        assert_eq!((mem.pgrefill, mem.pgscan, mem.pgsteal), (7, 100, 90));
        assert_eq!((mem.pgactivate, mem.pgdeactivate), (400, 6));
        assert_eq!((mem.thp_fault_alloc, mem.thp_collapse_alloc), (2, 1));
        assert_eq!(
            (mem.usage, mem.usage_limit, mem.max_usage),
            (6029312, u64::MAX, 9039872)
        );
        assert_eq!((mem.swap_usage, mem.swap_limit), (0, 268435456));
        // A pressure line of zeros still says the file was read.
        assert!(mem.psi.some.is_some() && mem.psi.full.is_some());
        assert_eq!(mem.psi.some.total, 0);

        let psi = &c.psi;
        assert_eq!(
            (
                psi.some.avg10,
                psi.some.avg60,
                psi.some.avg300,
                psi.some.total
            ),
            (1.5, 0.25, 0.0, 123456)
        );
        assert_eq!(psi.full.total, 789);
        assert_eq!((m.io.psi.some.avg10, m.io.psi.some.total), (3.25, 42));
        assert_eq!((m.io.psi.full.avg10, m.io.psi.full.total), (2.0, 40));

        let rdma = |e: &[pb::RdmaEntry]| -> Vec<(String, u32, u32)> {
            e.iter()
                .map(|e| (e.device.clone(), e.hca_handles, e.hca_objects))
                .collect()
        };
        assert_eq!(rdma(&m.rdma.current), [("mlx5_0".into(), 2, 100)]);
        assert_eq!(rdma(&m.rdma.limit), [("mlx5_0".into(), u32::MAX, u32::MAX)]);

        let ev = &m.memory_events;
        assert_eq!(
            (ev.low, ev.high, ev.max, ev.oom, ev.oom_kill),
            (0, 5, 9, 2, 1)
        );

        let io: Vec<_> =
            m.io.usage
                .iter()
                .map(|e| (e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios))
                .collect();
        assert_eq!(io, [(259, 0, 1875968, 8192, 66, 2), (8, 16, 4096, 0, 1, 0)]);

        assert_eq!(m.hugetlb.len(), 1);
        let h = &m.hugetlb[0];
        assert_eq!(
            (h.pagesize.as_str(), h.current, h.max, h.failcnt),
            ("2MB", 2097152, u64::MAX, 3)
        );
    }

    #[test]
    fn missing_files_leave_their_controller_empty() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[("cgroup.controllers", "\n"), ("cpu.stat", "usage_usec 7\n")],
        );
        let m = decode_v2(&Cgroups::V2(root.path().to_path_buf()));
        assert_eq!(m.cpu.usage_usec, 7);
        assert!(m.pids.is_none() && m.memory.is_none() && m.memory_events.is_none());
        assert!(m.io.is_none() && m.rdma.is_none());
        assert!(m.cpu.psi.is_none());
        assert!(m.hugetlb.is_empty());
    }

    #[test]
    fn unreadable_or_malformed_pressure_is_left_out() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[
                ("cpu.stat", "usage_usec 7\n"),
                (
                    "cpu.pressure",
                    "some avg10=x avg60=0.00 avg300=0.00 total=1\n",
                ),
                (
                    "io.pressure",
                    "some avg10=0.50 avg60=0.00 avg300=0.00 total=9\n",
                ),
            ],
        );
        let m = decode_v2(&Cgroups::V2(root.path().to_path_buf()));
        assert!(m.cpu.psi.is_none(), "{:?}", m.cpu);
        // io.pressure alone makes an IOStat, as in containerd (no full line: no full).
        assert!(m.io.usage.is_empty());
        assert_eq!(m.io.psi.some.total, 9);
        assert!(m.io.psi.full.is_none());
    }

    #[test]
    fn controllers_are_enabled_above_the_container_only() {
        let root = tempfile::tempdir().unwrap();
        let mount = root.path();
        let parent = mount.join("kubepods.slice/pod1");
        let container = parent.join("c1");
        write(mount, &[("cgroup.controllers", "cpu io memory pids\n")]);
        for dir in [mount, &mount.join("kubepods.slice"), &parent, &container] {
            write(dir, &[("cgroup.subtree_control", "")]);
        }
        enable_controllers(mount, &container).unwrap();
        let read = |d: &Path| std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap();
        for dir in [mount, &mount.join("kubepods.slice"), &parent] {
            assert_eq!(read(dir), "+cpu +io +memory +pids", "{}", dir.display());
        }
        assert_eq!(
            read(&container),
            "",
            "the container's own cgroup is left alone"
        );
        // A refused write above is forgiven when a lower one works; the last one is not.
        std::fs::remove_file(mount.join("kubepods.slice/cgroup.subtree_control")).unwrap();
        enable_controllers(mount, &container).unwrap();
        std::fs::remove_file(parent.join("cgroup.subtree_control")).unwrap();
        let e = enable_controllers(mount, &container).unwrap_err();
        assert!(e.to_string().contains("pod1/cgroup.subtree_control"), "{e}");
        // The root as the container's cgroup: nothing above it.
        enable_controllers(mount, mount).unwrap();
    }

    #[test]
    fn a_missing_cgroup_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let gone = root.path().join("gone");
        let e = Cgroups::V2(gone.clone()).metrics().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains(gone.to_str().unwrap()), "{e}");
    }
}
