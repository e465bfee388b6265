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

/// Waits until `fifo` (an [`OutputFifo::close`] handle) holds nothing unread, or has no
/// reader left to read it (nothing would), or `deadline` passes (false).
///
/// It looks through a writer of its own, opened through the handle for the time of the
/// wait only: a client that reads until the end of the stream before it asks for Delete
/// (Docker, containerd's CRI plugin) must see that end as soon as the process's output
/// ends, so no writer of ours may stay open until Delete.
pub(super) fn drained(fifo: &File, deadline: Instant) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // ENXIO: no reader is left.
    let Ok(writer) = sys::reopen(fifo, OFlag::O_WRONLY | OFlag::O_NONBLOCK) else {
        return true;
    };
    loop {
        match sys::unread_bytes(&writer) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
        // A write end polls POLLERR once no reader is left.
        let mut fds = [PollFd::new(writer.as_fd(), PollFlags::empty())];
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

/// An output fifo as its copier holds it.
pub(super) struct OutputFifo {
    /// Where the copier writes.
    pub writer: File,
    /// A reader of our own (see [`open_output_fifo`]).
    reader: File,
    /// The fifo, named by a descriptor that opens neither end (O_PATH).
    handle: File,
}

impl OutputFifo {
    /// Closes both of our ends, once the process's output has ended: the client then
    /// reads the end of the stream after what is left, as containerd's clients expect
    /// ("the pipes should be closed on the shim's side"). Returns the handle, for
    /// [`drained`].
    pub fn close(self) -> File {
        drop(self.writer);
        drop(self.reader);
        self.handle
    }
}

/// Opens an output fifo for writing, with a reader of our own held beside it (opened
/// first: then the write open cannot block or fail for want of a reader).
pub(super) fn open_output_fifo(uri: &str, name: &str) -> Result<OutputFifo> {
    let path = fifo_path(uri, name)?;
    let open = |flags: OFlag| {
        sys::open_fifo(&path, flags)
            .map_err(|e| Error::io_at(format!("open {name} fifo"), &path, e))
    };
    let reader = open(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    let writer = open(OFlag::O_WRONLY)?;
    let handle = open(OFlag::O_PATH)?;
    Ok(OutputFifo {
        writer,
        reader,
        handle,
    })
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
        let (data, cancelled) = match wait_readable(&fifo, cancel) {
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

/// Waits until `data` or `cancel` is readable (or hung up); says which.
fn wait_readable(
    data: &impl std::os::fd::AsFd,
    cancel: &impl std::os::fd::AsFd,
) -> std::io::Result<(bool, bool)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [
            PollFd::new(data.as_fd(), PollFlags::POLLIN),
            PollFd::new(cancel.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        return Ok((ready(&fds[0]), ready(&fds[1])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Delete waits for: the client has read what was written, or has gone.
    #[test]
    fn drained_once_the_client_has_read_or_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut client = sys::open_fifo(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK).unwrap();
        let mut fifo = open_output_fifo(&path.display().to_string(), "stdout").unwrap();
        fifo.writer.write_all(b"abc").unwrap();
        let handle = fifo.close();
        // Unread, and the client is there: not drained when the deadline has passed.
        assert!(!drained(&handle, Instant::now()));
        let mut buf = [0u8; 2];
        client.read_exact(&mut buf).unwrap();
        assert!(!drained(&handle, Instant::now()));
        // The client goes away with a byte unread: nothing would read it.
        drop(client);
        assert!(drained(&handle, Instant::now()));
        // Read to the end.
        let mut client = sys::open_fifo(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK).unwrap();
        let mut fifo = open_output_fifo(&path.display().to_string(), "stdout").unwrap();
        fifo.writer.write_all(b"xy").unwrap();
        let handle = fifo.close();
        let mut buf = [0u8; 2];
        client.read_exact(&mut buf).unwrap();
        assert!(drained(&handle, Instant::now()));
    }
}
