//! containerd's cgroup statistics, `io.containerd.cgroups.v1.Metrics` and
//! `io.containerd.cgroups.v2.Metrics` (containerd/cgroups `stats/v1` and `cgroup2/stats`),
//! written field by field.
//!
//! A shim writes these messages by hand from the field numbers below rather than through
//! generated types: their code and reflection data made the shim's binary (and so every
//! shim's resident memory) about 100 KiB larger. containerd's field names follow the
//! kernel's: most number fields are filled from a "key value" line of a cgroup file, and
//! the tables below say which key fills which field.

use std::collections::HashMap;

/// The type URLs containerd's Go shim gives the two Metrics messages (typeurl's names).
pub const V1_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// Field numbers: (key in the kernel's file, field).
pub type Table = &'static [(&'static str, u32)];

/// A protobuf message written field by field, in the wire format containerd decodes.
/// Zero numbers and empty strings are left out, as proto3 encoders do; a nested message is
/// always written, so an empty one still reads as present.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// A message with the number fields of `table` taken from `values`.
    pub fn from_table(values: &HashMap<&str, u64>, table: Table) -> Writer {
        let mut m = Writer::default();
        m.table(values, table);
        m
    }

    /// A `uint64` field (left out when zero).
    pub fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    /// A `double` field (left out when zero).
    pub fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, 1);
            self.0.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }

    /// A `string` field (left out when empty).
    pub fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// A nested message field, once per call (a repeated field is written by calling this
    /// for each element).
    pub fn message(&mut self, field: u32, m: Writer) {
        self.bytes(field, &m.0);
    }

    /// A repeated number field, packed (proto3's default).
    pub fn packed(&mut self, field: u32, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut p = Writer::default();
        for v in values {
            p.varint(*v);
        }
        self.bytes(field, &p.0);
    }

    /// One number field per (key, field) pair of `table`, the value of `key` in `values`
    /// (zero, so left out, when it is missing).
    pub fn table(&mut self, values: &HashMap<&str, u64>, table: Table) {
        for (k, field) in table {
            self.uint(*field, values.get(k).copied().unwrap_or(0));
        }
    }

    /// The encoded message.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

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

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// `io.containerd.cgroups.v1.Metrics` and its messages.
pub mod v1 {
    use super::Table;

    /// Metrics' fields.
    pub const HUGETLB: u32 = 1;
    pub const PIDS: u32 = 2;
    pub const CPU: u32 = 3;
    pub const MEMORY: u32 = 4;
    pub const BLKIO: u32 = 5;
    pub const MEMORY_OOM_CONTROL: u32 = 9;

    /// HugetlbStat's fields.
    pub mod hugetlb_stat {
        pub const USAGE: u32 = 1;
        pub const MAX: u32 = 2;
        pub const FAILCNT: u32 = 3;
        pub const PAGESIZE: u32 = 4;
    }

    /// PidsStat's fields.
    pub mod pids_stat {
        pub const CURRENT: u32 = 1;
        pub const LIMIT: u32 = 2;
    }

    /// CPUStat's fields.
    pub mod cpu_stat {
        pub const USAGE: u32 = 1;
        pub const THROTTLING: u32 = 2;
    }

    /// CPUUsage's fields.
    pub mod cpu_usage {
        pub const TOTAL: u32 = 1;
        pub const KERNEL: u32 = 2;
        pub const USER: u32 = 3;
        pub const PER_CPU: u32 = 4;
    }

    /// MemoryStat's MemoryEntry fields (its number fields are in [`MEMORY_STAT_KEYS`]).
    pub mod memory_stat {
        pub const USAGE: u32 = 33;
        pub const SWAP: u32 = 34;
        pub const KERNEL: u32 = 35;
        pub const KERNEL_TCP: u32 = 36;
    }

    /// MemoryEntry's fields.
    pub mod memory_entry {
        pub const LIMIT: u32 = 1;
        pub const USAGE: u32 = 2;
        pub const MAX: u32 = 3;
        pub const FAILCNT: u32 = 4;
    }

    /// BlkIOStat's fields.
    pub mod blkio_stat {
        pub const IO_SERVICE_BYTES_RECURSIVE: u32 = 1;
        pub const IO_SERVICED_RECURSIVE: u32 = 2;
    }

    /// BlkIOEntry's fields.
    pub mod blkio_entry {
        pub const OP: u32 = 1;
        pub const MAJOR: u32 = 3;
        pub const MINOR: u32 = 4;
        pub const VALUE: u32 = 5;
    }

    /// Throttle, from cpu.stat.
    pub const THROTTLE_KEYS: Table = &[
        ("nr_periods", 1),
        ("nr_throttled", 2),
        ("throttled_time", 3),
    ];

    /// MemoryStat's number fields, from memory.stat.
    pub const MEMORY_STAT_KEYS: Table = &[
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

    /// MemoryOomControl, from memory.oom_control.
    pub const OOM_CONTROL_KEYS: Table =
        &[("oom_kill_disable", 1), ("under_oom", 2), ("oom_kill", 3)];
}

/// `io.containerd.cgroups.v2.Metrics` and its messages.
pub mod v2 {
    use super::Table;

    /// Metrics' fields.
    pub const PIDS: u32 = 1;
    pub const CPU: u32 = 2;
    pub const MEMORY: u32 = 4;
    pub const RDMA: u32 = 5;
    pub const IO: u32 = 6;
    pub const HUGETLB: u32 = 7;
    pub const MEMORY_EVENTS: u32 = 8;

    /// PidsStat's fields.
    pub mod pids_stat {
        pub const CURRENT: u32 = 1;
        pub const LIMIT: u32 = 2;
    }

    /// CPUStat's fields that are not in [`CPU_STAT_KEYS`].
    pub mod cpu_stat {
        /// PSIStats, from cpu.pressure.
        pub const PSI: u32 = 7;
    }

    /// PSIStats' fields: the "some" and "full" lines of a `*.pressure` file.
    pub mod psi_stats {
        pub const SOME: u32 = 1;
        pub const FULL: u32 = 2;
    }

    /// PSIData's fields (the averages are `double`s).
    pub mod psi_data {
        pub const AVG10: u32 = 1;
        pub const AVG60: u32 = 2;
        pub const AVG300: u32 = 3;
        pub const TOTAL: u32 = 4;
    }

    /// RdmaStat's fields: entries from rdma.current and rdma.max.
    pub mod rdma_stat {
        pub const CURRENT: u32 = 1;
        pub const LIMIT: u32 = 2;
    }

    /// RdmaEntry's fields (the counts are `uint32`s).
    pub mod rdma_entry {
        pub const DEVICE: u32 = 1;
        pub const HCA_HANDLES: u32 = 2;
        pub const HCA_OBJECTS: u32 = 3;
    }

    /// MemoryStat's fields that are not in [`MEMORY_STAT_KEYS`].
    pub mod memory_stat {
        pub const WORKINGSET_REFAULT: u32 = 20;
        pub const WORKINGSET_ACTIVATE: u32 = 21;
        pub const USAGE: u32 = 32;
        pub const USAGE_LIMIT: u32 = 33;
        pub const SWAP_USAGE: u32 = 34;
        pub const SWAP_LIMIT: u32 = 35;
        pub const MAX_USAGE: u32 = 36;
        pub const SWAP_MAX_USAGE: u32 = 37;
        /// PSIStats, from memory.pressure.
        pub const PSI: u32 = 38;
    }

    /// IOStat's fields.
    pub mod io_stat {
        pub const USAGE: u32 = 1;
        /// PSIStats, from io.pressure.
        pub const PSI: u32 = 2;
    }

    /// IOEntry's fields.
    pub mod io_entry {
        pub const MAJOR: u32 = 1;
        pub const MINOR: u32 = 2;
        pub const RBYTES: u32 = 3;
        pub const WBYTES: u32 = 4;
        pub const RIOS: u32 = 5;
        pub const WIOS: u32 = 6;
    }

    /// HugeTlbStat's fields.
    pub mod hugetlb_stat {
        pub const CURRENT: u32 = 1;
        pub const MAX: u32 = 2;
        pub const PAGESIZE: u32 = 3;
        pub const FAILCNT: u32 = 4;
    }

    /// CPUStat, from cpu.stat.
    pub const CPU_STAT_KEYS: Table = &[
        ("usage_usec", 1),
        ("user_usec", 2),
        ("system_usec", 3),
        ("nr_periods", 4),
        ("nr_throttled", 5),
        ("throttled_usec", 6),
        ("nr_bursts", 8),
        ("burst_usec", 9),
    ];

    /// MemoryStat's fields from memory.stat.
    pub const MEMORY_STAT_KEYS: Table = &[
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

    /// MemoryEvents, from memory.events.
    pub const MEMORY_EVENTS_KEYS: Table = &[
        ("low", 1),
        ("high", 2),
        ("max", 3),
        ("oom", 4),
        ("oom_kill", 5),
        ("oom_group_kill", 6),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::CodedInputStream;

    #[test]
    fn zeros_and_empty_strings_are_left_out_messages_are_not() {
        let mut m = Writer::default();
        m.uint(1, 0);
        m.string(2, "");
        m.packed(3, &[]);
        assert!(m.clone().into_bytes().is_empty());
        m.message(4, Writer::default());
        assert_eq!(m.into_bytes(), [4 << 3 | 2, 0]);
    }

    #[test]
    fn fields_read_back() {
        let mut inner = Writer::default();
        inner.string(1, "2MB");
        let mut m = Writer::from_table(
            &HashMap::from([("a", 300), ("b", 0)]),
            &[("a", 1), ("b", 2)],
        );
        m.uint(5, u64::MAX);
        m.packed(6, &[1, 128]);
        m.message(7, inner);
        m.double(8, 0.0);
        m.double(9, 1.5);
        let bytes = m.into_bytes();
        let mut input = CodedInputStream::from_bytes(&bytes);
        assert_eq!(input.read_raw_varint32().unwrap(), 1 << 3);
        assert_eq!(input.read_uint64().unwrap(), 300);
        assert_eq!(input.read_raw_varint32().unwrap(), 5 << 3);
        assert_eq!(input.read_uint64().unwrap(), u64::MAX);
        assert_eq!(input.read_raw_varint32().unwrap(), 6 << 3 | 2);
        assert_eq!(input.read_bytes().unwrap(), [1, 0x80, 1]);
        assert_eq!(input.read_raw_varint32().unwrap(), 7 << 3 | 2);
        assert_eq!(
            input.read_bytes().unwrap(),
            [1 << 3 | 2, 3, b'2', b'M', b'B']
        );
        assert_eq!(input.read_raw_varint32().unwrap(), 9 << 3 | 1);
        assert_eq!(input.read_double().unwrap(), 1.5);
        assert!(input.eof().unwrap());
    }
}
