//! `Pool::close_within`: it stops check-outs at once, waits for the checked-out connections to
//! come back (closing each), and says what was still out when it stopped waiting.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{FakeManager, SOON, eventually, pool};
use sluicegate::Pool;

/// Holds a connection of `pool` on its own thread until `release` is sent to (or dropped).
fn hold(pool: &Pool<FakeManager>) -> (crossbeam_channel::Sender<()>, thread::JoinHandle<()>) {
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let (taken, took) = crossbeam_channel::bounded(0);
    let pool = pool.clone();
    let holder = thread::spawn(move || {
        let conn = pool.get_timeout(SOON).unwrap();
        taken.send(()).unwrap();
        let _ = released.recv();
        drop(conn);
    });
    took.recv().unwrap();
    (release, holder)
}

#[test]
fn drains_when_the_connections_come_back_in_time() {
    let (pool, manager) = pool(3);
    let (release_a, a) = hold(&pool);
    let (release_b, b) = hold(&pool);
    let closer = {
        let pool = pool.clone();
        thread::spawn(move || pool.close_within(SOON))
    };
    assert!(eventually(SOON, || pool.is_closed()));
    // New check-outs fail from the first moment; the idle one is closed already.
    assert!(pool.get().unwrap_err().is_closed());
    assert_eq!(pool.state().connections, 2);
    drop(release_a);
    drop(release_b);
    let drained = closer.join().unwrap();
    assert!(drained.is_complete(), "{drained}");
    assert_eq!(drained.still_out(), 0);
    assert_eq!(
        manager.script.live(),
        0,
        "every connection closed when it returned"
    );
    assert_eq!(pool.metrics().closed_shutdown, 3);
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn returns_after_the_timeout_with_the_connections_still_out() {
    let (pool, manager) = pool(3);
    let held = pool.get().unwrap();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let drained = pool.close_within(timeout);
    let took = started.elapsed();
    assert!(!drained.is_complete());
    assert_eq!(drained.still_out(), 1);
    assert!(
        drained
            .to_string()
            .starts_with("1 connection still checked out"),
        "{drained}"
    );
    assert!(took >= timeout && took < timeout + SOON, "{took:?}");
    // It closes when it comes back, as after close().
    drop(held);
    assert_eq!(pool.state().connections, 0);
    assert_eq!(manager.script.live(), 0);
}

#[test]
fn waiting_check_outs_fail_at_once_not_at_the_drain_deadline() {
    let (pool, _) = pool(1);
    let held = pool.get().unwrap();
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.get_timeout(Duration::MAX).map(drop))
    };
    assert!(eventually(SOON, || pool.metrics().waiting == 1));
    let closer = {
        let pool = pool.clone();
        thread::spawn(move || pool.close_within(SOON))
    };
    // The waiter fails while the connection is still held.
    assert!(waiter.join().unwrap().unwrap_err().is_closed());
    drop(held);
    assert!(closer.join().unwrap().is_complete());
}

#[test]
fn concurrent_callers_all_see_the_drain() {
    let (pool, manager) = pool(4);
    let holders: Vec<_> = (0..2).map(|_| hold(&pool)).collect();
    let closers: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.close_within(SOON))
        })
        .collect();
    // One impatient caller among them returns with the count, the others keep waiting.
    let impatient = pool.close_within(Duration::from_millis(20));
    assert_eq!(impatient.still_out(), 2);
    for (release, holder) in holders {
        drop(release);
        holder.join().unwrap();
    }
    for closer in closers {
        assert!(closer.join().unwrap().is_complete());
    }
    assert_eq!(manager.script.live(), 0);
}

#[test]
fn on_a_closed_pool_it_only_waits() {
    let (pool, manager) = pool(2);
    pool.close();
    assert!(pool.close_within(Duration::ZERO).is_complete());

    let (pool, _) = pool_with_one_out();
    pool.close();
    let drained = pool.close_within(Duration::from_millis(10));
    assert_eq!(drained.still_out(), 1);
    assert_eq!(manager.script.live(), 0);
}

/// A pool of two with one connection checked out for good (detached elsewhere would free it;
/// this one is leaked on purpose so that it never comes back).
fn pool_with_one_out() -> (Pool<FakeManager>, FakeManager) {
    let (pool, manager) = pool(2);
    std::mem::forget(pool.get().unwrap());
    (pool, manager)
}
