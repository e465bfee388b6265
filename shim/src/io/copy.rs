//! The copiers: a process's output into its fifos, and its stdin fifo into its pipe.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::fifo_path;
use crate::error::{Error, Result};
use crate::sys;

/// How often [`drained`] looks: the kernel says nothing when a pipe empties.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// Waits until a fifo we write to holds nothing unread, or has no reader left to read it
/// (nothing would), or `deadline` passes (false).
pub(super) fn drained(fifo: &File, deadline: Instant) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        match sys::unread_bytes(fifo) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
        // A write end polls POLLERR once no reader is left.
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::empty())];
        let gone = poll(&mut fds, PollTimeout::ZERO).is_err()
            || fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLERR));
        if gone {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(DRAIN_POLL);
    }
}

/// Opens an output fifo for writing, with a reader of our own held beside it (opened
/// first: then the write open cannot block or fail for want of a reader).
pub(super) fn open_output_fifo(uri: &str, name: &str) -> Result<(File, File)> {
    let path = fifo_path(uri, name)?;
    let keep_reader = sys::open_fifo(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .map_err(|e| Error::io_at(format!("open {name} fifo"), &path, e))?;
    let fifo = sys::open_fifo(&path, OFlag::O_WRONLY)
        .map_err(|e| Error::io_at(format!("open {name} fifo"), &path, e))?;
    Ok((keep_reader, fifo))
}

/// pipe (or terminal) -> fifo until every writer of the pipe is gone, or the terminal's
/// other end is closed (EIO). std's copy splices between fds where it can.
pub(super) fn copy_output(mut from: File, to: &mut File, name: &str) {
    if let Err(e) = std::io::copy(&mut from, to) {
        if e.raw_os_error() == Some(libc::EIO) {
            return;
        }
        // The reader went away for good (EPIPE cannot happen: we hold a reader), or the
        // fifo was removed. Keep draining so the process never blocks on a full pipe.
        log::warn!("copy {name}: {e}; discarding the rest");
        let _ = std::io::copy(&mut from, &mut std::io::sink());
    }
}

/// fifo -> stdin pipe, until a byte on `cancel` (CloseIO) closes the process's stdin,
/// after what is already in the fifo is forwarded.
pub(super) fn copy_stdin(path: &Path, mut pipe: File, cancel: &File) {
    // Read and write: the shim is a writer of the fifo itself, so the process's stdin
    // ends only at CloseIO (or its exit), never because the client's side went away, as
    // when containerd restarts under a container that keeps its stdin open (`stdin: true`
    // in a pod, `docker run -i`). containerd's Go shim holds a writer for the same reason.
    let mut fifo = match sys::open_fifo(path, OFlag::O_RDWR) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("open stdin fifo {}: {e}", path.display());
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (data, cancelled) = match sys::wait_readable(&fifo, cancel) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("wait for stdin: {e}");
                return;
            }
        };
        if cancelled && !data {
            break;
        }
        let n = match fifo.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if pipe.write_all(&buf[..n]).is_err() {
            return;
        }
    }
    // Cancelled: forward whatever the client wrote before it asked, without waiting.
    if sys::set_nonblocking(&fifo).is_ok() {
        while let Ok(n) = fifo.read(&mut buf) {
            if n == 0 || pipe.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }
}
