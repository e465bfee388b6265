//! Finding a process's cgroups: which hierarchy holds each controller (cgroup v1, or a
//! hybrid host with v1 controllers beside a unified mount) or the one directory of cgroup
//! v2, from /proc/PID/cgroup and mountinfo.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::Cgroups;
use crate::mountinfo::MountInfo;

impl Cgroups {
    /// From /proc/`pid`/cgroup and /proc/self/mountinfo of the real host; unified when
    /// cgroup2 is mounted at /sys/fs/cgroup.
    pub fn of_pid(pid: i32) -> io::Result<Cgroups> {
        let proc_cgroup = read_proc_cgroup(pid)?;
        let mountinfo = crate::mountinfo::read_self()?;
        Self::parse(&proc_cgroup, &mountinfo, unified_host())
    }

    /// The cgroup at `path` (from a hierarchy's root, the same in every hierarchy) on this
    /// host: where a runtime puts a container whose cgroups it was told by an absolute
    /// path, whether or not a process is left in it. Located as [`Cgroups::of_pid`] locates
    /// the calling process's own, in the hierarchies this process is in.
    pub fn at_path(path: &str) -> io::Result<Cgroups> {
        let own = read_proc_cgroup(std::process::id() as i32)?;
        let mountinfo = crate::mountinfo::read_self()?;
        Self::parse(&moved_to(&own, path), &mountinfo, unified_host())
    }

    /// The cgroups named in `proc_cgroup` (the text of /proc/PID/cgroup), located through
    /// the mounts in `mountinfo`. A hybrid host (v1 controllers and a "0::" line) counts as
    /// v1, as containerd does, with the unified directory beside the controllers' (where
    /// runc and crun put a container too); `unified` says the host has only cgroup v2.
    pub fn parse(proc_cgroup: &str, mountinfo: &str, unified: bool) -> io::Result<Cgroups> {
        let mounts: Vec<MountInfo> = crate::mountinfo::parse(mountinfo).collect();
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
        let v2_line = lines
            .iter()
            .find(|(id, ctrls, _)| *id == "0" && ctrls.is_empty())
            .map(|(_, _, p)| *p);
        // The mount at /sys/fs/cgroup first, then any other.
        let v2_mounts: Vec<&MountInfo> = mounts.iter().filter(|m| m.fs_type == "cgroup2").collect();
        let v2_dir = |path: &str| {
            v2_mounts
                .iter()
                .filter(|m| m.mount_point == Path::new(super::UNIFIED_MOUNT))
                .chain(&v2_mounts)
                .find_map(|m| dir_of(m, path))
        };
        if !unified && !v1_lines.is_empty() {
            let mut dirs = BTreeMap::new();
            for (_, ctrls, path) in v1_lines {
                let wanted: Vec<&str> = ctrls.split(',').collect();
                let found = mounts
                    .iter()
                    .filter(|m| m.fs_type == "cgroup")
                    .find_map(|m| {
                        let opts: Vec<&str> = m.super_options.split(',').collect();
                        if wanted.iter().all(|c| opts.contains(c)) {
                            dir_of(m, path)
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
            if let Some(dir) = v2_line.and_then(v2_dir) {
                dirs.insert(super::HYBRID_UNIFIED.to_string(), dir);
            }
            return Ok(Cgroups::V1(dirs));
        }
        let path = v2_line.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "find cgroup v2 directory: no \"0::\" line for the process",
            )
        })?;
        let dir = v2_dir(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("find cgroup v2 directory: no cgroup2 mount holds {path}"),
            )
        })?;
        Ok(Cgroups::V2(dir))
    }
}

fn read_proc_cgroup(pid: i32) -> io::Result<String> {
    let path = format!("/proc/{pid}/cgroup");
    std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("read {path}: {e}")))
}

/// Whether the host has only cgroup v2, mounted at /sys/fs/cgroup.
fn unified_host() -> bool {
    nix::sys::statfs::statfs(super::UNIFIED_MOUNT)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// `proc_cgroup` (the text of /proc/PID/cgroup) with `path` in place of each line's path:
/// what the file would say of a process in the cgroup at `path` in every hierarchy.
fn moved_to(proc_cgroup: &str, path: &str) -> String {
    proc_cgroup
        .lines()
        .filter_map(|l| l.rsplit_once(':'))
        .map(|(hierarchy, _)| format!("{hierarchy}:{path}\n"))
        .collect()
}

/// Where the cgroup `path` (relative to its hierarchy's root) is under this mount, if
/// the mount `m` shows it.
fn dir_of(m: &MountInfo, path: &str) -> Option<PathBuf> {
    let rel = if m.root == "/" {
        path
    } else {
        let rest = path.strip_prefix(m.root.trim_end_matches('/'))?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    Some(if rel.is_empty() {
        m.mount_point.clone()
    } else {
        m.mount_point.join(rel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // The unified hierarchy beside them.
        assert_eq!(
            dir(super::super::HYBRID_UNIFIED),
            "/sys/fs/cgroup/unified/system.slice/containerd.service"
        );
        assert_eq!(dirs.len(), 10, "{dirs:?}");
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
    fn a_path_is_located_in_every_hierarchy_of_the_process() {
        let moved = moved_to(PROC_CGROUP_HYBRID, "/k8s/pod1/c1");
        assert_eq!(moved.lines().count(), 8, "{moved}");
        assert!(moved.starts_with("12:hugetlb:/k8s/pod1/c1\n"), "{moved}");
        assert!(moved.ends_with("\n0::/k8s/pod1/c1\n"), "{moved}");
        let Cgroups::V1(dirs) = Cgroups::parse(&moved, MOUNTINFO_HYBRID, false).unwrap() else {
            panic!("not v1")
        };
        assert_eq!(dirs["pids"], Path::new("/sys/fs/cgroup/pids/k8s/pod1/c1"));
        assert_eq!(
            dirs[super::super::HYBRID_UNIFIED],
            Path::new("/sys/fs/cgroup/unified/k8s/pod1/c1")
        );
        // Outside /docker, which is all the memory mount shows: no memory directory.
        assert!(!dirs.contains_key("memory"), "{dirs:?}");
        assert_eq!(moved_to("0::/init.scope\n", "/a/b"), "0::/a/b\n");
    }

    #[test]
    fn parse_fails_without_a_matching_mount() {
        let e = Cgroups::parse("0::/a\n", "", true).unwrap_err();
        assert!(e.to_string().contains("/a"), "{e}");
        let e = Cgroups::parse("4:memory:/a\n", "", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(Cgroups::parse("garbage\n\n", MOUNTINFO_HYBRID, false).is_err());
    }
}
