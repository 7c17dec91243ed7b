//! The pool's threads, as functions over the engine ([`crate::core`]): the opener opens
//! connections, the reaper closes expired ones and reports leaks, and the keepalive thread
//! (only with `keepalive` set) validates idle ones. Each holds only a weak reference to the
//! pool between rounds and exits when the pool closes or is dropped; none holds the pool's
//! lock while calling a driver, a handler or the logger.

pub(crate) mod keepalive;
pub(crate) mod opener;
pub(crate) mod reaper;
