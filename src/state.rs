//! The state behind a pool's lock: idle connections, the queue of waiting threads, and the
//! counts that keep the pool within `max_size`. Nothing here calls a driver, a handler or the
//! logger, or drops a connection: methods that retire connections hand them back to the caller,
//! who closes them after unlocking.
//!
//! Invariants, true whenever the lock is free:
//! 1. Every open connection is in exactly one place: `idle`, `handed` (given to a waiting thread
//!    that has not picked it up yet), being validated by the reaper (counted in `validating`),
//!    or checked out (owned by a `PooledConnection`). `open` counts all four; `opening` and
//!    `closing` count connections on their way in and out.
//! 2. The pool never holds more places than `max_size` allows, and a smaller `max_size` (set at
//!    run time) is reached as connections come back:
//!    - a. The places held, `open + opening + closing`, grow only when a connect starts, and
//!      no connect starts unless they are below `max_size` (asserted in `begin_open`): so they
//!      never exceed `max_size` but after it was lowered, and then only come down, to
//!      `max_size` at the least, as places free.
//!    - b. Connections beyond `max_size` are never idle: `open + opening > max_size` implies
//!      `idle.is_empty()`. Lowering `max_size` retires idle connections (least recently used
//!      first) until this holds, and any connection that comes back (checked in, validated by
//!      keepalive, just opened) while `open + opening > max_size` counting itself is retired
//!      ([`Retire::Shrunk`]) instead of kept. Once every connection that was out has come back,
//!      `open <= max_size`.
//!    - c. `min_idle <= max_size` (the setters reject anything else, as `build` does).
//! 3. No connection is idle while a thread waits: a connection that comes back or is opened goes
//!    to the longest-waiting thread first, so `!idle.is_empty()` implies `waiters.is_empty()`.
//! 4. A waiting thread's ticket is in `waiters` until it is handed a connection (then it is in
//!    `handed`), gives up, or the pool closes.
//! 5. `next_reap` is never later than the reaper's next wake-up, and no idle connection
//!    expires before `next_reap` without the reaper being woken for it: a connection that
//!    becomes idle with an earlier deadline (its lifetime, or its own idle timeout) lowers it
//!    and sets `replan`. (Idle timeouts of older connections are looked at by the reaper's
//!    planned rounds, at least every `reaper_rate`.)
//! 6. At most [`MAX_OPENING`] connections are being opened, and no connect starts before
//!    `retry_at`: after a failed connect, or a new connection that failed its first validation,
//!    the next one waits out a back-off that grows with each failure in a row and never
//!    shrinks below [`FIRST_BACKOFF`], so a failing database is never hammered.
//!
//! Debug builds check these after every change (`PoolState::check`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Stamp;
use crate::config::Settings;
use crate::error::{Cause, Counts, Error, Failed, LastError};
use crate::extensions::Extensions;
use crate::metrics::{Metrics, State};
use crate::sync::Condvar;

/// A physical connection and what the pool knows about it. Boxed, so that moving it between
/// the idle stack, a waiter and a guard copies one pointer.
pub(crate) struct Conn<C, H> {
    pub(crate) raw: C,
    /// The connection's own reference to its pool (`core::Owner`); opaque here.
    pub(crate) owner: H,
    pub(crate) id: u64,
    pub(crate) born: Stamp,
    /// When `max_lifetime` runs out ([`Stamp::NEVER`] without one).
    pub(crate) expires: Stamp,
    /// The pool's generation when the connection was opened; `evict_all` starts a new one.
    pub(crate) generation: u64,
    /// When the connection last came back (or was opened): its idle time counts from here.
    pub(crate) checked_in: Stamp,
    /// When the connection was last known to work: checked in, opened or validated. The skip
    /// window and keepalive count from here.
    pub(crate) verified: Stamp,
    /// Whether it ever worked: passed a validation or came back healthy. A connection that
    /// fails its first validation counts as a failed connect, for back-off.
    pub(crate) proven: bool,
    pub(crate) extensions: Extensions,
}

/// How deep into the idle stack a check-out looks for the connection its thread used last.
const AFFINITY_DEPTH: usize = 8;

/// Why the pool closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retire {
    Broken,
    Invalid,
    MaxLifetime,
    IdleTimeout,
    Evicted,
    Shutdown,
    /// `max_size` was lowered below the connections open.
    Shrunk,
}

impl std::fmt::Display for Retire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Retire::Broken => "broken",
            Retire::Invalid => "failed validation",
            Retire::MaxLifetime => "max_lifetime reached",
            Retire::IdleTimeout => "idle_timeout reached",
            Retire::Evicted => "evicted",
            Retire::Shutdown => "pool closed",
            Retire::Shrunk => "max_size lowered",
        })
    }
}

/// Where a thread joins the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejoin {
    /// A new check-out: behind everyone waiting.
    AtTheBack,
    /// A check-out that already waited its turn and lost the connection it was given to a
    /// failed check: it keeps its turn.
    AtTheHead,
}

/// A thread waiting in line for a connection.
struct Waiter {
    ticket: u64,
    wake: Arc<Condvar>,
}

/// The pool's counters but `checkouts` (the gauges are derived from the collections).
#[derive(Default)]
struct Counters {
    waited: u64,
    wait_time: Duration,
    timeouts: u64,
    created: u64,
    connect_failures: u64,
    closed_broken: u64,
    closed_invalid: u64,
    closed_max_lifetime: u64,
    closed_idle_timeout: u64,
    closed_evicted: u64,
    closed_shutdown: u64,
    closed_shrunk: u64,
    detached: u64,
}

/// How many connections the pool opens at once: one, on its own thread. This bounds the load a
/// pool puts on a database that is struggling or coming back up.
const MAX_OPENING: u32 = 1;

/// The first retry after a failure waits this long; each further failure in a row doubles it.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// Retries never wait longer than this, nor longer than a quarter of `connection_timeout`
/// (so that a waiting caller sees a few), so a pool notices within seconds that its database
/// is back...
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// ...but the cap is never below this, whatever `connection_timeout` is: a tiny timeout must
/// not turn the back-off into a storm of connects.
const MIN_BACKOFF_CAP: Duration = Duration::from_millis(50);

/// How long to wait before the next connect after `failures` failures in a row.
pub(crate) fn backoff(failures: u32, connection_timeout: Duration) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(20));
    let cap = (connection_timeout / 4).clamp(MIN_BACKOFF_CAP, MAX_BACKOFF);
    doubled.min(cap)
}

/// The hot fields come first, in this order, so that with the lock word they fill one cache
/// line: a check-out or check-in that finds no one waiting touches only that line (and reads
/// the rarely written ones below).
#[repr(C)]
pub(crate) struct PoolState<C, H> {
    /// Most recently used last.
    idle: Vec<Box<Conn<C, H>>>,
    open: u32,
    opening: u32,
    closing: u32,
    closed: bool,
    generation: u64,
    checkouts: u64,
    /// The earliest deadline the reaper will wake up for (invariant 5).
    next_reap: Stamp,
    /// A check-in lowered `next_reap`: the reaper must be woken to replan.
    replan: bool,
    max_size: u32,
    /// `min_idle` as the user set it (`None`: follow `max_size`); see [`PoolState::min_idle`].
    min_idle: Option<u32>,
    idle_timeout: Option<Duration>,
    /// Idle connections the reaper took out to validate.
    validating: u32,
    /// Longest waiting first.
    waiters: VecDeque<Waiter>,
    handed: Vec<(u64, Box<Conn<C, H>>)>,
    next_ticket: u64,
    /// Failures in a row (connects, and new connections failing their first validation), for
    /// back-off; a connection that proves itself ends the run.
    failures: u32,
    /// `connection_timeout`, which caps the back-off.
    connection_timeout: Duration,
    /// The last connect failed with an error the manager called permanent.
    permanent: bool,
    /// No connect before this, after a failure.
    retry_at: Option<Instant>,
    last_error: Option<(Arc<Cause>, Failed, Instant)>,
    /// Why a pool that could not start refuses check-outs.
    refusal: Option<Error>,
    counters: Counters,
}

impl<C, H> PoolState<C, H> {
    pub(crate) fn new(settings: &Settings) -> PoolState<C, H> {
        let Settings {
            max_size,
            min_idle,
            idle_timeout,
            connection_timeout,
            ..
        } = *settings;
        PoolState {
            idle: Vec::with_capacity(max_size.min(1024) as usize),
            open: 0,
            opening: 0,
            closing: 0,
            closed: false,
            generation: 0,
            checkouts: 0,
            next_reap: Stamp::NEVER,
            replan: false,
            max_size,
            min_idle,
            idle_timeout,
            validating: 0,
            waiters: VecDeque::new(),
            handed: Vec::new(),
            next_ticket: 0,
            failures: 0,
            connection_timeout,
            permanent: false,
            retry_at: None,
            last_error: None,
            refusal: None,
            counters: Counters::default(),
        }
    }

    /// Whether the pool was closed (or could not start): check-outs are refused.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.closed
    }

    /// Takes the most recently used idle connection. Never takes one ahead of a waiting thread
    /// (by invariant 3 there is none idle while a thread waits).
    #[inline]
    #[cfg(test)]
    pub(crate) fn take_idle(&mut self) -> Option<Box<Conn<C, H>>> {
        // No connection has this id (the tests' ids are small).
        self.take_idle_preferring(u64::MAX)
    }

    /// Like [`take_idle`](PoolState::take_idle), but takes connection `preferred` (the calling
    /// thread's last) if it is among the most recently returned (why: `Pool`'s "Fairness").
    #[inline]
    pub(crate) fn take_idle_preferring(&mut self, preferred: u64) -> Option<Box<Conn<C, H>>> {
        debug_assert!(self.idle.is_empty() || self.waiters.is_empty());
        let top = self.idle.len();
        // Only the top few: each look is a pointer chase under the lock.
        let near = top.saturating_sub(AFFINITY_DEPTH);
        let conn = match self.idle[near..].iter().rposition(|c| c.id == preferred) {
            // `remove`, not `swap_remove`: the stack stays in check-in order for the sweep.
            Some(at) => self.idle.remove(near + at),
            None => self.idle.pop()?,
        };
        self.checkouts += 1;
        self.check();
        Some(conn)
    }

    /// Whether the opener thread should open a connection now (back-off aside): some thread
    /// waits that no connection being opened will serve, or there are fewer idle connections
    /// than `min_idle`, and there is room.
    #[inline]
    pub(crate) fn wants_connection(&self) -> bool {
        self.open + self.opening + self.closing < self.max_size
            && self.opening < MAX_OPENING
            && !self.closed
            && (self.waiters.len() as u32 > self.opening
                || self.idle.len() as u32 + self.opening < self.min_idle())
    }

    /// When the opener thread may try to connect again after failures (`None`: now).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Puts the calling thread in line, where `rejoin` says.
    pub(crate) fn enqueue(&mut self, wake: Arc<Condvar>, rejoin: Rejoin) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let waiter = Waiter { ticket, wake };
        match rejoin {
            Rejoin::AtTheBack => self.waiters.push_back(waiter),
            Rejoin::AtTheHead => self.waiters.push_front(waiter),
        }
        self.check();
        ticket
    }

    /// The connection handed to `ticket`, if one was.
    pub(crate) fn take_handed(&mut self, ticket: u64) -> Option<Box<Conn<C, H>>> {
        let at = self.handed.iter().position(|(t, _)| *t == ticket)?;
        self.checkouts += 1;
        let conn = self.handed.swap_remove(at).1;
        self.check();
        Some(conn)
    }

    /// Takes `ticket` out of line (it gave up, or the pool closed).
    pub(crate) fn leave(&mut self, ticket: u64) {
        if let Some(at) = self.waiters.iter().position(|w| w.ticket == ticket) {
            self.waiters.remove(at);
        }
        self.check();
    }

    /// A connection just taken (idle or handed over) failed the taker's checks: it is not a
    /// check-out after all, and it closes for `reason`. One that never worked counts as a failed
    /// connect, for back-off (invariant 6).
    pub(crate) fn reject(&mut self, reason: Retire, cause: Option<Arc<Cause>>, proven: bool) {
        self.checkouts -= 1;
        if let Some(cause) = cause {
            self.record_invalid(cause);
        }
        if !proven {
            self.failed_again(Instant::now());
        }
        self.retire(reason);
        self.check();
    }

    pub(crate) fn record_wait(&mut self, waited: Duration) {
        self.counters.waited += 1;
        self.counters.wait_time += waited;
        self.check();
    }

    pub(crate) fn record_timeout(&mut self) {
        self.counters.timeouts += 1;
        self.check();
    }

    /// Makes `conn` available: to the longest-waiting thread, else to the idle stack.
    fn give(&mut self, conn: Box<Conn<C, H>>) {
        match self.waiters.pop_front() {
            Some(waiter) => {
                self.handed.push((waiter.ticket, conn));
                waiter.wake.notify_one();
            }
            None => self.idle.push(conn),
        }
    }

    /// Takes back a checked-out connection, or says why it must close instead: `verdict` is
    /// the returning thread's own finding (broken, expired), and the pool adds its own (closed,
    /// evicted). A retired connection counts as closing until [`PoolState::closed_one`].
    pub(crate) fn check_in(
        &mut self,
        mut conn: Box<Conn<C, H>>,
        verdict: Option<Retire>,
        now: Stamp,
    ) -> Option<(Box<Conn<C, H>>, Retire)> {
        let verdict = verdict.or_else(|| self.pool_verdict(&conn));
        if let Some(reason) = verdict {
            self.retire(reason);
            self.check();
            return Some((conn, reason));
        }
        self.proved(&mut conn);
        self.admit(conn, now);
        None
    }

    /// Makes a healthy connection available, as of `now`: to the longest-waiting thread, else
    /// to the idle stack, telling the reaper if it brings an earlier deadline.
    fn admit(&mut self, mut conn: Box<Conn<C, H>>, now: Stamp) {
        conn.checked_in = now;
        conn.verified = now;
        self.watch_for(&conn);
        self.give(conn);
        self.check();
    }

    /// The first moment the reaper must look at `conn` if it sits idle: its lifetime, or its
    /// idle timeout.
    fn reap_due(&self, conn: &Conn<C, H>) -> Stamp {
        match self.idle_timeout {
            Some(after) => conn.expires.min(conn.checked_in.after(after)),
            None => conn.expires,
        }
    }

    /// Keeps invariant 5 for a connection about to be idle: lowers `next_reap` to its
    /// deadline if that is earlier, and asks for the reaper to be woken.
    fn watch_for(&mut self, conn: &Conn<C, H>) {
        let due = self.reap_due(conn);
        if due < self.next_reap {
            self.next_reap = due;
            self.replan = true;
        }
    }

    /// Asserts the invariants (module doc) in debug builds; called after every change.
    #[inline]
    fn check(&self) {
        #[cfg(debug_assertions)]
        {
            assert!(
                self.open + self.opening <= self.max_size || self.idle.is_empty(),
                "{} idle connections beyond max_size {} (open {}, opening {})",
                self.idle.len(),
                self.max_size,
                self.open,
                self.opening
            );
            assert!(self.min_idle() <= self.max_size);
            assert!(self.opening <= MAX_OPENING);
            assert!(
                self.idle.is_empty() || self.waiters.is_empty(),
                "a connection is idle while a thread waits"
            );
            assert!(
                self.idle.len() + self.handed.len() + self.validating as usize
                    <= self.open as usize,
                "more connections placed than open"
            );
            for (ticket, _) in &self.handed {
                assert!(
                    self.waiters.iter().all(|w| w.ticket != *ticket),
                    "ticket {ticket} both handed a connection and in line"
                );
            }
            if self.closed {
                assert!(self.idle.is_empty() && self.handed.is_empty() && self.waiters.is_empty());
            }
            if !self.replan {
                for conn in &self.idle {
                    assert!(
                        conn.expires >= self.next_reap,
                        "an idle connection expires before the reaper's next round"
                    );
                }
            }
        }
    }

    /// `conn` worked: it came back healthy or passed a validation, so the database does too,
    /// and a run of failures is over.
    fn proved(&mut self, conn: &mut Conn<C, H>) {
        conn.proven = true;
        self.failures = 0;
    }

    /// One more failure in a row: no connect before the back-off it earns.
    fn failed_again(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = now.checked_add(backoff(self.failures, self.connection_timeout));
    }

    /// Whether a check-in since the last call brought a deadline the reaper must wake for.
    /// Not followed by a check: invariant 5 holds again once the caller has woken the reaper
    /// and it has replanned.
    #[inline]
    pub(crate) fn take_replan(&mut self) -> bool {
        std::mem::take(&mut self.replan)
    }

    /// The pool's own reason to close a connection that comes back (counted in `open`): the
    /// pool closed, the connection belongs to an evicted generation, or the pool holds more
    /// connections than a lowered `max_size` allows (invariant 2b).
    fn pool_verdict(&self, conn: &Conn<C, H>) -> Option<Retire> {
        if self.closed {
            Some(Retire::Shutdown)
        } else if conn.generation != self.generation {
            Some(Retire::Evicted)
        } else if self.open + self.opening > self.max_size {
            Some(Retire::Shrunk)
        } else {
            None
        }
    }

    /// Places held: connections open, being opened and being closed.
    fn places(&self) -> u32 {
        self.open + self.opening + self.closing
    }

    /// The most places the pool may hold now (invariant 2a): `max_size`, or more while
    /// connections beyond a lowered `max_size` are still out.
    #[cfg(test)]
    fn ceiling(&self) -> u32 {
        self.max_size.max(self.places())
    }

    /// How many idle connections the pool keeps ready: `min_idle` as set, or `max_size`.
    #[inline]
    fn min_idle(&self) -> u32 {
        self.min_idle.unwrap_or(self.max_size)
    }

    /// Sets `max_size` at run time, as `Pool::set_max_size` says (the caller wakes the opener);
    /// returns the idle connections it retires, for the caller to close after unlocking
    /// (invariant 2b).
    pub(crate) fn set_max_size(&mut self, max_size: u32) -> Result<Vec<Box<Conn<C, H>>>, Error> {
        if max_size == 0 {
            return Err(Error::config("max_size", "must be at least 1, got 0"));
        }
        if let Some(min_idle) = self.min_idle.filter(|m| *m > max_size) {
            return Err(Error::config(
                "max_size",
                format!(
                    "must not be below min_idle ({min_idle}), got {max_size}: lower min_idle first"
                ),
            ));
        }
        self.max_size = max_size;
        let mut out = Vec::new();
        while self.open + self.opening > max_size && !self.idle.is_empty() {
            // The bottom of the stack is the least recently used.
            out.push(self.idle.remove(0));
            self.retire(Retire::Shrunk);
        }
        self.check();
        Ok(out)
    }

    /// Sets `min_idle` at run time, as `Pool::set_min_idle` says (the caller wakes the opener).
    pub(crate) fn set_min_idle(&mut self, min_idle: Option<u32>) -> Result<(), Error> {
        if let Some(min_idle) = min_idle.filter(|m| *m > self.max_size) {
            return Err(Error::config(
                "min_idle",
                format!(
                    "must not exceed max_size ({}), got {min_idle}",
                    self.max_size
                ),
            ));
        }
        self.min_idle = min_idle;
        self.check();
        Ok(())
    }

    /// `max_size` and `min_idle` as set (the latter `None` when it follows `max_size`).
    pub(crate) fn sizes(&self) -> (u32, Option<u32>) {
        (self.max_size, self.min_idle)
    }

    /// Whether every connection is gone: none open (checked out, idle, handed over, being
    /// validated), being opened or being closed. For `close_within`, once the pool is closed.
    pub(crate) fn is_empty(&self) -> bool {
        self.places() == 0
    }

    /// Connections still checked out (or being validated by keepalive), and places held by
    /// connections being opened or closed, for `close_within`'s answer.
    pub(crate) fn outstanding(&self) -> (u32, u32) {
        (self.open, self.opening + self.closing)
    }

    /// Counts a connection that leaves `open` to be closed for `reason`.
    fn retire(&mut self, reason: Retire) {
        self.open -= 1;
        self.closing += 1;
        let c = &mut self.counters;
        match reason {
            Retire::Broken => c.closed_broken += 1,
            Retire::Invalid => c.closed_invalid += 1,
            Retire::MaxLifetime => c.closed_max_lifetime += 1,
            Retire::IdleTimeout => c.closed_idle_timeout += 1,
            Retire::Evicted => c.closed_evicted += 1,
            Retire::Shutdown => c.closed_shutdown += 1,
            Retire::Shrunk => c.closed_shrunk += 1,
        }
    }

    /// A retired connection has finished closing: its place is free.
    pub(crate) fn closed_one(&mut self) {
        self.closing -= 1;
        self.check();
    }

    /// A checked-out connection leaves the pool for good.
    pub(crate) fn detach(&mut self) {
        self.open -= 1;
        self.counters.detached += 1;
        self.check();
    }

    /// Records a validation failure as the last error.
    fn record_invalid(&mut self, cause: Arc<Cause>) {
        self.last_error = Some((cause, Failed::Validation, Instant::now()));
    }

    /// The pool's thread starts opening a connection; returns the generation it will belong to.
    pub(crate) fn begin_open(&mut self) -> u64 {
        debug_assert!(self.places() < self.max_size, "a connect beyond max_size");
        self.opening += 1;
        self.check();
        self.generation
    }

    /// A connection opened: it joins the pool, or, if the pool closed or was evicted meanwhile,
    /// comes back to be closed.
    pub(crate) fn opened(&mut self, conn: Box<Conn<C, H>>) -> Option<(Box<Conn<C, H>>, Retire)> {
        self.opening -= 1;
        self.open += 1;
        self.counters.created += 1;
        // The run of failures goes on until the connection proves itself (invariant 6).
        self.permanent = false;
        self.retry_at = None;
        if self
            .last_error
            .as_ref()
            .is_some_and(|e| e.1 == Failed::Connect)
        {
            self.last_error = None;
        }
        if let Some(reason) = self.pool_verdict(&conn) {
            self.retire(reason);
            self.check();
            return Some((conn, reason));
        }
        let now = conn.checked_in;
        self.admit(conn, now);
        None
    }

    /// A connect failed; the next try waits out the back-off. If the error is `permanent` and
    /// no connection can come back, the waiting threads are woken to fail.
    pub(crate) fn open_failed(&mut self, cause: Arc<Cause>, permanent: bool) {
        self.opening -= 1;
        self.counters.connect_failures += 1;
        self.permanent = permanent;
        let now = Instant::now();
        self.failed_again(now);
        self.last_error = Some((cause, Failed::Connect, now));
        if self.refuses_now() {
            for waiter in &self.waiters {
                waiter.wake.notify_one();
            }
        }
        self.check();
    }

    /// The permanent connect error to fail a check-out with at once: the last connect failed
    /// with one, and no connection is open that could come back to a waiting thread.
    pub(crate) fn refuses_now(&self) -> bool {
        self.permanent && self.open == 0
    }

    /// The permanent error behind [`PoolState::refuses_now`].
    pub(crate) fn permanent_error(&self) -> Option<Arc<Cause>> {
        match &self.last_error {
            Some((cause, Failed::Connect, _)) if self.refuses_now() => Some(cause.clone()),
            _ => None,
        }
    }

    /// Closes the pool: every waiting thread is woken to fail, and the idle connections (and
    /// those handed to a waiter not yet awake) come back to be closed.
    pub(crate) fn shut_down(&mut self) -> Vec<Box<Conn<C, H>>> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        for waiter in self.waiters.drain(..) {
            waiter.wake.notify_one();
        }
        let mut out: Vec<_> = self.idle.drain(..).collect();
        out.extend(self.handed.drain(..).map(|(_, conn)| conn));
        for _ in 0..out.len() {
            self.retire(Retire::Shutdown);
        }
        self.check();
        out
    }

    /// Closes a pool that cannot work, for good: every check-out fails with `error`.
    pub(crate) fn refuse(&mut self, error: Error) -> Vec<Box<Conn<C, H>>> {
        self.refusal = Some(error);
        self.shut_down()
    }

    /// The error a closed pool answers a check-out with.
    pub(crate) fn refusal(&self, pool: &Arc<str>) -> Error {
        match &self.refusal {
            Some(error) => error.clone(),
            None => Error::closed(pool),
        }
    }

    /// Starts a new generation: idle connections come back to be closed now, checked-out ones
    /// will close when they return, connections being opened when they arrive.
    pub(crate) fn evict_all(&mut self) -> Vec<Box<Conn<C, H>>> {
        self.generation += 1;
        let out: Vec<_> = self.idle.drain(..).collect();
        for _ in 0..out.len() {
            self.retire(Retire::Evicted);
        }
        self.check();
        out
    }

    /// Takes out the idle connections past their lifetime, and those beyond `min_idle` idle
    /// since before `idle_since` (oldest first), to be closed.
    pub(crate) fn sweep(
        &mut self,
        now: Stamp,
        idle_since: Option<Stamp>,
    ) -> Vec<(Box<Conn<C, H>>, Retire)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.idle.len() {
            if self.idle[at].expires <= now {
                out.push((self.idle.remove(at), Retire::MaxLifetime));
            } else {
                at += 1;
            }
        }
        let excess = (self.idle.len() as u32).saturating_sub(self.min_idle()) as usize;
        if let Some(cutoff) = idle_since.filter(|_| excess > 0) {
            // Oldest first, never below min_idle. The idle stack is nearly in check-in order,
            // but not exactly (a connection back from keepalive, clocks read before locking).
            let mut stale: Vec<(Stamp, u64)> = self
                .idle
                .iter()
                .filter(|c| c.checked_in <= cutoff)
                .map(|c| (c.checked_in, c.id))
                .collect();
            stale.sort_unstable();
            for (_, id) in stale.into_iter().take(excess) {
                if let Some(at) = self.idle.iter().position(|c| c.id == id) {
                    out.push((self.idle.remove(at), Retire::IdleTimeout));
                }
            }
        }
        for (_, reason) in &out {
            self.retire(*reason);
        }
        self.check();
        out
    }

    /// Takes out the idle connection that has gone longest without being verified, if that
    /// is at least `keepalive` (before `due`), for the keepalive thread to validate. It is
    /// neither idle nor checked out meanwhile.
    pub(crate) fn take_for_keepalive(&mut self, due: Stamp) -> Option<Box<Conn<C, H>>> {
        let (at, _) = self
            .idle
            .iter()
            .enumerate()
            .filter(|(_, c)| c.verified <= due)
            .min_by_key(|(_, c)| c.verified)?;
        self.validating += 1;
        let conn = self.idle.remove(at);
        self.check();
        Some(conn)
    }

    /// A connection passed its keepalive validation at `now`: it goes to a waiting thread, or
    /// back among the idle ones where its idle time puts it; unless it must close now.
    pub(crate) fn kept_alive(
        &mut self,
        mut conn: Box<Conn<C, H>>,
        now: Stamp,
    ) -> Option<(Box<Conn<C, H>>, Retire)> {
        self.validating -= 1;
        conn.verified = now;
        self.proved(&mut conn);
        let verdict = self
            .pool_verdict(&conn)
            .or((conn.expires <= now).then_some(Retire::MaxLifetime));
        if let Some(reason) = verdict {
            self.retire(reason);
            return Some((conn, reason));
        }
        match self.waiters.pop_front() {
            Some(waiter) => {
                self.handed.push((waiter.ticket, conn));
                waiter.wake.notify_one();
            }
            None => {
                // Invariant 5: the reaper may have planned while this connection was out.
                self.watch_for(&conn);
                let at = self
                    .idle
                    .partition_point(|c| c.checked_in <= conn.checked_in);
                self.idle.insert(at, conn);
            }
        }
        self.check();
        None
    }

    /// A connection failed its keepalive validation: it closes. A new one that never worked
    /// counts toward the connect back-off.
    pub(crate) fn keepalive_failed(&mut self, cause: Arc<Cause>, proven: bool) {
        self.validating -= 1;
        self.record_invalid(cause);
        if !proven {
            self.failed_again(Instant::now());
        }
        self.retire(Retire::Invalid);
        self.check();
    }

    /// When the keepalive thread must next look: the earliest time an idle connection becomes
    /// due (`after` past its last verification), or `latest`.
    pub(crate) fn plan_keepalive(&self, after: Duration, latest: Stamp) -> Stamp {
        self.idle
            .iter()
            .map(|c| c.verified.after(after))
            .fold(latest, Stamp::min)
    }

    /// Plans the reaper's next wake-up: the earliest deadline among the idle connections, or
    /// `latest`, whichever comes first (invariant 5).
    pub(crate) fn plan_reap(&mut self, latest: Stamp) -> Stamp {
        let mut next = latest;
        for conn in &self.idle {
            next = next.min(conn.expires);
        }
        if let Some(timeout) = self.idle_timeout {
            if self.idle.len() as u32 > self.min_idle() {
                if let Some(oldest) = self.idle.iter().map(|c| c.checked_in).min() {
                    next = next.min(oldest.after(timeout));
                }
            }
        }
        self.next_reap = next;
        self.replan = false;
        self.check();
        next
    }

    /// Whether `build` has its connections: at least `target` open. (`build` checks whether the
    /// pool closed meanwhile on its own, before asking.)
    pub(crate) fn has_open(&self, target: u32) -> bool {
        self.open >= target
    }

    /// The gauges, for an error message.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            max_size: self.max_size,
            in_use: self.open - self.idle_count(),
            idle: self.idle_count(),
            opening: self.opening,
            waiting: self.waiters.len() as u32,
        }
    }

    /// The last connect or validation error, with its age.
    pub(crate) fn last_error(&self) -> Option<LastError> {
        self.last_error.as_ref().map(|(cause, what, at)| LastError {
            cause: cause.clone(),
            what: *what,
            age: at.elapsed(),
        })
    }

    /// Idle connections, counting those the reaper is validating (they are not in use).
    fn idle_count(&self) -> u32 {
        self.idle.len() as u32 + self.validating
    }

    pub(crate) fn state(&self) -> State {
        State {
            connections: self.open,
            idle_connections: self.idle_count(),
        }
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let c = &self.counters;
        let idle = self.idle_count();
        Metrics {
            max_size: self.max_size,
            connections: self.open,
            idle,
            in_use: self.open - idle,
            waiting: self.waiters.len() as u32,
            opening: self.opening,
            closing: self.closing,
            checkouts: self.checkouts,
            waited: c.waited,
            wait_time: c.wait_time,
            timeouts: c.timeouts,
            created: c.created,
            connect_failures: c.connect_failures,
            closed_broken: c.closed_broken,
            closed_invalid: c.closed_invalid,
            closed_max_lifetime: c.closed_max_lifetime,
            closed_idle_timeout: c.closed_idle_timeout,
            closed_evicted: c.closed_evicted,
            closed_shutdown: c.closed_shutdown,
            closed_shrunk: c.closed_shrunk,
            detached: c.detached,
            // Kept by the leak detector, outside the lock.
            leaks_detected: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Stamp {
        Stamp::ORIGIN.after(Duration::from_secs(secs))
    }

    fn conn(id: u64, generation: u64) -> Box<Conn<u64, ()>> {
        Box::new(Conn {
            raw: id,
            owner: (),
            id,
            born: t(0),
            expires: Stamp::NEVER,
            generation,
            checked_in: t(0),
            verified: t(0),
            proven: false,
            extensions: Extensions::new(),
        })
    }

    fn limits(max_size: u32, min_idle: u32) -> Settings {
        Settings {
            max_size,
            min_idle: Some(min_idle),
            idle_timeout: None,
            ..Settings::default()
        }
    }

    fn open_one(state: &mut PoolState<u64, ()>, id: u64) {
        let generation = state.begin_open();
        assert!(state.opened(conn(id, generation)).is_none());
    }

    #[test]
    fn backoff_doubles_up_to_its_caps() {
        let long = Duration::from_secs(30);
        assert_eq!(backoff(1, long), Duration::from_millis(10));
        assert_eq!(backoff(2, long), Duration::from_millis(20));
        assert_eq!(backoff(5, long), Duration::from_millis(160));
        assert_eq!(backoff(40, long), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, long), MAX_BACKOFF);
        assert_eq!(
            backoff(40, Duration::from_millis(400)),
            Duration::from_millis(100)
        );
        // However short the timeout, retries are spaced out.
        assert_eq!(backoff(1, Duration::from_nanos(1)), FIRST_BACKOFF);
        assert_eq!(backoff(40, Duration::from_nanos(1)), MIN_BACKOFF_CAP);
    }

    #[test]
    fn a_new_connection_failing_its_first_validation_counts_toward_the_back_off() {
        let mut s = PoolState::new(&limits(1, 0));
        s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheBack);
        for failures in 1..=3 {
            assert!(s.wants_connection());
            let generation = s.begin_open();
            assert!(s.opened(conn(failures, generation)).is_none());
            assert_eq!(
                s.retry_at(),
                None,
                "a connect that worked may be followed at once"
            );
            let handed = s.handed.pop().unwrap().1;
            let ticket = s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheHead);
            s.checkouts += 1;
            s.reject(Retire::Invalid, None, handed.proven);
            let wait = s.retry_at().unwrap() - Instant::now();
            let expected = backoff(failures as u32, Duration::from_secs(30));
            assert!(wait <= expected && wait > expected / 2, "{wait:?}");
            s.leave(ticket);
            s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheBack);
            s.closed_one();
        }
        // A connection that works ends the run.
        let generation = s.begin_open();
        assert!(s.opened(conn(9, generation)).is_none());
        let handed = s.handed.pop().unwrap().1;
        s.checkouts += 1;
        assert!(s.check_in(handed, None, t(1)).is_none());
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn a_thread_gets_back_the_connection_it_used_last_if_it_is_near_the_top() {
        let mut s = PoolState::new(&limits(12, 12));
        for id in 1..=12 {
            open_one(&mut s, id);
        }
        // Stack, bottom to top: 1 ..= 12.
        assert_eq!(s.take_idle_preferring(10).unwrap().id, 10);
        assert_eq!(
            s.take_idle_preferring(99).unwrap().id,
            12,
            "unknown: the top"
        );
        // 1 ..= 9, 11: 2 is deeper than a check-out looks.
        assert_eq!(s.take_idle_preferring(2).unwrap().id, 11);
        let order: Vec<u64> = s.idle.iter().map(|c| c.id).collect();
        assert_eq!(
            order,
            (1..=9).collect::<Vec<_>>(),
            "still in check-in order"
        );
        assert_eq!(s.checkouts, 3);
    }

    #[test]
    fn idle_is_most_recently_used_first() {
        let mut s = PoolState::new(&limits(3, 3));
        for id in 0..3 {
            open_one(&mut s, id);
        }
        let a = s.take_idle().unwrap();
        let b = s.take_idle().unwrap();
        assert_eq!((a.id, b.id), (2, 1));
        assert!(s.check_in(b, None, t(1)).is_none());
        assert!(s.check_in(a, None, t(2)).is_none());
        assert_eq!(s.take_idle().unwrap().id, 2);
    }

    #[test]
    fn returned_connection_goes_to_the_longest_waiter() {
        let mut s = PoolState::new(&limits(1, 1));
        open_one(&mut s, 7);
        let held = s.take_idle().unwrap();
        let first = s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheBack);
        let second = s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheBack);
        assert!(s.check_in(held, None, t(1)).is_none());
        // It was handed over, not left idle for a newcomer to take.
        assert!(s.take_idle().is_none());
        assert!(s.take_handed(second).is_none());
        assert_eq!(s.take_handed(first).unwrap().id, 7);
        assert_eq!(s.counts().waiting, 1);
    }

    #[test]
    fn demand_counts_connections_being_opened() {
        let mut s: PoolState<u64, ()> = PoolState::new(&limits(10, 0));
        assert!(!s.wants_connection());
        s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheBack);
        assert!(s.wants_connection());
        s.begin_open();
        // One waiter, one connection on its way: nothing more to open.
        assert!(!s.wants_connection());
    }

    #[test]
    fn eviction_retires_idle_now_and_checked_out_on_return() {
        let mut s = PoolState::new(&limits(2, 0));
        open_one(&mut s, 1);
        open_one(&mut s, 2);
        let out = s.take_idle().unwrap();
        assert_eq!(s.evict_all().len(), 1);
        let (back, why) = s.check_in(out, None, t(1)).unwrap();
        assert_eq!((back.id, why), (2, Retire::Evicted));
        let m = s.metrics();
        assert_eq!((m.connections, m.closing, m.closed_evicted), (0, 2, 2));
        s.closed_one();
        s.closed_one();
        assert_eq!(s.metrics().closing, 0);
    }

    #[test]
    fn sweep_keeps_min_idle_and_closes_oldest_first() {
        let mut s = PoolState::new(&limits(4, 1));
        for id in 0..3 {
            open_one(&mut s, id);
        }
        let (a, b, c) = (
            s.take_idle().unwrap(),
            s.take_idle().unwrap(),
            s.take_idle().unwrap(),
        );
        s.check_in(c, None, t(10));
        s.check_in(b, None, t(20));
        s.check_in(a, None, t(30));
        let out = s.sweep(t(100), Some(t(25)));
        let ids: Vec<_> = out.iter().map(|(c, _)| c.id).collect();
        assert_eq!(ids, vec![0, 1]);
        assert_eq!(s.state().idle_connections, 1);
    }

    #[test]
    fn shrinking_retires_idle_connections_now_and_the_rest_as_they_arrive() {
        let mut s = PoolState::new(&Settings {
            min_idle: None,
            ..limits(4, 0)
        });
        for id in 1..=3 {
            open_one(&mut s, id);
        }
        let out = s.take_idle().unwrap();
        let generation = s.begin_open();
        // Open 3 (one out) and one on its way: the idle ones go, least recently used first.
        let shrunk: Vec<u64> = s.set_max_size(1).unwrap().iter().map(|c| c.id).collect();
        assert_eq!(shrunk, vec![1, 2]);
        assert_eq!(
            (s.ceiling(), s.min_idle()),
            (4, 1),
            "min_idle follows max_size"
        );
        assert!(!s.wants_connection());
        s.closed_one();
        assert_eq!(s.ceiling(), 3, "the ceiling comes down as places free");
        s.closed_one();
        // The connection being opened arrives beyond the size: it is retired.
        let (arrived, why) = s.opened(conn(4, generation)).unwrap();
        assert_eq!((arrived.id, why), (4, Retire::Shrunk));
        s.closed_one();
        // The one that was out fits, and stays.
        assert!(s.check_in(out, None, t(1)).is_none());
        let m = s.metrics();
        assert_eq!((m.connections, m.idle, m.closed_shrunk), (1, 1, 3));
        assert_eq!(s.ceiling(), 1);
        // Growing makes room at once.
        assert!(s.set_max_size(3).unwrap().is_empty());
        assert!(s.wants_connection());
    }

    #[test]
    fn shut_down_wakes_waiters_and_drains_everything_idle_or_handed() {
        let mut s = PoolState::new(&limits(2, 0));
        open_one(&mut s, 1);
        open_one(&mut s, 2);
        let held = s.take_idle().unwrap();
        let held2 = s.take_idle().unwrap();
        let ticket = s.enqueue(Arc::new(Condvar::new()), Rejoin::AtTheBack);
        s.check_in(held, None, t(1));
        let drained = s.shut_down();
        assert_eq!(drained.len(), 1);
        assert!(s.take_handed(ticket).is_none());
        assert_eq!(s.counts().waiting, 0);
        let (_, why) = s.check_in(held2, None, t(2)).unwrap();
        assert_eq!(why, Retire::Shutdown);
        assert!(s.shut_down().is_empty());
    }
}
