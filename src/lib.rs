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
//! impl sluice::ManageConnection for Manager {
//!     type Connection = Vec<String>;
//!     type Error = std::io::Error;
//!     fn connect(&self) -> Result<Vec<String>, std::io::Error> { Ok(Vec::new()) }
//!     fn is_valid(&self, _: &mut Vec<String>) -> Result<(), std::io::Error> { Ok(()) }
//!     fn has_broken(&self, _: &mut Vec<String>) -> bool { false }
//! }
//!
//! let pool = sluice::Pool::builder().pool_name("app").max_size(4).build(Manager)?;
//! let handles: Vec<_> = (0..16)
//!     .map(|i| {
//!         let pool = pool.clone();
//!         thread::spawn(move || -> Result<(), sluice::Error> {
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
//! # Ok::<(), sluice::Error>(())
//! ```
//!
//! # How a check-out works
//!
//! 1. An idle connection is taken at once, most recently used first.
//! 2. With none idle, the caller waits in a strict first-come, first-served queue; a connection
//!    that comes back goes straight to the longest-waiting caller. Meanwhile the pool's own
//!    thread opens a connection if callers outnumber the connections already being opened
//!    (never more than `max_size` in all). Callers never open connections themselves.
//! 3. With `test_on_check_out(true)` (the default), the connection is checked with
//!    [`ManageConnection::is_valid`] on the caller's thread, unless it was checked in less than
//!    [`validation_skip_window`](Builder::validation_skip_window) ago (500 ms by default). A
//!    connection that fails is closed and the caller goes on with the next one, within its
//!    original deadline.
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
//! # Choosing settings
//!
//! - `max_size`: the most connections the database will see from this pool. Size it to the
//!   work, not the thread count: threads beyond `max_size` wait in line, fairly.
//! - `min_idle`: `None` (the default) keeps the pool full; a smaller value lets a quiet service
//!   hold fewer connections, opened again on demand by the pool's thread.
//! - `test_on_check_out` and `validation_skip_window`: a connection that came back moments ago
//!   is handed out unchecked; one that sat idle longer is checked with a round trip first.
//!   Behind a proxy that may drop connections at any time, set the window to `Duration::ZERO`.
//! - `connection_timeout`: how long a caller waits before it gets an error that says why.
//! - `max_lifetime`: keep it below any idle cut-off of the database or a proxy in between.
//!
//! # Moving from r2d2
//!
//! Change `r2d2::` to `sluice::`. What differs:
//!
//! - A returning thread cannot take its connection back ahead of a waiting one (r2d2 lets it
//!   barge), so waits under load stay close to their mean.
//! - Connections are validated on check-out only when they have been idle for
//!   `validation_skip_window` (r2d2 validates every check-out, a round trip each time).
//! - Connections are opened by the pool's own thread, one at a time, when callers outnumber the
//!   connections being opened or `min_idle` asks; failures are retried with capped exponential
//!   back-off. `Builder::thread_pool` does not exist.
//! - Every timed-out caller gets the last database error (r2d2 gives some `Error(None)`).
//! - A panic in `connect`, in a customizer or in a handler costs one attempt, not a pool slot;
//!   a connection dropped during a panic is closed, not reused; `max_lifetime` is also checked
//!   when connections are checked out and come back; dropping the last `Pool` handle stops the
//!   pool's thread and closes its idle connections.
//! - `idle_timeout` never takes the pool below `min_idle` (r2d2 closes idle connections and then
//!   opens new ones to meet `min_idle`); with the default `min_idle` it closes nothing.
//! - Connections being closed count toward `max_size` until they are gone.
//! - Invalid settings make `build` return an error naming the setting instead of panicking in
//!   the setter.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod config;
mod error;
pub mod event;
mod extensions;
pub mod leak;
mod manager;
mod metrics;
mod opener;
mod pool;
mod reaper;
mod shared;
mod slots;

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
pub use crate::pool::{Pool, PooledConnection};
