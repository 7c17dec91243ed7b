//! The pool's opener thread, `sluice-<pool name>`: it opens connections when they are wanted
//! (one at a time, each attempt given `connection_timeout`, with capped exponential back-off
//! after failures) and gives each its lifetime deadline.
//!
//! Between jobs it holds only a weak reference to the pool, so it never keeps a pool alive; it
//! exits when the pool closes or its state is dropped (the wake-up channel disconnects). It
//! never holds the pool's lock while connecting, closing a connection, logging or calling a
//! handler, and a panic in any of those costs one attempt, never the thread nor the count of
//! connections being opened.

use std::hash::{BuildHasher, RandomState};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::clock::{Clock, Stamp};
use crate::error::Cause;
use crate::event::AcquireEvent;
use crate::extensions::Extensions;
use crate::manager::ManageConnection;
use crate::shared::{Home, ManagerCall, Shared, panic_text};
use crate::slots::Conn;

/// Connection ids, unique within the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Each connect attempt gets at least this long, whatever `connection_timeout` is: a shorter
/// one could never reach a database across a real network.
pub(crate) const MIN_CONNECT_TIME: Duration = Duration::from_millis(500);

/// What each connect attempt gets: `connection_timeout`, less a twentieth of it (at most
/// 100 ms) so that an attempt that fails gives up just before the caller who waited for it,
/// and that caller's error can say why; never less than [`MIN_CONNECT_TIME`].
fn attempt_time(connection_timeout: Duration) -> Duration {
    let margin = (connection_timeout / 20).min(Duration::from_millis(100));
    (connection_timeout - margin).max(MIN_CONNECT_TIME)
}

/// A connection's lifetime is `max_lifetime` shortened by up to this fraction of it (2.5%),
/// at random, so that connections opened together do not all expire together.
const LIFETIME_JITTER_DIVISOR: u32 = 40;

/// The lifetime of one connection: `max_lifetime` minus a random jitter of up to 2.5%.
fn jittered(max_lifetime: Duration) -> Duration {
    let spread = max_lifetime / LIFETIME_JITTER_DIVISOR;
    // A fresh `RandomState` is randomly keyed, so hashing anything with it gives 64 random bits.
    let bits = RandomState::new().hash_one(NEXT_ID.load(Ordering::Relaxed));
    let fraction = (bits >> 11) as f64 / (1u64 << 53) as f64;
    max_lifetime - spread.mul_f64(fraction)
}

/// What the thread does next.
enum Job {
    Exit,
    /// Open a connection for this generation of the pool.
    Open(u64),
    /// Nothing to do until this time (or until woken).
    Sleep(Option<Instant>),
}

/// The thread's body.
pub(crate) fn run<M>(pool: Weak<Shared<M>>, woken: Receiver<()>)
where
    M: ManageConnection,
{
    loop {
        let Some(shared) = pool.upgrade() else {
            return;
        };
        let until = match shared.next_job() {
            Job::Exit => return,
            Job::Sleep(until) => until,
            Job::Open(generation) => {
                shared.shielded("opening a connection", || shared.open(generation));
                continue;
            }
        };
        drop(shared);
        let disconnected = match until {
            Some(deadline) => woken.recv_deadline(deadline) == Err(RecvTimeoutError::Disconnected),
            None => woken.recv().is_err(),
        };
        if disconnected {
            return;
        }
    }
}

impl<M> Shared<M>
where
    M: ManageConnection,
{
    fn next_job(&self) -> Job {
        let mut slots = self.slots.lock();
        if slots.is_closed() {
            return Job::Exit;
        }
        if slots.wants_connection() {
            match slots.retry_at() {
                Some(retry) if retry > Instant::now() => return Job::Sleep(Some(retry)),
                _ => return Job::Open(slots.begin_open()),
            }
        }
        Job::Sleep(None)
    }

    /// Opens one connection (already counted as opening) and adds it to the pool. However
    /// this ends, even by a panic, the connection stops counting as being opened.
    fn open(self: &Arc<Self>, generation: u64) {
        let mut attempt = Attempt {
            shared: self,
            settled: false,
        };
        let budget = attempt_time(self.config.connection_timeout);
        let started = Instant::now();
        let mut extensions = Extensions::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut raw = self.manager.connect_within(budget, &mut extensions)?;
            self.config.customizer.on_acquire(&mut raw)?;
            Ok(raw)
        }));
        let took = started.elapsed();
        self.overran
            .check(&self.config.name, ManagerCall::Connect, budget, took);
        let raw = match outcome {
            Ok(Ok(raw)) => raw,
            Ok(Err(err)) => {
                let permanent = catch_unwind(AssertUnwindSafe(|| self.manager.is_permanent(&err)))
                    .unwrap_or(false);
                attempt.failed(Cause::capture(&err), permanent);
                self.shielded("the error handler", || {
                    self.config.error_handler.handle_error(err);
                });
                return;
            }
            Err(panic) => {
                let cause = Cause::message(format!("connect panicked: {}", panic_text(&panic)));
                attempt.failed(cause.clone(), false);
                log_shielded!(log::Level::Error, "pool {:?}: {cause}", self.config.name);
                return;
            }
        };
        #[cfg(feature = "metrics")]
        self.shielded("recording a metric", || self.histograms.connected(took));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // Stamped precisely: this is off the hot path, and release events report the age.
        let born = Clock::Precise.now();
        let expires = self
            .config
            .max_lifetime
            .map_or(Stamp::NEVER, |lifetime| born.after(jittered(lifetime)));
        let now = self.clock.now();
        let conn = Box::new(Conn {
            raw,
            home: Arc::new(Home(self.clone())),
            id,
            born,
            expires,
            generation,
            checked_in: now,
            verified: now,
            proven: false,
            extensions,
        });
        if self.config.events {
            // Before the connection is counted (so that its acquire comes before its checkout),
            // hence shielded: a panicking handler must not lose the connection being opened.
            self.shielded("the acquire event handler", || {
                self.config
                    .event_handler
                    .handle_acquire(AcquireEvent { id });
            });
        }
        attempt.settled = true;
        let (retired, nudge) = {
            let mut slots = self.slots.lock();
            let retired = slots.opened(conn);
            self.progress.notify_all();
            (retired, slots.take_nudge())
        };
        if nudge {
            self.wake_reaper();
        }
        if let Some((conn, _)) = retired {
            self.close_conn(conn);
        }
    }
}

/// One connect attempt, counted as "being opened" until it settles: with a connection, or
/// with [`Attempt::failed`]. Dropped unsettled (a panic in the pool's own bookkeeping), it
/// settles as a failure, so the pool never waits for a connection that will not come.
struct Attempt<'a, M>
where
    M: ManageConnection,
{
    shared: &'a Shared<M>,
    settled: bool,
}

impl<M> Attempt<'_, M>
where
    M: ManageConnection,
{
    fn failed(&mut self, cause: Cause, permanent: bool) {
        self.settled = true;
        let mut slots = self.shared.slots.lock();
        slots.open_failed(Arc::new(cause), permanent);
        self.shared.progress.notify_all();
    }
}

impl<M> Drop for Attempt<'_, M>
where
    M: ManageConnection,
{
    fn drop(&mut self) {
        if !self.settled {
            self.failed(Cause::message("the connect attempt panicked"), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_shortened_by_up_to_two_and_a_half_percent() {
        let max = Duration::from_secs(1000);
        let lifetimes: Vec<Duration> = (0..200).map(|_| jittered(max)).collect();
        assert!(lifetimes.iter().all(|l| *l <= max && *l >= max - max / 40));
        let shortest = lifetimes.iter().min().unwrap();
        let longest = lifetimes.iter().max().unwrap();
        // 200 draws over a 25 s spread: all within 10 s of each other would mean no jitter.
        assert!(
            *longest - *shortest > Duration::from_secs(10),
            "{shortest:?}..{longest:?}"
        );
    }
}
