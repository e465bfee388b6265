//! A container's cgroup statistics, as the message containerd's Stats RPC returns.
//!
//! Reads the files containerd's cgroups library reads (cgroup1/ and cgroup2/ `Stat`) and
//! fills the same fields. A controller whose files are missing is left empty; a cgroup
//! directory that is gone is an error. File content is parsed leniently: a line that does
//! not parse is skipped.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::supervise::OomCount;

/// The type URLs containerd's Go shim gives the two Metrics messages (typeurl's names).
pub const V1_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// cpuacct.stat counts in USER_HZ ticks, 100 a second on every Linux (as containerd
/// hard-codes it).
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

/// Where a process's cgroups are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// Controller name ("memory", "cpu", "cpuacct", "name=systemd", ...) to its absolute
    /// directory.
    V1(BTreeMap<String, PathBuf>),
    /// The one directory in the unified hierarchy.
    V2(PathBuf),
}

impl Cgroups {
    /// From /proc/`pid`/cgroup and /proc/self/mountinfo of the real host; unified when
    /// cgroup2 is mounted at /sys/fs/cgroup.
    pub fn of_pid(pid: i32) -> io::Result<Cgroups> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| io::Error::new(e.kind(), format!("read {path}: {e}")))
        };
        let proc_cgroup = read(&format!("/proc/{pid}/cgroup"))?;
        let mountinfo = read("/proc/self/mountinfo")?;
        let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        Self::parse(&proc_cgroup, &mountinfo, unified)
    }

    /// The cgroups named in `proc_cgroup` (the text of /proc/PID/cgroup), located through
    /// the mounts in `mountinfo`. A hybrid host (v1 controllers and a "0::" line) counts as
    /// v1, as containerd does; `unified` says the host has only cgroup v2.
    pub fn parse(proc_cgroup: &str, mountinfo: &str, unified: bool) -> io::Result<Cgroups> {
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        // (hierarchy id, controllers, path) per line, e.g. ("4", "memory", "/docker/abc").
        let lines: Vec<(&str, &str, &str)> = proc_cgroup
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                Some((f.next()?, f.next()?, f.next()?))
            })
            .collect();
        let v1_lines: Vec<_> = lines
            .iter()
            .filter(|(id, ctrls, _)| *id != "0" && !ctrls.is_empty())
            .collect();
        if !unified && !v1_lines.is_empty() {
            let mut dirs = BTreeMap::new();
            for (_, ctrls, path) in v1_lines {
                let wanted: Vec<&str> = ctrls.split(',').collect();
                let found = mounts
                    .iter()
                    .filter(|m| m.fstype == "cgroup")
                    .find_map(|m| {
                        let opts: Vec<&str> = m.super_options.split(',').collect();
                        if wanted.iter().all(|c| opts.contains(c)) {
                            m.dir_of(path)
                        } else {
                            None
                        }
                    });
                if let Some(dir) = found {
                    for c in &wanted {
                        dirs.insert(c.to_string(), dir.clone());
                    }
                }
            }
            if dirs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "find cgroup v1 directories: no cgroup mount holds the process's controllers",
                ));
            }
            return Ok(Cgroups::V1(dirs));
        }
        let path = lines
            .iter()
            .find(|(id, ctrls, _)| *id == "0" && ctrls.is_empty())
            .map(|(_, _, p)| *p)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "find cgroup v2 directory: no \"0::\" line for the process",
                )
            })?;
        // The mount at /sys/fs/cgroup first, then any other.
        let v2_mounts: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
        let dir = v2_mounts
            .iter()
            .filter(|m| m.point == Path::new("/sys/fs/cgroup"))
            .chain(&v2_mounts)
            .find_map(|m| m.dir_of(path))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("find cgroup v2 directory: no cgroup2 mount holds {path}"),
                )
            })?;
        Ok(Cgroups::V2(dir))
    }

    /// The statistics as containerd's Stats RPC returns them: v1 or v2 Metrics in an Any.
    pub fn metrics(&self) -> io::Result<Any> {
        let (type_url, value) = match self {
            Cgroups::V1(dirs) => (V1_TYPE_URL, v1_metrics(dirs)?),
            Cgroups::V2(dir) => (V2_TYPE_URL, v2_metrics(dir)?),
        };
        Ok(Any {
            type_url: type_url.to_string(),
            value: value.0,
            ..Default::default()
        })
    }

    /// The memory controller's directory, and whether it is cgroup v2.
    pub fn memory_dir(&self) -> Option<(&Path, bool)> {
        match self {
            Cgroups::V1(dirs) => dirs.get("memory").map(|d| (d.as_path(), false)),
            Cgroups::V2(dir) => Some((dir.as_path(), true)),
        }
    }

    /// How many processes the kernel's OOM killer killed in this cgroup: "oom_kill" in
    /// v1's memory.oom_control (kernel 4.13 and later) or v2's memory.events.
    pub fn oom_kills(&self) -> OomCount {
        let text = match self {
            Cgroups::V1(dirs) => match dirs.get("memory") {
                Some(dir) => read(dir, "memory.oom_control"),
                None => return OomCount::Gone,
            },
            Cgroups::V2(dir) => read(dir, "memory.events"),
        };
        match text {
            Ok(Some(text)) => kv(&text)
                .get("oom_kill")
                .map_or(OomCount::Uncounted, |n| OomCount::Kills(*n)),
            Ok(None) | Err(_) => OomCount::Gone,
        }
    }
}

/// A line of /proc/self/mountinfo, the fields we need.
struct Mount<'a> {
    /// The directory of the filesystem that is mounted (for cgroups, a cgroup path).
    root: &'a str,
    point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> Mount<'a> {
    /// "36 25 0:32 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory"; None for a
    /// malformed line.
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        let (before, after) = line.split_once(" - ")?;
        let mut before = before.split(' ');
        let root = before.nth(3)?;
        let point = PathBuf::from(crate::mounts::unescape_mountinfo(before.next()?));
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let super_options = after.nth(1)?;
        Some(Mount {
            root,
            point,
            fstype,
            super_options,
        })
    }

    /// Where the cgroup `path` (relative to its hierarchy's root) is under this mount, if
    /// the mount shows it.
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let rel = if self.root == "/" {
            path
        } else {
            let rest = path.strip_prefix(self.root.trim_end_matches('/'))?;
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            rest
        };
        let rel = rel.trim_start_matches('/');
        Some(if rel.is_empty() {
            self.point.clone()
        } else {
            self.point.join(rel)
        })
    }
}

/// A protobuf message written field by field, in the wire format containerd decodes.
/// Zero numbers and empty strings are left out, as proto3 encoders do; a nested message is
/// always written, so an empty one still reads as present.
///
/// The shim writes these two messages by hand from the tables below rather than through
/// the generated types: their code and reflection data made the binary (and so every
/// shim's resident memory) about 100 KiB larger. The tests decode what this writes with
/// the generated types.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn msg(&mut self, field: u32, m: Pb) {
        self.bytes(field, &m.0);
    }

    /// A repeated number field, packed (proto3's default).
    fn packed(&mut self, field: u32, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut p = Pb::default();
        for v in values {
            p.varint(*v);
        }
        self.bytes(field, &p.0);
    }

    /// One number field per (file key, field number) pair of `table`, from "key value"
    /// text.
    fn table(&mut self, values: &HashMap<&str, u64>, table: &[(&str, u32)]) {
        for (k, field) in table {
            self.uint(*field, values.get(k).copied().unwrap_or(0));
        }
    }

    fn from_table(values: &HashMap<&str, u64>, table: &[(&str, u32)]) -> Pb {
        let mut m = Pb::default();
        m.table(values, table);
        m
    }
}

// Field numbers of io.containerd.cgroups.v1.Metrics (containerd/cgroups stats/v1).
mod v1f {
    pub const HUGETLB: u32 = 1;
    pub const PIDS: u32 = 2;
    pub const CPU: u32 = 3;
    pub const MEMORY: u32 = 4;
    pub const BLKIO: u32 = 5;
    pub const MEMORY_OOM_CONTROL: u32 = 9;
}

/// memory.stat keys and MemoryStat field numbers (v1).
const V1_MEMORY_STAT: &[(&str, u32)] = &[
    ("cache", 1),
    ("rss", 2),
    ("rss_huge", 3),
    ("mapped_file", 4),
    ("dirty", 5),
    ("writeback", 6),
    ("pgpgin", 7),
    ("pgpgout", 8),
    ("pgfault", 9),
    ("pgmajfault", 10),
    ("inactive_anon", 11),
    ("active_anon", 12),
    ("inactive_file", 13),
    ("active_file", 14),
    ("unevictable", 15),
    ("hierarchical_memory_limit", 16),
    ("hierarchical_memsw_limit", 17),
    ("total_cache", 18),
    ("total_rss", 19),
    ("total_rss_huge", 20),
    ("total_mapped_file", 21),
    ("total_dirty", 22),
    ("total_writeback", 23),
    ("total_pgpgin", 24),
    ("total_pgpgout", 25),
    ("total_pgfault", 26),
    ("total_pgmajfault", 27),
    ("total_inactive_anon", 28),
    ("total_active_anon", 29),
    ("total_inactive_file", 30),
    ("total_active_file", 31),
    ("total_unevictable", 32),
];
/// MemoryStat's usage, swap, kernel and kernel_tcp entries: field and file prefix.
const V1_MEMORY_ENTRIES: [(u32, &str); 4] = [
    (33, "memory."),
    (34, "memory.memsw."),
    (35, "memory.kmem."),
    (36, "memory.kmem.tcp."),
];
/// MemoryEntry: file suffix and field.
const V1_MEMORY_ENTRY: [(&str, u32); 4] = [
    ("limit_in_bytes", 1),
    ("usage_in_bytes", 2),
    ("max_usage_in_bytes", 3),
    ("failcnt", 4),
];
const V1_OOM_CONTROL: &[(&str, u32)] =
    &[("oom_kill_disable", 1), ("under_oom", 2), ("oom_kill", 3)];
const V1_THROTTLE: &[(&str, u32)] = &[
    ("nr_periods", 1),
    ("nr_throttled", 2),
    ("throttled_time", 3),
];

fn v1_metrics(dirs: &BTreeMap<String, PathBuf>) -> io::Result<Pb> {
    let dir = |c: &str| dirs.get(c).map(PathBuf::as_path);
    for c in ["pids", "cpu", "cpuacct", "memory", "blkio", "hugetlb"] {
        if let Some(d) = dir(c) {
            must_exist(d)?;
        }
    }
    let mut m = Pb::default();
    if let Some(d) = dir("hugetlb") {
        for size in hugepage_sizes(d, ".usage_in_bytes")? {
            let f =
                |name: &str| uint(d, &format!("hugetlb.{size}.{name}"), 0).map(|v| v.unwrap_or(0));
            let mut h = Pb::default();
            h.uint(1, f("usage_in_bytes")?);
            h.uint(2, f("max_usage_in_bytes")?);
            h.uint(3, f("failcnt")?);
            h.str(4, &size);
            m.msg(v1f::HUGETLB, h);
        }
    }
    if let Some(current) = dir("pids")
        .map(|d| uint(d, "pids.current", 0))
        .transpose()?
        .flatten()
    {
        let mut p = Pb::default();
        p.uint(1, current);
        p.uint(
            2,
            dir("pids")
                .map(|d| uint(d, "pids.max", 0))
                .transpose()?
                .flatten()
                .unwrap_or(0),
        );
        m.msg(v1f::PIDS, p);
    }
    let usage = dir("cpuacct").map(v1_cpu_usage).transpose()?.flatten();
    let throttling = dir("cpu")
        .map(|d| read(d, "cpu.stat"))
        .transpose()?
        .flatten()
        .map(|t| Pb::from_table(&kv(&t), V1_THROTTLE));
    if usage.is_some() || throttling.is_some() {
        let mut cpu = Pb::default();
        if let Some(u) = usage {
            cpu.msg(1, u);
        }
        if let Some(t) = throttling {
            cpu.msg(2, t);
        }
        m.msg(v1f::CPU, cpu);
    }
    if let Some(d) = dir("memory") {
        if let Some(text) = read(d, "memory.stat")? {
            let mut mem = Pb::from_table(&kv(&text), V1_MEMORY_STAT);
            // Every entry is written, zero when its files are missing, as containerd
            // does: Docker reads memory.usage without checking it is there.
            for (field, prefix) in V1_MEMORY_ENTRIES {
                let mut e = Pb::default();
                for (suffix, f) in V1_MEMORY_ENTRY {
                    e.uint(f, uint(d, &format!("{prefix}{suffix}"), 0)?.unwrap_or(0));
                }
                mem.msg(field, e);
            }
            m.msg(v1f::MEMORY, mem);
        }
        if let Some(text) = read(d, "memory.oom_control")? {
            m.msg(
                v1f::MEMORY_OOM_CONTROL,
                Pb::from_table(&kv(&text), V1_OOM_CONTROL),
            );
        }
    }
    if let Some(d) = dir("blkio") {
        m.msg(v1f::BLKIO, v1_blkio(d)?);
    }
    Ok(m)
}

/// CPUUsage: total, kernel, user, per_cpu.
fn v1_cpu_usage(dir: &Path) -> io::Result<Option<Pb>> {
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
    let mut u = Pb::default();
    u.uint(1, total.unwrap_or(0));
    u.uint(2, ns("system"));
    u.uint(3, ns("user"));
    u.packed(4, &per_cpu);
    Ok(Some(u))
}

/// BlkIOStat: bytes and operations per device, from the throttle files, which count every
/// I/O whatever the scheduler, else from the CFQ or BFQ scheduler's.
fn v1_blkio(dir: &Path) -> io::Result<Pb> {
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
    let mut stat = Pb::default();
    for [bytes, ios] in SOURCES {
        let bytes = blkio_entries(read(dir, bytes)?.as_deref().unwrap_or(""));
        let ios = blkio_entries(read(dir, ios)?.as_deref().unwrap_or(""));
        if !bytes.is_empty() || !ios.is_empty() {
            // io_service_bytes_recursive = 1, io_serviced_recursive = 2.
            for e in bytes {
                stat.msg(1, e);
            }
            for e in ios {
                stat.msg(2, e);
            }
            break;
        }
    }
    Ok(stat)
}

/// BlkIOEntry messages from "8:0 Read 4096" lines (or "8:0 4096" in files without
/// operations); "Total N" and malformed lines are skipped.
fn blkio_entries(text: &str) -> Vec<Pb> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split([' ', ':']).filter(|s| !s.is_empty()).collect();
            let (op, value) = match f.len() {
                3 => ("", f[2]),
                4 => (f[2], f[3]),
                _ => return None,
            };
            let mut e = Pb::default();
            e.str(1, op);
            e.uint(3, f[0].parse().ok()?);
            e.uint(4, f[1].parse().ok()?);
            e.uint(5, parse_u64(value)?);
            Some(e)
        })
        .collect()
}

// Field numbers of io.containerd.cgroups.v2.Metrics (containerd/cgroups cgroup2/stats).
mod v2f {
    pub const PIDS: u32 = 1;
    pub const CPU: u32 = 2;
    pub const MEMORY: u32 = 4;
    pub const IO: u32 = 6;
    pub const HUGETLB: u32 = 7;
    pub const MEMORY_EVENTS: u32 = 8;
}

const V2_CPU_STAT: &[(&str, u32)] = &[
    ("usage_usec", 1),
    ("user_usec", 2),
    ("system_usec", 3),
    ("nr_periods", 4),
    ("nr_throttled", 5),
    ("throttled_usec", 6),
    ("nr_bursts", 8),
    ("burst_usec", 9),
];
const V2_MEMORY_STAT: &[(&str, u32)] = &[
    ("anon", 1),
    ("file", 2),
    ("kernel_stack", 3),
    ("slab", 4),
    ("sock", 5),
    ("shmem", 6),
    ("file_mapped", 7),
    ("file_dirty", 8),
    ("file_writeback", 9),
    ("anon_thp", 10),
    ("inactive_anon", 11),
    ("active_anon", 12),
    ("inactive_file", 13),
    ("active_file", 14),
    ("unevictable", 15),
    ("slab_reclaimable", 16),
    ("slab_unreclaimable", 17),
    ("pgfault", 18),
    ("pgmajfault", 19),
    ("workingset_nodereclaim", 22),
    ("pgrefill", 23),
    ("pgscan", 24),
    ("pgsteal", 25),
    ("pgactivate", 26),
    ("pgdeactivate", 27),
    ("pglazyfree", 28),
    ("pglazyfreed", 29),
    ("thp_fault_alloc", 30),
    ("thp_collapse_alloc", 31),
];
/// MemoryStat fields read from files of their own ("max" reads as u64::MAX).
const V2_MEMORY_FILES: [(&str, u32); 6] = [
    ("memory.current", 32),
    ("memory.max", 33),
    ("memory.swap.current", 34),
    ("memory.swap.max", 35),
    ("memory.peak", 36),
    ("memory.swap.peak", 37),
];
const V2_MEMORY_EVENTS: &[(&str, u32)] = &[
    ("low", 1),
    ("high", 2),
    ("max", 3),
    ("oom", 4),
    ("oom_kill", 5),
    ("oom_group_kill", 6),
];

fn v2_metrics(dir: &Path) -> io::Result<Pb> {
    must_exist(dir)?;
    let mut m = Pb::default();
    if let Some(current) = uint(dir, "pids.current", u64::MAX)? {
        let mut p = Pb::default();
        p.uint(1, current);
        p.uint(2, uint(dir, "pids.max", u64::MAX)?.unwrap_or(0));
        m.msg(v2f::PIDS, p);
    }
    if let Some(text) = read(dir, "cpu.stat")? {
        m.msg(v2f::CPU, Pb::from_table(&kv(&text), V2_CPU_STAT));
    }
    if let Some(text) = read(dir, "memory.stat")? {
        let s = kv(&text);
        let mut mem = Pb::from_table(&s, V2_MEMORY_STAT);
        // Since Linux 5.9 the workingset counters are split into _anon and _file.
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        for (key, field) in [("workingset_refault", 20), ("workingset_activate", 21)] {
            let v = s.get(key).copied().unwrap_or_else(|| {
                g(&format!("{key}_anon")).saturating_add(g(&format!("{key}_file")))
            });
            mem.uint(field, v);
        }
        for (file, field) in V2_MEMORY_FILES {
            mem.uint(field, uint(dir, file, u64::MAX)?.unwrap_or(0));
        }
        m.msg(v2f::MEMORY, mem);
    }
    if let Some(text) = read(dir, "io.stat")? {
        let mut io = Pb::default();
        for e in io_entries(&text) {
            io.msg(1, e);
        }
        m.msg(v2f::IO, io);
    }
    for size in hugepage_sizes(dir, ".current")? {
        let f = |name: &str| uint(dir, &format!("hugetlb.{size}.{name}"), u64::MAX);
        let events = read(dir, &format!("hugetlb.{size}.events"))?;
        let mut h = Pb::default();
        h.uint(1, f("current")?.unwrap_or(0));
        h.uint(2, f("max")?.unwrap_or(0));
        h.str(3, &size);
        h.uint(
            4,
            events.map_or(0, |t| kv(&t).get("max").copied().unwrap_or(0)),
        );
        m.msg(v2f::HUGETLB, h);
    }
    if let Some(text) = read(dir, "memory.events")? {
        m.msg(
            v2f::MEMORY_EVENTS,
            Pb::from_table(&kv(&text), V2_MEMORY_EVENTS),
        );
    }
    Ok(m)
}

/// IOEntry messages from "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0" lines.
fn io_entries(text: &str) -> Vec<Pb> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            let mut e = Pb::default();
            e.uint(1, major.parse().ok()?);
            e.uint(2, minor.parse().ok()?);
            for (k, v) in f.filter_map(|kv| kv.split_once('=')) {
                let Some(v) = parse_u64(v) else { continue };
                match k {
                    "rbytes" => e.uint(3, v),
                    "wbytes" => e.uint(4, v),
                    "rios" => e.uint(5, v),
                    "wios" => e.uint(6, v),
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// The page sizes ("2MB", "1GB") of the `hugetlb.<size><suffix>` files in `dir`, sorted.
fn hugepage_sizes(dir: &Path, suffix: &str) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("list {}: {e}", dir.display()),
            ))
        }
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            // "hugetlb.2MB.rsvd.usage_in_bytes" counts reservations, not usage.
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

/// An error naming `dir` when the cgroup is gone (typically: the container exited).
fn must_exist(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("read cgroup {}: no such directory", dir.display()),
    ))
}

/// The content of `dir`/`name`, None when the file does not exist.
fn read(dir: &Path, name: &str) -> io::Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("read {}: {e}", path.display()),
        )),
    }
}

/// A file holding one number, or "max" (read as `max`). None when the file does not exist
/// or does not hold a number.
fn uint(dir: &Path, name: &str, max: u64) -> io::Result<Option<u64>> {
    Ok(read(dir, name)?.and_then(|s| match s.trim() {
        "max" => Some(max),
        n => parse_u64(n),
    }))
}

/// "key value" lines; lines of another shape are skipped.
fn kv(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (k, v) = (f.next()?, f.next()?);
            f.next().is_none().then_some((k, parse_u64(v)?))
        })
        .collect()
}

/// A decimal number; a negative one (some v1 files say -1 for "none") reads as 0.
fn parse_u64(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| {
        let digits = s.strip_prefix('-')?;
        (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then_some(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::cgroups::metrics as v1;
    use containerd_shim_protos::cgroups_v2::metrics as v2;
    use containerd_shim_protos::protobuf::Message;

    /// From a cgroup v1 hybrid host (Linux 6.x), a container in "/docker/abc", with the
    /// memory hierarchy bind-mounted from a parent's cgroup namespace.
    const MOUNTINFO_HYBRID: &str = "\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
36 31 0:33 /docker /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
38 31 0:35 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,hugetlb
41 28 0:38 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
";

    const PROC_CGROUP_HYBRID: &str = "\
12:hugetlb:/docker/abc
9:net_cls,net_prio:/docker/abc
8:blkio:/docker/abc
7:pids:/docker/abc
5:memory:/docker/abc
3:cpu,cpuacct:/docker/abc
1:name=systemd:/docker/abc
0::/system.slice/containerd.service
";

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

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    /// A v1 tree with pids, cpu,cpuacct, memory, blkio and hugetlb for one container.
    fn v1_tree(root: &Path) -> Cgroups {
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

    fn v2_tree(dir: &Path) -> Cgroups {
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
            ],
        );
        Cgroups::V2(dir.to_path_buf())
    }

    fn decode_v1(cg: &Cgroups) -> v1::Metrics {
        let any = cg.metrics().unwrap();
        assert_eq!(any.type_url, V1_TYPE_URL);
        v1::Metrics::parse_from_bytes(&any.value).unwrap()
    }

    fn decode_v2(cg: &Cgroups) -> v2::Metrics {
        let any = cg.metrics().unwrap();
        assert_eq!(any.type_url, V2_TYPE_URL);
        v2::Metrics::parse_from_bytes(&any.value).unwrap()
    }

    #[test]
    fn parses_a_hybrid_host_as_v1() {
        let cg = Cgroups::parse(PROC_CGROUP_HYBRID, MOUNTINFO_HYBRID, false).unwrap();
        let Cgroups::V1(dirs) = cg else {
            panic!("not v1: {cg:?}")
        };
        let dir = |c: &str| dirs.get(c).unwrap().to_str().unwrap();
        assert_eq!(dir("cpu"), "/sys/fs/cgroup/cpu,cpuacct/docker/abc");
        assert_eq!(dir("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct/docker/abc");
        // The memory mount shows the hierarchy from /docker down.
        assert_eq!(dir("memory"), "/sys/fs/cgroup/memory/abc");
        assert_eq!(dir("pids"), "/sys/fs/cgroup/pids/docker/abc");
        assert_eq!(dir("blkio"), "/sys/fs/cgroup/blkio/docker/abc");
        assert_eq!(dir("hugetlb"), "/sys/fs/cgroup/hugetlb/docker/abc");
        assert_eq!(
            dir("net_prio"),
            "/sys/fs/cgroup/net_cls,net_prio/docker/abc"
        );
        assert_eq!(dir("name=systemd"), "/sys/fs/cgroup/systemd/docker/abc");
        assert_eq!(dirs.len(), 9, "{dirs:?}");
    }

    #[test]
    fn parses_a_unified_host_as_v2() {
        let mountinfo = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let cg = Cgroups::parse("0::/system.slice/docker-abc.scope\n", mountinfo, true).unwrap();
        assert_eq!(
            cg,
            Cgroups::V2("/sys/fs/cgroup/system.slice/docker-abc.scope".into())
        );
        // In a cgroup namespace the mount's root is the namespace's root.
        let nested = "40 30 0:24 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let cg = Cgroups::parse("0::/kubepods/pod1/c1\n", nested, true).unwrap();
        assert_eq!(cg, Cgroups::V2("/sys/fs/cgroup/pod1/c1".into()));
        let cg = Cgroups::parse("0::/\n", mountinfo, true).unwrap();
        assert_eq!(cg, Cgroups::V2("/sys/fs/cgroup".into()));
    }

    #[test]
    fn parse_fails_without_a_matching_mount() {
        let e = Cgroups::parse("0::/a\n", "", true).unwrap_err();
        assert!(e.to_string().contains("/a"), "{e}");
        let e = Cgroups::parse("4:memory:/a\n", "", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(Cgroups::parse("garbage\n\n", MOUNTINFO_HYBRID, false).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        let m = Mount::parse(MOUNTINFO_HYBRID.lines().last().unwrap()).unwrap();
        assert_eq!(m.point, Path::new("/mnt/with space"));
        assert!(Mount::parse("1 2 3").is_none());
    }

    #[test]
    fn v1_metrics_land_in_their_fields() {
        let root = tempfile::tempdir().unwrap();
        let m = decode_v1(&v1_tree(root.path()));

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
        let e = |e: &v1::MemoryEntry| (e.usage, e.max, e.limit, e.failcnt);
        assert_eq!(e(&mem.usage), (614088704, 714088704, 536870912, 12));
        assert_eq!(e(&mem.swap), (614752256, 714752256, 9223372036854771712, 0));
        assert_eq!(e(&mem.kernel), (54411264, 64411264, 9223372036854771712, 1));
        assert_eq!(e(&mem.kernel_tcp), (4096, 8192, 9223372036854771712, 0));
        assert_eq!(m.memory_oom_control.oom_kill, 2);

        let entries = |v: &[v1::BlkIOEntry]| -> Vec<(u64, u64, String, u64)> {
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
    fn v1_blkio_falls_back_to_the_scheduler_files() {
        let root = tempfile::tempdir().unwrap();
        let cg = v1_tree(root.path());
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
    fn v1_missing_files_leave_their_controller_empty() {
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
    fn v2_metrics_land_in_their_fields() {
        let root = tempfile::tempdir().unwrap();
        let m = decode_v2(&v2_tree(&root.path().join("c1")));

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
    fn v2_missing_files_leave_their_controller_empty() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[("cgroup.controllers", "\n"), ("cpu.stat", "usage_usec 7\n")],
        );
        let m = decode_v2(&Cgroups::V2(root.path().to_path_buf()));
        assert_eq!(m.cpu.usage_usec, 7);
        assert!(m.pids.is_none() && m.memory.is_none() && m.memory_events.is_none());
        assert!(m.io.is_none());
        assert!(m.hugetlb.is_empty());
    }

    #[test]
    fn a_missing_cgroup_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let gone = root.path().join("gone");
        let e = Cgroups::V2(gone.clone()).metrics().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains(gone.to_str().unwrap()), "{e}");

        let cg = v1_tree(root.path());
        let memory = root.path().join("memory/docker/abc");
        std::fs::remove_dir_all(&memory).unwrap();
        let e = cg.metrics().unwrap_err();
        assert!(e.to_string().contains(memory.to_str().unwrap()), "{e}");
    }

    #[test]
    fn oom_kills_on_both_versions() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            v1_tree(&root.path().join("v1")).oom_kills(),
            OomCount::Kills(2)
        );
        assert_eq!(
            v2_tree(&root.path().join("v2")).oom_kills(),
            OomCount::Kills(1)
        );
        // A v1 kernel before 4.13 has no oom_kill line.
        let old = root.path().join("old");
        write(
            &old,
            &[("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")],
        );
        let cg = Cgroups::V1(BTreeMap::from([("memory".to_string(), old)]));
        assert_eq!(cg.oom_kills(), OomCount::Uncounted);
        assert_eq!(
            Cgroups::V2(root.path().join("gone")).oom_kills(),
            OomCount::Gone
        );
    }

    #[test]
    fn numbers_parse_leniently() {
        assert_eq!(parse_u64("-1"), Some(0));
        assert_eq!(parse_u64("-"), None);
        assert_eq!(parse_u64("12a"), None);
        let m = kv("a 1\nb -1\nc\nd 1 2\ne x\n");
        assert_eq!(m, HashMap::from([("a", 1), ("b", 0)]));
    }

    #[test]
    fn metrics_of_this_process() {
        let cg = Cgroups::of_pid(std::process::id() as i32).unwrap();
        let any = cg.metrics().unwrap();
        let usage = match &cg {
            Cgroups::V1(_) => {
                assert_eq!(any.type_url, V1_TYPE_URL);
                let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
                m.memory.usage.usage
            }
            Cgroups::V2(_) => {
                assert_eq!(any.type_url, V2_TYPE_URL);
                let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
                m.memory.usage
            }
        };
        assert!(usage > 0, "{cg:?}");
    }
}
