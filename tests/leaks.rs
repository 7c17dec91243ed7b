//! Leak detection, used the way a project's own test suite and a running service use it: the
//! "application code" below borrows connections in helpers, and the tests find the helper that
//! forgot to give one back by its name.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;
use std::time::Duration;

use sluicegate::{Pool, PooledConnection};

use common::{FakeManager, SOON, capture_logs, eventually, logged};

/// How the test suite of an application builds its pool: every connection still out when the
/// test asks is a leak.
fn test_pool(name: &str) -> Pool<FakeManager> {
    Pool::builder()
        .pool_name(name)
        .max_size(4)
        .leak_detection_threshold(Some(Duration::ZERO))
        .build(FakeManager::new())
        .unwrap()
}

// --- the application code under test ------------------------------------------------------

/// Well-behaved: the connection goes back when the guard drops.
#[inline(never)]
fn count_orders(pool: &Pool<FakeManager>) -> u64 {
    let mut conn = pool.get().unwrap();
    conn.uses += 1;
    conn.uses
}

/// Buggy: the guard is forgotten, so the connection never comes back.
#[inline(never)]
fn load_user_and_forget_the_connection(pool: &Pool<FakeManager>) -> u64 {
    let conn = pool.get().unwrap();
    let id = PooledConnection::id(&conn);
    std::mem::forget(conn);
    id
}

/// Buggy in another way: the guard is kept in a long-lived place.
#[inline(never)]
fn cache_a_connection(pool: &Pool<FakeManager>, cache: &mut Vec<PooledConnection<FakeManager>>) {
    cache.push(pool.get().unwrap());
}

/// Holds its connection until told to let go: a slow report in a running service.
#[inline(never)]
fn run_slow_report(pool: &Pool<FakeManager>, finish: &crossbeam_channel::Receiver<()>) {
    let _conn = pool.get().unwrap();
    let _ = finish.recv();
}

// --- the tests ------------------------------------------------------------------------------

fn panic_message(pool: &Pool<FakeManager>) -> Option<String> {
    let panic = catch_unwind(AssertUnwindSafe(|| pool.assert_no_leaks())).err()?;
    Some(
        panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a non-string panic".into()),
    )
}

#[test]
fn code_that_returns_its_connections_passes() {
    let pool = test_pool("clean");
    assert_eq!(count_orders(&pool), 1);
    assert_eq!(count_orders(&pool), 2);
    pool.assert_no_leaks();
    assert_eq!(pool.metrics().leaks_detected, 0);
}

#[test]
fn a_helper_that_forgets_its_connection_is_caught_by_name() {
    let pool = test_pool("forgetful");
    count_orders(&pool);
    let leaked = load_user_and_forget_the_connection(&pool);

    let message = panic_message(&pool).expect("assert_no_leaks panics on a leak");
    assert!(message.contains("1 connection leaked"), "{message}");
    assert!(
        message.contains("load_user_and_forget_the_connection"),
        "{message}"
    );
    assert!(
        message.contains(&format!("connection {leaked} ")),
        "{message}"
    );
    assert!(message.contains("pool \"forgetful\""), "{message}");
    assert!(message.contains("tests/leaks.rs"), "{message}");
    // Test threads are named after their test.
    assert!(
        message.contains("a_helper_that_forgets_its_connection_is_caught_by_name"),
        "{message}"
    );
    // The well-behaved helper is not blamed.
    assert!(!message.contains("count_orders"), "{message}");
}

#[test]
fn every_leak_is_reported_with_its_own_borrower() {
    let pool = test_pool("two-leaks");
    let mut cache = Vec::new();
    load_user_and_forget_the_connection(&pool);
    cache_a_connection(&pool, &mut cache);

    let leaks = pool.leaks();
    assert_eq!(leaks.len(), 2);
    let mut borrowers: Vec<String> = leaks
        .iter()
        .map(|leak| {
            let frame = leak
                .backtrace()
                .borrower()
                .expect("test binaries have symbols");
            assert!(frame.file().unwrap().ends_with("tests/leaks.rs"));
            assert!(frame.line().is_some());
            assert!(leak.location().file().ends_with("leaks.rs"));
            frame.function().unwrap().to_string()
        })
        .collect();
    borrowers.sort();
    assert_eq!(
        borrowers,
        [
            "leaks::cache_a_connection",
            "leaks::load_user_and_forget_the_connection"
        ]
    );

    let message = panic_message(&pool).unwrap();
    assert!(message.contains("2 connections leaked"), "{message}");
    assert!(message.contains("cache_a_connection"), "{message}");
    // Once the cache lets go, only the forgotten one is left.
    cache.clear();
    assert_eq!(pool.leaks().len(), 1);
}

#[test]
fn each_leak_is_counted_once() {
    let pool = test_pool("counted");
    load_user_and_forget_the_connection(&pool);
    assert!(panic_message(&pool).is_some());
    assert!(panic_message(&pool).is_some());
    assert_eq!(pool.metrics().leaks_detected, 1);
    load_user_and_forget_the_connection(&pool);
    assert!(panic_message(&pool).is_some());
    assert_eq!(pool.metrics().leaks_detected, 2);
    // Asking is not reporting.
    assert_eq!(pool.leaks().len(), 2);
    assert_eq!(pool.metrics().leaks_detected, 2);
}

#[test]
fn a_detached_connection_is_not_a_leak() {
    let pool = test_pool("detached");
    let conn = PooledConnection::detach(pool.get().unwrap());
    assert!(pool.leaks().is_empty());
    pool.assert_no_leaks();
    drop(conn);
}

#[test]
fn without_leak_detection_nothing_is_recorded_and_the_assertion_says_so() {
    capture_logs();
    let pool = Pool::builder()
        .pool_name("no-detection")
        .max_size(2)
        .build(FakeManager::new())
        .unwrap();
    let held = pool.get().unwrap();
    assert!(pool.leaks().is_empty());
    pool.assert_no_leaks();
    assert_eq!(pool.metrics().leaks_detected, 0);
    let lines = logged("no-detection");
    assert!(
        lines
            .iter()
            .any(|(level, line)| *level == log::Level::Warn
                && line.contains("leak detection is off")),
        "{lines:?}"
    );
    drop(held);
}

#[test]
fn only_check_outs_past_the_threshold_are_leaks() {
    let pool = Pool::builder()
        .max_size(2)
        .leak_detection_threshold(Some(Duration::from_secs(600)))
        .build(FakeManager::new())
        .unwrap();
    let held = pool.get().unwrap();
    assert!(pool.leaks().is_empty());
    pool.assert_no_leaks();
    drop(held);
}

#[test]
fn a_service_logs_a_leak_once_with_where_it_was_borrowed_and_logs_its_return() {
    capture_logs();
    let threshold = Duration::from_millis(150);
    // The reaper rate stays at 30 s: the reaper wakes for the leak deadline itself.
    let pool = Pool::builder()
        .pool_name("service")
        .max_size(2)
        .leak_detection_threshold(Some(threshold))
        .build(FakeManager::new())
        .unwrap();
    let (finish, finished) = crossbeam_channel::bounded(1);
    let worker = {
        let pool = pool.clone();
        thread::Builder::new()
            .name("report-worker".into())
            .spawn(move || run_slow_report(&pool, &finished))
            .unwrap()
    };
    assert!(eventually(SOON, || pool.metrics().leaks_detected == 1));
    let warnings = || -> Vec<String> {
        logged("service")
            .into_iter()
            .filter(|(level, line)| *level == log::Level::Warn && line.contains("leak"))
            .map(|(_, line)| line)
            .collect()
    };
    let leak_id = pool.leaks()[0].connection_id();
    let report = warnings().pop().expect("the leak is logged");
    for part in [
        "possible connection leak",
        &format!("connection {leak_id} "),
        "pool \"service\"",
        "thread \"report-worker\"",
        "run_slow_report",
        "tests/leaks.rs",
    ] {
        assert!(report.contains(part), "{part:?} missing from: {report}");
    }

    // Reported once, however long it stays out.
    thread::sleep(threshold * 4);
    assert_eq!(warnings().len(), 1);
    assert_eq!(pool.metrics().leaks_detected, 1);

    finish.send(()).unwrap();
    worker.join().unwrap();
    let came_back = logged("service")
        .into_iter()
        .find(|(level, line)| *level == log::Level::Info && line.contains("came back after"));
    let (_, line) = came_back.expect("the return of a reported leak is logged");
    assert!(line.contains(&format!("connection {leak_id} ")), "{line}");
    assert!(pool.leaks().is_empty());
}

#[test]
fn a_leak_report_prints_the_backtrace_from_the_borrower() {
    let pool = test_pool("printed");
    let line = line!() + 1;
    let conn = pool.get().unwrap();
    let leak = pool.leaks().pop().unwrap();
    assert_eq!(leak.location().line(), line);
    assert_eq!(leak.pool(), "printed");
    assert_eq!(
        leak.thread_name(),
        Some("a_leak_report_prints_the_backtrace_from_the_borrower")
    );
    let text = leak.to_string();
    let trace = leak.backtrace().to_string();
    // The trace starts at the test function, not inside the pool.
    let first = trace.lines().next().unwrap();
    assert!(
        first.contains("leaks::a_leak_report_prints_the_backtrace_from_the_borrower"),
        "{trace}"
    );
    assert!(!trace.contains("sluicegate::"), "{trace}");
    assert!(text.contains(&trace));
    drop(conn);
}
