//! Lifecycle: close, evict_all, detach, metrics and state, and what happens when the last
//! `Pool` handle goes away (the thread exits, idle connections close, guards still out close
//! when they come back).

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{FakeManager, SOON, THREAD_NAMES, eventually, linux_only, thread_names};
use sluicegate::{Pool, PooledConnection};

#[test]
fn close_fails_waiters_at_once_and_every_later_check_out() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(1).build(manager.clone()).unwrap();
    let held = pool.get().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                let start = Instant::now();
                let err = pool.get_timeout(Duration::from_secs(60)).unwrap_err();
                (err, start.elapsed())
            })
        })
        .collect();
    assert!(eventually(SOON, || pool.metrics().waiting == 3));
    pool.close();
    for waiter in waiters {
        let (err, waited) = waiter.join().unwrap();
        assert!(err.is_closed(), "{err}");
        assert!(waited < Duration::from_secs(30), "woke after {waited:?}");
    }
    assert!(pool.is_closed());
    assert!(pool.get().unwrap_err().is_closed());
    assert!(pool.try_get().is_none());
    // The checked-out connection closes when it comes back.
    assert_eq!(manager.script.live(), 1);
    drop(held);
    assert_eq!(manager.script.live(), 0);
    assert_eq!(pool.metrics().closed_shutdown, 1);
}

#[test]
fn close_closes_idle_connections_now_and_is_idempotent() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(4).build(manager.clone()).unwrap();
    assert_eq!(manager.script.live(), 4);
    pool.close();
    assert_eq!(manager.script.live(), 0);
    pool.close();
    pool.close();
    let m = pool.metrics();
    assert_eq!((m.connections, m.closed_shutdown, m.created), (0, 4, 4));
}

#[test]
fn evict_all_retires_every_connection_and_refills_the_pool() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(3).build(manager.clone()).unwrap();
    let out = pool.get().unwrap();
    let old_out = out.id;
    let old_ids: Vec<u64> = (1..=3).collect();
    pool.evict_all();
    // The two idle ones closed now, the checked-out one is still open.
    assert_eq!(manager.script.dropped.lock().len(), 2);
    drop(out);
    assert!(manager.script.dropped.lock().contains(&old_out));
    assert_eq!(pool.metrics().closed_evicted, 3);
    // The pool refills with fresh connections.
    assert!(eventually(SOON, || pool.state().idle_connections == 3));
    let fresh: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    for conn in &fresh {
        assert!(
            !old_ids.contains(&conn.id),
            "{} is an old connection",
            conn.id
        );
    }
}

#[test]
fn detach_frees_the_slot_at_once() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(1).build(manager.clone()).unwrap();
    let conn = pool.get().unwrap();
    let raw = PooledConnection::detach(conn);
    let m = pool.metrics();
    assert_eq!((m.detached, m.connections), (1, 0));
    // The pool opens a replacement while the detached connection lives on, outside it.
    let replacement = pool.get_timeout(SOON).unwrap();
    assert_ne!(replacement.id, raw.id);
    assert_eq!(manager.script.live(), 2);
    drop(replacement);
    pool.close();
    // The pool never touches the detached connection again.
    assert_eq!(manager.script.live(), 1);
    drop(raw);
    assert_eq!(manager.script.live(), 0);
}

#[test]
fn metrics_and_state_add_up() {
    let pool = Pool::builder()
        .max_size(3)
        .build(FakeManager::new())
        .unwrap();
    let a = pool.get().unwrap();
    let mut b = pool.get().unwrap();
    let state = pool.state();
    assert_eq!((state.connections, state.idle_connections), (3, 1));
    let m = pool.metrics();
    assert_eq!(
        (m.max_size, m.connections, m.idle, m.in_use, m.waiting),
        (3, 3, 1, 2, 0)
    );
    assert_eq!((m.checkouts, m.created), (2, 3));
    PooledConnection::mark_broken(&mut b);
    drop(b);
    drop(a);
    assert!(eventually(SOON, || pool.metrics().connections == 3));
    let m = pool.metrics();
    assert_eq!(
        m.created,
        u64::from(m.connections) + m.closed() + m.detached
    );
    assert_eq!(m.closed_broken, 1);
}

#[test]
fn dropping_the_last_handle_stops_the_thread_and_closes_idle_connections() {
    let test = "dropping_the_last_handle_stops_the_thread_and_closes_idle_connections";
    let names = linux_only(&format!("{test}, its thread check"), THREAD_NAMES);
    let running = || thread_names().iter().any(|n| n == "sluice-lastdrop");
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .pool_name("lastdrop")
        .max_size(3)
        .build(manager.clone())
        .unwrap();
    if names {
        assert!(eventually(SOON, running), "{:?}", thread_names());
    }
    let clone = pool.clone();
    let held = pool.get().unwrap();
    drop(pool);
    // Another handle remains: nothing closes.
    assert_eq!(manager.script.live(), 3);
    drop(clone);
    let start = Instant::now();
    assert!(eventually(Duration::from_secs(1), || manager.script.live() == 1));
    assert!(start.elapsed() < Duration::from_secs(1));
    if names {
        assert!(eventually(SOON, || !running()), "{:?}", thread_names());
    }
    // The guard still works, and its connection closes when it comes back; then nothing of
    // the pool is left (its state held the manager's script).
    assert_eq!(held.uses, 0);
    drop(held);
    assert_eq!(manager.script.live(), 0);
    assert!(eventually(SOON, || Arc::strong_count(&manager.script) == 1));
}

#[test]
fn a_failed_build_leaves_no_thread_behind() {
    if !linux_only("a_failed_build_leaves_no_thread_behind", THREAD_NAMES) {
        return;
    }
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(common::ConnectDefault::Fail(common::FakeError::new(
            "refused",
        )));
    let result = Pool::builder()
        .pool_name("failbuild")
        .connection_timeout(Duration::from_millis(100))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager.clone());
    assert!(result.is_err());
    // The opener ran (so it had named itself): its absence below means it ended.
    assert!(manager.script.connects() >= 1);
    assert!(
        eventually(SOON, || !thread_names()
            .iter()
            .any(|n| n == "sluice-failbuil" || n == "sluice-reap-fai")),
        "{:?}",
        thread_names()
    );
}
