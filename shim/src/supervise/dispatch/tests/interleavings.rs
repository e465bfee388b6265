//! Thousands of random interleavings of one container's create, start, execs, exits and
//! flushes, each checked against every ordering rule.

use super::*;

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
        sup.wait_timeout("c", "", Duration::from_secs(10))
            .unwrap()
            .unwrap()
            .status
            .get(),
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
