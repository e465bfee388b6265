//! Emptying and removing a container's cgroups without the runtime, for when the runtime
//! hangs: SIGKILL to every process in them, then each directory removed with the cgroups
//! below it, deepest first, once the kernel has let go of the killed processes.
//!
//! A directory that holds the shim itself is never the container's own (a hierarchy in
//! which the runtime left the container where the shim is, or the hierarchy's root): it
//! is left alone, and nothing in it is killed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{files, Cgroups};

/// The longest pause between two tries at removing the cgroups.
const RETRY_MAX: Duration = Duration::from_millis(100);

impl Cgroups {
    /// SIGKILL to every process in the cgroup, without the runtime: v2's `cgroup.kill`
    /// where the kernel has it (5.14), else each pid of `cgroup.procs` (on v1, of the
    /// first hierarchy that has the file; a v1 freezer is thawed first, or the kill would
    /// wait for a resume). Returns how many processes were signalled (`cgroup.kill` counts
    /// as one).
    pub fn kill_all(&self) -> io::Result<usize> {
        kill_all(self, &shim_dirs())
    }

    /// Removes the container's cgroup directories (v1: one per hierarchy, with the
    /// unified one of a hybrid host; v2: its one) and every cgroup below them. Processes
    /// just killed may keep a cgroup busy for a moment: tries again for up to `within`.
    /// Returns the directories removed (those already gone are not); the error names
    /// each one left, why, and how many processes it still holds.
    pub fn remove(&self, within: Duration) -> io::Result<Vec<PathBuf>> {
        remove_dirs(&own_dirs(self, &shim_dirs()), within)
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
pub(super) fn all_dirs(cg: &Cgroups) -> Vec<PathBuf> {
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

/// Removes each of `dirs` with its subtree, trying again until `within` has passed while
/// the kernel says one is busy.
fn remove_dirs(dirs: &[PathBuf], within: Duration) -> io::Result<Vec<PathBuf>> {
    let present: Vec<PathBuf> = dirs.iter().filter(|d| d.is_dir()).cloned().collect();
    let until = Instant::now() + within;
    let mut pause = Duration::from_millis(5);
    loop {
        let left: Vec<(PathBuf, io::Error)> = present
            .iter()
            .filter_map(|d| remove_tree(d).err())
            .collect();
        let now = Instant::now();
        if left.is_empty() {
            return Ok(present);
        }
        if now >= until {
            let kind = left[0].1.kind();
            let what: Vec<String> = left
                .iter()
                .map(|(d, e)| format!("{}: {e}{}", d.display(), holds(d)))
                .collect();
            return Err(io::Error::new(
                kind,
                format!("remove cgroup {}", what.join("; ")),
            ));
        }
        std::thread::sleep(pause.min(until - now));
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// `dir`, after every directory below it (a cgroup with children cannot be removed); one
/// already gone is fine. Symlinks are not followed. A failure names the directory that
/// could not be read or removed.
fn remove_tree(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((dir.to_path_buf(), e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err((dir.to_path_buf(), e)),
        _ => Ok(()),
    }
}

/// " (N processes in it)" when the cgroup at `dir` still lists processes.
fn holds(dir: &Path) -> String {
    let n = files::read(dir, "cgroup.procs")
        .ok()
        .flatten()
        .map_or(0, |p| p.lines().filter(|l| !l.trim().is_empty()).count());
    match n {
        0 => String::new(),
        n => format!(" ({n} process(es) still in it)"),
    }
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

    #[test]
    fn remove_takes_each_tree_deepest_first() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["pids/ns/c1/sub/leaf", "cpu/ns/c1", "unified/ns/c1/init"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let cg = Cgroups::V1(BTreeMap::from([
            ("pids".to_string(), r.join("pids/ns/c1")),
            ("cpu".to_string(), r.join("cpu/ns/c1")),
            (String::new(), r.join("unified/ns/c1")),
            ("memory".to_string(), r.join("memory/ns/c1")),
        ]));
        let removed = remove_dirs(&own_dirs(&cg, &[]), Duration::ZERO).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        for h in ["pids", "cpu", "unified"] {
            assert!(!r.join(h).join("ns/c1").exists(), "{h} left");
            assert!(r.join(h).join("ns").is_dir(), "{h}: the parent went too");
        }
        // Gone already: nothing to do.
        let again = remove_dirs(&own_dirs(&cg, &[]), Duration::ZERO).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_cgroup_that_stays_busy_is_named_with_its_processes() {
        let root = tempfile::tempdir().unwrap();
        // On a plain filesystem a file keeps the directory from going, as a process
        // keeps a cgroup.
        let busy = root.path().join("pids/ns/c1");
        files::tests::write(&busy, &[("cgroup.procs", "41\n42\n")]);
        let e = remove_dirs(std::slice::from_ref(&busy), Duration::from_millis(30)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(busy.to_str().unwrap()), "{msg}");
        assert!(msg.contains("2 process(es) still in it"), "{msg}");
        assert!(busy.is_dir());
    }
}
