//! A fast, fair connection pool for blocking database drivers, used from OS threads, and a
//! drop-in for r2d2: the same [`ManageConnection`] trait, the same [`Builder`], the same
//! [`PooledConnection`] guard.
//!
//! # Quick start
//!
//! With a built-in driver (here SQLite, feature `sqlite`; also `postgres`, `mysql`, and any r2d2
//! manager with `r2d2`):
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use std::thread;
//! use sluicegate::sqlite::SqliteConnectionManager;
//!
//! let pool = sluicegate::Pool::builder()
//!     .pool_name("app")
//!     .max_size(4)
//!     .build(SqliteConnectionManager::memory())?; // or ::file("app.db")
//! pool.get()?.execute("CREATE TABLE hits (n INTEGER)", [])?;
//! let workers: Vec<_> = (0..16)
//!     .map(|i| {
//!         let pool = pool.clone();
//!         thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!             let conn = pool.get()?; // waits up to connection_timeout, in line
//!             conn.execute("INSERT INTO hits VALUES (?1)", [i])?;
//!             Ok(()) // the connection goes back when `conn` drops
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap()?;
//! }
//! let hits: i64 = pool.get()?.query_row("SELECT count(*) FROM hits", [], |row| row.get(0))?;
//! assert_eq!(hits, 16);
//! # }
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```
//!
//! # Moving from r2d2
//!
//! Change `r2d2::` to `sluicegate::`: `Pool`, `Builder`, `PooledConnection`, `ManageConnection`,
//! `CustomizeConnection`, `HandleError`, `HandleEvent` and the events keep their names and
//! signatures. With the feature `r2d2`:
//!
//! - **A manager from an r2d2 adapter crate** (r2d2_postgres, r2d2_sqlite, r2d2_mysql, ...)
//!   goes into `sluicegate::r2d2::R2d2Manager`:
//!   `Pool<R2d2Manager<PostgresConnectionManager<NoTls>>>` where r2d2 code names the type. Or use
//!   sluicegate's own driver for that database (features `postgres`, `mysql`, `sqlite`: the
//!   adapter crates' names), which also bounds connects and validations and notices dead sessions
//!   without a round trip.
//! - **`Builder::thread_pool`** is accepted and not used.
//! - **A customizer you wrote** implements sluicegate's `CustomizeConnection` (the same path
//!   change); one from another crate, or boxed as `Box<dyn r2d2::CustomizeConnection<..>>`,
//!   goes through `sluicegate::r2d2::R2d2Customizer`.
//! - **A wrong password fails at once** (r2d2 retries it until `connection_timeout`): see
//!   `sluicegate::r2d2::refuses_login`.
//!
//! **diesel** (feature `diesel`): use `sluicegate::diesel` where the code says `diesel::r2d2`;
//! pooled connections work as with r2d2. See the `sluicegate::diesel` module (documented with the
//! feature on) for the diesel versions it takes.
//!
//! What behaves differently (each item's doc says more):
//!
//! - A returning thread cannot take its connection back ahead of a waiting one (r2d2 lets it
//!   barge), so waits under load stay close to their mean.
//! - Check-out validates only connections idle for `validation_skip_window` (r2d2: every one).
//! - Each pool has threads of its own ([`Pool`]); they open connections one at a time, with
//!   capped exponential back-off after failures.
//! - Every timed-out caller gets the last database error (r2d2 gives some `Error(None)`), and a
//!   [permanent](ManageConnection::is_permanent) one (a wrong password) fails at once.
//! - Every check-out keeps its deadline, validation included; a manager can bound its connects
//!   and validations ([`ManageConnection::connect_within`],
//!   [`ManageConnection::is_valid_within`]; default bodies, so r2d2 managers compile unchanged).
//! - A panic costs one attempt, not a pool slot (see below), and a connection dropped during one
//!   is closed, not reused.
//! - `max_lifetime`, less a random 0–2.5% per connection, is also checked at check-out and
//!   check-in, and idle connections close at their deadline rather than at the next sweep.
//! - `idle_timeout` never takes the pool below `min_idle` (r2d2 closes idle connections and then
//!   opens new ones to meet `min_idle`).
//! - Connections being closed count toward `max_size` until they are gone, and dropping the
//!   last `Pool` handle closes the pool.
//! - [`LoggingErrorHandler`], the default, logs each error at `debug` (r2d2's at `error`): the
//!   pool logs outages and failed validations itself.
//! - New, and off unless turned on: leak detection, keepalive, metrics. The size can change at
//!   run time, and [`Pool::close_within`] drains the pool.
//! - Invalid settings make `build` return an error naming the setting instead of panicking in
//!   the setter.
//!
//! # How a check-out works
//!
//! An idle connection is handed out at once, else the caller waits in a first-come, first-served
//! queue ([`Pool`]). Before it is handed out, [`ManageConnection::is_closed`] and
//! [`test_on_check_out`](Builder::test_on_check_out) check it. When it comes back it is closed
//! instead of reused if [`has_broken`](ManageConnection::has_broken) says so, if it was [marked
//! broken](PooledConnection::mark_broken), is past its [`max_lifetime`](Builder::max_lifetime), or
//! was dropped while its thread panicked.
//!
//! # When the database is sick
//!
//! Every check-out keeps its deadline, validation included
//! ([`connection_timeout`](Builder::connection_timeout) says by how much it may overrun), and
//! every connect attempt is bounded ([`ManageConnection::connect_within`]). Failed connects are
//! retried with back-off, never in a storm. A panic in a driver's calls, in a driver error's
//! `Display` or `source()`, in a handler, a customizer, the application's logger or metrics
//! recorder costs one attempt or one connection, never a count of the pool's or one of its
//! threads. An outage is logged once, then at most once a minute, not once per attempt
//! ([`LoggingErrorHandler`] says what the pool logs).
//!
//! What stays the caller's: a guard passed to `std::mem::forget` never comes back, so its
//! connection keeps its place in the pool for good ([`PooledConnection`]); and a connection
//! taken out with [`PooledConnection::detach`] no longer counts toward `max_size`.
//!
//! # Operating a pool
//!
//! [`Pool::set_max_size`] and [`Pool::set_min_idle`] resize a running pool; [`Pool::evict_all`]
//! replaces every connection; [`Pool::close_within`] drains it before a shutdown. Behind
//! PgBouncer, see "Behind PgBouncer" in the `postgres` module (feature `postgres`).
//!
//! # Choosing settings
//!
//! [`Builder`] lists every setting and its default; [`sizing`] turns the server's
//! `max_connections`, the number of instances and the workload into a size. A connection's
//! health is up to [`max_lifetime`](Builder::max_lifetime) (which says how to pick it),
//! [`idle_timeout`](Builder::idle_timeout), [`keepalive`](Builder::keepalive) and
//! [`min_idle`](Builder::min_idle); whatever they miss, check-out validation catches.
//!
//! # Leak detection
//!
//! A leaked connection slowly starves the pool, and the timeouts it causes happen far from the
//! bug. [`leak_detection_threshold`](Builder::leak_detection_threshold) makes the pool report
//! each connection held too long, with where it was borrowed ([`Leak`]); in a test suite,
//! [`Pool::assert_no_leaks`] fails a test that leaves one out.
//!
//! # Error handling
//!
//! A check-out fails with an [`Error`]; [`Error::is_timeout`], [`Error::is_permanent`] and
//! [`Error::is_closed`] tell the cases apart, and say what to do about each. Errors of queries
//! are the driver's own; when one leaves the session unusable, call
//! [`PooledConnection::mark_broken`].
//!
//! # Exporting metrics
//!
//! [`Pool::metrics`] gives a snapshot of every gauge and counter. With the feature `metrics`,
//! every pool also publishes them, with histograms of its wait, usage and connect times,
//! through the [`metrics`](https://docs.rs/metrics) facade: [`Metrics`] lists the series.
//!
#![deny(unsafe_code)]
#![warn(missing_docs)]
// On docs.rs (every feature on), each driver is marked with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Logs through the application's logger, which may panic: such a panic is swallowed here, so
/// that it can never cost the pool a connection, a count or a thread.
macro_rules! log_shielded {
    ($level:expr, $($arg:tt)+) => {
        if log::log_enabled!($level) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                log::log!($level, $($arg)+)
            }));
        }
    };
}

/// The README's Rust examples, compiled and run as doc tests so that they cannot go stale.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

// The floors, lowest first: a module names only modules on floors below its own (checked by
// scripts/layout.py, which lists them the same way).
//
// 1. Leaves: time, text, errors, the traits a driver implements, the figures a pool reports.
mod backtrace;
mod clock;
mod error;
pub mod event;
mod extensions;
mod human;
pub mod leak;
mod manager;
mod metrics;
pub mod sizing;
mod sync;

// 2. Settings and the builder.
mod config;

// 3. The state behind the lock.
mod state;

// 4. The engine over it.
mod core;

// 5. The pool's threads.
mod worker;

// 6. The public face.
mod pool;

// 7. Drivers, the model checker's entry points, and the fixture the docs' examples use.
#[doc(hidden)]
pub mod doc_fixture;
mod drivers;
#[cfg(sluicegate_model)]
#[doc(hidden)]
pub mod model;

#[cfg(feature = "diesel")]
pub use crate::drivers::diesel;
#[cfg(feature = "mysql")]
pub use crate::drivers::mysql;
#[cfg(feature = "postgres")]
pub use crate::drivers::postgres;
#[cfg(feature = "r2d2")]
pub use crate::drivers::r2d2;
#[cfg(feature = "sqlite")]
pub use crate::drivers::sqlite;

pub use crate::config::Builder;
pub use crate::error::Error;
pub use crate::event::{HandleEvent, NopEventHandler};
pub use crate::extensions::Extensions;
pub use crate::leak::Leak;
pub use crate::manager::{
    CustomizeConnection, HandleError, LoggingErrorHandler, ManageConnection,
    NopConnectionCustomizer, NopErrorHandler,
};
pub use crate::metrics::{Metrics, State};
pub use crate::pool::{Drained, Pool, PooledConnection};
