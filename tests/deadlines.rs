//! Every check-out is bounded by its own deadline, whatever the database does: a validation
//! gets what is left of the caller's time, the reject loop looks at the deadline before every
//! retry, and a manager that cannot bound its validation is named in the log, once.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{FakeError, FakeManager, SOON, capture_logs, finishes_within, logged};
use sluicegate::{NopErrorHandler, Pool};

/// What a check-out may overrun its timeout by on a loaded machine: the validation floor
/// (10 ms) and scheduling.
const SLACK: Duration = Duration::from_millis(250);

/// A pool of one connection that validates every check-out.
fn validating_pool(manager: &FakeManager, name: &str) -> Pool<FakeManager> {
    Pool::builder()
        .pool_name(name)
        .max_size(1)
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap()
}

/// Runs `get_timeout(timeout)` and returns how long it took and its error.
fn timed_get(pool: &Pool<FakeManager>, timeout: Duration) -> (Duration, sluicegate::Error) {
    let pool = pool.clone();
    finishes_within(timeout + SOON, move || {
        let started = Instant::now();
        let err = pool.get_timeout(timeout).expect_err("the check-out fails");
        (started.elapsed(), err)
    })
}

#[test]
fn a_validation_that_hangs_is_bounded_by_the_callers_time() {
    let manager = FakeManager::new();
    let pool = validating_pool(&manager, "hanging-validation");
    manager.script.slow_validation(Duration::from_secs(3));
    let timeout = Duration::from_millis(500);
    let (took, err) = timed_get(&pool, timeout);
    assert!(took < timeout + SLACK, "took {took:?}");
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string().contains("no answer within the deadline"),
        "the validation's error is the reason: {err}"
    );
    // The connection that did not answer in time was closed, not kept.
    assert_eq!(pool.metrics().closed_invalid, 1);
}

#[test]
fn a_manager_that_overruns_its_timeout_is_named_once() {
    capture_logs();
    let manager = FakeManager::new();
    let pool = validating_pool(&manager, "rude-validation");
    manager
        .script
        .honours_deadlines
        .store(false, Ordering::SeqCst);
    manager.script.slow_validation(Duration::from_millis(400));
    for _ in 0..3 {
        // Validations of 400 ms against 50 ms of time: each overruns.
        let _ = pool.get_timeout(Duration::from_millis(50));
    }
    let lines: Vec<String> = logged("rude-validation")
        .into_iter()
        .filter(|(level, line)| *level == log::Level::Warn && line.contains("is_valid_within"))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("longer than the"), "{}", lines[0]);
}

#[test]
fn a_validation_that_keeps_failing_cannot_hold_a_caller_past_its_deadline() {
    let manager = FakeManager::new();
    let pool = validating_pool(&manager, "failing-validation");
    // Every connection opens, then fails its validation after 100 ms.
    manager
        .script
        .fail_validation(Some(FakeError::new("server is going away")));
    manager.script.slow_validation(Duration::from_millis(100));
    let timeout = Duration::from_millis(500);
    let (took, err) = timed_get(&pool, timeout);
    assert!(took < timeout + SLACK, "took {took:?}");
    assert!(err.is_timeout(), "{err}");
    // The last validation ran out of the caller's time, or failed on its own.
    assert!(err.to_string().contains("last validation error"), "{err}");
    assert!(
        manager.script.connects() >= 2,
        "it did retry with new connections"
    );
}

#[test]
fn try_get_bounds_its_validation_by_the_connection_timeout() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(Duration::ZERO)
        .connection_timeout(Duration::from_millis(300))
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager.script.slow_validation(Duration::from_secs(5));
    let started = Instant::now();
    assert!(pool.try_get().is_none());
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK);
}

#[test]
fn a_zero_timeout_still_validates_within_the_floor() {
    let manager = FakeManager::new();
    let pool = validating_pool(&manager, "zero-timeout");
    // A healthy connection that needs validation: a zero timeout leaves the validation its
    // floor, so an idle connection is still handed out.
    let conn = pool.get_timeout(Duration::ZERO).unwrap();
    drop(conn);
    assert_eq!(manager.script.validations(), 1);
}

#[test]
fn the_reject_loop_stops_at_the_deadline_with_idle_connections_left() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(10)
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    // Ten idle connections, each failing a validation that takes 100 ms whatever its
    // timeout: trying them all would take a second.
    manager
        .script
        .honours_deadlines
        .store(false, Ordering::SeqCst);
    manager
        .script
        .fail_validation(Some(FakeError::new("server is going away")));
    manager.script.slow_validation(Duration::from_millis(100));
    let timeout = Duration::from_millis(300);
    let (took, err) = timed_get(&pool, timeout);
    // The deadline, plus at most the one validation under way when it passed.
    assert!(
        took < timeout + Duration::from_millis(100) + SLACK,
        "took {took:?}"
    );
    assert!(err.is_timeout(), "{err}");
    assert!(manager.script.validations() < 10, "it stopped trying");
}
