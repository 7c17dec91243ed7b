//! [`Extensions`]: a type map that travels with a physical connection.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

/// A map from types to one value of each type, kept with a pooled connection: reach it through
/// [`PooledConnection::extensions`](crate::PooledConnection::extensions) and
/// [`PooledConnection::extensions_mut`](crate::PooledConnection::extensions_mut). It belongs
/// to the connection, not to a check-out: what one borrower stores (a prepared statement cache,
/// a session flag) the next borrower of the same connection finds.
///
/// # Examples
///
/// ```
/// struct StatementCache(Vec<String>);
/// let mut ext = sluicegate::Extensions::new();
/// ext.insert(StatementCache(vec!["SELECT 1".into()]));
/// assert_eq!(ext.get::<StatementCache>().map(|c| c.0.len()), Some(1));
/// ```
#[derive(Default)]
pub struct Extensions(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Extensions {
    /// Returns an empty map.
    ///
    /// ```
    /// assert!(sluicegate::Extensions::new().is_empty());
    /// ```
    #[inline]
    #[must_use]
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// Stores `value`, returning the value of the same type stored before, if any.
    ///
    /// ```
    /// let mut ext = sluicegate::Extensions::new();
    /// assert_eq!(ext.insert(1u32), None);
    /// assert_eq!(ext.insert(2u32), Some(1));
    /// ```
    pub fn insert<T>(&mut self, value: T) -> Option<T>
    where
        T: Send + Sync + 'static,
    {
        self.0
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok())
            .map(|old| *old)
    }

    /// Returns the stored value of type `T`.
    ///
    /// ```
    /// let mut ext = sluicegate::Extensions::new();
    /// ext.insert("tenant-7");
    /// assert_eq!(ext.get::<&str>(), Some(&"tenant-7"));
    /// ```
    pub fn get<T>(&self) -> Option<&T>
    where
        T: Send + Sync + 'static,
    {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref())
    }

    /// Returns the stored value of type `T` for changing in place.
    ///
    /// ```
    /// let mut ext = sluicegate::Extensions::new();
    /// ext.insert(0u64);
    /// *ext.get_mut::<u64>().unwrap() += 1;
    /// ```
    pub fn get_mut<T>(&mut self) -> Option<&mut T>
    where
        T: Send + Sync + 'static,
    {
        self.0
            .get_mut(&TypeId::of::<T>())
            .and_then(|v| v.downcast_mut())
    }

    /// Removes and returns the stored value of type `T`.
    ///
    /// ```
    /// let mut ext = sluicegate::Extensions::new();
    /// ext.insert(5i32);
    /// assert_eq!(ext.remove::<i32>(), Some(5));
    /// ```
    pub fn remove<T>(&mut self) -> Option<T>
    where
        T: Send + Sync + 'static,
    {
        self.0
            .remove(&TypeId::of::<T>())
            .and_then(|v| v.downcast::<T>().ok())
            .map(|v| *v)
    }

    /// Removes every value.
    ///
    /// ```
    /// let mut ext = sluicegate::Extensions::new();
    /// ext.clear();
    /// ```
    #[inline]
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// How many values are stored.
    ///
    /// ```
    /// assert_eq!(sluicegate::Extensions::new().len(), 0);
    /// ```
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is stored.
    ///
    /// ```
    /// assert!(sluicegate::Extensions::new().is_empty());
    /// ```
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// By hand: the values are type-erased and need not be `Debug`.
impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}
