//! Check-in: what comes back is reused only if it is healthy. Broken connections, connections
//! marked broken, connections past their lifetime and connections dropped by a panicking thread
//! are closed; `has_broken` and the closing run without the pool's lock.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{FakeConn, FakeError, FakeManager, SOON, eventually, finishes_within, pool};
use parking_lot::Mutex;
use sluicegate::{ManageConnection, Pool, PooledConnection};

#[test]
fn has_broken_runs_on_every_check_in() {
    let (pool, manager) = pool(1);
    for _ in 0..3 {
        drop(pool.get().unwrap());
    }
    assert_eq!(
        manager
            .script
            .has_broken_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[test]
fn a_broken_connection_is_closed_not_reused() {
    let (pool, manager) = pool(1);
    let conn = pool.get().unwrap();
    let id = conn.id;
    manager.script.break_conn(id);
    drop(conn);
    assert_eq!(*manager.script.dropped.lock(), vec![id]);
    let m = pool.metrics();
    assert_eq!(m.closed_broken, 1);
    assert_ne!(pool.get().unwrap().id, id);
}

#[test]
fn a_connection_marked_broken_is_closed_not_reused() {
    let (pool, manager) = pool(1);
    let mut conn = pool.get().unwrap();
    let id = conn.id;
    PooledConnection::mark_broken(&mut conn);
    drop(conn);
    assert_eq!(*manager.script.dropped.lock(), vec![id]);
    assert_eq!(pool.metrics().closed_broken, 1);
    assert_ne!(pool.get().unwrap().id, id);
}

#[test]
fn a_connection_dropped_while_its_thread_panics_is_closed() {
    let (pool, manager) = pool(1);
    let id = pool.get().unwrap().id;
    let p = pool.clone();
    let outcome = thread::spawn(move || {
        let _conn = p.get().unwrap();
        panic!("request handler failed mid-transaction");
    })
    .join();
    assert!(outcome.is_err());
    assert_eq!(*manager.script.dropped.lock(), vec![id]);
    assert_eq!(pool.metrics().closed_broken, 1);
    assert_ne!(pool.get().unwrap().id, id);
}

const LIFETIME: Duration = Duration::from_millis(100);

/// A pool of one connection that lives `LIFETIME`.
fn one_short_lived_connection() -> (Pool<FakeManager>, FakeManager) {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .max_lifetime(Some(LIFETIME))
        .build(manager.clone())
        .unwrap();
    (pool, manager)
}

#[test]
fn a_connection_past_its_lifetime_is_closed_when_it_comes_back() {
    let (pool, manager) = one_short_lived_connection();
    let conn = pool.get().unwrap();
    let id = conn.id;
    // Time is the behaviour: hold it past its lifetime.
    thread::sleep(LIFETIME * 2);
    drop(conn);
    assert_eq!(*manager.script.dropped.lock(), vec![id]);
    assert_eq!(pool.metrics().closed_max_lifetime, 1);
    assert_ne!(pool.get().unwrap().id, id);
}

#[test]
fn an_idle_connection_past_its_lifetime_is_not_handed_out() {
    let (pool, manager) = one_short_lived_connection();
    let id = pool.get().unwrap().id;
    thread::sleep(LIFETIME * 2);
    // Closed by the reaper at its deadline, or by this check-out if the reaper ran late.
    let conn = pool.get().unwrap();
    assert_ne!(conn.id, id);
    assert_eq!(manager.script.dropped.lock().first(), Some(&id));
    assert!(pool.metrics().closed_max_lifetime >= 1);
}

#[test]
fn a_panic_in_has_broken_closes_the_connection_and_keeps_the_slot() {
    struct PanickyBroken(FakeManager);
    impl ManageConnection for PanickyBroken {
        type Connection = FakeConn;
        type Error = FakeError;
        fn connect(&self) -> Result<FakeConn, FakeError> {
            self.0.connect()
        }
        fn is_valid(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
            self.0.is_valid(conn)
        }
        fn has_broken(&self, conn: &mut FakeConn) -> bool {
            if conn.uses == 1 {
                panic!("driver bug in has_broken");
            }
            false
        }
    }
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .build(PanickyBroken(manager.clone()))
        .unwrap();
    let mut conn = pool.get().unwrap();
    conn.uses = 1;
    drop(conn);
    assert_eq!(pool.metrics().closed_broken, 1);
    // The slot was freed: a new connection comes.
    let conn = pool.get_timeout(SOON).unwrap();
    assert_eq!(conn.uses, 0);
}

/// A manager whose every call, and whose connections' drop, reads the pool's state: if the
/// pool held its lock around any of them, the test would deadlock.
struct Reentrant {
    inner: FakeManager,
    pool: Arc<Mutex<Option<Pool<Reentrant>>>>,
}

impl Reentrant {
    fn peek(&self) {
        if let Some(pool) = self.pool.lock().clone() {
            let _ = pool.state();
            let _ = pool.metrics();
        }
    }
}

struct ReentrantConn {
    _inner: FakeConn,
    pool: Arc<Mutex<Option<Pool<Reentrant>>>>,
}

impl Drop for ReentrantConn {
    fn drop(&mut self) {
        // `try_lock`: the slot itself may be held by the test thread that is clearing it.
        if let Some(slot) = self.pool.try_lock() {
            if let Some(pool) = slot.as_ref() {
                let _ = pool.state();
            }
        }
    }
}

impl ManageConnection for Reentrant {
    type Connection = ReentrantConn;
    type Error = FakeError;
    fn connect(&self) -> Result<ReentrantConn, FakeError> {
        self.peek();
        Ok(ReentrantConn {
            _inner: self.inner.connect()?,
            pool: self.pool.clone(),
        })
    }
    fn is_valid(&self, _: &mut ReentrantConn) -> Result<(), FakeError> {
        self.peek();
        Ok(())
    }
    fn has_broken(&self, _: &mut ReentrantConn) -> bool {
        self.peek();
        true
    }
}

#[test]
fn driver_calls_and_connection_drops_happen_without_the_pool_lock() {
    finishes_within(Duration::from_secs(30), || {
        let slot = Arc::new(Mutex::new(None));
        let manager = Reentrant {
            inner: FakeManager::new(),
            pool: slot.clone(),
        };
        // The reaper's calls too: keepalive validations, lifetime closes, leak reports.
        let pool = Pool::builder()
            .max_size(2)
            .validation_skip_window(Duration::ZERO)
            .keepalive(Some(Duration::from_millis(10)))
            .max_lifetime(Some(Duration::from_millis(100)))
            .leak_detection_threshold(Some(Duration::from_millis(5)))
            .build(manager)
            .unwrap();
        *slot.lock() = Some(pool.clone());
        for _ in 0..20 {
            // Validated on the way out, broken (so closed) on the way back.
            drop(pool.get_timeout(SOON).unwrap());
        }
        let leaked = pool.get_timeout(SOON).unwrap();
        // The background threads validate, expire and report; a deadlock would stop them.
        assert!(eventually(SOON, || {
            let m = pool.metrics();
            m.closed_max_lifetime >= 1 && m.leaks_detected == 1
        }));
        drop(leaked);
        pool.evict_all();
        pool.close();
        let metrics = pool.metrics();
        slot.lock().take();
        assert_eq!(metrics.closed_broken, 21);
    });
}
