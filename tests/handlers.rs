//! Handlers: the error handler, event handler and connection customizer are all called without
//! the pool's lock, so each may call back into the pool.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ConnectDefault, FakeConn, FakeError, FakeManager, SOON, finishes_within};
use parking_lot::Mutex;
use sluicegate::event::{
    AcquireEvent, CheckinEvent, CheckoutEvent, HandleEvent, ReleaseEvent, TimeoutEvent,
};
use sluicegate::{CustomizeConnection, HandleError, Pool, PooledConnection};

type Slot = Arc<Mutex<Option<Pool<FakeManager>>>>;

/// Reads the pool's state from inside a handler: deadlocks if the pool holds its lock.
fn peek(slot: &Slot) -> Option<(u32, u32)> {
    let pool = slot.lock().clone()?;
    let state = pool.state();
    let _ = pool.metrics();
    Some((state.connections, state.idle_connections))
}

#[derive(Debug)]
struct Recorder {
    slot: Slot,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn note(&self, what: String) {
        let state = peek(&self.slot);
        self.seen.lock().push(format!("{what} {state:?}"));
    }
}

impl HandleEvent for Recorder {
    fn handle_acquire(&self, e: AcquireEvent) {
        self.note(format!("acquire {}", e.connection_id()));
    }
    fn handle_release(&self, e: ReleaseEvent) {
        self.note(format!("release {}", e.connection_id()));
    }
    fn handle_checkout(&self, e: CheckoutEvent) {
        self.note(format!("checkout {}", e.connection_id()));
    }
    fn handle_timeout(&self, e: TimeoutEvent) {
        self.note(format!("timeout {:?}", e.timeout()));
    }
    fn handle_checkin(&self, e: CheckinEvent) {
        self.note(format!("checkin {}", e.connection_id()));
    }
}

impl HandleError<FakeError> for Recorder {
    fn handle_error(&self, error: FakeError) {
        self.note(format!("error {error}"));
    }
}

impl CustomizeConnection<FakeConn, FakeError> for Recorder {
    fn on_acquire(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.note(format!("on_acquire {}", conn.id));
        Ok(())
    }
    fn on_release(&self, conn: FakeConn) {
        self.note(format!("on_release {}", conn.id));
    }
}

fn recorder(slot: &Slot, seen: &Arc<Mutex<Vec<String>>>) -> Box<Recorder> {
    Box::new(Recorder {
        slot: slot.clone(),
        seen: seen.clone(),
    })
}

#[test]
fn every_handler_may_call_back_into_the_pool() {
    let seen = finishes_within(Duration::from_secs(60), || {
        let slot: Slot = Arc::new(Mutex::new(None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let manager = FakeManager::new();
        let pool = Pool::builder()
            .max_size(2)
            .min_idle(Some(0))
            .validation_skip_window(Duration::ZERO)
            .event_handler(recorder(&slot, &seen))
            .error_handler(recorder(&slot, &seen))
            .connection_customizer(recorder(&slot, &seen))
            .build(manager.clone())
            .unwrap();
        *slot.lock() = Some(pool.clone());

        // A failed connect, then a good one: error handler, customizer, acquire, checkout.
        manager
            .script
            .plan_connect([common::Connect::Fail(FakeError::new("refused once"))]);
        let mut conn = pool.get_timeout(SOON).unwrap();
        // A broken return: checkin, on_release, release.
        PooledConnection::mark_broken(&mut conn);
        drop(conn);
        // A failed validation: error handler again.
        let conn = pool.get_timeout(SOON).unwrap();
        drop(conn);
        manager
            .script
            .plan_validation([Err(FakeError::new("stale connection"))]);
        let a = pool.get_timeout(SOON).unwrap();
        let b = pool.get_timeout(SOON).unwrap();
        // A timeout.
        assert!(pool.get_timeout(Duration::from_millis(20)).is_err());
        drop((a, b));
        pool.close();
        slot.lock().take();
        seen.lock().clone()
    });
    let has = |prefix: &str| seen.iter().any(|line| line.starts_with(prefix));
    for prefix in [
        "error refused once",
        "error stale connection",
        "on_acquire",
        "on_release",
        "acquire",
        "release",
        "checkout",
        "checkin",
        "timeout",
    ] {
        assert!(has(prefix), "no {prefix:?} in {seen:#?}");
    }
    // Every handler saw the pool's state.
    assert!(seen.iter().all(|line| line.contains("Some(")), "{seen:#?}");
}

#[test]
fn error_handler_gets_every_connect_error() {
    #[derive(Debug, Default)]
    struct Errors(Mutex<Vec<String>>);
    impl HandleError<FakeError> for Arc<Errors> {
        fn handle_error(&self, error: FakeError) {
            self.0.lock().push(error.to_string());
        }
    }
    let errors = Arc::new(Errors::default());
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("no route to host")));
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .error_handler(Box::new(errors.clone()))
        .build_unchecked(manager.clone());
    assert!(pool.get().is_err());
    drop(pool);
    let seen = errors.0.lock().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|e| e == "no route to host"), "{seen:?}");
    assert_eq!(seen.len() as u64, manager.script.connects());
}

#[test]
fn a_panicking_event_handler_does_not_kill_the_pools_thread() {
    #[derive(Debug)]
    struct PanicsOnAcquire;
    impl HandleEvent for PanicsOnAcquire {
        fn handle_acquire(&self, _: AcquireEvent) {
            panic!("scripted handler panic");
        }
    }
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .event_handler(Box::new(PanicsOnAcquire))
        .build(manager.clone())
        .unwrap();
    // Each connection's acquire event panics on the pool's thread; the connection is still
    // added, and the thread lives on to open the next one.
    let a = pool.get_timeout(SOON).unwrap();
    let b = pool.get_timeout(SOON).unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(pool.metrics().created, 2);
}

#[test]
fn a_panicking_checkout_or_checkin_handler_does_not_cost_a_connection() {
    #[derive(Debug)]
    struct PanicsAround;
    impl HandleEvent for PanicsAround {
        fn handle_checkout(&self, _: CheckoutEvent) {
            panic!("scripted checkout handler panic");
        }
        fn handle_checkin(&self, _: CheckinEvent) {
            panic!("scripted checkin handler panic");
        }
        fn handle_timeout(&self, _: TimeoutEvent) {
            panic!("scripted timeout handler panic");
        }
    }
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .event_handler(Box::new(PanicsAround))
        .build(manager.clone())
        .unwrap();
    for _ in 0..3 {
        let conn = pool.get_timeout(SOON).unwrap();
        assert!(pool.get_timeout(Duration::from_millis(5)).is_err());
        drop(conn);
    }
    let m = pool.metrics();
    assert_eq!(
        (m.connections, m.idle, m.created, m.checkouts),
        (1, 1, 1, 3)
    );
    assert_eq!(manager.script.live(), 1);
}
