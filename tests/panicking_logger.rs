//! The application's logger panics: the pool's threads go on (their own binary, because a
//! test binary has one logger).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{FakeManager, SOON, eventually};
use sluicegate::Pool;

/// A logger that panics on every warning, after counting it.
struct Panicking;

static WARNINGS: AtomicU64 = AtomicU64::new(0);

impl log::Log for Panicking {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Warn {
            WARNINGS.fetch_add(1, Ordering::SeqCst);
            panic!("the logger blew up");
        }
    }

    fn flush(&self) {}
}

#[test]
fn the_reaper_goes_on_after_the_logger_panics() {
    static LOGGER: Panicking = Panicking;
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(3)
        .max_lifetime(Some(Duration::from_millis(300)))
        .reaper_rate(Duration::from_millis(100))
        .leak_detection_threshold(Some(Duration::from_millis(50)))
        .build(manager.clone())
        .unwrap();
    // Held past the threshold: the reaper's leak report makes the logger panic.
    let held = pool.get().unwrap();
    assert!(eventually(SOON, || WARNINGS.load(Ordering::SeqCst) >= 1));
    // The reaper still closes idle connections at their lifetime, round after round, and the
    // pool still serves.
    assert!(eventually(SOON, || pool.metrics().closed_max_lifetime >= 4));
    drop(held);
    drop(pool.get_timeout(SOON).unwrap());
}
