//! `uidmap=` and `gidmap=` (containerd 2.x, for pods with their own user namespace): the
//! mount's files appear with their ids shifted by the mapping, without a chown of the
//! snapshot. As in containerd's `core/mount`, the kernel does it with an idmapped mount
//! (`mount_setattr(MOUNT_ATTR_IDMAP)` with a user namespace holding the mapping): for an
//! overlay, of each lower layer, mounted over copies; for anything else, of the mount
//! itself.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::sys::idmap::{idmapped_copy, user_namespace};

/// A user namespace with the mappings of `uidmap=` and `gidmap=`.
pub fn namespace(uidmap: &str, gidmap: &str) -> Result<OwnedFd, String> {
    let uid = kernel_map(uidmap).map_err(|e| format!("option uidmap={uidmap}: {e}"))?;
    let gid = kernel_map(gidmap).map_err(|e| format!("option gidmap={gidmap}: {e}"))?;
    user_namespace(&uid, &gid).map_err(|e| format!("option uidmap={uidmap}: {e}"))
}

/// containerd's `inside:outside:count` ranges, comma-separated, as the kernel's
/// `uid_map` text: one `inside outside count` line per range.
pub fn kernel_map(list: &str) -> Result<String, String> {
    let mut out = String::new();
    for range in list.split(',') {
        let parts: Vec<&str> = range.split(':').collect();
        let [inside, outside, count] = parts[..] else {
            return Err(format!("{range} is not inside:outside:count"));
        };
        let mut n = [0u32; 3];
        for (v, s) in n.iter_mut().zip([inside, outside, count]) {
            *v = s
                .parse()
                .map_err(|_| format!("{range}: {s} is not an id or a count"))?;
        }
        if n[2] == 0 {
            return Err(format!("{range}: the count is 0"));
        }
        out.push_str(&format!("{} {} {}\n", n[0], n[1], n[2]));
    }
    Ok(out)
}

/// Shifts the mount at `target` by stacking an idmapped copy of it on top.
pub fn shift(target: &Path, userns: &OwnedFd) -> Result<(), String> {
    idmapped_copy(target, target, userns, false)
        .map_err(|e| format!("idmap {}: {e}", target.display()))
}

/// An overlay's lower layers, each mounted idmapped and read-only under `dir`, with the
/// overlay's data naming them instead. Unmounted and removed when dropped: the overlay
/// holds its own references to its layers once mounted.
#[derive(Debug)]
pub struct IdmappedLowers {
    pub data: Vec<String>,
    dir: PathBuf,
    mounted: Vec<PathBuf>,
}

impl IdmappedLowers {
    pub fn prepare(data: &[String], userns: &OwnedFd, dir: PathBuf) -> Result<Self, String> {
        let idx = data
            .iter()
            .position(|o| o.starts_with("lowerdir="))
            .ok_or("option uidmap=: an idmapped overlay needs a lowerdir")?;
        let layers = super::options::split_layers(&data[idx]["lowerdir=".len()..]);
        let mut out = IdmappedLowers {
            data: data.to_vec(),
            dir,
            mounted: Vec::new(),
        };
        std::fs::create_dir_all(&out.dir)
            .map_err(|e| format!("create {}: {e}", out.dir.display()))?;
        let mut names = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let dest = out.dir.join(i.to_string());
            std::fs::create_dir(&dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
            let source = PathBuf::from(layer.replace("\\:", ":"));
            idmapped_copy(&source, &dest, userns, true)
                .map_err(|e| format!("option lowerdir={layer}: idmap: {e}"))?;
            out.mounted.push(dest.clone());
            names.push(dest.display().to_string());
        }
        out.data[idx] = format!("lowerdir={}", names.join(":"));
        Ok(out)
    }
}

impl Drop for IdmappedLowers {
    fn drop(&mut self) {
        for m in &self.mounted {
            if let Err(e) = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
                log::error!("unmount idmapped layer {}: {e}", m.display());
            }
        }
        // remove_dir, not remove_dir_all: a layer still mounted is never emptied.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            log::error!("remove {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_become_the_kernels_text() {
        assert_eq!(kernel_map("0:1000:65536").unwrap(), "0 1000 65536\n");
        assert_eq!(
            kernel_map("0:1000:1,1:2000:65535").unwrap(),
            "0 1000 1\n1 2000 65535\n"
        );
        assert!(kernel_map("0:1000").is_err());
        assert!(kernel_map("0:-1:5").is_err());
        assert!(kernel_map("0:1:0").is_err());
        assert!(kernel_map("").is_err());
    }
}
