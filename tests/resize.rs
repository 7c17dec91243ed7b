//! `Pool::set_max_size` and `Pool::set_min_idle`: invalid values are errors naming the setting
//! and change nothing; shrinking closes idle connections at once and the rest as they come
//! back; growing serves the waiting threads in order; and, under threads checking out and in
//! while another resizes at random, no place is ever lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{Connect, FakeManager, SOON, eventually, pool};
use sluicegate::{Pool, PooledConnection};

#[test]
fn invalid_sizes_are_errors_naming_the_setting_and_change_nothing() {
    let (pool, _) = pool(4);
    let zero = pool.set_max_size(0).unwrap_err();
    assert!(zero.to_string().contains("`max_size`"), "{zero}");
    let too_many = pool.set_min_idle(Some(5)).unwrap_err();
    assert!(too_many.to_string().contains("`min_idle`"), "{too_many}");
    // The same words as the builder's.
    let built = Pool::builder()
        .max_size(4)
        .min_idle(Some(5))
        .build(FakeManager::new())
        .err()
        .unwrap();
    assert_eq!(too_many.to_string(), built.to_string());
    assert_eq!((pool.max_size(), pool.min_idle()), (4, None));

    pool.set_min_idle(Some(3)).unwrap();
    let below = pool.set_max_size(2).unwrap_err();
    assert!(
        below.to_string().contains("`max_size`") && below.to_string().contains("min_idle (3)"),
        "{below}"
    );
    assert_eq!((pool.max_size(), pool.min_idle()), (4, Some(3)));
    assert_eq!(pool.state().connections, 4);
}

#[test]
fn shrinking_closes_idle_connections_now_and_the_rest_as_they_come_back() {
    let (pool, manager) = pool(4);
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    pool.set_max_size(1).unwrap();
    let m = pool.metrics();
    assert_eq!(
        (m.max_size, m.connections, m.idle, m.closed_shrunk),
        (1, 3, 0, 1)
    );
    assert_eq!(manager.script.live(), 3);
    let debug = format!("{pool:?}");
    assert!(debug.contains("max_size: 1,"), "{debug}");
    let mut held = held.into_iter();
    drop(held.next());
    assert_eq!(pool.state().connections, 2, "closed as it came back");
    drop(held.next());
    assert_eq!(pool.state().connections, 1);
    drop(held.next());
    let m = pool.metrics();
    assert_eq!(
        (m.connections, m.idle, m.closed_shrunk),
        (1, 1, 3),
        "the last one fits and stays"
    );
    assert_eq!(manager.script.live(), 1);
    // And the pool is one connection from now on.
    let one = pool.get().unwrap();
    assert!(
        pool.get_timeout(Duration::from_millis(10))
            .unwrap_err()
            .is_timeout()
    );
    drop(one);
}

#[test]
fn shrinking_closes_the_least_recently_used_idle_connections() {
    let (pool, manager) = pool(3);
    // Use two of them, so that the third is the least recently used.
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let (a_id, b_id) = (PooledConnection::id(&a), PooledConnection::id(&b));
    drop((a, b));
    manager.script.dropped.lock().clear();
    pool.set_max_size(2).unwrap();
    let dropped = manager.script.dropped.lock().clone();
    assert_eq!(dropped.len(), 1);
    assert!(!dropped.contains(&a_id) && !dropped.contains(&b_id));
}

#[test]
fn growing_serves_the_waiting_threads_in_the_order_they_came() {
    let (pool, _) = pool(1);
    let held = pool.get().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut waiters = Vec::new();
    for place in 0..3 {
        let mine = pool.clone();
        let tx = tx.clone();
        waiters.push(thread::spawn(move || {
            let conn = mine.get_timeout(SOON).unwrap();
            tx.send((place, PooledConnection::id(&conn))).unwrap();
            // Hold it until the test has seen every waiter served.
            thread::park();
            drop(conn);
        }));
        // Each joins the queue before the next starts.
        assert!(eventually(SOON, || pool.metrics().waiting == place + 1));
    }
    pool.set_max_size(4).unwrap();
    let mut served: Vec<(u32, u64)> = (0..3).map(|_| rx.recv_timeout(SOON).unwrap()).collect();
    // The opener opens one connection at a time and hands each to the longest waiter: ids
    // grow in the waiters' order.
    served.sort_unstable();
    assert!(served.windows(2).all(|w| w[0].1 < w[1].1), "{served:?}");
    assert_eq!(pool.metrics().max_size, 4);
    for waiter in &waiters {
        waiter.thread().unpark();
    }
    for waiter in waiters {
        waiter.join().unwrap();
    }
    drop(held);
    assert!(eventually(SOON, || pool.state().idle_connections == 4));
}

#[test]
fn a_connection_opened_beyond_a_lowered_size_is_closed_and_the_waiter_served_by_a_return() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .build(manager.clone())
        .unwrap();
    let held = pool.get().unwrap();
    let (gate, gated) = crossbeam_channel::bounded(0);
    manager.script.plan_connect([Connect::Gate(gated)]);
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || PooledConnection::id(&pool.get_timeout(SOON).unwrap()))
    };
    assert!(eventually(SOON, || pool.metrics().opening == 1));
    pool.set_min_idle(None).unwrap();
    pool.set_max_size(1).unwrap();
    gate.send(()).unwrap();
    assert!(eventually(SOON, || pool.metrics().closed_shrunk == 1));
    assert_eq!(pool.metrics().waiting, 1, "still waiting");
    let held_id = PooledConnection::id(&held);
    drop(held);
    assert_eq!(waiter.join().unwrap(), held_id);
    assert_eq!(pool.state().connections, 1);
}

#[test]
fn raising_min_idle_opens_connections_and_none_follows_max_size() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(4)
        .min_idle(Some(0))
        .build(manager)
        .unwrap();
    assert_eq!(pool.state().connections, 0);
    pool.set_min_idle(Some(2)).unwrap();
    assert!(eventually(SOON, || pool.state().idle_connections == 2));
    pool.set_min_idle(None).unwrap();
    assert_eq!(pool.min_idle(), None);
    assert!(eventually(SOON, || pool.state().idle_connections == 4));
    pool.set_max_size(6).unwrap();
    assert!(eventually(SOON, || pool.state().idle_connections == 6));
}

/// A small deterministic random source (xorshift), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn resizing_at_random_under_load_loses_no_place() {
    const MOST: u32 = 8;
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(4)
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6u64)
        .map(|seed| {
            let pool = pool.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut rng = Rng(seed * 7919 + 17);
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // One connection waited for, and maybe more taken without waiting: a
                    // thread that held some and waited for more could deadlock with the
                    // others whatever the pool did.
                    let mut conns = vec![pool.get_timeout(SOON).expect("served")];
                    for _ in 0..rng.below(3) {
                        conns.extend(pool.try_get());
                    }
                    if rng.below(10) == 0 {
                        if let Some(conn) = conns.last_mut() {
                            PooledConnection::mark_broken(conn);
                        }
                    }
                    if rng.below(3) == 0 {
                        thread::yield_now();
                    }
                    drop(conns);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut rng = Rng(0x5eed);
    for _ in 0..2000 {
        let size = 1 + rng.below(u64::from(MOST)) as u32;
        if let Err(err) = pool.set_max_size(size) {
            // Below the min_idle set last: lower that first, as the error says.
            assert!(pool.min_idle().unwrap() > size, "{err}");
            pool.set_min_idle(Some(size)).unwrap();
            pool.set_max_size(size).unwrap();
        }
        if rng.below(4) == 0 {
            let min_idle = rng.below(u64::from(size) + 1) as u32;
            pool.set_min_idle(Some(min_idle)).unwrap();
        } else if rng.below(4) == 0 {
            pool.set_min_idle(None).unwrap();
        }
        let m = pool.metrics();
        // Places held never grow while they exceed a lowered size, so never beyond the most.
        assert!(m.connections + m.opening + m.closing <= MOST, "{m:?}");
        thread::sleep(Duration::from_micros(200 * rng.below(5)));
    }
    let final_size = 5;
    pool.set_max_size(final_size).unwrap();
    pool.set_min_idle(None).unwrap();
    stop.store(true, Ordering::Relaxed);
    let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(rounds > 0);

    // Quiescent: everything came back, so the pool is within its size...
    let m = pool.metrics();
    assert!(m.connections <= final_size, "{m:?}");
    assert_eq!(m.in_use, 0, "{m:?}");
    assert_eq!(
        m.created,
        u64::from(m.connections) + m.closed() + m.detached
    );
    // ...and it can serve `max_size` check-outs at once: no place was lost.
    let all: Vec<_> = (0..final_size)
        .map(|_| pool.get_timeout(SOON).expect("a place for each"))
        .collect();
    assert!(
        pool.get_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_timeout()
    );
    let m = pool.metrics();
    assert_eq!(
        (m.connections, m.in_use, m.max_size),
        (final_size, final_size, final_size)
    );
    drop(all);
    assert!(eventually(SOON, || manager.script.live() == i64::from(final_size)));
}
