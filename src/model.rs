//! Pools for the model checker, in builds with `--cfg sluicegate_model` only (tests/model.rs).
//!
//! Why this exists: a real pool starts an opener, a reaper and maybe a keepalive thread, which
//! are OS threads the model checker (shuttle) neither sees nor schedules. A model pool has
//! none: it is built like `Pool::unusable` (the wake-up channels' receivers are dropped, so
//! wake-ups go nowhere), and its connections are opened synchronously, by the test, through
//! the opener's own bookkeeping (`PoolState::begin_open`, then `PoolState::opened`). Check-out,
//! check-in, `close`, `evict_all` and `detach` then run the real code, on threads shuttle
//! schedules.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::clock::{Clock, Stamp};
use crate::config::Builder;
use crate::core::{Core, Owner};
use crate::error::{Cause, Error};
use crate::extensions::Extensions;
use crate::manager::ManageConnection;
use crate::pool::Pool;
use crate::state::Conn;

/// Connection ids of model pools (far above the opener's, which count from 1).
static NEXT_ID: AtomicU64 = AtomicU64::new(1 << 48);

/// Builds a pool with `builder`'s settings and no threads, with its `min_idle` connections
/// (by default `max_size`) opened; and the [`Opener`] that opens more when the test says.
///
/// # Errors
///
/// An invalid setting, as [`Builder::build`].
///
/// # Panics
///
/// If the manager fails to open one of the first connections.
pub fn build<M>(builder: Builder<M>, manager: M) -> Result<(Pool<M>, Opener<M>), Error>
where
    M: ManageConnection,
{
    let config = builder.into_config()?;
    let target = config.settings.min_idle_target();
    let (wake, _) = crossbeam_channel::bounded(1);
    let (reap, _) = crossbeam_channel::bounded(1);
    let (keep, _) = crossbeam_channel::bounded(1);
    let core = Arc::new(Core::new(config, manager, wake, reap, keep));
    let opener = Opener(Arc::downgrade(&core));
    for _ in 0..target {
        assert!(
            opener.open(),
            "model::build: a first connection did not open"
        );
    }
    Ok((Pool::from_core(core), opener))
}

/// Stands in for the pool's opener thread: like it, it holds the pool weakly.
pub struct Opener<M>(Weak<Core<M>>)
where
    M: ManageConnection;

impl<M> Opener<M>
where
    M: ManageConnection,
{
    /// One round of the opener thread, on the calling thread: opens a connection if the pool
    /// wants one, and returns whether one joined. It never waits out a back-off: the model has
    /// no time.
    pub fn open(&self) -> bool {
        let Some(core) = self.0.upgrade() else {
            return false;
        };
        let generation = {
            let mut state = core.state.lock();
            if state.is_shut_down() || !state.wants_connection() {
                return false;
            }
            state.begin_open()
        };
        let raw = match core.manager.connect() {
            Ok(raw) => raw,
            Err(err) => {
                let mut state = core.state.lock();
                state.open_failed(Arc::new(Cause::capture(&err)), false);
                core.progress.notify_all();
                return false;
            }
        };
        let born = Clock::Precise.now();
        let now = core.clock.now();
        let conn = Box::new(Conn {
            raw,
            owner: Arc::new(Owner(core.clone())),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            born,
            expires: core
                .config
                .settings
                .max_lifetime
                .map_or(Stamp::NEVER, |lifetime| born.after(lifetime)),
            generation,
            checked_in: now,
            verified: now,
            proven: false,
            extensions: Extensions::new(),
        });
        let retired = {
            let mut state = core.state.lock();
            let retired = state.opened(conn);
            core.progress.notify_all();
            retired
        };
        match retired {
            Some((conn, reason)) => {
                core.close_conn(conn, reason);
                false
            }
            None => true,
        }
    }
}
