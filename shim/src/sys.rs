//! Small system calls the shim needs, all through nix (no unsafe here).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::stat::Mode;

/// Makes this process the reaper of its orphaned descendants.
pub fn set_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(Into::into)
}

/// A pipe whose ends are closed on exec (the runtime gets them as stdio, by dup).
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Into::into)
}

/// Opens a FIFO with extra flags, close-on-exec.
pub fn open_fifo(path: &Path, flags: OFlag) -> std::io::Result<File> {
    let fd = nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())?;
    Ok(File::from(fd))
}

/// Lets `fd` survive exec, to hand a listening socket to the serving shim.
pub fn clear_cloexec(fd: impl AsFd) -> std::io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok(())
}

/// Clears O_NONBLOCK so reads and writes wait.
#[cfg(test)]
pub fn set_blocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Waits until `data` or `cancel` is readable (or hung up); says which.
pub fn wait_readable(data: &impl AsFd, cancel: &impl AsFd) -> std::io::Result<(bool, bool)> {
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

/// Sets O_NONBLOCK so reads return at once.
pub fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The uid of the process at the other end of a unix socket.
pub fn peer_uid(fd: impl AsFd) -> std::io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(cred.uid())
}
