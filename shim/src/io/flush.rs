//! A process's exit waits for its output: when it has been reaped, its output copiers move
//! what it wrote before it exited into its fifos, then answer, and the last answer runs
//! what was waiting (its exit is made final: Wait answered, TaskExit published).
//!
//! "Flushed" means a copier read its pipe (or terminal) until it was empty after the
//! request and wrote what it read, not that it reached the end of its stream: a background
//! process that keeps the stream open does not hold the exit back. The kernel makes that
//! knowable: a pipe holds every byte a process wrote once the write returned, and a
//! terminal's master polls as readable while its line discipline or the pending buffer
//! behind it holds anything (poll runs the pending work before it answers).
//!
//! A copier that cannot write (the client does not read and the fifo is full) answers at
//! the bound given with the request, and goes on copying as before.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// What runs once every copier answered.
pub type Then = Box<dyn FnOnce() + Send>;

/// One process's flush, shared by its output copiers and its [`super::ProcessIo`].
pub struct Flush {
    /// Hangs up (polls readable) once a flush is asked for: the write end is dropped then.
    /// Nobody reads it.
    wake: OwnedFd,
    /// The write end, until a flush is asked for.
    ask: Mutex<Option<OwnedFd>>,
    /// Set with the deadline: lets a busy copier see the request without a lock.
    asked: AtomicBool,
    /// Guards the copiers yet to answer, the deadline and what runs then.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Copiers that have not answered yet (answered: flushed after a request, or at the
    /// end of their stream, whichever came first).
    waiting: usize,
    deadline: Option<Instant>,
    then: Option<Then>,
}

impl Flush {
    pub fn new() -> Result<Arc<Flush>> {
        let (wake, ask) = sys::pipe().map_err(|e| Error::io("create the flush pipe", e))?;
        Ok(Arc::new(Flush {
            wake,
            ask: Mutex::new(Some(ask)),
            asked: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }))
    }

    /// One more copier that will answer (once): call before it starts.
    pub fn register(&self) {
        self.lock().waiting += 1;
    }

    /// Asks the copiers to flush; `then` runs once they all have (at once if they all
    /// reached the end of their streams already), or at `bound` from now for one that
    /// cannot write. Does not block (but for `then`, when it runs at once).
    pub fn request(&self, bound: Duration, then: Then) {
        let now = {
            let mut s = self.lock();
            s.deadline = Some(Instant::now() + bound);
            if s.waiting == 0 {
                Some(then)
            } else {
                s.then = Some(then);
                None
            }
        };
        self.asked.store(true, Ordering::Release);
        // The copiers waiting in poll see the wake end hang up.
        self.ask.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(then) = now {
            then();
        }
    }

    /// The deadline of a flush asked for, for a copier to answer by.
    pub(super) fn asked(&self) -> Option<Instant> {
        if !self.asked.load(Ordering::Acquire) {
            return None;
        }
        self.lock().deadline
    }

    /// What a copier polls to learn that a flush is asked for.
    pub(super) fn wake(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// A copier's answer (it calls this once); the last one runs what was waiting.
    pub(super) fn answer(&self) {
        let then = {
            let mut s = self.lock();
            s.waiting = s.waiting.saturating_sub(1);
            if s.waiting == 0 {
                s.then.take()
            } else {
                None
            }
        };
        if let Some(then) = then {
            then();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Read;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::{channel, Receiver};

    use nix::fcntl::OFlag;

    use super::*;
    use crate::io::tests::OWNER;
    use crate::io::{Owner, ProcessIo, StdioPaths};

    /// Stdio whose stdout is a fifo in `dir`, and the client's read end of that fifo (a
    /// client that reads nothing until the test says so).
    fn fifo(dir: &Path) -> (StdioPaths, File) {
        let path = dir.join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let client = sys::open_fifo(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK).unwrap();
        let paths = StdioPaths {
            stdout: path.display().to_string(),
            ..Default::default()
        };
        (paths, client)
    }

    /// Asks `io` to flush; the receiver gets what the client's fifo holds unread when
    /// the flush is over.
    fn flush(io: &ProcessIo, client: &File, bound: Duration) -> Receiver<usize> {
        let (tx, rx) = channel();
        let client = client.try_clone().unwrap();
        let then = Box::new(move || {
            let _ = tx.send(sys::unread_bytes(&client).unwrap());
        });
        io.flusher().expect("a fifo copier").request(bound, then);
        rx
    }

    /// The process wrote and exited, its pipe holding what the copier had not moved yet:
    /// the flush ends only once all of it is in the fifo.
    #[test]
    fn a_flush_ends_once_everything_written_is_in_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, client) = fifo(dir.path());
        for _ in 0..20 {
            let (stdio, io) = ProcessIo::open(&paths, OWNER).unwrap();
            // 48 KiB: the pipe and the fifo each hold it whole, so it is all written
            // though the client reads nothing.
            let status = Command::new("sh")
                .args(["-c", "head -c 32768 /dev/zero; head -c 16384 /dev/zero"])
                .stdout(stdio.stdout.unwrap())
                .status()
                .unwrap();
            assert!(status.success());
            let in_fifo = flush(&io, &client, Duration::from_secs(3600))
                .recv()
                .unwrap();
            assert_eq!(in_fifo, 48 * 1024);
            io.finish(Duration::ZERO);
            sys::set_blocking(&client).unwrap();
            let mut buf = vec![0u8; 48 * 1024];
            (&client).read_exact(&mut buf).unwrap();
            sys::set_nonblocking(&client).unwrap();
        }
    }

    /// A background process keeps the output open: the flush ends once the pipe is empty,
    /// not at the end of the stream (which never comes), nor at the bound.
    #[test]
    fn a_flush_does_not_wait_for_the_end_of_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, mut client) = fifo(dir.path());
        let (stdio, io) = ProcessIo::open(&paths, OWNER).unwrap();
        Command::new("sh")
            .args(["-c", "sleep 600 & echo $!"])
            .stdout(stdio.stdout.unwrap())
            .status()
            .unwrap();
        let rx = flush(&io, &client, Duration::from_secs(3600));
        let in_fifo = rx.recv_timeout(Duration::from_secs(60));
        let mut out = String::new();
        let _ = client.read_to_string(&mut out);
        if let Ok(pid) = out.trim().parse::<i32>() {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        let in_fifo = in_fifo.expect("the flush ended without the end of the stream");
        assert_eq!(in_fifo, out.len());
        assert!(!out.is_empty());
    }

    /// The client reads nothing and the fifo is full: the flush ends at its bound, and the
    /// copier goes on copying, so the client still gets everything when it reads.
    #[test]
    fn a_full_fifo_ends_the_flush_at_its_bound_and_the_copy_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, client) = fifo(dir.path());
        let (stdio, io) = ProcessIo::open(&paths, OWNER).unwrap();
        // 100 KiB: more than the fifo holds; the rest waits in the pipe.
        let status = Command::new("head")
            .args(["-c", "102400", "/dev/zero"])
            .stdout(stdio.stdout.unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        let in_fifo = flush(&io, &client, Duration::from_millis(100))
            .recv()
            .unwrap();
        assert!(in_fifo < 102400, "{in_fifo}");
        sys::set_blocking(&client).unwrap();
        let mut all = Vec::new();
        (&client).read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 102400);
        io.finish(Duration::ZERO);
    }

    /// A terminal whose other end stays open (a background process holds it): the flush
    /// ends once the master holds nothing more, with everything in the fifo.
    #[test]
    fn a_terminal_flush_moves_everything_the_process_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, client) = fifo(dir.path());
        let paths = StdioPaths {
            terminal: true,
            ..paths
        };
        for _ in 0..10 {
            let pty = nix::pty::openpty(None, None).unwrap();
            let owner = Owner {
                container_id: "c1".into(),
                namespace: "ns".into(),
            };
            let io = ProcessIo::open_terminal(&paths, File::from(pty.master), &owner).unwrap();
            let slave = File::from(pty.slave);
            let status = Command::new("head")
                .args(["-c", "40000", "/dev/zero"])
                .stdout(Stdio::from(slave.try_clone().unwrap()))
                .status()
                .unwrap();
            assert!(status.success());
            // `slave` still open: the copier sees no end.
            let in_fifo = flush(&io, &client, Duration::from_secs(3600))
                .recv()
                .unwrap();
            assert_eq!(in_fifo, 40000);
            drop(slave);
            io.finish(Duration::ZERO);
            sys::set_blocking(&client).unwrap();
            let mut buf = vec![0u8; 40000];
            (&client).read_exact(&mut buf).unwrap();
            sys::set_nonblocking(&client).unwrap();
        }
    }

    /// Without fifos nothing holds the exit back; a copier that reached its end before the
    /// request has answered already.
    #[test]
    fn a_flush_with_nothing_to_wait_for_ends_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let paths = StdioPaths {
            stdout: format!("file://{}", log.display()),
            ..Default::default()
        };
        let (_stdio, io) = ProcessIo::open(&paths, OWNER).unwrap();
        assert!(io.flusher().is_none(), "a file:// output has no copier");
        let (_stdio, io) = ProcessIo::open(&StdioPaths::default(), OWNER).unwrap();
        assert!(io.flusher().is_none(), "no output at all");
        let f = Flush::new().unwrap();
        let (tx, rx) = channel();
        f.request(
            Duration::from_secs(3600),
            Box::new(move || tx.send(()).unwrap()),
        );
        assert!(rx.try_recv().is_ok());
        let f = Flush::new().unwrap();
        f.register();
        f.answer();
        let (tx, rx) = channel();
        f.request(
            Duration::from_secs(3600),
            Box::new(move || tx.send(()).unwrap()),
        );
        assert!(rx.try_recv().is_ok());
    }
}
