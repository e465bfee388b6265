//! The console socket a runtime sends a terminal's master end to (`--console-socket`).

use std::fs::File;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

/// Where console sockets are made: short paths (a unix socket path has 108 bytes).
const DIR: &str = "/run/rsrunc";

pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(DIR).join(format!(
            "pty-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io_at("create", &dir, e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let path = dir.join("console.sock");
        let listener =
            UnixListener::bind(&path).map_err(|e| Error::io_at("listen on", &path, e))?;
        Ok(ConsoleSocket {
            dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal master the runtime sent. Call after the runtime's create or exec
    /// returned: by then its connection and message wait in the socket's queue.
    pub fn receive(&self) -> Result<File> {
        let failed = |e: std::io::Error| Error::io_at("receive the terminal from", &self.path, e);
        self.listener.set_nonblocking(true).map_err(failed)?;
        let (conn, _) = self.listener.accept().map_err(failed)?;
        conn.set_nonblocking(false).map_err(failed)?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(failed)?;
        let fd = crate::sys::recv_fd(&conn).map_err(failed)?;
        Ok(File::from(fd))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
