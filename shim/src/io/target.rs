//! Where a process's output goes, from the URIs containerd names its stdio by: a fifo, a
//! file (`file://`), a logging program (`binary://`), or nowhere.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::logger_binary::LoggerCommand;
use crate::error::{Error, Result};

/// Where one output stream goes, from its URI.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target {
    None,
    Fifo(PathBuf),
    File(PathBuf),
    Binary(LoggerCommand),
}

impl Target {
    pub(super) fn parse(uri: &str, stream: &str) -> Result<Target> {
        if uri.is_empty() {
            return Ok(Target::None);
        }
        if let Some(p) = uri.strip_prefix("file://") {
            if !p.starts_with('/') {
                return Err(Error::invalid(format!(
                    "{stream} {uri:?}: a file:// URI needs an absolute path"
                )));
            }
            return Ok(Target::File(PathBuf::from(p)));
        }
        if LoggerCommand::is_logger_uri(uri) {
            return Ok(Target::Binary(LoggerCommand::parse(uri)?));
        }
        Ok(Target::Fifo(fifo_path(uri, stream)?))
    }
}

/// `file://PATH`: appended to, created if missing (with its directory).
pub(super) fn open_log_file(path: &Path, name: &str) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io_at(format!("create the directory of {name} log"), path, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io_at(format!("open {name} log file"), path, e))
}

/// A fifo path, plain or as `fifo://`. Any other scheme here is refused by name.
pub(super) fn fifo_path(uri: &str, stream: &str) -> Result<PathBuf> {
    if let Some(p) = uri.strip_prefix("fifo://") {
        return Ok(PathBuf::from(p));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        let also = if stream == "stdin" {
            ""
        } else {
            ", file://, binary:// or binary-v2://"
        };
        return Err(Error::invalid(format!(
            "{stream} {uri:?}: unknown stdio scheme {scheme}://; use a fifo path{also}"
        )));
    }
    if !Path::new(uri).is_absolute() {
        return Err(Error::invalid(format!(
            "{stream} {uri:?} is not an absolute fifo path"
        )));
    }
    Ok(PathBuf::from(uri))
}

pub(super) fn chown(fd: &OwnedFd, uid: u32, gid: u32) -> Result<()> {
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    nix::unistd::fchown(
        fd,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| {
        Error::io(
            format!("chown stdio pipe to {uid}:{gid} (IoUid/IoGid)"),
            e.into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Code;

    #[test]
    fn fifo_uris() {
        assert_eq!(
            fifo_path("/run/x/stdout", "stdout").unwrap(),
            Path::new("/run/x/stdout")
        );
        assert_eq!(
            fifo_path("fifo:///run/x", "stdout").unwrap(),
            Path::new("/run/x")
        );
        let e = fifo_path("syslog://host/x", "stdout").unwrap_err();
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert!(e.to_string().contains("syslog://"), "{e}");
        assert!(matches!(
            Target::parse("file:///var/log/x", "stdout").unwrap(),
            Target::File(_)
        ));
        assert!(matches!(
            Target::parse("binary:///bin/cat", "stdout").unwrap(),
            Target::Binary(LoggerCommand {
                ready_byte: false,
                ..
            })
        ));
        assert!(matches!(
            Target::parse("binary-v2:///bin/cat", "stdout").unwrap(),
            Target::Binary(LoggerCommand {
                ready_byte: true,
                ..
            })
        ));
        assert_eq!(Target::parse("", "stdout").unwrap(), Target::None);
        assert_eq!(
            fifo_path("relative/path", "stdin").unwrap_err().code(),
            Code::INVALID_ARGUMENT
        );
    }
}
