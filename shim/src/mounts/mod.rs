//! The rootfs mounts containerd hands to Create, and their removal.
//!
//! Mounting is done here with mount(2) from the shim's own threads. (containerd-shim's
//! `mount_rootfs` forks and waits through its own reaper, which cannot work next to
//! ours.) Each mount takes every form containerd's `core/mount` accepts: an overlay whose
//! layer list is longer than a page (mounted from the layers' common parent directory),
//! `Mount.target` below the rootfs, the `loop` option, and `uidmap=`/`gidmap=`.

mod idmap;
mod loopback;
mod options;
mod target;

use std::path::{Path, PathBuf};

use containerd_shim_protos::types::mount::Mount;
use nix::mount::MsFlags;

use crate::error::{Error, Result};
pub use options::Options;
use target::MountPoint;

/// Mounts every entry onto `target` (the bundle's `rootfs`) or its `Mount.target` below
/// it, in order: a mount below the rootfs comes after the mounts it lies on. On any failure
/// the ones already mounted are undone, so a failed Create leaves nothing mounted.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io_at("create rootfs directory", target, e))?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            unmount_all(target);
            return Err(Error::invalid(format!(
                "mount rootfs {} of {} ({} {} on {}): {e}",
                i + 1,
                mounts.len(),
                m.type_,
                m.source,
                target
                    .join(target::scoped(&m.target).unwrap_or_default())
                    .display(),
            )));
        }
    }
    Ok(())
}

/// Unmounts everything at or below `target`, deepest first. Failures are logged: the
/// caller is already cleaning up and has nothing better to do with them.
pub fn unmount_all(target: &Path) {
    let mountinfo = match crate::mountinfo::read_self() {
        Ok(m) => m,
        Err(e) => {
            log::error!("unmount {}: {e}", target.display());
            return;
        }
    };
    let mut points = mounts_at_or_below(&mountinfo, target);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        // A stacked mount point may be listed more than once; EINVAL means it is gone.
        loop {
            match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
                Err(e) => {
                    log::error!("unmount {}: {e}", p.display());
                    break;
                }
            }
        }
    }
}

/// The mount points in a mountinfo text that are `target` or below it.
pub fn mounts_at_or_below(mountinfo: &str, target: &Path) -> Vec<PathBuf> {
    crate::mountinfo::parse(mountinfo)
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(target))
        .collect()
}

fn mount_one(m: &Mount, rootfs: &Path) -> std::result::Result<(), String> {
    let opts = Options::parse(&m.options);
    let userns = match (&opts.uidmap, &opts.gidmap) {
        (Some(u), Some(g)) => Some(idmap::namespace(u, g)?),
        (None, None) => None,
        (Some(u), None) => return Err(format!("option uidmap={u}: no gidmap= with it")),
        (None, Some(g)) => return Err(format!("option gidmap={g}: no uidmap= with it")),
    };
    let overlay = m.type_ == "overlay";
    let point = MountPoint::resolve(rootfs, &m.target)?;
    let target = point.path();
    let page = page_size();
    let mut data = opts.data.clone();
    // Dropped (unmounted) once the overlay is mounted on them, or has failed to.
    let mut idmapped = None;
    if let (Some(ns), true) = (&userns, overlay) {
        let dir = rootfs.with_extension("idmapped-layers");
        let lowers = idmap::IdmappedLowers::prepare(&data, ns, dir)?;
        data = lowers.data.clone();
        idmapped = Some(lowers);
    }
    let mut chdir = None;
    if overlay && data.join(",").len() >= page {
        if let Some(c) = options::compact_overlay(&data) {
            chdir = Some(c.dir);
            data = c.data;
        }
    }
    let data = data.join(",");
    if data.len() >= page {
        let how = match &chdir {
            Some(dir) => format!(" with the layers named relative to {}", dir.display()),
            None => String::new(),
        };
        return Err(format!(
            "mount options are {} bytes{how}, over the kernel's limit of {page}",
            data.len()
        ));
    }
    let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
    // Held until the mount is made: the device is freed when this is dropped unmounted.
    let attached = match opts.loop_device {
        true => Some(loopback::attach(
            &m.source,
            opts.flags.contains(MsFlags::MS_RDONLY),
            opts.direct_io,
        )?),
        false => None,
    };
    let source = match &attached {
        Some(a) => Some(a.path.to_str().unwrap_or_default()),
        None => (!m.source.is_empty()).then_some(m.source.as_str()),
    };
    let data = (!data.is_empty()).then_some(data.as_str());
    let is_remount = opts.flags.contains(MsFlags::MS_REMOUNT);
    if !is_remount || data.is_some() {
        let mount = || nix::mount::mount(source, &target, fs_type, opts.flags, data);
        let done = match &chdir {
            None => mount().map_err(|e| e.to_string()),
            Some(dir) => in_directory(dir, mount),
        };
        if let Err(e) = done {
            return Err(match (missing_directory(&opts.data), &attached) {
                (Some(o), _) => format!("option {o}: no such directory ({e})"),
                (None, Some(a)) => format!("mount {}: {e}", a.path.display()),
                (None, None) => e,
            });
        }
    }
    drop(attached);
    drop(idmapped);
    // Resolved again: the descriptor of a target below the rootfs names the directory
    // under the new mount, not the mount.
    let point = MountPoint::resolve(rootfs, &m.target)?;
    let target = point.path();
    if !opts.propagation.is_empty() {
        nix::mount::mount(
            None::<&str>,
            &target,
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .map_err(|e| format!("set propagation: {e}"))?;
    }
    // A bind mount ignores MS_RDONLY until it is remounted.
    if opts.flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        let flags = opts.flags | MsFlags::MS_REMOUNT;
        nix::mount::mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("make the bind mount read-only: {e}"))?;
    }
    if let (Some(ns), false) = (&userns, overlay) {
        idmap::shift(&target, ns)?;
    }
    Ok(())
}

/// Runs `mount` in a short-lived thread whose working directory is `dir`. The thread
/// first stops sharing its filesystem context (`unshare(CLONE_FS)`), so the change of
/// directory is its own and ends with it; the rest of the shim never sees it.
fn in_directory(
    dir: &Path,
    mount: impl FnOnce() -> nix::Result<()> + Send,
) -> std::result::Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                .map_err(|e| format!("unshare the working directory: {e}"))?;
            nix::unistd::chdir(dir)
                .map_err(|e| format!("change to the layers' directory {}: {e}", dir.display()))?;
            mount().map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the mounting thread panicked".to_string()))
    })
}

/// The first overlay directory option (`lowerdir=` layer, `upperdir=`, `workdir=`) whose
/// directory does not exist: the usual reason an overlay mount fails, which mount(2)
/// reports only as ENOENT or EINVAL.
fn missing_directory(data: &[String]) -> Option<String> {
    data.iter().find_map(|o| {
        let (key, value) = o.split_once('=')?;
        let dirs = match key {
            "lowerdir" => options::split_layers(value),
            "upperdir" | "workdir" => vec![value.to_string()],
            _ => return None,
        };
        dirs.into_iter()
            .find(|d| !Path::new(&d.replace("\\:", ":")).is_dir())
            .map(|d| format!("{key}={d}"))
    })
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mountinfo_is_filtered_and_unescaped() {
        let info = "36 35 98:0 / /run/b/rootfs rw - overlay overlay rw\n\
                    37 36 98:0 / /run/b/rootfs/proc rw - proc proc rw\n\
                    38 35 98:0 / /run/b/rootfs2 rw - tmpfs tmpfs rw\n\
                    39 35 98:0 / /run/my\\040dir/rootfs rw - tmpfs tmpfs rw\n";
        let got = mounts_at_or_below(info, Path::new("/run/b/rootfs"));
        assert_eq!(
            got,
            [Path::new("/run/b/rootfs"), Path::new("/run/b/rootfs/proc")]
        );
        let got = mounts_at_or_below(info, Path::new("/run/my dir"));
        assert_eq!(got, [Path::new("/run/my dir/rootfs")]);
    }

    #[test]
    #[ignore = "needs root (mounts): make unit-root, part of make test"]
    fn a_bind_mount_round_trip() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("marker"), "x").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let target = dst.path().join("rootfs");
        let m = Mount {
            type_: "bind".into(),
            source: src.path().display().to_string(),
            options: opts(&["rbind", "ro"]),
            ..Default::default()
        };
        mount_all(&[m], &target).unwrap();
        assert!(target.join("marker").exists());
        assert!(
            std::fs::write(target.join("new"), "y").is_err(),
            "read-only bind"
        );
        unmount_all(&target);
        assert!(!target.join("marker").exists());
    }

    #[test]
    fn a_failing_mount_is_invalid_argument_naming_it() {
        let dst = tempfile::tempdir().unwrap();
        let m = Mount {
            type_: "no-such-fs".into(),
            source: "none".into(),
            ..Default::default()
        };
        let e = mount_all(&[m], &dst.path().join("rootfs")).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("no-such-fs"), "{e}");
    }

    #[test]
    #[ignore = "needs root (mounts): make unit-root, part of make test"]
    fn a_missing_layer_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = layers(dir.path(), 3);
        let gone = dir.path().join("gone");
        options[3] = format!("{}:{}", options[3], gone.display());
        let m = Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options,
            ..Default::default()
        };
        let e = mount_all(&[m], &dir.path().join("rootfs")).unwrap_err();
        let want = format!("option lowerdir={}: no such directory (", gone.display());
        assert!(e.to_string().contains(&want), "{e}");
    }

    #[test]
    #[ignore = "needs root (mounts): make unit-root, part of make test"]
    fn mounts_below_the_rootfs_follow_links_inside_it() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("data/sub")).unwrap();
        std::os::unix::fs::symlink("/data", src.path().join("link")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let target = dst.path().join("rootfs");
        let base = Mount {
            type_: "bind".into(),
            source: src.path().display().to_string(),
            options: opts(&["rbind"]),
            ..Default::default()
        };
        let below = Mount {
            type_: "tmpfs".into(),
            source: "tmpfs".into(),
            target: "/link/sub".into(),
            options: opts(&["size=1m"]),
            ..Default::default()
        };
        mount_all(&[base.clone(), below.clone()], &target).unwrap();
        std::fs::write(target.join("data/sub/on-tmpfs"), "x").unwrap();
        let mountinfo = crate::mountinfo::read_self().unwrap();
        let points = mounts_at_or_below(&mountinfo, &target);
        unmount_all(&target);
        assert_eq!(points, [target.clone(), target.join("data/sub")]);
        assert!(
            !src.path().join("data/sub/on-tmpfs").exists(),
            "on the tmpfs"
        );

        // A target that climbs out is refused, and the rootfs is unmounted again.
        let out = Mount {
            target: "data/../../etc".into(),
            ..below
        };
        let e = mount_all(&[base, out], &target).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(
            e.to_string()
                .starts_with("mount rootfs 2 of 2 (tmpfs tmpfs on ")
                && e.to_string()
                    .ends_with("target data/../../etc leaves the rootfs"),
            "{e}"
        );
        let mountinfo = crate::mountinfo::read_self().unwrap();
        assert!(mounts_at_or_below(&mountinfo, &target).is_empty());
    }

    /// The loop devices whose backing file is `image`.
    fn loops_of(image: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/sys/block").unwrap() {
            let e = e.unwrap();
            let backing = e.path().join("loop/backing_file");
            if let Ok(b) = std::fs::read_to_string(backing) {
                if Path::new(b.trim()) == image {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    #[test]
    #[ignore = "needs root (mounts): make unit-root, part of make test"]
    fn a_loop_mount_frees_its_device_when_unmounted_or_failed() {
        assert!(
            Path::new("/dev/loop-control").exists(),
            "no /dev/loop-control on this machine"
        );
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir(&content).unwrap();
        std::fs::write(content.join("marker"), "in the image").unwrap();
        let image = dir.path().join("image.ext4");
        let st = std::process::Command::new("mkfs.ext4")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .args(["-q", "-d"])
            .arg(&content)
            .arg(&image)
            .arg("8M")
            .status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("skipped: no mkfs.ext4");
            return;
        }
        let target = dir.path().join("rootfs");
        let m = Mount {
            type_: "ext4".into(),
            source: image.display().to_string(),
            options: opts(&["ro", "loop"]),
            ..Default::default()
        };
        mount_all(std::slice::from_ref(&m), &target).unwrap();
        let marker = std::fs::read_to_string(target.join("marker"));
        let devices = loops_of(&image);
        let read_only = std::fs::write(target.join("new"), "x").is_err();
        unmount_all(&target);
        assert_eq!(marker.unwrap(), "in the image");
        assert_eq!(devices.len(), 1, "{devices:?}");
        let ro = format!("/sys/block/{}/ro", devices[0]);
        assert!(read_only);
        let freed = || {
            (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                loops_of(&image).is_empty()
            })
        };
        assert!(freed(), "{:?} still attached ({ro})", loops_of(&image));

        // The device of a failed mount is freed too.
        let bad = Mount {
            type_: "no-such-fs".into(),
            ..m
        };
        let e = mount_all(&[bad], &target).unwrap_err();
        assert!(e.to_string().contains(": mount /dev/loop"), "{e}");
        assert!(freed(), "{:?} still attached", loops_of(&image));

        // A missing image names the option.
        let gone = Mount {
            type_: "ext4".into(),
            source: dir.path().join("gone").display().to_string(),
            options: opts(&["loop"]),
            ..Default::default()
        };
        let e = mount_all(&[gone], &target).unwrap_err();
        assert!(e.to_string().contains("option loop: open "), "{e}");
    }

    #[test]
    #[ignore = "needs root (mounts): make unit-root, part of make test"]
    fn idmapped_overlay_and_bind_mounts_shift_ownership() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bundle/rootfs");
        let mut options = layers(dir.path(), 3);
        options.push("uidmap=0:1000:65536".into());
        options.push("gidmap=0:2000:65536".into());
        let m = Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options,
            ..Default::default()
        };
        mount_all(&[m], &target).unwrap();
        let lower = std::fs::metadata(target.join("layer-1")).unwrap();
        let layers_dir = dir.path().join("bundle/rootfs.idmapped-layers");
        let layers_left = layers_dir.exists();
        let mountinfo = crate::mountinfo::read_self().unwrap();
        unmount_all(&target);
        assert_eq!((lower.uid(), lower.gid()), (1000, 2000));
        assert!(!layers_left, "{} is left", layers_dir.display());
        assert!(mounts_at_or_below(&mountinfo, dir.path()).len() == 1);

        let bind = Mount {
            type_: "bind".into(),
            source: dir
                .path()
                .join("io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs")
                .display()
                .to_string(),
            options: opts(&["rbind", "uidmap=0:1000:65536", "gidmap=0:2000:65536"]),
            ..Default::default()
        };
        mount_all(&[bind], &target).unwrap();
        let shifted = std::fs::metadata(target.join("layer-1")).unwrap();
        unmount_all(&target);
        assert_eq!((shifted.uid(), shifted.gid()), (1000, 2000));
        let mountinfo = crate::mountinfo::read_self().unwrap();
        assert!(mounts_at_or_below(&mountinfo, dir.path()).is_empty());

        let half = Mount {
            type_: "bind".into(),
            source: "/".into(),
            options: opts(&["rbind", "uidmap=0:1000:65536"]),
            ..Default::default()
        };
        let e = mount_all(&[half], &target).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("option uidmap=0:1000:65536: no gidmap= with it"),
            "{e}"
        );
    }

    /// An overlay of `n` layers under `dir`, each with the file `layer-N`.
    fn layers(dir: &Path, n: usize) -> Vec<String> {
        let root = dir.join("io.containerd.snapshotter.v1.overlayfs/snapshots");
        let lowers: Vec<String> = (1..=n)
            .map(|i| {
                let fs = root.join(format!("{i}/fs"));
                std::fs::create_dir_all(&fs).unwrap();
                std::fs::write(fs.join(format!("layer-{i}")), "x").unwrap();
                fs.display().to_string()
            })
            .collect();
        let upper = root.join(format!("{}/fs", n + 1));
        let work = root.join(format!("{}/work", n + 1));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        // containerd lists the newest layer first.
        let lowers: Vec<String> = lowers.into_iter().rev().collect();
        opts(&[
            "index=off",
            &format!("workdir={}", work.display()),
            &format!("upperdir={}", upper.display()),
            &format!("lowerdir={}", lowers.join(":")),
        ])
    }

    #[test]
    #[ignore = "needs root (mounts): make unit-root, part of make test"]
    fn an_overlay_longer_than_a_page_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bundle/rootfs");
        let options = layers(dir.path(), 120);
        assert!(options.join(",").len() > page_size());
        let m = Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options,
            ..Default::default()
        };
        let cwd = std::env::current_dir().unwrap();
        let r = mount_all(&[m], &target);
        assert_eq!(
            std::env::current_dir().unwrap(),
            cwd,
            "the shim's directory"
        );
        r.unwrap();
        let seen = (1..=120).all(|i| target.join(format!("layer-{i}")).exists());
        unmount_all(&target);
        assert!(seen, "every layer is visible");
        assert!(!target.join("layer-1").exists());
    }

    #[test]
    fn an_overlay_too_long_even_relative_is_refused_by_length() {
        let dir = tempfile::tempdir().unwrap();
        let lowers: Vec<String> = (0..300)
            .map(|i| format!("/s/{}-{i}/fs", "x".repeat(20)))
            .collect();
        let m = Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: vec![format!("lowerdir={}", lowers.join(":"))],
            ..Default::default()
        };
        let e = mount_all(&[m], &dir.path().join("rootfs")).unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(
            e.to_string()
                .contains("mount rootfs 1 of 1 (overlay overlay on ")
                && e.to_string()
                    .contains(" with the layers named relative to /s, over the kernel's limit of "),
            "{e}"
        );
    }
}
