//! The pool's opener thread: it opens connections when they are wanted (one at a time, with
//! capped exponential back-off after failures), gives each its lifetime deadline, and tells the
//! log about an outage as [`LoggingErrorHandler`](crate::LoggingErrorHandler) says ([`Outage`]).

use std::hash::{BuildHasher, RandomState};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::clock::{Clock, Stamp};
use crate::core::{Core, ManagerCall, Owner, panic_text};
use crate::error::{Cause, Chain};
use crate::event::AcquireEvent;
use crate::extensions::Extensions;
use crate::human::Human;
use crate::manager::ManageConnection;
use crate::state::Conn;

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

/// While connects keep failing, the pool says so again at most this often (the first failure is
/// logged at once, and recovery too). Crate-internal on purpose: an outage is logged the same way
/// in every deployment, and an operator reads one line a minute, not two a second.
pub(crate) const OUTAGE_REPEAT: Duration = Duration::from_secs(60);

/// A run of failed connects, as the log tells it. Owned by the opener thread (the only one that
/// connects), so it needs no lock; it only decides what to say, and the caller logs it.
#[derive(Default)]
pub(crate) struct Outage {
    run: Option<Run>,
}

/// The current run of failures.
struct Run {
    since: Instant,
    failures: u64,
    /// Failures since the last line about this run.
    unreported: u64,
    reported_at: Instant,
    last: Arc<Cause>,
}

impl Outage {
    /// A connect failed with `cause` at `now`: the line to log at `error`, if one is due (the
    /// first failure of a run, or [`OUTAGE_REPEAT`] after the last line).
    pub(crate) fn failed(
        &mut self,
        pool: &str,
        cause: &Arc<Cause>,
        now: Instant,
    ) -> Option<String> {
        let Some(run) = &mut self.run else {
            self.run = Some(Run {
                since: now,
                failures: 1,
                unreported: 0,
                reported_at: now,
                last: cause.clone(),
            });
            return Some(format!(
                "pool {pool:?}: cannot connect: {}; retrying with back-off (while connects \
                 keep failing, this is said again at most every {})",
                Chain(&**cause),
                Human(OUTAGE_REPEAT),
            ));
        };
        run.failures += 1;
        run.unreported += 1;
        run.last = cause.clone();
        if now.saturating_duration_since(run.reported_at) < OUTAGE_REPEAT {
            return None;
        }
        let line = format!(
            "pool {pool:?}: still cannot connect after {}: {} more failed connect{} since the \
             last report ({} in all), the last: {}",
            Human(now.saturating_duration_since(run.since)),
            run.unreported,
            if run.unreported == 1 { "" } else { "s" },
            run.failures,
            Chain(&*run.last),
        );
        run.unreported = 0;
        run.reported_at = now;
        Some(line)
    }

    /// A connect worked at `now`: the line to log at `info` if it ends a run of failures.
    pub(crate) fn connected(&mut self, pool: &str, now: Instant) -> Option<String> {
        let run = self.run.take()?;
        Some(format!(
            "pool {pool:?}: connected again after {} down ({} failed connect{})",
            Human(now.saturating_duration_since(run.since)),
            run.failures,
            if run.failures == 1 { "" } else { "s" },
        ))
    }
}

pub(crate) fn run<M>(pool: Weak<Core<M>>, woken: Receiver<()>)
where
    M: ManageConnection,
{
    let mut outage = Outage::default();
    loop {
        let Some(core) = pool.upgrade() else {
            return;
        };
        let until = match next_job(&core) {
            Job::Exit => return,
            Job::Sleep(until) => until,
            Job::Open(generation) => {
                core.shielded("opening a connection", || {
                    open(&core, generation, &mut outage);
                });
                continue;
            }
        };
        drop(core);
        let disconnected = match until {
            Some(deadline) => woken.recv_deadline(deadline) == Err(RecvTimeoutError::Disconnected),
            None => woken.recv().is_err(),
        };
        if disconnected {
            return;
        }
    }
}

fn next_job<M: ManageConnection>(core: &Core<M>) -> Job {
    let mut state = core.state.lock();
    if state.is_shut_down() {
        return Job::Exit;
    }
    if state.wants_connection() {
        match state.retry_at() {
            Some(retry) if retry > Instant::now() => return Job::Sleep(Some(retry)),
            _ => return Job::Open(state.begin_open()),
        }
    }
    Job::Sleep(None)
}

/// Opens one connection (already counted as opening) and adds it to the pool; however this
/// ends, even by a panic, it stops counting as being opened. `outage` decides what is logged.
fn open<M: ManageConnection>(core: &Arc<Core<M>>, generation: u64, outage: &mut Outage) {
    let mut attempt = Attempt {
        core,
        settled: false,
    };
    let budget = attempt_time(core.config.settings.connection_timeout);
    let started = Instant::now();
    let mut extensions = Extensions::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut raw = core.manager.connect_within(budget, &mut extensions)?;
        core.config.customizer.on_acquire(&mut raw)?;
        Ok(raw)
    }));
    let took = started.elapsed();
    // When the attempt ended: what the outage's lines measure from.
    let ended = started + took;
    core.overran
        .check(&core.config.name, ManagerCall::Connect, budget, took);
    let raw = match outcome {
        Ok(Ok(raw)) => raw,
        Ok(Err(err)) => {
            let permanent =
                catch_unwind(AssertUnwindSafe(|| core.manager.is_permanent(&err))).unwrap_or(false);
            let cause = Arc::new(Cause::capture(&err));
            attempt.failed(cause.clone(), permanent);
            log_failure(core, outage, &cause, ended);
            // r2d2's semantics: the handler hears of every error (the default one logs
            // it at `debug` only, as the line above tells the outage).
            core.shielded("the error handler", || {
                core.config.error_handler.handle_error(err);
            });
            return;
        }
        Err(panic) => {
            let cause = Arc::new(Cause::message(format!(
                "connect panicked: {}",
                panic_text(&panic)
            )));
            attempt.failed(cause.clone(), false);
            log_failure(core, outage, &cause, ended);
            return;
        }
    };
    if let Some(line) = outage.connected(&core.config.name, ended) {
        log_shielded!(log::Level::Info, "{line}");
    }
    #[cfg(feature = "metrics")]
    core.shielded("recording a metric", || core.histograms.connected(took));
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // Stamped precisely: this is off the hot path, and release events report the age.
    let born = Clock::Precise.now();
    let expires = core
        .config
        .settings
        .max_lifetime
        .map_or(Stamp::NEVER, |lifetime| born.after(jittered(lifetime)));
    let now = core.clock.now();
    let conn = Box::new(Conn {
        raw,
        owner: Arc::new(Owner(core.clone())),
        id,
        born,
        expires,
        generation,
        checked_in: now,
        verified: now,
        proven: false,
        extensions,
    });
    if core.config.events {
        // Before the connection is counted (so that its acquire comes before its checkout),
        // hence shielded: a panicking handler must not lose the connection being opened.
        core.shielded("the acquire event handler", || {
            core.config
                .event_handler
                .handle_acquire(AcquireEvent { id });
        });
    }
    attempt.settled = true;
    log_shielded!(
        log::Level::Debug,
        "pool {:?}: opened connection {id} in {}",
        core.config.name,
        Human(took)
    );
    let (retired, replan) = {
        let mut state = core.state.lock();
        let retired = state.opened(conn);
        core.progress.notify_all();
        (retired, state.take_replan())
    };
    if replan {
        core.wake_reaper();
    }
    if let Some((conn, reason)) = retired {
        core.close_conn(conn, reason);
    }
}

/// Logs a connect that failed at `now`, as `outage` decides (off the pool's lock).
fn log_failure<M: ManageConnection>(
    core: &Core<M>,
    outage: &mut Outage,
    cause: &Arc<Cause>,
    now: Instant,
) {
    if let Some(line) = outage.failed(&core.config.name, cause, now) {
        log_shielded!(log::Level::Error, "{line}");
    }
}

/// One connect attempt, counted as "being opened" until it settles: with a connection, or
/// with [`Attempt::failed`]. Dropped unsettled (a panic in the pool's own bookkeeping), it
/// settles as a failure, so the pool never waits for a connection that will not come.
struct Attempt<'a, M>
where
    M: ManageConnection,
{
    core: &'a Core<M>,
    settled: bool,
}

impl<M> Attempt<'_, M>
where
    M: ManageConnection,
{
    fn failed(&mut self, cause: Arc<Cause>, permanent: bool) {
        self.settled = true;
        let mut state = self.core.state.lock();
        state.open_failed(cause, permanent);
        self.core.progress.notify_all();
    }
}

impl<M> Drop for Attempt<'_, M>
where
    M: ManageConnection,
{
    fn drop(&mut self) {
        if !self.settled {
            self.failed(
                Arc::new(Cause::message("the connect attempt panicked")),
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_told_once_then_once_a_minute_then_its_end() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let refused = Arc::new(Cause::message("connection refused"));
        let reset = Arc::new(Cause::message("connection reset"));
        let mut outage = Outage::default();
        let first = outage.failed("db", &refused, at(0)).unwrap();
        assert!(
            first.starts_with("pool \"db\": cannot connect: connection refused"),
            "{first}"
        );
        // Two failures a second for a minute: nothing more until a minute has passed.
        for half_seconds in 1..120 {
            let now = t0 + Duration::from_millis(500 * half_seconds);
            assert_eq!(outage.failed("db", &refused, now), None);
        }
        let repeat = outage.failed("db", &reset, at(60)).unwrap();
        assert_eq!(
            repeat,
            "pool \"db\": still cannot connect after 60s: 120 more failed connects since the \
             last report (121 in all), the last: connection reset"
        );
        assert_eq!(outage.failed("db", &reset, at(61)), None);
        assert_eq!(
            outage.connected("db", at(75)).unwrap(),
            "pool \"db\": connected again after 75s down (122 failed connects)"
        );
        // Once: the next connect that works says nothing.
        assert_eq!(outage.connected("db", at(76)), None);
        // A new outage starts a new story.
        assert!(outage.failed("db", &refused, at(80)).is_some());
        assert_eq!(
            outage.connected("db", at(81)).unwrap(),
            "pool \"db\": connected again after 1s down (1 failed connect)"
        );
    }

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
