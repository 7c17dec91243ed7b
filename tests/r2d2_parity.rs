//! Parity with r2d2 0.8: every behaviour r2d2's own test suite pins down, checked against
//! sluicegate (written afresh against the fake database in `common`, synchronised with channels and
//! polling instead of sleeps), plus the compile-level promise that r2d2 code builds unchanged.

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Connect, ConnectDefault, FakeConn, FakeError, FakeManager, SOON, eventually};
use crossbeam_channel as channel;
use parking_lot::Mutex;
use sluicegate::event::{AcquireEvent, CheckinEvent, CheckoutEvent, ReleaseEvent, TimeoutEvent};
use sluicegate::{Builder, CustomizeConnection, HandleError, HandleEvent, Pool, PooledConnection};

/// How early a timer-driven outcome may be observed: the pool stamps connections with the
/// kernel's coarse clock, which lags the precise one by up to a tick.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// A builder that does not log the connect failures a test provokes on purpose.
fn quiet() -> Builder<FakeManager> {
    Pool::builder().error_handler(Box::new(sluicegate::NopErrorHandler))
}

/// The fake database's id of the connection behind a guard (what `Script::dropped` records),
/// as opposed to the pool's id (`PooledConnection::id`, what events carry).
fn db_id(conn: &PooledConnection<FakeManager>) -> u64 {
    let raw: &FakeConn = conn;
    raw.id
}

// ---------------------------------------------------------------------------------------------
// Sizing, check-out and check-in
// ---------------------------------------------------------------------------------------------

#[test]
fn max_size_connections_are_handed_out_at_once_and_no_more() {
    let manager = FakeManager::new();
    let script = manager.script.clone();
    // The database accepts exactly five connections.
    script.plan_connect((0..5).map(|_| Connect::Ok));
    script.set_connect_default(ConnectDefault::Fail(FakeError::new("too many connections")));
    let pool = quiet().max_size(5).build(manager).unwrap();

    let held: Vec<_> = (0..5).map(|_| pool.get_timeout(SOON).unwrap()).collect();
    let distinct: HashSet<u64> = held.iter().map(db_id).collect();
    assert_eq!(distinct.len(), 5, "five different connections");

    let err = pool
        .get_timeout(Duration::from_millis(100))
        .expect_err("a sixth check-out must not be served");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(script.connects(), 5, "a full pool never asks for a sixth");
    assert_eq!(script.max_live(), 5);
    assert_eq!(pool.state().connections, 5);
}

#[test]
fn released_connection_is_reused_by_the_next_checkout() {
    let manager = FakeManager::new();
    let script = manager.script.clone();
    let pool = Pool::builder().max_size(2).build(manager).unwrap();

    let first = pool.get().unwrap();
    let second = pool.get().unwrap();
    let first_id = db_id(&first);
    assert_ne!(first_id, db_id(&second));
    drop(first);
    let third = pool.get().unwrap();
    assert_eq!(db_id(&third), first_id, "the returned connection is reused");
    drop(second);
    drop(third);

    assert_eq!(script.connects(), 2, "nothing new was opened");
    assert!(script.dropped.lock().is_empty(), "nothing was closed");
    let state = pool.state();
    assert_eq!((state.connections, state.idle_connections), (2, 2));
}

#[test]
fn try_get_is_none_only_while_every_connection_is_out() {
    let pool = Pool::builder()
        .max_size(2)
        .build(FakeManager::new())
        .unwrap();

    let first = pool.try_get();
    let second = pool.try_get();
    let third = pool.try_get();
    assert!(first.is_some());
    assert!(second.is_some());
    assert!(third.is_none(), "both connections are out");

    let first_id = first.as_ref().map(db_id).unwrap();
    drop(first);
    let again = pool.try_get().expect("one connection came back");
    assert_eq!(db_id(&again), first_id);
}

#[test]
fn get_timeout_succeeds_at_once_when_a_connection_is_idle() {
    let pool = Pool::builder()
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();

    // A zero timeout leaves no room to wait: only an idle connection can satisfy it.
    let conn = pool.get_timeout(Duration::ZERO).unwrap();
    drop(conn);
    let conn = pool.get_timeout(Duration::from_millis(100)).unwrap();
    drop(conn);

    let m = pool.metrics();
    assert_eq!((m.checkouts, m.waited, m.timeouts), (2, 0, 0));
}

#[test]
fn get_timeout_succeeds_when_another_thread_returns_a_connection_meanwhile() {
    let pool = Pool::builder()
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    let held = pool.get().unwrap();
    let held_id = db_id(&held);

    let watcher = pool.clone();
    let returner = thread::spawn(move || {
        assert!(
            eventually(SOON, || watcher.metrics().waiting == 1),
            "the main thread never started waiting"
        );
        drop(held);
    });

    let got = pool.get_timeout(SOON).expect("the returned connection");
    assert_eq!(db_id(&got), held_id);
    returner.join().unwrap();
    let m = pool.metrics();
    assert_eq!((m.waited, m.timeouts), (1, 0));
}

#[test]
fn get_timeout_fails_with_a_timeout_when_nothing_comes_back() {
    let pool = Pool::builder()
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    let _held = pool.get().unwrap();

    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    let err = pool.get_timeout(timeout).expect_err("nothing is returned");
    let elapsed = start.elapsed();

    assert!(err.is_timeout(), "{err}");
    assert!(!err.is_closed());
    assert!(
        err.to_string()
            .starts_with("timed out waiting for connection"),
        "{err}"
    );
    assert!(elapsed >= timeout, "gave up early, after {elapsed:?}");
    assert!(elapsed < SOON, "waited {elapsed:?}");
    let m = pool.metrics();
    assert_eq!((m.timeouts, m.waiting), (1, 0));
}

#[test]
fn get_honours_connection_timeout() {
    let timeout = Duration::from_secs(1);
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(timeout)
        .build(FakeManager::new())
        .unwrap();
    let _held = pool.get().unwrap();

    let start = Instant::now();
    let err = pool.get().expect_err("the only connection is out");
    let elapsed = start.elapsed();

    assert!(err.is_timeout(), "{err}");
    assert!(
        elapsed >= timeout - Duration::from_millis(10),
        "gave up early, after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "waited {elapsed:?}");
}

// ---------------------------------------------------------------------------------------------
// Validation and broken connections
// ---------------------------------------------------------------------------------------------

/// A manager whose first `is_valid` call announces itself and then blocks until released.
struct BlocksFirstValidation {
    first: AtomicBool,
    validations: Arc<AtomicU64>,
    entered: channel::Sender<()>,
    release: channel::Receiver<()>,
}

impl sluicegate::ManageConnection for BlocksFirstValidation {
    type Connection = ();
    type Error = FakeError;

    fn connect(&self) -> Result<(), FakeError> {
        Ok(())
    }

    fn is_valid(&self, _: &mut ()) -> Result<(), FakeError> {
        self.validations.fetch_add(1, Ordering::SeqCst);
        if self.first.swap(false, Ordering::SeqCst) {
            let _ = self.entered.send(());
            // Err only if the test is gone; either way, stop blocking.
            let _ = self.release.recv();
        }
        Ok(())
    }

    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

#[test]
fn pool_is_not_locked_while_is_valid_runs() {
    let (entered_tx, entered_rx) = channel::bounded(1);
    let (release_tx, release_rx) = channel::bounded(1);
    let validations = Arc::new(AtomicU64::new(0));
    let manager = BlocksFirstValidation {
        first: AtomicBool::new(true),
        validations: validations.clone(),
        entered: entered_tx,
        release: release_rx,
    };
    let pool = Pool::builder()
        .max_size(2)
        .test_on_check_out(true)
        // Validate every check-out, even of connections that were just opened.
        .validation_skip_window(Duration::ZERO)
        .build(manager)
        .unwrap();

    let p = pool.clone();
    let validating = thread::spawn(move || p.get_timeout(SOON).map(drop));
    entered_rx
        .recv_timeout(SOON)
        .expect("the first check-out calls is_valid");

    // While that `is_valid` blocks, another thread must still be served.
    let p = pool.clone();
    let (done_tx, done_rx) = channel::bounded(1);
    let other = thread::spawn(move || {
        let _ = done_tx.send(p.get_timeout(SOON).map(drop));
    });
    let served = done_rx.recv_timeout(SOON);
    release_tx.send(()).unwrap();

    assert!(
        matches!(served, Ok(Ok(()))),
        "a check-out blocked behind another thread's is_valid: {served:?}"
    );
    validating.join().unwrap().unwrap();
    other.join().unwrap();
    assert_eq!(validations.load(Ordering::SeqCst), 2);
}

#[test]
fn broken_connection_is_dropped_when_returned() {
    let manager = FakeManager::new();
    let script = manager.script.clone();
    script.break_all(true);
    let pool = Pool::builder().max_size(1).build(manager).unwrap();

    let conn = pool.get().unwrap();
    let id = db_id(&conn);
    assert!(script.dropped.lock().is_empty());
    drop(conn);

    // Closed on the returning thread, before `drop` returned.
    assert_eq!(*script.dropped.lock(), vec![id]);
    assert_eq!(script.has_broken_calls.load(Ordering::SeqCst), 1);
    assert_eq!(pool.metrics().closed_broken, 1);
}

// ---------------------------------------------------------------------------------------------
// Failing databases
// ---------------------------------------------------------------------------------------------

#[test]
fn build_fails_with_the_connect_error_within_connection_timeout() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("blammo: no such host")));
    let timeout = Duration::from_millis(300);

    let start = Instant::now();
    let err = quiet()
        .connection_timeout(timeout)
        .build(manager)
        .expect_err("no connection can open");
    let elapsed = start.elapsed();

    assert!(err.to_string().contains("blammo: no such host"), "{err}");
    assert!(err.is_timeout(), "{err}");
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "gave up early, after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "waited {elapsed:?}");
}

#[test]
fn lazily_built_pool_fails_get_with_the_connect_error() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("blammo: no such host")));
    let pool = quiet()
        .connection_timeout(Duration::from_millis(300))
        .build_unchecked(manager);
    assert!(
        eventually(SOON, || pool.metrics().connect_failures >= 1),
        "the pool never tried to connect"
    );

    let err = pool.get().expect_err("no connection can open");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("blammo: no such host"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Connection customizer
// ---------------------------------------------------------------------------------------------

/// What `on_acquire` writes into `FakeConn::uses`, so a test can see that it ran.
const CUSTOMIZED: u64 = 4242;

#[derive(Debug, Default)]
struct CustomizerLog {
    /// How many of the next `on_acquire` calls fail.
    fail_next: AtomicU64,
    /// Database ids of the connections `on_acquire` accepted, in order.
    acquired: Mutex<Vec<u64>>,
    /// Database ids of the connections handed to `on_release`, in order.
    released: Mutex<Vec<u64>>,
}

#[derive(Debug)]
struct Customizer(Arc<CustomizerLog>);

impl CustomizeConnection<FakeConn, FakeError> for Customizer {
    fn on_acquire(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        let failing = self
            .0
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(FakeError::new("customizer rejected the connection"));
        }
        conn.uses = CUSTOMIZED;
        self.0.acquired.lock().push(conn.id);
        Ok(())
    }

    fn on_release(&self, conn: FakeConn) {
        self.0.released.lock().push(conn.id);
    }
}

/// Records every error the pool reports.
#[derive(Debug, Default)]
struct ErrorLog(Arc<Mutex<Vec<String>>>);

impl HandleError<FakeError> for ErrorLog {
    fn handle_error(&self, error: FakeError) {
        self.0.lock().push(error.to_string());
    }
}

#[test]
fn on_acquire_runs_on_every_new_connection_before_it_is_handed_out() {
    let log = Arc::new(CustomizerLog::default());
    let manager = FakeManager::new();
    let script = manager.script.clone();
    let pool = Pool::builder()
        .max_size(2)
        .connection_customizer(Box::new(Customizer(log.clone())))
        .build(manager)
        .unwrap();

    let first = pool.get().unwrap();
    let second = pool.get().unwrap();
    assert_eq!(first.uses, CUSTOMIZED);
    assert_eq!(second.uses, CUSTOMIZED);

    // A replacement for a broken connection is customized too.
    let broken_id = db_id(&first);
    script.break_conn(broken_id);
    drop(first);
    let replacement = pool.get_timeout(SOON).unwrap();
    assert_ne!(db_id(&replacement), broken_id);
    assert_eq!(replacement.uses, CUSTOMIZED);

    let acquired = log.acquired.lock().clone();
    assert_eq!(acquired.len() as u64, script.connects(), "every connect");
    assert!(acquired.contains(&db_id(&second)));
    assert!(acquired.contains(&db_id(&replacement)));
}

#[test]
fn on_acquire_error_discards_the_connection_and_counts_as_a_connect_failure() {
    let log = Arc::new(CustomizerLog::default());
    log.fail_next.store(1, Ordering::SeqCst);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let manager = FakeManager::new();
    let script = manager.script.clone();
    let pool = Pool::builder()
        .max_size(1)
        .error_handler(Box::new(ErrorLog(errors.clone())))
        .connection_customizer(Box::new(Customizer(log.clone())))
        .build(manager)
        .expect("the second connection is accepted");

    // The first connection (database id 1) was opened, rejected and closed.
    assert_eq!(script.connects(), 2);
    assert_eq!(*script.dropped.lock(), vec![1]);
    assert_eq!(script.live(), 1);
    assert!(
        log.released.lock().is_empty(),
        "a rejected connection was never the pool's"
    );
    let m = pool.metrics();
    assert_eq!((m.connect_failures, m.created), (1, 1));
    assert_eq!(
        *errors.lock(),
        vec!["customizer rejected the connection".to_string()]
    );

    let conn = pool.get().unwrap();
    assert_eq!(db_id(&conn), 2);
    assert_eq!(conn.uses, CUSTOMIZED);
}

#[test]
fn on_release_runs_when_a_connection_is_closed() {
    let log = Arc::new(CustomizerLog::default());
    let manager = FakeManager::new();
    let script = manager.script.clone();
    script.break_all(true);
    let pool = Pool::builder()
        .max_size(1)
        .connection_customizer(Box::new(Customizer(log.clone())))
        .build(manager)
        .unwrap();

    let conn = pool.get().unwrap();
    let id = db_id(&conn);
    assert!(log.released.lock().is_empty(), "not while checked out");
    drop(conn);

    assert_eq!(*log.released.lock(), vec![id]);
    assert_eq!(
        *script.dropped.lock(),
        vec![id],
        "on_release owns and drops it"
    );
}

// ---------------------------------------------------------------------------------------------
// Pool size over time
// ---------------------------------------------------------------------------------------------

#[test]
fn min_idle_connections_are_kept_ready() {
    let manager = FakeManager::new();
    let script = manager.script.clone();
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(2))
        .build(manager)
        .unwrap();
    let state = pool.state();
    assert_eq!((state.connections, state.idle_connections), (2, 2));

    let conns: Vec<_> = (0..3).map(|_| pool.get_timeout(SOON).unwrap()).collect();
    assert!(
        eventually(SOON, || {
            let s = pool.state();
            (s.connections, s.idle_connections) == (5, 2)
        }),
        "the pool did not top back up to 2 idle: {:?}",
        pool.state()
    );

    drop(conns);
    let state = pool.state();
    assert_eq!((state.connections, state.idle_connections), (5, 5));
    assert_eq!(script.connects(), 5);
    assert_eq!(script.max_live(), 5);
}

#[test]
fn idle_connections_close_after_idle_timeout() {
    let idle_timeout = Duration::from_millis(300);
    let manager = FakeManager::new();
    let script = manager.script.clone();
    script.plan_connect((0..5).map(|_| Connect::Ok));
    script.set_connect_default(ConnectDefault::Fail(FakeError::new("too many connections")));
    // sluicegate keeps `min_idle` connections however long they sit idle (r2d2 closes them and
    // opens new ones), so ask for none to see every idle connection time out.
    let pool = quiet()
        .max_size(5)
        .min_idle(Some(0))
        .idle_timeout(Some(idle_timeout))
        .reaper_rate(Duration::from_millis(20))
        .build(manager)
        .unwrap();
    let mut conns: Vec<_> = (0..5).map(|_| pool.get_timeout(SOON).unwrap()).collect();
    let held = conns.pop().unwrap();
    let held_id = db_id(&held);

    let returned = Instant::now();
    drop(conns);
    assert!(
        eventually(SOON, || script.dropped.lock().len() == 4),
        "the idle connections were not closed: dropped {:?}",
        script.dropped.lock()
    );
    assert!(
        returned.elapsed() >= idle_timeout - CLOCK_SLACK,
        "closed before idle_timeout"
    );
    assert!(!script.dropped.lock().contains(&held_id));
    assert_eq!(pool.state().connections, 1);

    // Returning the one in use does not close it; only its own idleness will.
    drop(held);
    let m = pool.metrics();
    assert_eq!(
        m.closed(),
        m.closed_idle_timeout,
        "closed for another reason: {m:?}"
    );
    assert!(eventually(SOON, || script.live() == 0));
    assert_eq!(pool.metrics().closed_idle_timeout, 5);
}

#[test]
fn idle_timeout_counts_from_the_last_check_in_not_from_opening() {
    let idle_timeout = Duration::from_secs(1);
    let manager = FakeManager::new();
    let script = manager.script.clone();
    script.plan_connect((0..5).map(|_| Connect::Ok));
    script.set_connect_default(ConnectDefault::Fail(FakeError::new("too many connections")));
    let pool = quiet()
        .max_size(5)
        .min_idle(Some(0))
        .idle_timeout(Some(idle_timeout))
        .reaper_rate(Duration::from_millis(20))
        .build(manager)
        .unwrap();
    let conns: Vec<_> = (0..5).map(|_| pool.get_timeout(SOON).unwrap()).collect();
    drop(conns);

    // Keep using one connection (the most recently used one is always handed out first)
    // until the other four time out.
    let mut used = HashSet::new();
    assert!(
        eventually(SOON, || {
            used.insert(db_id(&pool.get_timeout(SOON).unwrap()));
            script.dropped.lock().len() == 4
        }),
        "the unused connections were not closed"
    );
    assert_eq!(used.len(), 1, "one connection served every check-out");
    let survivor = *used.iter().next().unwrap();
    assert!(!script.dropped.lock().contains(&survivor));
    assert_eq!(pool.state().connections, 1);
}

#[test]
fn connections_close_after_max_lifetime() {
    let lifetime = Duration::from_millis(500);
    let manager = FakeManager::new();
    let script = manager.script.clone();
    script.plan_connect((0..5).map(|_| Connect::Ok));
    script.set_connect_default(ConnectDefault::Fail(FakeError::new("too many connections")));
    let built = Instant::now();
    let pool = quiet()
        .max_size(5)
        .max_lifetime(Some(lifetime))
        .connection_timeout(Duration::from_millis(300))
        .reaper_rate(Duration::from_millis(20))
        .build(manager)
        .unwrap();
    let held = pool.get().unwrap();
    let held_id = db_id(&held);

    assert!(
        eventually(SOON, || script.dropped.lock().len() == 4),
        "the idle connections did not expire: dropped {:?}",
        script.dropped.lock()
    );
    assert!(
        built.elapsed() >= lifetime - CLOCK_SLACK,
        "closed before max_lifetime"
    );
    assert!(
        !script.dropped.lock().contains(&held_id),
        "not while checked out"
    );

    drop(held);
    assert!(
        eventually(SOON, || script.dropped.lock().len() == 5),
        "the returned connection did not expire"
    );
    // The database refuses replacements, so nothing is left to hand out.
    let err = pool.get().expect_err("every connection expired");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("too many connections"), "{err}");
}

#[test]
fn connections_close_when_the_pool_is_dropped() {
    let manager = FakeManager::new();
    let script = manager.script.clone();
    let pool = Pool::builder()
        .max_size(10)
        .max_lifetime(Some(Duration::from_secs(10)))
        .build(manager)
        .unwrap();
    assert_eq!(script.live(), 10);

    drop(pool);
    assert!(
        eventually(SOON, || script.live() == 0),
        "{} connections still open",
        script.live()
    );
    // The pool's state (and the manager in it) is freed too, its thread included.
    assert!(eventually(SOON, || Arc::strong_count(&script) == 1));
}

// ---------------------------------------------------------------------------------------------
// Events and extensions
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Event {
    Acquire(AcquireEvent),
    Release(ReleaseEvent),
    Checkout(CheckoutEvent),
    Checkin(CheckinEvent),
    Timeout(TimeoutEvent),
}

#[derive(Debug)]
struct EventLog(Arc<Mutex<Vec<Event>>>);

impl HandleEvent for EventLog {
    fn handle_acquire(&self, event: AcquireEvent) {
        self.0.lock().push(Event::Acquire(event));
    }

    fn handle_release(&self, event: ReleaseEvent) {
        self.0.lock().push(Event::Release(event));
    }

    fn handle_checkout(&self, event: CheckoutEvent) {
        self.0.lock().push(Event::Checkout(event));
    }

    fn handle_timeout(&self, event: TimeoutEvent) {
        self.0.lock().push(Event::Timeout(event));
    }

    fn handle_checkin(&self, event: CheckinEvent) {
        self.0.lock().push(Event::Checkin(event));
    }
}

#[test]
fn events_report_acquire_checkout_timeout_checkin_release_in_order() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let manager = FakeManager::new();
    manager.script.break_all(true);

    let creation = Instant::now();
    let pool = Pool::builder()
        .max_size(1)
        .event_handler(Box::new(EventLog(events.clone())))
        .build(manager)
        .unwrap();

    let start = Instant::now();
    let conn = pool.get().unwrap();
    let checkout = start.elapsed();
    let first_id = PooledConnection::id(&conn);

    let timeout = Duration::from_millis(123);
    let err = pool.get_timeout(timeout).expect_err("the only one is out");
    assert!(err.is_timeout(), "{err}");

    drop(conn); // broken: checked in, then closed on this thread
    let checkin = start.elapsed();
    let release = creation.elapsed();

    // The pool's thread opens the replacement; this check-out may wait for it.
    let second_start = Instant::now();
    let conn2 = pool.get_timeout(SOON).unwrap();
    let second_checkout = second_start.elapsed();
    let second_id = PooledConnection::id(&conn2);

    let events = events.lock();
    assert_eq!(events.len(), 7, "{events:#?}");
    match &events[0] {
        Event::Acquire(e) => assert_eq!(e.connection_id(), first_id),
        other => panic!("expected the first acquire, got {other:?}"),
    }
    match &events[1] {
        Event::Checkout(e) => {
            assert_eq!(e.connection_id(), first_id);
            assert!(e.duration() <= checkout, "{e:?} > {checkout:?}");
        }
        other => panic!("expected the first checkout, got {other:?}"),
    }
    match &events[2] {
        Event::Timeout(e) => assert_eq!(e.timeout(), timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    match &events[3] {
        Event::Checkin(e) => {
            assert_eq!(e.connection_id(), first_id);
            assert!(e.duration() <= checkin, "{e:?} > {checkin:?}");
        }
        other => panic!("expected a checkin, got {other:?}"),
    }
    match &events[4] {
        Event::Release(e) => {
            assert_eq!(e.connection_id(), first_id);
            assert!(e.age() <= release, "{e:?} > {release:?}");
        }
        other => panic!("expected a release, got {other:?}"),
    }
    match &events[5] {
        Event::Acquire(e) => assert_eq!(e.connection_id(), second_id),
        other => panic!("expected the second acquire, got {other:?}"),
    }
    assert!(first_id < second_id);
    match &events[6] {
        Event::Checkout(e) => {
            assert_eq!(e.connection_id(), second_id);
            assert!(e.duration() <= second_checkout);
        }
        other => panic!("expected the second checkout, got {other:?}"),
    }
}

#[test]
fn extensions_stay_with_the_physical_connection() {
    let pool = Pool::builder()
        .max_size(2)
        .build(FakeManager::new())
        .unwrap();

    let mut first = pool.get().unwrap();
    let mut second = pool.get().unwrap();
    let first_id = PooledConnection::id(&first);
    let second_id = PooledConnection::id(&second);
    assert!(PooledConnection::extensions(&first).get::<i32>().is_none());
    PooledConnection::extensions_mut(&mut first).insert(1i32);
    PooledConnection::extensions_mut(&mut second).insert(2i32);
    drop(first);

    // The only idle connection is the first one.
    let next = pool.get().unwrap();
    assert_eq!(PooledConnection::id(&next), first_id);
    assert_eq!(PooledConnection::extensions(&next).get::<i32>(), Some(&1));
    drop(second);
    drop(next);

    let expected = HashMap::from([(first_id, 1i32), (second_id, 2i32)]);
    let both = [pool.get().unwrap(), pool.get().unwrap()];
    for conn in &both {
        let id = PooledConnection::id(conn);
        assert_eq!(
            PooledConnection::extensions(conn).get::<i32>(),
            expected.get(&id),
            "connection {id}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Types and names
// ---------------------------------------------------------------------------------------------

#[test]
fn pool_is_send_sync_clone_and_guard_is_send() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<Pool<FakeManager>>();
    send::<PooledConnection<FakeManager>>();

    // A clone is a handle to the same pool.
    let pool = Pool::builder()
        .max_size(2)
        .build(FakeManager::new())
        .unwrap();
    let clone = pool.clone();
    let held = thread::spawn(move || clone.get().unwrap()).join().unwrap();
    assert_eq!(pool.state().idle_connections, 1);
    drop(held);
    assert_eq!(pool.state().idle_connections, 2);
}

#[test]
fn every_r2d2_public_name_is_reachable_from_sluice() {
    type M = FakeManager;
    type B = sluicegate::Builder<M>;
    type P = sluicegate::Pool<M>;
    type G = sluicegate::PooledConnection<M>;
    type E = sluicegate::Error;

    // The handler and customizer traits, with their stock implementations.
    let _: Box<dyn sluicegate::HandleError<FakeError>> = Box::new(sluicegate::NopErrorHandler);
    let _: Box<dyn sluicegate::HandleError<FakeError>> = Box::new(sluicegate::LoggingErrorHandler);
    let _: Box<dyn sluicegate::CustomizeConnection<FakeConn, FakeError>> =
        Box::new(sluicegate::NopConnectionCustomizer);
    let _: Box<dyn sluicegate::HandleEvent> = Box::new(sluicegate::NopEventHandler);
    let _: Box<dyn sluicegate::event::HandleEvent> = Box::new(sluicegate::event::NopEventHandler);

    // The events and their accessors.
    let _: fn(&AcquireEvent) -> u64 = AcquireEvent::connection_id;
    let _: fn(&ReleaseEvent) -> u64 = ReleaseEvent::connection_id;
    let _: fn(&ReleaseEvent) -> Duration = ReleaseEvent::age;
    let _: fn(&CheckoutEvent) -> u64 = CheckoutEvent::connection_id;
    let _: fn(&CheckoutEvent) -> Duration = CheckoutEvent::duration;
    let _: fn(&CheckinEvent) -> u64 = CheckinEvent::connection_id;
    let _: fn(&CheckinEvent) -> Duration = CheckinEvent::duration;
    let _: fn(&TimeoutEvent) -> Duration = TimeoutEvent::timeout;

    // Pool.
    let _: fn(M) -> Result<P, E> = P::new;
    let _: fn() -> B = P::builder;
    let _: fn(&P) -> Result<G, E> = P::get;
    let _: fn(&P, Duration) -> Result<G, E> = P::get_timeout;
    let _: fn(&P) -> Option<G> = P::try_get;
    let _: fn(&P) -> sluicegate::State = P::state;
    let _: fn(&P) -> u32 = P::max_size;
    let _: fn(&P) -> Option<u32> = P::min_idle;
    let _: fn(&P) -> bool = P::test_on_check_out;
    let _: fn(&P) -> Option<Duration> = P::max_lifetime;
    let _: fn(&P) -> Option<Duration> = P::idle_timeout;
    let _: fn(&P) -> Duration = P::connection_timeout;

    // Builder.
    let _: fn() -> B = B::new;
    let _: fn() -> B = B::default;
    let _: fn(B, u32) -> B = B::max_size;
    let _: fn(B, Option<u32>) -> B = B::min_idle;
    let _: fn(B, bool) -> B = B::test_on_check_out;
    let _: fn(B, Option<Duration>) -> B = B::max_lifetime;
    let _: fn(B, Option<Duration>) -> B = B::idle_timeout;
    let _: fn(B, Duration) -> B = B::connection_timeout;
    let _: fn(B, Box<dyn sluicegate::HandleError<FakeError>>) -> B = B::error_handler;
    let _: fn(B, Box<dyn sluicegate::HandleEvent>) -> B = B::event_handler;
    let _: fn(B, Box<dyn sluicegate::CustomizeConnection<FakeConn, FakeError>>) -> B =
        B::connection_customizer;
    let _: fn(B, M) -> Result<P, E> = B::build;
    let _: fn(B, M) -> P = B::build_unchecked;

    // PooledConnection and Extensions.
    let _: fn(&G) -> &sluicegate::Extensions = G::extensions;
    let _: fn(&mut G) -> &mut sluicegate::Extensions = G::extensions_mut;
    let mut ext = sluicegate::Extensions::new();
    assert_eq!(ext.insert(1u8), None);
    assert_eq!(ext.get::<u8>(), Some(&1));
    *ext.get_mut::<u8>().unwrap() = 2;
    assert_eq!(ext.remove::<u8>(), Some(2));
    ext.clear();

    // The traits r2d2 implements for them.
    fn debug<T: Debug>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    debug::<P>();
    debug::<G>();
    debug::<B>();
    debug::<sluicegate::State>();
    error::<E>();

    // State's fields.
    let pool = P::builder().max_size(2).build(M::new()).unwrap();
    let _held = pool.get().unwrap();
    let sluicegate::State {
        connections,
        idle_connections,
        ..
    } = pool.state();
    assert_eq!((connections, idle_connections), (2, 1));
}

/// Defines, against the crate `$krate`, the pieces an r2d2 user writes: a manager with only
/// r2d2's three methods, a customizer, an event handler and an error handler, and code that uses
/// a pool the way r2d2 users do. Expanded once for r2d2 and once for sluicegate: the same source
/// must compile, and behave the same, against both.
macro_rules! r2d2_user_code {
    ($krate:ident) => {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;

        #[derive(Debug)]
        pub struct Session {
            pub statements: Vec<String>,
            pub healthy: bool,
        }

        pub struct Manager;

        impl $krate::ManageConnection for Manager {
            type Connection = Session;
            type Error = std::io::Error;

            fn connect(&self) -> Result<Session, std::io::Error> {
                Ok(Session {
                    statements: Vec::new(),
                    healthy: true,
                })
            }

            fn is_valid(&self, conn: &mut Session) -> Result<(), std::io::Error> {
                if conn.healthy {
                    Ok(())
                } else {
                    Err(std::io::Error::other("session lost"))
                }
            }

            fn has_broken(&self, conn: &mut Session) -> bool {
                !conn.healthy
            }
        }

        #[derive(Debug)]
        pub struct Setup;

        impl $krate::CustomizeConnection<Session, std::io::Error> for Setup {
            fn on_acquire(&self, conn: &mut Session) -> Result<(), std::io::Error> {
                conn.statements.push("SET TIME ZONE 'UTC'".to_string());
                Ok(())
            }

            fn on_release(&self, _conn: Session) {}
        }

        #[derive(Debug, Default)]
        pub struct Counts {
            pub acquired: AtomicUsize,
            pub checkouts: AtomicUsize,
            pub checkins: AtomicUsize,
        }

        #[derive(Debug)]
        pub struct Events(pub Arc<Counts>);

        impl $krate::HandleEvent for Events {
            fn handle_acquire(&self, _: $krate::event::AcquireEvent) {
                self.0.acquired.fetch_add(1, Ordering::SeqCst);
            }

            fn handle_release(&self, _: $krate::event::ReleaseEvent) {}

            fn handle_checkout(&self, _: $krate::event::CheckoutEvent) {
                self.0.checkouts.fetch_add(1, Ordering::SeqCst);
            }

            fn handle_timeout(&self, _: $krate::event::TimeoutEvent) {}

            fn handle_checkin(&self, _: $krate::event::CheckinEvent) {
                self.0.checkins.fetch_add(1, Ordering::SeqCst);
            }
        }

        #[derive(Debug)]
        pub struct Errors;

        impl $krate::HandleError<std::io::Error> for Errors {
            fn handle_error(&self, _: std::io::Error) {}
        }

        /// What an r2d2 user can observe: the statements on the reused connection, the value
        /// kept in its extensions, the pool's state while it is out, and the event counts.
        pub type Observed = (Vec<String>, Option<u32>, (u32, u32), (usize, usize, usize));

        pub fn exercise() -> Observed {
            let counts = Arc::new(Counts::default());
            let pool = $krate::Pool::builder()
                .max_size(2)
                .min_idle(Some(2))
                .test_on_check_out(true)
                .max_lifetime(Some(Duration::from_secs(60)))
                .idle_timeout(Some(Duration::from_secs(60)))
                .connection_timeout(Duration::from_secs(10))
                .error_handler(Box::new(Errors))
                .event_handler(Box::new(Events(counts.clone())))
                .connection_customizer(Box::new(Setup))
                .build(Manager)
                .expect("build");
            {
                let mut conn = pool.get().expect("get");
                conn.statements.push("SELECT 1".to_string());
                $krate::PooledConnection::extensions_mut(&mut conn).insert(7u32);
            }
            let conn = pool.get().expect("get again");
            let statements = conn.statements.clone();
            let kept = $krate::PooledConnection::extensions(&conn)
                .get::<u32>()
                .copied();
            let state = pool.state();
            drop(conn);
            (
                statements,
                kept,
                (state.connections, state.idle_connections),
                (
                    counts.acquired.load(Ordering::SeqCst),
                    counts.checkouts.load(Ordering::SeqCst),
                    counts.checkins.load(Ordering::SeqCst),
                ),
            )
        }
    };
}

mod against_r2d2 {
    r2d2_user_code!(r2d2);
}

mod against_sluice {
    r2d2_user_code!(sluicegate);
}

#[test]
fn code_written_for_r2d2_compiles_and_behaves_the_same_against_sluice() {
    let expected: against_sluice::Observed = (
        vec!["SET TIME ZONE 'UTC'".to_string(), "SELECT 1".to_string()],
        Some(7),
        (2, 1),
        (2, 2, 2),
    );
    assert_eq!(against_sluice::exercise(), expected);
    assert_eq!(against_r2d2::exercise(), expected, "the reference itself");
}
