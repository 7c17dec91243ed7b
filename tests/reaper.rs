//! The reaper thread: idle timeout, max lifetime and its jitter, keepalive, and the threads'
//! exit. Durations are small and bounds generous: time is the behaviour here, so tests wait
//! for it, but never assert how fast anything ran.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use sluicegate::event::ReleaseEvent;
use sluicegate::{HandleEvent, ManageConnection, Pool};

use common::{
    FakeError, FakeManager, SOON, THREAD_NAMES, eventually, finishes_within, linux_only,
    thread_names,
};

/// Records the age of every connection the pool closes, by connection id.
#[derive(Debug, Default, Clone)]
struct Releases(Arc<Mutex<Vec<(u64, Duration)>>>);

impl HandleEvent for Releases {
    fn handle_release(&self, event: ReleaseEvent) {
        self.0.lock().push((event.connection_id(), event.age()));
    }
}

impl Releases {
    fn ages(&self) -> Vec<Duration> {
        self.0.lock().iter().map(|(_, age)| *age).collect()
    }
}

#[test]
fn idle_connections_beyond_min_idle_close_oldest_first_and_never_below_min_idle() {
    let manager = FakeManager::new();
    let timeout = Duration::from_millis(300);
    // reaper_rate stays at its 30 s default: the reaper must wake for the idle deadlines.
    let pool = Pool::builder()
        .max_size(5)
        .min_idle(Some(2))
        .idle_timeout(Some(timeout))
        .build(manager.clone())
        .unwrap();
    let guards: Vec<_> = (0..5).map(|_| pool.get().unwrap()).collect();
    let returned_in_order: Vec<u64> = guards.iter().map(|g| g.id).collect();
    for guard in guards {
        drop(guard);
        // Check-in stamps a few clock ticks apart, so that "oldest" is unambiguous.
        thread::sleep(Duration::from_millis(20));
    }
    // Within SOON, far less than the 30 s reaper rate: the reaper woke for the deadlines.
    assert!(eventually(SOON, || pool.metrics().closed_idle_timeout == 3));
    // Counted when retired, dropped just after, off the lock.
    assert!(eventually(SOON, || manager.script.dropped.lock().len() == 3));
    assert_eq!(*manager.script.dropped.lock(), returned_in_order[..3]);

    // Well past another idle timeout: the two kept for min_idle stay, nothing reopens.
    thread::sleep(timeout * 3);
    let m = pool.metrics();
    assert_eq!((m.connections, m.idle), (2, 2));
    assert_eq!(m.closed_idle_timeout, 3);
    assert_eq!(m.created, 5);
}

#[test]
fn idle_timeout_without_min_idle_does_not_churn() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(3)
        .idle_timeout(Some(Duration::from_millis(50)))
        .reaper_rate(Duration::from_millis(20))
        .build(manager.clone())
        .unwrap();
    drop(pool.get().unwrap());
    // Many idle timeouts and reaper rounds.
    thread::sleep(Duration::from_millis(600));
    let m = pool.metrics();
    assert_eq!(m.closed(), 0, "{m:?}");
    assert_eq!(m.created, 3);
    assert_eq!(manager.script.connects(), 3);
}

#[test]
fn idle_connections_close_near_their_deadline_and_are_replaced() {
    let manager = FakeManager::new();
    let releases = Releases::default();
    let lifetime = Duration::from_millis(800);
    let pool = Pool::builder()
        .max_size(3)
        .max_lifetime(Some(lifetime))
        .event_handler(Box::new(releases.clone()))
        .build(manager.clone())
        .unwrap();
    assert!(eventually(SOON, || pool.metrics().closed_max_lifetime >= 3));
    for age in releases.ages().into_iter().take(3) {
        assert!(age >= lifetime - lifetime / 40, "closed early: {age:?}");
        assert!(
            age <= lifetime + Duration::from_secs(1),
            "closed late: {age:?}"
        );
    }
    // Replaced, as min_idle (here max_size) requires.
    assert!(eventually(SOON, || {
        let m = pool.metrics();
        m.connections == 3 && m.idle == 3 && m.created >= 6
    }));
}

#[test]
fn a_checked_out_connection_past_its_lifetime_closes_when_returned() {
    let manager = FakeManager::new();
    let lifetime = Duration::from_millis(200);
    let pool = Pool::builder()
        .max_size(1)
        .max_lifetime(Some(lifetime))
        .build(manager.clone())
        .unwrap();
    let held = pool.get().unwrap();
    let id = held.id;
    thread::sleep(lifetime * 2);
    // Still out: the pool does not take it back behind the holder's back.
    assert_eq!(pool.metrics().in_use, 1);
    assert_eq!(manager.script.live(), 1);
    drop(held);
    assert_eq!(pool.metrics().closed_max_lifetime, 1);
    assert!(manager.script.dropped.lock().contains(&id));
    let fresh = pool.get().unwrap();
    assert_ne!(fresh.id, id);
}

#[test]
fn lifetimes_of_connections_opened_together_are_spread_by_the_jitter() {
    let releases = Releases::default();
    let lifetime = Duration::from_secs(4);
    let pool = Pool::builder()
        .max_size(20)
        .max_lifetime(Some(lifetime))
        .event_handler(Box::new(releases.clone()))
        .build(FakeManager::new())
        .unwrap();
    assert!(eventually(lifetime + SOON, || releases.ages().len() >= 20));
    let ages: Vec<Duration> = releases.ages().into_iter().take(20).collect();
    let (shortest, longest) = (ages.iter().min().unwrap(), ages.iter().max().unwrap());
    // Without jitter all 20 would close within the few milliseconds it took to open them.
    assert!(
        *longest - *shortest > lifetime / 100,
        "20 connections expired within 1% of their lifetime: {ages:?}"
    );
    assert!(*shortest >= lifetime - lifetime / 40, "{ages:?}");
    drop(pool);
}

/// Holds the validation of connection `.0` until `.2` gets a message (or closes), after saying
/// so on `.1`.
type Hold = (u64, Sender<()>, Receiver<()>);

/// A manager that logs every `is_valid` by connection, can hold one connection's validation
/// until released, and can fail the validation of chosen connections.
#[derive(Default)]
struct Watched {
    next_id: AtomicU64,
    validations: Mutex<Vec<(u64, Instant)>>,
    failing: Mutex<HashSet<u64>>,
    hold: Mutex<Option<Hold>>,
}

#[derive(Clone, Default)]
struct WatchedManager(Arc<Watched>);

impl ManageConnection for WatchedManager {
    type Connection = u64;
    type Error = FakeError;

    fn connect(&self) -> Result<u64, FakeError> {
        Ok(self.0.next_id.fetch_add(1, Ordering::SeqCst))
    }

    fn is_valid(&self, conn: &mut u64) -> Result<(), FakeError> {
        self.0.validations.lock().push((*conn, Instant::now()));
        let held = self.0.hold.lock().clone();
        if let Some((id, entered, release)) = held {
            if id == *conn {
                let _ = entered.send(());
                let _ = release.recv();
            }
        }
        if self.0.failing.lock().contains(conn) {
            return Err(FakeError::new(format!("connection {conn} is gone")));
        }
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

#[test]
fn keepalive_validates_every_idle_connection_at_least_every_period() {
    let manager = WatchedManager::default();
    let every = Duration::from_millis(100);
    let pool = Pool::builder()
        .max_size(3)
        .test_on_check_out(false)
        .keepalive(Some(every))
        .build(manager.clone())
        .unwrap();
    let start = Instant::now();
    let by_conn = || {
        let mut by_conn: HashMap<u64, Vec<Instant>> = HashMap::new();
        for (id, at) in manager.0.validations.lock().iter() {
            by_conn.entry(*id).or_default().push(*at);
        }
        by_conn
    };
    // Every idle connection validated again and again: five times each (about 500 ms).
    assert!(
        eventually(SOON, || {
            let by_conn = by_conn();
            by_conn.len() == 3 && by_conn.values().all(|times| times.len() >= 5)
        }),
        "{:?}",
        by_conn()
    );
    for (id, times) in &by_conn() {
        // The period is the behaviour, bounded generously: a loaded machine delays the thread.
        let mut last = start;
        for at in times {
            let gap = at.duration_since(last);
            assert!(
                gap <= every * 4,
                "connection {id} went {gap:?} without validation"
            );
            last = *at;
        }
    }
    assert_eq!(pool.metrics().closed_invalid, 0);
}

#[test]
fn a_connection_under_keepalive_is_not_handed_out_and_does_not_block_the_others() {
    let manager = WatchedManager::default();
    let (entered_tx, entered) = crossbeam_channel::bounded(1);
    let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
    let pool = Pool::builder()
        .max_size(3)
        .test_on_check_out(false)
        .keepalive(Some(Duration::from_millis(100)))
        .build(manager.clone())
        .unwrap();
    // Connection 0 is opened first; its next keepalive validation will hang.
    *manager.0.hold.lock() = Some((0, entered_tx, release_rx));
    entered
        .recv_timeout(SOON)
        .expect("keepalive validated connection 0");

    let held = finishes_within(SOON, {
        let pool = pool.clone();
        move || {
            let a = pool.get().unwrap();
            let b = pool.get().unwrap();
            let ids = [*a, *b];
            // Connection 0 is neither idle nor handed out while it is being validated.
            assert!(pool.try_get().is_none());
            drop((a, b));
            ids
        }
    });
    assert!(!held.contains(&0), "{held:?}");
    let m = pool.metrics();
    assert_eq!((m.connections, m.in_use), (3, 0));

    release.send(()).unwrap();
    *manager.0.hold.lock() = None;
    // Back among the idle connections once validated.
    assert!(eventually(SOON, || {
        let guards: Vec<_> = (0..3).filter_map(|_| pool.try_get()).collect();
        guards.iter().any(|c| **c == 0)
    }));
}

#[test]
fn a_connection_failing_keepalive_is_closed_and_replaced() {
    let manager = WatchedManager::default();
    let pool = Pool::builder()
        .max_size(2)
        .test_on_check_out(false)
        .keepalive(Some(Duration::from_millis(50)))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    manager.0.failing.lock().insert(1);
    assert!(eventually(SOON, || pool.metrics().closed_invalid == 1));
    assert!(eventually(SOON, || {
        let m = pool.metrics();
        m.connections == 2 && m.created == 3
    }));
    let ids: HashSet<u64> = [pool.get().unwrap(), pool.get().unwrap()]
        .iter()
        .map(|c| **c)
        .collect();
    assert_eq!(ids, HashSet::from([0, 2]));
}

#[test]
fn both_threads_exit_when_the_pool_is_dropped() {
    if !linux_only("both_threads_exit_when_the_pool_is_dropped", THREAD_NAMES) {
        return;
    }
    let ours = |names: &[String]| {
        names
            .iter()
            .filter(|n| {
                ["sluice-exiting", "sluice-reap-exi", "sluice-keep-exi"].contains(&n.as_str())
            })
            .count()
    };
    let pool = Pool::builder()
        .pool_name("exiting")
        .max_size(2)
        .keepalive(Some(Duration::from_millis(20)))
        .leak_detection_threshold(Some(Duration::from_millis(20)))
        .build(FakeManager::new())
        .unwrap();
    // A thread names itself once it runs, which may be after `build` returns.
    assert!(
        eventually(SOON, || ours(&thread_names()) == 3),
        "{:?}",
        thread_names()
    );
    let held = pool.get().unwrap();
    drop(pool);
    assert!(eventually(SOON, || ours(&thread_names()) == 0));
    drop(held);
}

#[test]
fn threads_exit_when_the_pool_is_closed_even_with_handles_left() {
    if !linux_only(
        "threads_exit_when_the_pool_is_closed_even_with_handles_left",
        THREAD_NAMES,
    ) {
        return;
    }
    let ours = || {
        thread_names()
            .iter()
            .filter(|n| *n == "sluice-closing" || *n == "sluice-reap-clo")
            .count()
    };
    let pool = Pool::builder()
        .pool_name("closing")
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    // Both running first (a thread names itself once it runs): else "none left" proves nothing.
    assert!(eventually(SOON, || ours() == 2), "{:?}", thread_names());
    pool.close();
    assert!(eventually(SOON, || ours() == 0), "{:?}", thread_names());
}

#[test]
fn a_check_out_never_takes_an_expired_connection_even_while_the_reaper_is_busy() {
    let manager = WatchedManager::default();
    let (entered_tx, entered) = crossbeam_channel::bounded(1);
    let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
    *manager.0.hold.lock() = Some((0, entered_tx, release_rx));
    let lifetime = Duration::from_millis(400);
    let pool = Pool::builder()
        .max_size(2)
        .test_on_check_out(false)
        .keepalive(Some(Duration::from_millis(50)))
        .max_lifetime(Some(lifetime))
        .build(manager.clone())
        .unwrap();
    // The reaper is stuck validating connection 0, so it cannot close connection 1 when its
    // lifetime runs out.
    entered
        .recv_timeout(SOON)
        .expect("keepalive validated connection 0");
    thread::sleep(lifetime + lifetime / 2);
    let conn = pool.get().unwrap();
    assert_eq!(
        *conn, 2,
        "the expired connection 1 was closed on check-out, not handed out"
    );
    assert_eq!(pool.metrics().closed_max_lifetime, 1);
    release.send(()).unwrap();
    *manager.0.hold.lock() = None;
}

#[test]
fn slow_keepalive_never_delays_leak_reports_or_the_sweep() {
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .max_size(100)
        .min_idle(Some(20))
        .test_on_check_out(false)
        .keepalive(Some(Duration::from_millis(20)))
        .idle_timeout(Some(Duration::from_millis(300)))
        .leak_detection_threshold(Some(Duration::from_millis(200)))
        .build(manager.clone())
        .unwrap();
    // Open 100, then give back all but one: 80 are beyond min_idle and will time out idle.
    let mut held: Vec<_> = (0..100).map(|_| pool.get_timeout(SOON).unwrap()).collect();
    let leaked = held.pop().unwrap();
    drop(held);
    // A server that answers each keepalive in 300 ms: a pass over the idle ones takes 30 s.
    manager.script.slow_validation(Duration::from_millis(300));
    // The reaper is not the keepalive thread: the leak is reported, and idle connections time
    // out, on their own schedule.
    assert!(eventually(Duration::from_secs(3), || pool
        .metrics()
        .leaks_detected
        == 1));
    assert!(eventually(Duration::from_secs(3), || {
        pool.metrics().closed_idle_timeout >= 70
    }));
    manager.script.slow_validation(Duration::ZERO);
    drop(leaked);
}
