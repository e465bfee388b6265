//! Kubernetes' streaming protocol, as `kubectl exec` and `kubectl attach` speak it to the
//! streaming server of containerd's CRI plugin: the URL that CRI's Exec or Attach returns,
//! opened as a WebSocket with the `v4.channel.k8s.io` subprotocol. Every binary message
//! starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the final status (a JSON
//! `metav1.Status`, whose cause `ExitCode` carries a non-zero exit code), 4 terminal size.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

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
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let (ws, resp) =
            tungstenite::client(req, tcp).map_err(|e| format!("handshake with {ws_url}: {e}"))?;
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
