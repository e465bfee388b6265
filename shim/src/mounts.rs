//! The rootfs mounts containerd hands to Create, and their removal.
//!
//! Mounting is done here with mount(2) in the calling thread. (containerd-shim's
//! `mount_rootfs` forks and waits through its own reaper, which cannot work next to
//! ours.)

use std::path::{Path, PathBuf};

use containerd_shim_protos::types::mount::Mount;
use nix::mount::MsFlags;

use crate::error::{Error, Result};

/// Mounts every entry onto `target` (the bundle's `rootfs`), in order. On any failure the
/// ones already mounted are undone, so a failed Create leaves nothing mounted.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("create rootfs directory {}", target.display()), e))?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            if i > 0 {
                unmount_all(target);
            }
            return Err(Error::invalid(format!(
                "mount rootfs {} of {} ({} {} on {}): {e}",
                i + 1,
                mounts.len(),
                m.type_,
                m.source,
                target.display()
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

/// The parts of one mount request: flags, propagation change, and filesystem data.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: String,
}

/// Splits containerd's option strings into mount(2) flags and data, as containerd does.
pub fn parse_options(options: &[String]) -> Parsed {
    let mut p = Parsed {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for o in options {
        if let Some(f) = propagation(o) {
            p.propagation |= f;
            continue;
        }
        match flag(o) {
            Some((true, f)) => p.flags.remove(f),
            Some((false, f)) => p.flags.insert(f),
            None => data.push(o.as_str()),
        }
    }
    p.data = data.join(",");
    p
}

fn mount_one(m: &Mount, target: &Path) -> std::result::Result<(), String> {
    let p = parse_options(&m.options);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    if p.data.len() >= page {
        return Err(format!(
            "mount options are {} bytes, over the kernel's limit of {page}",
            p.data.len()
        ));
    }
    let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
    let source = (!m.source.is_empty()).then_some(m.source.as_str());
    let data = (!p.data.is_empty()).then_some(p.data.as_str());
    let is_remount = p.flags.contains(MsFlags::MS_REMOUNT);
    if !is_remount || data.is_some() {
        let flags = p.flags;
        nix::mount::mount(source, target, fs_type, flags, data).map_err(|e| e.to_string())?;
    }
    if !p.propagation.is_empty() {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            p.propagation,
            None::<&str>,
        )
        .map_err(|e| format!("set propagation: {e}"))?;
    }
    // A bind mount ignores MS_RDONLY until it is remounted.
    if p.flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        let flags = p.flags | MsFlags::MS_REMOUNT;
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("make the bind mount read-only: {e}"))?;
    }
    Ok(())
}

/// (clears, flag) for a known flag option.
fn flag(o: &str) -> Option<(bool, MsFlags)> {
    Some(match o {
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "atime" => (true, MsFlags::MS_NOATIME),
        "bind" => (false, MsFlags::MS_BIND),
        "defaults" => (false, MsFlags::empty()),
        "dev" => (true, MsFlags::MS_NODEV),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "nodev" => (false, MsFlags::MS_NODEV),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "suid" => (true, MsFlags::MS_NOSUID),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    })
}

fn propagation(o: &str) -> Option<MsFlags> {
    Some(match o {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let p = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(p.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let p = parse_options(&opts(&["rbind", "ro", "nosuid", "rw", "rprivate"]));
        assert_eq!(
            p.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(p.data.is_empty());
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
    fn a_bind_mount_round_trip() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
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
        assert_eq!(e.kind, crate::error::Kind::InvalidArgument);
        assert!(e.message.contains("no-such-fs"), "{e}");
    }
}
