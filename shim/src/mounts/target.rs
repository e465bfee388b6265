//! Where one mount goes: the rootfs itself, or its `Mount.target` below the rootfs
//! (containerd 2.x), resolved inside the rootfs as containerd's `fs.RootPath` does.
//!
//! The target is resolved by the kernel with the rootfs as its root (openat2
//! `RESOLVE_IN_ROOT`): a symlink in an image, absolute or with `..`, cannot lead out of the
//! rootfs, and the mount is made through the opened descriptor, so a path swapped after the
//! check is not followed either. A target that itself climbs out (`../x`) is refused: the
//! Go shim clamps it at the rootfs silently, which hides a broken request.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// A resolved mount point.
#[derive(Debug)]
pub struct MountPoint {
    /// The rootfs joined with the target, as the operator reads it.
    shown: PathBuf,
    /// An O_PATH descriptor of a target below the rootfs.
    fd: Option<OwnedFd>,
}

impl MountPoint {
    /// Resolves `target` (empty for the rootfs itself) inside `rootfs`.
    pub fn resolve(rootfs: &Path, target: &str) -> Result<MountPoint, String> {
        let relative = scoped(target)?;
        let shown = rootfs.join(&relative);
        if relative.as_os_str().is_empty() {
            return Ok(MountPoint { shown, fd: None });
        }
        let root = nix::fcntl::open(
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("open the rootfs {}: {e}", rootfs.display()))?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = nix::fcntl::openat2(&root, &relative, how).map_err(|e| match e {
            nix::errno::Errno::ENOENT => {
                format!("target {target}: no such file or directory in the rootfs")
            }
            e => format!("target {target}: {e}"),
        })?;
        Ok(MountPoint {
            shown,
            fd: Some(fd),
        })
    }

    /// The path to hand to mount(2): the rootfs, or the magic link of the resolved target.
    pub fn path(&self) -> PathBuf {
        match &self.fd {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => self.shown.clone(),
        }
    }
}

/// `target` as a clean path relative to the rootfs: `/` and `.` dropped, `..` applied.
/// A target that would climb above the rootfs is refused.
pub fn scoped(target: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(format!("target {target} leaves the rootfs"));
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_scoped_to_the_rootfs() {
        assert_eq!(scoped("").unwrap(), Path::new(""));
        assert_eq!(scoped("/").unwrap(), Path::new(""));
        assert_eq!(scoped("a/b").unwrap(), Path::new("a/b"));
        assert_eq!(scoped("/a/./b/").unwrap(), Path::new("a/b"));
        assert_eq!(scoped("a/../b").unwrap(), Path::new("b"));
        let e = scoped("a/../../etc").unwrap_err();
        assert_eq!(e, "target a/../../etc leaves the rootfs");
        assert!(scoped("/../etc").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("real/dir")).unwrap();
        // Absolute and climbing links both stay inside.
        std::os::unix::fs::symlink("/real", root.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../real", root.path().join("real/up")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let same = |t: &str| {
            let p = MountPoint::resolve(root.path(), t).unwrap();
            std::fs::canonicalize(p.path()).unwrap()
        };
        let real_dir = root.path().join("real/dir").canonicalize().unwrap();
        assert_eq!(same("abs/dir"), real_dir);
        assert_eq!(same("real/up/dir"), real_dir);
        // A link to an outside directory is followed as if the rootfs were `/`.
        let e = MountPoint::resolve(root.path(), "out").unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let p = MountPoint::resolve(root.path(), "").unwrap();
        assert_eq!(p.path(), root.path());
    }
}
