//! What a pool publishes through the `metrics` facade (feature `metrics`), seen by a recorder
//! installed the way an application installs its exporter: globally, before any pool.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use parking_lot::Mutex;
use sluicegate::{NopErrorHandler, Pool, PooledConnection};

use common::{FakeManager, SOON, eventually};

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Keeps every value each series was given.
#[derive(Default)]
struct Capture {
    counters: Mutex<HashMap<Series, Arc<Cell>>>,
    gauges: Mutex<HashMap<Series, Arc<Cell>>>,
    histograms: Mutex<HashMap<Series, Arc<Samples>>>,
}

/// A counter's or a gauge's value (a gauge's as `f64` bits).
#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::SeqCst);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, _: f64) {
        unimplemented!("the pool sets its gauges")
    }

    fn decrement(&self, _: f64) {
        unimplemented!("the pool sets its gauges")
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().push(value);
    }
}

fn series(key: &Key) -> Series {
    let mut labels: Vec<_> = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.counters.lock().entry(series(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.gauges.lock().entry(series(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(
            self.histograms
                .lock()
                .entry(series(key))
                .or_default()
                .clone(),
        )
    }
}

/// The recorder, installed once for the whole test binary.
fn recorder() -> &'static Capture {
    static INSTALLED: OnceLock<&'static Capture> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        metrics::set_global_recorder(capture).expect("no other recorder in this binary");
        capture
    })
}

fn labels(pool: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<_> = [("pool", pool)]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

fn counter(pool: &str, name: &str, extra: &[(&str, &str)]) -> Option<u64> {
    let key = (name.to_owned(), labels(pool, extra));
    let counters = recorder().counters.lock();
    counters.get(&key).map(|c| c.0.load(Ordering::SeqCst))
}

fn gauge(pool: &str, name: &str) -> Option<f64> {
    let key = (name.to_owned(), labels(pool, &[]));
    let gauges = recorder().gauges.lock();
    gauges
        .get(&key)
        .map(|g| f64::from_bits(g.0.load(Ordering::SeqCst)))
}

fn samples(pool: &str, name: &str) -> Vec<f64> {
    let key = (name.to_owned(), labels(pool, &[]));
    let histograms = recorder().histograms.lock();
    histograms
        .get(&key)
        .map(|h| h.0.lock().clone())
        .unwrap_or_default()
}

#[test]
fn every_documented_series_is_published_with_the_pools_name() {
    recorder();
    let name = "metrics-every-series";
    let manager = FakeManager::new();
    let pool = Pool::builder()
        .pool_name(name)
        .max_size(2)
        .error_handler(Box::new(NopErrorHandler))
        .build(manager)
        .unwrap();
    for _ in 0..3 {
        drop(pool.get().unwrap());
    }
    let held = pool.get().unwrap();
    let mut broken = pool.get().unwrap();
    let err = pool.get_timeout(Duration::from_millis(20)).err().unwrap();
    assert!(err.is_timeout());
    PooledConnection::mark_broken(&mut broken);
    drop(broken);
    drop(held);
    // The broken connection's replacement is opened on the pool's thread: let it arrive, so
    // that no connect is under way (its sample recorded, its count not yet) when the pool's
    // numbers are read and published.
    assert!(eventually(SOON, || {
        let m = pool.metrics();
        m.opening == 0 && m.connections == 2
    }));
    let m = pool.metrics();
    pool.close();

    let count = |series| counter(name, series, &[]);
    assert_eq!(count("sluicegate_checkouts_total"), Some(5));
    assert_eq!(count("sluicegate_timeouts_total"), Some(1));
    assert_eq!(
        count("sluicegate_connections_created_total"),
        Some(m.created)
    );
    assert_eq!(count("sluicegate_connect_failures_total"), Some(0));
    assert_eq!(count("sluicegate_leaks_total"), Some(0));
    let closed = |reason| {
        counter(
            name,
            "sluicegate_connections_closed_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(closed("broken"), Some(1));
    // Closing the pool closed the idle ones, counted before its last publication.
    assert_eq!(closed("shutdown"), Some(m.connections.into()));
    for reason in ["invalid", "max_lifetime", "idle_timeout", "evicted"] {
        assert_eq!(closed(reason), Some(0), "{reason}");
    }
    assert_eq!(gauge(name, "sluicegate_connections_max"), Some(2.0));
    assert_eq!(gauge(name, "sluicegate_connections"), Some(0.0));
    for series in [
        "sluicegate_connections_idle",
        "sluicegate_connections_in_use",
        "sluicegate_waiting_threads",
    ] {
        assert_eq!(gauge(name, series), Some(0.0), "{series}");
    }

    // One sample per check-out, per return, per connect.
    let waits = samples(name, "sluicegate_wait_seconds");
    assert_eq!(waits.len(), 5);
    assert!(waits.iter().all(|w| *w >= 0.0 && *w < 10.0), "{waits:?}");
    let usage = samples(name, "sluicegate_usage_seconds");
    assert_eq!(usage.len(), 5);
    let connects = samples(name, "sluicegate_connect_seconds");
    assert_eq!(connects.len() as u64, m.created);
}

#[test]
fn a_live_pools_gauges_follow_it_without_a_call() {
    recorder();
    let name = "metrics-live-gauges";
    let pool = Pool::builder()
        .pool_name(name)
        .max_size(3)
        .build(FakeManager::new())
        .unwrap();
    let held = [pool.get().unwrap(), pool.get().unwrap()];
    assert!(
        eventually(SOON, || gauge(name, "sluicegate_connections_in_use")
            == Some(2.0)),
        "in use: {:?}",
        gauge(name, "sluicegate_connections_in_use")
    );
    assert_eq!(gauge(name, "sluicegate_connections"), Some(3.0));
    drop(held);
    assert!(eventually(SOON, || {
        gauge(name, "sluicegate_connections_idle") == Some(3.0)
            && counter(name, "sluicegate_checkouts_total", &[]) == Some(2)
    }));
}

#[test]
fn a_check_out_that_waits_records_its_wait() {
    recorder();
    let name = "metrics-wait";
    let pool = Pool::builder()
        .pool_name(name)
        .max_size(1)
        .build(FakeManager::new())
        .unwrap();
    let held = pool.get().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(0);
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            tx.send(()).unwrap();
            drop(pool.get_timeout(SOON).unwrap());
        })
    };
    rx.recv().unwrap();
    // Time is the behaviour here: the waiter waits at least this long.
    assert!(eventually(SOON, || pool.metrics().waiting == 1));
    std::thread::sleep(Duration::from_millis(30));
    drop(held);
    waiter.join().unwrap();
    let waits = samples(name, "sluicegate_wait_seconds");
    assert_eq!(waits.len(), 2);
    assert!(
        waits.iter().any(|w| *w >= 0.025),
        "the waiter's wait is in the histogram: {waits:?}"
    );
}
