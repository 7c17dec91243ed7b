//! The pool's threads, as functions over the engine ([`crate::core`]): the opener, the reaper
//! and the keepalive thread. Each holds only a weak reference to the pool between rounds and
//! exits when the pool closes or is dropped.

pub(crate) mod keepalive;
pub(crate) mod opener;
pub(crate) mod reaper;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// What a round returns when it finds the pool closed: its thread is done.
pub(crate) struct Closed;

/// Background rounds (the reaper's, and keepalive passes) never start closer together than
/// this, whatever `reaper_rate`, `keepalive` or a stream of wake-ups ask for: a pool must
/// never spin.
pub(crate) const MIN_ROUND_GAP: Duration = Duration::from_millis(10);

/// Waits until the next round may start: not before `not_before`, then until `until` (`None`:
/// until woken) or a wake-up on `woken`. Returns `false` when the pool is gone (the channel
/// disconnected).
pub(crate) fn rest(woken: &Receiver<()>, not_before: Instant, until: Option<Instant>) -> bool {
    let mut nudged = false;
    while Instant::now() < not_before {
        match woken.recv_deadline(not_before) {
            Ok(()) => nudged = true,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
    if nudged {
        return true;
    }
    let woke = match until {
        Some(deadline) => woken.recv_deadline(deadline),
        None => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
    };
    woke != Err(RecvTimeoutError::Disconnected)
}
