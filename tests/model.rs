//! Model checking of the pool's hand-off protocol with shuttle, which runs the test's threads one
//! step at a time and explores their interleavings: at random (`check_random`) and with PCT
//! (`check_pct`, which favours schedules with few preemptions at chosen points).
//!
//! Only in builds with `--cfg sluicegate_model`, where the pool's lock and condition variables are
//! shuttle's (src/sync.rs) and pools are built by `sluicegate::model::build`, with no threads of
//! their own: the test opens connections when it wants, through the opener's own bookkeeping.
//! A timed wait there may time out at any moment, and an untimed one (`Duration::MAX`) blocks
//! until woken, so a waiter no one wakes is a deadlock shuttle reports. Run in a debug build:
//! the pool's state checks its invariants after every change. (Shuttle runs every thread on
//! one OS thread, so the check-out's thread-local hint, the connection this thread returned
//! last, is shared by all: it only chooses among idle connections.)
//!
//! `RUSTFLAGS="--cfg sluicegate_model" cargo test --test model`; `SLUICEGATE_MODEL_ITERATIONS=N` sets
//! how many schedules each scheduler tries per test (default 3000).

#![cfg(sluicegate_model)]

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shuttle::thread;
use sluicegate::model::Opener;
use sluicegate::{Builder, ManageConnection, Metrics, NopErrorHandler, Pool, PooledConnection};

/// A check-out that may time out (the model's timer may fire at any moment).
const TIMED: Duration = Duration::from_secs(60);
/// A check-out that waits for as long as it takes: its wait blocks until it is woken.
const UNTIMED: Duration = Duration::MAX;

/// What the fake database knows. Its locks are std's, held for one set operation and never
/// across a scheduling point, so they add no interleavings of their own.
#[derive(Default)]
struct World {
    /// Connections made so far; a connection's serial is its number in that count.
    created: AtomicU64,
    /// Serials of connections not yet dropped.
    live: Mutex<HashSet<u64>>,
    /// Serials of connections a test thread holds now.
    held: Mutex<HashSet<u64>>,
    /// The next validation fails.
    fail_validation: AtomicBool,
}

impl World {
    fn live(&self) -> HashSet<u64> {
        self.live.lock().unwrap().clone()
    }
}

/// A connection: a plain value that tells the world when it is dropped.
struct FakeConn {
    serial: u64,
    world: Arc<World>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        assert!(
            self.world.live.lock().unwrap().remove(&self.serial),
            "connection {} dropped twice",
            self.serial
        );
    }
}

struct Fake(Arc<World>);

impl ManageConnection for Fake {
    type Connection = FakeConn;
    type Error = io::Error;

    fn connect(&self) -> Result<FakeConn, io::Error> {
        let serial = self.0.created.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.live.lock().unwrap().insert(serial);
        Ok(FakeConn {
            serial,
            world: self.0.clone(),
        })
    }

    fn is_valid(&self, _: &mut FakeConn) -> Result<(), io::Error> {
        if self.0.fail_validation.swap(false, Ordering::Relaxed) {
            return Err(io::Error::other("this validation fails"));
        }
        Ok(())
    }

    fn has_broken(&self, _: &mut FakeConn) -> bool {
        false
    }
}

/// A model pool over a fresh world, its connections opened.
fn model_pool(builder: Builder<Fake>) -> (Pool<Fake>, Opener<Fake>, Arc<World>) {
    let world = Arc::new(World::default());
    let builder = builder.error_handler(Box::new(NopErrorHandler));
    let (pool, opener) = sluicegate::model::build(builder, Fake(world.clone())).unwrap();
    (pool, opener, world)
}

/// Uses a checked-out connection, letting other threads run meanwhile: it must be open, and
/// no other thread may hold it.
fn hold(world: &World, conn: &PooledConnection<Fake>) {
    let serial = conn.serial;
    assert!(
        world.live.lock().unwrap().contains(&serial),
        "connection {serial} handed out after it was closed"
    );
    assert!(
        world.held.lock().unwrap().insert(serial),
        "connection {serial} handed to two threads"
    );
    thread::yield_now();
    world.held.lock().unwrap().remove(&serial);
}

/// The opener's part in a model: three rounds of opening whatever the pool wants, with the
/// other threads free to run between them.
fn open_a_few(opener: &Opener<Fake>) {
    for _ in 0..3 {
        opener.open();
        thread::yield_now();
    }
}

/// Once every thread has finished and every guard is dropped: nothing is lost, waiting or
/// half-done, the counts add up, and the pool's connections are exactly the live ones.
fn assert_settled(pool: &Pool<Fake>, world: &World) {
    let m = pool.metrics();
    assert_eq!(
        (m.waiting, m.in_use, m.opening, m.closing),
        (0, 0, 0, 0),
        "{m:?}"
    );
    assert_eq!(m.idle, m.connections, "{m:?}");
    let state = pool.state();
    assert_eq!(
        (state.connections, state.idle_connections),
        (m.connections, m.idle)
    );
    assert_eq!(m.created, world.created.load(Ordering::Relaxed), "{m:?}");
    assert_eq!(
        m.created,
        u64::from(m.connections) + m.closed() + m.detached,
        "{m:?}"
    );
    assert_eq!(world.live().len(), m.connections as usize, "{m:?}");
    assert!(world.held.lock().unwrap().is_empty());
}

/// Lets other threads run until `pool` is in the state `wanted` describes, for a while at most
/// (it may never come): a check-out yields several times before it queues, so without this a
/// racing thread would mostly act before anyone waits.
fn until(pool: &Pool<Fake>, wanted: impl Fn(&Metrics) -> bool) {
    for _ in 0..30 {
        if wanted(&pool.metrics()) {
            return;
        }
        thread::yield_now();
    }
}

/// How many schedules each scheduler tries per test.
fn iterations() -> usize {
    std::env::var("SLUICEGATE_MODEL_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}

/// Runs `model` under the random scheduler, then under PCT (bug depth 3).
fn explore(model: fn()) {
    shuttle::check_random(model, iterations());
    shuttle::check_pct(model, iterations(), 3);
}

/// (a) One connection, held at first; three threads take it twice each with timed waits, and
/// the holder returns it once someone waits. A waiter's timer may fire just as the connection is
/// handed to it: it then takes the connection rather than leave it stranded with its ticket.
/// Either way the connection is never lost, and never with two threads.
fn timeout_races_a_hand_off() {
    let (pool, _opener, world) = model_pool(Pool::builder().max_size(1));
    let held = pool.get_timeout(TIMED).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            let world = world.clone();
            thread::spawn(move || {
                let (mut got, mut timed_out) = (0, 0);
                for _ in 0..2 {
                    match pool.get_timeout(TIMED) {
                        Ok(conn) => {
                            hold(&world, &conn);
                            got += 1;
                        }
                        Err(err) => {
                            assert!(err.is_timeout(), "{err}");
                            timed_out += 1;
                        }
                    }
                }
                (got, timed_out)
            })
        })
        .collect();
    until(&pool, |m| m.waiting > 0);
    drop(held);
    let (mut got, mut timed_out) = (1, 0);
    for t in threads {
        let (g, t) = t.join().unwrap();
        got += g;
        timed_out += t;
    }
    assert_settled(&pool, &world);
    let m = pool.metrics();
    assert_eq!((m.connections, m.created, m.closed()), (1, 1, 0), "{m:?}");
    assert_eq!((m.checkouts, m.timeouts), (got, timed_out), "{m:?}");
    assert!(m.waited < m.checkouts);
}

#[test]
fn a_waiter_timing_out_as_a_connection_is_handed_to_it_keeps_it() {
    explore(timeout_races_a_hand_off);
}

/// (b) Two connections, both held at first, so that three threads queue for them (two with no
/// timeout: a waiter that close does not wake is a deadlock; one with a timer); then one thread
/// returns the two (each a hand-off) once someone waits, while another closes the pool once
/// two wait. Every check-out ends with a
/// connection or `is_closed` (or, for the timed one, a timeout), and once the guards are gone
/// every connection was closed, once.
fn close_races_a_hand_off() {
    let (pool, _opener, world) = model_pool(Pool::builder().max_size(2));
    let held = [
        pool.get_timeout(UNTIMED).unwrap(),
        pool.get_timeout(UNTIMED).unwrap(),
    ];
    let mut threads: Vec<_> = [UNTIMED, UNTIMED, TIMED]
        .into_iter()
        .map(|timeout| {
            let pool = pool.clone();
            let world = world.clone();
            thread::spawn(move || {
                let mut got = 0;
                for _ in 0..2 {
                    match pool.get_timeout(timeout) {
                        Ok(conn) => {
                            hold(&world, &conn);
                            got += 1;
                        }
                        Err(err) => assert!(
                            err.is_closed() || (timeout == TIMED && err.is_timeout()),
                            "{err}"
                        ),
                    }
                }
                got
            })
        })
        .collect();
    let returner = pool.clone();
    threads.push(thread::spawn(move || {
        until(&returner, |m| m.waiting > 0);
        drop(held);
        0
    }));
    let closer = pool.clone();
    threads.push(thread::spawn(move || {
        until(&closer, |m| m.waiting > 1);
        closer.close();
        0
    }));
    let got: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(pool.is_closed());
    assert!(pool.get_timeout(UNTIMED).is_err_and(|err| err.is_closed()));
    assert_settled(&pool, &world);
    let m = pool.metrics();
    assert_eq!(m.checkouts, got + 2, "{m:?}");
    assert_eq!(
        (m.connections, m.created, m.closed_shutdown),
        (0, 2, 2),
        "{m:?}"
    );
    assert!(world.live().is_empty());
}

#[test]
fn close_racing_a_hand_off_ends_every_waiter_and_closes_every_connection() {
    explore(close_races_a_hand_off);
}

/// (c) Two connections; two threads check out twice each (one marks its second connection
/// broken, the other detaches its second), while a third evicts everything (once one is out) and a fourth plays
/// the opener, refilling a few times. An evicted connection is closed, not reused: a check-out
/// that starts after `evict_all` returned never gets a connection made before it began; the
/// first two connections are gone at the end, and the counts add up.
fn check_in_races_evict_all() {
    let (pool, opener, world) = model_pool(Pool::builder().max_size(2));
    // The first serial a check-out may get once eviction is over (0: not over).
    let fresh_from = Arc::new(AtomicU64::new(0));
    let mut threads: Vec<_> = [false, true]
        .into_iter()
        .map(|detaches| {
            let pool = pool.clone();
            let world = world.clone();
            let fresh_from = fresh_from.clone();
            thread::spawn(move || {
                for round in 0..2 {
                    let fresh = fresh_from.load(Ordering::Relaxed);
                    let Ok(mut conn) = pool.get_timeout(TIMED) else {
                        continue;
                    };
                    assert!(
                        conn.serial >= fresh,
                        "evicted connection {} handed out after evict_all",
                        conn.serial
                    );
                    hold(&world, &conn);
                    if round == 1 {
                        if detaches {
                            drop(PooledConnection::detach(conn));
                        } else {
                            PooledConnection::mark_broken(&mut conn);
                        }
                    }
                }
            })
        })
        .collect();
    let evictor = pool.clone();
    let evicting = world.clone();
    threads.push(thread::spawn(move || {
        until(&evictor, |m| m.in_use > 0);
        let made_before = evicting.created.load(Ordering::Relaxed);
        evictor.evict_all();
        fresh_from.store(made_before + 1, Ordering::Relaxed);
    }));
    threads.push(thread::spawn(move || open_a_few(&opener)));
    for t in threads {
        t.join().unwrap();
    }
    assert_settled(&pool, &world);
    let live = world.live();
    assert!(!live.contains(&1) && !live.contains(&2), "{live:?}");
    let m = pool.metrics();
    // Both first connections may have been broken or detached before the eviction.
    assert_eq!(m.closed(), m.closed_evicted + m.closed_broken, "{m:?}");
}

#[test]
fn check_in_racing_evict_all_closes_the_evicted_connection() {
    explore(check_in_races_evict_all);
}

/// (d) One connection, validated on every check-out; two threads queue behind its holder, in
/// order. The connection handed to the first fails validation (once): it closes, and that
/// waiter rejoins the head of the queue, so the replacement the opener makes goes to it, not
/// to the waiter behind it, which gets the connection after.
fn rejected_waiter_keeps_its_place() {
    let (pool, opener, world) = model_pool(
        Pool::builder()
            .max_size(1)
            .test_on_check_out(true)
            .validation_skip_window(Duration::ZERO),
    );
    let held = pool.get_timeout(UNTIMED).unwrap();
    world.fail_validation.store(true, Ordering::Relaxed);
    let served = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = ["first", "second"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let pool2 = pool.clone();
            let world = world.clone();
            let served = served.clone();
            let waiter = thread::spawn(move || {
                let conn = pool2.get_timeout(UNTIMED).unwrap();
                served.lock().unwrap().push((name, conn.serial));
                hold(&world, &conn);
            });
            while pool.metrics().waiting != i as u32 + 1 {
                thread::yield_now();
            }
            waiter
        })
        .collect();
    drop(held);
    let refill = thread::spawn(move || {
        while !opener.open() {
            thread::yield_now();
        }
    });
    for t in waiters {
        t.join().unwrap();
    }
    refill.join().unwrap();
    assert_eq!(*served.lock().unwrap(), [("first", 2), ("second", 2)]);
    assert_settled(&pool, &world);
    let m = pool.metrics();
    assert_eq!(
        (m.created, m.connections, m.closed_invalid),
        (2, 1, 1),
        "{m:?}"
    );
    assert_eq!((m.checkouts, m.waited), (3, 2), "{m:?}");
    assert_eq!(world.live(), HashSet::from([2]));
}

#[test]
fn a_waiter_whose_connection_fails_validation_is_served_before_those_behind_it() {
    explore(rejected_waiter_keeps_its_place);
}

/// (e) Three connections; two threads check out and in (timed waits, one of them marking its
/// connection broken once) while a third lowers `max_size` to 1 and raises it to 2, and the
/// opener opens when the pool wants. The pool's state checks, after every change, that the
/// places held never grow while they exceed the size and that no connection beyond it is idle;
/// at the end nothing is lost and the pool is within its final size.
fn resize_races_check_outs() {
    let (pool, opener, world) = model_pool(Pool::builder().max_size(3));
    let mut threads: Vec<_> = [false, true]
        .into_iter()
        .map(|breaks| {
            let pool = pool.clone();
            let world = world.clone();
            thread::spawn(move || {
                for round in 0..2 {
                    let Ok(mut conn) = pool.get_timeout(TIMED) else {
                        continue;
                    };
                    hold(&world, &conn);
                    if breaks && round == 0 {
                        PooledConnection::mark_broken(&mut conn);
                    }
                }
            })
        })
        .collect();
    let resizer = pool.clone();
    threads.push(thread::spawn(move || {
        resizer.set_max_size(1).unwrap();
        thread::yield_now();
        resizer.set_max_size(2).unwrap();
    }));
    threads.push(thread::spawn(move || open_a_few(&opener)));
    for t in threads {
        t.join().unwrap();
    }
    assert_settled(&pool, &world);
    let m = pool.metrics();
    assert_eq!(m.max_size, 2);
    assert!(m.connections <= 2, "{m:?}");
    // Three at first, two at most now: the shrink (or the broken one) closed at least one.
    assert!(m.closed_shrunk + m.closed_broken >= 1, "{m:?}");
}

#[test]
fn resizing_racing_check_outs_keeps_the_pool_within_its_size() {
    explore(resize_races_check_outs);
}
