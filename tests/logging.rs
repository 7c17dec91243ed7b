//! What a pool tells the log: an outage once at `error` (then at most once a minute) and its
//! end once at `info`; failed validations at `warn`, naming the pool and the cause; every
//! connection opened and closed at `debug`, with the reason. Its own binary: a test binary has
//! one logger, and each test picks out its own pool's lines by name.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    ConnectDefault, FakeError, FakeManager, SOON, all_logged, capture_logs, eventually, logged,
};
use sluicegate::{HandleError, Pool, PooledConnection};

fn lines_at(pool: &str, level: log::Level) -> Vec<String> {
    logged(pool)
        .into_iter()
        .filter(|(l, _)| *l == level)
        .map(|(_, line)| line)
        .collect()
}

#[test]
fn an_outage_is_one_error_line_then_one_recovery_line() {
    capture_logs();
    let manager = FakeManager::new();
    let refusal = "connect refused by outage-test";
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::caused_by(
            "db error", refusal,
        )));
    // A short timeout: the back-off is capped at 50 ms, so the outage below holds dozens of
    // failed connects within a couple of seconds.
    let pool = Pool::builder()
        .pool_name("outage")
        .max_size(2)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_millis(200))
        .build_unchecked(manager.clone());
    assert!(eventually(SOON, || pool.metrics().connect_failures >= 30));
    let errors = lines_at("outage", log::Level::Error);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("cannot connect: db error: connect refused by outage-test"),
        "{}",
        errors[0]
    );
    assert!(lines_at("outage", log::Level::Info).is_empty());

    manager.script.set_connect_default(ConnectDefault::Ok);
    assert!(eventually(SOON, || pool.state().connections == 1));
    let failures = pool.metrics().connect_failures;
    assert!(eventually(SOON, || !lines_at("outage", log::Level::Info).is_empty()));
    let infos = lines_at("outage", log::Level::Info);
    assert_eq!(infos.len(), 1, "{infos:#?}");
    assert!(
        infos[0].contains(&format!("down ({failures} failed connects)")),
        "{} (failures: {failures})",
        infos[0]
    );
    // More connects that work say nothing more at `info` or above.
    drop(pool.get().unwrap());
    let second = pool.get().unwrap();
    let third = pool.get_timeout(SOON).unwrap();
    drop((second, third));
    assert_eq!(lines_at("outage", log::Level::Info).len(), 1);
    assert_eq!(lines_at("outage", log::Level::Error).len(), 1);

    // The default error handler heard of every failure, and logged each at `debug` only (its
    // lines name no pool: they are the driver's errors).
    let handler_lines: Vec<_> = all_logged()
        .into_iter()
        .filter(|(_, line)| line == &format!("db error: {refusal}"))
        .collect();
    assert_eq!(handler_lines.len() as u64, failures);
    assert!(handler_lines.iter().all(|(l, _)| *l == log::Level::Debug));
}

/// Counts the errors it receives.
#[derive(Debug, Default)]
struct Counting(Arc<AtomicU64>);

impl<E> HandleError<E> for Counting {
    fn handle_error(&self, _: E) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_users_error_handler_still_receives_every_error() {
    capture_logs();
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("refused")));
    let count = Arc::new(AtomicU64::new(0));
    let pool = Pool::builder()
        .pool_name("own-handler")
        .max_size(1)
        .connection_timeout(Duration::from_millis(200))
        .error_handler(Box::new(Counting(count.clone())))
        .build_unchecked(manager.clone());
    assert!(eventually(SOON, || pool.metrics().connect_failures >= 10));
    pool.close();
    // The handler runs just after the failure is counted: wait for the last one.
    let failures = pool.metrics().connect_failures;
    assert!(eventually(SOON, || count.load(Ordering::SeqCst) == failures));
    assert_eq!(lines_at("own-handler", log::Level::Error).len(), 1);
}

#[test]
fn a_failed_check_out_validation_names_the_pool_and_the_cause() {
    capture_logs();
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .pool_name("checkout-validation")
        .max_size(1)
        .validation_skip_window(Duration::ZERO)
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .plan_validation([Err(FakeError::new("server closed the connection"))]);
    let conn = pool.get().unwrap();
    let id = PooledConnection::id(&conn);
    let warnings = lines_at("checkout-validation", log::Level::Warn);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        // Ids are unique in the process: the one closed is not the one handed out.
        !warnings[0].contains(&format!("connection {id} "))
            && warnings[0].contains("check-out validation")
            && warnings[0].ends_with("server closed the connection"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_failed_keepalive_names_the_pool_and_the_cause() {
    capture_logs();
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .pool_name("keepalive-validation")
        .max_size(1)
        .keepalive(Some(Duration::from_millis(100)))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .plan_validation([Err(FakeError::new("connection reset by peer"))]);
    let warned = || {
        lines_at("keepalive-validation", log::Level::Warn)
            .iter()
            .any(|line| {
                line.contains("keepalive validation") && line.ends_with("connection reset by peer")
            })
    };
    assert!(eventually(SOON, warned));
    assert!(eventually(SOON, || pool.metrics().closed_invalid == 1));
}

#[test]
fn every_open_and_close_is_a_debug_line_with_its_reason() {
    capture_logs();
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .pool_name("debug-lines")
        .max_size(3)
        .build(manager.clone())
        .unwrap();
    let mut broken = pool.get().unwrap();
    PooledConnection::mark_broken(&mut broken);
    drop(broken);
    let detached = PooledConnection::detach(pool.get().unwrap());
    drop(detached);
    assert!(eventually(SOON, || pool.state().idle_connections == 3));
    pool.set_max_size(2).unwrap();
    pool.evict_all();
    assert!(eventually(SOON, || pool.state().idle_connections == 2));
    pool.close();
    let debug = lines_at("debug-lines", log::Level::Debug);
    let count = |needle: &str| debug.iter().filter(|l| l.contains(needle)).count();
    let created = pool.metrics().created;
    assert_eq!(count("opened connection") as u64, created, "{debug:#?}");
    assert_eq!(count("(broken)"), 1, "{debug:#?}");
    assert_eq!(count("detached"), 1, "{debug:#?}");
    assert_eq!(count("(max_size lowered)"), 1, "{debug:#?}");
    assert_eq!(count("(evicted)"), 2, "{debug:#?}");
    assert_eq!(count("(pool closed)"), 2, "{debug:#?}");
    assert_eq!(count("closing connection") as u64, created - 1);
    // Nothing above `debug` in a life without trouble, but the resize.
    let louder: Vec<_> = logged("debug-lines")
        .into_iter()
        .filter(|(l, _)| *l < log::Level::Debug)
        .collect();
    assert_eq!(louder.len(), 1, "{louder:#?}");
    assert!(louder[0].1.contains("max_size set to 2 (was 3)"));
}

#[test]
fn validations_that_keep_failing_are_a_few_lines_a_minute() {
    capture_logs();
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .pool_name("failing-validations")
        .max_size(2)
        .validation_skip_window(Duration::ZERO)
        .connection_timeout(Duration::from_millis(200))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    // A database that accepts connections and fails every query.
    manager
        .script
        .fail_validation(Some(FakeError::new("the server is shutting down")));
    while pool.metrics().closed_invalid < 12 {
        assert!(pool.get_timeout(Duration::from_millis(100)).is_err());
    }
    let warnings = lines_at("failing-validations", log::Level::Warn);
    // Five a minute: a restart's burst shows, a sustained failure does not flood.
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
    assert!(
        warnings
            .iter()
            .all(|line| line.ends_with("the server is shutting down")),
        "{warnings:#?}"
    );
}
