//! diesel on sluicegate (feature `diesel`): a connection checked out of a sluicegate pool of
//! diesel connections is used as diesel users use r2d2's.
//!
//! A program written for `diesel::r2d2` moves over by changing where the pool's names come from:
//! this module has the names of `diesel::r2d2` ([`ConnectionManager`], [`Pool`],
//! [`PooledConnection`], [`Builder`], [`PoolError`], [`TestCustomizer`], [`CustomizeConnection`],
//! ...). Everything else stays: `&mut conn` goes wherever diesel wants a connection, and
//! `conn.transaction(|conn| ..)`, `conn.test_transaction(..)` and `conn.begin_test_transaction()`
//! work on the pooled connection itself: diesel's [`Connection`], [`LoadConnection`],
//! [`SimpleConnection`], `MigrationConnection` and `UpdateAndFetchResults` are implemented for
//! [`crate::PooledConnection`] of any manager whose connections are diesel connections. It derefs
//! to diesel's own connection, for backend-specific methods (`conn.build_transaction()`). A
//! customizer of your own implements this module's [`CustomizeConnection`] instead of
//! `diesel::r2d2`'s: the same methods.
//!
//! ```toml
//! [dependencies]
//! diesel = { version = "2.3", features = ["postgres"] }
//! sluicegate = { version = "0.1", features = ["diesel"] }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "diesel-postgres")] {
//! use diesel::prelude::*;
//! use sluicegate::diesel::{ConnectionManager, Pool};
//!
//! let manager = ConnectionManager::<PgConnection>::new("postgres://postgres@127.0.0.1/test");
//! let pool = Pool::builder().max_size(8).build(manager)?;
//!
//! let mut conn = pool.get()?;
//! let sum: i32 = diesel::select(1.into_sql::<diesel::sql_types::Integer>() + 1)
//!     .get_result(&mut conn)?;
//! assert_eq!(sum, 2);
//! conn.transaction(|conn| {
//!     diesel::sql_query("CREATE TEMPORARY TABLE seen (id integer)").execute(conn)?;
//!     diesel::sql_query("INSERT INTO seen VALUES (1)").execute(conn)
//! })?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Versions
//!
//! Implementing diesel's connection traits takes diesel's feature
//! `i-implement-a-third-party-backend-and-opt-into-breaking-changes` (enabled only with
//! sluicegate's `diesel` feature), whose items diesel may change in any minor release. So
//! sluicegate asks for diesel `~2.3.14` (2.3.14, the release it is tested with, or a later 2.3),
//! and a sluicegate release will follow each diesel minor release. sluicegate chooses no
//! backend: enable `postgres`, `mysql` or `sqlite` on your own diesel dependency.
//! (sluicegate's feature `diesel-postgres` enables diesel's `postgres`, which links libpq: its
//! tests run on it.)

use std::marker::PhantomData;

use ::diesel::connection::{
    CacheSize, Connection, ConnectionSealed, Instrumentation, LoadConnection, SimpleConnection,
    TransactionManager, TransactionManagerStatus,
};
use ::diesel::expression::QueryMetadata;
use ::diesel::query_builder::{Query, QueryFragment, QueryId};
use ::diesel::result::{ConnectionError, ConnectionResult, QueryResult};

pub use ::diesel::r2d2::{Error, R2D2Connection, TestCustomizer};

pub use crate::event;
pub use crate::{
    Builder, CustomizeConnection, Error as PoolError, Extensions, HandleError, HandleEvent,
    LoggingErrorHandler, ManageConnection, NopConnectionCustomizer, NopErrorHandler,
    NopEventHandler, Pool, PooledConnection, State,
};

use crate::r2d2::R2d2Manager;

/// Opens diesel connections of type `C` (`PgConnection`, `MysqlConnection`,
/// `SqliteConnection`, or any [`R2D2Connection`]) for a sluicegate pool: diesel's own
/// [`diesel::r2d2::ConnectionManager`] in an
/// [`R2d2Manager`], under the name and with the constructor of diesel's, so that porting is a
/// change of path.
///
/// `connect`, `is_valid` (`SELECT 1`) and `has_broken` (a connection left inside a
/// transaction, or dropped during a panic) are diesel's. A wrong password, an unknown user or
/// database, or an invalid URL fails `build` and check-outs at once
/// ([`crate::Error::is_permanent`]; [`crate::r2d2::refuses_login`] says what counts). Its
/// `Debug` prints the connection type, never the URL, which can hold a password.
///
/// ```no_run
/// # #[cfg(feature = "diesel-postgres")] {
/// use sluicegate::diesel::{ConnectionManager, Pool};
/// let manager = ConnectionManager::<diesel::PgConnection>::new("postgres://127.0.0.1/test");
/// let pool: Pool<ConnectionManager<diesel::PgConnection>> = Pool::new(manager)?;
/// # }
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub struct ConnectionManager<C>
where
    C: R2D2Connection + Send + 'static,
{
    inner: R2d2Manager<::diesel::r2d2::ConnectionManager<C>>,
}

impl<C> ConnectionManager<C>
where
    C: R2D2Connection + Send + 'static,
{
    /// A manager that opens connections to `database_url`, as diesel's
    /// `ConnectionManager::new`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-postgres")] {
    /// let manager = sluicegate::diesel::ConnectionManager::<diesel::PgConnection>::new(
    ///     "postgres://postgres@127.0.0.1/test",
    /// );
    /// assert!(!format!("{manager:?}").contains("postgres://"));
    /// # }
    /// ```
    pub fn new(database_url: impl Into<String>) -> ConnectionManager<C> {
        ConnectionManager::from(::diesel::r2d2::ConnectionManager::new(database_url))
    }

    /// Sets which connect errors are permanent, instead of the default (a refused login or an
    /// invalid URL): see [`R2d2Manager::permanent_if`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "diesel-postgres")] {
    /// use diesel::ConnectionError;
    /// use sluicegate::diesel::{ConnectionManager, Error};
    ///
    /// // Also give up at once when the server is not there at all.
    /// let manager = ConnectionManager::<diesel::PgConnection>::new("postgres://127.0.0.1/test")
    ///     .permanent_if(|err: &Error| {
    ///         sluicegate::r2d2::refuses_login(err)
    ///             || matches!(err, Error::ConnectionError(ConnectionError::BadConnection(text))
    ///                 if text.contains("Connection refused"))
    ///     });
    /// # }
    /// ```
    pub fn permanent_if<F>(self, is_permanent: F) -> ConnectionManager<C>
    where
        F: Fn(&Error) -> bool + Send + Sync + 'static,
    {
        ConnectionManager {
            inner: self.inner.permanent_if(is_permanent),
        }
    }
}

impl<C> From<::diesel::r2d2::ConnectionManager<C>> for ConnectionManager<C>
where
    C: R2D2Connection + Send + 'static,
{
    fn from(manager: ::diesel::r2d2::ConnectionManager<C>) -> ConnectionManager<C> {
        ConnectionManager {
            inner: R2d2Manager::new(manager),
        }
    }
}

// By hand, as diesel's: the URL can hold a password.
impl<C> std::fmt::Debug for ConnectionManager<C>
where
    C: R2D2Connection + Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionManager<{}>", std::any::type_name::<C>())
    }
}

impl<C> crate::ManageConnection for ConnectionManager<C>
where
    C: R2D2Connection + Send + 'static,
{
    type Connection = C;
    type Error = Error;

    fn connect(&self) -> Result<C, Error> {
        self.inner.connect()
    }

    fn is_valid(&self, conn: &mut C) -> Result<(), Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut C) -> bool {
        self.inner.has_broken(conn)
    }

    fn is_permanent(&self, error: &Error) -> bool {
        self.inner.is_permanent(error)
    }
}

/// diesel's customizer for tests is a sluicegate customizer: `connection_customizer(Box::new(
/// TestCustomizer))` begins a test transaction, never committed, on each new connection. (diesel
/// implements r2d2's trait for it, which sluicegate's pool does not take; see
/// [`crate::r2d2::R2d2Customizer`] for other r2d2 customizers.)
impl<C> CustomizeConnection<C, Error> for TestCustomizer
where
    C: Connection + 'static,
{
    fn on_acquire(&self, conn: &mut C) -> Result<(), Error> {
        ::diesel::r2d2::CustomizeConnection::on_acquire(self, conn)
    }
}

/// Whether diesel's manager failed to connect for a reason waiting will not fix.
pub(crate) fn refuses_login(error: &Error) -> bool {
    match error {
        Error::ConnectionError(error) => connection_refused_for_good(error),
        // `connect` reports only connection errors; a failed ping is never a refused login.
        Error::QueryError(_) => false,
    }
}

/// Whether establishing a diesel connection failed for good: an invalid URL, or the server's
/// refusal of the login. diesel reports the server's refusal as the client library's text
/// only, so this looks for PostgreSQL's, PgBouncer's and MySQL's words for it; errors that can
/// heal (refused or reset connections, too many clients, a server starting or shutting down)
/// use other words.
pub(crate) fn connection_refused_for_good(error: &ConnectionError) -> bool {
    const REFUSALS: [&str; 8] = [
        // PostgreSQL (libpq): `password authentication failed for user "u"`, and the
        // SCRAM, peer and ident variants; a server that wants a password the URL lacks.
        "authentication failed",
        "no password supplied",
        "no pg_hba.conf entry",
        "permission denied for database",
        // PgBouncer.
        "no such database",
        "no such user",
        // MySQL and MariaDB (mysqlclient): codes 1045, 1044, 1049.
        "access denied for user",
        "unknown database",
    ];
    match error {
        ConnectionError::InvalidConnectionUrl(_) | ConnectionError::InvalidCString(_) => true,
        ConnectionError::BadConnection(text) => {
            let text = text.to_ascii_lowercase();
            REFUSALS.iter().any(|refusal| text.contains(refusal))
                // `FATAL:  role "u" does not exist`, `FATAL:  database "d" does not exist`
                || ((text.contains("role \"") || text.contains("database \""))
                    && text.contains("does not exist"))
        }
        _ => false,
    }
}

// diesel's traits for sluicegate's pooled connection, for any manager whose connections are diesel
// connections: each call goes to the connection inside. (diesel implements them for r2d2's
// guard only, and the orphan rule leaves sluicegate's guard to sluicegate.)

impl<M> SimpleConnection for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: SimpleConnection,
{
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        (**self).batch_execute(query)
    }
}

impl<M> ConnectionSealed for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: ConnectionSealed,
{
}

impl<M> Connection for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: Connection,
{
    type Backend = <M::Connection as Connection>::Backend;
    type TransactionManager =
        PooledTransactionManager<<M::Connection as Connection>::TransactionManager>;

    /// A pooled connection comes from its pool: this always fails.
    fn establish(_: &str) -> ConnectionResult<Self> {
        Err(ConnectionError::BadConnection(
            "a pooled connection cannot be established directly: check one out of a \
             sluicegate::Pool"
                .to_owned(),
        ))
    }

    fn begin_test_transaction(&mut self) -> QueryResult<()> {
        (**self).begin_test_transaction()
    }

    fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        (**self).execute_returning_count(source)
    }

    fn transaction_state(
        &mut self,
    ) -> &mut <Self::TransactionManager as TransactionManager<Self>>::TransactionStateData {
        (**self).transaction_state()
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        (**self).instrumentation()
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        (**self).set_instrumentation(instrumentation);
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        (**self).set_prepared_statement_cache_size(size);
    }
}

impl<B, M> LoadConnection<B> for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: LoadConnection<B>,
{
    type Cursor<'conn, 'query> = <M::Connection as LoadConnection<B>>::Cursor<'conn, 'query>;
    type Row<'conn, 'query> = <M::Connection as LoadConnection<B>>::Row<'conn, 'query>;

    fn load<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> QueryResult<Self::Cursor<'conn, 'query>>
    where
        T: Query + QueryFragment<Self::Backend> + QueryId + 'query,
        Self::Backend: QueryMetadata<T::SqlType>,
    {
        (**self).load(source)
    }
}

impl<M> ::diesel::migration::MigrationConnection for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: ::diesel::migration::MigrationConnection,
{
    fn setup(&mut self) -> QueryResult<usize> {
        (**self).setup()
    }
}

impl<Changes, Output, M> ::diesel::query_dsl::UpdateAndFetchResults<Changes, Output>
    for PooledConnection<M>
where
    M: ManageConnection,
    M::Connection: ::diesel::query_dsl::UpdateAndFetchResults<Changes, Output>,
{
    fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
        (**self).update_and_fetch(changeset)
    }
}

/// The transaction manager of a pooled diesel connection: it runs the transactions of the
/// connection inside, with that connection's own transaction manager `T`. It is what
/// `Connection::transaction` and `begin_test_transaction` use on a [`PooledConnection`]; you
/// never name it.
///
/// ```no_run
/// # #[cfg(feature = "diesel-postgres")] {
/// use diesel::prelude::*;
/// # let manager = sluicegate::diesel::ConnectionManager::<PgConnection>::new("postgres://db");
/// let mut conn = sluicegate::diesel::Pool::new(manager)?.get()?;
/// conn.transaction(|conn| diesel::sql_query("SELECT 1").execute(conn))?; // runs on this type
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PooledTransactionManager<T>(PhantomData<T>);

impl<T> std::fmt::Debug for PooledTransactionManager<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PooledTransactionManager")
    }
}

impl<M, T> TransactionManager<PooledConnection<M>> for PooledTransactionManager<T>
where
    M: ManageConnection,
    M::Connection: Connection<TransactionManager = T>,
    T: TransactionManager<M::Connection>,
{
    type TransactionStateData = T::TransactionStateData;

    fn begin_transaction(conn: &mut PooledConnection<M>) -> QueryResult<()> {
        T::begin_transaction(&mut **conn)
    }

    fn rollback_transaction(conn: &mut PooledConnection<M>) -> QueryResult<()> {
        T::rollback_transaction(&mut **conn)
    }

    fn commit_transaction(conn: &mut PooledConnection<M>) -> QueryResult<()> {
        T::commit_transaction(&mut **conn)
    }

    fn transaction_manager_status_mut(
        conn: &mut PooledConnection<M>,
    ) -> &mut TransactionManagerStatus {
        T::transaction_manager_status_mut(&mut **conn)
    }
}
