//! Nothing is lost to a panic: not in a driver error's `Display` or `source()` (which the
//! pool reads to keep the last error), not on the opener, a check-out or keepalive. Every
//! connection stays counted exactly once, and the pool keeps serving.

mod common;

use std::time::Duration;

use common::{Connect, FakeError, FakeManager, SOON, eventually};
use sluicegate::{NopErrorHandler, Pool};

/// The pool's idea of its connections agrees with the fake database's.
fn counts_agree(pool: &Pool<FakeManager>, manager: &FakeManager) -> bool {
    let m = pool.metrics();
    i64::from(m.connections) == manager.script.live() && m.opening == 0 && m.closing == 0
}

#[test]
fn a_connect_error_that_cannot_be_printed_costs_one_attempt() {
    let manager = FakeManager::new();
    manager
        .script
        .plan_connect([Connect::Fail(FakeError::panicking())]);
    let pool = Pool::builder()
        .max_size(2)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    let m = pool.metrics();
    assert_eq!((m.connections, m.connect_failures), (2, 1));
    assert!(counts_agree(&pool, &manager));
}

#[test]
fn a_validation_error_that_cannot_be_printed_closes_the_connection_and_the_check_out_goes_on() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .plan_validation([Err(FakeError::panicking())]);
    // The first validation fails with the unprintable error; the check-out takes the other
    // connection, on the caller's thread, without panicking there.
    let conn = pool.get_timeout(SOON).unwrap();
    assert_eq!(pool.metrics().closed_invalid, 1);
    drop(conn);
    // Both connections can be held again (the closed one was replaced), and the counts agree.
    let both = [
        pool.get_timeout(SOON).unwrap(),
        pool.get_timeout(SOON).unwrap(),
    ];
    drop(both);
    assert!(eventually(SOON, || counts_agree(&pool, &manager)));
}

#[test]
fn a_keepalive_error_that_cannot_be_printed_closes_the_connection_and_it_is_replaced() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .test_on_check_out(false)
        .keepalive(Some(Duration::from_millis(100)))
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .plan_validation([Err(FakeError::panicking())]);
    assert!(eventually(SOON, || pool.metrics().closed_invalid == 1));
    // Replaced, counted once, and both connections can be held.
    assert!(eventually(SOON, || {
        counts_agree(&pool, &manager) && pool.metrics().idle == 2
    }));
    let both = [
        pool.get_timeout(SOON).unwrap(),
        pool.get_timeout(SOON).unwrap(),
    ];
    drop(both);
}

#[test]
fn a_timeout_after_an_unprintable_error_still_says_what_happened() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(common::ConnectDefault::Fail(FakeError::panicking()));
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager.clone());
    let err = pool.get().unwrap_err();
    assert!(err.is_timeout());
    assert!(
        err.to_string().contains("the error's Display panicked"),
        "{err}"
    );
}
