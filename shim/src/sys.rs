//! Small system calls the shim needs, through nix where it has them. The one module
//! allowed unsafe code (`main.rs`): each block says why it is sound.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
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

/// Opens again what `fd` names (an O_PATH descriptor, say), through /proc/self/fd: the
/// same file even if its path was removed or reused meanwhile.
pub fn reopen(fd: &impl AsFd, flags: OFlag) -> std::io::Result<File> {
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    open_fifo(Path::new(&path), flags)
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

/// Sets O_NONBLOCK so reads return at once.
pub fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Takes ownership of the listening socket `start` left open at `fd` for this process.
pub fn inherited_listener(fd: RawFd) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    // An open descriptor, or EBADF before anything claims the number.
    fcntl_getfd(fd)?;
    // SAFETY: `start` opened the socket at this number for this process and nothing else
    // here refers to it (the number came from the environment `start` set, read once);
    // the listener owns it from now on.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    // `start` left it inheritable for this process; the runtimes it starts must not hold it.
    fcntl(&listener, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(listener)
}

fn fcntl_getfd(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed number fails with EBADF.
    match unsafe { libc::fcntl(fd, libc::F_GETFD) } {
        -1 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// Receives one file descriptor sent with SCM_RIGHTS on a connected unix socket: how
/// runc and crun hand over a terminal's master end (`--console-socket`).
pub fn recv_fd(sock: &impl AsFd) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut fds = fds.into_iter();
            if let Some(fd) = fds.next() {
                // SAFETY: the kernel just installed this descriptor in our table for us
                // (SCM_RIGHTS); nothing else refers to it, so taking ownership is sound.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                for extra in fds {
                    // SAFETY: as above; extra descriptors are owned here only to be closed.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                return Ok(owned);
            }
        }
    }
    Err(std::io::Error::other(
        "the runtime sent no terminal descriptor on the console socket",
    ))
}

/// Sets a terminal's window size (ResizePty).
pub fn set_winsize(fd: &impl AsFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which points to a live
    // local; the fd is borrowed from an open terminal for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes written to a pipe or fifo and not read yet (FIONREAD).
pub fn unread_bytes(fd: &impl AsFd) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, to a live local.
    match unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::FIONREAD, &mut n) } {
        -1 => Err(std::io::Error::last_os_error()),
        _ => Ok(n.max(0) as usize),
    }
}

/// A pidfd for `pid`: it pins the process, so a signal sent through it can never reach a
/// process that reused the pid, and it becomes readable when the process exits.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `waitpid(-1, WNOHANG)`: the pid and raw status of a child that changed state, None
/// if none did. Raw, as nix's `WaitStatus` fails (EINVAL) for a child killed by a
/// real-time signal, and that exit would be lost.
pub fn wait_any() -> std::io::Result<Option<(i32, i32)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a live, writable c_int for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    match pid {
        0 => Ok(None),
        p if p < 0 => Err(std::io::Error::last_os_error()),
        p => Ok(Some((p, status))),
    }
}

/// kill(2) with any signal number, real-time ones included (nix's `Signal` has not).
pub fn kill(pid: i32, signal: libc::c_int) -> std::io::Result<()> {
    if pid <= 0 {
        // 0 and negative pids name process groups: never meant here.
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn pidfd_send_signal(pidfd: &impl AsFd, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the descriptor is borrowed and open for the call; the null siginfo asks the
    // kernel to fill it in as for kill(2); flags must be 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// prctl's `type` for PR_SCHED_CORE: one task, its thread group, its process group.
const PIDTYPE_PID: libc::c_ulong = 0;
const PIDTYPE_TGID: libc::c_ulong = 1;

/// Gives this process (all its threads) a new core-scheduling cookie: tasks with different
/// cookies never share a physical core's SMT siblings at once. Every process forked from
/// here on inherits it, so the serving shim, the runtimes it runs and their containers
/// share one cookie (containerd's `SCHED_CORE=1`).
pub fn sched_core_create() -> std::io::Result<()> {
    // SAFETY: PR_SCHED_CORE_CREATE takes integers only (pid 0: this task; the type) and a
    // zero address; it changes the calling thread group's cookie and nothing in memory.
    let r = unsafe {
        libc::prctl(
            libc::PR_SCHED_CORE,
            libc::PR_SCHED_CORE_CREATE as libc::c_ulong,
            0 as libc::c_ulong,
            PIDTYPE_TGID,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(sched_core_error("create a core-scheduling cookie"));
    }
    Ok(())
}

/// The core-scheduling cookie of process `pid` (0: none; 0 for `pid` means this one).
pub fn sched_core_cookie(pid: i32) -> std::io::Result<u64> {
    let mut cookie: u64 = 0;
    // SAFETY: PR_SCHED_CORE_GET writes one 64-bit cookie to the address given, which points
    // at `cookie`, a live u64 of this frame.
    let r = unsafe {
        libc::prctl(
            libc::PR_SCHED_CORE,
            libc::PR_SCHED_CORE_GET as libc::c_ulong,
            pid as libc::c_ulong,
            PIDTYPE_PID,
            &mut cookie as *mut u64 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(sched_core_error(&format!(
            "read the core-scheduling cookie of pid {pid}"
        )));
    }
    Ok(cookie)
}

/// The last error of a PR_SCHED_CORE call, with what it means: a kernel built without
/// CONFIG_SCHED_CORE knows no such prctl (EINVAL); one without SMT refuses it (ENODEV).
fn sched_core_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    let why = match e.raw_os_error() {
        Some(libc::EINVAL) => {
            ": the kernel has no core scheduling (built without CONFIG_SCHED_CORE)"
        }
        Some(libc::ENODEV) => ": the CPU has no SMT siblings, so no core scheduling",
        _ => "",
    };
    std::io::Error::new(e.kind(), format!("{what}: {e}{why}"))
}

/// SIGKILL to `cmd`'s child when the thread that started it (or the shim) dies.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    let io_error = std::io::Error::last_os_error;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec, only async-signal-safe calls, no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let armed = libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0;
            if libc::getppid() != parent {
                libc::_exit(1); // the parent died before the signal was armed
            }
            armed.then_some(()).ok_or_else(io_error)
        });
    }
}

/// Hands free heap pages back to the kernel. After a burst of concurrent work the heap
/// keeps its high-water mark otherwise: glibc trims only its top.
pub fn release_free_memory() {
    // SAFETY: malloc_trim is thread-safe; it only returns pages that hold no allocation.
    unsafe { libc::malloc_trim(0) };
}

/// Loop devices (linux/loop.h): [`loop_device::loop_attach`] binds a file to a free one.
pub mod loop_device {
    use std::fs::File;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::PathBuf;

    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;

    pub const LO_FLAGS_READ_ONLY: u32 = 1;
    pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
    pub const LO_FLAGS_DIRECT_IO: u32 = 16;
    const LO_NAME_SIZE: usize = 64;

    /// `struct loop_info64`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct LoopInfo64 {
        device: u64,
        inode: u64,
        rdevice: u64,
        offset: u64,
        sizelimit: u64,
        number: u32,
        encrypt_type: u32,
        encrypt_key_size: u32,
        flags: u32,
        file_name: [u8; LO_NAME_SIZE],
        crypt_name: [u8; LO_NAME_SIZE],
        encrypt_key: [u8; 32],
        init: [u64; 2],
    }

    /// `struct loop_config` (LOOP_CONFIGURE, Linux 5.8).
    #[repr(C)]
    struct LoopConfig {
        fd: u32,
        block_size: u32,
        info: LoopInfo64,
        reserved: [u64; 8],
    }

    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
    nix::ioctl_write_int_bad!(loop_set_direct_io, 0x4C08);

    /// Attaches `backing` (its path `name` is recorded for `losetup -a`) to a free loop
    /// device with `flags` (`LO_FLAGS_*`); returns the device, opened, and its path. With
    /// [`LO_FLAGS_AUTOCLEAR`] the kernel frees the device when the last user is gone: the
    /// returned descriptor, then the filesystem mounted from it.
    pub fn loop_attach(backing: &File, name: &str, flags: u32) -> std::io::Result<(File, PathBuf)> {
        let control = nix::fcntl::open(
            "/dev/loop-control",
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| std::io::Error::other(format!("open /dev/loop-control: {e}")))?;
        let mut info = LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset: 0,
            sizelimit: 0,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags,
            file_name: [0; LO_NAME_SIZE],
            crypt_name: [0; LO_NAME_SIZE],
            encrypt_key: [0; 32],
            init: [0; 2],
        };
        let n = name.len().min(LO_NAME_SIZE - 1);
        info.file_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let mode = if flags & LO_FLAGS_READ_ONLY != 0 {
            OFlag::O_RDONLY
        } else {
            OFlag::O_RDWR
        };
        // A device found free can be taken by someone else before we configure it
        // (EBUSY): take the next free one, as losetup does.
        let mut last = Errno::EBUSY;
        for _ in 0..100 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument; the descriptor is open.
            let number = unsafe { loop_ctl_get_free(control.as_raw_fd()) }
                .map_err(|e| std::io::Error::other(format!("find a free loop device: {e}")))?;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let dev = nix::fcntl::open(&path, mode | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| std::io::Error::other(format!("open {}: {e}", path.display())))?;
            match configure(&dev, backing, info) {
                Ok(()) => return Ok((File::from(dev), path)),
                Err(Errno::EBUSY) => last = Errno::EBUSY,
                Err(e) => {
                    return Err(std::io::Error::other(format!(
                        "attach to {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Err(std::io::Error::other(format!(
            "attach to a free loop device: {last} 100 times"
        )))
    }

    fn configure(dev: &OwnedFd, backing: &File, info: LoopInfo64) -> Result<(), Errno> {
        let config = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `loop_config` (repr(C), as linux/loop.h lays it
        // out) from a live local; both descriptors are open for the call.
        match unsafe { loop_configure(dev.as_raw_fd(), &config) } {
            Ok(_) => return Ok(()),
            // Before Linux 5.8: attach, then set the status.
            Err(Errno::EINVAL) | Err(Errno::ENOTTY) => {}
            Err(e) => return Err(e),
        }
        let mut info = config.info;
        let direct_io = info.flags & LO_FLAGS_DIRECT_IO != 0;
        info.flags &= !LO_FLAGS_DIRECT_IO;
        // SAFETY: LOOP_SET_FD takes a descriptor number by value; it is open.
        unsafe { loop_set_fd(dev.as_raw_fd(), backing.as_raw_fd()) }?;
        // SAFETY: LOOP_SET_STATUS64 reads one `loop_info64` from a live local.
        let mut done = unsafe { loop_set_status64(dev.as_raw_fd(), &info) };
        if direct_io && done.is_ok() {
            // SAFETY: LOOP_SET_DIRECT_IO takes an integer by value.
            done = unsafe { loop_set_direct_io(dev.as_raw_fd(), 1) };
        }
        if let Err(e) = done {
            // SAFETY: LOOP_CLR_FD takes no argument; it detaches what we just attached.
            let _ = unsafe { loop_clr_fd(dev.as_raw_fd()) };
            return Err(e);
        }
        Ok(())
    }
}

/// Idmapped mounts: a user namespace holding an id mapping ([`idmap::user_namespace`]),
/// and detached copies of mounts shifted by it ([`idmap::idmapped_copy`]).
pub mod idmap {
    use std::ffi::CString;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use nix::sys::wait::{waitid, Id, WaitPidFlag};

    /// `struct clone_args`, its first version (CLONE_ARGS_SIZE_VER0).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }

    /// A user namespace whose `uid_map` and `gid_map` are the given texts (lines of
    /// `inside outside count`), held by a descriptor of it.
    ///
    /// A process is needed to own the namespace while the maps are written: a child cloned
    /// into a new user namespace that only waits to be killed. It is cloned with no exit
    /// signal, so the shim's reaper (which waits for SIGCHLD children only) never sees it;
    /// it is killed and reaped here through its pidfd.
    pub fn user_namespace(uid_map: &str, gid_map: &str) -> std::io::Result<OwnedFd> {
        let mut pidfd: libc::c_int = -1;
        let args = CloneArgs {
            flags: (libc::CLONE_NEWUSER | libc::CLONE_PIDFD) as u64,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: 0,
            stack: 0,
            stack_size: 0,
            tls: 0,
        };
        // SAFETY: clone3 reads `args` (a live local, its size passed) and writes the pidfd
        // into `pidfd`; without CLONE_VM and a stack the child gets a copy of this thread's
        // memory, as after fork, and runs only the async-signal-safe calls below.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the child: prctl and pause are system calls, async-signal-safe; it
            // dies with the thread that made it, or when killed below.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                loop {
                    libc::pause();
                }
            }
        }
        // SAFETY: clone3 with CLONE_PIDFD stored a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let proc = format!("/proc/{pid}");
        let made = std::fs::write(format!("{proc}/uid_map"), uid_map)
            .map_err(|e| std::io::Error::other(format!("write uid_map: {e}")))
            .and_then(|()| {
                std::fs::write(format!("{proc}/gid_map"), gid_map)
                    .map_err(|e| std::io::Error::other(format!("write gid_map: {e}")))
            })
            .and_then(|()| {
                std::fs::File::open(format!("{proc}/ns/user"))
                    .map(OwnedFd::from)
                    .map_err(|e| std::io::Error::other(format!("open the user namespace: {e}")))
            });
        // The namespace lives on in its descriptor; the child is not needed any more.
        let killed = super::pidfd_send_signal(&pidfd, libc::SIGKILL);
        let reaped = waitid(
            Id::PIDFd(pidfd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::__WCLONE,
        );
        if let Err(e) = killed.and(reaped.map(drop).map_err(Into::into)) {
            log::warn!("end the user namespace holder {pid}: {e}");
        }
        made
    }

    /// Attaches at `dest` a copy of the mount at `source` whose ids are shifted by the
    /// user namespace `userns`, read-only if asked.
    pub fn idmapped_copy(
        source: &Path,
        dest: &Path,
        userns: &impl AsFd,
        read_only: bool,
    ) -> std::io::Result<()> {
        let cpath =
            |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
        let (source_c, dest_c) = (cpath(source)?, cpath(dest)?);
        let empty = c"";
        // SAFETY: open_tree reads a NUL-terminated path that outlives the call and returns
        // a new descriptor or -1.
        let tree = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                source_c.as_ptr(),
                libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
            )
        };
        if tree < 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::other(format!("open_tree: {e}")));
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let tree = unsafe { OwnedFd::from_raw_fd(tree as libc::c_int) };
        let mut attr_set = libc::MOUNT_ATTR_IDMAP;
        if read_only {
            attr_set |= libc::MOUNT_ATTR_RDONLY;
        }
        let attr = libc::mount_attr {
            attr_set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_fd().as_raw_fd() as u64,
        };
        // SAFETY: mount_setattr reads `attr` (a live local, its size passed) and the empty
        // path; both descriptors are open for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::other(format!("mount_setattr idmap: {e}")));
        }
        // SAFETY: move_mount reads two NUL-terminated paths that outlive the call; the
        // tree descriptor is open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                dest_c.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::other(format!("move_mount: {e}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
