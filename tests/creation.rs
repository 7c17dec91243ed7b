//! Creation: connections are opened by the pool's own thread, only when waiters outnumber the
//! connections being opened or `min_idle` asks, one at a time, with back-off after failures;
//! a panic in `connect` or in a customizer costs one attempt, never a slot.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Connect, ConnectDefault, FakeConn, FakeError, FakeManager, SOON, eventually};
use parking_lot::Mutex;
use sluicegate::{CustomizeConnection, ManageConnection, NopErrorHandler, Pool};

/// Records the name of the thread each `connect` ran on.
struct ThreadRecorder {
    inner: FakeManager,
    threads: Arc<Mutex<Vec<String>>>,
}

impl ManageConnection for ThreadRecorder {
    type Connection = FakeConn;
    type Error = FakeError;
    fn connect(&self) -> Result<FakeConn, FakeError> {
        let name = thread::current().name().unwrap_or("<unnamed>").to_string();
        self.threads.lock().push(name);
        self.inner.connect()
    }
    fn is_valid(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.inner.is_valid(conn)
    }
    fn has_broken(&self, conn: &mut FakeConn) -> bool {
        self.inner.has_broken(conn)
    }
}

#[test]
fn connections_are_opened_by_the_pools_own_thread() {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::builder()
        .pool_name("opener")
        .max_size(4)
        .min_idle(Some(1))
        .build(ThreadRecorder {
            inner: FakeManager::new(),
            threads: threads.clone(),
        })
        .unwrap();
    // Four check-outs from this thread need three more connections.
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(held);
    let names = threads.lock().clone();
    assert!(names.len() >= 4);
    assert!(names.iter().all(|n| n == "sluice-opener"), "{names:?}");
}

#[test]
fn a_lazy_pool_opens_nothing_until_asked_and_then_only_what_is_waited_for() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(10)
        .min_idle(Some(0))
        .build(manager.clone())
        .unwrap();
    assert_eq!(pool.state().connections, 0);
    assert_eq!(manager.script.connects(), 0);
    let conn = pool.get().unwrap();
    drop(conn);
    // One waiter, one connection: not ten.
    assert!(!eventually(Duration::from_millis(100), || manager
        .script
        .connects()
        > 1));
    assert_eq!(pool.state().connections, 1);
}

#[test]
fn min_idle_is_kept_topped_up() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(6)
        .min_idle(Some(2))
        .build(manager.clone())
        .unwrap();
    assert_eq!(pool.state().idle_connections, 2);
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    assert!(
        eventually(SOON, || pool.state().idle_connections == 2),
        "{:?}",
        pool.metrics()
    );
    assert_eq!(pool.state().connections, 5);
    drop(held);
    assert_eq!(pool.state().idle_connections, 5);
}

#[test]
fn a_burst_is_served_by_idle_connections_without_a_connection_storm() {
    // 50 simultaneous 2 ms requests on a pool with 5 idle connections whose connects take
    // 150 ms: the requests are done long before a new connection could help, so the pool
    // must not open a connection per waiter, and must not make anyone wait for a connect.
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(50)
        .min_idle(Some(5))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .set_connect_default(ConnectDefault::Delay(Duration::from_millis(150)));
    let opened_before = pool.metrics().created;
    let start = Arc::new(std::sync::Barrier::new(51));
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let pool = pool.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let conn = pool.get().unwrap();
                thread::sleep(Duration::from_millis(2));
                drop(conn);
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = began.elapsed();
    let connects = manager.script.connects();
    let m = pool.metrics();
    assert!(
        elapsed < Duration::from_secs(1),
        "50 x 2 ms on 5 connections took {elapsed:?}"
    );
    assert!(connects <= 5 + 20, "opened {connects} connections");
    assert!(m.created - opened_before <= 20, "{m:?}");
}

#[test]
fn only_one_connection_is_opened_at_a_time() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(10)
        .min_idle(Some(0))
        .build(manager.clone())
        .unwrap();
    let (open_tx, open_rx) = crossbeam_channel::unbounded::<()>();
    manager.script.plan_connect(
        (0..5)
            .map(|_| Connect::Gate(open_rx.clone()))
            .collect::<Vec<_>>(),
    );
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.get_timeout(SOON).map(|c| c.id))
        })
        .collect();
    assert!(eventually(SOON, || pool.metrics().waiting == 5));
    assert!(eventually(SOON, || manager.script.connects() == 1));
    // Give a second opener every chance to start: there must not be one.
    assert!(!eventually(Duration::from_millis(100), || manager
        .script
        .connects()
        > 1));
    assert_eq!(pool.metrics().opening, 1);
    for _ in 0..5 {
        open_tx.send(()).unwrap();
    }
    for w in waiters {
        w.join().unwrap().unwrap();
    }
}

#[test]
fn a_panic_in_connect_costs_one_attempt_not_a_slot() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .plan_connect([Connect::Panic("scripted connect panic"), Connect::Ok]);
    let conn = pool.get_timeout(SOON).unwrap();
    let m = pool.metrics();
    assert_eq!((m.connect_failures, m.created), (1, 1));
    drop(conn);
    // The pool's thread survived: it can still open connections.
    manager
        .script
        .plan_connect([Connect::Panic("scripted connect panic")]);
    pool.evict_all();
    assert!(pool.get_timeout(SOON).is_ok());
}

#[derive(Debug)]
struct PanickingCustomizer(AtomicU64);

impl CustomizeConnection<FakeConn, FakeError> for PanickingCustomizer {
    fn on_acquire(&self, _: &mut FakeConn) -> Result<(), FakeError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("scripted customizer panic");
        }
        Ok(())
    }
}

#[test]
fn a_panic_in_the_customizer_costs_one_attempt_not_a_slot() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .connection_customizer(Box::new(PanickingCustomizer(AtomicU64::new(0))))
        .build(manager.clone())
        .unwrap();
    let conn = pool.get_timeout(SOON).unwrap();
    let m = pool.metrics();
    assert_eq!((m.connect_failures, m.created), (1, 1));
    // The connection the customizer panicked on was dropped, not leaked or pooled.
    assert_eq!(manager.script.live(), 1);
    assert_eq!(manager.script.dropped.lock().len(), 1);
    drop(conn);
}

#[test]
fn failing_connects_back_off_exponentially_and_recover() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("refused")));
    let start = Instant::now();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(8))
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager.clone());
    // Time is the behaviour: back-off spaces the attempts 10, 20, 40, … ms apart, so the
    // fourth cannot come before 70 ms, and in 700 ms there is room for about 7 (a loaded
    // machine makes fewer, never more); retrying without back-off would make thousands.
    assert!(eventually(SOON, || manager.script.connects() >= 4));
    assert!(start.elapsed() >= Duration::from_millis(70));
    thread::sleep(Duration::from_millis(700).saturating_sub(start.elapsed()));
    let attempts = manager.script.connects();
    assert!(attempts <= 12, "{attempts} attempts");
    assert!(eventually(SOON, || pool.metrics().connect_failures >= attempts));
    // The database comes back: the pool notices within the capped back-off (2 s).
    manager.script.set_connect_default(ConnectDefault::Ok);
    let start = Instant::now();
    assert!(eventually(SOON, || pool.state().connections == 1));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn no_retries_without_demand() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("refused")));
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(100))
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    assert!(pool.get().is_err());
    let after_timeout = manager.script.connects();
    assert!(after_timeout >= 1);
    // Nobody waits and min_idle is 0: the pool stops knocking.
    thread::sleep(Duration::from_millis(200));
    let later = manager.script.connects();
    assert!(later <= after_timeout + 1, "{after_timeout} then {later}");
}

#[test]
fn connections_never_exceed_max_size_while_closing() {
    // A connection that is still closing counts toward max_size: the database never sees more
    // than max_size connections from the pool.
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(3).build(manager.clone()).unwrap();
    manager.script.break_all(true);
    for _ in 0..50 {
        let conns: Vec<_> = (0..3).map(|_| pool.get_timeout(SOON).unwrap()).collect();
        drop(conns);
    }
    assert!(
        manager.script.max_live() <= 3,
        "max live {}",
        manager.script.max_live()
    );
}
