//! The built-in drivers, one module per database client, each behind its feature and
//! re-exported at the crate's root (`sluicegate::postgres`, ...). A driver implements
//! [`ManageConnection`](crate::ManageConnection) over its client and uses nothing of the pool
//! but the public API.

#[cfg(feature = "diesel")]
#[cfg_attr(docsrs, doc(cfg(feature = "diesel")))]
pub mod diesel;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "r2d2")]
#[cfg_attr(docsrs, doc(cfg(feature = "r2d2")))]
pub mod r2d2;
#[cfg(all(any(feature = "postgres", feature = "mysql"), target_os = "linux"))]
mod socket;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
