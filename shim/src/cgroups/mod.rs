//! cgroups, all the shim does with them: finding a container's cgroups (v1, v2 or a
//! hybrid host), putting the shim into ShimCgroup, the statistics of the Stats RPC, and
//! the OOM watcher with the dedupe that makes one kill one TaskOOM.
//!
//! - [`discover`]: where a process's cgroups are, from /proc/PID/cgroup and mountinfo.
//! - [`join()`]: adding a process to a cgroup in every hierarchy.
//! - [`v1`], [`v2`]: the statistics, read as containerd's cgroups library reads them and
//!   written as its Metrics messages (through `rsrunc_protos::metrics`).
//! - [`oom`]: OOM notifications and which of them are news.
//! - [`spec`]: where a container's cgroups are by its spec, with no process of it to ask.
//! - [`teardown`]: killing what is in a container's cgroups and removing them, when the
//!   runtime that should have could not.

mod discover;
mod files;
mod join;
mod oom;
mod spec;
mod teardown;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use rsrunc_protos::metrics::{V1_TYPE_URL, V2_TYPE_URL};

pub use self::join::join;
pub use self::oom::{OomCount, OomKills, OomWatcher, Verdict};

/// Where the unified hierarchy is mounted on a cgroup v2 host (the only place
/// [`Cgroups::of_pid`] takes for v2).
const UNIFIED_MOUNT: &str = "/sys/fs/cgroup";

/// In [`Cgroups::V1`], the key of the directory in the unified hierarchy of a hybrid host
/// (where runc and crun put a container too), as runc keys it.
const HYBRID_UNIFIED: &str = "";

/// Where a process's cgroups are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// Controller name ("memory", "cpu", "cpuacct", "name=systemd", ...) to its absolute
    /// directory; on a hybrid host, `HYBRID_UNIFIED` to the unified one.
    V1(BTreeMap<String, PathBuf>),
    /// The one directory in the unified hierarchy.
    V2(PathBuf),
}

impl Cgroups {
    /// The statistics as containerd's Stats RPC returns them: v1 or v2 Metrics in an Any.
    /// A controller whose files are missing is left empty; a cgroup directory that is gone
    /// is an error naming it.
    pub fn metrics(&self) -> io::Result<Any> {
        let (type_url, value) = match self {
            Cgroups::V1(dirs) => (V1_TYPE_URL, v1::metrics(dirs)?),
            Cgroups::V2(dir) => (V2_TYPE_URL, v2::metrics(dir)?),
        };
        Ok(Any {
            type_url: type_url.to_string(),
            value: value.into_bytes(),
            ..Default::default()
        })
    }

    /// On cgroup v2, enables the controllers the hierarchy offers in every cgroup above the
    /// container's (see [`v2::enable_controllers`]), as containerd's Go shim does once an
    /// init started; nothing to do on v1.
    pub fn enable_controllers(&self) -> io::Result<()> {
        match self {
            Cgroups::V1(_) => Ok(()),
            Cgroups::V2(dir) => v2::enable_controllers(Path::new(UNIFIED_MOUNT), dir),
        }
    }

    /// The memory controller's directory, and whether it is cgroup v2.
    pub fn memory_dir(&self) -> Option<(&Path, bool)> {
        match self {
            Cgroups::V1(dirs) => dirs.get("memory").map(|d| (d.as_path(), false)),
            Cgroups::V2(dir) => Some((dir.as_path(), true)),
        }
    }

    /// How many processes the kernel's OOM killer killed in this cgroup ("oom_kill" in
    /// v1's memory.oom_control, kernel 4.13 and later, or v2's memory.events), and on v2
    /// how often the cgroup ran out of memory ("oom", counted before the killer runs).
    pub fn oom_kills(&self) -> OomCount {
        let text = match self {
            Cgroups::V1(dirs) => match dirs.get("memory") {
                Some(dir) => files::read(dir, "memory.oom_control"),
                None => return OomCount::Gone,
            },
            Cgroups::V2(dir) => files::read(dir, "memory.events"),
        };
        match text {
            Ok(Some(text)) => {
                let kv = files::kv(&text);
                kv.get("oom_kill")
                    .map_or(OomCount::Uncounted, |&kills| OomCount::Counted {
                        kills,
                        ooms: kv.get("oom").copied().unwrap_or(0),
                    })
            }
            Ok(None) | Err(_) => OomCount::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::cgroups::metrics as pb1;
    use containerd_shim_protos::cgroups_v2::metrics as pb2;
    use containerd_shim_protos::protobuf::Message;

    #[test]
    fn oom_kills_on_both_versions() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            v1::tests::tree(&root.path().join("v1")).oom_kills(),
            OomCount::Counted { kills: 2, ooms: 0 }
        );
        assert_eq!(
            v2::tests::tree(&root.path().join("v2")).oom_kills(),
            OomCount::Counted { kills: 1, ooms: 2 }
        );
        // A v1 kernel before 4.13 has no oom_kill line.
        let old = root.path().join("old");
        files::tests::write(
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
    fn metrics_of_this_process() {
        let cg = Cgroups::of_pid(std::process::id() as i32).unwrap();
        let any = cg.metrics().unwrap();
        let usage = match &cg {
            Cgroups::V1(_) => {
                assert_eq!(any.type_url, V1_TYPE_URL);
                let m = pb1::Metrics::parse_from_bytes(&any.value).unwrap();
                m.memory.usage.usage
            }
            Cgroups::V2(_) => {
                assert_eq!(any.type_url, V2_TYPE_URL);
                let m = pb2::Metrics::parse_from_bytes(&any.value).unwrap();
                m.memory.usage
            }
        };
        assert!(usage > 0, "{cg:?}");
    }
}
