//! A process's standard streams: containerd's fifos, copied through the shim.
//!
//! The runtime gets pipes; the shim copies pipe -> fifo for stdout and stderr, and
//! fifo -> pipe for stdin. For each output fifo the shim also holds a read end of its
//! own, so the container never gets SIGPIPE while containerd is away (restarting).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use runc_driver::Stdio;

mod console;
mod copy;
mod flush;
mod logger_binary;
mod target;
pub use console::ConsoleSocket;
use copy::{copy_output, copy_stdin, drained, open_output_fifo, OutputFifo};
pub use flush::{Flush, Then};
use logger_binary::BinaryLogger;
use target::{chown, fifo_path, open_log_file, Target};

/// Whose streams these are: the owner of the pipes, and what a logging binary is told.
#[derive(Debug, Clone, Copy)]
pub struct IoOwner<'a> {
    pub uid: u32,
    pub gid: u32,
    pub container_id: &'a str,
    pub namespace: &'a str,
}

use crate::error::{Error, Result};
use crate::sys;

/// The stdio a process was created with, as containerd named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's side of a process's streams: the copy threads and the stdin pipe.
pub struct ProcessIo {
    /// Tells the stdin copier to forward what is in the fifo and then close the
    /// process's stdin (CloseIO); taken when used.
    stdin_close: Mutex<Option<File>>,
    /// The stdin fifo, to wake a copier still waiting for a writer.
    stdin_fifo: Option<PathBuf>,
    /// One message per output copier when it has reached the end of its stream and closed
    /// what it wrote to: a handle on the fifo, if it was one, for [`ProcessIo::finish`] to
    /// see drained.
    done: Receiver<Option<File>>,
    outputs: usize,
    /// The flush of the output copiers that write to fifos, when the process exits; None
    /// without any.
    flush: Option<Arc<Flush>>,
    /// A terminal's master end, for ResizePty; let go of when the process's output ends.
    console: Arc<Mutex<Option<File>>>,
    /// The `binary://` logging program, stopped at Delete.
    logger: Option<BinaryLogger>,
}

/// Copy threads need little stack: they loop over one buffer or splice.
const COPY_STACK: usize = 64 * 1024;

/// A process's stdio between "before the runtime runs" and "after it returned": pipes
/// are set up before, a terminal can only be received after.
pub enum PendingIo {
    Pipes(ProcessIo),
    /// The socket the terminal will come on, and whose it is (for a logging binary).
    Terminal(ConsoleSocket, Owner),
}

/// [`IoOwner`], kept until a terminal arrives.
pub struct Owner {
    container_id: String,
    namespace: String,
}

impl PendingIo {
    /// Sets up what the runtime needs: pipes to pass as its stdio, or a console socket.
    pub fn prepare(paths: &StdioPaths, owner: IoOwner<'_>) -> Result<(Stdio, PendingIo)> {
        if paths.terminal {
            // Refused now, before the runtime runs, rather than once the process exists.
            Target::parse(&paths.stdout, "stdout")?;
            let owner = Owner {
                container_id: owner.container_id.to_string(),
                namespace: owner.namespace.to_string(),
            };
            return Ok((
                Stdio::default(),
                PendingIo::Terminal(ConsoleSocket::new()?, owner),
            ));
        }
        let (stdio, io) = ProcessIo::open(paths, owner)?;
        Ok((stdio, PendingIo::Pipes(io)))
    }

    /// The `--console-socket` to pass to the runtime, for a terminal.
    pub fn console_socket(&self) -> Option<PathBuf> {
        match self {
            PendingIo::Terminal(c, _) => Some(c.path().to_path_buf()),
            PendingIo::Pipes(_) => None,
        }
    }

    /// The runtime created the process: start copying.
    pub fn complete(self, paths: &StdioPaths) -> Result<ProcessIo> {
        match self {
            PendingIo::Pipes(io) => Ok(io),
            PendingIo::Terminal(sock, owner) => {
                ProcessIo::open_terminal(paths, sock.receive()?, &owner)
            }
        }
    }

    /// The runtime failed: let go of everything.
    pub fn abandon(self) {
        if let PendingIo::Pipes(io) = self {
            io.finish(Duration::ZERO);
        }
    }
}

impl ProcessIo {
    /// Opens the fifos and starts copying. Returns the fds to hand to the runtime.
    pub fn open(paths: &StdioPaths, owner: IoOwner<'_>) -> Result<(Stdio, ProcessIo)> {
        let (io_uid, io_gid) = (owner.uid, owner.gid);
        let (done_tx, done) = channel();
        let mut stdio = Stdio::default();
        let mut outputs = 0;
        let mut stdin_close = None;
        let mut stdin_fifo = None;
        let mut flush = None;

        if !paths.stdin.is_empty() {
            let path = fifo_path(&paths.stdin, "stdin")?;
            let (r, w) = sys::pipe().map_err(|e| Error::io("create stdin pipe", e))?;
            chown(&r, io_uid, io_gid)?;
            stdio.stdin = Some(r);
            let (cancel_r, cancel_w) =
                sys::pipe().map_err(|e| Error::io("create stdin pipe", e))?;
            let p = path.clone();
            spawn("stdin", move || {
                copy_stdin(&p, File::from(w), &File::from(cancel_r))
            })?;
            stdin_close = Some(File::from(cancel_w));
            stdin_fifo = Some(path);
        }
        let mut logger_pipes: [Option<OwnedFd>; 2] = [None, None];
        let mut logger_cmd = None;
        for (i, (name, uri)) in [("stdout", &paths.stdout), ("stderr", &paths.stderr)]
            .into_iter()
            .enumerate()
        {
            let container_end = match Target::parse(uri, name)? {
                Target::None => continue,
                Target::Fifo(_) => {
                    let mut fifo = open_output_fifo(uri, name)?;
                    let (r, w) =
                        sys::pipe().map_err(|e| Error::io(format!("create {name} pipe"), e))?;
                    let tx = done_tx.clone();
                    outputs += 1;
                    let f = match &flush {
                        Some(f) => Arc::clone(f),
                        None => Arc::clone(flush.insert(Flush::new()?)),
                    };
                    f.register();
                    spawn(name, move || {
                        copy_output(File::from(r), &mut fifo.writer, name, Some(&f), true);
                        let _ = tx.send(Some(fifo.close()));
                    })?;
                    w
                }
                Target::File(path) => OwnedFd::from(open_log_file(&path, name)?),
                Target::Binary(cmd) => {
                    let (r, w) =
                        sys::pipe().map_err(|e| Error::io(format!("create {name} pipe"), e))?;
                    logger_pipes[i] = Some(r);
                    logger_cmd = Some(cmd);
                    w
                }
            };
            chown(&container_end, io_uid, io_gid)?;
            if i == 0 {
                stdio.stdout = Some(container_end);
            } else {
                stdio.stderr = Some(container_end);
            }
        }
        let logger = match logger_cmd {
            None => None,
            Some(cmd) => {
                // A stream not sent to the logger reaches it as an empty pipe.
                let end = |p: Option<OwnedFd>| match p {
                    Some(fd) => Ok(fd),
                    None => sys::pipe()
                        .map(|(r, _)| r)
                        .map_err(|e| Error::io("create logger pipe", e)),
                };
                let (out, err) = (end(logger_pipes[0].take())?, end(logger_pipes[1].take())?);
                Some(BinaryLogger::start(
                    &cmd,
                    owner.container_id,
                    owner.namespace,
                    out,
                    err,
                )?)
            }
        };
        Ok((
            stdio,
            ProcessIo {
                stdin_close: Mutex::new(stdin_close),
                stdin_fifo,
                done,
                outputs,
                flush,
                console: Arc::new(Mutex::new(None)),
                logger,
            },
        ))
    }

    /// Copies a terminal's master end to where stdout goes (a fifo, a file or a logging
    /// binary, which then gets an empty stderr), and the stdin fifo into it.
    pub fn open_terminal(paths: &StdioPaths, master: File, owner: &Owner) -> Result<ProcessIo> {
        let (done_tx, done) = channel();
        let clone = |what: &str| {
            master
                .try_clone()
                .map_err(|e| Error::io(format!("duplicate the terminal for {what}"), e))
        };
        let console = Arc::new(Mutex::new(Some(clone("resizing")?)));
        let mut stdin_close = None;
        let mut stdin_fifo = None;
        if !paths.stdin.is_empty() {
            let path = fifo_path(&paths.stdin, "stdin")?;
            let (cancel_r, cancel_w) =
                sys::pipe().map_err(|e| Error::io("create stdin pipe", e))?;
            let (p, to) = (path.clone(), clone("stdin")?);
            spawn("stdin", move || copy_stdin(&p, to, &File::from(cancel_r)))?;
            stdin_close = Some(File::from(cancel_w));
            stdin_fifo = Some(path);
        }
        let mut outputs = 0;
        let mut logger = None;
        let output = match Target::parse(&paths.stdout, "stdout")? {
            Target::None => None,
            Target::Fifo(_) => Some(Output::Fifo(open_output_fifo(&paths.stdout, "stdout")?)),
            Target::File(path) => Some(Output::Other(open_log_file(&path, "stdout")?)),
            Target::Binary(cmd) => {
                let (r, w) = sys::pipe().map_err(|e| Error::io("create stdout pipe", e))?;
                let (empty, _) = sys::pipe().map_err(|e| Error::io("create stderr pipe", e))?;
                logger = Some(BinaryLogger::start(
                    &cmd,
                    &owner.container_id,
                    &owner.namespace,
                    r,
                    empty,
                )?);
                Some(Output::Other(File::from(w)))
            }
        };
        let mut flush = None;
        if let Some(mut to) = output {
            let console = Arc::clone(&console);
            outputs = 1;
            // Only output to a fifo holds the exit back.
            if let Output::Fifo(_) = to {
                flush = Some(Flush::new()?);
            }
            let f = flush.clone();
            if let Some(f) = &f {
                f.register();
            }
            spawn("console", move || {
                let writer = match &mut to {
                    Output::Fifo(fifo) => &mut fifo.writer,
                    Output::Other(file) => file,
                };
                copy_output(master, writer, "terminal", f.as_deref(), false);
                // The process is gone with its end of the terminal: close ours.
                lock(&console).take();
                let fifo = match to {
                    Output::Fifo(fifo) => Some(fifo.close()),
                    Output::Other(_) => None,
                };
                let _ = done_tx.send(fifo);
            })?;
        }
        Ok(ProcessIo {
            stdin_close: Mutex::new(stdin_close),
            stdin_fifo,
            done,
            outputs,
            flush,
            console,
            logger,
        })
    }

    /// What flushes the output copiers that write to fifos when the process exits
    /// ([`Flush::request`]); None without any, when nothing holds the exit back.
    pub fn flusher(&self) -> Option<Arc<Flush>> {
        self.flush.clone()
    }

    /// ResizePty.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        match lock(&self.console).as_ref() {
            Some(t) => {
                sys::set_winsize(t, rows, cols).map_err(|e| Error::io("resize the terminal", e))
            }
            None => Err(Error::precondition(
                "the process has no terminal (or it has exited)",
            )),
        }
    }

    /// CloseIO: what the client already wrote is delivered, then the process reads
    /// end-of-file on stdin.
    pub fn close_stdin(&self) {
        let Some(mut signal) = lock(&self.stdin_close).take() else {
            return;
        };
        let _ = signal.write_all(b"x");
        if let Some(path) = &self.stdin_fifo {
            // A copier still waiting in open() for a writer is woken by one.
            let _ = sys::open_fifo(path, OFlag::O_WRONLY | OFlag::O_NONBLOCK);
        }
    }

    /// Waits up to `timeout` for the output copiers to reach the end of their streams
    /// (all writers gone) and for the client to read what they wrote to its fifos, then
    /// lets go of stdin.
    ///
    /// The second wait is what keeps output whole: a client such as ctr closes its fifos
    /// as soon as Delete returns, and whatever it had not read by then would be lost.
    /// The copiers have closed their fifos already, when their streams ended: a client
    /// that reads to the end before it asks for Delete (Docker) has its end by then.
    pub fn finish(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut fifos = Vec::new();
        for _ in 0..self.outputs {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(fifo) => fifos.extend(fifo),
                Err(_) => {
                    log::warn!("output still open after {timeout:?}; leaving its copier behind");
                    break;
                }
            }
        }
        for fifo in &fifos {
            if !drained(fifo, deadline) {
                log::warn!("the client read not all output within {timeout:?}");
                break;
            }
        }
        drop(fifos);
        self.close_stdin();
        if let Some(logger) = &self.logger {
            logger.stop();
        }
    }
}

fn lock(m: &Mutex<Option<File>>) -> std::sync::MutexGuard<'_, Option<File>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a terminal's output goes.
enum Output {
    Fifo(OutputFifo),
    /// A log file, or a logging binary's pipe.
    Other(File),
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("io-{name}"))
        .stack_size(COPY_STACK)
        .spawn(f)
        .map(drop)
        .map_err(|e| Error::io(format!("start {name} copier"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    pub(super) const OWNER: IoOwner<'static> = IoOwner {
        uid: 0,
        gid: 0,
        container_id: "c1",
        namespace: "ns",
    };

    #[test]
    fn output_and_stdin_flow_through_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |n: &str| {
            let p = dir.path().join(n);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            p
        };
        let (inp, out) = (mk("in"), mk("out"));
        // The client side, as containerd would hold it.
        let mut out_reader = sys::open_fifo(&out, OFlag::O_RDONLY | OFlag::O_NONBLOCK).unwrap();
        let paths = StdioPaths {
            stdin: inp.display().to_string(),
            stdout: out.display().to_string(),
            ..Default::default()
        };
        let (stdio, pio) = ProcessIo::open(&paths, OWNER).unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read v; echo got $v"])
            .stdin(stdio.stdin.unwrap())
            .stdout(stdio.stdout.unwrap())
            .spawn()
            .unwrap();
        let mut w = sys::open_fifo(&inp, OFlag::O_WRONLY).unwrap();
        w.write_all(b"hello\n").unwrap();
        drop(w);
        child.wait().unwrap();
        pio.finish(Duration::from_secs(5));
        sys::set_blocking(&out_reader).unwrap();
        let mut s = String::new();
        out_reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "got hello\n");
    }

    /// Docker and containerd's CRI plugin read a process's output to its end before they
    /// ask for Delete (which calls finish): the end comes when the process's output ends.
    #[test]
    fn the_client_reads_the_end_of_the_output_before_finish() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        nix::unistd::mkfifo(&out, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut reader = sys::open_fifo(&out, OFlag::O_RDONLY | OFlag::O_NONBLOCK).unwrap();
        let paths = StdioPaths {
            stdout: out.display().to_string(),
            ..Default::default()
        };
        let (stdio, pio) = ProcessIo::open(&paths, OWNER).unwrap();
        std::process::Command::new("echo")
            .arg("bye")
            .stdout(stdio.stdout.unwrap())
            .status()
            .unwrap();
        sys::set_blocking(&reader).unwrap();
        let client = std::thread::spawn(move || {
            let mut s = String::new();
            reader.read_to_string(&mut s).map(|_| s)
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ended = client.is_finished();
        // Lets go of the fifo, which ends the client's read if the copier did not.
        pio.finish(Duration::ZERO);
        assert!(ended, "the output's end reached the client only at finish");
        assert_eq!(client.join().unwrap().unwrap(), "bye\n");
    }

    #[test]
    fn close_stdin_delivers_what_was_written_then_eof() {
        let dir = tempfile::tempdir().unwrap();
        let inp = dir.path().join("in");
        nix::unistd::mkfifo(&inp, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let paths = StdioPaths {
            stdin: inp.display().to_string(),
            ..Default::default()
        };
        let (stdio, pio) = ProcessIo::open(&paths, OWNER).unwrap();
        let child = std::process::Command::new("cat")
            .stdin(stdio.stdin.unwrap())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The client writes and keeps its end open, then asks for CloseIO at once.
        let mut w = sys::open_fifo(&inp, OFlag::O_WRONLY).unwrap();
        w.write_all(b"abc").unwrap();
        pio.close_stdin();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.stdout, b"abc");
        drop(w);
    }
}
