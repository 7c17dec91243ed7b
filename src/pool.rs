//! [`Pool`] and [`PooledConnection`]: the public face. The work happens in [`crate::core`].
//!
//! A `Pool` is a handle to a `Handle`; when the last `Pool` goes, the pool closes, even if
//! guards are still out: they reach the pool through their connection's owner, not through
//! a handle, and close their connection when it comes back.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{Builder, Config, Settings};
use crate::core::{Core, Loan, NoWait, Owner, Queue};
use crate::error::{Error, Kind};
use crate::extensions::Extensions;
use crate::leak::Leak;
use crate::manager::ManageConnection;
use crate::metrics::{Metrics, State};
use crate::state::Conn;
use crate::worker::{keepalive, opener, reaper};

/// The getters of the settings that do not change while a pool runs: each returns the setting
/// as built, under the name of the builder's setter.
macro_rules! settings {
    ($($name:ident: $ty:ty, $example:literal;)*) => {$(
        #[doc = concat!("The configured [`", stringify!($name), "`](Builder::", stringify!($name), ").")]
        #[doc = concat!(
            "\n```\n# let pool = sluicegate::Pool::new(sluicegate::doc_fixture::Manager).unwrap();\n",
            $example, "\n```",
        )]
        #[must_use]
        pub fn $name(&self) -> $ty {
            self.core().config.settings.$name
        }
    )*};
}

/// A pool of connections, shared by cloning.
///
/// # Fairness
///
/// Check-outs are served strictly first come, first served: when no connection is idle a
/// caller joins a queue, and a connection coming back goes straight to the caller that has
/// waited longest; a thread that returns a connection and asks again goes to the back of the
/// queue. An idle connection is taken at once: the one the calling thread returned last if it
/// is still idle (the thread keeps its server session, as a dedicated connection would:
/// measured, worth 5 to 10% of a `SELECT 1` round trip), else the most recently used, which
/// keeps the set of connections in use small and lets the rest age out.
///
/// # Closing
///
/// The pool closes, as [`Pool::close`] says, on that call or when the last `Pool` handle is
/// dropped.
///
/// # Threads
///
/// Each pool runs two threads, three with keepalive, which hold only a weak reference to it:
/// `sluice-<name>` opens connections, one at a time, when callers outnumber the connections
/// being opened or `min_idle` asks (callers never open connections themselves);
/// `sluice-reap-<name>` closes expired and idle ones, reports leaks and publishes metrics;
/// `sluice-keep-<name>` validates idle connections for keepalive. Apart, so that a connect or a
/// validation hanging on a sick database never delays the others' work. If a reaper round comes
/// more than 1.5 times its planned interval late (the process was starved of CPU or stopped, or
/// a call on its thread blocked), it says so once at `warn`, as timeouts and lifetimes will look
/// odd until it catches up, and at `info` when it has.
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::VecManager as Manager;
/// let pool = sluicegate::Pool::builder().max_size(4).build(Manager)?;
/// let same_pool = pool.clone();
/// std::thread::spawn(move || same_pool.get().expect("a connection").push(7)).join().unwrap();
/// assert_eq!(pool.metrics().checkouts, 1);
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub struct Pool<M>(Arc<Handle<M>>)
where
    M: ManageConnection;

/// What a user's `Pool` handles share; dropping the last one closes the pool.
struct Handle<M>
where
    M: ManageConnection,
{
    core: Arc<Core<M>>,
}

impl<M> Drop for Handle<M>
where
    M: ManageConnection,
{
    fn drop(&mut self) {
        self.core.close();
    }
}

impl<M> Clone for Pool<M>
where
    M: ManageConnection,
{
    fn clone(&self) -> Pool<M> {
        Pool(self.0.clone())
    }
}

impl<M> fmt::Debug for Pool<M>
where
    M: ManageConnection + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.core().config;
        // The sizes as they are now (they change at run time); the rest as built.
        let (max_size, min_idle) = self.core().state.lock().sizes();
        let settings = Settings {
            max_size,
            min_idle,
            ..config.settings
        };
        f.debug_struct("Pool")
            .field("name", &config.name)
            .field("state", &self.state())
            .field("settings", &settings)
            .field("error_handler", &config.error_handler)
            .field("event_handler", &config.event_handler)
            .field("connection_customizer", &config.customizer)
            .field("manager", &self.core().manager)
            .finish()
    }
}

impl<M> Pool<M>
where
    M: ManageConnection,
{
    /// Builds a pool with the default settings and waits for its connections to open.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`] (with the default 30 s `connection_timeout`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::new(Manager)?;
    /// assert_eq!(pool.state().connections, 10);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn new(manager: M) -> Result<Pool<M>, Error> {
        Pool::builder().build(manager)
    }

    /// A [`Builder`] with the default settings.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::<Manager>::builder().max_size(2);
    /// ```
    pub fn builder() -> Builder<M> {
        Builder::new()
    }

    /// Starts a pool with checked settings. If one of its threads cannot start, the pool is
    /// closed and refuses every check-out with that error.
    pub(crate) fn start(config: Config<M::Connection, M::Error>, manager: M) -> Pool<M> {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let (reap, reap_woken) = crossbeam_channel::bounded(1);
        let (keep, keep_woken) = crossbeam_channel::bounded(1);
        let opener_name = format!("sluice-{}", config.name);
        let reaper_name = format!("sluice-reap-{}", config.name);
        let keeper_name = format!("sluice-keep-{}", config.name);
        let keeps_alive = config.settings.keepalive.is_some();
        let core = Arc::new(Core::new(config, manager, wake, reap, keep));
        let weak = Arc::downgrade(&core);
        let spawned = thread::Builder::new()
            .name(opener_name)
            .spawn(move || opener::run(weak, woken))
            .and_then(|_| {
                let weak = Arc::downgrade(&core);
                thread::Builder::new()
                    .name(reaper_name)
                    .spawn(move || reaper::run(weak, reap_woken))
            })
            .and_then(|_| {
                if !keeps_alive {
                    return Ok(());
                }
                let weak = Arc::downgrade(&core);
                thread::Builder::new()
                    .name(keeper_name)
                    .spawn(move || keepalive::run(weak, keep_woken))
                    .map(drop)
            });
        if let Err(err) = spawned {
            let pool = core.config.name.clone();
            core.refuse(Error::new(Kind::Spawn {
                pool,
                reason: err.to_string(),
            }));
            core.wake_opener();
        }
        Pool(Arc::new(Handle { core }))
    }

    /// A pool that never starts: closed, refusing every check-out with `error`.
    pub(crate) fn unusable(
        config: Config<M::Connection, M::Error>,
        manager: M,
        error: Error,
    ) -> Pool<M> {
        let (wake, _) = crossbeam_channel::bounded(1);
        let (reap, _) = crossbeam_channel::bounded(1);
        let (keep, _) = crossbeam_channel::bounded(1);
        let core = Arc::new(Core::new(config, manager, wake, reap, keep));
        core.refuse(error);
        Pool(Arc::new(Handle { core }))
    }

    /// A pool around `core`, with no threads: for `crate::model` only.
    #[cfg(sluicegate_model)]
    pub(crate) fn from_core(core: Arc<Core<M>>) -> Pool<M> {
        Pool(Arc::new(Handle { core }))
    }

    #[inline]
    fn core(&self) -> &Arc<Core<M>> {
        &self.0.core
    }

    /// Checks out a connection, waiting up to the configured
    /// [`connection_timeout`](Builder::connection_timeout).
    ///
    /// # Errors
    ///
    /// A timeout ([`Error::is_timeout`], or [`Error::is_permanent`] when the database refuses
    /// the login), or [`Error::is_closed`] when the pool is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::VecManager as Manager;
    /// let pool = sluicegate::Pool::new(Manager)?;
    /// pool.get()?.push(1);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[track_caller]
    pub fn get(&self) -> Result<PooledConnection<M>, Error> {
        self.get_timeout(self.core().config.settings.connection_timeout)
    }

    /// Checks out a connection, waiting up to `timeout` (of any size: `Duration::MAX` waits
    /// for as long as it takes; `Duration::ZERO` does not wait).
    ///
    /// # Errors
    ///
    /// As [`Pool::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let conn = pool.get_timeout(Duration::from_millis(100))?;
    /// assert!(pool.get_timeout(Duration::from_millis(10)).unwrap_err().is_timeout());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Result<PooledConnection<M>, Error> {
        self.core()
            .check_out(Queue(timeout), Location::caller())
            .map(PooledConnection::new)
    }

    /// Checks out an idle connection if there is one, without waiting (it may still validate
    /// it). Returns `None` when every connection is in use, threads are waiting, or the pool is
    /// closed.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let first = pool.try_get();
    /// assert!(first.is_some() && pool.try_get().is_none());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use = "the connection returns to the pool at once if unused"]
    #[track_caller]
    pub fn try_get(&self) -> Option<PooledConnection<M>> {
        self.core()
            .check_out(NoWait, Location::caller())
            .ok()
            .map(PooledConnection::new)
    }

    /// The pool's size now: open connections and idle ones.
    ///
    /// ```
    /// # let pool = sluicegate::Pool::new(sluicegate::doc_fixture::Manager).unwrap();
    /// assert_eq!(pool.state().idle_connections, 10);
    /// ```
    #[must_use]
    pub fn state(&self) -> State {
        self.core().state.lock().state()
    }

    /// Every gauge and counter of the pool, taken at one moment.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
    /// let conn = pool.get()?;
    /// let m = pool.metrics();
    /// assert_eq!((m.in_use, m.idle, m.checkouts, m.created), (1, 1, 1, 2));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.core().metrics()
    }

    /// The connections checked out for at least the
    /// [`leak_detection_threshold`](Builder::leak_detection_threshold), longest first (empty when
    /// it is off). Asking does not count them in `leaks_detected` (reporting does).
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?; // leak threshold zero
    /// let held = pool.get()?;
    /// assert_eq!(pool.leaks().len(), 1);
    /// drop(held);
    /// assert!(pool.leaks().is_empty());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn leaks(&self) -> Vec<Leak> {
        self.core()
            .leaks
            .as_ref()
            .map_or_else(Vec::new, |tracker| tracker.leaks())
    }

    /// For test suites (with `leak_detection_threshold(Some(Duration::ZERO))`): call this where
    /// every connection should be back.
    ///
    /// # Panics
    ///
    /// If [`leaks`](Pool::leaks) is not empty, with every leak (where it was borrowed, by which
    /// thread, the backtrace). With leak detection off it never panics (and logs a warning, as
    /// it can check nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::panic::{AssertUnwindSafe, catch_unwind};
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?; // leak threshold zero
    /// drop(pool.get()?);
    /// pool.assert_no_leaks(); // passes: the connection came back
    /// let forgotten = pool.get()?;
    /// let panic = catch_unwind(AssertUnwindSafe(|| pool.assert_no_leaks())).unwrap_err();
    /// assert!(panic.downcast_ref::<String>().unwrap().contains("1 connection leaked"));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        let core = self.core();
        let Some(tracker) = &core.leaks else {
            log_shielded!(
                log::Level::Warn,
                "pool {:?}: assert_no_leaks cannot check anything: leak detection is off (build \
                 the pool with leak_detection_threshold(Some(Duration::ZERO)))",
                core.config.name
            );
            return;
        };
        let leaks = tracker.leaks();
        if leaks.is_empty() {
            return;
        }
        tracker.report(&leaks);
        let threshold = match tracker.threshold() {
            zero if zero.is_zero() => String::new(),
            threshold => format!(" for longer than {}", crate::human::Human(threshold)),
        };
        let mut message = format!(
            "pool {:?}: {} connection{} leaked (still checked out{threshold}):",
            core.config.name,
            leaks.len(),
            if leaks.len() == 1 { "" } else { "s" },
        );
        for leak in &leaks {
            message.push_str("\n\n");
            message.push_str(&leak.to_string());
        }
        panic!("{message}");
    }

    /// Closes the pool (idempotent): waiting and later check-outs fail, idle connections close
    /// now (on this thread), checked-out ones when they come back, and the pool's threads exit.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
    /// let conn = pool.get()?;
    /// pool.close();
    /// assert_eq!(pool.state().connections, 1); // the one still out
    /// drop(conn);
    /// assert_eq!(pool.state().connections, 0);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn close(&self) {
        self.core().close();
    }

    /// A graceful shutdown: closes the pool, as [`close`](Pool::close) does, then waits up to
    /// `timeout` for the checked-out connections to come back (each is closed by the thread
    /// returning it) and for a connect under way to end, and says how that went ([`Drained`]).
    /// Any number of threads may call it at once, and calling it on a closed pool only waits.
    ///
    /// # Examples
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
    /// let conn = pool.get()?;
    /// std::thread::spawn(move || drop(conn)); // a request in flight, finishing
    /// // On SIGTERM: refuse new work, give the requests in flight 10 s.
    /// assert!(pool.close_within(Duration::from_secs(10)).is_complete());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn close_within(&self, timeout: Duration) -> Drained {
        let deadline = Instant::now().checked_add(timeout);
        let (still_out, settling) = self.core().close_within(deadline);
        Drained {
            still_out,
            settling,
        }
    }

    /// Whether the pool is closed.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::new(Manager)?;
    /// assert!(!pool.is_closed());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.core().state.lock().is_shut_down()
    }

    /// Retires every current connection (idle ones now, the others when they come back or
    /// arrive) and refills the pool: for after a failover or a credential rotation.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
    /// let old = sluicegate::PooledConnection::id(&pool.get()?);
    /// pool.evict_all();
    /// let new = pool.get()?;
    /// assert_ne!(sluicegate::PooledConnection::id(&new), old);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn evict_all(&self) {
        self.core().evict_all();
    }

    /// The pool's name, as given to [`Builder::pool_name`] or `pool-N`.
    ///
    /// ```
    /// # let pool = sluicegate::Pool::new(sluicegate::doc_fixture::Manager).unwrap();
    /// assert!(pool.name().starts_with("pool-"));
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.core().config.name
    }

    /// The pool's [`max_size`](Builder::max_size): as built, or as last
    /// [set](Pool::set_max_size).
    ///
    /// ```
    /// # let pool = sluicegate::Pool::new(sluicegate::doc_fixture::Manager).unwrap();
    /// assert_eq!(pool.max_size(), 10);
    /// ```
    #[must_use]
    pub fn max_size(&self) -> u32 {
        self.core().state.lock().sizes().0
    }

    /// Changes [`max_size`](Builder::max_size) while the pool runs. Growing takes effect at
    /// once: the pool opens connections for the threads waiting, served in the order they came,
    /// and for `min_idle`. Shrinking closes idle connections at once (the least recently used
    /// first, on this thread) and the connections beyond the new size as they come back; it
    /// opens none meanwhile. An unset `min_idle` follows the new size; so does the
    /// [`Metrics::max_size`] gauge.
    ///
    /// # Errors
    ///
    /// An error naming `max_size` (and changing nothing) when `max_size` is 0, or below a
    /// `min_idle` that was set explicitly (lower that first), as [`Builder::build`] would.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(4).build(Manager)?;
    /// let held = pool.get()?;
    /// pool.set_max_size(2)?;
    /// assert_eq!(pool.state().connections, 2); // two idle ones closed, one still out
    /// assert_eq!(pool.metrics().closed_shrunk, 2);
    /// assert!(pool.set_max_size(0).unwrap_err().to_string().contains("max_size"));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn set_max_size(&self, max_size: u32) -> Result<(), Error> {
        self.core().set_max_size(max_size)
    }

    /// Changes [`min_idle`](Builder::min_idle) while the pool runs (`None`: follow
    /// `max_size`). Raising it makes the pool open connections until that many are idle;
    /// lowering it closes nothing at once: idle connections beyond it become subject to
    /// `idle_timeout`.
    ///
    /// # Errors
    ///
    /// An error naming `min_idle` (and changing nothing) when it exceeds `max_size`, as
    /// [`Builder::build`] would.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(4).min_idle(Some(1)).build(Manager)?;
    /// pool.set_min_idle(Some(3))?;
    /// assert_eq!(pool.min_idle(), Some(3));
    /// assert!(pool.set_min_idle(Some(5)).unwrap_err().to_string().contains("min_idle"));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn set_min_idle(&self, min_idle: Option<u32>) -> Result<(), Error> {
        self.core().set_min_idle(min_idle)
    }

    /// The pool's [`min_idle`](Builder::min_idle): as built, or as last
    /// [set](Pool::set_min_idle).
    ///
    /// ```
    /// # let pool = sluicegate::Pool::new(sluicegate::doc_fixture::Manager).unwrap();
    /// assert_eq!(pool.min_idle(), None);
    /// ```
    #[must_use]
    pub fn min_idle(&self) -> Option<u32> {
        self.core().state.lock().sizes().1
    }

    settings! {
        test_on_check_out: bool, "assert!(pool.test_on_check_out());";
        validation_skip_window: Duration, "let window = pool.validation_skip_window();";
        max_lifetime: Option<Duration>, "let lifetime = pool.max_lifetime();";
        idle_timeout: Option<Duration>, "let timeout = pool.idle_timeout();";
        connection_timeout: Duration, "let timeout = pool.connection_timeout();";
        reaper_rate: Duration, "let rate = pool.reaper_rate();";
        keepalive: Option<Duration>, "assert_eq!(pool.keepalive(), None);";
        leak_detection_threshold: Option<Duration>,
            "assert_eq!(pool.leak_detection_threshold(), None);";
    }
}

impl<M> Builder<M>
where
    M: ManageConnection,
{
    /// Builds the pool and waits until its first `min_idle` connections (`max_size` when
    /// `min_idle` is `None`) are open.
    ///
    /// # Errors
    ///
    /// A setting is invalid (the error names it); the connections did not open within
    /// `connection_timeout` (a timeout carrying the database's last error, or at once for a
    /// [permanent](Error::is_permanent) one); or one of the pool's threads could not start.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(4).build(Manager)?;
    /// assert_eq!(pool.state().idle_connections, 4);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn build(self, manager: M) -> Result<Pool<M>, Error> {
        let config = self.into_config()?;
        let pool = Pool::start(config, manager);
        pool.core().wait_until_ready()?;
        Ok(pool)
    }

    /// Builds the pool without waiting for any connection to open. With invalid settings the
    /// pool comes back closed, every check-out returning (and the log showing) the error.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().min_idle(Some(0)).build_unchecked(Manager);
    /// assert_eq!(pool.state().connections, 0);
    /// let conn = pool.get()?; // opened on demand
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn build_unchecked(self, manager: M) -> Pool<M> {
        let (config, problem) = self.into_parts();
        match problem {
            None => Pool::start(config, manager),
            Some(err) => {
                log_shielded!(
                    log::Level::Error,
                    "pool {:?} not started: {err}",
                    config.name
                );
                Pool::unusable(config, manager, err)
            }
        }
    }
}

/// What [`Pool::close_within`] found when it stopped waiting.
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
/// let drained = pool.close_within(std::time::Duration::from_secs(5));
/// if !drained.is_complete() {
///     eprintln!("shutting down with work in flight: {drained}"); // "2 connections still ..."
/// }
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a shutdown that did not drain left connections out; say so"]
pub struct Drained {
    still_out: u32,
    /// Connections being opened or closed by another thread.
    settling: u32,
}

impl Drained {
    /// Whether every connection came back and was closed in time (none out, opening or closing).
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::new(Manager)?;
    /// assert!(pool.close_within(std::time::Duration::from_secs(5)).is_complete());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.still_out == 0 && self.settling == 0
    }

    /// The connections still checked out (or being validated by keepalive) when
    /// [`close_within`](Pool::close_within) stopped waiting: each closes when it comes back.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(2).build(Manager)?;
    /// let held = pool.get()?;
    /// assert_eq!(pool.close_within(std::time::Duration::ZERO).still_out(), 1);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn still_out(&self) -> u32 {
        self.still_out
    }
}

impl fmt::Display for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_complete() {
            return f.write_str("every connection closed");
        }
        write!(
            f,
            "{} connection{} still checked out, {} being opened or closed; each closes when it \
             is done",
            self.still_out,
            if self.still_out == 1 { "" } else { "s" },
            self.settling,
        )
    }
}

/// A connection checked out of a [`Pool`]. Dereferences to the connection; dropping it returns
/// the connection to the pool (a guard passed to `std::mem::forget` never does: its connection
/// keeps its place in the pool for good, and leak detection reports it).
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::VecManager as Manager;
/// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
/// {
///     let mut conn = pool.get()?;
///     conn.extend([1, 2, 3]); // DerefMut to the connection
/// } // returned here
/// assert_eq!(*pool.get()?, [1, 2, 3]);
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[must_use = "if unused the connection returns to the pool at once"]
pub struct PooledConnection<M>
where
    M: ManageConnection,
{
    /// `None` only after `detach`.
    loan: Option<Loan<M>>,
    broken: bool,
}

impl<M> PooledConnection<M>
where
    M: ManageConnection,
{
    #[inline]
    fn new(loan: Loan<M>) -> PooledConnection<M> {
        PooledConnection {
            loan: Some(loan),
            broken: false,
        }
    }

    #[inline]
    fn inner(&self) -> &Conn<M::Connection, Arc<Owner<M>>> {
        match &self.loan {
            Some(loan) => &loan.conn,
            None => unreachable!("a PooledConnection holds its connection until it is dropped"),
        }
    }

    #[inline]
    fn inner_mut(&mut self) -> &mut Conn<M::Connection, Arc<Owner<M>>> {
        match &mut self.loan {
            Some(loan) => &mut loan.conn,
            None => unreachable!("a PooledConnection holds its connection until it is dropped"),
        }
    }

    /// The values kept with this physical connection (an associated function, as in r2d2, so
    /// it cannot clash with a method of the connection).
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// use sluicegate::PooledConnection;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// PooledConnection::extensions_mut(&mut pool.get()?).insert(42u32);
    /// assert_eq!(PooledConnection::extensions(&pool.get()?).get::<u32>(), Some(&42));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn extensions(this: &Self) -> &Extensions {
        &this.inner().extensions
    }

    /// The values kept with this physical connection, for changing.
    ///
    /// ```
    /// # let pool = sluicegate::Pool::new(sluicegate::doc_fixture::Manager)?;
    /// sluicegate::PooledConnection::extensions_mut(&mut pool.get()?).insert("cached");
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn extensions_mut(this: &mut Self) -> &mut Extensions {
        &mut this.inner_mut().extensions
    }

    /// The connection's id (the one in the pool's events and logs).
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let first = sluicegate::PooledConnection::id(&pool.get()?);
    /// assert_eq!(sluicegate::PooledConnection::id(&pool.get()?), first);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn id(this: &Self) -> u64 {
        this.inner().id
    }

    /// Takes the connection out of the pool for good: it no longer counts toward `max_size` (the
    /// pool may open a replacement), and the customizer's `on_release` is not called for it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::VecManager as Manager;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let mine: Vec<u32> = sluicegate::PooledConnection::detach(pool.get()?);
    /// assert_eq!(pool.metrics().detached, 1);
    /// let another = pool.get()?; // the pool opened a replacement
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use = "the detached connection closes if unused"]
    pub fn detach(mut this: Self) -> M::Connection {
        let Some(Loan { owner, conn, .. }) = this.loan.take() else {
            unreachable!("a PooledConnection holds its connection until it is dropped");
        };
        owner.0.detach(conn.id);
        conn.raw
    }

    /// Marks the connection as unusable: when this guard is dropped the connection is closed
    /// instead of returned (counted in `closed_broken`). Call it when a query's error leaves the
    /// session unusable (a protocol error, a transaction in an unknown state); a connection the
    /// server closed, the manager's [`has_broken`](ManageConnection::has_broken) catches.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let mut conn = pool.get()?;
    /// // ... the protocol went out of sync ...
    /// sluicegate::PooledConnection::mark_broken(&mut conn);
    /// drop(conn);
    /// assert_eq!(pool.metrics().closed_broken, 1);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn mark_broken(this: &mut Self) {
        this.broken = true;
    }
}

impl<M> Drop for PooledConnection<M>
where
    M: ManageConnection,
{
    fn drop(&mut self) {
        if let Some(Loan { owner, conn, since }) = self.loan.take() {
            owner.0.check_in(conn, since, self.broken);
        }
    }
}

impl<M> Deref for PooledConnection<M>
where
    M: ManageConnection,
{
    type Target = M::Connection;

    #[inline]
    fn deref(&self) -> &M::Connection {
        &self.inner().raw
    }
}

impl<M> DerefMut for PooledConnection<M>
where
    M: ManageConnection,
{
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.inner_mut().raw
    }
}

impl<M> fmt::Debug for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.inner().owner.0.config.name)
            .field("id", &self.inner().id)
            .field("connection", &self.inner().raw)
            .finish()
    }
}
