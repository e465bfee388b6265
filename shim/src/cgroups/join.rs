//! Joining a cgroup: how the shim puts itself into ShimCgroup.

use std::io;
use std::path::Path;

/// Adds `pid` to the cgroup `path` (relative to the cgroup root) in every hierarchy
/// mounted under `root`: the unified one on cgroup v2, each controller's on v1.
pub fn join(root: &Path, path: &str, pid: u32) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    let hierarchies: Vec<std::path::PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        std::fs::read_dir(root)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists() && !p.is_symlink())
            .collect()
    };
    if hierarchies.is_empty() {
        return Err(io::Error::other(format!(
            "no cgroup hierarchy under {}",
            root.display()
        )));
    }
    for h in hierarchies {
        let dir = h.join(rel);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.join("cgroup.procs").display()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_pid_into_each_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        for h in ["cpu", "memory"] {
            std::fs::create_dir_all(root.path().join(h)).unwrap();
            std::fs::write(root.path().join(h).join("cgroup.procs"), "").unwrap();
        }
        join(root.path(), "/shims/a", 42).unwrap();
        for h in ["cpu", "memory"] {
            let got =
                std::fs::read_to_string(root.path().join(h).join("shims/a/cgroup.procs")).unwrap();
            assert_eq!(got, "42");
        }
    }

    #[test]
    fn unified_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory").unwrap();
        join(root.path(), "shims", 7).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("shims/cgroup.procs")).unwrap(),
            "7"
        );
    }
}
