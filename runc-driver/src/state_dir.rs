//! The runtime's state directory of a container, `<--root>/<id>` for runc, crun and youki
//! alike, removed by the driver itself when the runtime's `delete` could not finish: only
//! that directory, and only once its state file shows it is the container's.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::ops::Runtime;

/// The file each runtime keeps its container's state in: runc's and youki's name the
/// container by `id` (youki's by `bundle` too), crun's by `bundle`.
const STATE_FILES: [&str; 2] = ["state.json", "status"];

impl Runtime {
    /// Removes `<--root>/<id>`, the runtime's state of container `id` whose bundle is
    /// `bundle`, as the runtime's `delete` would have; returns the directory removed, or
    /// None when there is none. Nothing is removed without a `--root` (the runtime's
    /// default is its own), for an id that is not one path component, for a path that is
    /// not a directory of its own (a symlink), or when no state file in it names the
    /// container.
    pub fn remove_state(&self, id: &str, bundle: &Path) -> Result<Option<PathBuf>> {
        let refuse = |path: PathBuf, why: String| Error::Io {
            op: "remove the runtime's state directory",
            path,
            source: io::Error::other(why),
        };
        let Some(root) = self.global().root.clone() else {
            return Err(refuse(
                self.binary().to_path_buf(),
                format!("no --root is set for container {id}: its state is wherever the runtime keeps it by default"),
            ));
        };
        let mut parts = Path::new(id).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(refuse(
                root,
                format!("{id:?} is not a container id: it names no directory of its own"),
            ));
        }
        let dir = root.join(id);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(refuse(
                    dir,
                    "not a directory (a symlink or a file): left in place".into(),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    op: "read the runtime's state directory",
                    path: dir,
                    source,
                })
            }
        }
        if !names_container(&dir, id, bundle) {
            return Err(refuse(
                dir,
                format!(
                    "no state file ({}) in it names container {id} or bundle {}: left in place",
                    STATE_FILES.join(", "),
                    bundle.display()
                ),
            ));
        }
        std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
            op: "remove the runtime's state directory",
            path: dir.clone(),
            source,
        })?;
        Ok(Some(dir))
    }
}

/// Whether a state file in `dir` says it is container `id`'s, or that of the container
/// whose bundle is `bundle`.
fn names_container(dir: &Path, id: &str, bundle: &Path) -> bool {
    STATE_FILES.iter().any(|name| {
        let Ok(text) = std::fs::read(dir.join(name)) else {
            return false;
        };
        let Ok(state) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return false;
        };
        state["id"].as_str() == Some(id) || state["bundle"].as_str().map(Path::new) == Some(bundle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::StdMonitor;
    use crate::opts::GlobalOpts;
    use std::sync::Arc;

    fn runtime(root: Option<&Path>) -> Runtime {
        let global = GlobalOpts {
            root: root.map(Path::to_path_buf),
            ..Default::default()
        };
        Runtime::new("runc", global, Arc::new(StdMonitor))
    }

    fn state(dir: &Path, file: &str, json: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), json).unwrap();
    }

    #[test]
    fn removes_the_state_each_runtime_keeps() {
        let root = tempfile::tempdir().unwrap();
        let rt = runtime(Some(root.path()));
        // runc: state.json by id, with a fifo and a nested directory beside it.
        let c1 = root.path().join("c1");
        state(&c1, "state.json", r#"{"id":"c1","init_process_pid":1}"#);
        std::fs::create_dir(c1.join("sub")).unwrap();
        assert_eq!(
            rt.remove_state("c1", Path::new("/b1")).unwrap(),
            Some(c1.clone())
        );
        assert!(!c1.exists());
        // crun: status by bundle.
        let c2 = root.path().join("c2");
        state(&c2, "status", r#"{"pid":2,"bundle":"/b2"}"#);
        assert_eq!(
            rt.remove_state("c2", Path::new("/b2")).unwrap(),
            Some(c2.clone())
        );
        assert!(!c2.exists());
        // Already gone.
        assert_eq!(rt.remove_state("c3", Path::new("/b3")).unwrap(), None);
        assert!(root.path().is_dir());
    }

    #[test]
    fn anything_not_the_containers_stays() {
        let root = tempfile::tempdir().unwrap();
        let rt = runtime(Some(root.path()));
        let other = root.path().join("c1");
        state(&other, "state.json", r#"{"id":"someone-else"}"#);
        state(&other, "status", r#"{"bundle":"/elsewhere"}"#);
        let e = rt.remove_state("c1", Path::new("/b1")).unwrap_err();
        assert!(e.to_string().contains("names container c1"), "{e}");
        assert!(other.join("state.json").exists());
        // No state file at all, a garbled one.
        let bare = root.path().join("c2");
        state(&bare, "state.json", "{not json");
        assert!(rt.remove_state("c2", Path::new("/b2")).is_err());
        assert!(bare.exists());
        // A symlink to a directory that would qualify.
        let target = tempfile::tempdir().unwrap();
        state(target.path(), "state.json", r#"{"id":"c3"}"#);
        std::os::unix::fs::symlink(target.path(), root.path().join("c3")).unwrap();
        let e = rt.remove_state("c3", Path::new("/b3")).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(target.path().join("state.json").exists());
        // Ids that leave the root, or name it.
        for id in ["../c1", "c1/..", "..", ".", "", "/c1", "a/b"] {
            let e = rt.remove_state(id, Path::new("/b1")).unwrap_err();
            assert!(e.to_string().contains("not a container id"), "{id:?}: {e}");
        }
        assert!(other.exists());
        // Without --root the driver does not guess.
        let e = runtime(None)
            .remove_state("c1", Path::new("/b1"))
            .unwrap_err();
        assert!(e.to_string().contains("no --root"), "{e}");
    }
}
