//! The pool's reaper thread: it closes idle connections past their lifetime or idle timeout,
//! reports leaks, publishes metrics, and warns when it runs late ([`Schedule`]). It makes no
//! round trip to the database (keepalive has a thread of its own), so nothing the database does
//! can delay a leak report or a sweep.
//!
//! When it wakes: [`Builder::reaper_rate`](crate::Builder::reaper_rate), and invariant 5 of
//! [`crate::state`].

use std::sync::Weak;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::clock::{Clock, Stamp};
use crate::core::Core;
use crate::human::Human;
use crate::manager::ManageConnection;
use crate::worker::{Closed, MIN_ROUND_GAP, rest};

/// The longest the thread sleeps with nothing due: `reaper_rate`, or less when it publishes
/// metrics.
fn period(reaper_rate: Duration) -> Duration {
    #[cfg(feature = "metrics")]
    return reaper_rate.min(crate::metrics::publish::INTERVAL);
    #[cfg(not(feature = "metrics"))]
    reaper_rate
}

pub(crate) fn run<M>(pool: Weak<Core<M>>, woken: Receiver<()>)
where
    M: ManageConnection,
{
    let mut schedule = Schedule::default();
    let mut periodic: Option<Instant> = None;
    // When the last round started, and the deadline it planned the next one for.
    let mut last: Option<(Instant, Instant)> = None;
    loop {
        let Some(core) = pool.upgrade() else {
            return;
        };
        let start = Instant::now();
        if let Some((last_start, deadline)) = last {
            // From round start to round start, so that time lost while working counts too.
            let planned = deadline.saturating_duration_since(last_start);
            schedule.judge(&core.config.name, planned, start - last_start);
        }
        if periodic.is_none_or(|at| at <= start) {
            periodic = start.checked_add(period(core.config.settings.reaper_rate));
        }
        // If planning panics, the round still ends with a deadline: the periodic one.
        let mut next = periodic;
        let mut closed = false;
        core.shielded("reaping idle connections", || {
            match reap(&core, start, periodic) {
                Ok(wake_at) => next = wake_at,
                Err(Closed) => closed = true,
            }
        });
        if closed {
            return;
        }
        drop(core);
        last = next.map(|deadline| (start, deadline.max(start + MIN_ROUND_GAP)));
        if !rest(&woken, start + MIN_ROUND_GAP, next) {
            return;
        }
    }
}

/// One round, started at `start`: closes what expired, reports leaks, publishes metrics, and
/// plans the next round (no later than `periodic`), its deadlines fixed before the round's work
/// so that time lost in the round shows as lateness. Each part is shielded on its own: a panic
/// in one (a logger, a recorder) stops none of the others. `Err` when the pool is closed.
fn reap<M: ManageConnection>(
    core: &Core<M>,
    start: Instant,
    periodic: Option<Instant>,
) -> Result<Option<Instant>, Closed> {
    let mut open = true;
    core.shielded("closing expired connections", || open = sweep(core).is_ok());
    if !open {
        return Err(Closed);
    }
    let mut latest = periodic;
    if let Some(tracker) = &core.leaks {
        core.shielded("reporting leaks", || {
            let (found, next) = tracker.scan(start);
            latest = crate::clock::earliest(latest, next);
            for leak in found {
                log_shielded!(log::Level::Warn, "possible connection leak: {leak}");
            }
        });
    }
    #[cfg(feature = "metrics")]
    core.shielded("publishing metrics", || {
        crate::metrics::publish::publish(&core.config.name, &core.metrics());
    });
    let (now, now_stamp) = (Instant::now(), Clock::Precise.now());
    let latest = latest.map_or(Stamp::NEVER, |at| {
        now_stamp.after(at.saturating_duration_since(now))
    });
    let next = {
        let mut state = core.state.lock();
        if state.is_shut_down() {
            return Err(Closed);
        }
        state.plan_reap(latest)
    };
    Ok(now.checked_add(next.since(now_stamp)))
}

/// Closes the idle connections past their lifetime, and those beyond `min_idle` past
/// their idle timeout. `Err` when the pool is closed.
fn sweep<M: ManageConnection>(core: &Core<M>) -> Result<(), Closed> {
    let now = Clock::Precise.now();
    let idle_since = core
        .config
        .settings
        .idle_timeout
        .map(|timeout| now.before(timeout));
    let retired = {
        let mut state = core.state.lock();
        if state.is_shut_down() {
            return Err(Closed);
        }
        state.sweep(now, idle_since)
    };
    for (conn, reason) in retired {
        core.close_conn(conn, reason);
    }
    Ok(())
}

/// Rounds planned closer together than this are judged as if planned this far apart: a round
/// a few milliseconds late is scheduling noise, not starvation.
const SHORTEST_PERIOD: Duration = Duration::from_millis(100);

/// After a late round, how many rounds in a row must be on time before the episode is over:
/// starvation usually comes and goes, and one lucky round does not end it.
const ON_TIME_TO_CATCH_UP: u32 = 3;

/// Whether the reaper keeps its schedule (what lateness means and what is logged: `Pool`'s
/// "Threads"). A run of late rounds, up to [`ON_TIME_TO_CATCH_UP`] on-time rounds in a row, is
/// one episode, warned about once.
#[derive(Default)]
struct Schedule {
    late: bool,
    on_time_in_a_row: u32,
}

/// What one round says about the schedule.
#[derive(Debug, PartialEq, Eq)]
enum Judgement {
    OnTime,
    /// The first late round of an episode.
    FellBehind,
    /// Late, or not yet on time for long enough, within an episode.
    StillBehind,
    CaughtUp,
}

impl Schedule {
    /// `planned`: the interval the previous round planned; `elapsed`: what actually passed.
    fn assess(&mut self, planned: Duration, elapsed: Duration) -> Judgement {
        let late = elapsed > planned.max(SHORTEST_PERIOD).mul_f64(1.5);
        if late {
            self.on_time_in_a_row = 0;
            return if std::mem::replace(&mut self.late, true) {
                Judgement::StillBehind
            } else {
                Judgement::FellBehind
            };
        }
        if !self.late {
            return Judgement::OnTime;
        }
        self.on_time_in_a_row += 1;
        if self.on_time_in_a_row < ON_TIME_TO_CATCH_UP {
            return Judgement::StillBehind;
        }
        self.late = false;
        self.on_time_in_a_row = 0;
        Judgement::CaughtUp
    }

    /// Assesses one round and logs the start and end of an episode.
    fn judge(&mut self, pool: &str, planned: Duration, elapsed: Duration) {
        match self.assess(planned, elapsed) {
            Judgement::FellBehind => log_shielded!(
                log::Level::Warn,
                "pool {pool:?}: the reaper thread woke up {} late (it planned to sleep {}, \
                 slept {}): this process or machine is starved of CPU, the process was \
                 stopped, or a call on the reaper's thread blocked; until it catches up, \
                 lifetimes and leak reports run late and timeouts may look odd",
                Human(elapsed.saturating_sub(planned)),
                Human(planned),
                Human(elapsed),
            ),
            Judgement::CaughtUp => {
                log_shielded!(
                    log::Level::Info,
                    "pool {pool:?}: the reaper thread is back on schedule"
                );
            }
            Judgement::OnTime | Judgement::StillBehind => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_late_episode_is_reported_once_and_ends_after_rounds_on_time() {
        let mut s = Schedule::default();
        assert_eq!(s.assess(1000 * MS, 1010 * MS), Judgement::OnTime);
        assert_eq!(s.assess(1000 * MS, 1600 * MS), Judgement::FellBehind);
        assert_eq!(s.assess(1000 * MS, 4000 * MS), Judgement::StillBehind);
        // Starvation that comes and goes: one round on time does not end the episode.
        assert_eq!(s.assess(1000 * MS, 1000 * MS), Judgement::StillBehind);
        assert_eq!(s.assess(1000 * MS, 3000 * MS), Judgement::StillBehind);
        assert_eq!(s.assess(1000 * MS, 1000 * MS), Judgement::StillBehind);
        assert_eq!(s.assess(1000 * MS, 1000 * MS), Judgement::StillBehind);
        assert_eq!(s.assess(1000 * MS, 1000 * MS), Judgement::CaughtUp);
        assert_eq!(s.assess(1000 * MS, 1000 * MS), Judgement::OnTime);
        assert_eq!(s.assess(1000 * MS, 2000 * MS), Judgement::FellBehind);
    }

    #[test]
    fn a_round_woken_early_is_on_time() {
        let mut s = Schedule::default();
        assert_eq!(s.assess(30_000 * MS, 5 * MS), Judgement::OnTime);
    }

    #[test]
    fn short_sleeps_are_judged_against_the_shortest_period() {
        let mut s = Schedule::default();
        // 10 ms planned, 60 ms slept: scheduling noise.
        assert_eq!(s.assess(10 * MS, 60 * MS), Judgement::OnTime);
        assert_eq!(s.assess(Duration::ZERO, 140 * MS), Judgement::OnTime);
        assert_eq!(s.assess(10 * MS, 200 * MS), Judgement::FellBehind);
    }
}
