//! The rootfs mounts containerd hands to Create, and their removal.

use std::path::Path;

use containerd_shim_protos::types::mount::Mount;

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
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, target) {
            if i > 0 {
                unmount_all(target);
            }
            return Err(Error::invalid(format!(
                "mount rootfs {} ({} on {}): {e}",
                i + 1,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(())
}

/// Unmounts everything at or below `target`. Failures are logged: the caller is already
/// cleaning up and has nothing better to do with them.
pub fn unmount_all(target: &Path) {
    let Some(t) = target.to_str() else {
        return;
    };
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(t), libc::MNT_DETACH) {
        log::error!("unmount {}: {e}", target.display());
    }
}
