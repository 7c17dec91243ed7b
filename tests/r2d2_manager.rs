//! `sluicegate::r2d2::R2d2Manager`: a manager written for r2d2 is pooled by sluicegate unchanged.
#![cfg(feature = "r2d2")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluicegate::Pool;
use sluicegate::r2d2::R2d2Manager;

#[derive(Debug)]
struct Session {
    id: u64,
    broken: bool,
}

/// What an adapter crate's manager looks like: it implements r2d2's trait only, and its own
/// `Debug` prints its settings, password included.
#[derive(Debug, Default)]
struct AdapterManager {
    password: String,
    opened: Arc<AtomicU64>,
    validated: Arc<AtomicU64>,
}

impl r2d2::ManageConnection for AdapterManager {
    type Connection = Session;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Session, std::io::Error> {
        let id = self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Session { id, broken: false })
    }

    fn is_valid(&self, _: &mut Session) -> Result<(), std::io::Error> {
        self.validated.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn has_broken(&self, conn: &mut Session) -> bool {
        conn.broken
    }
}

#[test]
fn an_r2d2_manager_is_pooled_and_its_connections_reused() {
    let manager = AdapterManager::default();
    let opened = manager.opened.clone();
    let validated = manager.validated.clone();
    let pool = Pool::builder()
        .max_size(2)
        .validation_skip_window(Duration::ZERO)
        .build(R2d2Manager::new(manager))
        .unwrap();
    let first = pool.get().unwrap().id;
    assert_eq!(
        pool.get().unwrap().id,
        first,
        "reused, most recently used first"
    );
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    // The inner manager's is_valid ran on each check-out.
    assert_eq!(validated.load(Ordering::SeqCst), 2);
}

#[test]
fn the_inner_managers_has_broken_decides() {
    let pool = Pool::builder()
        .max_size(1)
        .build(R2d2Manager::from(AdapterManager::default()))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let id = conn.id;
    conn.broken = true;
    drop(conn);
    assert_eq!(pool.metrics().closed_broken, 1);
    assert_ne!(pool.get().unwrap().id, id);
}

#[test]
fn debug_does_not_print_the_inner_managers_settings() {
    let manager = R2d2Manager::new(AdapterManager {
        password: "hunter2".into(),
        ..AdapterManager::default()
    });
    assert_eq!(manager.get_ref().password, "hunter2");
    let pool = Pool::builder().max_size(1).build(manager).unwrap();
    let printed = format!("{pool:?}");
    assert!(printed.contains("R2d2Manager"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}
