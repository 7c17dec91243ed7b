//! Events a pool reports to its [`HandleEvent`] (the same events, with the same accessors, as
//! r2d2).
//!
//! ```
//! use sluicegate::event::{HandleEvent, TimeoutEvent};
//!
//! #[derive(Debug)]
//! struct Alert;
//!
//! impl HandleEvent for Alert {
//!     fn handle_timeout(&self, e: TimeoutEvent) {
//!         eprintln!("no connection within {:?}", e.timeout());
//!     }
//! }
//! ```

use std::fmt;
use std::time::Duration;

/// Receives the events of a pool. Every method has an empty default body.
///
/// Every event is delivered on the thread where it happened and never while the pool's lock is
/// held, so a handler may call back into the pool (`pool.state()`, `pool.metrics()`). A handler
/// runs inline on the check-out and check-in paths: keep it short. A handler that panics is
/// logged and otherwise ignored: it never costs the pool a connection.
///
/// # Examples
///
/// ```
/// use sluicegate::event::{CheckoutEvent, HandleEvent};
/// # use {sluicegate::doc_fixture::Manager, std::sync::atomic::{AtomicU64, Ordering::Relaxed}};
/// #[derive(Debug, Default)]
/// struct SlowCheckouts(AtomicU64);
///
/// impl HandleEvent for SlowCheckouts {
///     fn handle_checkout(&self, event: CheckoutEvent) {
///         if event.duration().as_millis() > 100 {
///             self.0.fetch_add(1, Relaxed);
///         }
///     }
/// }
///
/// let handler = Box::new(SlowCheckouts::default());
/// let pool = sluicegate::Pool::builder().event_handler(handler).build(Manager)?;
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub trait HandleEvent: fmt::Debug + Sync + Send {
    /// Called when the pool has opened a new connection (see [`AcquireEvent`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Debug)] struct Log;
    /// impl sluicegate::HandleEvent for Log {
    ///     fn handle_acquire(&self, e: sluicegate::event::AcquireEvent) {
    ///         println!("opened connection {}", e.connection_id());
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn handle_acquire(&self, event: AcquireEvent) {}

    /// Called when the pool closes a connection (see [`ReleaseEvent`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Debug)] struct Log;
    /// impl sluicegate::HandleEvent for Log {
    ///     fn handle_release(&self, e: sluicegate::event::ReleaseEvent) {
    ///         println!("closed {} at age {:?}", e.connection_id(), e.age());
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn handle_release(&self, event: ReleaseEvent) {}

    /// Called when a connection is checked out (see [`CheckoutEvent`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Debug)] struct Log;
    /// impl sluicegate::HandleEvent for Log {
    ///     fn handle_checkout(&self, e: sluicegate::event::CheckoutEvent) {
    ///         println!("waited {:?} for {}", e.duration(), e.connection_id());
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn handle_checkout(&self, event: CheckoutEvent) {}

    /// Called when a check-out gives up waiting (see [`TimeoutEvent`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Debug)] struct Log;
    /// impl sluicegate::HandleEvent for Log {
    ///     fn handle_timeout(&self, e: sluicegate::event::TimeoutEvent) {
    ///         eprintln!("gave up after {:?}", e.timeout());
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn handle_timeout(&self, event: TimeoutEvent) {}

    /// Called when a connection is checked back in (see [`CheckinEvent`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Debug)] struct Log;
    /// impl sluicegate::HandleEvent for Log {
    ///     fn handle_checkin(&self, e: sluicegate::event::CheckinEvent) {
    ///         println!("{} held for {:?}", e.connection_id(), e.duration());
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn handle_checkin(&self, event: CheckinEvent) {}
}

/// A [`HandleEvent`] that ignores every event (the default).
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let builder = sluicegate::Pool::<Manager>::builder()
///     .event_handler(Box::new(sluicegate::NopEventHandler));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct NopEventHandler;

impl HandleEvent for NopEventHandler {}

/// A connection was opened.
///
/// # Examples
///
/// ```
/// fn log(e: &sluicegate::event::AcquireEvent) {
///     println!("opened connection {}", e.connection_id());
/// }
/// ```
#[derive(Debug)]
pub struct AcquireEvent {
    pub(crate) id: u64,
}

impl AcquireEvent {
    /// The connection's id, unique within the process.
    ///
    /// # Examples
    ///
    /// ```
    /// fn connection_id(e: sluicegate::event::AcquireEvent) -> u64 { e.connection_id() }
    /// ```
    #[inline]
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.id
    }
}

/// A connection was closed.
///
/// # Examples
///
/// ```
/// fn log(e: &sluicegate::event::ReleaseEvent) {
///     println!("closed connection {} after {:?}", e.connection_id(), e.age());
/// }
/// ```
#[derive(Debug)]
pub struct ReleaseEvent {
    pub(crate) id: u64,
    pub(crate) age: Duration,
}

impl ReleaseEvent {
    /// The connection's id.
    ///
    /// # Examples
    ///
    /// ```
    /// fn connection_id(e: sluicegate::event::ReleaseEvent) -> u64 { e.connection_id() }
    /// ```
    #[inline]
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.id
    }

    /// How long the connection existed.
    ///
    /// # Examples
    ///
    /// ```
    /// fn age(e: sluicegate::event::ReleaseEvent) -> std::time::Duration { e.age() }
    /// ```
    #[inline]
    #[must_use]
    pub fn age(&self) -> Duration {
        self.age
    }
}

/// A connection was checked out.
///
/// # Examples
///
/// ```
/// fn log(e: &sluicegate::event::CheckoutEvent) {
///     println!("got {} after {:?}", e.connection_id(), e.duration());
/// }
/// ```
#[derive(Debug)]
pub struct CheckoutEvent {
    pub(crate) id: u64,
    pub(crate) duration: Duration,
}

impl CheckoutEvent {
    /// The connection's id.
    ///
    /// # Examples
    ///
    /// ```
    /// fn connection_id(e: sluicegate::event::CheckoutEvent) -> u64 { e.connection_id() }
    /// ```
    #[inline]
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.id
    }

    /// How long the check-out took, waiting and validation included.
    ///
    /// # Examples
    ///
    /// ```
    /// fn duration(e: sluicegate::event::CheckoutEvent) -> std::time::Duration { e.duration() }
    /// ```
    #[inline]
    #[must_use]
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// A check-out timed out.
///
/// # Examples
///
/// ```
/// fn log(e: &sluicegate::event::TimeoutEvent) {
///     eprintln!("gave up after {:?}", e.timeout());
/// }
/// ```
#[derive(Debug)]
pub struct TimeoutEvent {
    pub(crate) timeout: Duration,
}

impl TimeoutEvent {
    /// The timeout the check-out was given.
    ///
    /// # Examples
    ///
    /// ```
    /// fn timeout(e: sluicegate::event::TimeoutEvent) -> std::time::Duration { e.timeout() }
    /// ```
    #[inline]
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A connection was checked back in.
///
/// # Examples
///
/// ```
/// fn log(e: &sluicegate::event::CheckinEvent) {
///     println!("{} was held for {:?}", e.connection_id(), e.duration());
/// }
/// ```
#[derive(Debug)]
pub struct CheckinEvent {
    pub(crate) id: u64,
    pub(crate) duration: Duration,
}

impl CheckinEvent {
    /// The connection's id.
    ///
    /// # Examples
    ///
    /// ```
    /// fn connection_id(e: sluicegate::event::CheckinEvent) -> u64 { e.connection_id() }
    /// ```
    #[inline]
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.id
    }

    /// How long the connection was checked out.
    ///
    /// # Examples
    ///
    /// ```
    /// fn duration(e: sluicegate::event::CheckinEvent) -> std::time::Duration { e.duration() }
    /// ```
    #[inline]
    #[must_use]
    pub fn duration(&self) -> Duration {
        self.duration
    }
}
