//! Exits whose output is still being flushed: final only once it is, never signalled by
//! pid meanwhile, published in order whichever thread ends the flush.

use super::*;

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
