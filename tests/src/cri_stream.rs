//! Kubernetes' streaming protocol, as `kubectl exec` and `kubectl attach` speak it to the
//! streaming server of containerd's CRI plugin: the URL that CRI's Exec or Attach returns,
//! opened as a WebSocket with the `v4.channel.k8s.io` subprotocol. Every binary message
//! starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the final status (a JSON
//! `metav1.Status`, whose cause `ExitCode` carries a non-zero exit code), 4 terminal size.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::cri::Client;
use crate::poll_until;

const SUBPROTOCOL: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// What came back on one stream.
#[derive(Debug, Default)]
pub struct Streamed {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The final status, if the server sent one before closing.
    pub status: Option<serde_json::Value>,
    /// Whether the server closed the stream.
    pub closed: bool,
}

impl Streamed {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The exit code the status reports: 0 for "Success", the `ExitCode` cause for a
    /// failure, None without a status or with a failure that carries no code.
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.status.as_ref()?;
        if status["status"] == "Success" {
            return Some(0);
        }
        status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// An open stream.
pub struct Stream {
    ws: WebSocket<TcpStream>,
    got: Streamed,
}

impl Stream {
    /// Opens the URL CRI returned (`http://HOST:PORT/exec/TOKEN` or `/attach/TOKEN`).
    pub fn open(url: &str) -> Result<Stream, String> {
        let ws_url = url
            .strip_prefix("http://")
            .map(|rest| format!("ws://{rest}"))
            .ok_or_else(|| format!("not an http URL: {url}"))?;
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut req = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{ws_url}: {e}"))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            SUBPROTOCOL.parse().map_err(|e| format!("{e}"))?,
        );
        let tcp = TcpStream::connect(&host).map_err(|e| format!("connect {host}: {e}"))?;
        // The handshake waits as long as a slow machine needs; the reads after it wake
        // every 200 ms to check their deadline.
        tcp.set_read_timeout(Some(STREAM_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let (ws, resp) =
            tungstenite::client(req, tcp).map_err(|e| format!("handshake with {ws_url}: {e}"))?;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let proto = resp.headers().get("Sec-WebSocket-Protocol");
        if proto.and_then(|p| p.to_str().ok()) != Some(SUBPROTOCOL) {
            return Err(format!("{ws_url} answered subprotocol {proto:?}"));
        }
        Ok(Stream {
            ws,
            got: Streamed::default(),
        })
    }

    /// Writes `data` to the process's stdin.
    pub fn send(&mut self, data: &[u8]) -> Result<(), String> {
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(STDIN);
        msg.extend_from_slice(data);
        self.ws
            .send(Message::Binary(msg.into()))
            .map_err(|e| format!("write stdin: {e}"))
    }

    /// Reads until `done` holds for what came so far, the server closes the stream, or
    /// `timeout` passes; returns whether `done` held.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&Streamed) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.got) {
            if self.got.closed || Instant::now() > deadline {
                return false;
            }
            match self.ws.read() {
                Ok(Message::Binary(b)) => self.take(&b),
                Ok(Message::Close(_)) => self.got.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.got.closed = true,
            }
        }
        true
    }

    /// Reads until the server closes the stream (the process exited) or `timeout` passes.
    pub fn finish(mut self, timeout: Duration) -> Streamed {
        self.read_until(timeout, |s| s.closed);
        self.got
    }

    /// Closes the stream from this side (as kubectl does when detaching).
    pub fn close(mut self) -> Streamed {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        self.got
    }

    fn take(&mut self, msg: &[u8]) {
        let Some((&channel, data)) = msg.split_first() else {
            return;
        };
        match channel {
            STDOUT => self.got.stdout.extend_from_slice(data),
            STDERR => self.got.stderr.extend_from_slice(data),
            STATUS if !data.is_empty() => self.got.status = serde_json::from_slice(data).ok(),
            _ => {}
        }
    }
}

/// What kubelet does through the streaming server and the log, checked on a running
/// container whose command is [`ECHOER`] with its stdin open: `kubectl exec -i` (stdin,
/// stdout and stderr apart, the exit code), `kubectl exec -t`, `kubectl attach -i`, and a
/// log rotation (rename, ReopenContainerLog, the next line in a new file). `log` is the
/// container's log file; `what` names the case in failures.
pub fn check_streams_and_log(cri: &Client, id: &str, log: &Path, what: &str) {
    let url = cri
        .exec(
            id,
            &[
                "/bin/sh",
                "-c",
                "read x; echo got-$x; echo err-$x >&2; exit 5",
            ],
            true,
            false,
        )
        .unwrap_or_else(|e| panic!("{what}: Exec: {e}"));
    let mut s = Stream::open(&url).unwrap_or_else(|e| panic!("{what}: exec stream: {e}"));
    s.send(b"hello\n").unwrap();
    let got = s.finish(STREAM_TIMEOUT);
    assert_eq!(
        (got.stdout(), got.stderr(), got.exit_code()),
        (
            "got-hello\n".to_string(),
            "err-hello\n".to_string(),
            Some(5)
        ),
        "{what}: exec with stdin: {got:?}"
    );

    let url = cri
        .exec(
            id,
            &["/bin/sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty"],
            true,
            true,
        )
        .unwrap_or_else(|e| panic!("{what}: Exec with a terminal: {e}"));
    let got = Stream::open(&url)
        .unwrap_or_else(|e| panic!("{what}: exec stream: {e}"))
        .finish(STREAM_TIMEOUT);
    assert!(
        got.stdout().contains("is-a-tty") && got.exit_code() == Some(0),
        "{what}: exec with a terminal: {got:?}"
    );

    attach_echo(cri, id, "ping", what);
    assert!(
        poll_until(Duration::from_secs(10), || logged(log, "echo-ping")),
        "{what}: echo-ping is not in {}: {:?}",
        log.display(),
        std::fs::read_to_string(log)
    );

    // Log rotation as kubelet does it: rename, then ReopenContainerLog; what comes after
    // goes to a new file at the old path.
    let rotated = log.with_extension("log.1");
    std::fs::rename(log, &rotated).unwrap();
    cri.reopen_container_log(id)
        .unwrap_or_else(|e| panic!("{what}: ReopenContainerLog: {e}"));
    attach_echo(cri, id, "pong", what);
    assert!(
        poll_until(Duration::from_secs(10), || logged(log, "echo-pong")),
        "{what}: echo-pong is not in the reopened {}: {:?}",
        log.display(),
        std::fs::read_to_string(log)
    );
    assert!(
        !logged(&rotated, "echo-pong"),
        "{what}: echo-pong went to the rotated log too"
    );
    // A CRI log line: TIMESTAMP STREAM TAG TEXT.
    let text = std::fs::read_to_string(log).unwrap();
    let line = text.lines().find(|l| l.ends_with("echo-pong")).unwrap();
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(
        fields[1..],
        ["stdout", "F", "echo-pong"],
        "{what}: log line {line:?}"
    );
}

/// Echoes every line of its stdin back as `echo-LINE`.
pub const ECHOER: &str = "while read l; do echo echo-$l; done";

const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a line of the CRI log `path` ends with `text`.
fn logged(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|l| l.lines().any(|l| l.ends_with(text)))
}

/// Sends `line` to container `id`'s stdin through Attach and reads it echoed back.
pub fn attach_echo(cri: &Client, id: &str, line: &str, what: &str) {
    let url = cri
        .attach(id, true)
        .unwrap_or_else(|e| panic!("{what}: Attach: {e}"));
    let mut s = Stream::open(&url).unwrap_or_else(|e| panic!("{what}: attach stream: {e}"));
    s.send(format!("{line}\n").as_bytes()).unwrap();
    let want = format!("echo-{line}\n");
    let echoed = s.read_until(STREAM_TIMEOUT, |got| got.stdout().contains(&want));
    let got = s.close();
    assert!(
        echoed,
        "{what}: attached, wrote {line:?}, read back {got:?}"
    );
}
