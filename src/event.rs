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
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let builder = sluicegate::Pool::<Manager>::builder()
///     .event_handler(Box::new(sluicegate::NopEventHandler));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct NopEventHandler;

impl HandleEvent for NopEventHandler {}

/// Declares an event: a struct whose fields are read through accessors (`getter(field)`: the
/// field names are r2d2's, which its `Debug` shows), each with its line of doc and an example.
macro_rules! event {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $getter:ident($field:ident): $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            $(pub(crate) $field: $ty,)*
        }

        impl $name {
            $(
                $(#[$field_doc])*
                #[doc = concat!(
                    "\n```\n# use {sluicegate::event::", stringify!($name), ", std::time::Duration};\n",
                    "fn ", stringify!($getter), "(e: ", stringify!($name), ") -> ", stringify!($ty),
                    " { e.", stringify!($getter), "() }\n```",
                )]
                #[inline]
                #[must_use]
                pub fn $getter(&self) -> $ty {
                    self.$field
                }
            )*
        }
    };
}

event! {
    /// A connection was opened.
    ///
    /// ```
    /// fn log(e: &sluicegate::event::AcquireEvent) {
    ///     println!("opened connection {}", e.connection_id());
    /// }
    /// ```
    AcquireEvent {
        /// The connection's id, unique within the process.
        connection_id(id): u64,
    }
}

event! {
    /// A connection was closed.
    ///
    /// ```
    /// fn log(e: &sluicegate::event::ReleaseEvent) {
    ///     println!("closed connection {} after {:?}", e.connection_id(), e.age());
    /// }
    /// ```
    ReleaseEvent {
        /// The connection's id.
        connection_id(id): u64,
        /// How long the connection existed.
        age(age): Duration,
    }
}

event! {
    /// A connection was checked out.
    ///
    /// ```
    /// fn log(e: &sluicegate::event::CheckoutEvent) {
    ///     println!("got {} after {:?}", e.connection_id(), e.duration());
    /// }
    /// ```
    CheckoutEvent {
        /// The connection's id.
        connection_id(id): u64,
        /// How long the check-out took, waiting and validation included.
        duration(duration): Duration,
    }
}

event! {
    /// A check-out timed out.
    ///
    /// ```
    /// fn log(e: &sluicegate::event::TimeoutEvent) {
    ///     eprintln!("gave up after {:?}", e.timeout());
    /// }
    /// ```
    TimeoutEvent {
        /// The timeout the check-out was given.
        timeout(timeout): Duration,
    }
}

event! {
    /// A connection was checked back in.
    ///
    /// ```
    /// fn log(e: &sluicegate::event::CheckinEvent) {
    ///     println!("{} was held for {:?}", e.connection_id(), e.duration());
    /// }
    /// ```
    CheckinEvent {
        /// The connection's id.
        connection_id(id): u64,
        /// How long the connection was checked out.
        duration(duration): Duration,
    }
}
