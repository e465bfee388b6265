//! OOM notifications: one thread waits on the memory cgroup of every container and names
//! the container whenever the kernel reports an out-of-memory event in it.
//!
//! cgroup v1 signals an eventfd registered through `cgroup.event_control` against
//! `memory.oom_control`; cgroup v2 modifies `memory.events`, watched with inotify. Either
//! way the callback only hears "look at this container"; whoever receives it reads the
//! kernel's oom_kill counter and asks [`OomKills`] whether that is a kill not reported yet,
//! so a wake-up with nothing new (an OOM without a kill, the cgroup being removed)
//! publishes nothing.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Called with a container id; returns whether it found (and reported) an OOM kill.
type Callback = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Pauses before looking again at a cgroup whose notification showed no kill yet.
const RECHECKS_MS: [u64; 5] = [10, 30, 60, 150, 300];

/// What a container's memory cgroup says about OOM kills when it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomCount {
    /// How many processes the kernel's OOM killer killed in the cgroup.
    Kills(u64),
    /// The cgroup is there but the kernel does not count kills (cgroup v1 before Linux
    /// 4.13, whose memory.oom_control has no oom_kill line).
    Uncounted,
    /// The cgroup's file cannot be read: the cgroup was removed (as systemd removes a
    /// container's scope once it is empty, and cgroup v1 signals the removal like an OOM).
    Gone,
}

/// The OOM kills of one container already reported: decides which notifications become
/// a TaskOOM, so that one kill is one event.
#[derive(Debug)]
pub struct OomKills {
    /// Guards what was reported last.
    seen: Mutex<Seen>,
}

/// What [`OomKills::notified`] asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Publish a TaskOOM.
    Publish,
    /// Nothing new: look again shortly, the kernel may not have counted the kill yet.
    LookAgain,
    /// Nothing to publish for this notification.
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Seen {
    /// The kernel's kill count as of the last TaskOOM (or of Create).
    Kills(u64),
    /// The cgroup went away: no more TaskOOM for this container.
    Gone,
}

impl OomKills {
    /// Starts from the count at Create: kills before it are not this container's news.
    pub fn new(at_create: OomCount) -> OomKills {
        let seen = match at_create {
            OomCount::Kills(n) => Seen::Kills(n),
            OomCount::Uncounted | OomCount::Gone => Seen::Kills(0),
        };
        OomKills {
            seen: Mutex::new(seen),
        }
    }

    /// The watcher saw a notification and the cgroup now says `now`. A count above the
    /// last one is published once; a kernel that does not count kills has every
    /// notification published, as containerd's Go shim does on cgroup v1; a cgroup that is
    /// gone publishes nothing, then or later (containerd's Go shim forgets it too).
    pub fn notified(&self, now: OomCount) -> Verdict {
        let mut seen = lock(&self.seen);
        match (*seen, now) {
            (Seen::Gone, _) => Verdict::Done,
            (Seen::Kills(_), OomCount::Gone) => {
                *seen = Seen::Gone;
                Verdict::Done
            }
            (Seen::Kills(_), OomCount::Uncounted) => Verdict::Publish,
            (Seen::Kills(last), OomCount::Kills(n)) if n > last => {
                *seen = Seen::Kills(n);
                Verdict::Publish
            }
            (Seen::Kills(_), OomCount::Kills(_)) => Verdict::LookAgain,
        }
    }

    /// The init exited and the cgroup now says `now`: true if that is a counted kill not
    /// reported yet (then its TaskOOM goes out before the TaskExit). Without a count,
    /// only notifications publish.
    pub fn exited(&self, now: OomCount) -> bool {
        match now {
            OomCount::Kills(_) | OomCount::Gone => self.notified(now) == Verdict::Publish,
            OomCount::Uncounted => false,
        }
    }
}

pub struct OomWatcher {
    /// The epoll instance the waiting thread waits on; both are made at the first watch.
    epoll: OnceLock<io::Result<Arc<Epoll>>>,
    /// Guards the watched containers, by epoll token.
    watched: Mutex<HashMap<u64, Watch>>,
    next: AtomicU64,
    on_oom: Callback,
}

struct Watch {
    id: String,
    /// What epoll waits on: the eventfd (v1) or the inotify instance (v2).
    source: Source,
}

enum Source {
    /// The eventfd, and the memory.oom_control it was registered against (kept open for
    /// as long as the registration should last).
    V1(EventFd, #[allow(dead_code)] OwnedFd),
    V2(Inotify),
}

impl Source {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Source::V1(e, _) => e.as_fd(),
            Source::V2(i) => i.as_fd(),
        }
    }

    /// Consumes the notification so that epoll does not report it again.
    fn drain(&self) {
        match self {
            Source::V1(e, _) => {
                let _ = e.read();
            }
            Source::V2(i) => {
                let _ = i.read_events();
            }
        }
    }
}

impl OomWatcher {
    pub fn new(on_oom: impl Fn(&str) -> bool + Send + Sync + 'static) -> Arc<OomWatcher> {
        Arc::new(OomWatcher {
            epoll: OnceLock::new(),
            watched: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            on_oom: Box::new(on_oom),
        })
    }

    /// Starts watching the memory cgroup directory `dir` of container `id`.
    pub fn watch(self: &Arc<Self>, id: &str, dir: &Path, unified: bool) -> io::Result<()> {
        let source = if unified {
            let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
            ino.add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)?;
            Source::V2(ino)
        } else {
            let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
            let control = std::fs::File::open(dir.join("memory.oom_control"))?;
            std::fs::write(
                dir.join("cgroup.event_control"),
                format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd()),
            )?;
            Source::V1(efd, control.into())
        };
        let epoll = self.epoll()?;
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        epoll.add(source.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
        lock(&self.watched).insert(
            token,
            Watch {
                id: id.to_string(),
                source,
            },
        );
        Ok(())
    }

    /// Stops watching container `id` (its descriptors close, which ends the kernel's
    /// registration).
    pub fn unwatch(&self, id: &str) {
        let mut w = lock(&self.watched);
        let tokens: Vec<u64> = w
            .iter()
            .filter(|(_, v)| v.id == id)
            .map(|(k, _)| *k)
            .collect();
        for t in tokens {
            if let (Some(v), Some(Ok(epoll))) = (w.remove(&t), self.epoll.get()) {
                let _ = epoll.delete(v.source.fd());
            }
        }
    }

    /// The epoll instance, made (with the thread that waits on it) on first use.
    fn epoll(self: &Arc<Self>) -> io::Result<&Epoll> {
        let made = self.epoll.get_or_init(|| {
            let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
            let waiting = Arc::clone(&epoll);
            let weak = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("oom".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut events = [EpollEvent::empty(); 8];
                    loop {
                        let n = match waiting.wait(&mut events, EpollTimeout::NONE) {
                            Ok(n) => n,
                            Err(nix::errno::Errno::EINTR) => continue,
                            Err(e) => {
                                log::error!("oom watcher stopped: {e}");
                                return;
                            }
                        };
                        let Some(w) = weak.upgrade() else { return };
                        for ev in &events[..n] {
                            w.fired(ev.data());
                        }
                    }
                })?;
            Ok(epoll)
        });
        match made {
            Ok(epoll) => Ok(epoll),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    fn fired(&self, token: u64) {
        let id = {
            let w = lock(&self.watched);
            let Some(v) = w.get(&token) else { return };
            v.source.drain();
            v.id.clone()
        };
        if (self.on_oom)(&id) {
            return;
        }
        for ms in RECHECKS_MS {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            if (self.on_oom)(&id) {
                return;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_modified_memory_events_file_names_its_container() {
        // The v2 path on a fake cgroup directory: inotify sees the kernel's write as a
        // modification, which is all the watcher relies on.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.events"), "oom 0\noom_kill 0\n").unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let w = OomWatcher::new(move |id| lock(&tx).send(id.to_string()).is_ok());
        w.watch("c1", dir.path(), true).unwrap();
        std::fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "c1");
        // One write may be two modifications (truncate, then write): let the second one
        // arrive before unwatching, so what follows tests the unwatch alone.
        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}

        w.unwatch("c1");
        std::fs::write(dir.path().join("memory.events"), "oom 2\noom_kill 2\n").unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn one_kill_is_one_event() {
        let k = OomKills::new(OomCount::Kills(0));
        assert_eq!(k.notified(OomCount::Kills(0)), Verdict::LookAgain);
        assert_eq!(k.notified(OomCount::Kills(1)), Verdict::Publish);
        // More notifications for the same kill (memory.events also counts "max" and "oom").
        assert_eq!(k.notified(OomCount::Kills(1)), Verdict::LookAgain);
        assert!(!k.exited(OomCount::Kills(1)));
        assert_eq!(k.notified(OomCount::Kills(3)), Verdict::Publish);
        assert_eq!(k.notified(OomCount::Kills(2)), Verdict::LookAgain);
    }

    #[test]
    fn kills_before_create_are_not_reported() {
        let k = OomKills::new(OomCount::Kills(4));
        assert_eq!(k.notified(OomCount::Kills(4)), Verdict::LookAgain);
        assert!(k.exited(OomCount::Kills(5)));
        assert_eq!(k.notified(OomCount::Kills(5)), Verdict::LookAgain);
    }

    #[test]
    fn a_gone_cgroup_reports_nothing_more() {
        // The systemd driver: the scope is removed once the OOM-killed init is gone, and
        // the notifications still queued find no cgroup.
        let k = OomKills::new(OomCount::Kills(0));
        assert_eq!(k.notified(OomCount::Kills(1)), Verdict::Publish);
        for _ in 0..3 {
            assert_eq!(k.notified(OomCount::Gone), Verdict::Done);
        }
        assert!(!k.exited(OomCount::Gone));
        assert_eq!(k.notified(OomCount::Kills(2)), Verdict::Done);
        assert_eq!(k.notified(OomCount::Uncounted), Verdict::Done);
        assert!(!k.exited(OomCount::Kills(2)));

        let k = OomKills::new(OomCount::Kills(0));
        assert!(!k.exited(OomCount::Gone));
        assert_eq!(k.notified(OomCount::Kills(1)), Verdict::Done);
    }

    #[test]
    fn without_a_kill_count_every_notification_is_reported() {
        let k = OomKills::new(OomCount::Uncounted);
        assert_eq!(k.notified(OomCount::Uncounted), Verdict::Publish);
        assert_eq!(k.notified(OomCount::Uncounted), Verdict::Publish);
        assert!(!k.exited(OomCount::Uncounted));
        assert_eq!(k.notified(OomCount::Gone), Verdict::Done);
        assert_eq!(k.notified(OomCount::Uncounted), Verdict::Done);
    }

    #[test]
    fn a_watched_cgroup_that_vanishes_after_a_kill_gives_one_event() {
        // The watcher, the kernel's count and the dedupe together, on a fake v2 cgroup.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("docker-abc.scope");
        std::fs::create_dir(&dir).unwrap();
        let events = dir.join("memory.events");
        std::fs::write(&events, "max 0\noom 0\noom_kill 0\n").unwrap();
        let cg = crate::cgroups::Cgroups::V2(dir.clone());
        let kills = OomKills::new(cg.oom_kills());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let w = OomWatcher::new(move |_| match kills.notified(cg.oom_kills()) {
            Verdict::Publish => lock(&tx).send(()).is_ok(),
            Verdict::LookAgain => false,
            Verdict::Done => true,
        });
        w.watch("c1", &dir, true).unwrap();
        // Rewritten in place, as the kernel does: a truncated file would read as a kernel
        // without a kill count.
        let rewrite = |text: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&events)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        rewrite("max 3\noom 1\noom_kill 1\n");
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        rewrite("max 4\noom 1\noom_kill 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(800)).is_err());
    }

    #[test]
    fn a_missing_cgroup_is_an_error() {
        let w = OomWatcher::new(|_| true);
        assert!(w.watch("c1", Path::new("/nonexistent/cg"), false).is_err());
        assert!(w.watch("c1", Path::new("/nonexistent/cg"), true).is_err());
    }
}
