//! Timeouts and errors: what a failed check-out or build tells the user, that every waiter is
//! told it, that any timeout is accepted, and that bad settings are errors naming the setting,
//! never panics.

mod common;

use std::error::Error as _;
use std::thread;
use std::time::{Duration, Instant};

use common::{ConnectDefault, FakeError, FakeManager, SOON, eventually};
use sluicegate::{NopErrorHandler, Pool};

fn refusing(reason: FakeError) -> FakeManager {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(reason));
    manager
}

fn password_failure() -> FakeError {
    FakeError::caused_by(
        "db error",
        "FATAL: password authentication failed for user \"app\"",
    )
}

#[test]
fn every_timed_out_waiter_gets_the_pool_the_wait_the_counts_and_the_database_error() {
    let pool = Pool::builder()
        .pool_name("orders")
        .max_size(3)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(400))
        .error_handler(Box::new(NopErrorHandler))
        .build(refusing(password_failure()))
        .unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.get().expect_err("must time out"))
        })
        .collect();
    for waiter in waiters {
        let err = waiter.join().unwrap();
        let text = err.to_string();
        assert!(err.is_timeout() && !err.is_closed());
        assert!(
            text.starts_with("timed out waiting for connection: db error: FATAL: password"),
            "{text}"
        );
        assert!(text.contains("pool \"orders\""), "{text}");
        assert!(text.contains("waited"), "{text}");
        assert!(text.contains("in use"), "{text}");
        assert!(text.contains("idle"), "{text}");
        assert!(text.contains("being opened"), "{text}");
        assert!(text.contains("waiting"), "{text}");
        assert!(text.contains("last connect error"), "{text}");
        // The chain is kept for programs, not only printed.
        let cause = err.last_error().expect("the database's error");
        assert_eq!(cause.to_string(), "db error");
        assert_eq!(
            cause.source().unwrap().to_string(),
            "FATAL: password authentication failed for user \"app\""
        );
        // Printed once, not again as the error's source.
        assert!(err.source().is_none());
    }
    assert_eq!(pool.metrics().timeouts, 4);
}

#[test]
fn a_timeout_on_a_busy_pool_says_every_connection_is_in_use() {
    let pool = Pool::builder()
        .pool_name("busy")
        .max_size(2)
        .build(FakeManager::new())
        .unwrap();
    let _a = pool.get().unwrap();
    let _b = pool.get().unwrap();
    let start = Instant::now();
    let err = pool.get_timeout(Duration::from_millis(150)).unwrap_err();
    let waited = start.elapsed();
    let text = err.to_string();
    assert!(
        text.starts_with("timed out waiting for connection; pool \"busy\" waited"),
        "{text}"
    );
    assert!(
        text.contains("2 of max_size 2 connections in use"),
        "{text}"
    );
    assert!(text.contains("leaked"), "{text}");
    assert!(err.last_error().is_none());
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
}

#[test]
fn get_timeout_accepts_any_duration() {
    let pool = Pool::builder()
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    let held = pool.get_timeout(Duration::MAX).unwrap();
    // Zero: no wait at all.
    let start = Instant::now();
    assert!(pool.get_timeout(Duration::ZERO).unwrap_err().is_timeout());
    assert!(start.elapsed() < Duration::from_secs(1));
    // The largest duration there is: waits (without overflowing) until a connection comes.
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || pool.get_timeout(Duration::MAX).map(|c| c.id))
    };
    assert!(eventually(SOON, || pool.metrics().waiting == 1));
    let id = held.id;
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), id);
}

#[test]
fn the_connection_timeout_setting_accepts_any_duration() {
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::MAX)
        .build(FakeManager::new())
        .unwrap();
    assert_eq!(pool.connection_timeout(), Duration::MAX);
    drop(pool.get().unwrap());
    // And a tiny one is honoured as given, not rounded up: even `build` gives up at once.
    let tiny = || {
        Pool::builder()
            .max_size(1)
            .connection_timeout(Duration::from_nanos(1))
    };
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Delay(Duration::from_millis(50)));
    assert!(tiny().build(manager).err().unwrap().is_timeout());
    let pool = tiny().build_unchecked(FakeManager::new());
    let _held = pool.get_timeout(SOON).unwrap();
    let start = Instant::now();
    assert!(pool.get().unwrap_err().is_timeout());
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn build_fails_with_the_database_error_within_the_connection_timeout() {
    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let err = Pool::builder()
        .pool_name("startup")
        .connection_timeout(timeout)
        .error_handler(Box::new(NopErrorHandler))
        .build(refusing(password_failure()))
        .expect_err("build must fail");
    let took = start.elapsed();
    let text = err.to_string();
    assert!(err.is_timeout());
    assert!(
        text.contains("FATAL: password authentication failed"),
        "{text}"
    );
    assert!(text.contains("min_idle"), "{text}");
    assert!(took >= timeout, "gave up after {took:?}");
    assert!(took < timeout + Duration::from_secs(3), "took {took:?}");
}

#[test]
fn build_waits_for_min_idle_connections() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Delay(Duration::from_millis(20)));
    let pool = Pool::builder()
        .max_size(8)
        .min_idle(Some(3))
        .build(manager.clone())
        .unwrap();
    assert!(pool.state().connections >= 3);
    assert!(pool.state().idle_connections >= 3);
}

#[test]
fn build_unchecked_reports_connect_failures_to_get() {
    let pool = Pool::builder()
        .connection_timeout(Duration::from_millis(200))
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(refusing(FakeError::new("connection refused")));
    let err = pool.get().unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
}

fn rejected(builder: sluicegate::Builder<FakeManager>) -> String {
    let err = builder
        .build(FakeManager::new())
        .expect_err("the setting must be rejected");
    assert!(!err.is_timeout() && !err.is_closed());
    err.to_string()
}

#[test]
fn invalid_settings_are_errors_naming_the_setting() {
    let builder = || Pool::<FakeManager>::builder();
    let cases = [
        (rejected(builder().max_size(0)), "max_size"),
        (
            rejected(builder().max_size(2).min_idle(Some(3))),
            "min_idle",
        ),
        (
            rejected(builder().connection_timeout(Duration::ZERO)),
            "connection_timeout",
        ),
        (
            rejected(builder().max_lifetime(Some(Duration::ZERO))),
            "max_lifetime",
        ),
        (
            rejected(builder().idle_timeout(Some(Duration::ZERO))),
            "idle_timeout",
        ),
        (
            rejected(builder().reaper_rate(Duration::ZERO)),
            "reaper_rate",
        ),
        (rejected(builder().pool_name("")), "pool_name"),
        (rejected(builder().pool_name("a\0b")), "pool_name"),
    ];
    for (message, setting) in cases {
        assert!(
            message.contains(&format!("`{setting}`")),
            "{message:?} should name {setting}"
        );
    }
}

#[test]
fn build_unchecked_with_invalid_settings_does_not_panic_and_fails_every_check_out() {
    let manager = FakeManager::new();
    let pool = Pool::builder().max_size(0).build_unchecked(manager.clone());
    assert!(pool.is_closed());
    for _ in 0..2 {
        let err = pool.get().unwrap_err();
        assert!(err.to_string().contains("`max_size`"), "{err}");
    }
    assert!(pool.try_get().is_none());
    assert_eq!(manager.script.connects(), 0);
}

#[test]
fn settings_read_back_as_given() {
    let pool = Pool::builder()
        .max_size(7)
        .min_idle(Some(1))
        .test_on_check_out(false)
        .validation_skip_window(Duration::from_millis(3))
        .max_lifetime(Some(Duration::from_millis(123_456)))
        .idle_timeout(None)
        .connection_timeout(Duration::from_millis(2500))
        .reaper_rate(Duration::from_millis(70))
        .pool_name("readback")
        .build(FakeManager::new())
        .unwrap();
    assert_eq!(pool.max_size(), 7);
    assert_eq!(pool.min_idle(), Some(1));
    assert!(!pool.test_on_check_out());
    assert_eq!(pool.validation_skip_window(), Duration::from_millis(3));
    assert_eq!(pool.max_lifetime(), Some(Duration::from_millis(123_456)));
    assert_eq!(pool.idle_timeout(), None);
    assert_eq!(pool.connection_timeout(), Duration::from_millis(2500));
    assert_eq!(pool.reaper_rate(), Duration::from_millis(70));
    assert_eq!(pool.name(), "readback");
    let debug = format!("{pool:?}");
    assert!(
        debug.contains("readback") && debug.contains("max_size: 7"),
        "{debug}"
    );
}

#[test]
fn closed_pool_errors_say_so() {
    let pool = Pool::builder()
        .pool_name("gone")
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    pool.close();
    let err = pool.get().unwrap_err();
    assert!(err.is_closed() && !err.is_timeout());
    assert!(err.to_string().contains("\"gone\" is closed"), "{err}");
}
