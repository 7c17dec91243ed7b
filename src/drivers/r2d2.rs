//! Pooling an r2d2 manager with sluicegate (feature `r2d2`): [`R2d2Manager`] wraps any
//! [`r2d2::ManageConnection`] — r2d2_postgres's, r2d2_sqlite's, diesel's `ConnectionManager` —
//! so that it can be pooled by sluicegate unchanged; [`R2d2Customizer`] does the same for an
//! r2d2 customizer. The crate guide's "Moving from r2d2" says what else changes.
//!
//! ```
//! # use sluicegate::doc_fixture::R2d2Counter as AdapterManager; // any r2d2 manager
//! use sluicegate::r2d2::R2d2Manager;
//!
//! let pool = sluicegate::Pool::builder().build(R2d2Manager::new(AdapterManager))?;
//! # Ok::<(), sluicegate::Error>(())
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Any r2d2 manager, as a sluicegate manager: `connect`, `is_valid` and `has_broken` are the
/// inner manager's, and so are the connection and error types. An r2d2 manager cannot say which
/// connect errors will not heal (a wrong password, which r2d2 retries until
/// `connection_timeout` runs out), so this one asks [`refuses_login`] by default.
///
/// ```
/// # use sluicegate::doc_fixture::R2d2Counter; // an r2d2 manager, an adapter crate's in real code
/// let pool = sluicegate::Pool::new(sluicegate::r2d2::R2d2Manager::new(R2d2Counter))?;
/// *pool.get()? += 1;
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub struct R2d2Manager<M>
where
    M: ::r2d2::ManageConnection,
{
    inner: M,
    /// Which connect errors are permanent; `None` asks [`refuses_login`].
    permanent: Option<Arc<Classifier<M::Error>>>,
}

/// A user's rule for permanent errors.
type Classifier<E> = dyn Fn(&E) -> bool + Send + Sync;

impl<M> R2d2Manager<M>
where
    M: ::r2d2::ManageConnection,
{
    /// Wraps `manager`.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::R2d2Counter;
    /// let manager = sluicegate::r2d2::R2d2Manager::new(R2d2Counter);
    /// ```
    pub fn new(manager: M) -> R2d2Manager<M> {
        R2d2Manager {
            inner: manager,
            permanent: None,
        }
    }

    /// Tells the pool which connect errors will not go away by waiting: `is_permanent(&error)`
    /// returns `true` for those, as
    /// [`ManageConnection::is_permanent`](crate::ManageConnection::is_permanent) does for a
    /// manager of sluicegate's. It replaces the default, [`refuses_login`]; call that from your
    /// rule to keep it. A rule that panics counts as `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// # let inner = sluicegate::doc_fixture::R2d2Counter; // an r2d2 manager with io::Error
    /// let manager = sluicegate::r2d2::R2d2Manager::new(inner).permanent_if(|err: &io::Error| {
    ///     err.kind() == io::ErrorKind::PermissionDenied || sluicegate::r2d2::refuses_login(err)
    /// });
    /// ```
    pub fn permanent_if<F>(mut self, is_permanent: F) -> R2d2Manager<M>
    where
        F: Fn(&M::Error) -> bool + Send + Sync + 'static,
    {
        self.permanent = Some(Arc::new(is_permanent));
        self
    }

    /// The wrapped manager.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::R2d2Counter;
    /// let manager = sluicegate::r2d2::R2d2Manager::new(R2d2Counter);
    /// let _inner: &R2d2Counter = manager.get_ref();
    /// ```
    #[must_use]
    pub fn get_ref(&self) -> &M {
        &self.inner
    }

    /// Unwraps the manager.
    ///
    /// ```
    /// # use sluicegate::doc_fixture::R2d2Counter;
    /// let manager = sluicegate::r2d2::R2d2Manager::new(R2d2Counter);
    /// let _inner: R2d2Counter = manager.into_inner();
    /// ```
    #[must_use]
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<M> From<M> for R2d2Manager<M>
where
    M: ::r2d2::ManageConnection,
{
    fn from(manager: M) -> R2d2Manager<M> {
        R2d2Manager::new(manager)
    }
}

impl<M> crate::ManageConnection for R2d2Manager<M>
where
    M: ::r2d2::ManageConnection,
{
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> Result<M::Connection, M::Error> {
        self.inner.connect()
    }

    fn is_valid(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        self.inner.has_broken(conn)
    }

    fn is_permanent(&self, error: &M::Error) -> bool {
        match &self.permanent {
            Some(is_permanent) => is_permanent(error),
            None => refuses_login(error),
        }
    }
}

// By hand, and without the inner manager's own `Debug`: adapter crates' managers print their
// connection settings, which can hold a password.
impl<M> fmt::Debug for R2d2Manager<M>
where
    M: ::r2d2::ManageConnection,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2d2Manager")
            .field("manager", &std::any::type_name::<M>())
            .field(
                "permanent_if",
                &if self.permanent.is_some() {
                    "custom"
                } else {
                    "refuses_login"
                },
            )
            .finish()
    }
}

/// Whether `error`, or an error in its `source()` chain, is a driver's report that the server
/// refused the login for a reason waiting will not fix: a wrong password, an unknown user or
/// database. It is what [`R2d2Manager`] calls a permanent error unless told otherwise
/// ([`R2d2Manager::permanent_if`]). It recognizes the errors of the drivers compiled into
/// sluicegate, and says `false` of any other:
///
/// - feature `diesel`: `diesel::r2d2::Error` and `diesel::ConnectionError` (the managers of
///   `diesel::r2d2`, whichever backend): an invalid database URL, and a login refused with
///   PostgreSQL's or MySQL's words for it (diesel reports both as text only).
/// - feature `postgres`: `postgres::Error` (r2d2_postgres's), by SQLSTATE: `28P01` (wrong
///   password), `28000` (unknown role, or no `pg_hba.conf` entry), `3D000` (unknown database),
///   and PgBouncer's refusals.
/// - feature `mysql`: `mysql::Error` (r2d2_mysql's, when it uses the same `mysql` release as
///   sluicegate), by the server's error code: access denied, unknown database.
///
/// ```
/// // An error of a driver sluicegate does not know.
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// assert!(!sluicegate::r2d2::refuses_login(&refused));
/// ```
#[must_use]
pub fn refuses_login(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if known_refusal(error) {
            return true;
        }
        next = error.source();
    }
    false
}

/// One error of the chain, without its sources.
#[allow(unused_variables)] // with no driver feature, nothing is known
fn known_refusal(error: &(dyn StdError + 'static)) -> bool {
    #[cfg(feature = "diesel")]
    if let Some(error) = error.downcast_ref::<::diesel::r2d2::Error>() {
        return crate::diesel::refuses_login(error);
    }
    #[cfg(feature = "diesel")]
    if let Some(error) = error.downcast_ref::<::diesel::ConnectionError>() {
        return crate::diesel::connection_refused_for_good(error);
    }
    #[cfg(feature = "postgres")]
    if let Some(error) = error.downcast_ref::<::postgres::Error>() {
        return crate::postgres::refuses_login(error);
    }
    #[cfg(feature = "mysql")]
    if let Some(error) = error.downcast_ref::<::mysql::Error>() {
        return crate::mysql::refuses_login(error);
    }
    false
}

// r2d2's customizers are sluicegate's through `R2d2Customizer`, and two known ones directly,
// rather than through a blanket `impl<T: r2d2::CustomizeConnection<C, E>> CustomizeConnection<C,
// E> for T`: such an impl conflicts (E0119) with every impl of sluicegate's trait that is generic
// over the connection or error type, sluicegate's own `NopConnectionCustomizer` and any such
// impl in users' code (a crate downstream could implement r2d2's trait for those types), so
// turning this feature on somewhere in a build would break code elsewhere in it.

/// r2d2's customizer that does nothing is sluicegate's too.
impl<C, E> crate::CustomizeConnection<C, E> for ::r2d2::NopConnectionCustomizer {}

/// An r2d2 customizer as a sluicegate one: `Box::new(R2d2Customizer::new(customizer))` where
/// `customizer` is a `Box<dyn r2d2::CustomizeConnection<C, E>>` or a box of any type that
/// implements r2d2's [`CustomizeConnection`](::r2d2::CustomizeConnection): for customizers
/// from other crates, and ones already boxed as r2d2 trait objects.
///
/// Customizers you write yourself need no wrapper: implement sluicegate's
/// [`CustomizeConnection`](crate::CustomizeConnection) instead of r2d2's (the same methods).
/// diesel's `TestCustomizer` and r2d2's `NopConnectionCustomizer` are sluicegate's already.
///
/// # Examples
///
/// ```
/// use sluicegate::r2d2::{R2d2Customizer, R2d2Manager};
/// # use sluicegate::doc_fixture::R2d2Counter;
/// #[derive(Debug)]
/// struct StartAt(u32); // a customizer from a crate written for r2d2
///
/// impl r2d2::CustomizeConnection<u32, std::io::Error> for StartAt {
///     fn on_acquire(&self, conn: &mut u32) -> Result<(), std::io::Error> {
///         *conn = self.0;
///         Ok(())
///     }
/// }
///
/// let customizer: Box<dyn r2d2::CustomizeConnection<u32, std::io::Error>> = Box::new(StartAt(7));
/// let pool = sluicegate::Pool::builder()
///     .connection_customizer(Box::new(R2d2Customizer::new(customizer)))
///     .build(R2d2Manager::new(R2d2Counter))?;
/// assert_eq!(*pool.get()?, 7);
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub struct R2d2Customizer<T: ?Sized> {
    inner: Box<T>,
}

impl<T: ?Sized> R2d2Customizer<T> {
    /// Wraps `customizer`.
    ///
    /// ```
    /// let customizer: Box<dyn r2d2::CustomizeConnection<(), std::io::Error>> =
    ///     Box::new(r2d2::NopConnectionCustomizer);
    /// let _ = sluicegate::r2d2::R2d2Customizer::new(customizer);
    /// ```
    pub fn new(customizer: Box<T>) -> R2d2Customizer<T> {
        R2d2Customizer { inner: customizer }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for R2d2Customizer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("R2d2Customizer").field(&self.inner).finish()
    }
}

impl<T, C, E> crate::CustomizeConnection<C, E> for R2d2Customizer<T>
where
    T: ?Sized + ::r2d2::CustomizeConnection<C, E>,
{
    fn on_acquire(&self, conn: &mut C) -> Result<(), E> {
        self.inner.on_acquire(conn)
    }

    fn on_release(&self, conn: C) {
        self.inner.on_release(conn);
    }
}
