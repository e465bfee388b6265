//! The `loop` option (containerd's blockfile and erofs snapshotters): the source is a
//! filesystem image, attached to a free loop device that is mounted in its place.
//!
//! The device is attached with autoclear, as containerd does: the kernel frees it when its
//! last user is gone. Until the mount holds it, that user is the descriptor in [`Attached`];
//! dropping it after a failed mount frees the device, and unmounting the filesystem frees
//! it after a successful one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::sys::loop_device::{
    loop_attach, LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LO_FLAGS_READ_ONLY,
};

/// A loop device holding a filesystem image, held open until it is mounted.
#[derive(Debug)]
pub struct Attached {
    /// Holds the device until the mount does.
    _device: File,
    pub path: PathBuf,
}

/// Attaches the image `source`, read-only when the mount is, with direct I/O when the
/// mount asked for `direct-io`.
pub fn attach(source: &str, read_only: bool, direct_io: bool) -> Result<Attached, String> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(libc::O_CLOEXEC)
        .open(source)
        .map_err(|e| format!("option loop: open {source}: {e}"))?;
    let mut flags = LO_FLAGS_AUTOCLEAR;
    if read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    if direct_io {
        flags |= LO_FLAGS_DIRECT_IO;
    }
    let (device, path) =
        loop_attach(&backing, source, flags).map_err(|e| format!("option loop: {e}"))?;
    Ok(Attached {
        _device: device,
        path,
    })
}
