//! OOM notifications: one thread waits on the memory cgroup of every container and names
//! the container whenever the kernel reports an out-of-memory event in it.
//!
//! cgroup v1 signals an eventfd registered through `cgroup.event_control` against
//! `memory.oom_control`; cgroup v2 modifies `memory.events`, watched with inotify. Either
//! way the callback only hears "look at this container"; whoever receives it reads the
//! kernel's counters and asks [`OomKills`] whether that is a kill not reported yet, so a
//! wake-up with nothing new (memory.events also changes when the cgroup merely reaches its
//! limit) publishes nothing.
//!
//! The thread never sleeps: a look that finds no kill counted yet is repeated from the
//! thread's own timer while it keeps reading notifications, so the kernel's next word on
//! the cgroup is read as soon as it comes. That matters under the systemd driver, where
//! systemd removes a container's scope (and its counters) moments after the OOM-killed
//! init is gone.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Called with a container id; returns whether it is done with the notification (false:
/// no kill counted yet, look again shortly).
type Callback = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Delays, from the notification, of the looks again at a cgroup that showed no kill yet
/// (cgroup v1 signals the OOM before the killer has counted its kill).
const RECHECKS_MS: [u64; 5] = [10, 40, 100, 250, 550];

/// What a container's memory cgroup says about OOM kills when it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomCount {
    /// How many processes the kernel's OOM killer killed in the cgroup, and how many
    /// times the cgroup ran out of memory (cgroup v2's "oom", raised just before the
    /// killer picks a victim; always 0 on cgroup v1).
    Counted { kills: u64, ooms: u64 },
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
    /// Guards what was seen last.
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
    Counted {
        /// The kill count as of the last TaskOOM (or of Create).
        kills: u64,
        /// The highest "oom" count read.
        ooms: u64,
        /// The cgroup ran out of memory since the last kill was counted, and no kill was
        /// counted after it yet.
        unmatched: bool,
        /// A TaskOOM went out for this container.
        published: bool,
    },
    /// The cgroup went away: no more TaskOOM for this container.
    Gone,
}

impl OomKills {
    /// Starts from the counts at Create: kills before it are not this container's news.
    pub fn new(at_create: OomCount) -> OomKills {
        let (kills, ooms) = match at_create {
            OomCount::Counted { kills, ooms } => (kills, ooms),
            OomCount::Uncounted | OomCount::Gone => (0, 0),
        };
        OomKills {
            seen: Mutex::new(Seen::Counted {
                kills,
                ooms,
                unmatched: false,
                published: false,
            }),
        }
    }

    /// The watcher saw a notification and the cgroup now says `now`. A kill count above
    /// the last one is published once; a kernel that does not count kills has every
    /// notification published, as containerd's Go shim does on cgroup v1.
    ///
    /// A cgroup that is gone publishes nothing more, with one exception where we do
    /// better than containerd's Go shim, which forgets the container: if the cgroup was
    /// seen running out of memory and removed before its kill could be read (systemd
    /// removes an emptied scope at once), and no TaskOOM went out for the container yet,
    /// that OOM is published. The kernel raises "oom" only when reclaim failed at the
    /// limit, and kills right after it.
    ///
    /// `publish` is called for a [`Verdict::Publish`] before the state is let go, so a
    /// TaskOOM decided by the watcher is queued before the init's exit, which asks
    /// [`OomKills::exited`] first, can queue its TaskExit.
    pub fn notified(&self, now: OomCount, publish: impl FnOnce()) -> Verdict {
        let mut seen = lock(&self.seen);
        let verdict = seen.next(now);
        if verdict == Verdict::Publish {
            publish();
        }
        verdict
    }

    /// The init exited and the cgroup now says `now`: publishes (through `publish`) a
    /// counted kill not reported yet, so that its TaskOOM goes out before the TaskExit,
    /// and says whether it did. Without a count, only notifications publish.
    pub fn exited(&self, now: OomCount, publish: impl FnOnce()) -> bool {
        match now {
            OomCount::Counted { .. } | OomCount::Gone => {
                self.notified(now, publish) == Verdict::Publish
            }
            OomCount::Uncounted => false,
        }
    }
}

impl Seen {
    fn next(&mut self, now: OomCount) -> Verdict {
        let Seen::Counted {
            kills,
            ooms,
            unmatched,
            published,
        } = self
        else {
            return Verdict::Done;
        };
        match now {
            OomCount::Gone => {
                let lost_kill = *unmatched && !*published;
                *self = Seen::Gone;
                if lost_kill {
                    Verdict::Publish
                } else {
                    Verdict::Done
                }
            }
            OomCount::Uncounted => {
                *published = true;
                Verdict::Publish
            }
            OomCount::Counted { kills: k, ooms: o } if k > *kills => {
                (*kills, *ooms, *unmatched, *published) = (k, o.max(*ooms), false, true);
                Verdict::Publish
            }
            OomCount::Counted { ooms: o, .. } => {
                if o > *ooms {
                    (*ooms, *unmatched) = (o, true);
                }
                Verdict::LookAgain
            }
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
            let watcher = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("oom".into())
                .stack_size(64 * 1024)
                .spawn(move || wait_loop(&waiting, &watcher))?;
            Ok(epoll)
        });
        match made {
            Ok(epoll) => Ok(epoll),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// A notification for `token`: consumes it and asks the callback. False: look again.
    fn fired(&self, token: u64) -> bool {
        let id = {
            let w = lock(&self.watched);
            let Some(v) = w.get(&token) else { return true };
            v.source.drain();
            v.id.clone()
        };
        (self.on_oom)(&id)
    }

    /// A scheduled look at `token`'s cgroup. False: look again later.
    fn look(&self, token: u64) -> bool {
        let id = match lock(&self.watched).get(&token) {
            Some(v) => v.id.clone(),
            None => return true,
        };
        (self.on_oom)(&id)
    }
}

/// The watcher's thread: reads each notification as it comes and looks again, on its own
/// timer, at the cgroups that showed no kill yet. It ends with the watcher.
fn wait_loop(epoll: &Epoll, watcher: &Weak<OomWatcher>) {
    let mut events = [EpollEvent::empty(); 8];
    let mut rechecks = Rechecks::default();
    loop {
        let n = match epoll.wait(&mut events, rechecks.timeout(Instant::now())) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("oom watcher stopped: {e}");
                return;
            }
        };
        let Some(w) = watcher.upgrade() else { return };
        for ev in &events[..n] {
            let token = ev.data();
            if w.fired(token) {
                rechecks.cancel(token);
            } else {
                rechecks.start(token, Instant::now());
            }
        }
        for token in rechecks.due(Instant::now()) {
            if w.look(token) {
                rechecks.cancel(token);
            }
        }
    }
}

/// The looks again still to come, by epoll token: when the series began and which delay
/// of [`RECHECKS_MS`] is next.
#[derive(Default)]
struct Rechecks(HashMap<u64, (Instant, usize)>);

impl Rechecks {
    /// (Re)starts the series for `token`: a new notification restarts its schedule.
    fn start(&mut self, token: u64, now: Instant) {
        self.0.insert(token, (now, 0));
    }

    fn cancel(&mut self, token: u64) {
        self.0.remove(&token);
    }

    fn at(began: Instant, next: usize) -> Instant {
        began + Duration::from_millis(RECHECKS_MS[next])
    }

    /// How long epoll may wait: until the earliest look due, or for ever.
    fn timeout(&self, now: Instant) -> EpollTimeout {
        let Some(due) = self.0.values().map(|&(b, n)| Self::at(b, n)).min() else {
            return EpollTimeout::NONE;
        };
        // Rounded up, so that a look is never early by a fraction of a millisecond.
        let ms = due
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
    }

    /// The tokens whose look is due at `now`; each moves on to its next delay, and leaves
    /// the schedule after its last one.
    fn due(&mut self, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        self.0.retain(|&token, (began, next)| {
            if Self::at(*began, *next) > now {
                return true;
            }
            due.push(token);
            *next += 1;
            *next < RECHECKS_MS.len()
        });
        due
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

    /// A count where every OOM ended in a kill.
    fn kills(n: u64) -> OomCount {
        OomCount::Counted { kills: n, ooms: n }
    }

    /// `ooms` OOMs and `kills` kills counted.
    fn counted(kills: u64, ooms: u64) -> OomCount {
        OomCount::Counted { kills, ooms }
    }

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
        let k = OomKills::new(kills(0));
        assert_eq!(k.notified(kills(0), || {}), Verdict::LookAgain);
        assert_eq!(k.notified(kills(1), || {}), Verdict::Publish);
        // More notifications for the same kill (memory.events also counts "max" and "oom").
        assert_eq!(k.notified(kills(1), || {}), Verdict::LookAgain);
        assert!(!k.exited(kills(1), || {}));
        assert_eq!(k.notified(kills(3), || {}), Verdict::Publish);
        assert_eq!(k.notified(kills(2), || {}), Verdict::LookAgain);
    }

    #[test]
    fn kills_before_create_are_not_reported() {
        let k = OomKills::new(kills(4));
        assert_eq!(k.notified(kills(4), || {}), Verdict::LookAgain);
        assert!(k.exited(kills(5), || {}));
        assert_eq!(k.notified(kills(5), || {}), Verdict::LookAgain);
    }

    #[test]
    fn a_gone_cgroup_reports_nothing_more() {
        // The systemd driver: the scope is removed once the OOM-killed init is gone, and
        // the notifications still queued find no cgroup.
        let k = OomKills::new(kills(0));
        assert_eq!(k.notified(kills(1), || {}), Verdict::Publish);
        for _ in 0..3 {
            assert_eq!(k.notified(OomCount::Gone, || {}), Verdict::Done);
        }
        assert!(!k.exited(OomCount::Gone, || {}));
        assert_eq!(k.notified(kills(2), || {}), Verdict::Done);
        assert_eq!(k.notified(OomCount::Uncounted, || {}), Verdict::Done);
        assert!(!k.exited(kills(2), || {}));

        let k = OomKills::new(kills(0));
        assert!(!k.exited(OomCount::Gone, || {}));
        assert_eq!(k.notified(kills(1), || {}), Verdict::Done);
    }

    #[test]
    fn an_oom_whose_cgroup_vanished_before_its_kill_was_read_is_reported_once() {
        // systemd removed the scope between the kernel's "oom" and our read of its kill.
        let k = OomKills::new(counted(0, 0));
        assert_eq!(k.notified(counted(0, 0), || {}), Verdict::LookAgain);
        assert_eq!(k.notified(counted(0, 1), || {}), Verdict::LookAgain);
        assert_eq!(k.notified(OomCount::Gone, || {}), Verdict::Publish);
        assert_eq!(k.notified(OomCount::Gone, || {}), Verdict::Done);
        assert!(!k.exited(OomCount::Gone, || {}));

        // The same, found by the init's exit instead of the watcher.
        let k = OomKills::new(counted(0, 0));
        assert_eq!(k.notified(counted(0, 1), || {}), Verdict::LookAgain);
        assert!(k.exited(OomCount::Gone, || {}));
        assert_eq!(k.notified(OomCount::Gone, || {}), Verdict::Done);
    }

    #[test]
    fn a_vanished_cgroup_adds_nothing_to_a_reported_kill_or_to_a_plain_limit() {
        // After a counted kill, "oom" can rise again without a kill (the killer waits for
        // its victim to exit): that is the same OOM, already reported.
        let k = OomKills::new(counted(0, 0));
        assert_eq!(k.notified(counted(1, 1), || {}), Verdict::Publish);
        assert_eq!(k.notified(counted(1, 3), || {}), Verdict::LookAgain);
        assert_eq!(k.notified(OomCount::Gone, || {}), Verdict::Done);

        // Reaching the limit ("max") without running out: nothing to report.
        let k = OomKills::new(counted(0, 0));
        assert_eq!(k.notified(counted(0, 0), || {}), Verdict::LookAgain);
        assert!(!k.exited(OomCount::Gone, || {}));

        // OOMs before Create are not this container's.
        let k = OomKills::new(counted(2, 5));
        assert_eq!(k.notified(counted(2, 5), || {}), Verdict::LookAgain);
        assert!(!k.exited(OomCount::Gone, || {}));
    }

    #[test]
    fn looks_again_follow_the_schedule_and_stop_after_the_last() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Rechecks::default();
        assert_eq!(r.timeout(t0), EpollTimeout::NONE);
        r.start(7, t0);
        assert_eq!(r.timeout(t0), EpollTimeout::from(10u16));
        assert!(r.due(ms(9)).is_empty());
        let mut looked = Vec::new();
        for at in RECHECKS_MS {
            assert_eq!(r.due(ms(at)), vec![7]);
            looked.push(at);
        }
        assert_eq!(looked, RECHECKS_MS);
        assert!(r.due(ms(10_000)).is_empty());
        assert_eq!(r.timeout(ms(10_000)), EpollTimeout::NONE);

        // A new notification restarts the series; a look that found its answer ends it.
        r.start(7, t0);
        assert_eq!(r.due(ms(10)), vec![7]);
        r.start(7, ms(20));
        assert_eq!(r.timeout(ms(25)), EpollTimeout::from(5u16));
        r.cancel(7);
        assert_eq!(r.timeout(ms(25)), EpollTimeout::NONE);
    }

    #[test]
    fn without_a_kill_count_every_notification_is_reported() {
        let k = OomKills::new(OomCount::Uncounted);
        assert_eq!(k.notified(OomCount::Uncounted, || {}), Verdict::Publish);
        assert_eq!(k.notified(OomCount::Uncounted, || {}), Verdict::Publish);
        assert!(!k.exited(OomCount::Uncounted, || {}));
        assert_eq!(k.notified(OomCount::Gone, || {}), Verdict::Done);
        assert_eq!(k.notified(OomCount::Uncounted, || {}), Verdict::Done);
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
        let w = OomWatcher::new(move |_| match kills.notified(cg.oom_kills(), || {}) {
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
