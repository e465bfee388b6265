//! The copiers: a process's output into its fifos, and its stdin fifo into its pipe.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::fifo_path;
use super::flush::Flush;
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

/// pipe (or terminal) -> where the output goes, until every writer of the pipe is gone or
/// the terminal's other end is closed (EIO). With `flush`, the copier answers a flush
/// request once it has read its source until it was empty and written all it read (or at
/// the request's deadline, if the destination takes nothing), or at its end.
///
/// The destination is made non-blocking, so that a full fifo never keeps the copier from
/// seeing a request; `splice` moves pipe pages without copying them (a terminal is read
/// through a buffer).
pub(super) fn copy_output(
    from: File,
    to: &mut File,
    name: &str,
    flush: Option<&Flush>,
    splice: bool,
) {
    if let Err(e) = sys::set_nonblocking(&*to) {
        log::warn!("copy {name}: make the destination non-blocking: {e}");
    }
    let mut pump = Pump {
        from,
        to,
        name,
        mode: if splice { Mode::Splice } else { Mode::buffer() },
    };
    // The flush this copier still owes an answer to, and its deadline once asked.
    let mut owes = flush;
    let mut deadline = None;
    loop {
        if deadline.is_none() {
            deadline = owes.and_then(Flush::asked);
        }
        let step = pump.step();
        let overdue = deadline.is_some_and(|d| Instant::now() >= d);
        let answer = match step {
            Step::End => true,
            // Empty after the request was seen: all that came before it is moved.
            Step::Empty => deadline.is_some(),
            Step::Moved | Step::Full => overdue,
        };
        if let Some(f) = owes.filter(|_| answer) {
            if overdue && matches!(step, Step::Moved | Step::Full) {
                log::warn!(
                    "copy {name}: output not all in the fifo by its exit's deadline \
                     (the client reads nothing, or a process left behind keeps writing)"
                );
            }
            f.answer();
            (owes, deadline) = (None, None);
        }
        // Wait for the source or the destination, and for a request not seen yet or the
        // deadline of one that was.
        let wake = owes.filter(|_| deadline.is_none()).map(Flush::wake);
        let by = owes.and(deadline);
        match step {
            Step::End => return,
            Step::Moved => {}
            Step::Empty => wait(pump.from.as_fd(), PollFlags::POLLIN, wake, by),
            Step::Full => wait(pump.to.as_fd(), PollFlags::POLLOUT, wake, by),
        }
    }
}

/// What one step of a [`Pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Moved some bytes: look again.
    Moved,
    /// The source holds nothing now.
    Empty,
    /// The destination takes nothing now.
    Full,
    /// The source's end.
    End,
}

/// Moves bytes from a process's output to where they go, without blocking.
struct Pump<'a> {
    from: File,
    to: &'a mut File,
    name: &'a str,
    mode: Mode,
}

enum Mode {
    /// Pipe pages moved by `splice`.
    Splice,
    /// Read, then written: `buf[start..end]` is read and not yet written.
    Buffer {
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
    /// The destination failed for good: read and dropped, so the process never blocks on
    /// a full pipe.
    Discard(Vec<u8>),
}

/// How much one step moves at most.
const CHUNK: usize = 64 * 1024;
/// The buffer of a copier that cannot splice (a terminal).
const BUFFER: usize = 16 * 1024;

impl Mode {
    fn buffer() -> Mode {
        Mode::Buffer {
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
        }
    }
}

impl Pump<'_> {
    fn step(&mut self) -> Step {
        use nix::errno::Errno;
        use nix::fcntl::SpliceFFlags;
        match &mut self.mode {
            Mode::Splice => {
                let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
                match nix::fcntl::splice(&self.from, None, &*self.to, None, CHUNK, flags) {
                    Ok(0) => Step::End,
                    Ok(_) | Err(Errno::EINTR) => Step::Moved,
                    // Either side: the source is empty, or the destination full.
                    Err(Errno::EAGAIN) if readable(&self.from) => Step::Full,
                    Err(Errno::EAGAIN) => Step::Empty,
                    // Not two pipes after all, or a failing side: read and write instead,
                    // which tells the sides apart.
                    Err(e) => {
                        log::debug!("copy {}: splice: {e}; copying through a buffer", self.name);
                        self.mode = Mode::buffer();
                        Step::Moved
                    }
                }
            }
            Mode::Buffer { buf, start, end } if *start < *end => {
                match self.to.write(&buf[*start..*end]) {
                    Ok(n) => {
                        *start += n;
                        Step::Moved
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Step::Full,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Step::Moved,
                    Err(e) => {
                        // The fifo was removed or the logging program went away (EPIPE
                        // cannot happen on a fifo: we hold a reader).
                        log::warn!("copy {}: {e}; discarding the rest", self.name);
                        self.mode = Mode::Discard(std::mem::take(buf));
                        Step::Moved
                    }
                }
            }
            Mode::Buffer { buf, start, end } => match read_now(&self.from, self.name, buf) {
                Ok(n) => {
                    (*start, *end) = (0, n);
                    Step::Moved
                }
                Err(step) => step,
            },
            Mode::Discard(buf) => read_now(&self.from, self.name, buf)
                .err()
                .unwrap_or(Step::Moved),
        }
    }
}

/// Reads what `from` holds now, without waiting: a count, or Empty or End.
fn read_now(mut from: &File, name: &str, buf: &mut [u8]) -> std::result::Result<usize, Step> {
    // A terminal is not made non-blocking (its master is shared with the stdin copier and
    // the resizer): ask poll first, which a terminal answers after running the pending
    // work that brings the other end's writes in.
    if !readable(&from) {
        return Err(Step::Empty);
    }
    match from.read(buf) {
        Ok(0) => Err(Step::End),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Step::Empty),
        // EIO: the terminal's other end is closed.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Err(Step::End),
        Err(e) => {
            log::warn!("copy {name}: read: {e}");
            Err(Step::End)
        }
    }
}

/// Whether `fd` polls readable, or hung up or failed (a read then tells which), now.
fn readable(fd: &impl AsFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0].revents().is_some_and(|r| !r.is_empty()),
        // Let a read tell.
        Err(_) => true,
    }
}

/// Waits until `fd` polls `events` (or hangs up or fails), `wake` hangs up, or
/// `deadline` passes.
fn wait(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    wake: Option<BorrowedFd<'_>>,
    deadline: Option<Instant>,
) {
    let timeout = match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            // Rounded up: a deadline less than a millisecond away is not spun on.
            let left = d.saturating_duration_since(Instant::now()) + Duration::from_micros(999);
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut fds = vec![PollFd::new(fd, events)];
    if let Some(w) = wake {
        fds.push(PollFd::new(w, PollFlags::POLLIN));
    }
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => {
            log::warn!("poll an output copier: {e}");
            std::thread::sleep(DRAIN_POLL);
        }
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
fn wait_readable(data: &impl AsFd, cancel: &impl AsFd) -> std::io::Result<(bool, bool)> {
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
