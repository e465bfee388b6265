//! cgroup v1 statistics: the files containerd's cgroups library reads (`cgroup1` `Stat`),
//! into the fields of `io.containerd.cgroups.v1.Metrics`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use rsrunc_protos::metrics::v1::*;
use rsrunc_protos::metrics::Writer;

use super::files::{hugepage_sizes, kv, must_exist, parse_u64, read, uint};

/// cpuacct.stat counts in USER_HZ ticks, 100 a second on every Linux (as containerd
/// hard-codes it).
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

/// MemoryStat's MemoryEntry fields and the prefix of the files that fill them.
const MEMORY_ENTRIES: [(u32, &str); 4] = [
    (memory_stat::USAGE, "memory."),
    (memory_stat::SWAP, "memory.memsw."),
    (memory_stat::KERNEL, "memory.kmem."),
    (memory_stat::KERNEL_TCP, "memory.kmem.tcp."),
];
/// MemoryEntry: the suffix of the file that fills each field.
const MEMORY_ENTRY: [(&str, u32); 4] = [
    ("limit_in_bytes", memory_entry::LIMIT),
    ("usage_in_bytes", memory_entry::USAGE),
    ("max_usage_in_bytes", memory_entry::MAX),
    ("failcnt", memory_entry::FAILCNT),
];

/// Metrics from the controllers' directories; an error if one of them is gone.
pub(super) fn metrics(dirs: &BTreeMap<String, PathBuf>) -> io::Result<Writer> {
    let dir = |c: &str| dirs.get(c).map(PathBuf::as_path);
    for c in ["pids", "cpu", "cpuacct", "memory", "blkio", "hugetlb"] {
        if let Some(d) = dir(c) {
            must_exist(d)?;
        }
    }
    let mut m = Writer::default();
    if let Some(d) = dir("hugetlb") {
        for size in hugepage_sizes(d, ".usage_in_bytes")? {
            let f =
                |name: &str| uint(d, &format!("hugetlb.{size}.{name}"), 0).map(|v| v.unwrap_or(0));
            let mut h = Writer::default();
            h.uint(hugetlb_stat::USAGE, f("usage_in_bytes")?);
            h.uint(hugetlb_stat::MAX, f("max_usage_in_bytes")?);
            h.uint(hugetlb_stat::FAILCNT, f("failcnt")?);
            h.string(hugetlb_stat::PAGESIZE, &size);
            m.message(HUGETLB, h);
        }
    }
    if let Some(current) = dir("pids")
        .map(|d| uint(d, "pids.current", 0))
        .transpose()?
        .flatten()
    {
        let mut p = Writer::default();
        p.uint(pids_stat::CURRENT, current);
        p.uint(
            pids_stat::LIMIT,
            dir("pids")
                .map(|d| uint(d, "pids.max", 0))
                .transpose()?
                .flatten()
                .unwrap_or(0),
        );
        m.message(PIDS, p);
    }
    let usage = dir("cpuacct").map(read_cpu_usage).transpose()?.flatten();
    let throttling = dir("cpu")
        .map(|d| read(d, "cpu.stat"))
        .transpose()?
        .flatten()
        .map(|t| Writer::from_table(&kv(&t), THROTTLE_KEYS));
    if usage.is_some() || throttling.is_some() {
        let mut cpu = Writer::default();
        if let Some(u) = usage {
            cpu.message(cpu_stat::USAGE, u);
        }
        if let Some(t) = throttling {
            cpu.message(cpu_stat::THROTTLING, t);
        }
        m.message(CPU, cpu);
    }
    if let Some(d) = dir("memory") {
        if let Some(text) = read(d, "memory.stat")? {
            let mut mem = Writer::from_table(&kv(&text), MEMORY_STAT_KEYS);
            // Every entry is written, zero when its files are missing, as containerd
            // does: Docker reads memory.usage without checking it is there.
            for (field, prefix) in MEMORY_ENTRIES {
                let mut e = Writer::default();
                for (suffix, f) in MEMORY_ENTRY {
                    e.uint(f, uint(d, &format!("{prefix}{suffix}"), 0)?.unwrap_or(0));
                }
                mem.message(field, e);
            }
            m.message(MEMORY, mem);
        }
        if let Some(text) = read(d, "memory.oom_control")? {
            m.message(
                MEMORY_OOM_CONTROL,
                Writer::from_table(&kv(&text), OOM_CONTROL_KEYS),
            );
        }
    }
    if let Some(d) = dir("blkio") {
        m.message(BLKIO, read_blkio(d)?);
    }
    Ok(m)
}

/// CPUUsage: total, kernel, user, per_cpu.
fn read_cpu_usage(dir: &Path) -> io::Result<Option<Writer>> {
    let total = uint(dir, "cpuacct.usage", 0)?;
    let per_cpu = read(dir, "cpuacct.usage_percpu")?;
    let stat = read(dir, "cpuacct.stat")?;
    if total.is_none() && per_cpu.is_none() && stat.is_none() {
        return Ok(None);
    }
    let stat = kv(stat.as_deref().unwrap_or(""));
    let ns = |k: &str| stat.get(k).map_or(0, |t| t.saturating_mul(NS_PER_TICK));
    let per_cpu: Vec<u64> = per_cpu
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(parse_u64)
        .collect();
    let mut u = Writer::default();
    u.uint(cpu_usage::TOTAL, total.unwrap_or(0));
    u.uint(cpu_usage::KERNEL, ns("system"));
    u.uint(cpu_usage::USER, ns("user"));
    u.packed(cpu_usage::PER_CPU, &per_cpu);
    Ok(Some(u))
}

/// BlkIOStat: bytes and operations per device, from the throttle files, which count every
/// I/O whatever the scheduler, else from the CFQ or BFQ scheduler's.
fn read_blkio(dir: &Path) -> io::Result<Writer> {
    const SOURCES: [[&str; 2]; 4] = [
        [
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        ],
        [
            "blkio.throttle.io_service_bytes",
            "blkio.throttle.io_serviced",
        ],
        [
            "blkio.io_service_bytes_recursive",
            "blkio.io_serviced_recursive",
        ],
        [
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.bfq.io_serviced_recursive",
        ],
    ];
    let mut stat = Writer::default();
    for [bytes, ios] in SOURCES {
        let bytes = blkio_entries(read(dir, bytes)?.as_deref().unwrap_or(""));
        let ios = blkio_entries(read(dir, ios)?.as_deref().unwrap_or(""));
        if !bytes.is_empty() || !ios.is_empty() {
            for e in bytes {
                stat.message(blkio_stat::IO_SERVICE_BYTES_RECURSIVE, e);
            }
            for e in ios {
                stat.message(blkio_stat::IO_SERVICED_RECURSIVE, e);
            }
            break;
        }
    }
    Ok(stat)
}

/// BlkIOEntry messages from "8:0 Read 4096" lines (or "8:0 4096" in files without
/// operations); "Total N" and malformed lines are skipped.
fn blkio_entries(text: &str) -> Vec<Writer> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split([' ', ':']).filter(|s| !s.is_empty()).collect();
            let (op, value) = match f.len() {
                3 => ("", f[2]),
                4 => (f[2], f[3]),
                _ => return None,
            };
            let mut e = Writer::default();
            e.string(blkio_entry::OP, op);
            e.uint(blkio_entry::MAJOR, f[0].parse().ok()?);
            e.uint(blkio_entry::MINOR, f[1].parse().ok()?);
            e.uint(blkio_entry::VALUE, parse_u64(value)?);
            Some(e)
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cgroups::files::tests::write;
    use crate::cgroups::{Cgroups, OomCount};
    use containerd_shim_protos::cgroups::metrics as pb;
    use containerd_shim_protos::protobuf::Message;
    use rsrunc_protos::metrics::V1_TYPE_URL;

    const MEMORY_STAT_V1: &str = "\
cache 274665472
rss 284471296
rss_huge 2097152
shmem 0
mapped_file 651264
dirty 28672
writeback 4096
workingset_refault_anon 0
workingset_refault_file 15371
swap 0
swapcached 0
pgpgin 276560
pgpgout 141611
pgfault 277772
pgmajfault 17
inactive_anon 284368896
active_anon 24576
inactive_file 22831104
active_file 251846656
unevictable 8192
hierarchical_memory_limit 536870912
hierarchical_memsw_limit 9223372036854771712
total_cache 274665473
total_rss 284471297
total_rss_huge 2097153
total_shmem 0
total_mapped_file 651265
total_dirty 28673
total_writeback 4097
total_workingset_refault_anon 0
total_workingset_refault_file 15371
total_swap 0
total_swapcached 0
total_pgpgin 276561
total_pgpgout 141612
total_pgfault 277773
total_pgmajfault 18
total_inactive_anon 284368897
total_active_anon 24577
total_inactive_file 22831105
total_active_file 251846657
total_unevictable 8193
";

    /// A v1 tree with pids, cpu,cpuacct, memory, blkio and hugetlb for one container.
    pub(in crate::cgroups) fn tree(root: &Path) -> Cgroups {
        let d = |c: &str| root.join(c).join("docker/abc");
        write(
            &d("pids"),
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        write(
            &d("cpu,cpuacct"),
            &[
                ("cpuacct.usage", "6351834381594\n"),
                ("cpuacct.usage_percpu", "2766560966067 3585281867025 \n"),
                ("cpuacct.stat", "user 369626\nsystem 265565\n"),
                (
                    "cpu.stat",
                    "nr_periods 120\nnr_throttled 7\nthrottled_time 81234567\nnr_bursts 0\nburst_time 0\n",
                ),
            ],
        );
        write(
            &d("memory"),
            &[
                ("memory.stat", MEMORY_STAT_V1),
                ("memory.usage_in_bytes", "614088704\n"),
                ("memory.max_usage_in_bytes", "714088704\n"),
                ("memory.limit_in_bytes", "536870912\n"),
                ("memory.failcnt", "12\n"),
                ("memory.memsw.usage_in_bytes", "614752256\n"),
                ("memory.memsw.max_usage_in_bytes", "714752256\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.failcnt", "0\n"),
                ("memory.kmem.usage_in_bytes", "54411264\n"),
                ("memory.kmem.max_usage_in_bytes", "64411264\n"),
                ("memory.kmem.limit_in_bytes", "9223372036854771712\n"),
                ("memory.kmem.failcnt", "1\n"),
                ("memory.kmem.tcp.usage_in_bytes", "4096\n"),
                ("memory.kmem.tcp.max_usage_in_bytes", "8192\n"),
                ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712\n"),
                ("memory.kmem.tcp.failcnt", "0\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        write(
            &d("blkio"),
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 1048576\n8:0 Write 4096\n8:0 Sync 4096\n8:0 Async 1048576\n\
                     8:0 Discard 0\n8:0 Total 1052672\nTotal 1052672\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 16\n8:0 Write 1\n8:0 Sync 1\n8:0 Async 16\n8:0 Discard 0\n\
                     8:0 Total 17\nTotal 17\n",
                ),
            ],
        );
        write(
            &d("hugetlb"),
            &[
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "6291456\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
                ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.max_usage_in_bytes", "0\n"),
                ("hugetlb.1GB.failcnt", "0\n"),
            ],
        );
        let mut dirs = BTreeMap::new();
        for (key, c) in [
            ("pids", "pids"),
            ("cpu", "cpu,cpuacct"),
            ("cpuacct", "cpu,cpuacct"),
            ("memory", "memory"),
            ("blkio", "blkio"),
            ("hugetlb", "hugetlb"),
        ] {
            dirs.insert(key.to_string(), d(c));
        }
        Cgroups::V1(dirs)
    }

    fn decode_v1(cg: &Cgroups) -> pb::Metrics {
        let any = cg.metrics().unwrap();
        assert_eq!(any.type_url, V1_TYPE_URL);
        pb::Metrics::parse_from_bytes(&any.value).unwrap()
    }

    #[test]
    fn metrics_land_in_their_fields() {
        let root = tempfile::tempdir().unwrap();
        let m = decode_v1(&tree(root.path()));

        assert_eq!((m.pids.current, m.pids.limit), (3, 0));

        let usage = &m.cpu.usage;
        assert_eq!(usage.total, 6351834381594);
        assert_eq!(usage.per_cpu, [2766560966067, 3585281867025]);
        assert_eq!(usage.user, 369626 * 10_000_000);
        assert_eq!(usage.kernel, 265565 * 10_000_000);
        let t = &m.cpu.throttling;
        assert_eq!(
            (t.periods, t.throttled_periods, t.throttled_time),
            (120, 7, 81234567)
        );

        let mem = &m.memory;
        assert_eq!(
            (mem.cache, mem.rss, mem.rss_huge),
            (274665472, 284471296, 2097152)
        );
        assert_eq!(
            (mem.mapped_file, mem.dirty, mem.writeback),
            (651264, 28672, 4096)
        );
        assert_eq!((mem.pg_pg_in, mem.pg_pg_out), (276560, 141611));
        assert_eq!((mem.pg_fault, mem.pg_maj_fault), (277772, 17));
        assert_eq!((mem.inactive_anon, mem.active_anon), (284368896, 24576));
        assert_eq!((mem.inactive_file, mem.active_file), (22831104, 251846656));
        assert_eq!(mem.unevictable, 8192);
        assert_eq!(mem.hierarchical_memory_limit, 536870912);
        assert_eq!(mem.hierarchical_swap_limit, 9223372036854771712);
        assert_eq!((mem.total_cache, mem.total_rss), (274665473, 284471297));
        assert_eq!(mem.total_rss_huge, 2097153);
        assert_eq!(mem.total_mapped_file, 651265);
        assert_eq!((mem.total_dirty, mem.total_writeback), (28673, 4097));
        assert_eq!((mem.total_pg_pg_in, mem.total_pg_pg_out), (276561, 141612));
        assert_eq!((mem.total_pg_fault, mem.total_pg_maj_fault), (277773, 18));
        assert_eq!(mem.total_inactive_anon, 284368897);
        assert_eq!(mem.total_active_anon, 24577);
        assert_eq!(mem.total_inactive_file, 22831105);
        assert_eq!(mem.total_active_file, 251846657);
        assert_eq!(mem.total_unevictable, 8193);
        let e = |e: &pb::MemoryEntry| (e.usage, e.max, e.limit, e.failcnt);
        assert_eq!(e(&mem.usage), (614088704, 714088704, 536870912, 12));
        assert_eq!(e(&mem.swap), (614752256, 714752256, 9223372036854771712, 0));
        assert_eq!(e(&mem.kernel), (54411264, 64411264, 9223372036854771712, 1));
        assert_eq!(e(&mem.kernel_tcp), (4096, 8192, 9223372036854771712, 0));
        assert_eq!(m.memory_oom_control.oom_kill, 2);

        let entries = |v: &[pb::BlkIOEntry]| -> Vec<(u64, u64, String, u64)> {
            v.iter()
                .map(|e| (e.major, e.minor, e.op.clone(), e.value))
                .collect()
        };
        let bytes = entries(&m.blkio.io_service_bytes_recursive);
        assert_eq!(bytes.len(), 6, "{bytes:?}");
        assert_eq!(bytes[0], (8, 0, "Read".to_string(), 1048576));
        assert_eq!(bytes[1], (8, 0, "Write".to_string(), 4096));
        let ios = entries(&m.blkio.io_serviced_recursive);
        assert_eq!(ios[0], (8, 0, "Read".to_string(), 16));
        assert_eq!(ios[5], (8, 0, "Total".to_string(), 17));

        let huge: Vec<_> = m
            .hugetlb
            .iter()
            .map(|h| (h.pagesize.as_str(), h.usage, h.max, h.failcnt))
            .collect();
        assert_eq!(huge, [("1GB", 0, 0, 0), ("2MB", 4194304, 6291456, 1)]);
    }

    #[test]
    fn blkio_falls_back_to_the_scheduler_files() {
        let root = tempfile::tempdir().unwrap();
        let cg = tree(root.path());
        let dir = root.path().join("blkio/docker/abc");
        write(
            &dir,
            &[
                ("blkio.throttle.io_service_bytes_recursive", "Total 0\n"),
                ("blkio.throttle.io_serviced_recursive", "Total 0\n"),
                (
                    "blkio.io_service_bytes_recursive",
                    "8:16 Read 512\nTotal 512\n",
                ),
                (
                    "blkio.io_serviced_recursive",
                    "8:16 Read 1\nnot a line\nTotal 1\n",
                ),
            ],
        );
        let m = decode_v1(&cg);
        let b = &m.blkio.io_service_bytes_recursive;
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].major, b[0].minor, b[0].value), (8, 16, 512));
        assert_eq!(m.blkio.io_serviced_recursive.len(), 1);
    }

    #[test]
    fn missing_files_leave_their_controller_empty() {
        let root = tempfile::tempdir().unwrap();
        let pids = root.path().join("pids");
        let memory = root.path().join("memory");
        write(&pids, &[]);
        write(
            &memory,
            &[("memory.stat", "cache 1\nbad line here\nrss x\n")],
        );
        let cg = Cgroups::V1(BTreeMap::from([
            ("pids".to_string(), pids),
            ("memory".to_string(), memory),
        ]));
        let m = decode_v1(&cg);
        assert!(m.pids.is_none());
        assert!(m.cpu.is_none());
        assert_eq!((m.memory.cache, m.memory.rss), (1, 0));
        assert_eq!(m.memory.usage.usage, 0);
        assert!(m.memory_oom_control.is_none());
        assert_eq!(cg.oom_kills(), OomCount::Gone);
    }

    #[test]
    fn a_missing_cgroup_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let cg = tree(root.path());
        let memory = root.path().join("memory/docker/abc");
        std::fs::remove_dir_all(&memory).unwrap();
        let e = cg.metrics().unwrap_err();
        assert!(e.to_string().contains(memory.to_str().unwrap()), "{e}");
    }
}
