//! Publishing a pool's numbers through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): the series, and how they are published, are documented on [`Metrics`].

use std::time::Duration;

use metrics::{Histogram, counter, gauge, histogram};

use super::Metrics;

/// How often, at most, the reaper lets the published gauges and counters go stale.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// A pool's histograms, registered once with the recorder present when it was built.
pub(crate) struct Histograms {
    wait: Histogram,
    usage: Histogram,
    connect: Histogram,
}

impl Histograms {
    pub(crate) fn new(pool: &str) -> Histograms {
        Histograms {
            wait: histogram!("sluicegate_wait_seconds", "pool" => pool.to_owned()),
            usage: histogram!("sluicegate_usage_seconds", "pool" => pool.to_owned()),
            connect: histogram!("sluicegate_connect_seconds", "pool" => pool.to_owned()),
        }
    }

    pub(crate) fn waited(&self, wait: Duration) {
        self.wait.record(wait.as_secs_f64());
    }

    pub(crate) fn used(&self, usage: Duration) {
        self.usage.record(usage.as_secs_f64());
    }

    pub(crate) fn connected(&self, took: Duration) {
        self.connect.record(took.as_secs_f64());
    }
}

/// Copies a snapshot's gauges and counters out to the recorder.
pub(crate) fn publish(pool: &str, m: &Metrics) {
    let pool = pool.to_owned();
    let gauges = [
        ("sluicegate_connections", m.connections),
        ("sluicegate_connections_idle", m.idle),
        ("sluicegate_connections_in_use", m.in_use),
        ("sluicegate_connections_max", m.max_size),
        ("sluicegate_waiting_threads", m.waiting),
    ];
    for (name, value) in gauges {
        gauge!(name, "pool" => pool.clone()).set(value);
    }
    let counters = [
        ("sluicegate_checkouts_total", m.checkouts),
        ("sluicegate_timeouts_total", m.timeouts),
        ("sluicegate_connections_created_total", m.created),
        ("sluicegate_connect_failures_total", m.connect_failures),
        ("sluicegate_leaks_total", m.leaks_detected),
    ];
    for (name, value) in counters {
        counter!(name, "pool" => pool.clone()).absolute(value);
    }
    let closed = [
        ("broken", m.closed_broken),
        ("invalid", m.closed_invalid),
        ("max_lifetime", m.closed_max_lifetime),
        ("idle_timeout", m.closed_idle_timeout),
        ("evicted", m.closed_evicted),
        ("shutdown", m.closed_shutdown),
        ("shrunk", m.closed_shrunk),
    ];
    for (reason, value) in closed {
        counter!("sluicegate_connections_closed_total", "pool" => pool.clone(), "reason" => reason)
            .absolute(value);
    }
}
