//! Emptying a container's cgroups without the runtime, for when the runtime hangs: SIGKILL
//! to every process in them.
//!
//! A directory that holds the shim itself is never the container's own (a hierarchy in
//! which the runtime left the container where the shim is, or the hierarchy's root): it
//! is left alone, and nothing in it is killed.

use std::io;
use std::path::{Path, PathBuf};

use super::{files, Cgroups};

impl Cgroups {
    /// SIGKILL to every process in the cgroup, without the runtime: v2's `cgroup.kill`
    /// where the kernel has it (5.14), else each pid of `cgroup.procs` (on v1, of the
    /// first hierarchy that has the file; a v1 freezer is thawed first, or the kill would
    /// wait for a resume). Returns how many processes were signalled (`cgroup.kill` counts
    /// as one).
    pub fn kill_all(&self) -> io::Result<usize> {
        kill_all(self, &shim_dirs())
    }
}

fn kill_all(cg: &Cgroups, shim: &[PathBuf]) -> io::Result<usize> {
    let own = own_dirs(cg, shim);
    let dir = match cg {
        Cgroups::V2(dir) if own.contains(dir) => {
            // Never created: a kernel before 5.14 has no such file.
            let kill = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.kill"))
                .and_then(|mut f| std::io::Write::write_all(&mut f, b"1"));
            match kill {
                Ok(()) => return Ok(1),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("write {}/cgroup.kill: {e}", dir.display()),
                    ))
                }
            }
            dir.as_path()
        }
        Cgroups::V2(_) => return Ok(0),
        Cgroups::V1(dirs) => {
            if let Some(freezer) = dirs.get("freezer").filter(|d| own.contains(d)) {
                thaw_v1(freezer)?;
            }
            // pids and freezer are where runtimes always put a container; any will do.
            let first = ["pids", "freezer", "memory", "cpu"]
                .iter()
                .filter_map(|c| dirs.get(*c))
                .chain(dirs.values())
                .filter(|d| own.contains(d))
                .find(|d| d.join("cgroup.procs").exists());
            match first {
                Some(d) => d.as_path(),
                None => return Ok(0),
            }
        }
    };
    let procs = files::read(dir, "cgroup.procs")?.unwrap_or_default();
    let mut n = 0;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if crate::sys::kill(pid, libc::SIGKILL).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// A frozen v1 cgroup's processes take a SIGKILL only once thawed.
fn thaw_v1(freezer: &Path) -> io::Result<()> {
    let state = freezer.join("freezer.state");
    match std::fs::write(&state, "THAWED") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("thaw {}: {e}", state.display()),
        )),
    }
}

/// The cgroup directories the shim itself is in, in every hierarchy; none if they cannot
/// be read (then every directory of a container counts as its own).
fn shim_dirs() -> Vec<PathBuf> {
    match Cgroups::of_pid(std::process::id() as i32) {
        Ok(cg) => all_dirs(&cg),
        Err(e) => {
            log::warn!("cannot tell the shim's own cgroups from a container's: {e}");
            Vec::new()
        }
    }
}

/// Every distinct directory of `cg`.
fn all_dirs(cg: &Cgroups) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match cg {
        Cgroups::V1(dirs) => dirs.values().cloned().collect(),
        Cgroups::V2(dir) => vec![dir.clone()],
    };
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The directories of `cg` that are the container's own: those that neither are nor
/// contain one of the shim's (`shim`).
fn own_dirs(cg: &Cgroups, shim: &[PathBuf]) -> Vec<PathBuf> {
    all_dirs(cg)
        .into_iter()
        .filter(|d| !shim.iter().any(|s| s.starts_with(d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn kill_all_reaches_every_process_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut children: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("100")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let procs: String = children.iter().map(|c| format!("{}\n", c.id())).collect();
        std::fs::write(dir.path().join("cgroup.procs"), procs).unwrap();
        // v2 without cgroup.kill (before 5.14), and v1 through its pids hierarchy.
        let v2 = Cgroups::V2(dir.path().to_path_buf());
        assert_eq!(v2.kill_all().unwrap(), 2);
        assert!(
            !dir.path().join("cgroup.kill").exists(),
            "created cgroup.kill"
        );
        for c in &mut children {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(c.wait().unwrap().signal(), Some(libc::SIGKILL));
        }
        let v1 = Cgroups::V1(BTreeMap::from([(
            "pids".to_string(),
            dir.path().to_path_buf(),
        )]));
        std::fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        assert_eq!(v1.kill_all().unwrap(), 0);
    }

    #[test]
    fn the_shims_own_cgroups_are_never_the_containers() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let cg = Cgroups::V1(BTreeMap::from([
            ("pids".to_string(), r.join("pids/ns/c1")),
            ("cpu".to_string(), r.join("cpu,cpuacct/ns/c1")),
            ("cpuacct".to_string(), r.join("cpu,cpuacct/ns/c1")),
            // Left where the shim is, and the hierarchy's root above the shim.
            ("memory".to_string(), r.join("memory/shims")),
            (String::new(), r.join("unified")),
        ]));
        let shim = [r.join("memory/shims"), r.join("unified/shims/s1")];
        assert_eq!(
            own_dirs(&cg, &shim),
            [r.join("cpu,cpuacct/ns/c1"), r.join("pids/ns/c1")]
        );
        // A pid listed only where the shim is is not killed (this test's own pid).
        files::tests::write(
            &r.join("memory/shims"),
            &[("cgroup.procs", &format!("{}\n", std::process::id()))],
        );
        assert_eq!(kill_all(&cg, &shim).unwrap(), 0);
        let v2 = Cgroups::V2(r.join("unified/shims"));
        assert_eq!(kill_all(&v2, &shim).unwrap(), 0);
    }

    #[test]
    fn a_v1_freezer_is_thawed_before_the_kill() {
        let root = tempfile::tempdir().unwrap();
        let freezer = root.path().join("freezer/c1");
        files::tests::write(
            &freezer,
            &[("freezer.state", "FROZEN\n"), ("cgroup.procs", "")],
        );
        let cg = Cgroups::V1(BTreeMap::from([("freezer".to_string(), freezer.clone())]));
        assert_eq!(kill_all(&cg, &[]).unwrap(), 0);
        let state = std::fs::read_to_string(freezer.join("freezer.state")).unwrap();
        assert_eq!(state, "THAWED");
    }
}
