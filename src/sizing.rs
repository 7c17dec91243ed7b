//! How big should a pool be? Small pure functions for the three questions that settle it:
//! what the server can give ([`per_instance`], a ceiling: going above it makes connects fail
//! under load), what the workload needs ([`for_workload`]), and what the server can use well
//! ([`rule_of_thumb`]: past it, more connections only queue inside the database instead of in
//! the pool, where sluicegate serves waiters in order and can tell you how long they waited).
//! Size the pool to the work, not to the thread count: threads beyond `max_size` wait in line.
//!
//! Take the workload's need, keep it under the server's share and near the rule of thumb, then
//! watch [`Metrics`](crate::Metrics): a pool whose check-outs often wait (`waited`,
//! `wait_time`) while the database has headroom is too small; one whose connections sit idle
//! most of the time can shrink, or set `min_idle` and `idle_timeout`.
//!
//! ```
//! use sluicegate::sizing;
//! // 4 instances of a service, each with 32 request threads spending 25% of their time in
//! // queries, against a PostgreSQL with max_connections = 100 and 3 superuser slots.
//! let need = sizing::for_workload(32, 0.25);
//! let ceiling = sizing::per_instance(100, 3, 4).expect("the server has room for 4 instances");
//! let size = need.min(ceiling);
//! assert_eq!((need, ceiling, size), (8, 19, 8));
//! // Then: sluicegate::Pool::builder().max_size(size)
//! ```

/// The share of the server's connections [`per_instance`] hands out: 80%, the rest left for
/// migrations, consoles, monitoring and deploys that briefly run old and new instances side by
/// side.
///
/// ```
/// let budget = (100.0 * sluicegate::sizing::DEFAULT_SHARE) as u32; // of max_connections = 100
/// assert_eq!(budget, 80);
/// ```
pub const DEFAULT_SHARE: f64 = 0.8;

/// The largest pool each of `instances` can have so that all of them together stay within
/// [`DEFAULT_SHARE`] of the server's `max_connections`, after the `reserved` connections only
/// administrators may use (PostgreSQL's `superuser_reserved_connections` plus
/// `reserved_connections`; MySQL and MariaDB keep one extra for a `SUPER` user, so pass 0
/// there or what your operators keep for themselves).
///
/// Returns `None` when the share cannot give every instance even one connection.
///
/// # Examples
///
/// ```
/// use sluicegate::sizing;
/// // PostgreSQL's defaults: max_connections = 100, 3 reserved for superusers.
/// assert_eq!(sizing::per_instance(100, 3, 1), Some(77));
/// assert_eq!(sizing::per_instance(100, 3, 4), Some(19));
/// assert_eq!(sizing::per_instance(100, 3, 200), None);
/// ```
#[must_use]
pub fn per_instance(max_connections: u32, reserved: u32, instances: u32) -> Option<u32> {
    per_instance_with_share(max_connections, reserved, instances, DEFAULT_SHARE)
}

/// [`per_instance`] with a share of your own choosing, between 0 and 1.
///
/// # Panics
///
/// If `share` is not within `0.0..=1.0` (a NaN included): that is a mistake in the caller,
/// not a sizing question.
///
/// # Examples
///
/// ```
/// use sluicegate::sizing;
/// // A server that only serves this service, 500 connections, 10 kept for operators.
/// assert_eq!(sizing::per_instance_with_share(500, 10, 6, 0.95), Some(77));
/// ```
#[must_use]
pub fn per_instance_with_share(
    max_connections: u32,
    reserved: u32,
    instances: u32,
    share: f64,
) -> Option<u32> {
    assert!(
        (0.0..=1.0).contains(&share),
        "share must be between 0 and 1, not {share}"
    );
    let usable = f64::from(max_connections.saturating_sub(reserved)) * share;
    // Truncation is the point: a fraction of a connection cannot be handed out. The value is
    // at most `u32::MAX`, since `share` is at most 1.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let usable = usable.floor() as u32;
    match usable.checked_div(instances) {
        Some(0) | None => None,
        Some(each) => Some(each),
    }
}

/// The connections a workload keeps busy: `threads` that may use the pool at once, each
/// spending `fraction_in_database` of its time inside queries (and transactions), rounded up,
/// and at least 1. A request thread that spends 2 ms of a 10 ms request in queries keeps a
/// connection busy 20% of the time.
///
/// Measure the fraction rather than guess it: sample [`Metrics::in_use`](crate::Metrics) under
/// a realistic load with a pool as large as the thread count, and divide its average by the
/// threads; or compare the database's per-query timings with request times.
///
/// # Panics
///
/// If `fraction_in_database` is not within `0.0..=1.0` (a NaN included).
///
/// # Examples
///
/// ```
/// use sluicegate::sizing;
/// // A thread-per-request server with 64 threads spending 15% of each request in queries.
/// assert_eq!(sizing::for_workload(64, 0.15), 10);
/// // A CLI tool whose 8 workers do nothing but queries.
/// assert_eq!(sizing::for_workload(8, 1.0), 8);
/// ```
#[must_use]
pub fn for_workload(threads: u32, fraction_in_database: f64) -> u32 {
    assert!(
        (0.0..=1.0).contains(&fraction_in_database),
        "fraction_in_database must be between 0 and 1, not {fraction_in_database}"
    );
    // Rounding up, since a connection short means a thread waiting. Bounded by `threads`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let busy = (f64::from(threads) * fraction_in_database).ceil() as u32;
    busy.max(1)
}

/// HikariCP's starting point for the connections one database server uses well: its `cores`
/// x 2 + its disks' `spindles` (0 for SSDs, or when the working set fits in memory). It is for
/// the server's cores, not the client's, and for every client of that server together.
///
/// ```
/// use sluicegate::sizing;
/// // An 8-core server on SSDs: about 16 connections in all do the most work.
/// assert_eq!(sizing::rule_of_thumb(8, 0), 16); // in all: split it among the instances
/// ```
#[must_use]
pub fn rule_of_thumb(cores: u32, spindles: u32) -> u32 {
    cores.saturating_mul(2).saturating_add(spindles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_instance_never_hands_out_more_than_the_share() {
        for max in [1, 10, 100, 151, 500, 10_000] {
            for reserved in [0, 3, 10] {
                for instances in 1..20 {
                    if let Some(each) = per_instance(max, reserved, instances) {
                        assert!(each >= 1);
                        let total = f64::from(each) * f64::from(instances);
                        let budget = f64::from(max.saturating_sub(reserved)) * DEFAULT_SHARE;
                        assert!(total <= budget, "{max} {reserved} {instances}: {each}");
                    }
                }
            }
        }
    }

    #[test]
    fn per_instance_refuses_when_nothing_is_left() {
        assert_eq!(per_instance(3, 3, 1), None);
        assert_eq!(per_instance(2, 5, 1), None);
        assert_eq!(per_instance(100, 0, 0), None);
        assert_eq!(per_instance_with_share(100, 0, 1, 0.0), None);
        assert_eq!(per_instance_with_share(u32::MAX, 0, 1, 1.0), Some(u32::MAX));
    }

    #[test]
    #[should_panic(expected = "share must be between 0 and 1")]
    fn a_share_above_one_is_a_mistake() {
        let _ = per_instance_with_share(100, 0, 1, 1.5);
    }

    #[test]
    fn for_workload_rounds_up_and_never_says_zero() {
        assert_eq!(for_workload(10, 0.01), 1);
        assert_eq!(for_workload(10, 0.0), 1);
        assert_eq!(for_workload(10, 0.31), 4);
        assert_eq!(for_workload(u32::MAX, 1.0), u32::MAX);
    }

    #[test]
    #[should_panic(expected = "fraction_in_database must be between 0 and 1")]
    fn a_nan_fraction_is_a_mistake() {
        let _ = for_workload(10, f64::NAN);
    }

    #[test]
    fn rule_of_thumb_saturates() {
        assert_eq!(rule_of_thumb(4, 1), 9);
        assert_eq!(rule_of_thumb(u32::MAX, 1), u32::MAX);
    }
}
