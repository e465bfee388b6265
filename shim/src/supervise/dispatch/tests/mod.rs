//! The dispatcher driven in-process: synthetic exits, an in-memory event sink, no daemon,
//! no fork and no `waitpid`.

use std::sync::Mutex;

use super::*;
use containerd_shim_protos::ttrpc::Code;

/// What the sink saw, reduced to what the rules are about. The exec id is empty for an init.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Start(String, u32),
    Exit(String, u32, u32),
    /// The init-exit hook ran for this container.
    Hook(String),
    Other(String),
}

#[derive(Default)]
struct Sink(Mutex<Vec<Ev>>);

impl Sink {
    fn push(&self, ev: Ev) {
        self.0.lock().unwrap().push(ev);
    }

    fn take(&self) -> Vec<Ev> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl EventSink for Sink {
    fn publish(&self, event: TaskEvent) {
        let ev = match event {
            TaskEvent::Start { pid, .. } => Ev::Start(String::new(), pid as u32),
            TaskEvent::ExecStarted { exec_id, pid, .. } => Ev::Start(exec_id, pid as u32),
            TaskEvent::Exit {
                exec_id,
                pid,
                status,
                ..
            } => Ev::Exit(exec_id, pid as u32, status.get()),
            other => Ev::Other(format!("{other:?}")),
        };
        self.push(ev);
    }
}

/// A supervisor whose processes have no output to flush: an exit is final at once.
fn supervisor() -> (Arc<Sink>, Supervisor<()>) {
    let sink = Arc::new(Sink::default());
    let hook_sink = Arc::clone(&sink);
    let hook = Box::new(move |id: &str, _: &Exit| hook_sink.push(Ev::Hook(id.to_string())));
    let flush = Box::new(|_: &(), then: Flushed| then());
    (Arc::clone(&sink), Supervisor::new(sink, hook, flush))
}

/// The flush hook of a test: every process's continuation waits until the test runs it,
/// as it would for copiers still copying.
#[derive(Default)]
struct Held(Mutex<Vec<Flushed>>);

impl Held {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Runs the `i`th continuation still held, in the order the exits were routed.
    fn release(&self, i: usize) {
        let then = self.0.lock().unwrap().remove(i);
        then();
    }
}

/// A supervisor whose exits wait for the test to say their output is flushed.
fn held_supervisor() -> (Arc<Sink>, Supervisor<()>, Arc<Held>) {
    let sink = Arc::new(Sink::default());
    let hook_sink = Arc::clone(&sink);
    let hook = Box::new(move |id: &str, _: &Exit| hook_sink.push(Ev::Hook(id.to_string())));
    let held = Arc::new(Held::default());
    let h = Arc::clone(&held);
    let flush = Box::new(move |_: &(), then: Flushed| h.0.lock().unwrap().push(then));
    (Arc::clone(&sink), Supervisor::new(sink, hook, flush), held)
}

fn exit(pid: i32, code: i32) -> Exit {
    Exit {
        pid,
        status: ExitStatus::exited(code),
        at: SystemTime::now(),
    }
}

fn start(exec_id: &str, pid: u32) -> Ev {
    Ev::Start(exec_id.to_string(), pid)
}

fn exited(exec_id: &str, pid: u32, status: u32) -> Ev {
    Ev::Exit(exec_id.to_string(), pid, status)
}

fn hook() -> Ev {
    Ev::Hook("c".to_string())
}

/// Container "c" with its init `pid` created and started.
fn running(sup: &Supervisor<()>, pid: i32) {
    sup.add_init("c", pid, Arc::new(()), sup.expect_pid());
    sup.begin_start("c", "").unwrap().started(None);
}

fn running_exec(sup: &Supervisor<()>, exec_id: &str, pid: i32) {
    sup.add_exec("c", exec_id, Arc::new(())).unwrap();
    sup.begin_start("c", exec_id).unwrap().started(Some(pid));
}

fn nothing_in_flight(sup: &Supervisor<()>) -> bool {
    let t = sup.lock();
    t.parked.in_flight == 0 && t.parked.exits.is_empty()
}

#[test]
fn an_init_exit_before_its_pid_is_recorded_is_routed_at_create() {
    let (sink, sup) = supervisor();
    let expect = sup.expect_pid();
    sup.exited(exit(10, 3));
    assert!(sink.take().is_empty());
    sup.add_init("c", 10, Arc::new(()), expect);
    assert_eq!(sink.take(), [hook(), exited("", 10, 3)]);
    assert_eq!(
        sup.wait_timeout("c", "", Duration::from_secs(10))
            .unwrap()
            .unwrap()
            .status
            .get(),
        3
    );
    assert!(nothing_in_flight(&sup));
}

#[test]
fn an_exec_exit_before_its_pid_is_recorded_comes_after_its_start() {
    let (sink, sup) = supervisor();
    running(&sup, 10);
    sup.add_exec("c", "e", Arc::new(())).unwrap();
    let s = sup.begin_start("c", "e").unwrap();
    sup.exited(exit(11, 4));
    s.started(Some(11));
    assert_eq!(
        sink.take(),
        [start("", 10), start("e", 11), exited("e", 11, 4)]
    );
    assert_eq!(
        sup.wait_timeout("c", "e", Duration::from_secs(10))
            .unwrap()
            .unwrap()
            .status
            .get(),
        4
    );
    assert!(nothing_in_flight(&sup));
}

#[test]
fn an_exec_exiting_after_the_init_is_published_first() {
    let (sink, sup) = supervisor();
    running(&sup, 10);
    running_exec(&sup, "e", 11);
    sink.take();
    sup.exited(exit(10, 0));
    assert_eq!(sink.take(), [hook()], "the init's exit is held");
    let held = sup.view("c", "").unwrap().status;
    assert_eq!(held, Status::Exiting(held.reaped().unwrap()));
    sup.exited(exit(11, 137));
    assert_eq!(sink.take(), [exited("e", 11, 137), exited("", 10, 0)]);
}

#[test]
fn an_init_exit_is_held_until_its_execs_are_gone() {
    let (sink, sup) = supervisor();
    running(&sup, 10);
    running_exec(&sup, "a", 11);
    // Created, never started: not live, holds nothing back.
    sup.add_exec("c", "idle", Arc::new(())).unwrap();
    sup.add_exec("c", "b", Arc::new(())).unwrap();
    let b = sup.begin_start("c", "b").unwrap();
    sink.take();

    sup.exited(exit(10, 0));
    sup.exited(exit(11, 1));
    assert_eq!(
        sink.take(),
        [hook(), exited("a", 11, 1)],
        "b is still starting"
    );
    // b's start fails: nothing is live any more.
    drop(b);
    assert_eq!(sink.take(), [exited("", 10, 0)]);
    assert_eq!(sup.view("c", "b").unwrap().status, Status::Created);

    // A never-started exec is deleted with status 0, and its waiters are answered.
    let (_, e) = sup.remove_exec("c", "idle").unwrap();
    assert_eq!((e.pid, e.status.get()), (0, 0));
    assert!(nothing_in_flight(&sup));
}

#[test]
fn deleting_the_last_created_exec_releases_nothing_twice() {
    let (sink, sup) = supervisor();
    running(&sup, 10);
    running_exec(&sup, "a", 11);
    sup.add_exec("c", "idle", Arc::new(())).unwrap();
    sink.take();
    sup.exited(exit(10, 0));
    sup.remove_exec("c", "idle").unwrap();
    assert_eq!(sink.take(), [hook()], "a still holds the init exit");
    sup.exited(exit(11, 0));
    assert_eq!(sink.take(), [exited("a", 11, 0), exited("", 10, 0)]);
    let e = sup.remove_exec("c", "a").unwrap().1;
    assert_eq!(e.pid, 11);
    assert!(sink.take().is_empty());
}

#[test]
fn a_start_racing_an_exit_publishes_the_start_first() {
    let (sink, sup) = supervisor();
    sup.add_init("c", 10, Arc::new(()), sup.expect_pid());
    let s = sup.begin_start("c", "").unwrap();
    assert_eq!(sup.view("c", "").unwrap().status, Status::Starting);
    sup.exited(exit(10, 2));
    assert!(sink.take().is_empty(), "parked while starting");
    s.started(None);
    assert_eq!(sink.take(), [start("", 10), hook(), exited("", 10, 2)]);
    assert!(nothing_in_flight(&sup));
}

#[test]
fn a_failed_start_still_reports_an_init_that_died() {
    let (sink, sup) = supervisor();
    sup.add_init("c", 10, Arc::new(()), sup.expect_pid());
    let s = sup.begin_start("c", "").unwrap();
    sup.exited(exit(10, 1));
    drop(s);
    assert_eq!(sink.take(), [hook(), exited("", 10, 1)]);
    assert!(sup.view("c", "").unwrap().status.exit().is_some());
}

#[test]
fn starts_racing_exits_on_threads_keep_the_order() {
    for round in 0..300 {
        let (sink, sup) = supervisor();
        running(&sup, 10);
        sup.add_exec("c", "e", Arc::new(())).unwrap();
        sink.take();
        let init_start = {
            sup.add_init("d", 20, Arc::new(()), sup.expect_pid());
            sup.begin_start("d", "").unwrap()
        };
        let exec_start = sup.begin_start("c", "e").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                if round % 2 == 0 {
                    std::thread::yield_now();
                }
                sup.exited(exit(11, 5));
                sup.exited(exit(20, 6));
            });
            exec_start.started(Some(11));
            init_start.started(None);
        });
        let evs: Vec<Ev> = sink
            .take()
            .into_iter()
            .filter(|e| !matches!(e, Ev::Hook(_)))
            .collect();
        let at = |ev: &Ev| evs.iter().position(|e| e == ev).unwrap();
        assert!(at(&start("e", 11)) < at(&exited("e", 11, 5)), "{evs:?}");
        assert!(at(&start("", 20)) < at(&exited("", 20, 6)), "{evs:?}");
        assert_eq!(evs.len(), 4, "{evs:?}");
    }
}

#[test]
fn exits_nobody_waits_for_are_dropped() {
    let (sink, sup) = supervisor();
    running(&sup, 10);
    sink.take();
    sup.exited(exit(999, 0));
    assert!(sink.take().is_empty());
    assert!(nothing_in_flight(&sup), "not kept with no start in flight");
}

#[test]
fn transitions_refuse_what_no_longer_applies() {
    let (sink, sup) = supervisor();
    running(&sup, 10);
    sup.check("c", "", Op::Pause).unwrap();
    sup.exited(exit(10, 0));
    // The runtime paused it, then it exited: no pause is recorded over its exit.
    let e = sup.apply("c", "", Op::Pause).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(
        e.to_string(),
        "cannot pause container c: it is stopped, not running"
    );
    let e = sup.begin_start("c", "").err().unwrap();
    assert_eq!(
        e.to_string(),
        "cannot start container c: it is stopped, not created"
    );
    let e = sup.add_exec("c", "e", Arc::new(())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot exec in container c: it is stopped, not running"
    );
    assert_eq!(
        sup.view("x", "").err().map(|e| e.code()),
        Some(Code::NOT_FOUND)
    );
    assert_eq!(
        sup.view("c", "e").err().map(|e| e.code()),
        Some(Code::NOT_FOUND)
    );
    assert_eq!(sink.take(), [start("", 10), hook(), exited("", 10, 0)]);
}

#[test]
fn duplicate_execs_are_refused() {
    let (_, sup) = supervisor();
    running(&sup, 10);
    sup.add_exec("c", "e", Arc::new(())).unwrap();
    let e = sup.add_exec("c", "e", Arc::new(())).unwrap_err();
    assert_eq!(e.code(), Code::ALREADY_EXISTS);
    assert!(sup.begin_start("c", "e").is_ok());
}

/// A Wait's waiter, reporting the status it was told.
struct Told(std::sync::mpsc::Sender<u32>);

impl crate::supervise::ExitWaiter for Told {
    fn gone(&self) -> bool {
        false
    }
    fn exited(self: Box<Self>, exit: Exit) {
        let _ = self.0.send(exit.status.get());
    }
}

#[test]
fn waiters_hear_the_exit_and_a_removed_container_answers_the_rest() {
    let (_sink, sup) = supervisor();
    running(&sup, 10);
    running_exec(&sup, "e", 11);
    sup.add_exec("c", "never", Arc::new(())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for exec_id in ["e", "never", ""] {
        sup.watch("c", exec_id)
            .unwrap()
            .notify(Box::new(Told(tx.clone())));
    }
    assert!(sup.watch("c", "nope").is_err());
    assert!(rx.try_recv().is_err(), "nobody told before an exit");
    sup.exited(exit(11, 5));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [5]);
    // The init is still running when its container goes (a forced delete that could
    // not wait for its exit): its waiter hears SIGKILL's status, the exec that never ran 0.
    sup.remove_container("c");
    let mut rest: Vec<u32> = rx.try_iter().collect();
    rest.sort_unstable();
    assert_eq!(rest, [0, 137]);
}

mod flush;
mod interleavings;
