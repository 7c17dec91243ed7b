//! Permanent connect errors (the manager's `is_permanent`): a wrong password does not heal by
//! waiting, so `build` and check-outs fail at once with it; transient errors keep waiting; the
//! pool recovers on its own once connects succeed again.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use sluicegate::{NopErrorHandler, Pool};

use common::{Connect, ConnectDefault, FakeError, FakeManager, SOON, eventually, finishes_within};

/// Far longer than any test may wait: failing "at once" means well before this.
const LONG: Duration = Duration::from_secs(60);

fn wrong_password() -> FakeError {
    FakeError::permanent(
        "db error",
        "FATAL: password authentication failed for user \"app\"",
    )
}

fn refusing_manager() -> FakeManager {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(wrong_password()));
    manager
}

#[test]
fn build_fails_at_once_with_the_databases_reason() {
    let manager = refusing_manager();
    let started = Instant::now();
    let err = finishes_within(SOON, move || {
        Pool::builder()
            .pool_name("wrong-password")
            .connection_timeout(LONG)
            .error_handler(Box::new(NopErrorHandler))
            .build(manager)
            .unwrap_err()
    });
    assert!(started.elapsed() < SOON);
    assert!(err.is_permanent() && !err.is_timeout(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains("\"wrong-password\""), "{text}");
    assert!(
        err.last_error()
            .unwrap()
            .source()
            .unwrap()
            .to_string()
            .contains("password authentication failed")
    );
}

#[test]
fn a_check_out_fails_at_once_while_no_connection_can_come_back() {
    let manager = refusing_manager();
    let pool = Pool::builder()
        .min_idle(Some(0))
        .connection_timeout(LONG)
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager.clone());
    // The first check-out waits for the first connect, which fails permanently.
    let err = finishes_within(SOON, {
        let pool = pool.clone();
        move || pool.get().unwrap_err()
    });
    assert!(err.is_permanent(), "{err}");
    // Later check-outs fail at once too, without queueing.
    let err = finishes_within(SOON, {
        let pool = pool.clone();
        move || pool.get().unwrap_err()
    });
    assert!(err.is_permanent(), "{err}");
    assert_eq!(pool.metrics().timeouts, 0);
}

#[test]
fn threads_already_waiting_are_woken_to_fail() {
    let manager = FakeManager::new();
    let (release, gate) = crossbeam_channel::bounded(1);
    manager
        .script
        .plan_connect([Connect::GateThenFail(gate, wrong_password())]);
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(wrong_password()));
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(LONG)
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.get().map(|_| ()))
        })
        .collect();
    assert!(eventually(SOON, || pool.metrics().waiting == 3));
    release.send(()).unwrap();
    for waiter in waiters {
        let err = finishes_within(SOON, move || waiter.join().unwrap()).unwrap_err();
        assert!(err.is_permanent(), "{err}");
    }
    assert_eq!(pool.metrics().waiting, 0);
}

#[test]
fn transient_errors_still_wait_for_the_timeout() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("connection refused")));
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = Pool::builder()
        .connection_timeout(timeout)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager)
        .unwrap_err();
    assert!(err.is_timeout() && !err.is_permanent(), "{err}");
    assert!(started.elapsed() >= timeout);
}

#[test]
fn with_a_connection_in_use_a_check_out_waits_for_it() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(LONG)
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager.clone());
    let held = pool.get().unwrap();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(wrong_password()));
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.get().map(|conn| conn.id))
    };
    // The second connect fails permanently, but the held connection can come back.
    assert!(eventually(SOON, || pool.metrics().connect_failures >= 1));
    assert_eq!(pool.metrics().waiting, 1);
    let id = held.id;
    drop(held);
    let got = finishes_within(SOON, move || waiter.join().unwrap()).unwrap();
    assert_eq!(got, id);
}

#[test]
fn the_pool_recovers_once_connects_succeed() {
    let manager = refusing_manager();
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(LONG)
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager.clone());
    assert!(eventually(SOON, || pool.metrics().connect_failures >= 1));
    assert!(pool.get_timeout(SOON).unwrap_err().is_permanent());
    // The password is fixed: the pool's retries (back-off of at most 2 s) get through.
    manager.script.set_connect_default(ConnectDefault::Ok);
    assert!(eventually(SOON, || pool.metrics().connections == 1));
    let conn = pool.get_timeout(SOON).unwrap();
    assert_eq!(conn.uses, 0);
}
