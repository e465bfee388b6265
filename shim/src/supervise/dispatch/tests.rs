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
        sup.wait("c", "", &|| false).unwrap().unwrap().status.get(),
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
        sup.wait("c", "e", &|| false).unwrap().unwrap().status.get(),
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
fn an_exit_is_final_only_once_its_output_is_flushed() {
    let (sink, sup, held) = held_supervisor();
    running(&sup, 10);
    running_exec(&sup, "e", 11);
    sink.take();
    sup.exited(exit(11, 3));
    assert!(sink.take().is_empty(), "no TaskExit before the flush");
    assert_eq!(held.len(), 1);
    let v = sup.view("c", "e").unwrap();
    assert_eq!(v.status, Status::Exiting(v.status.reaped().unwrap()));
    assert_eq!(sup.wait_timeout("c", "e", Duration::ZERO).unwrap(), None);
    // Exiting is not deletable yet (Delete settles it first: see below).
    let e = sup.check("c", "e", Op::Delete).err().unwrap();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    held.release(0);
    assert_eq!(sink.take(), [exited("e", 11, 3)]);
    assert_eq!(
        sup.wait_timeout("c", "e", Duration::ZERO)
            .unwrap()
            .map(|e| e.status.get()),
        Some(3)
    );
    assert!(matches!(
        sup.view("c", "e").unwrap().status,
        Status::Stopped(_)
    ));
}

/// A reaped pid may be given to another process at once: an exec waiting for its output
/// is never signalled by pid, and answers as a process that has exited.
#[test]
fn a_reaped_exec_is_not_signalled_by_its_pid() {
    let (sink, sup, held) = held_supervisor();
    running(&sup, 10);
    running_exec(&sup, "e", 11);
    assert_eq!(sup.signal_pid("c", "e").unwrap(), 11);
    sup.exited(exit(11, 0));
    let e = sup.signal_pid("c", "e").unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
    assert!(e.to_string().contains("has exited"), "{e}");
    // The kernel gives pid 11 to the next exec: that one is signalled, the first is not.
    running_exec(&sup, "f", 11);
    assert_eq!(sup.signal_pid("c", "f").unwrap(), 11);
    assert_eq!(
        sup.signal_pid("c", "e").unwrap_err().code(),
        Code::NOT_FOUND
    );
    held.release(0);
    assert_eq!(
        sup.signal_pid("c", "e").unwrap_err().code(),
        Code::NOT_FOUND
    );
    // Not started yet: not signalled either, and said so.
    sup.add_exec("c", "g", Arc::new(())).unwrap();
    assert_eq!(
        sup.signal_pid("c", "g").unwrap_err().code(),
        Code::FAILED_PRECONDITION
    );
    sink.take();
}

#[test]
fn flushes_ending_in_any_order_keep_the_init_exit_last() {
    let (sink, sup, held) = held_supervisor();
    running(&sup, 10);
    running_exec(&sup, "a", 11);
    running_exec(&sup, "b", 12);
    sink.take();
    sup.exited(exit(10, 0));
    sup.exited(exit(11, 1));
    sup.exited(exit(12, 2));
    assert_eq!(sink.take(), [hook()], "the hook runs before the flush");
    assert_eq!(held.len(), 3);
    // The init's output first: its exit still waits for the execs'.
    held.release(0);
    assert!(sink.take().is_empty());
    assert!(sup.wait_timeout("c", "", Duration::ZERO).unwrap().is_none());
    assert_eq!(
        sup.check("c", "", Op::Delete).err().map(|e| e.code()),
        Some(Code::FAILED_PRECONDITION)
    );
    // Delete's settle does not wait for an init whose execs are live.
    sup.settle("c", "", Duration::from_secs(60)).unwrap();
    held.release(1);
    assert_eq!(sink.take(), [exited("b", 12, 2)]);
    held.release(0);
    assert_eq!(sink.take(), [exited("a", 11, 1), exited("", 10, 0)]);
    assert!(sup.wait_timeout("c", "", Duration::ZERO).unwrap().is_some());
}

#[test]
fn an_init_exit_waits_for_its_own_flush_after_its_execs() {
    let (sink, sup, held) = held_supervisor();
    running(&sup, 10);
    running_exec(&sup, "a", 11);
    sink.take();
    sup.exited(exit(11, 1));
    sup.exited(exit(10, 0));
    held.release(0);
    assert_eq!(sink.take(), [hook(), exited("a", 11, 1)]);
    held.release(0);
    assert_eq!(sink.take(), [exited("", 10, 0)]);
}

/// Delete of a process reaped a moment ago: its exit is made final (forced once the wait
/// is over), published once, and the flush that ends later changes nothing.
#[test]
fn a_delete_in_the_flush_window_settles_the_exit_first() {
    let (sink, sup, held) = held_supervisor();
    running(&sup, 10);
    running_exec(&sup, "e", 11);
    sink.take();
    sup.exited(exit(11, 4));
    sup.settle("c", "e", Duration::ZERO).unwrap();
    assert_eq!(sink.take(), [exited("e", 11, 4)]);
    let (_, e) = sup.remove_exec("c", "e").unwrap();
    assert_eq!(e.status.get(), 4);
    held.release(0);
    assert!(sink.take().is_empty(), "published once");
    // The init the same way, then its container is deleted.
    sup.exited(exit(10, 9));
    sup.settle("c", "", Duration::ZERO).unwrap();
    assert_eq!(sink.take(), [hook(), exited("", 10, 9)]);
    sup.check("c", "", Op::Delete).unwrap();
    sup.remove_container("c");
    held.release(0);
    assert!(sink.take().is_empty());
}

/// A created container's init killed by Delete, the container gone before the flush
/// ends: nothing to publish, nothing to fail.
#[test]
fn a_flush_ending_after_its_container_is_deleted_publishes_nothing() {
    let (sink, sup, held) = held_supervisor();
    sup.add_init("c", 10, Arc::new(()), sup.expect_pid());
    sup.exited(exit(10, 137));
    assert_eq!(sink.take(), [hook()]);
    sup.remove_container("c");
    held.release(0);
    assert!(sink.take().is_empty());
}

/// Execs whose flushes end on several threads at once, the init's exit waiting for them:
/// every exec's TaskExit is published before the init's, whichever thread made it final.
#[test]
fn flushes_ending_on_threads_publish_in_order() {
    for round in 0..300 {
        let (sink, sup, held) = held_supervisor();
        running(&sup, 10);
        for i in 0..4 {
            running_exec(&sup, &i.to_string(), 11 + i);
        }
        sup.exited(exit(10, 0));
        held.release(0);
        for i in 0..4 {
            sup.exited(exit(11 + i, i));
        }
        let flushes: Vec<Flushed> = std::mem::take(&mut *held.0.lock().unwrap());
        std::thread::scope(|s| {
            for (i, then) in flushes.into_iter().enumerate() {
                s.spawn(move || {
                    if (round + i) % 3 == 0 {
                        std::thread::yield_now();
                    }
                    then();
                });
            }
        });
        let evs: Vec<Ev> = sink
            .take()
            .into_iter()
            .filter(|e| matches!(e, Ev::Exit(..)))
            .collect();
        assert_eq!(evs.len(), 5, "{evs:?}");
        assert_eq!(evs[4], exited("", 10, 0), "{evs:?}");
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

/// A tiny seeded PRNG (xorshift64*): the same seed, the same interleaving.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// One exec in an interleaving: how far the simulated runtime and the test got.
#[derive(Default)]
struct SimExec {
    added: bool,
    /// Refused, or its start failed before the runtime made a process.
    gave_up: bool,
    /// The runtime made the process: it exits at some point.
    spawned: bool,
    recorded: bool,
    finished: bool,
    exited: bool,
    removed: bool,
}

/// Everything one step can do, chosen among those that apply now.
#[derive(Debug, Clone, Copy)]
enum Step {
    AddInit,
    InitExits,
    BeginInitStart,
    FinishInitStart,
    FailInitStart,
    AddExec(usize),
    BeginExecStart(usize),
    Spawn(usize),
    FailExecStart(usize),
    RecordPid(usize),
    FinishExecStart(usize),
    ExecExits(usize),
    RemoveExec(usize),
    /// The copiers of one exited process end their flush.
    Flush,
    Noise,
}

const INIT_PID: i32 = 10;
const INIT_STATUS: i32 = 7;

fn exec_pid(i: usize) -> i32 {
    100 + i as i32
}

fn exec_status(i: usize) -> i32 {
    20 + i as i32
}

/// Runs one random interleaving of a container's create, start and exit with up to four
/// execs, their flushes ending in any order, and exits of unrelated processes, then
/// checks the events.
fn interleaving(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (sink, sup, held) = held_supervisor();
    let n_execs = rng.below(5);
    let mut execs: Vec<SimExec> = (0..n_execs).map(|_| SimExec::default()).collect();
    let mut exec_starts: Vec<Option<Start<'_, ()>>> = (0..n_execs).map(|_| None).collect();
    let mut expect = Some(sup.expect_pid());
    let mut init_start: Option<Start<'_, ()>> = None;
    let (mut init_added, mut init_exited, mut init_started, mut init_start_over) =
        (false, false, false, false);
    let mut noise = 3;
    let mut trace = Vec::new();

    loop {
        let mut steps = Vec::new();
        if !init_added {
            steps.push(Step::AddInit);
        }
        if !init_exited {
            steps.push(Step::InitExits);
        }
        if init_added && init_start.is_none() && !init_start_over {
            steps.push(Step::BeginInitStart);
        }
        if init_start.is_some() {
            steps.extend([
                Step::FinishInitStart,
                Step::FinishInitStart,
                Step::FailInitStart,
            ]);
        }
        for (i, e) in execs.iter().enumerate() {
            let starting = exec_starts[i].is_some();
            if init_started && !e.added && !e.gave_up {
                steps.push(Step::AddExec(i));
            }
            if e.added && !starting && !e.spawned && !e.gave_up {
                steps.push(Step::BeginExecStart(i));
            }
            if starting && !e.spawned {
                steps.extend([Step::Spawn(i), Step::Spawn(i), Step::FailExecStart(i)]);
            }
            if e.spawned && !e.recorded {
                steps.push(Step::RecordPid(i));
            }
            if e.recorded && !e.finished {
                steps.push(Step::FinishExecStart(i));
            }
            if e.spawned && !e.exited {
                steps.push(Step::ExecExits(i));
            }
            let never_ran = e.added && e.gave_up && !starting;
            if !e.removed && (never_ran || (e.finished && e.exited)) {
                steps.push(Step::RemoveExec(i));
            }
        }
        if noise > 0 {
            steps.push(Step::Noise);
        }
        if held.len() > 0 {
            steps.push(Step::Flush);
        }
        if steps.is_empty() {
            break;
        }
        let step = steps[rng.below(steps.len())];
        trace.push(step);
        match step {
            Step::AddInit => {
                init_added = true;
                let x = expect.take().unwrap();
                sup.add_init("c", INIT_PID, Arc::new(()), x);
            }
            Step::InitExits => {
                init_exited = true;
                sup.exited(exit(INIT_PID, INIT_STATUS));
            }
            Step::BeginInitStart => match sup.begin_start("c", "") {
                Ok(s) => init_start = Some(s),
                Err(_) => init_start_over = true,
            },
            Step::FinishInitStart => {
                init_start_over = true;
                init_started = true;
                init_start.take().unwrap().finish();
            }
            Step::FailInitStart => {
                init_start_over = true;
                drop(init_start.take());
            }
            Step::AddExec(i) => match sup.add_exec("c", &i.to_string(), Arc::new(())) {
                Ok(()) => execs[i].added = true,
                Err(_) => execs[i].gave_up = true,
            },
            Step::BeginExecStart(i) => match sup.begin_start("c", &i.to_string()) {
                Ok(s) => exec_starts[i] = Some(s),
                Err(_) => execs[i].gave_up = true,
            },
            Step::Spawn(i) => execs[i].spawned = true,
            Step::FailExecStart(i) => {
                execs[i].gave_up = true;
                drop(exec_starts[i].take());
            }
            Step::RecordPid(i) => {
                execs[i].recorded = true;
                exec_starts[i].as_ref().unwrap().record_pid(exec_pid(i));
            }
            Step::FinishExecStart(i) => {
                execs[i].finished = true;
                exec_starts[i].take().unwrap().finish();
            }
            Step::ExecExits(i) => {
                execs[i].exited = true;
                sup.exited(exit(exec_pid(i), exec_status(i)));
            }
            Step::RemoveExec(i) => {
                execs[i].removed = true;
                // As Delete does: an exit still flushing is made final first.
                sup.settle("c", &i.to_string(), Duration::ZERO).unwrap();
                let (_, e) = sup
                    .remove_exec("c", &i.to_string())
                    .unwrap_or_else(|e| panic!("seed {seed}: remove exec {i}: {e}: {trace:?}"));
                let want = if execs[i].spawned { exec_status(i) } else { 0 };
                assert_eq!(e.status.get(), want as u32, "seed {seed}: {trace:?}");
            }
            Step::Flush => held.release(rng.below(held.len())),
            Step::Noise => {
                noise -= 1;
                sup.exited(exit(5000 + noise, 1));
            }
        }
    }

    let evs = sink.take();
    let ctx = || format!("seed {seed}: {trace:?}\n{evs:?}");
    let count = |want: &Ev| evs.iter().filter(|e| *e == want).count();
    let at = |want: &Ev| evs.iter().position(|e| e == want);
    // The init: exactly one TaskExit, after its TaskStart if it started, after the hook.
    let init_exit = exited("", INIT_PID as u32, INIT_STATUS as u32);
    assert_eq!(count(&init_exit), 1, "{}", ctx());
    assert_eq!(count(&hook()), 1, "{}", ctx());
    assert!(at(&hook()) < at(&init_exit), "{}", ctx());
    let init_start_ev = start("", INIT_PID as u32);
    assert_eq!(
        count(&init_start_ev),
        usize::from(init_started),
        "{}",
        ctx()
    );
    if init_started {
        assert!(at(&init_start_ev) < at(&init_exit), "{}", ctx());
    }
    assert_eq!(
        sup.wait("c", "", &|| false).unwrap().unwrap().status.get(),
        INIT_STATUS as u32,
        "{}",
        ctx()
    );
    // Each exec that ran: one TaskExecStarted, then one TaskExit, both before the init's.
    for (i, e) in execs.iter().enumerate() {
        let (id, pid) = (i.to_string(), exec_pid(i) as u32);
        let s = start(&id, pid);
        let x = exited(&id, pid, exec_status(i) as u32);
        let ran = usize::from(e.spawned);
        assert_eq!((count(&s), count(&x)), (ran, ran), "exec {i}: {}", ctx());
        if e.spawned {
            assert!(at(&s) < at(&x), "exec {i}: {}", ctx());
            assert!(at(&x) < at(&init_exit), "exec {i}: {}", ctx());
        }
    }
    // Nothing else: no exit of an unrelated process, nothing lost, nothing left parked.
    let expected = 2 + usize::from(init_started) + 2 * execs.iter().filter(|e| e.spawned).count();
    assert_eq!(evs.len(), expected, "{}", ctx());
    assert!(nothing_in_flight(&sup), "{}", ctx());
}

#[test]
fn ten_thousand_random_interleavings_keep_every_rule() {
    for seed in 0..10_000 {
        interleaving(seed);
    }
}
