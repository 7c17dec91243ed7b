//! [`Builder`]: a pool's settings, their defaults (r2d2's, plus sluicegate's own), and their
//! validation. Setters never panic; `build` checks every setting and names the one that is
//! wrong. Durations are used exactly as given: nothing is rounded or clamped.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Error;
use crate::event::HandleEvent;
use crate::manager::{
    CustomizeConnection, HandleError, LoggingErrorHandler, ManageConnection,
    NopConnectionCustomizer,
};

/// Names pools that were not given one: `pool-1`, `pool-2`, …
static POOL_NUMBER: AtomicU64 = AtomicU64::new(1);

/// Configures and builds a [`Pool`](crate::Pool).
///
/// | setting | default |
/// |---|---|
/// | [`max_size`](Builder::max_size) | 10 |
/// | [`min_idle`](Builder::min_idle) | `None` (= `max_size`) |
/// | [`test_on_check_out`](Builder::test_on_check_out) | `true` |
/// | [`validation_skip_window`](Builder::validation_skip_window) | 500 ms |
/// | [`max_lifetime`](Builder::max_lifetime) | 30 min |
/// | [`idle_timeout`](Builder::idle_timeout) | 10 min |
/// | [`connection_timeout`](Builder::connection_timeout) | 30 s |
/// | [`keepalive`](Builder::keepalive) | `None` |
/// | [`leak_detection_threshold`](Builder::leak_detection_threshold) | `None` (off) |
/// | [`reaper_rate`](Builder::reaper_rate) | 30 s |
/// | [`pool_name`](Builder::pool_name) | `pool-N`, numbered in the order pools are built |
/// | [`error_handler`](Builder::error_handler) | [`LoggingErrorHandler`] |
/// | [`event_handler`](Builder::event_handler) | none |
/// | [`connection_customizer`](Builder::connection_customizer) | [`NopConnectionCustomizer`] |
///
/// # Examples
///
/// ```
/// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
/// let pool = sluicegate::Pool::builder()
///     .pool_name("orders")
///     .max_size(16)
///     .min_idle(Some(4))
///     .connection_timeout(Duration::from_secs(5))
///     .build(Manager)?;
/// assert_eq!(pool.max_size(), 16);
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<M>
where
    M: ManageConnection,
{
    settings: Settings,
    pool_name: Option<String>,
    error_handler: Box<dyn HandleError<M::Error>>,
    event_handler: Option<Box<dyn HandleEvent>>,
    connection_customizer: Box<dyn CustomizeConnection<M::Connection, M::Error>>,
    _manager: PhantomData<fn() -> M>,
}

impl<M> Default for Builder<M>
where
    M: ManageConnection,
{
    fn default() -> Builder<M> {
        Builder {
            settings: Settings::default(),
            pool_name: None,
            error_handler: Box::new(LoggingErrorHandler),
            event_handler: None,
            connection_customizer: Box::new(NopConnectionCustomizer),
            _manager: PhantomData,
        }
    }
}

impl<M> Builder<M>
where
    M: ManageConnection,
{
    /// A builder with every setting at its default.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Builder::new().build(Manager)?;
    /// assert_eq!(pool.max_size(), 10);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn new() -> Builder<M> {
        Builder::default()
    }

    /// The most connections the pool keeps open at once, counting those being opened and
    /// closed. Must be at least 1.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let err = sluicegate::Pool::builder().max_size(0).build(Manager).err().unwrap();
    /// assert!(err.to_string().contains("max_size"));
    /// ```
    pub fn max_size(mut self, max_size: u32) -> Builder<M> {
        self.settings.max_size = max_size;
        self
    }

    /// How many idle connections the pool keeps ready, replacing closed ones up to it. `None` means
    /// `max_size`: the pool stays full. A smaller value lets a quiet service hold fewer connections
    /// (see `idle_timeout`), opened again on demand. Must not exceed `max_size`.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(8).min_idle(Some(2)).build(Manager)?;
    /// assert_eq!(pool.state().connections, 2);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn min_idle(mut self, min_idle: Option<u32>) -> Builder<M> {
        self.settings.min_idle = min_idle;
        self
    }

    /// Whether a check-out checks the connection with [`is_valid`](ManageConnection::is_valid)
    /// first, unless within the [`validation_skip_window`](Builder::validation_skip_window).
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().test_on_check_out(false).build(Manager)?;
    /// assert!(!pool.test_on_check_out());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn test_on_check_out(mut self, test_on_check_out: bool) -> Builder<M> {
        self.settings.test_on_check_out = test_on_check_out;
        self
    }

    /// With `test_on_check_out(true)`, a connection checked in (or validated by
    /// [`keepalive`](Builder::keepalive)) less than this long ago is handed out without
    /// [`is_valid`](ManageConnection::is_valid): it just proved itself. `Duration::ZERO`
    /// validates every check-out. Windows of 100 ms and more are measured with the kernel's
    /// coarse clock (a few milliseconds of resolution, much cheaper to read).
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// // Behind a proxy that may drop connections at any moment: check every time.
    /// let builder = sluicegate::Pool::<Manager>::builder().validation_skip_window(Duration::ZERO);
    /// ```
    pub fn validation_skip_window(mut self, window: Duration) -> Builder<M> {
        self.settings.validation_skip_window = window;
        self
    }

    /// Connections older than this are closed, `min_idle` ones included (and then replaced): idle
    /// ones by the reaper thread at their deadline, checked-out ones when they come back, and none
    /// is handed out past it. `None` keeps connections forever; zero is invalid. Each connection's
    /// own lifetime is this minus a random 0 to 2.5%, so that connections opened together (all of
    /// them, at start-up) are not reopened at once.
    ///
    /// Something between the pool and the database usually limits how long a session may live or
    /// sit idle: MySQL's `wait_timeout` (8 hours by default, often lowered), PgBouncer's
    /// `server_lifetime` and `server_idle_timeout`, a load balancer's idle timeout (AWS NLB: 350
    /// s), a NAT or firewall. Pick this at least 30 seconds below the smallest such limit, more if
    /// it is short (the jitter, a late reaper). For a limit on idle time only,
    /// [`keepalive`](Builder::keepalive) at a third of it also does. Without any limit, keep the
    /// default: recycling connections every half hour bounds the memory a session can accumulate on
    /// the server.
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .max_lifetime(Some(Duration::from_secs(900)));
    /// ```
    pub fn max_lifetime(mut self, max_lifetime: Option<Duration>) -> Builder<M> {
        self.settings.max_lifetime = max_lifetime;
        self
    }

    /// Idle connections beyond `min_idle` that have not been used for this long are closed by
    /// the reaper thread, the longest-unused first. `None` keeps them; zero is invalid. It never
    /// takes the pool below `min_idle`, so with `min_idle` unset it closes nothing: closing only
    /// to reopen for `min_idle` would churn.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().idle_timeout(None).build(Manager)?;
    /// assert_eq!(pool.idle_timeout(), None);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn idle_timeout(mut self, idle_timeout: Option<Duration>) -> Builder<M> {
        self.settings.idle_timeout = idle_timeout;
        self
    }

    /// How long [`Pool::get`](crate::Pool::get) waits for a connection, and `build` for its
    /// first `min_idle` connections. Zero is invalid.
    ///
    /// It bounds everything a check-out does, whatever the database does: waiting in line,
    /// and validating with what is left of it ([`is_valid_within`]; a validation gets at least
    /// 10 ms, the most a check-out overruns by). Each connect attempt gets it too
    /// ([`connect_within`]: a twentieth less, up to 100 ms, so that the caller who waited
    /// learns why it failed; at least 500 ms). After failed connects, and new connections that
    /// fail their first validation or are found closed before their first use, the pool backs
    /// off: 10 ms doubling up to a quarter of this setting, never more than 2 s nor less than
    /// 50 ms, so that neither a tiny timeout nor a database that accepts connections and drops
    /// them gets a storm of connects.
    ///
    /// [`is_valid_within`]: crate::ManageConnection::is_valid_within
    /// [`connect_within`]: crate::ManageConnection::connect_within
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .connection_timeout(Duration::from_secs(5));
    /// ```
    pub fn connection_timeout(mut self, connection_timeout: Duration) -> Builder<M> {
        self.settings.connection_timeout = connection_timeout;
        self
    }

    /// Validates idle connections in the background, on a thread of the pool's own: each is checked
    /// with [`is_valid`](ManageConnection::is_valid) at least this often (at most every 100 ms,
    /// whatever this says), one at a time, each bounded by `connection_timeout`. A connection being
    /// validated is not handed out meanwhile; one that fails is closed (counted in
    /// `closed_invalid`) and replaced as `min_idle` requires. Zero is invalid. It keeps idle
    /// sessions (the `min_idle` ones may sit idle for hours) from being cut by a firewall, a proxy
    /// or the database's own idle timeout, and finds dead ones before a check-out does; one it
    /// validated skips the check-out's validation within the
    /// [`validation_skip_window`](Builder::validation_skip_window).
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .keepalive(Some(Duration::from_secs(60)));
    /// ```
    pub fn keepalive(mut self, keepalive: Option<Duration>) -> Builder<M> {
        self.settings.keepalive = keepalive;
        self
    }

    /// Reports connections checked out for longer than this; when `None`, a check-out records
    /// nothing. In a service, set it well above the longest legitimate use of a connection (a
    /// minute, say), and alert on [`Metrics::leaks_detected`](crate::Metrics::leaks_detected).
    ///
    /// With a threshold, each check-out records when it happened, the thread, the caller's source
    /// location and the stack (raw return addresses, a few microseconds; symbols are resolved only
    /// for a report). The reaper thread logs each connection held longer than the threshold once,
    /// at `warn`, with where it was borrowed; if it comes back later, an `info` line says after how
    /// long.
    ///
    /// `Some(Duration::ZERO)` is the test-suite mode: every connection still checked out is a
    /// leak when [`Pool::leaks`](crate::Pool::leaks) or
    /// [`Pool::assert_no_leaks`](crate::Pool::assert_no_leaks) asks, and nothing is logged in
    /// the background (it would report every check-out).
    ///
    /// The pool never takes a leaked connection back: the holder can still use it (a slow query
    /// is not a leak), and a connection used by two threads at once would mix their sessions
    /// and transactions. Only the holder can end the leak, by dropping the guard.
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .leak_detection_threshold(Some(Duration::from_secs(60)));
    /// ```
    pub fn leak_detection_threshold(mut self, threshold: Option<Duration>) -> Builder<M> {
        self.settings.leak_detection_threshold = threshold;
        self
    }

    /// How often, at the least, the pool's reaper thread wakes up. It also wakes for the earliest
    /// deadline it knows (a connection's lifetime or idle timeout, a check-out crossing the leak
    /// threshold), so this bounds how late it notices anything it was not told of. Zero is invalid.
    /// Rounds never come closer than 10 ms apart.
    ///
    /// ```
    /// # use {sluicegate::doc_fixture::Manager, std::time::Duration};
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .reaper_rate(Duration::from_millis(100));
    /// ```
    pub fn reaper_rate(mut self, reaper_rate: Duration) -> Builder<M> {
        self.settings.reaper_rate = reaper_rate;
        self
    }

    /// The pool's name, used in its threads' names, its log lines and its errors.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().pool_name("reports").build(Manager)?;
    /// assert_eq!(pool.name(), "reports");
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    pub fn pool_name(mut self, name: impl Into<String>) -> Builder<M> {
        self.pool_name = Some(name.into());
        self
    }

    /// Receives every error of `connect`, `is_valid`, `recycle` and the customizer's
    /// `on_acquire`, as in r2d2, whatever the pool logs itself ([`LoggingErrorHandler`] says
    /// what that is).
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .error_handler(Box::new(sluicegate::NopErrorHandler));
    /// ```
    pub fn error_handler(mut self, error_handler: Box<dyn HandleError<M::Error>>) -> Builder<M> {
        self.error_handler = error_handler;
        self
    }

    /// Receives the pool's [events](crate::event). Without one, the pool does not read the
    /// clock to time check-outs and check-ins.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .event_handler(Box::new(sluicegate::NopEventHandler));
    /// ```
    pub fn event_handler(mut self, event_handler: Box<dyn HandleEvent>) -> Builder<M> {
        self.event_handler = Some(event_handler);
        self
    }

    /// Adjusts connections as they are opened and closed.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let builder = sluicegate::Pool::<Manager>::builder()
    ///     .connection_customizer(Box::new(sluicegate::NopConnectionCustomizer));
    /// ```
    pub fn connection_customizer(
        mut self,
        connection_customizer: Box<dyn CustomizeConnection<M::Connection, M::Error>>,
    ) -> Builder<M> {
        self.connection_customizer = connection_customizer;
        self
    }

    /// Accepted for compatibility with r2d2's `Builder::thread_pool` (feature `r2d2`), and not
    /// used: the thread pool you pass is dropped here (its threads end when its last handle is
    /// dropped, as with r2d2). r2d2 runs connects and its reaper as jobs on a shared
    /// `ScheduledThreadPool`; sluicegate gives each pool threads of its own ([`Pool`](crate::Pool)
    /// names them), so a connect that hangs delays no other pool, and a pool's timing never waits
    /// for another's jobs. They sleep when there is nothing to do: sharing saves nothing.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let threads = std::sync::Arc::new(scheduled_thread_pool::ScheduledThreadPool::new(2));
    /// let pool = sluicegate::Pool::builder().thread_pool(threads).build(Manager)?;
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[cfg(feature = "r2d2")]
    pub fn thread_pool(
        self,
        thread_pool: Arc<scheduled_thread_pool::ScheduledThreadPool>,
    ) -> Builder<M> {
        drop(thread_pool);
        self
    }

    fn validate(&self) -> Result<(), Error> {
        self.settings.validate()?;
        if let Some(name) = &self.pool_name {
            if name.is_empty() {
                return Err(Error::config("pool_name", "must not be empty"));
            }
            if name.contains('\0') {
                return Err(Error::config(
                    "pool_name",
                    "must not contain a NUL character (it names a thread)",
                ));
            }
        }
        Ok(())
    }

    /// The pool's configuration, if the settings are valid.
    pub(crate) fn into_config(self) -> Result<Config<M::Connection, M::Error>, Error> {
        self.validate()?;
        Ok(self.config())
    }

    /// The pool's configuration, and what is wrong with the settings, if anything.
    pub(crate) fn into_parts(self) -> (Config<M::Connection, M::Error>, Option<Error>) {
        let problem = self.validate().err();
        (self.config(), problem)
    }

    /// The pool's configuration, as set (validated by the caller).
    fn config(self) -> Config<M::Connection, M::Error> {
        let name = self
            .pool_name
            .unwrap_or_else(|| format!("pool-{}", POOL_NUMBER.fetch_add(1, Ordering::Relaxed)));
        Config {
            settings: self.settings,
            name: name.into(),
            error_handler: self.error_handler,
            events: self.event_handler.is_some(),
            times_loans: self.event_handler.is_some() || cfg!(feature = "metrics"),
            event_handler: self
                .event_handler
                .unwrap_or_else(|| Box::new(crate::event::NopEventHandler)),
            customizer: self.connection_customizer,
        }
    }
}

// By hand: a derive would require `M: Debug`.
impl<M> fmt::Debug for Builder<M>
where
    M: ManageConnection,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("pool_name", &self.pool_name)
            .field("settings", &self.settings)
            .field("error_handler", &self.error_handler)
            .field("event_handler", &self.event_handler)
            .field("connection_customizer", &self.connection_customizer)
            .finish()
    }
}

/// Every setting of a pool but its name and handlers, as one value: the builder fills it in,
/// the pool keeps it (and its getters read it). `max_size` and `min_idle` here are as built;
/// the pool's state holds them as they are now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) max_size: u32,
    /// `None`: as many as `max_size`.
    pub(crate) min_idle: Option<u32>,
    pub(crate) test_on_check_out: bool,
    pub(crate) validation_skip_window: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) connection_timeout: Duration,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) leak_detection_threshold: Option<Duration>,
    pub(crate) reaper_rate: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_size: 10,
            min_idle: None,
            test_on_check_out: true,
            validation_skip_window: Duration::from_millis(500),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            connection_timeout: Duration::from_secs(30),
            keepalive: None,
            leak_detection_threshold: None,
            reaper_rate: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// How many connections `build` waits for.
    pub(crate) fn min_idle_target(&self) -> u32 {
        self.min_idle.unwrap_or(self.max_size)
    }

    /// The first setting that is out of range, as an error naming it.
    fn validate(&self) -> Result<(), Error> {
        if self.max_size == 0 {
            return Err(Error::config("max_size", "must be at least 1, got 0"));
        }
        if let Some(min_idle) = self.min_idle.filter(|&n| n > self.max_size) {
            return Err(Error::config(
                "min_idle",
                format!(
                    "must not exceed max_size ({}), got {min_idle}",
                    self.max_size
                ),
            ));
        }
        let required = [
            ("connection_timeout", self.connection_timeout),
            ("reaper_rate", self.reaper_rate),
        ];
        if let Some((setting, _)) = required.iter().find(|(_, value)| value.is_zero()) {
            return Err(Error::config(setting, "must be longer than zero"));
        }
        // These can be turned off: zero is a mistake for `None`.
        let optional = [
            ("max_lifetime", self.max_lifetime),
            ("idle_timeout", self.idle_timeout),
            ("keepalive", self.keepalive),
        ];
        if let Some((setting, _)) = optional.iter().find(|(_, v)| *v == Some(Duration::ZERO)) {
            return Err(Error::config(
                setting,
                "must be longer than zero; use None for no limit",
            ));
        }
        Ok(())
    }
}

/// A pool's settings after `build` checked them.
pub(crate) struct Config<C, E> {
    pub(crate) settings: Settings,
    pub(crate) name: Arc<str>,
    pub(crate) error_handler: Box<dyn HandleError<E>>,
    /// Whether an event handler was set (events cost nothing without one).
    pub(crate) events: bool,
    /// Whether check-outs are timed: for the event handler, or the `metrics` feature.
    pub(crate) times_loans: bool,
    pub(crate) event_handler: Box<dyn HandleEvent>,
    pub(crate) customizer: Box<dyn CustomizeConnection<C, E>>,
}
