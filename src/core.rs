//! The engine: the pool behind the handles, and the paths a connection takes through it:
//! check-out ([`Core::check_out`], which hands out through [`Core::lend`]), check-in
//! ([`Core::check_in`]: "what happens when a connection comes back"), closing
//! ([`Core::close_conn`]), and what the handles ask of it (close, evict, detach, resize,
//! readiness). It knows nothing of the public guard, nor of the threads that run it.
//!
//! The lock (`Core::state`) is only ever held to move a connection or change a count: every
//! driver call, handler call, log line and connection drop happens after it is released. A
//! thread that joined the queue keeps its place until it leaves with a connection that passed
//! its checks: if the connection it was handed fails them, it rejoins at the head of the queue
//! in the same critical section that retires the connection.

use std::cell::Cell;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Cause, Chain, Error, Permanent, Phase, TimedOut};
use crate::event::{CheckinEvent, CheckoutEvent, ReleaseEvent, TimeoutEvent};
use crate::human::Human;
use crate::leak::Tracker;
use crate::manager::ManageConnection;
use crate::metrics::Metrics;
use crate::state::{Conn, PoolState, Rejoin, Retire};
use crate::sync::{Condvar, Mutex, MutexGuard, thread};

/// The pool a connection belongs to, and its way back there: a strong reference to the
/// pool, one per connection, held by the connection (and, while it is out, its loan).
///
/// A guard must keep the pool alive, but if every guard cloned the pool's own `Arc`, every
/// check-out and check-in on every core would fight over that one reference count (it halves
/// throughput on two cores). A connection's owner is only touched by whoever holds the
/// connection, so its count travels with the connection instead.
pub(crate) struct Owner<M>(pub(crate) Arc<Core<M>>)
where
    M: ManageConnection;

/// A connection as the pool stores it.
pub(crate) type Pooled<M> = Box<Conn<<M as ManageConnection>::Connection, Arc<Owner<M>>>>;

/// The pool's lock-protected state, for this manager.
pub(crate) type LockedState<M> = PoolState<<M as ManageConnection>::Connection, Arc<Owner<M>>>;

/// The pool itself, shared by the user's handles and every connection's [`Owner`] (which keep
/// it alive) and, weakly, by the pool's threads (see [`crate::worker`]).
///
/// Idle connections hold their pool through their owner, a cycle that closing the pool breaks:
/// it drains every idle connection, and every connection that comes back to a closed pool is
/// closed.
pub(crate) struct Core<M>
where
    M: ManageConnection,
{
    pub(crate) state: CacheLine<Mutex<LockedState<M>>>,
    /// `build` waits here for its connections.
    pub(crate) progress: Condvar,
    pub(crate) config: Config<M::Connection, M::Error>,
    pub(crate) manager: M,
    /// The clock connections are stamped with on the hot path.
    pub(crate) clock: Clock,
    /// Check-outs in progress, when leak detection is on.
    pub(crate) leaks: Option<Tracker>,
    /// The histograms the pool records into, as things happen.
    #[cfg(feature = "metrics")]
    pub(crate) histograms: crate::metrics::publish::Histograms,
    /// Wakes the opener thread; its closing (when this is dropped) tells the thread to exit.
    wake: Sender<()>,
    /// Wakes the reaper thread, likewise.
    reap: Sender<()>,
    /// Wakes the keepalive thread, likewise.
    keep: Sender<()>,
    /// Whether the manager was already named for overrunning a timeout.
    pub(crate) overran: Overran,
    /// How many failed validations and resets the log hears of (a lock of its own, never the
    /// pool's, and never held while logging).
    pub(crate) failed_checks: Mutex<Limiter>,
}

/// Keeps the pool's lock and the fields it guards on cache lines of their own (two, for CPUs
/// that fetch lines in pairs), away from the reference counts and the settings that every core
/// reads: otherwise each check-out on one core would evict them from the others.
#[repr(align(128))]
pub(crate) struct CacheLine<T>(T);

impl<T> Deref for CacheLine<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How many times a check-out that finds nothing idle yields the CPU before it joins the queue
/// (each yield costs about a microsecond when other threads are runnable, and nothing when none
/// are).
const YIELDS_BEFORE_QUEUEING: u32 = 8;

/// A check-out yields only while it has more time left than this: about a scheduler time slice,
/// which is what one yield can cost when other threads want the CPU.
const YIELD_MARGIN: Duration = Duration::from_millis(5);

thread_local! {
    /// The connection this thread returned last (ids are unique in the process, so one slot
    /// serves every pool).
    static LAST_USED: Cell<u64> = const { Cell::new(0) };
}

/// The connection the calling thread returned last, which its next check-out prefers.
#[inline]
fn last_used() -> u64 {
    LAST_USED.with(Cell::get)
}

/// However little time a check-out has left, a validation it starts gets at least this long:
/// with less, a healthy connection on a slow network would fail it and be closed, only
/// because its caller was impatient. It is the most a check-out can overrun its timeout by
/// (with a manager that honours `is_valid_within`).
pub(crate) const VALIDATION_FLOOR: Duration = Duration::from_millis(10);

/// How much longer than its timeout a manager call may run before the pool calls it an
/// overrun (and logs it, once per pool): scheduling noise on a loaded machine is not one.
const OVERRUN_SLACK: Duration = Duration::from_millis(50);

/// A connection that failed its check-out checks, and why.
struct Rejected<M>
where
    M: ManageConnection,
{
    conn: Pooled<M>,
    reason: Retire,
    /// For the pool's last error.
    cause: Option<Arc<Cause>>,
    /// For the error handler.
    error: Option<M::Error>,
}

/// What a connection just taken needs before it is handed out.
enum Verdict {
    Ready,
    Reject(Retire),
    /// A round trip: `is_valid_within`.
    Validate,
}

/// Where a check-out goes after its connection was rejected.
enum AfterReject<M, Miss>
where
    M: ManageConnection,
{
    /// Another idle connection, to check in turn.
    Check(Pooled<M>),
    /// Back in line, at its head, with this ticket.
    Wait(u64),
    /// Give up: the pool closed, or nothing is idle for a check-out that does not wait.
    Fail(Miss),
    /// Give up: the deadline passed.
    TimedOut(Miss),
}

/// How a check-out waits when nothing is idle, and what it returns when it gets nothing.
pub(crate) trait Wait: Copy {
    /// What a check-out that gets no connection returns.
    type Miss;
    /// Whether it joins the queue (and so can time out waiting, with an event).
    const QUEUES: bool;
    /// How long its steps may take in all, given the pool's `connection_timeout`.
    fn timeout(self, connection_timeout: Duration) -> Duration;
    /// The miss for a failure; `error` is built only if the caller is to see it.
    fn miss(error: impl FnOnce() -> Error) -> Self::Miss;
    /// The miss for a check-out that finds nothing idle and would have to queue: `Ok` when
    /// it queues.
    fn nothing_idle() -> Result<(), Self::Miss>;
}

/// Waits in line for up to this long, and says why it failed (`get`, `get_timeout`).
#[derive(Clone, Copy)]
pub(crate) struct Queue(pub(crate) Duration);

impl Wait for Queue {
    type Miss = Error;
    const QUEUES: bool = true;

    #[inline]
    fn timeout(self, _: Duration) -> Duration {
        self.0
    }

    fn miss(error: impl FnOnce() -> Error) -> Error {
        error()
    }

    fn nothing_idle() -> Result<(), Error> {
        Ok(())
    }
}

/// Takes only an idle connection (`try_get`); the checks it runs on one are bounded by
/// `connection_timeout`.
#[derive(Clone, Copy)]
pub(crate) struct NoWait;

impl Wait for NoWait {
    type Miss = ();
    const QUEUES: bool = false;

    #[inline]
    fn timeout(self, connection_timeout: Duration) -> Duration {
        connection_timeout
    }

    fn miss(_: impl FnOnce() -> Error) {}

    fn nothing_idle() -> Result<(), ()> {
        Err(())
    }
}

/// A connection on loan to a caller, from its hand-out ([`Core::lend`]) to its check-in
/// ([`Core::check_in`]): what a `PooledConnection` holds.
pub(crate) struct Loan<M>
where
    M: ManageConnection,
{
    /// Keeps the pool alive while the connection is out (see [`Owner`]).
    pub(crate) owner: Arc<Owner<M>>,
    pub(crate) conn: Pooled<M>,
    /// When it was handed out, if the pool times loans (an event handler, or the `metrics`
    /// feature).
    pub(crate) since: Option<Instant>,
}

/// Which span of a loan a figure measures.
#[derive(Clone, Copy)]
enum Span {
    /// From asking for a connection to getting it.
    Wait,
    /// From getting it to giving it back.
    Use,
}

/// When a check-out began, and when it must be over (`None`: a deadline too far to
/// represent, so none).
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) start: Instant,
    pub(crate) at: Option<Instant>,
}

impl Deadline {
    pub(crate) fn new(start: Instant, timeout: Duration) -> Deadline {
        Deadline {
            start,
            at: start.checked_add(timeout),
        }
    }

    /// The time left (`Duration::MAX` without a deadline).
    fn remaining(&self, now: Instant) -> Duration {
        self.at
            .map_or(Duration::MAX, |at| at.saturating_duration_since(now))
    }

    fn passed(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| at <= now)
    }
}

/// A check-out's turn in the queue, kept across a rejected connection.
#[derive(Default)]
struct Turn {
    wake: Option<Arc<Condvar>>,
    /// Whether it joined the queue, so the wait is counted once it ends with a connection.
    waited: bool,
}

impl Turn {
    fn wake(&mut self) -> Arc<Condvar> {
        self.wake
            .get_or_insert_with(|| Arc::new(Condvar::new()))
            .clone()
    }
}

impl<M> Core<M>
where
    M: ManageConnection,
{
    /// `wake`, `reap` and `keep` wake the opener, the reaper and the keepalive thread.
    pub(crate) fn new(
        config: Config<M::Connection, M::Error>,
        manager: M,
        wake: Sender<()>,
        reap: Sender<()>,
        keep: Sender<()>,
    ) -> Core<M> {
        // Connections are stamped for the skip window, the lifetime, keepalive and idle time.
        let settings = config.settings;
        let window = (settings.test_on_check_out && !settings.validation_skip_window.is_zero())
            .then_some(settings.validation_skip_window);
        let finest = [
            window,
            settings.max_lifetime,
            settings.keepalive,
            settings.idle_timeout,
        ]
        .into_iter()
        .flatten()
        .min();
        Core {
            state: CacheLine(Mutex::new(PoolState::new(&settings))),
            progress: Condvar::new(),
            clock: Clock::for_finest(finest),
            leaks: settings
                .leak_detection_threshold
                .map(|threshold| Tracker::new(config.name.clone(), threshold)),
            #[cfg(feature = "metrics")]
            histograms: crate::metrics::publish::Histograms::new(&config.name),
            config,
            manager,
            overran: Overran::default(),
            failed_checks: Mutex::new(Limiter::default()),
            wake,
            reap,
            keep,
        }
    }

    pub(crate) fn wake_opener(&self) {
        // A full channel already holds a wake-up the thread has not seen.
        let _ = self.wake.try_send(());
    }

    pub(crate) fn wake_reaper(&self) {
        let _ = self.reap.try_send(());
    }

    /// Every gauge and counter, the leak detector's included.
    pub(crate) fn metrics(&self) -> Metrics {
        let mut metrics = self.state.lock().metrics();
        metrics.leaks_detected = self.leaks.as_ref().map_or(0, Tracker::detected);
        metrics
    }

    /// Closes the pool for good, failing every check-out with `error`.
    pub(crate) fn refuse(&self, error: Error) {
        let drained = self.state.lock().refuse(error);
        debug_assert!(drained.is_empty());
    }

    pub(crate) fn close(&self) {
        let drained = {
            let mut state = self.state.lock();
            let drained = state.shut_down();
            self.progress.notify_all();
            drained
        };
        self.wake_opener();
        self.wake_reaper();
        let _ = self.keep.try_send(());
        for conn in drained {
            self.close_conn(conn, Retire::Shutdown);
        }
        // The reaper stops with the pool: the last word on the recorder is this one.
        #[cfg(feature = "metrics")]
        self.shielded("publishing metrics", || {
            crate::metrics::publish::publish(&self.config.name, &self.metrics());
        });
    }

    /// [`Pool::close_within`](crate::Pool::close_within) until `deadline` (`None`: none).
    /// Returns connections still out (checked out, or being validated), and being opened or
    /// closed.
    pub(crate) fn close_within(&self, deadline: Option<Instant>) -> (u32, u32) {
        self.close();
        let mut state = self.state.lock();
        // `close_conn`, `detach` and the opener notify `progress` whenever a place frees.
        while !state.is_empty() {
            if wait_until(&self.progress, &mut state, deadline).timed_out() {
                break;
            }
        }
        state.outstanding()
    }

    /// Readiness: waits until the connections `build` promises are open (`min_idle`, or
    /// `max_size` without it), within `connection_timeout`.
    pub(crate) fn wait_until_ready(&self) -> Result<(), Error> {
        let target = self.config.settings.min_idle_target();
        let start = Instant::now();
        let deadline = start.checked_add(self.config.settings.connection_timeout);
        let mut state = self.state.lock();
        loop {
            if state.is_shut_down() {
                return Err(state.refusal(&self.config.name));
            }
            if state.has_open(target) {
                return Ok(());
            }
            if let Some(err) = self.permanent(&state, start) {
                return Err(err);
            }
            let waited = wait_until(&self.progress, &mut state, deadline);
            if waited.timed_out() && !state.has_open(target) {
                return Err(self.timed_out(&state, start, Phase::Build { target }));
            }
        }
    }

    /// Sets `max_size` ([`PoolState::set_max_size`]), closing the idle ones it retires.
    pub(crate) fn set_max_size(&self, max_size: u32) -> Result<(), Error> {
        let (was, shrunk) = {
            let mut state = self.state.lock();
            let was = state.sizes().0;
            let shrunk = state.set_max_size(max_size)?;
            // Growing may let the opener serve waiting threads.
            self.unlock_and_refill(state);
            (was, shrunk)
        };
        if was != max_size {
            log_shielded!(
                log::Level::Info,
                "pool {:?}: max_size set to {max_size} (was {was}){}",
                self.config.name,
                if max_size < was {
                    "; connections beyond it close as they come back"
                } else {
                    ""
                }
            );
        }
        for conn in shrunk {
            self.close_conn(conn, Retire::Shrunk);
        }
        // `min_idle` may follow `max_size`, which changes what the reaper may close.
        self.wake_reaper();
        Ok(())
    }

    pub(crate) fn set_min_idle(&self, min_idle: Option<u32>) -> Result<(), Error> {
        let mut state = self.state.lock();
        state.set_min_idle(min_idle)?;
        self.unlock_and_refill(state);
        self.wake_reaper();
        Ok(())
    }

    pub(crate) fn evict_all(&self) {
        let evicted = self.state.lock().evict_all();
        for conn in evicted {
            self.close_conn(conn, Retire::Evicted);
        }
        self.wake_opener();
    }

    /// Checks a connection out: an idle one at once, or (with [`Queue`]) one handed over after
    /// waiting in line; the rest is [`Core::check_out_slow`]. `caller` is for leak reports.
    #[inline]
    pub(crate) fn check_out<W: Wait>(
        &self,
        wait: W,
        caller: &'static Location<'static>,
    ) -> Result<Loan<M>, W::Miss> {
        // The common case, kept small enough to inline: an idle connection that needs no check.
        if !self.config.events {
            let mut state = self.state.lock();
            if let Some(mut conn) = state.take_idle_preferring(last_used()) {
                self.unlock_and_refill(state);
                let verdict = self.verdict(&mut conn);
                if let Verdict::Ready = verdict {
                    return Ok(self.lend(conn, None, caller));
                }
                return self.check_out_slow(Some((conn, verdict)), wait, caller);
            }
        }
        self.check_out_slow(None, wait, caller)
    }

    /// Hands `conn` to the caller: the one place a check-out is recorded (leak detector, wait
    /// histogram, checkout event). `started`: when a check-out that waited or checked began.
    #[inline]
    fn lend(
        &self,
        conn: Pooled<M>,
        started: Option<Instant>,
        caller: &'static Location<'static>,
    ) -> Loan<M> {
        if let Some(tracker) = &self.leaks {
            if tracker.borrowed(conn.id, caller) {
                self.wake_reaper();
            }
        }
        let since = if self.config.times_loans {
            let now = Instant::now();
            let waited = started.map_or(Duration::ZERO, |s| now.duration_since(s));
            self.record(Span::Wait, conn.id, waited);
            Some(now)
        } else {
            None
        };
        Loan {
            owner: conn.owner.clone(),
            conn,
            since,
        }
    }

    /// Records how long connection `id` was waited for or used: in the histograms (feature
    /// `metrics`) and for the event handler.
    fn record(&self, span: Span, id: u64, duration: Duration) {
        #[cfg(feature = "metrics")]
        self.shielded("recording a metric", || match span {
            Span::Wait => self.histograms.waited(duration),
            Span::Use => self.histograms.used(duration),
        });
        if self.config.events {
            let handler = &self.config.event_handler;
            match span {
                Span::Wait => self.shielded("the checkout event handler", || {
                    handler.handle_checkout(CheckoutEvent { id, duration });
                }),
                Span::Use => self.shielded("the checkin event handler", || {
                    handler.handle_checkin(CheckinEvent { id, duration });
                }),
            }
        }
    }

    /// What a connection just taken needs before it can be handed out, from what costs no
    /// round trip: its lifetime, whether the server closed it (`is_closed`, always), and
    /// whether it was verified (checked in, validated) within the skip window.
    #[inline]
    fn verdict(&self, conn: &mut Pooled<M>) -> Verdict {
        let now = self.clock.now();
        if conn.expires <= now {
            Verdict::Reject(Retire::MaxLifetime)
        } else if self.server_closed(conn) {
            Verdict::Reject(Retire::Broken)
        } else if self.config.settings.test_on_check_out
            && now.since(conn.verified) >= self.config.settings.validation_skip_window
        {
            Verdict::Validate
        } else {
            Verdict::Ready
        }
    }

    /// Everything else about a check-out: waiting, checking (off-lock), and going on after a
    /// rejected connection with the next idle one or at the head of the queue. `taken` is a
    /// connection the fast path already took. Every step is bounded by the check-out's deadline:
    /// the [`Wait`]'s timeout, or `connection_timeout` for one that waits in no line.
    #[inline(never)]
    fn check_out_slow<W: Wait>(
        &self,
        taken: Option<(Pooled<M>, Verdict)>,
        wait: W,
        caller: &'static Location<'static>,
    ) -> Result<Loan<M>, W::Miss> {
        let deadline = Deadline::new(
            Instant::now(),
            wait.timeout(self.config.settings.connection_timeout),
        );
        let mut turn = Turn::default();
        let (mut conn, mut verdict) = match taken {
            Some(taken) => taken,
            None => {
                let mut conn = self.first_take::<W>(deadline, &mut turn)?;
                let verdict = self.verdict(&mut conn);
                (conn, verdict)
            }
        };
        loop {
            let rejected = match self.check(conn, verdict, deadline) {
                Ok(conn) => {
                    if turn.waited {
                        self.state.lock().record_wait(deadline.start.elapsed());
                    }
                    return Ok(self.lend(conn, Some(deadline.start), caller));
                }
                Err(rejected) => rejected,
            };
            let next = {
                let mut state = self.state.lock();
                state.reject(
                    rejected.reason,
                    rejected.cause.clone(),
                    rejected.conn.proven,
                );
                if state.is_shut_down() {
                    AfterReject::Fail(W::miss(|| state.refusal(&self.config.name)))
                } else if deadline.passed(Instant::now()) {
                    // Checked before every retry: a database that keeps failing validation
                    // must not hold a caller past its deadline.
                    AfterReject::TimedOut(W::miss(|| self.give_up(&mut state, deadline)))
                } else if let Some(conn) = state.take_idle_preferring(last_used()) {
                    AfterReject::Check(conn)
                } else {
                    match W::nothing_idle() {
                        Err(miss) => AfterReject::Fail(miss),
                        Ok(()) => {
                            turn.waited = true;
                            AfterReject::Wait(state.enqueue(turn.wake(), Rejoin::AtTheHead))
                        }
                    }
                }
            };
            if let Some(cause) = &rejected.cause {
                self.log_failure_closing(rejected.conn.id, "check-out validation", cause);
            }
            // Closing frees a place, so the opener thread opens a replacement if one is wanted.
            self.close_conn(rejected.conn, rejected.reason);
            if let Some(error) = rejected.error {
                self.shielded("the error handler", || {
                    self.config.error_handler.handle_error(error);
                });
            }
            conn = match next {
                AfterReject::Check(conn) => conn,
                AfterReject::Fail(miss) => return Err(miss),
                AfterReject::TimedOut(miss) => {
                    if W::QUEUES {
                        self.timeout_event(deadline);
                    }
                    return Err(miss);
                }
                AfterReject::Wait(ticket) => {
                    let state = self.state.lock();
                    self.await_handoff(state, &mut turn, ticket, deadline)
                        .map_err(|err| W::miss(|| err))?
                }
            };
            verdict = self.verdict(&mut conn);
        }
    }

    /// The first attempt of a check-out: an idle connection, or a turn in line.
    fn first_take<W: Wait>(
        &self,
        deadline: Deadline,
        turn: &mut Turn,
    ) -> Result<Pooled<M>, W::Miss> {
        let mut state = self.state.lock();
        if let Some(conn) = state.take_idle_preferring(last_used()) {
            self.unlock_and_refill(state);
            return Ok(conn);
        }
        if state.is_shut_down() {
            return Err(W::miss(|| state.refusal(&self.config.name)));
        }
        W::nothing_idle()?;
        if let Some(err) = self.permanent(&state, deadline.start) {
            return Err(W::miss(|| err));
        }
        let mut state = match self.yield_for_idle(state, deadline) {
            Ok(conn) => return Ok(conn),
            Err(state) => state,
        };
        if state.is_shut_down() {
            return Err(W::miss(|| state.refusal(&self.config.name)));
        }
        turn.waited = true;
        let ticket = state.enqueue(turn.wake(), Rejoin::AtTheBack);
        if state.wants_connection() {
            self.wake_opener();
        }
        self.await_handoff(state, turn, ticket, deadline)
            .map_err(|err| W::miss(|| err))
    }

    /// Before joining the queue, gives the CPU away a few times and looks again.
    ///
    /// When threads outnumber CPUs, "no idle connection" mostly means that the threads holding
    /// them were preempted between check-out and check-in. Queueing at once would start a
    /// convoy: each returned connection goes to a sleeping waiter, the returning thread finds
    /// nothing idle and sleeps in turn, and every check-out pays two context switches. Yielding
    /// lets those holders run and return their connections first. This never takes a
    /// connection ahead of a waiting thread: while one waits, returned connections go to it, not
    /// to the idle stack. It stops [`YIELD_MARGIN`] short of the check-out's deadline: on a busy
    /// machine one yield can give away a whole time slice.
    fn yield_for_idle<'a>(
        &'a self,
        mut state: MutexGuard<'a, LockedState<M>>,
        deadline: Deadline,
    ) -> Result<Pooled<M>, MutexGuard<'a, LockedState<M>>> {
        for _ in 0..YIELDS_BEFORE_QUEUEING {
            if deadline.remaining(Instant::now()) <= YIELD_MARGIN {
                break;
            }
            drop(state);
            thread::yield_now();
            state = self.state.lock();
            if state.is_shut_down() {
                break;
            }
            if let Some(conn) = state.take_idle_preferring(last_used()) {
                self.unlock_and_refill(state);
                return Ok(conn);
            }
        }
        Err(state)
    }

    /// Releases the lock, and wakes the opener thread if the pool now wants a connection: after
    /// an idle connection was taken (`min_idle`), or a place was freed (waiters, `min_idle`).
    #[inline]
    fn unlock_and_refill(&self, state: MutexGuard<'_, LockedState<M>>) {
        let wanted = state.wants_connection();
        drop(state);
        if wanted {
            self.wake_opener();
        }
    }

    /// Waits, with `ticket` in line, until a connection is handed over, the pool closes, or the
    /// deadline passes.
    fn await_handoff(
        &self,
        mut state: MutexGuard<'_, LockedState<M>>,
        turn: &mut Turn,
        ticket: u64,
        deadline: Deadline,
    ) -> Result<Pooled<M>, Error> {
        let wake = turn.wake();
        loop {
            if let Some(conn) = state.take_handed(ticket) {
                return Ok(conn);
            }
            if state.is_shut_down() {
                state.leave(ticket);
                return Err(state.refusal(&self.config.name));
            }
            if let Some(err) = self.permanent(&state, deadline.start) {
                state.leave(ticket);
                return Err(err);
            }
            if wait_until(&wake, &mut state, deadline.at).timed_out() {
                // A connection handed over as the timer fired is taken, not lost.
                if let Some(conn) = state.take_handed(ticket) {
                    return Ok(conn);
                }
                state.leave(ticket);
                let err = self.give_up(&mut state, deadline);
                drop(state);
                self.timeout_event(deadline);
                return Err(err);
            }
        }
    }

    /// Counts a check-out that ran out of time and says why, with the pool as it is now.
    fn give_up(&self, state: &mut LockedState<M>, deadline: Deadline) -> Error {
        state.record_timeout();
        self.timed_out(state, deadline.start, Phase::Checkout)
    }

    /// Tells the event handler that a check-out timed out (off-lock).
    fn timeout_event(&self, deadline: Deadline) {
        if self.config.events {
            self.shielded("the timeout event handler", || {
                let timeout = deadline
                    .at
                    .map_or(Duration::MAX, |at| at.duration_since(deadline.start));
                self.config
                    .event_handler
                    .handle_timeout(TimeoutEvent { timeout });
            });
        }
    }

    /// The error for a wait that cannot end well: the last connect failed with a permanent
    /// error and no connection can come back.
    pub(crate) fn permanent(&self, state: &LockedState<M>, start: Instant) -> Option<Error> {
        let cause = state.permanent_error()?;
        Some(Error::new(crate::error::Kind::Permanent(Permanent {
            pool: self.config.name.clone(),
            waited: start.elapsed(),
            cause,
        })))
    }

    /// The error for a wait that ran out, with the pool as it is now.
    pub(crate) fn timed_out(&self, state: &LockedState<M>, start: Instant, phase: Phase) -> Error {
        Error::new(crate::error::Kind::Timeout(TimedOut {
            pool: self.config.name.clone(),
            waited: start.elapsed(),
            phase,
            counts: state.counts(),
            last_error: state.last_error(),
        }))
    }

    /// Acts on a connection's [`Verdict`], off-lock: validation runs `is_valid_within` with
    /// what is left of the check-out's time.
    fn check(
        &self,
        mut conn: Pooled<M>,
        verdict: Verdict,
        deadline: Deadline,
    ) -> Result<Pooled<M>, Rejected<M>> {
        let rejected = |conn, reason, cause: Option<Cause>, error| Rejected {
            conn,
            reason,
            cause: cause.map(Arc::new),
            error,
        };
        match verdict {
            Verdict::Ready => Ok(conn),
            Verdict::Reject(reason) => Err(rejected(conn, reason, None, None)),
            Verdict::Validate => {
                let budget = deadline.remaining(Instant::now()).max(VALIDATION_FLOOR);
                match self.validate(&mut conn, budget) {
                    Ok(()) => {
                        conn.verified = self.clock.now();
                        conn.proven = true;
                        Ok(conn)
                    }
                    Err((cause, error)) => Err(rejected(conn, Retire::Invalid, Some(cause), error)),
                }
            }
        }
    }

    /// Whether the manager can see, without a round trip, that the server closed `conn`'s
    /// session; a panic counts as closed.
    #[inline]
    fn server_closed(&self, conn: &mut Pooled<M>) -> bool {
        let Conn {
            raw, extensions, ..
        } = &mut **conn;
        catch_unwind(AssertUnwindSafe(|| self.manager.is_closed(raw, extensions))).unwrap_or(true)
    }

    /// Runs the manager's `is_valid_within(timeout)` on `conn`. On failure: the cause (for the
    /// pool's last error) and the driver's error, if any (for the error handler); a panic is
    /// logged and counts as a failure.
    pub(crate) fn validate(
        &self,
        conn: &mut Pooled<M>,
        timeout: Duration,
    ) -> Result<(), (Cause, Option<M::Error>)> {
        let started = Instant::now();
        let Conn {
            raw, extensions, ..
        } = &mut **conn;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.manager.is_valid_within(raw, timeout, extensions)
        }));
        self.overran.check(
            &self.config.name,
            ManagerCall::Validation,
            timeout,
            started.elapsed(),
        );
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err((Cause::capture(&err), Some(err))),
            Err(panic) => {
                let cause = Cause::message(format!("is_valid panicked: {}", panic_text(&panic)));
                log_shielded!(log::Level::Error, "pool {:?}: {cause}", self.config.name);
                Err((cause, None))
            }
        }
    }

    /// What happens when a connection comes back: off-lock, the returning thread asks the
    /// driver whether it broke and checks its lifetime; under the lock, the connection goes to
    /// the longest-waiting thread or the idle stack, or is retired (and closed after unlocking).
    pub(crate) fn check_in(
        &self,
        mut conn: Pooled<M>,
        since: Option<Instant>,
        marked_broken: bool,
    ) {
        self.forget_borrow(conn.id);
        LAST_USED.with(|last| last.set(conn.id));
        if let Some(since) = since {
            self.record(Span::Use, conn.id, since.elapsed());
        }
        // A connection dropped by a panicking thread may be mid-transaction or mid-protocol.
        let broken = marked_broken
            || thread::panicking()
            || catch_unwind(AssertUnwindSafe(|| self.manager.has_broken(&mut conn.raw)))
                .unwrap_or(true)
            || !self.recycle(&mut conn);
        let now = self.clock.now();
        let verdict = if broken {
            Some(Retire::Broken)
        } else if conn.expires <= now {
            Some(Retire::MaxLifetime)
        } else {
            None
        };
        let (retired, replan) = {
            let mut state = self.state.lock();
            let retired = state.check_in(conn, verdict, now);
            (retired, state.take_replan())
        };
        if replan {
            self.wake_reaper();
        }
        if let Some((conn, reason)) = retired {
            self.close_conn(conn, reason);
        }
    }

    /// Resets a returning connection's session (the manager's `recycle`, a no-op by default);
    /// returns whether that worked.
    #[inline]
    fn recycle(&self, conn: &mut Pooled<M>) -> bool {
        match catch_unwind(AssertUnwindSafe(|| self.manager.recycle(&mut conn.raw))) {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                let cause = Cause::capture(&err);
                self.log_failure_closing(conn.id, "reset for its next borrower", &cause);
                self.shielded("the error handler", || {
                    self.config.error_handler.handle_error(err);
                });
                false
            }
            Err(panic) => {
                log_shielded!(
                    log::Level::Error,
                    "pool {:?}: recycle panicked: {}",
                    self.config.name,
                    panic_text(&panic)
                );
                false
            }
        }
    }

    /// Connection `id` is no longer checked out: the leak detector forgets its check-out, and
    /// says so if it had reported it as a leak.
    #[inline]
    fn forget_borrow(&self, id: u64) {
        if let Some(tracker) = &self.leaks {
            if let Some(returned) = tracker.returned(id) {
                log_shielded!(log::Level::Info, "pool {:?}: {returned}", self.config.name);
            }
        }
    }

    /// Checked-out connection `id` leaves the pool for good; its place frees at once.
    pub(crate) fn detach(&self, id: u64) {
        self.forget_borrow(id);
        let mut state = self.state.lock();
        state.detach();
        self.progress.notify_all();
        self.unlock_and_refill(state);
        log_shielded!(
            log::Level::Debug,
            "pool {:?}: connection {id} detached: it leaves the pool",
            self.config.name
        );
    }

    /// Closes a connection already counted as closing for `reason` (off-lock), then frees its
    /// place in the pool. Every connection the pool closes passes here, so this is where its
    /// `debug` line is.
    #[allow(
        clippy::boxed_local,
        reason = "every caller holds the connection boxed; unboxing there would copy it"
    )]
    pub(crate) fn close_conn(&self, conn: Pooled<M>, reason: Retire) {
        let Conn {
            raw,
            id,
            born,
            extensions,
            ..
        } = *conn;
        let config = &self.config;
        log_shielded!(
            log::Level::Debug,
            "pool {:?}: closing connection {id} ({reason})",
            config.name
        );
        if config.events {
            self.shielded("the release event handler", || {
                let age = Clock::Precise.now().since(born);
                config
                    .event_handler
                    .handle_release(ReleaseEvent { id, age });
            });
        }
        // Apart from the handler: its panic must not keep the connection from the customizer.
        self.shielded("closing a connection", || {
            config.customizer.on_release(raw);
            drop(extensions);
        });
        let mut state = self.state.lock();
        state.closed_one();
        // `close_within` waits for the last connection to be gone.
        self.progress.notify_all();
        self.unlock_and_refill(state);
    }

    /// Runs user code (a handler, a customizer, a driver's drop) where a panic must not escape
    /// (a pool's thread, or unfinished bookkeeping), logging the panic with what was being done.
    pub(crate) fn shielded(&self, doing: &str, f: impl FnOnce()) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
            log_shielded!(
                log::Level::Error,
                "pool {:?}: panic while {doing}: {}",
                self.config.name,
                panic_text(&panic)
            );
        }
    }
}

impl<M> Core<M>
where
    M: ManageConnection,
{
    /// Tells the log at `warn` that connection `id` failed its `what` (a validation, a reset)
    /// with `cause` and is closed, unless the [`Limiter`] holds the line back.
    pub(crate) fn log_failure_closing(&self, id: u64, what: &str, cause: &Cause) {
        let Some(held_back) = self.failed_checks.lock().admit(Instant::now()) else {
            return;
        };
        let more = match held_back {
            0 => String::new(),
            n => format!(
                " ({n} more such line{} held back in the last {})",
                if n == 1 { " was" } else { "s were" },
                Human(LIMITER_WINDOW)
            ),
        };
        log_shielded!(
            log::Level::Warn,
            "pool {:?}: connection {id} failed its {what} and is closed: {}{more}",
            self.config.name,
            Chain(cause)
        );
    }
}

/// A window of [`Limiter`]s.
pub(crate) const LIMITER_WINDOW: Duration = Duration::from_secs(60);

/// How many lines a [`Limiter`] lets through per window.
const LIMITER_BURST: u32 = 5;

/// Keeps a kind of log line from flooding the log: at most [`LIMITER_BURST`] lines per
/// [`LIMITER_WINDOW`], so that a database restart (every idle connection failing its
/// validation at once) is shown, but a database that accepts connections and fails every
/// validation (a proxy whose server is down) is not a line per attempt. What it held back is
/// counted in the next line.
#[derive(Default)]
pub(crate) struct Limiter {
    window_start: Option<Instant>,
    in_window: u32,
    held_back: u64,
}

impl Limiter {
    /// Whether a line may be logged at `now`: `Some(lines held back since the last one)`.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        let new_window = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= LIMITER_WINDOW);
        if new_window {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= LIMITER_BURST {
            self.held_back += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.held_back))
    }
}

/// How a wait on a condition variable ended.
#[must_use]
struct Waited {
    timed_out: bool,
}

impl Waited {
    /// Whether the deadline passed (rather than a notification or a spurious wake-up).
    fn timed_out(&self) -> bool {
        self.timed_out
    }
}

/// Waits on `cond` until notified or `deadline` (`None`: a deadline too far to represent, so
/// no deadline at all).
fn wait_until<T>(
    cond: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<Instant>,
) -> Waited {
    let timed_out = match deadline {
        Some(deadline) => cond.wait_until(guard, deadline).timed_out(),
        None => {
            cond.wait(guard);
            false
        }
    };
    Waited { timed_out }
}

/// Which manager call ran long.
#[derive(Clone, Copy)]
pub(crate) enum ManagerCall {
    Connect,
    Validation,
}

/// Whether the pool already said that its manager overran a timeout: once per pool and kind
/// of call, so that a manager that never honours its deadline does not flood the log.
#[derive(Default)]
pub(crate) struct Overran {
    connect: AtomicBool,
    validation: AtomicBool,
}

impl Overran {
    /// Logs, the first time, a call that took `took` against a `timeout`.
    pub(crate) fn check(&self, pool: &str, call: ManagerCall, timeout: Duration, took: Duration) {
        if took <= timeout.saturating_add(OVERRUN_SLACK) {
            return;
        }
        let (flag, what, method) = match call {
            ManagerCall::Connect => (&self.connect, "a connect", "connect_within"),
            ManagerCall::Validation => (&self.validation, "a validation", "is_valid_within"),
        };
        if flag.swap(true, Ordering::Relaxed) {
            return;
        }
        log_shielded!(
            log::Level::Warn,
            "pool {pool:?}: {what} took {}, {} longer than the {} it was given: the manager \
             does not bound it, so a database that stops answering holds the pool's callers \
             past their deadlines; implement ManageConnection::{method} (said once per pool)",
            Human(took),
            Human(took - timeout),
            Human(timeout),
        );
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a non-string payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limiter_lets_a_burst_through_each_minute_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut limiter = Limiter::default();
        for _ in 0..LIMITER_BURST {
            assert_eq!(limiter.admit(t0), Some(0));
        }
        for second in 1..60 {
            assert_eq!(limiter.admit(t0 + Duration::from_secs(second)), None);
        }
        // A new window: the first line says how many were held back.
        assert_eq!(limiter.admit(t0 + LIMITER_WINDOW), Some(59));
        assert_eq!(limiter.admit(t0 + LIMITER_WINDOW), Some(0));
    }
}
