//! Pooling an r2d2 manager with sluicegate (feature `r2d2`): [`R2d2Manager`] wraps any
//! [`r2d2::ManageConnection`] — r2d2_postgres's, r2d2_sqlite's, diesel's `ConnectionManager` —
//! so that it can be pooled by sluicegate unchanged.
//!
//! The wrapper only forwards: `connect`, `is_valid` and `has_broken` are the inner manager's,
//! and so are the connection and error types.

use std::fmt;

/// Any r2d2 manager, as a sluicegate manager.
///
/// # Examples
///
/// ```
/// // A manager written for r2d2 (from an adapter crate, in real code).
/// struct Counter;
///
/// impl r2d2::ManageConnection for Counter {
///     type Connection = u32;
///     type Error = std::io::Error;
///     fn connect(&self) -> Result<u32, std::io::Error> { Ok(0) }
///     fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> { Ok(()) }
///     fn has_broken(&self, _: &mut u32) -> bool { false }
/// }
///
/// let pool = sluicegate::Pool::builder()
///     .max_size(2)
///     .build(sluicegate::r2d2::R2d2Manager::new(Counter))?;
/// *pool.get()? += 1;
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub struct R2d2Manager<M> {
    inner: M,
}

impl<M> R2d2Manager<M>
where
    M: ::r2d2::ManageConnection,
{
    /// Wraps `manager`.
    ///
    /// # Examples
    ///
    /// ```
    /// # struct Counter;
    /// # impl r2d2::ManageConnection for Counter {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(0) }
    /// #     fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut u32) -> bool { false }
    /// # }
    /// let manager = sluicegate::r2d2::R2d2Manager::new(Counter);
    /// ```
    pub fn new(manager: M) -> R2d2Manager<M> {
        R2d2Manager { inner: manager }
    }

    /// The wrapped manager.
    ///
    /// # Examples
    ///
    /// ```
    /// # struct Counter;
    /// # impl r2d2::ManageConnection for Counter {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(0) }
    /// #     fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut u32) -> bool { false }
    /// # }
    /// let manager = sluicegate::r2d2::R2d2Manager::new(Counter);
    /// let _inner: &Counter = manager.get_ref();
    /// ```
    #[must_use]
    pub fn get_ref(&self) -> &M {
        &self.inner
    }

    /// Unwraps the manager.
    ///
    /// # Examples
    ///
    /// ```
    /// # struct Counter;
    /// # impl r2d2::ManageConnection for Counter {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(0) }
    /// #     fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut u32) -> bool { false }
    /// # }
    /// let manager = sluicegate::r2d2::R2d2Manager::new(Counter);
    /// let _inner: Counter = manager.into_inner();
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
}

// By hand, and without the inner manager's own `Debug`: adapter crates' managers print their
// connection settings, which can hold a password.
impl<M> fmt::Debug for R2d2Manager<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("R2d2Manager")
            .field("manager", &std::any::type_name::<M>())
            .finish()
    }
}
