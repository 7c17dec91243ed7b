//! The pool's keepalive thread, `sluice-keep-<pool name>`, started only with
//! [`keepalive`](crate::Builder::keepalive) set: it validates idle connections that have gone
//! `keepalive` without being verified, one at a time, off the pool's lock.
//!
//! A thread of its own, because validations are round trips: on a database that stopped
//! answering each one takes up to `connection_timeout`, and that must never delay the reaper's
//! leak reports and sweeps. Each pass validates every connection due when it started at most
//! once, passes never start closer than [`MIN_ROUND_GAP`] apart, and no connection is validated
//! more often than every [`KEEPALIVE_FLOOR`]: a tiny `keepalive` cannot make the pool hammer
//! its database. Like the other threads it holds only a weak reference to the pool between
//! passes and exits when the pool closes or is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::clock::{Clock, Stamp};
use crate::core::Core;
use crate::manager::ManageConnection;
use crate::state::Retire;
use crate::worker::reaper::{MIN_ROUND_GAP, rest};

/// The shortest interval keepalive validates a connection at, whatever `keepalive` says.
pub(crate) const KEEPALIVE_FLOOR: Duration = Duration::from_millis(100);

/// How long after it was last verified an idle connection is validated: a tenth before
/// `keepalive` (floored) runs out, so that with the thread's own scheduling delay each
/// connection is still validated at least every `keepalive`.
pub(crate) fn keepalive_due(keepalive: Duration) -> Duration {
    let every = keepalive.max(KEEPALIVE_FLOOR);
    every - every / 10
}

/// The thread's body.
pub(crate) fn run<M>(pool: Weak<Core<M>>, woken: Receiver<()>)
where
    M: ManageConnection,
{
    loop {
        let Some(shared) = pool.upgrade() else {
            return;
        };
        let Some(keepalive) = shared.config.keepalive else {
            return;
        };
        let after = keepalive_due(keepalive);
        let start = Instant::now();
        // If the pass panics, the next one still comes.
        let mut next = start.checked_add(after);
        let mut closed = false;
        shared.shielded("keeping idle connections alive", || {
            match shared.keep_alive(after) {
                Some(at) => next = at,
                None => closed = true,
            }
        });
        if closed {
            return;
        }
        drop(shared);
        if !rest(&woken, start + MIN_ROUND_GAP, next) {
            return;
        }
    }
}

impl<M> Core<M>
where
    M: ManageConnection,
{
    /// One pass: validates, one at a time, every idle connection not verified within `after`
    /// when the pass began (each at most once: a validated connection is verified anew), then
    /// says when the next connection falls due. `None` when the pool is closed.
    fn keep_alive(&self, after: Duration) -> Option<Option<Instant>> {
        let due = Clock::Precise.now().before(after);
        loop {
            let taken = {
                let mut state = self.state.lock();
                if state.is_closed() {
                    return None;
                }
                state.take_for_keepalive(due)
            };
            let Some(mut conn) = taken else {
                break;
            };
            let proven = conn.proven;
            match self.validate(&mut conn, self.config.connection_timeout) {
                Ok(()) => {
                    let retired = self.state.lock().kept_alive(conn, Clock::Precise.now());
                    if let Some((conn, reason)) = retired {
                        self.close_conn(conn, reason);
                    }
                }
                Err((cause, error)) => {
                    self.log_failure_closing(conn.id, "keepalive validation", &cause);
                    self.state.lock().keepalive_failed(Arc::new(cause), proven);
                    self.close_conn(conn, Retire::Invalid);
                    if let Some(err) = error {
                        self.shielded("the error handler", || {
                            self.config.error_handler.handle_error(err);
                        });
                    }
                }
            }
        }
        let (now, now_stamp) = (Instant::now(), Clock::Precise.now());
        let next: Stamp = self
            .state
            .lock()
            .plan_keepalive(after, now_stamp.after(after));
        Some(now.checked_add(next.since(now_stamp)))
    }
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
