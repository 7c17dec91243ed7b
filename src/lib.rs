//! A fast, fair connection pool for blocking database drivers, used from OS threads, and a
//! drop-in for r2d2: the same [`ManageConnection`] trait, the same [`Builder`], the same
//! [`PooledConnection`] guard.
//!
//! # Quick start
//!
//! ```
//! use std::thread;
//!
//! // Any r2d2-style manager works; a driver crate provides one for its database.
//! struct Manager;
//!
//! impl sluicegate::ManageConnection for Manager {
//!     type Connection = Vec<String>;
//!     type Error = std::io::Error;
//!     fn connect(&self) -> Result<Vec<String>, std::io::Error> { Ok(Vec::new()) }
//!     fn is_valid(&self, _: &mut Vec<String>) -> Result<(), std::io::Error> { Ok(()) }
//!     fn has_broken(&self, _: &mut Vec<String>) -> bool { false }
//! }
//!
//! let pool = sluicegate::Pool::builder().pool_name("app").max_size(4).build(Manager)?;
//! let handles: Vec<_> = (0..16)
//!     .map(|i| {
//!         let pool = pool.clone();
//!         thread::spawn(move || -> Result<(), sluicegate::Error> {
//!             let mut conn = pool.get()?;
//!             conn.push(format!("request {i}"));
//!             Ok(())
//!         })
//!     })
//!     .collect();
//! for handle in handles {
//!     handle.join().unwrap()?;
//! }
//! println!("{:?}", pool.metrics());
//! # Ok::<(), sluicegate::Error>(())
//! ```
//!
//! # Moving from r2d2
//!
//! Change `r2d2::` to `sluicegate::`: `Pool`, `Builder`, `PooledConnection`, `ManageConnection`,
//! `CustomizeConnection`, `HandleError`, `HandleEvent` and the events keep their names and
//! signatures. With the feature `r2d2`:
//!
//! - **A manager from an r2d2 adapter crate** (r2d2_postgres, r2d2_sqlite, r2d2_mysql, ...)
//!   goes into `sluicegate::r2d2::R2d2Manager`: `Pool::builder().build(R2d2Manager::new(manager))`, and
//!   `Pool<R2d2Manager<PostgresConnectionManager<NoTls>>>` where r2d2 code names the type. Or
//!   use sluicegate's own driver for that database (features `postgres`, `mysql`, `sqlite`:
//!   the same names as the adapter crates), which also bounds connects and validations and
//!   notices dead sessions without a round trip.
//! - **`Builder::thread_pool`** is accepted and not used (each pool has threads of its own:
//!   see `Builder::thread_pool`).
//! - **A customizer you wrote** implements sluicegate's `CustomizeConnection` (the same path
//!   change); one from another crate, or boxed as `Box<dyn r2d2::CustomizeConnection<..>>`,
//!   goes through `sluicegate::r2d2::R2d2Customizer`. r2d2's `NopConnectionCustomizer` and diesel's
//!   `TestCustomizer` need nothing.
//! - **A wrong password fails at once.** r2d2 retries it until `connection_timeout`;
//!   `R2d2Manager` asks `sluicegate::r2d2::refuses_login`, which knows the errors of diesel's,
//!   `postgres`'s and `mysql`'s managers when sluicegate's feature of that name is on, and
//!   `R2d2Manager::permanent_if` sets a rule of your own.
//!
//! **diesel** (feature `diesel`): use `sluicegate::diesel` where the code says `diesel::r2d2`
//! (`ConnectionManager`, `Pool`, `PooledConnection`, `PoolError`, `TestCustomizer`). Pooled
//! connections take diesel queries as `&mut conn`, and `conn.transaction(..)` and
//! `conn.begin_test_transaction()` work on them, as with r2d2. See the `sluicegate::diesel` module (it
//! is documented with the feature on) for the diesel versions it takes.
//!
//! `Error`'s `Debug`, which `fn main() -> Result<(), Box<dyn Error>>` prints, is its message.
//!
//! What behaves differently:
//!
//! - A returning thread cannot take its connection back ahead of a waiting one (r2d2 lets it
//!   barge), so waits under load stay close to their mean.
//! - Connections are validated on check-out only when they have been idle for
//!   `validation_skip_window` (r2d2 validates every check-out, a round trip each time).
//! - Connections are opened by the pool's own thread, one at a time, when callers outnumber the
//!   connections being opened or `min_idle` asks; failures are retried with capped exponential
//!   back-off.
//! - Every timed-out caller gets the last database error (r2d2 gives some `Error(None)`).
//! - A manager can call a connect error permanent
//!   ([`ManageConnection::is_permanent`], a method with a default body, so r2d2 managers
//!   compile unchanged): a wrong password then fails `build` and check-outs at once
//!   ([`Error::is_permanent`]) instead of after the whole `connection_timeout`.
//! - Every check-out is bounded by its timeout, validation included, and a manager can bound
//!   its connects and validations ([`ManageConnection::connect_within`],
//!   [`ManageConnection::is_valid_within`], methods with default bodies).
//! - A panic in `connect`, in a customizer or in a handler costs one attempt, not a pool slot;
//!   a connection dropped during a panic is closed, not reused; `max_lifetime` is also checked
//!   when connections are checked out and come back; dropping the last `Pool` handle stops the
//!   pool's thread and closes its idle connections.
//! - `idle_timeout` never takes the pool below `min_idle` (r2d2 closes idle connections and then
//!   opens new ones to meet `min_idle`); with the default `min_idle` it closes nothing.
//! - Connections being closed count toward `max_size` until they are gone.
//! - `max_lifetime` is shortened by a random 0–2.5% per connection, and idle connections close
//!   at their deadline rather than at the next sweep.
//! - The pool has threads of its own instead of r2d2's shared thread pool: an opener, a
//!   reaper, and with `keepalive` set a keepalive thread.
//! - Leak detection, keepalive and metrics are new; nothing changes unless you turn them on.
//! - [`LoggingErrorHandler`], the default, logs each error at `debug` (r2d2's at `error`): the
//!   pool logs outages and failed validations itself, naming itself, without a line per
//!   attempt. Your own handler still receives every error.
//! - The size can change at run time ([`Pool::set_max_size`], [`Pool::set_min_idle`]), and
//!   [`Pool::close_within`] drains the pool before a shutdown.
//! - Invalid settings make `build` return an error naming the setting instead of panicking in
//!   the setter.
//!
//! # How a check-out works
//!
//! 1. An idle connection is taken at once: the one the calling thread returned last if it is
//!    still idle (so a thread keeps its server session, as a dedicated connection would:
//!    measured, that is worth 5 to 10% of a `SELECT 1` round trip), else the most recently
//!    used. Then [`ManageConnection::is_closed`] looks for a session the server ended, without
//!    a round trip.
//! 2. With none idle, the caller waits in a strict first-come, first-served queue; a connection
//!    that comes back goes straight to the longest-waiting caller. Meanwhile the pool's own
//!    thread opens a connection if callers outnumber the connections already being opened
//!    (never more than `max_size` in all). Callers never open connections themselves.
//! 3. With `test_on_check_out(true)` (the default), the connection is checked with
//!    [`ManageConnection::is_valid_within`] on the caller's thread, given what is left of the
//!    caller's time, unless it was checked in less than
//!    [`validation_skip_window`](Builder::validation_skip_window) ago (500 ms by default) or
//!    validated by keepalive within that window. A connection that fails is closed and the
//!    caller goes on with the next one, within its original deadline.
//! 4. If nothing arrives within the timeout, the [`Error`] says which pool, how long the caller
//!    waited, how many connections were in use, idle, being opened and waited for, and the
//!    database's last error with its whole `source()` chain.
//!
//! When a connection comes back, [`ManageConnection::has_broken`] runs on the returning thread;
//! a broken connection, one marked with [`PooledConnection::mark_broken`], one past its
//! `max_lifetime`, and one dropped while its thread panics are closed instead of reused.
//!
//! The pool's lock is held only to move connections and change counts: no driver call, handler,
//! log line or connection drop ever happens under it.
//!
//! Each pool has two threads, three with keepalive, which hold only a weak reference to it and
//! exit when it closes or its last handle is dropped: `sluice-<name>` opens connections,
//! `sluice-reap-<name>` (the reaper) closes expired and idle ones, reports leaks and publishes
//! metrics, and `sluice-keep-<name>` runs keepalive. The reaper makes no round trip to the
//! database, so a sick database never delays a leak report. It wakes for the earliest
//! deadline it knows, and at least every
//! [`reaper_rate`](Builder::reaper_rate). If a round of its work comes more than 1.5 times
//! the planned interval after the previous one (the process is starved of CPU or was stopped,
//! or a call on its thread blocked), it says so once per episode at `warn`, because timeouts
//! and lifetimes will look odd until it catches up, and at `info` when it has.
//!
//! # When the database is sick
//!
//! A pool earns its keep when the database is hung, half alive, restarting or refusing.
//! Whatever it does:
//!
//! - **Every check-out keeps its deadline.** `get_timeout(d)` (or `get`, with
//!   `connection_timeout`) returns within `d` and at most about 10 ms more: waiting in line,
//!   and each validation, which gets what is left of the time
//!   ([`ManageConnection::is_valid_within`]). A connection that keeps failing validation is
//!   replaced and retried only while time remains. A manager that cannot bound its round trips
//!   (one with only r2d2's `is_valid`) is named in the log, once, with how long it overran.
//! - **Connecting is bounded.** Each attempt gets about `connection_timeout` (at least 500 ms)
//!   through [`ManageConnection::connect_within`]; the built-in drivers bound the whole
//!   login, and try the next host where the configuration names several, so one server that
//!   accepts and never answers cannot block the pool.
//! - **No storms.** Failed connects are retried with back-off (10 ms doubling up to 2 s, never
//!   below 50 ms between the later ones), and so are new connections that fail their first
//!   validation or are found closed before their first use: a database that accepts
//!   connections and then drops them is not hammered. Background rounds never come closer
//!   than 10 ms apart, and keepalive validates a connection at most every 100 ms, whatever
//!   the settings say.
//! - **Nothing is lost to a panic**: in a driver's calls, in a driver error's `Display` or
//!   `source()`, in a handler, a customizer, the application's logger or metrics recorder.
//!   Each costs one attempt or one connection, never a count of the pool's or one of its
//!   threads.
//! - **A session the server ended is not handed out again**: [`ManageConnection::is_closed`]
//!   runs on every check-out (the built-in drivers look at the socket, without a round trip).
//! - **An outage does not flood the log.** The pool says it cannot connect once, at `error`,
//!   naming itself and the database's error; then at most once a minute while it lasts (how
//!   many connects failed since, the last error); and once, at `info`, when it connects again
//!   (how long it was down, how many connects failed). A connection that fails a validation
//!   (on check-out or for keepalive) or a reset is a `warn` line naming the pool and the cause
//!   (at most five a minute: a restart shows, a proxy failing every query does not flood);
//!   every connection opened or closed is a `debug` line with the reason. The default error
//!   handler logs each error at `debug` only ([`LoggingErrorHandler`]); a handler of your own
//!   still receives every one.
//!
//! What stays the caller's: a guard passed to `std::mem::forget` never comes back, so its
//! connection keeps its place in the pool for good (leak detection reports it); and a
//! connection taken out with [`PooledConnection::detach`] no longer counts toward
//! `max_size`: the pool may open another in its place.
//!
//! # Operating a pool
//!
//! - **Resizing.** [`Pool::set_max_size`] and [`Pool::set_min_idle`] change the pool's size
//!   while it runs (an invalid value is an error naming the setting, as with the builder).
//!   Growing serves the waiting threads at once, in the order they came; shrinking closes idle
//!   connections at once and the others as they come back, and opens none meanwhile.
//! - **Behind PgBouncer.** What works in transaction and session mode, what fails, and which
//!   PgBouncer settings bound its waits: "Behind PgBouncer" in the `postgres` module (feature
//!   `postgres`).
//! - **Shutting down.** [`Pool::close`] stops check-outs at once and leaves the connections that
//!   are out to close when they come back; [`Pool::close_within`] does the same and then waits
//!   up to a deadline for them, saying how many were still out ([`Drained`]):
//!
//! ```
//! use std::time::Duration;
//! # use sluicegate::doc_fixture::Manager;
//! let pool = sluicegate::Pool::builder().max_size(4).build(Manager)?;
//! // On SIGTERM: refuse new work, give the requests in flight 10 s.
//! let drained = pool.close_within(Duration::from_secs(10));
//! if !drained.is_complete() {
//!     eprintln!("shutting down with work in flight: {drained}");
//! }
//! # Ok::<(), sluicegate::Error>(())
//! ```
//!
//! # Choosing settings
//!
//! - `max_size`: the most connections the database will see from this pool. Size it to the
//!   work, not the thread count: threads beyond `max_size` wait in line, fairly.
//! - `min_idle`: `None` (the default) keeps the pool full; a smaller value lets a quiet service
//!   hold fewer connections, opened again on demand by the pool's opener thread.
//! - `test_on_check_out` and `validation_skip_window`: a connection that came back moments ago
//!   is handed out unchecked; one that sat idle longer is checked with a round trip first.
//!   Behind a proxy that may drop connections at any time, set the window to `Duration::ZERO`.
//! - `connection_timeout`: how long a caller waits before it gets an error that says why.
//! - The size itself: [`sizing`] turns the server's `max_connections`, the number of instances
//!   and the workload into numbers.
//!
//! ## Lifetimes, idle connections and keepalive
//!
//! Four settings decide how long a connection lives and how the pool keeps it healthy:
//!
//! | setting | closes or checks | counted in |
//! |---|---|---|
//! | [`max_lifetime`](Builder::max_lifetime) (30 min) | every connection, when its age passes the setting less a random 0–2.5% | `closed_max_lifetime` |
//! | [`idle_timeout`](Builder::idle_timeout) (10 min) | idle connections beyond `min_idle`, unused that long, oldest first | `closed_idle_timeout` |
//! | [`keepalive`](Builder::keepalive) (off) | validates each idle connection at least that often; closes those that fail | `closed_invalid` |
//! | [`min_idle`](Builder::min_idle) (= `max_size`) | nothing: it is the floor the others respect; closed connections are replaced up to it | |
//!
//! How they interact:
//!
//! - **`idle_timeout` only acts above `min_idle`.** With `min_idle` unset (meaning
//!   `max_size`), `idle_timeout` closes nothing: closing a connection only to reopen it for
//!   `min_idle` would churn. Set `min_idle` below `max_size` to let a quiet pool shrink; it
//!   grows again on demand.
//! - **`max_lifetime` applies to everything, `min_idle` included.** An idle connection closes
//!   at its deadline and the opener replaces it if `min_idle` asks; a checked-out one is never
//!   taken from its holder, it closes when it comes back. The jitter spreads the replacements
//!   of connections opened together (all of them, at start-up) over 2.5% of the lifetime, so
//!   the database never sees the whole pool reconnect at once.
//! - **`keepalive` keeps the connections that `idle_timeout` keeps.** The `min_idle`
//!   connections can sit idle for hours in a quiet service; keepalive sends each a validation
//!   at least every period, off the lock, one connection at a time (the others stay available),
//!   so a firewall or proxy does not drop them silently, and a dead one is replaced before a
//!   caller gets it. A connection validated by keepalive also skips the check-out validation
//!   within `validation_skip_window`.
//! - **Check-out validation is the last line.** Whatever the background missed (a session
//!   killed a second ago) is caught by `test_on_check_out` when the connection has been idle
//!   longer than `validation_skip_window`.
//!
//! ## Picking `max_lifetime`
//!
//! Something between the pool and the database usually limits how long a session may live or
//! sit idle: MySQL and MariaDB close sessions idle longer than `wait_timeout` (8 hours by
//! default, often lowered), PgBouncer's `server_lifetime` and `server_idle_timeout`, a cloud
//! load balancer's idle timeout (AWS NLB: 350 s), a NAT or firewall's connection tracking. Pick
//! `max_lifetime` a little below the smallest such limit, so the pool retires a connection
//! before anything else cuts it: at least 30 seconds below it, more if the limit is short (the
//! jitter takes up to 2.5% off, and the reaper may wake a little late on a busy machine). If
//! the limit is on idle time only (`wait_timeout`, a load balancer's idle timeout), `keepalive`
//! at a fraction of it (a third, say) also keeps the idle connections from hitting it, and
//! `max_lifetime` can then stay long. Without any such limit, keep the default: recycling
//! connections every half hour bounds the memory a session can accumulate on the server.
//!
//! # Leak detection
//!
//! A leaked connection (a guard kept in a cache, a struct, a forgotten thread) slowly starves
//! the pool, and the timeouts it causes happen far from the bug. With
//! [`leak_detection_threshold`](Builder::leak_detection_threshold) set, each check-out records
//! when, on which thread and where (a backtrace) it happened, for a few microseconds; with it
//! off (the default) nothing is recorded.
//!
//! - **In a service**, set it well above your longest legitimate use of a connection (a minute,
//!   say). A connection held longer is logged once at `warn`, with the connection, the thread,
//!   how long, and the backtrace from the function that borrowed it; if it comes back later, an
//!   `info` line says after how long. [`Metrics::leaks_detected`] counts the reports, for
//!   alerting. The pool never takes a leaked connection back: its holder may still be using it.
//! - **In a test suite**, use `Some(Duration::ZERO)`, and call [`Pool::assert_no_leaks`] where
//!   every connection should be back (at the end of a test): it panics with each connection
//!   still out and the name of the function that borrowed it. [`Pool::leaks`] returns the same
//!   as values, for your own checks.
//!
//! ```
//! use std::time::Duration;
//! # use sluicegate::doc_fixture::Manager;
//! let pool = sluicegate::Pool::builder()
//!     .leak_detection_threshold(Some(Duration::ZERO))
//!     .build(Manager)?;
//!
//! fn handler(pool: &sluicegate::Pool<Manager>) -> Result<(), sluicegate::Error> {
//!     let conn = pool.get()?;
//!     // ... use it; it goes back when `conn` drops
//!     Ok(())
//! }
//!
//! handler(&pool)?;
//! pool.assert_no_leaks();
//! # Ok::<(), sluicegate::Error>(())
//! ```
//!
//! Backtraces show function names when the binary has symbols (Rust keeps them unless you
//! strip), and files and lines with debug info (`debug = 1` in the release profile is enough).
//! The caller's file and line ([`Leak::location`]) are known either way.
//!
//! # Error handling
//!
//! Everything a check-out can fail with is an [`Error`], and its `Display` says what happened:
//! which pool, how long the caller waited, how many connections were in use, idle, being
//! opened and waited for, and the database's last error with its whole `source()` chain.
//!
//! - [`Error::is_timeout`]: no connection within `connection_timeout`. The pool is exhausted,
//!   or the database is slow or down ([`Error::last_error`] says which). In a server, answer
//!   with 503 and let the client retry; raising the timeout only makes callers queue longer.
//! - [`Error::is_permanent`]: the last connect failed in a way waiting won't fix (wrong
//!   password, unknown database). Fix the settings; the pool keeps retrying in the background
//!   and recovers on its own once they are right.
//! - [`Error::is_closed`]: the pool was closed, usually because the program is shutting down.
//!
//! Errors from queries on a checked-out connection are the driver's own. When one leaves the
//! session unusable (a protocol error, a transaction in an unknown state), call
//! [`PooledConnection::mark_broken`] so the connection is closed instead of reused; the
//! drivers' `has_broken` catches connections the server closed without that.
//!
//! ```
//! # use sluicegate::doc_fixture::RefusingManager as Manager;
//! use std::time::Duration;
//!
//! let pool = sluicegate::Pool::builder()
//!     .connection_timeout(Duration::from_millis(100))
//!     .error_handler(Box::new(sluicegate::NopErrorHandler))
//!     .build_unchecked(Manager);
//! match pool.get() {
//!     Ok(_conn) => { /* serve the request */ }
//!     Err(err) if err.is_timeout() => {
//!         // "timed out waiting for connection: refused", with the pool's numbers.
//!         assert!(err.to_string().starts_with("timed out waiting for connection"));
//!         assert_eq!(err.last_error().unwrap().to_string(), "refused");
//!     }
//!     Err(err) => panic!("{err}"),
//! }
//! ```
//!
//! # Exporting metrics
//!
//! [`Pool::metrics`] gives a snapshot of every gauge and counter. With the feature `metrics`,
//! every pool also publishes them through the [`metrics`](https://docs.rs/metrics) facade, to
//! whatever recorder the application installed (Prometheus, StatsD, OpenTelemetry):
//!
//! ```toml
//! sluicegate = { version = "0.1", features = ["metrics"] }
//! metrics-exporter-prometheus = "0.18"
//! ```
//!
//! Every series carries the label `pool` with the pool's name.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `sluicegate_connections` | gauge | open connections, idle and in use |
//! | `sluicegate_connections_idle` | gauge | connections ready to be checked out |
//! | `sluicegate_connections_in_use` | gauge | connections checked out |
//! | `sluicegate_connections_max` | gauge | `max_size` |
//! | `sluicegate_waiting_threads` | gauge | threads waiting for a connection |
//! | `sluicegate_checkouts_total` | counter | connections handed out |
//! | `sluicegate_timeouts_total` | counter | check-outs that gave up waiting |
//! | `sluicegate_connections_created_total` | counter | connections opened |
//! | `sluicegate_connect_failures_total` | counter | connects that failed |
//! | `sluicegate_connections_closed_total` | counter | connections closed, by label `reason`: `broken`, `invalid`, `max_lifetime`, `idle_timeout`, `evicted`, `shutdown`, `shrunk` |
//! | `sluicegate_leaks_total` | counter | connections reported as leaked |
//! | `sluicegate_wait_seconds` | histogram | how long each check-out took to get its connection (0 when one was idle and needed no check) |
//! | `sluicegate_usage_seconds` | histogram | how long each connection was held, check-out to return |
//! | `sluicegate_connect_seconds` | histogram | how long each successful connect took, customizer included |
//!
//! The gauges and counters are the pool's own [`Metrics`], copied out by the pool's reaper
//! thread at least once a second (counters with `absolute`, so nothing is counted twice) and
//! once more when the pool closes: they cost the check-out path nothing. The histograms are
//! recorded as things happen: with the feature on, each check-out reads the precise clock at
//! both ends (about 50 ns each) and records two samples.
//!
//! Install the recorder before building pools: a histogram is bound to the recorder present
//! when its pool was built, as with any `metrics` handle. Gauges and counters are looked up on
//! every publication and so reach a recorder installed later too. With
//! `metrics-exporter-prometheus`, give the `sluicegate_*_seconds` series buckets
//! (`set_buckets_for_metric(Matcher::Prefix("sluicegate_".into()), ..)`) so that they render as
//! Prometheus histograms, which add up across instances; `examples/http_server.rs` does.
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
