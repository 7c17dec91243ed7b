//! Snapshots of a pool: [`State`] (r2d2's two gauges) and [`Metrics`] (every gauge and
//! counter).

use std::time::Duration;

#[cfg(feature = "metrics")]
pub(crate) mod publish;

/// The pool's size at one moment, as r2d2 reports it.
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let pool = sluicegate::Pool::builder().max_size(3).build(Manager)?;
/// let _conn = pool.get()?;
/// let state = pool.state();
/// assert_eq!((state.connections, state.idle_connections), (3, 2));
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct State {
    /// Open connections: idle plus checked out.
    pub connections: u32,
    /// Connections ready to be checked out.
    pub idle_connections: u32,
}

/// Everything a pool counts, at one moment. Gauges say how things are now; counters only grow,
/// from the pool's start. Every figure but `leaks_detected` (the leak detector's, read just
/// after) is taken under the pool's lock in one go, so they agree: `connections == idle +
/// in_use`, `connections + opening + closing <= max_size` (once connections out beyond a
/// lowered `max_size` have come back), and `created == connections + closed() + detached`.
///
/// # Publishing (feature `metrics`)
///
/// With the feature `metrics`, every pool publishes these through the
/// [`metrics`](https://docs.rs/metrics) facade, to whatever recorder the application installed
/// (Prometheus, StatsD, OpenTelemetry), each series labelled `pool` with the pool's name:
///
/// | name | kind | what |
/// |---|---|---|
/// | `sluicegate_connections` | gauge | open connections, idle and in use |
/// | `sluicegate_connections_idle` | gauge | connections ready to be checked out |
/// | `sluicegate_connections_in_use` | gauge | connections checked out |
/// | `sluicegate_connections_max` | gauge | `max_size` |
/// | `sluicegate_waiting_threads` | gauge | threads waiting for a connection |
/// | `sluicegate_checkouts_total` | counter | connections handed out |
/// | `sluicegate_timeouts_total` | counter | check-outs that gave up waiting |
/// | `sluicegate_connections_created_total` | counter | connections opened |
/// | `sluicegate_connect_failures_total` | counter | connects that failed |
/// | `sluicegate_connections_closed_total` | counter | connections closed, by label `reason`: `broken`, `invalid`, `max_lifetime`, `idle_timeout`, `evicted`, `shutdown`, `shrunk` |
/// | `sluicegate_leaks_total` | counter | connections reported as leaked |
/// | `sluicegate_wait_seconds` | histogram | how long each check-out took to get its connection (0 when one was idle and needed no check) |
/// | `sluicegate_usage_seconds` | histogram | how long each connection was held, check-out to return |
/// | `sluicegate_connect_seconds` | histogram | how long each successful connect took, customizer included |
///
/// The reaper thread copies the gauges and counters out of this snapshot at least once a second
/// (counters with `absolute`, so nothing is counted twice) and once more when the pool closes,
/// at no cost to the check-out path. Histograms are recorded as things happen: each check-out
/// reads the precise clock at both ends (about 50 ns each) and records two samples. Install the
/// recorder before building pools: a histogram is bound to the recorder present then (gauges
/// and counters are looked up on every publication). With `metrics-exporter-prometheus`, give
/// the `sluicegate_*_seconds` series buckets
/// (`set_buckets_for_metric(Matcher::Prefix("sluicegate_".into()), ..)`) so that they render
/// as Prometheus histograms, which add up across instances (`examples/http_server.rs` does).
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
/// sluicegate::PooledConnection::mark_broken(&mut pool.get()?);
/// let m = pool.metrics();
/// assert_eq!((m.checkouts, m.closed_broken), (1, 1));
/// assert_eq!(m.created, u64::from(m.connections) + m.closed() + m.detached);
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Gauge: the configured most connections.
    pub max_size: u32,
    /// Gauge: open connections, idle plus in use.
    pub connections: u32,
    /// Gauge: connections ready to be checked out.
    pub idle: u32,
    /// Gauge: connections checked out (or handed to a waiting thread that is waking up).
    pub in_use: u32,
    /// Gauge: threads waiting for a connection.
    pub waiting: u32,
    /// Gauge: connections being opened by the pool's opener thread.
    pub opening: u32,
    /// Gauge: connections the pool has decided to close that are still closing. They count
    /// toward `max_size` until they are gone, so the database never sees more than `max_size`.
    pub closing: u32,
    /// Counter: successful check-outs.
    pub checkouts: u64,
    /// Counter: check-outs that had to wait for a connection.
    pub waited: u64,
    /// Counter: total time check-outs spent waiting.
    pub wait_time: Duration,
    /// Counter: check-outs that timed out.
    pub timeouts: u64,
    /// Counter: connections opened.
    pub created: u64,
    /// Counter: failed connects (errors, customizer errors and panics).
    pub connect_failures: u64,
    /// Counter: connections closed because `has_broken` said so, `mark_broken` was called, or
    /// they were dropped while their thread was panicking.
    pub closed_broken: u64,
    /// Counter: connections closed because `is_valid` failed.
    pub closed_invalid: u64,
    /// Counter: connections closed because they outlived `max_lifetime`.
    pub closed_max_lifetime: u64,
    /// Counter: connections closed because they sat idle longer than `idle_timeout`.
    pub closed_idle_timeout: u64,
    /// Counter: connections closed by [`Pool::evict_all`](crate::Pool::evict_all).
    pub closed_evicted: u64,
    /// Counter: connections closed because the pool was closed.
    pub closed_shutdown: u64,
    /// Counter: connections closed because [`Pool::set_max_size`](crate::Pool::set_max_size)
    /// lowered `max_size` below the connections open.
    pub closed_shrunk: u64,
    /// Counter: connections taken out of the pool with
    /// [`PooledConnection::detach`](crate::PooledConnection::detach).
    pub detached: u64,
    /// Counter: check-outs reported as leaks, each once: logged by the reaper after
    /// `leak_detection_threshold`, or put in an [`assert_no_leaks`](crate::Pool::assert_no_leaks)
    /// panic. Always 0 with leak detection off.
    pub leaks_detected: u64,
}

impl Metrics {
    /// All connections the pool has closed, for whatever reason.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
    /// pool.close();
    /// assert_eq!(pool.metrics().closed(), 2);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn closed(&self) -> u64 {
        self.closed_broken
            + self.closed_invalid
            + self.closed_max_lifetime
            + self.closed_idle_timeout
            + self.closed_evicted
            + self.closed_shutdown
            + self.closed_shrunk
    }
}
