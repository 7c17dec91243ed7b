//! Measures what a default-configured pool logs through a database outage (run by hand:
//! `cargo test --test outage_measure -- --ignored --nocapture`): a 10 s outage, then recovery.

mod common;

use std::time::{Duration, Instant};

use common::{ConnectDefault, FakeError, FakeManager, all_logged, capture_logs, eventually};
use sluicegate::Pool;

#[test]
#[ignore = "takes 10 s; a measurement, run by hand"]
fn lines_logged_in_a_ten_second_outage() {
    capture_logs();
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::caused_by(
            "db error",
            "connection refused",
        )));
    let started = Instant::now();
    // Default settings but a 2 s connection_timeout; the default error handler.
    let pool = Pool::builder()
        .pool_name("measured")
        .connection_timeout(Duration::from_secs(2))
        .build_unchecked(manager.clone());
    while started.elapsed() < Duration::from_secs(10) {
        let _ = pool.get();
    }
    let during = all_logged();
    manager.script.set_connect_default(ConnectDefault::Ok);
    assert!(eventually(Duration::from_secs(10), || pool
        .state()
        .connections
        == 10));
    std::thread::sleep(Duration::from_millis(200));
    let all = all_logged();
    let count = |lines: &[(log::Level, String)], at_least: log::Level| {
        lines.iter().filter(|(level, _)| *level <= at_least).count()
    };
    println!(
        "10 s outage: {} connects; lines during the outage: {} at info or above ({} error), {} \
         in all; after recovery: {} at info or above, {} in all",
        manager.script.connects(),
        count(&during, log::Level::Info),
        count(&during, log::Level::Error),
        during.len(),
        count(&all, log::Level::Info),
        all.len(),
    );
    for (level, line) in all.iter().filter(|(l, _)| *l <= log::Level::Info).take(5) {
        println!("  {level}: {line}");
    }
}
