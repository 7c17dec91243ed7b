//! Leak detection: what a check-out records when `leak_detection_threshold` is set, how the
//! pool finds the check-outs held too long, and how a [`Leak`] prints.
//!
//! ```
//! # let pool = sluicegate::doc_fixture::leak_checked_pool()?; // threshold zero
//! let conn = pool.get()?;
//! for leak in pool.leaks() {
//!     println!("{leak}"); // where `conn` was borrowed, by which thread, and the stack
//! }
//! # Ok::<(), sluicegate::Error>(())
//! ```
//!
//! Invariants: the tracker holds one record per connection currently checked out (keyed by
//! connection id, removed when the connection comes back or is detached), and each record is
//! reported (logged, or put in an `assert_no_leaks` panic) and counted at most once.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::human::Human;

pub use crate::backtrace::{Backtrace, Frame};

/// A check-out held longer than the pool's `leak_detection_threshold`: which connection, for
/// how long, on which thread, and where it was borrowed.
///
/// Its `Display` prints all of it, the backtrace of the check-out included, starting with the
/// function that called [`Pool::get`](crate::Pool::get) (or one of its siblings).
///
/// ```
/// # let pool = sluicegate::doc_fixture::leak_checked_pool()?; // leak threshold zero
/// let conn = pool.get()?;
/// println!("{}", pool.leaks()[0]); // where `conn` was borrowed, and the backtrace
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Clone)]
pub struct Leak {
    pool: Arc<str>,
    connection_id: u64,
    held_for: Duration,
    threshold: Duration,
    record: Arc<Record>,
}

impl Leak {
    /// The leaked connection's id (as in [`PooledConnection::id`](crate::PooledConnection::id)
    /// and the pool's events).
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// assert_eq!(pool.leaks()[0].connection_id(), sluicegate::PooledConnection::id(&conn));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// How long the connection had been checked out when this leak was found.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// std::thread::sleep(Duration::from_millis(5));
    /// assert!(pool.leaks()[0].held_for() >= Duration::from_millis(5));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn held_for(&self) -> Duration {
        self.held_for
    }

    /// The name of the thread that checked the connection out, if it has one.
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// println!("borrowed by {:?}", pool.leaks()[0].thread_name());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn thread_name(&self) -> Option<&str> {
        self.record.thread_name.as_deref()
    }

    /// Where in the source the connection was checked out: the caller of
    /// [`Pool::get`](crate::Pool::get) or one of its siblings. Known even in a binary without
    /// symbols.
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?; let line = line!();
    /// assert_eq!(pool.leaks()[0].location().line(), line);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn location(&self) -> &'static Location<'static> {
        self.record.location
    }

    /// The stack of the thread when it checked the connection out.
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// println!("{}", pool.leaks()[0].backtrace());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn backtrace(&self) -> &Backtrace {
        &self.record.trace
    }

    /// The name of the pool the connection belongs to.
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// assert_eq!(pool.leaks()[0].pool(), pool.name());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn pool(&self) -> &str {
        &self.pool
    }
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = &self.record;
        write!(
            f,
            "connection {} of pool {:?} has been checked out for {}",
            self.connection_id,
            self.pool,
            Human(self.held_for),
        )?;
        if !self.threshold.is_zero() {
            write!(f, " (leak detection threshold {})", Human(self.threshold))?;
        }
        f.write_str(" by ")?;
        match &record.thread_name {
            Some(name) => write!(f, "thread {name:?}")?,
            None => write!(f, "an unnamed thread ({:?})", record.thread_id)?,
        }
        write!(f, "; borrowed at {}", record.location)?;
        if let Some(function) = record.trace.borrower().and_then(Frame::function) {
            write!(f, " in {function}")?;
        }
        write!(f, "\nbacktrace of the check-out:\n{}", record.trace)
    }
}

impl fmt::Debug for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leak")
            .field("pool", &self.pool)
            .field("connection_id", &self.connection_id)
            .field("held_for", &self.held_for)
            .field("thread_name", &self.record.thread_name)
            .field("location", &self.record.location)
            .finish_non_exhaustive()
    }
}

/// What a check-out recorded.
struct Record {
    since: Instant,
    thread_name: Option<String>,
    thread_id: ThreadId,
    location: &'static Location<'static>,
    trace: Backtrace,
}

/// A check-out in progress.
struct Borrow {
    record: Arc<Record>,
    reported: bool,
}

/// The check-outs in progress, and when the pool's reaper will next look at them.
struct Borrows {
    by_connection: HashMap<u64, Borrow>,
    /// When the reaper plans to look for leaks next (`None`: it has not planned yet). Once
    /// planned, it is never later than a threshold after the reaper last looked, so a new
    /// check-out (due a threshold after now) never needs to wake it.
    scan_at: Option<Instant>,
}

/// A pool's leak detector: one per pool with a `leak_detection_threshold`.
pub(crate) struct Tracker {
    pool: Arc<str>,
    threshold: Duration,
    borrows: Mutex<Borrows>,
    detected: AtomicU64,
}

/// A leak that came back to the pool after it was reported: for the `info` line.
pub(crate) struct Returned {
    connection_id: u64,
    held_for: Duration,
    threshold: Duration,
    location: &'static Location<'static>,
}

impl fmt::Display for Returned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {} (borrowed at {}), reported as leaked after {}, came back after {}",
            self.connection_id,
            self.location,
            Human(self.threshold),
            Human(self.held_for),
        )
    }
}

impl Tracker {
    pub(crate) fn new(pool: Arc<str>, threshold: Duration) -> Tracker {
        Tracker {
            pool,
            threshold,
            borrows: Mutex::new(Borrows {
                by_connection: HashMap::new(),
                scan_at: None,
            }),
            detected: AtomicU64::new(0),
        }
    }

    /// Whether this is the test-suite mode (`Some(Duration::ZERO)`): every check-out in
    /// progress is a leak when asked, and nothing is reported in the background (it would
    /// report every check-out).
    fn asks_only(&self) -> bool {
        self.threshold.is_zero()
    }

    /// Records a check-out of `connection_id` by the calling thread. Returns whether the
    /// reaper must be woken to watch it (it was watching nothing).
    #[inline(never)]
    pub(crate) fn borrowed(
        &self,
        connection_id: u64,
        location: &'static Location<'static>,
    ) -> bool {
        let trace = Backtrace::capture();
        let current = thread::current();
        let record = Arc::new(Record {
            since: Instant::now(),
            thread_name: current.name().map(str::to_owned),
            thread_id: current.id(),
            location,
            trace,
        });
        let due = record.since.checked_add(self.threshold);
        let mut borrows = self.borrows.lock();
        borrows.by_connection.insert(
            connection_id,
            Borrow {
                record,
                reported: false,
            },
        );
        if self.asks_only() {
            return false;
        }
        match (borrows.scan_at, due) {
            (Some(at), Some(due)) if at <= due => false,
            (_, None) => false,
            (_, due) => {
                borrows.scan_at = due;
                true
            }
        }
    }

    /// `connection_id` came back (or was detached). If it had been reported, says so.
    pub(crate) fn returned(&self, connection_id: u64) -> Option<Returned> {
        let borrow = self.borrows.lock().by_connection.remove(&connection_id)?;
        borrow.reported.then(|| Returned {
            connection_id,
            held_for: borrow.record.since.elapsed(),
            threshold: self.threshold,
            location: borrow.record.location,
        })
    }

    /// The check-outs held at least as long as the threshold, longest first.
    pub(crate) fn leaks(&self) -> Vec<Leak> {
        let now = Instant::now();
        let borrows = self.borrows.lock();
        let mut leaks: Vec<Leak> = borrows
            .by_connection
            .iter()
            .filter_map(|(&id, borrow)| self.leak(id, &borrow.record, now))
            .collect();
        drop(borrows);
        leaks.sort_by_key(|leak| std::cmp::Reverse(leak.held_for));
        leaks
    }

    fn leak(&self, connection_id: u64, record: &Arc<Record>, now: Instant) -> Option<Leak> {
        let held_for = now.saturating_duration_since(record.since);
        (held_for >= self.threshold).then(|| Leak {
            pool: self.pool.clone(),
            connection_id,
            held_for,
            threshold: self.threshold,
            record: record.clone(),
        })
    }

    /// Counts `leaks` as reported, those not reported before.
    pub(crate) fn report(&self, leaks: &[Leak]) {
        let mut borrows = self.borrows.lock();
        let mut fresh = 0;
        for leak in leaks {
            if let Some(borrow) = borrows.by_connection.get_mut(&leak.connection_id) {
                if Arc::ptr_eq(&borrow.record, &leak.record) && !borrow.reported {
                    borrow.reported = true;
                    fresh += 1;
                }
            }
        }
        drop(borrows);
        self.detected.fetch_add(fresh, Ordering::Relaxed);
    }

    /// For the reaper, in a round that started at `start`: the check-outs that crossed the
    /// threshold since it last looked (now counted as reported), and when it should look next.
    pub(crate) fn scan(&self, start: Instant) -> (Vec<Leak>, Option<Instant>) {
        if self.asks_only() {
            return (Vec::new(), None);
        }
        let now = Instant::now();
        let mut borrows = self.borrows.lock();
        let mut found = Vec::new();
        // Looking again a threshold after the round started covers every check-out that
        // starts meanwhile, so that none of them has to wake the reaper.
        let mut next: Option<Instant> = start.checked_add(self.threshold);
        for (&id, borrow) in &mut borrows.by_connection {
            if borrow.reported {
                continue;
            }
            match self.leak(id, &borrow.record, now) {
                Some(leak) => {
                    borrow.reported = true;
                    found.push(leak);
                }
                None => {
                    let due = borrow.record.since.checked_add(self.threshold);
                    next = crate::clock::earliest(next, due);
                }
            }
        }
        borrows.scan_at = next;
        drop(borrows);
        self.detected
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        found.sort_by_key(|leak| std::cmp::Reverse(leak.held_for));
        (found, next)
    }

    pub(crate) fn detected(&self) -> u64 {
        self.detected.load(Ordering::Relaxed)
    }

    pub(crate) fn threshold(&self) -> Duration {
        self.threshold
    }
}
