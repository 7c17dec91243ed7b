//! Whatever the settings and whatever the database does, the pool never spins and never
//! hammers the server: connections that open but never work count toward the connect back-off,
//! the back-off has a floor, and background rounds have one too.
//!
//! Time is the behaviour in these tests: each counts what happens in a fixed window, and the
//! bounds are an order of magnitude away from both a working floor and a storm.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{ConnectDefault, FakeError, FakeManager, linux_only, thread_names};
use sluicegate::{NopErrorHandler, Pool};

/// Loops `get_timeout(each)` on its own thread for `window`.
fn keep_asking(pool: &Pool<FakeManager>, each: Duration, window: Duration) {
    let pool = pool.clone();
    thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < window {
            let _ = pool.get_timeout(each);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn connections_that_open_but_fail_validation_are_backed_off_from() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(0))
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager
        .script
        .fail_validation(Some(FakeError::new("the server drops new sessions")));
    keep_asking(&pool, Duration::from_millis(200), Duration::from_secs(1));
    // Back-off 10, 20, 40, … ms: about 7 connects in a second (without it: tens of thousands).
    let connects = manager.script.connects();
    assert!(connects <= 15, "{connects} connects in a second");
}

#[test]
fn a_tiny_connection_timeout_does_not_turn_the_back_off_into_a_storm() {
    let manager = FakeManager::new();
    manager
        .script
        .set_connect_default(ConnectDefault::Fail(FakeError::new("refused")));
    let pool = Pool::builder()
        .max_size(1)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_micros(1))
        .error_handler(Box::new(NopErrorHandler))
        .build_unchecked(manager.clone());
    keep_asking(&pool, Duration::from_micros(1), Duration::from_secs(1));
    // At least 10 ms, then at most 50 ms between attempts: 20 to 30 a second.
    let connects = manager.script.connects();
    assert!(connects <= 40, "{connects} connects in a second");
    assert!(connects >= 5, "{connects}: the pool still retries");
}

#[test]
fn a_tiny_keepalive_validates_each_connection_at_most_every_hundred_milliseconds() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(2)
        .test_on_check_out(false)
        .keepalive(Some(Duration::from_micros(1)))
        .build(manager.clone())
        .unwrap();
    let before = manager.script.validations();
    thread::sleep(Duration::from_secs(1));
    let validations = manager.script.validations() - before;
    // Two connections, each at most every 90 ms: about 22 (without the floor: ~100,000).
    assert!(validations <= 40, "{validations} validations in a second");
    assert!(validations >= 4, "{validations}: keepalive still runs");
    drop(pool);
}

/// The CPU time (user and system) a thread of this process has used, by its name (from
/// /proc: Linux only).
fn cpu_time(name: &str) -> Option<Duration> {
    let ticks_per_second = 100; // USER_HZ, fixed on Linux
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // Another test's thread may end between the listing and the read.
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        return Some(Duration::from_millis(ticks * 1000 / ticks_per_second));
    }
    None
}

#[test]
fn a_tiny_reaper_rate_does_not_burn_a_core() {
    if !linux_only(
        "a_tiny_reaper_rate_does_not_burn_a_core",
        "the reaper's name and CPU time from /proc",
    ) {
        return;
    }
    let pool = Pool::builder()
        .pool_name("spinning")
        .max_size(2)
        .reaper_rate(Duration::from_nanos(1))
        .build(FakeManager::new())
        .unwrap();
    // The reaper names itself once it runs.
    assert!(common::eventually(common::SOON, || thread_names()
        .iter()
        .any(|n| n == "sluice-reap-spi")));
    let before = cpu_time("sluice-reap-spi").unwrap();
    thread::sleep(Duration::from_secs(1));
    let used = cpu_time("sluice-reap-spi").unwrap() - before;
    // Rounds at least 10 ms apart cost a few milliseconds a second; a spin costs most of it.
    assert!(
        used < Duration::from_millis(150),
        "the reaper used {used:?} in a second"
    );
    drop(pool);
}
