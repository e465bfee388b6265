#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Exec requests as containerd 2.x clients send them, straight over ttrpc into a
//! container's shim, answered as containerd's Go shim answers them: the request's terminal
//! flag wins over the process spec's, an exec deleted before it started reports status 0,
//! and ResizePty on a process without a terminal is a no-op. And what a client sees of an
//! exec's output when it learns that the exec exited.

use std::io::Read;
use std::path::{Path, PathBuf};

use containerd_shim_protos::api::{
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, ResizePtyRequest,
};
use containerd_shim_protos::protobuf::well_known_types::{any::Any, empty::Empty};
use oci_spec::runtime::Process;
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{bundle_spec, unique_id, Daemon, Oci};

/// A running container's shim connection and the `process` of its spec.
fn shim_of(d: &Daemon, id: &str) -> (ShimConn, Process) {
    let bundle = d.bundle(id);
    let address = std::fs::read_to_string(bundle.join("address")).unwrap();
    let process = bundle_spec(&bundle).process().clone().unwrap();
    (ShimConn::connect(address.trim()), process)
}

/// The container's process spec running `args`.
fn with_args(base: &Process, args: &[&str]) -> Process {
    let mut p = base.clone();
    p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    p
}

fn exec_request(
    id: &str,
    exec_id: &str,
    process: &Process,
    terminal: bool,
    stdout: &Fifo,
    stderr: Option<&Fifo>,
) -> ExecProcessRequest {
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        terminal,
        stdout: stdout.path.display().to_string(),
        stderr: stderr
            .map(|f| f.path.display().to_string())
            .unwrap_or_default(),
        spec: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(process).unwrap(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// A fifo with a reader thread that collects everything written to it.
struct Fifo {
    path: PathBuf,
    reader: Option<std::thread::JoinHandle<String>>,
}

impl Fifo {
    fn new(dir: &Path, name: &str) -> Fifo {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let p = path.clone();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::fs::File::open(&p).and_then(|mut f| f.read_to_string(&mut s));
            s
        });
        Fifo {
            path,
            reader: Some(reader),
        }
    }

    /// Whether the reader has read to the end of the stream (every writer is gone).
    fn ended(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| r.is_finished())
    }

    /// What was written, once every writer is gone. A reader still waiting to open the
    /// fifo (nobody wrote to it, or its thread has not got there yet) is ended by a writer
    /// of our own, opened until the reader has finished.
    fn text(mut self) -> String {
        use std::os::unix::fs::OpenOptionsExt;
        let reader = self.reader.take().unwrap();
        let done = rsrunc_e2e::poll_until(std::time::Duration::from_secs(20), || {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&self.path);
            reader.is_finished()
        });
        assert!(
            done,
            "{}: a writer still holds the fifo",
            self.path.display()
        );
        reader.join().unwrap()
    }
}

#[test]
fn exec_requests_are_answered_as_the_go_shim_answers_them() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("execfid");
        d.run_detached(oci, &id, &["/bin/sleep", "300"]);
        let (conn, base) = shim_of(&d, &id);

        // The request's terminal flag wins, whichever way the spec disagrees.
        for (req_terminal, spec_terminal) in [(true, false), (false, true)] {
            let exec_id = format!("tty-{req_terminal}");
            let out = Fifo::new(d.dir(), &format!("{id}-{exec_id}.out"));
            // With a terminal both streams are the terminal: no stderr of its own.
            let err = (!req_terminal).then(|| Fifo::new(d.dir(), &format!("{id}-{exec_id}.err")));
            let mut process = with_args(
                &base,
                &[
                    "/bin/sh",
                    "-c",
                    "if [ -t 1 ]; then echo tty:yes; else echo tty:no; fi; exit 4",
                ],
            );
            process.set_terminal(Some(spec_terminal));
            let req = exec_request(&id, &exec_id, &process, req_terminal, &out, err.as_ref());
            let _: Empty = conn.call("Exec", &req).unwrap();
            let started = conn.start_process(&id, &exec_id);
            assert!(
                started.is_ok(),
                "{oci:?}: exec with terminal {req_terminal} (spec says {spec_terminal}) did not start: {started:?}"
            );
            let (waited, deleted) = conn.wait_and_delete(&id, &exec_id);
            assert_eq!((waited, deleted), (4, 4), "{oci:?} terminal {req_terminal}");
            let text = out.text();
            drop(err.map(Fifo::text));
            let want = if req_terminal { "tty:yes" } else { "tty:no" };
            assert!(text.contains(want), "{oci:?}: {want} not in {text:?}");
        }

        // Created, never started, deleted: status 0.
        let process = with_args(&base, &["/bin/true"]);
        let (out, err) = (
            Fifo::new(d.dir(), &format!("{id}-never.out")),
            Fifo::new(d.dir(), &format!("{id}-never.err")),
        );
        let _: Empty = conn
            .call(
                "Exec",
                &exec_request(&id, "never", &process, false, &out, Some(&err)),
            )
            .unwrap();
        let deleted: DeleteResponse = conn
            .call(
                "Delete",
                &DeleteRequest {
                    id: id.clone(),
                    exec_id: "never".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(deleted.exit_status, 0, "{oci:?}: exec deleted before start");
        out.text();
        err.text();

        // ResizePty on a running process without a terminal: nothing to do, no error.
        let process = with_args(&base, &["/bin/sleep", "30"]);
        let (out, err) = (
            Fifo::new(d.dir(), &format!("{id}-notty.out")),
            Fifo::new(d.dir(), &format!("{id}-notty.err")),
        );
        let _: Empty = conn
            .call(
                "Exec",
                &exec_request(&id, "notty", &process, false, &out, Some(&err)),
            )
            .unwrap();
        conn.start_process(&id, "notty").unwrap();
        let resized: Result<Empty, _> = conn.call(
            "ResizePty",
            &ResizePtyRequest {
                id: id.clone(),
                exec_id: "notty".into(),
                width: 80,
                height: 24,
                ..Default::default()
            },
        );
        assert!(
            resized.is_ok(),
            "{oci:?}: ResizePty without a terminal: {resized:?}"
        );
        let _: Empty = conn
            .call(
                "Kill",
                &KillRequest {
                    id: id.clone(),
                    exec_id: "notty".into(),
                    signal: 9,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(conn.wait_and_delete(&id, "notty").0, 137, "{oci:?}");
        out.text();
        err.text();

        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// Docker and containerd's CRI plugin read a process's output fifos to their end before
/// they ask for Delete (containerd's client waits for its copiers first), so the shim must
/// close its ends of the fifos once the process's output has ended, not at Delete: when it
/// did not, every `docker stop` and `docker kill` hung.
#[test]
fn output_fifos_end_when_the_process_exits_before_delete() {
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("fifoend");
        d.run(oci, &["-d"], &id, &["/bin/sleep", "300"]).ok();
        d.wait_status(&id, "RUNNING");
        let (conn, base) = shim_of(&d, &id);
        for terminal in [false, true] {
            let exec_id = format!("end-{terminal}");
            let out = Fifo::new(d.dir(), &format!("{id}-{exec_id}.out"));
            let err = (!terminal).then(|| Fifo::new(d.dir(), &format!("{id}-{exec_id}.err")));
            let process = with_args(&base, &["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
            let req = exec_request(&id, &exec_id, &process, terminal, &out, err.as_ref());
            let _: Empty = conn.call("Exec", &req).unwrap();
            conn.start_process(&id, &exec_id).unwrap();
            let w = conn.wait_process(&id, &exec_id);
            assert_eq!(w.exit_status, 3, "{oci:?} terminal {terminal}");
            // The readers reach the end of their streams with no Delete asked for.
            let ended = rsrunc_e2e::poll_until(std::time::Duration::from_secs(20), || {
                out.ended() && err.as_ref().is_none_or(Fifo::ended)
            });
            let deleted: DeleteResponse = conn
                .call(
                    "Delete",
                    &DeleteRequest {
                        id: id.clone(),
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert!(
                ended,
                "{oci:?} terminal {terminal}: the output fifos reached their end only at Delete"
            );
            assert_eq!(deleted.exit_status, 3);
            let text = out.text();
            assert!(text.contains("out"), "{oci:?}: {text:?}");
            if let Some(err) = err {
                assert_eq!(err.text(), "err\n", "{oci:?}");
            } else {
                assert!(text.contains("err"), "{oci:?}: {text:?}");
            }
        }
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// A fifo whose client reads all that is written to it and counts it, and which the test
/// can hold still for a moment to see how much has reached it: what the client read, and
/// what the fifo holds unread.
struct CountedFifo {
    path: PathBuf,
    /// The bytes read; held by the client around each read, so that while the test holds
    /// it nothing leaves the fifo.
    read: std::sync::Arc<std::sync::Mutex<usize>>,
    /// An end of our own, non-blocking, that reads only while the client is held still;
    /// opened for writing too, so the client never sees the stream end.
    probe: std::fs::File,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: Option<std::thread::JoinHandle<()>>,
}

impl CountedFifo {
    fn new(dir: &Path, name: &str) -> CountedFifo {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::Ordering;
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let probe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)
            .unwrap();
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)
            .unwrap();
        let read = std::sync::Arc::new(std::sync::Mutex::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (read.clone(), stop.clone());
        let client = std::thread::spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut buf = vec![0u8; 64 * 1024];
            while !s.load(Ordering::Relaxed) {
                let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
                let mut n = r.lock().unwrap();
                if let Ok(k) = fifo.read(&mut buf) {
                    *n += k;
                }
            }
        });
        CountedFifo {
            path,
            read,
            probe,
            stop,
            client: Some(client),
        }
    }

    /// How many bytes have reached the fifo so far: with the client held still, what it
    /// read and what the fifo holds (read out through the probe).
    fn reached(&self) -> usize {
        let mut read = self.read.lock().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(k @ 1..) = (&self.probe).read(&mut buf) {
            *read += k;
        }
        *read
    }
}

impl Drop for CountedFifo {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(c) = self.client.take() {
            let _ = c.join();
        }
    }
}

/// A client that acts once it learns an exec exited (Wait returned; the TaskExit event
/// goes out at the same moment) must find all the exec's output in its fifo by then, not
/// part of it still in the shim's pipe: here execs write 256 KiB, more than the pipe and
/// the fifo hold together, and exit at once. containerd's Go shim answers as soon as it
/// reaps the exec, its copier possibly behind.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: Wait and TaskExit only once the exec's output is in its fifos"
)]
fn an_exec_output_is_all_in_its_fifo_when_its_exit_is_known() {
    rsrunc_e2e::ours_only();
    const SIZE: usize = 256 * 1024;
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("exitout");
        d.run_detached(oci, &id, &["/bin/sleep", "300"]);
        let (conn, base) = shim_of(&d, &id);
        let process = with_args(&base, &["/bin/sh", "-c", "head -c 262144 /dev/zero"]);
        let mut short = Vec::new();
        for n in 0..20 {
            let terminal = n % 2 == 1;
            let exec_id = format!("big-{n}");
            let out = CountedFifo::new(d.dir(), &format!("{id}-{exec_id}.out"));
            // The Go shim needs a stderr without a terminal.
            let err = (!terminal).then(|| Fifo::new(d.dir(), &format!("{id}-{exec_id}.err")));
            let req = ExecProcessRequest {
                id: id.clone(),
                exec_id: exec_id.clone(),
                terminal,
                stdout: out.path.display().to_string(),
                stderr: err
                    .as_ref()
                    .map(|f| f.path.display().to_string())
                    .unwrap_or_default(),
                spec: Some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: serde_json::to_vec(&process).unwrap(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            };
            let _: Empty = conn.call("Exec", &req).unwrap();
            conn.start_process(&id, &exec_id).unwrap();
            let waited = conn.wait_process(&id, &exec_id);
            let reached = out.reached();
            assert_eq!(waited.exit_status, 0, "{oci:?} {exec_id}");
            if reached != SIZE {
                short.push(format!(
                    "{exec_id} (terminal {terminal}): {reached} of {SIZE}"
                ));
            }
            let _: DeleteResponse = conn
                .call(
                    "Delete",
                    &DeleteRequest {
                        id: id.clone(),
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
            // Everything arrives in the end, whatever Wait saw.
            let all = rsrunc_e2e::poll_until(std::time::Duration::from_secs(20), || {
                out.reached() == SIZE
            });
            assert!(
                all,
                "{oci:?} {exec_id}: {} of {SIZE} bytes ever arrived",
                out.reached()
            );
            drop(err.map(Fifo::text));
        }
        assert!(
            short.is_empty(),
            "{oci:?}: output still on its way when Wait returned: {short:?}"
        );
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}

/// A client that reads nothing until the exec has exited (its fifo full, the rest of the
/// output waiting in the shim's pipe) still gets Wait's answer, and then all the output
/// when it reads: the exit waits for the output only a bounded time, and the output is
/// not dropped when it stops waiting.
#[test]
fn an_exec_whose_client_reads_nothing_still_exits_and_keeps_its_output() {
    use std::os::unix::fs::OpenOptionsExt;
    const SIZE: usize = 100 * 1024;
    let d = Daemon::start();
    for oci in Oci::ALL {
        let id = unique_id("noread");
        d.run_detached(oci, &id, &["/bin/sleep", "300"]);
        let (conn, base) = shim_of(&d, &id);
        let path = d.dir().join(format!("{id}.out"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Opened, not read: the fifo fills up.
        let mut client = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&path)
            .unwrap();
        let err = Fifo::new(d.dir(), &format!("{id}.err"));
        let out = Fifo {
            path: path.clone(),
            reader: None,
        };
        let process = with_args(&base, &["/bin/sh", "-c", "head -c 102400 /dev/zero"]);
        let req = exec_request(&id, "quiet", &process, false, &out, Some(&err));
        let _: Empty = conn.call("Exec", &req).unwrap();
        conn.start_process(&id, "quiet").unwrap();
        assert_eq!(conn.wait_process(&id, "quiet").exit_status, 0, "{oci:?}");
        // Now the client reads, with Delete (which waits for it to have read) alongside.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let done = rsrunc_e2e::poll_until(std::time::Duration::from_secs(20), || {
                while let Ok(n @ 1..) = client.read(&mut buf) {
                    all.extend_from_slice(&buf[..n]);
                }
                all.len() >= SIZE
            });
            (done, all.len())
        });
        let deleted: DeleteResponse = conn
            .call(
                "Delete",
                &DeleteRequest {
                    id: id.clone(),
                    exec_id: "quiet".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(deleted.exit_status, 0, "{oci:?}");
        let (done, got) = reader.join().unwrap();
        assert!(done, "{oci:?}: {got} of {SIZE} bytes arrived");
        assert_eq!(got, SIZE, "{oci:?}");
        err.text();
        d.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
        d.wait_status(&id, "STOPPED");
        d.ctr(&["task", "rm", &id]).ok();
        d.ctr(&["containers", "rm", &id]).ok();
    }
}
