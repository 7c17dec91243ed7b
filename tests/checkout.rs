//! Check-out: most-recently-used reuse, the strict FIFO queue and its direct hand-off, the
//! timeout race, and validation on check-out with its skip window.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{FakeError, FakeManager, SOON, eventually, pool};
use parking_lot::Mutex;
use sluicegate::{NopErrorHandler, Pool, PooledConnection};

/// Waits until exactly `n` threads are queued in `pool`.
fn until_waiting(pool: &Pool<FakeManager>, n: u32) {
    assert!(
        eventually(SOON, || pool.metrics().waiting == n),
        "expected {n} waiting, have {}",
        pool.metrics().waiting
    );
}

#[test]
fn idle_connections_are_reused_most_recently_used_first() {
    let (pool, _) = pool(3);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let c = pool.get().unwrap();
    let (ida, idb, idc) = (a.id, b.id, c.id);
    drop(b);
    drop(c);
    drop(a);
    // Last returned, first handed out.
    assert_eq!(pool.get().unwrap().id, ida);
    let first = pool.get().unwrap();
    let second = pool.get().unwrap();
    assert_eq!((first.id, second.id), (ida, idc));
    let third = pool.get().unwrap();
    assert_eq!(third.id, idb);
}

#[test]
fn waiters_are_served_in_the_order_they_arrived() {
    let (pool, _) = pool(1);
    let held = pool.get().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..6 {
        let handle = pool.clone();
        let served = served.clone();
        threads.push(thread::spawn(move || {
            let conn = handle.get().unwrap();
            served.lock().push(i);
            drop(conn);
        }));
        until_waiting(&pool, i + 1);
    }
    drop(held);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*served.lock(), vec![0, 1, 2, 3, 4, 5]);
    let m = pool.metrics();
    assert_eq!(m.waited, 6);
    assert!(m.wait_time > Duration::ZERO);
}

#[test]
fn nobody_takes_a_returned_connection_ahead_of_the_thread_waiting_for_it() {
    // A return to a queued thread hands it the connection there and then: neither the returning
    // thread, asking again at once, nor a newcomer asking all the while without queueing may
    // get it. A pool that lets them barge in may still be lucky on one return (which thread runs
    // first after it is the scheduler's choice, and parking_lot's mutex hands itself to the
    // thread it wakes when it has not for a while), so there are hundreds, in quick succession.
    let (pool, _) = pool(1);
    let (ask, asked) = crossbeam_channel::bounded::<()>(0);
    let (got_tx, got) = crossbeam_channel::bounded(0);
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || {
            while asked.recv().is_ok() {
                let conn = pool.get_timeout(SOON).unwrap();
                got_tx.send(conn.id).unwrap();
                released.recv().unwrap();
            }
        })
    };
    // While `armed` a thread is queued, so no connection may be idle: whatever the newcomer
    // gets then was taken from that thread. `loops` lets the test see it has noticed a disarm.
    let armed = Arc::new(AtomicBool::new(false));
    let loops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let newcomer = {
        let (pool, armed, loops, stop) = (pool.clone(), armed.clone(), loops.clone(), stop.clone());
        thread::spawn(move || {
            let mut taken = 0;
            while !stop.load(Ordering::SeqCst) {
                let watched = armed.load(Ordering::SeqCst);
                if pool.try_get().is_some() && watched {
                    taken += 1;
                }
                loops.fetch_add(1, Ordering::SeqCst);
            }
            taken
        })
    };
    for round in 0..300 {
        let held = pool.get_timeout(SOON).unwrap();
        let id = held.id;
        ask.send(()).unwrap();
        // Spinning, not sleeping: with a return every millisecond or more, parking_lot would
        // always hand its lock to the waiter it wakes.
        let asked_at = Instant::now();
        while pool.metrics().waiting == 0 {
            assert!(asked_at.elapsed() < SOON, "round {round}: never queued");
            thread::yield_now();
        }
        armed.store(true, Ordering::SeqCst);
        drop(held);
        // Handed over by the return itself: the waiter need not have run yet.
        let m = pool.metrics();
        assert_eq!(
            (m.waiting, m.idle),
            (0, 0),
            "round {round}: not handed over"
        );
        assert!(
            pool.try_get().is_none(),
            "round {round}: the returning thread took its connection back"
        );
        assert_eq!(got.recv_timeout(SOON).unwrap(), id, "round {round}");
        // The newcomer goes on while the waiter returns the connection (idle then, and fair
        // game): it must first have seen the disarm.
        armed.store(false, Ordering::SeqCst);
        let seen = loops.load(Ordering::SeqCst);
        while loops.load(Ordering::SeqCst) < seen + 2 {
            assert!(
                asked_at.elapsed() < SOON,
                "round {round}: the newcomer stalled"
            );
            thread::yield_now();
        }
        release.send(()).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    assert_eq!(newcomer.join().unwrap(), 0, "a newcomer took it");
    drop(ask);
    waiter.join().unwrap();
}

#[test]
fn a_connection_handed_over_as_the_timeout_fires_is_never_lost() {
    let (pool, _) = pool(1);
    // Race a waiter's timeout against the return of the only connection, many times, with the
    // two landing within microseconds of each other. Whoever wins, the connection must end up
    // either with the waiter or back in the pool: never stranded.
    let timeout = Duration::from_millis(2);
    let (mut served, mut timed_out) = (0, 0);
    // When to return the connection, after the waiter asked: moved later after each round the
    // waiter was served and earlier after each timeout, so the rounds keep straddling the
    // moment the two collide however the machine schedules the threads.
    let step = Duration::from_micros(37);
    let mut delay = timeout;
    for round in 0..300u64 {
        let held = pool.get().unwrap();
        let (asking_tx, asking_rx) = crossbeam_channel::bounded(1);
        let waiter = {
            let pool = pool.clone();
            thread::spawn(move || {
                asking_tx.send(Instant::now()).unwrap();
                pool.get_timeout(timeout).map(|c| c.id)
            })
        };
        let release_at = asking_rx.recv().unwrap() + delay;
        while Instant::now() < release_at {
            std::hint::spin_loop();
        }
        drop(held);
        match waiter.join().unwrap() {
            Ok(_) => {
                served += 1;
                delay += step;
            }
            Err(err) => {
                assert!(err.is_timeout(), "{err}");
                timed_out += 1;
                delay = delay.saturating_sub(step);
            }
        }
        let state = pool.state();
        assert_eq!(
            (state.connections, state.idle_connections),
            (1, 1),
            "round {round}: the connection was stranded"
        );
        assert!(pool.try_get().is_some(), "round {round}");
        assert_eq!(pool.metrics().waiting, 0);
    }
    // Both outcomes happened, so the race was really run.
    assert!(
        served > 0 && timed_out > 0,
        "{served} served, {timed_out} timed out"
    );
}

#[test]
fn validation_runs_on_the_checking_out_thread() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(Duration::ZERO)
        .build(manager.clone())
        .unwrap();
    let before = manager.script.validations();
    let conn = pool.get().unwrap();
    assert_eq!(manager.script.validations(), before + 1);
    drop(conn);
    let _conn = pool.get().unwrap();
    assert_eq!(manager.script.validations(), before + 2);
}

#[test]
fn a_connection_checked_in_within_the_skip_window_is_not_validated() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(Duration::from_secs(3600))
        .build(manager.clone())
        .unwrap();
    for _ in 0..10 {
        drop(pool.get().unwrap());
    }
    assert_eq!(manager.script.validations(), 0);
}

#[test]
fn a_connection_idle_longer_than_the_skip_window_is_validated() {
    let manager = FakeManager::new();
    let window = Duration::from_millis(50);
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(window)
        .build(manager.clone())
        .unwrap();
    drop(pool.get().unwrap());
    assert_eq!(manager.script.validations(), 0);
    // Time is the behaviour here: let the window pass.
    thread::sleep(window * 3);
    drop(pool.get().unwrap());
    assert_eq!(manager.script.validations(), 1);
}

#[test]
fn no_validation_when_test_on_check_out_is_off() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .test_on_check_out(false)
        .validation_skip_window(Duration::ZERO)
        .build(manager.clone())
        .unwrap();
    for _ in 0..5 {
        drop(pool.get().unwrap());
    }
    assert_eq!(manager.script.validations(), 0);
}

#[test]
fn a_connection_failing_validation_is_closed_and_the_next_one_is_used() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .plan_validation([Err(FakeError::new("gone away")), Ok(())]);
    let conn = pool.get().unwrap();
    let m = pool.metrics();
    assert_eq!(m.closed_invalid, 1);
    assert_eq!(manager.script.validations(), 2);
    // The bad connection was closed: only this one and a replacement remain.
    assert_eq!(manager.script.dropped.lock().len(), 1);
    assert_ne!(manager.script.dropped.lock()[0], conn.id);
}

#[test]
fn a_waiter_whose_handed_connection_fails_validation_keeps_its_place_and_deadline() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    let held = pool.get().unwrap();
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || {
            let start = Instant::now();
            let got = pool.get_timeout(Duration::from_secs(30)).map(|c| c.id);
            (got, start.elapsed())
        })
    };
    until_waiting(&pool, 1);
    let old = held.id;
    manager
        .script
        .plan_validation([Err(FakeError::new("stale"))]);
    drop(held);
    let (got, _) = waiter.join().unwrap();
    let got = got.unwrap();
    assert_ne!(got, old, "the invalid connection must not be handed out");
    assert_eq!(pool.metrics().closed_invalid, 1);
}

#[test]
fn when_every_validation_fails_the_timeout_reports_the_validation_error() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .validation_skip_window(Duration::ZERO)
        .connection_timeout(Duration::from_millis(300))
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .fail_validation(Some(FakeError::new("validation boom")));
    let start = Instant::now();
    let err = pool.get().unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("validation boom"), "{err}");
    assert!(err.to_string().contains("last validation error"), "{err}");
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(pool.metrics().closed_invalid >= 2);
}

#[test]
fn try_get_does_not_wait_and_respects_the_queue() {
    let (pool, _) = pool(1);
    let held = pool.get().unwrap();
    let start = Instant::now();
    assert!(pool.try_get().is_none());
    assert!(start.elapsed() < Duration::from_secs(1));
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || drop(pool.get().unwrap()))
    };
    until_waiting(&pool, 1);
    drop(held);
    waiter.join().unwrap();
    let conn = pool.try_get().expect("idle again once the waiter is done");
    assert!(PooledConnection::id(&conn) > 0);
}

/// Holds both connections of a two-connection pool, so each is checked out once, and returns
/// their ids in check-out order.
fn take_both(pool: &Pool<FakeManager>) -> [u64; 2] {
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    [a.id, b.id]
}

#[test]
fn a_connection_the_server_closed_while_idle_is_never_handed_out_even_inside_the_skip_window() {
    for test_on_check_out in [true, false] {
        let manager = FakeManager::new();
        let pool = Pool::builder()
            .max_size(2)
            .test_on_check_out(test_on_check_out)
            .validation_skip_window(Duration::from_secs(3600))
            .build(manager.clone())
            .unwrap();
        let [first, second] = take_both(&pool);
        manager.script.hang_up(first);
        let handed = take_both(&pool);
        assert!(
            !handed.contains(&first),
            "handed out {first} after its server hung up"
        );
        assert!(handed.contains(&second));
        let m = pool.metrics();
        assert_eq!(m.closed_broken, 1);
        assert_eq!(manager.script.dropped.lock().as_slice(), &[first]);
        assert_eq!(manager.script.validations(), 0, "no round trip was needed");
    }
}

#[test]
fn the_closed_check_runs_on_every_check_out_and_has_broken_on_every_check_in() {
    let (pool, manager) = pool(1);
    let script = &manager.script;
    let broken_checks = script.has_broken_calls.load(Ordering::SeqCst);
    let closed_checks = script.is_closed_calls.load(Ordering::SeqCst);
    for _ in 0..5 {
        drop(pool.get().unwrap());
    }
    assert_eq!(
        script.has_broken_calls.load(Ordering::SeqCst) - broken_checks,
        5,
        "has_broken on every check-in"
    );
    assert_eq!(
        script.is_closed_calls.load(Ordering::SeqCst) - closed_checks,
        5,
        "is_closed on every check-out, however soon after its check-in"
    );
}

#[test]
fn a_closed_check_that_panics_closes_the_connection_and_the_check_out_goes_on() {
    let (pool, manager) = pool(1);
    let old = pool.get().unwrap().id;
    manager.script.is_closed_panics.store(1, Ordering::SeqCst);
    // The idle connection is asked, the check panics, the connection is closed, and the
    // check-out waits for its replacement.
    let conn = pool.get_timeout(SOON).unwrap();
    assert_ne!(conn.id, old);
    assert_eq!(manager.script.dropped.lock().as_slice(), &[old]);
    assert_eq!(pool.metrics().closed_broken, 1);
}

#[test]
fn a_thread_gets_back_the_connection_it_used_last() {
    let (pool, _manager) = pool(2);
    // Thread A borrows through a channel, so the test decides when each step happens.
    let (ask, asked) = crossbeam_channel::bounded::<bool>(0);
    let (tell, told) = crossbeam_channel::bounded::<u64>(0);
    let a = {
        let pool = pool.clone();
        thread::spawn(move || {
            let mut held = None;
            while let Ok(take) = asked.recv() {
                if take {
                    let conn = pool.get().unwrap();
                    tell.send(conn.id).unwrap();
                    held = Some(conn);
                } else {
                    drop(held.take());
                    tell.send(0).unwrap();
                }
            }
        })
    };
    ask.send(true).unwrap();
    let a_first = told.recv().unwrap();
    let b_first = pool.get().unwrap();
    ask.send(false).unwrap();
    told.recv().unwrap();
    let b_id = b_first.id;
    drop(b_first); // the most recently returned: on top of the idle stack
    ask.send(true).unwrap();
    assert_eq!(
        told.recv().unwrap(),
        a_first,
        "A gets its own connection back"
    );
    assert_eq!(pool.get().unwrap().id, b_id, "and so does this thread");
    drop(ask);
    a.join().unwrap();
}
