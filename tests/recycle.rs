//! Recycling on return (`ManageConnection::recycle`): session state a borrower leaves behind
//! reaches the next borrower without it, and does not with it; a failed reset closes the
//! connection.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use sluicegate::{HandleError, ManageConnection, Pool};

use common::{FakeError, SOON, finishes_within};

/// A session with state a borrower can change, like `SET` or a temporary table.
#[derive(Debug, Default)]
struct Session {
    id: u64,
    settings: HashMap<String, String>,
    broken: bool,
}

#[derive(Default)]
struct Sessions {
    /// Whether the manager resets sessions on return (drivers make it opt-in).
    recycling: bool,
    next_id: AtomicU64,
    recycled: AtomicU64,
    fail_recycle: AtomicBool,
    panic_recycle: AtomicBool,
    /// Read from inside `recycle`: the pool's lock must not be held there.
    pool: Mutex<Option<Pool<SessionManager>>>,
}

#[derive(Clone, Default)]
struct SessionManager(Arc<Sessions>);

impl ManageConnection for SessionManager {
    type Connection = Session;
    type Error = FakeError;

    fn connect(&self) -> Result<Session, FakeError> {
        Ok(Session {
            id: self.0.next_id.fetch_add(1, Ordering::SeqCst),
            ..Session::default()
        })
    }

    fn is_valid(&self, _: &mut Session) -> Result<(), FakeError> {
        Ok(())
    }

    fn has_broken(&self, conn: &mut Session) -> bool {
        conn.broken
    }

    fn recycle(&self, conn: &mut Session) -> Result<(), FakeError> {
        if !self.0.recycling {
            return Ok(());
        }
        if let Some(pool) = self.0.pool.lock().clone() {
            let _ = pool.metrics();
        }
        self.0.recycled.fetch_add(1, Ordering::SeqCst);
        assert!(
            !self.0.panic_recycle.load(Ordering::SeqCst),
            "reset panicked"
        );
        if self.0.fail_recycle.load(Ordering::SeqCst) {
            return Err(FakeError::new("could not reset the session"));
        }
        conn.settings.clear();
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl HandleError<FakeError> for Errors {
    fn handle_error(&self, error: FakeError) {
        self.0.lock().push(error.to_string());
    }
}

fn pool(recycling: bool) -> (Pool<SessionManager>, SessionManager, Errors) {
    let manager = SessionManager(Arc::new(Sessions {
        recycling,
        ..Sessions::default()
    }));
    let errors = Errors::default();
    let pool = Pool::builder()
        .max_size(1)
        .error_handler(Box::new(errors.clone()))
        .build(manager.clone())
        .unwrap();
    *manager.0.pool.lock() = Some(pool.clone());
    (pool, manager, errors)
}

#[test]
fn without_recycling_session_state_reaches_the_next_borrower() {
    let (pool, _manager, _) = pool(false);
    pool.get()
        .unwrap()
        .settings
        .insert("search_path".into(), "tenant_7".into());
    let next = pool.get().unwrap();
    assert_eq!(
        next.settings.get("search_path").map(String::as_str),
        Some("tenant_7")
    );
}

#[test]
fn with_recycling_the_next_borrower_starts_clean_on_the_same_connection() {
    let (pool, manager, errors) = pool(true);
    let first = {
        let mut conn = pool.get().unwrap();
        conn.settings
            .insert("search_path".into(), "tenant_7".into());
        conn.id
    };
    let next = finishes_within(SOON, {
        let pool = pool.clone();
        move || {
            let conn = pool.get().unwrap();
            (conn.id, conn.settings.len())
        }
    });
    assert_eq!(next, (first, 0), "same connection, clean session");
    assert_eq!(manager.0.recycled.load(Ordering::SeqCst), 2);
    assert!(errors.0.lock().is_empty());
    manager.0.pool.lock().take();
}

#[test]
fn a_failed_reset_closes_the_connection_and_reports_the_error() {
    let (pool, manager, errors) = pool(true);
    let id = pool.get().unwrap().id;
    manager.0.fail_recycle.store(true, Ordering::SeqCst);
    drop(pool.get().unwrap());
    let m = pool.metrics();
    assert_eq!(m.closed_broken, 1);
    assert_eq!(*errors.0.lock(), ["could not reset the session"]);
    manager.0.fail_recycle.store(false, Ordering::SeqCst);
    assert_ne!(pool.get_timeout(SOON).unwrap().id, id);
    manager.0.pool.lock().take();
}

#[test]
fn a_panicking_reset_closes_the_connection_and_keeps_the_slot() {
    let (pool, manager, _) = pool(true);
    let id = pool.get().unwrap().id;
    manager.0.panic_recycle.store(true, Ordering::SeqCst);
    drop(pool.get().unwrap());
    manager.0.panic_recycle.store(false, Ordering::SeqCst);
    assert_eq!(pool.metrics().closed_broken, 1);
    assert_ne!(pool.get_timeout(SOON).unwrap().id, id);
    manager.0.pool.lock().take();
}

#[test]
fn a_broken_connection_is_closed_without_a_reset() {
    let (pool, manager, _) = pool(true);
    pool.get().unwrap().broken = true;
    assert_eq!(manager.0.recycled.load(Ordering::SeqCst), 0);
    assert_eq!(pool.metrics().closed_broken, 1);
    manager.0.pool.lock().take();
}
