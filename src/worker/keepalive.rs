//! The pool's keepalive thread, started only with [`keepalive`](crate::Builder::keepalive) set:
//! it validates idle connections that have gone `keepalive` without being verified.
//!
//! A thread of its own, because validations are round trips: on a database that stopped
//! answering each one takes up to `connection_timeout`, and that must never delay the reaper's
//! leak reports and sweeps. Passes never start closer than [`MIN_ROUND_GAP`] apart, and no
//! connection is validated more often than every [`KEEPALIVE_FLOOR`]: a tiny `keepalive` cannot
//! make the pool hammer its database.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::clock::{Clock, Stamp};
use crate::core::Core;
use crate::manager::ManageConnection;
use crate::state::Retire;
use crate::worker::{Closed, MIN_ROUND_GAP, rest};

/// The shortest interval keepalive validates a connection at, whatever `keepalive` says.
pub(crate) const KEEPALIVE_FLOOR: Duration = Duration::from_millis(100);

/// How long after it was last verified an idle connection is validated: a tenth before
/// `keepalive` (floored) runs out, so that with the thread's own scheduling delay each
/// connection is still validated at least every `keepalive`.
pub(crate) fn keepalive_due(keepalive: Duration) -> Duration {
    let every = keepalive.max(KEEPALIVE_FLOOR);
    every - every / 10
}

pub(crate) fn run<M>(pool: Weak<Core<M>>, woken: Receiver<()>)
where
    M: ManageConnection,
{
    loop {
        let Some(core) = pool.upgrade() else {
            return;
        };
        let Some(keepalive) = core.config.settings.keepalive else {
            return;
        };
        let after = keepalive_due(keepalive);
        let start = Instant::now();
        // If the pass panics, the next one still comes.
        let mut next = start.checked_add(after);
        let mut closed = false;
        core.shielded("keeping idle connections alive", || {
            match keep_alive(&core, after) {
                Ok(at) => next = at,
                Err(Closed) => closed = true,
            }
        });
        if closed {
            return;
        }
        drop(core);
        if !rest(&woken, start + MIN_ROUND_GAP, next) {
            return;
        }
    }
}

/// One pass: validates, one at a time, every idle connection not verified within `after`
/// when the pass began (each at most once: a validated connection is verified anew), then
/// says when the next connection falls due. `Err` when the pool is closed.
fn keep_alive<M: ManageConnection>(
    core: &Core<M>,
    after: Duration,
) -> Result<Option<Instant>, Closed> {
    let due = Clock::Precise.now().before(after);
    loop {
        let taken = {
            let mut state = core.state.lock();
            if state.is_shut_down() {
                return Err(Closed);
            }
            state.take_for_keepalive(due)
        };
        let Some(mut conn) = taken else {
            break;
        };
        let proven = conn.proven;
        match core.validate(&mut conn, core.config.settings.connection_timeout) {
            Ok(()) => {
                let retired = core.state.lock().kept_alive(conn, Clock::Precise.now());
                if let Some((conn, reason)) = retired {
                    core.close_conn(conn, reason);
                }
            }
            Err((cause, error)) => {
                core.log_failure_closing(conn.id, "keepalive validation", &cause);
                core.state.lock().keepalive_failed(Arc::new(cause), proven);
                core.close_conn(conn, Retire::Invalid);
                if let Some(err) = error {
                    core.shielded("the error handler", || {
                        core.config.error_handler.handle_error(err);
                    });
                }
            }
        }
    }
    let (now, now_stamp) = (Instant::now(), Clock::Precise.now());
    let next: Stamp = core
        .state
        .lock()
        .plan_keepalive(after, now_stamp.after(after));
    Ok(now.checked_add(next.since(now_stamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_due_a_tenth_early_and_never_more_often_than_the_floor() {
        assert_eq!(
            keepalive_due(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
        assert_eq!(
            keepalive_due(Duration::from_nanos(1)),
            KEEPALIVE_FLOOR - KEEPALIVE_FLOOR / 10
        );
    }
}
