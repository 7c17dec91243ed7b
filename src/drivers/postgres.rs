//! PostgreSQL through the `postgres` crate (feature `postgres`):
//! [`PostgresConnectionManager`], generic over the TLS connector like r2d2_postgres, so
//! moving from it is a change of path.
//!
//! Validation is one cheap round trip (an empty simple query); `has_broken` does no I/O (it
//! asks the client whether its connection has closed), and neither does the same question on
//! every check-out. The synchronous client hides its socket and reads it only inside a call,
//! which has two consequences:
//!
//! - A session the server ended while it sat idle is found by its first query, which fails
//!   once (`connection closed`); `has_broken` then retires it.
//! - A session the server ends *during* a query (`pg_terminate_backend`, a restart, a
//!   failover) fails that query with the server's `FATAL`, but the client has not yet read
//!   the end of the stream that follows, so it still looks open when it comes back. A
//!   borrower inside the skip window may then see one more error before it is retired. To
//!   avoid that second error, retire the connection yourself when a query fails with an
//!   error of SQLSTATE class 57 (operator intervention):
//!
//! ```no_run
//! # let pool: sluice::Pool<sluice::postgres::PostgresConnectionManager<postgres::NoTls>> = todo!();
//! let mut conn = pool.get()?;
//! if let Err(err) = conn.execute("UPDATE jobs SET done = true WHERE id = 1", &[]) {
//!     if err.code().is_some_and(|code| code.code().starts_with("57")) {
//!         sluice::PooledConnection::mark_broken(&mut conn);
//!     }
//!     return Err(err.into());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Authentication failures and unknown databases are permanent errors: `build` and check-outs
//! fail at once with the server's reason.
//!
//! # TLS
//!
//! The manager hands its `MakeTlsConnect` to the driver unchanged, and the checks above ask
//! the client, not the socket, so they work the same with TLS on. Connectors that work:
//!
//! - `tokio-postgres-rustls` (0.14, rustls 0.23, with its `ring` or `aws-lc-rs` feature): no
//!   OpenSSL. sluice's own TLS tests use it.
//! - `postgres-native-tls` (OpenSSL on Linux) or `postgres-openssl`, by the driver's author.
//!
//! Ask for `sslmode=require`: the default, `prefer`, goes on unencrypted when the server offers
//! no TLS. Once TLS is on, rustls checks the server's certificate and host name (libpq's
//! `require` checks neither):
//!
//! ```no_run
//! use rustls::pki_types::{CertificateDer, pem::PemObject};
//! use sluice::postgres::PostgresConnectionManager;
//!
//! let mut roots = rustls::RootCertStore::empty();
//! for cert in CertificateDer::pem_file_iter("ca.pem")? {
//!     roots.add(cert?)?;
//! }
//! let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
//! let tls = rustls::ClientConfig::builder_with_provider(provider)
//!     .with_safe_default_protocol_versions()?
//!     .with_root_certificates(roots)
//!     .with_no_client_auth();
//! let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
//! let config = "host=db.internal user=app dbname=orders sslmode=require".parse()?;
//! let pool = sluice::Pool::new(PostgresConnectionManager::new(config, tls))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use ::postgres::config::Host;
use ::postgres::error::SqlState;
use ::postgres::tls::{MakeTlsConnect, TlsConnect};
use ::postgres::{Client, Config, Error, Socket};

/// Opens PostgreSQL connections for a pool.
///
/// # Examples
///
/// ```no_run
/// use sluice::postgres::PostgresConnectionManager;
///
/// let config = "host=127.0.0.1 user=postgres dbname=test".parse()?;
/// let manager = PostgresConnectionManager::new(config, postgres::NoTls);
/// let pool = sluice::Pool::new(manager)?;
/// let row = pool.get()?.query_one("SELECT 1 + 1", &[])?;
/// assert_eq!(row.get::<_, i32>(0), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresConnectionManager<T> {
    config: Config,
    tls: T,
    recycle: bool,
}

impl<T> PostgresConnectionManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + 'static + Sync + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// A manager connecting with `config` through `tls` (`postgres::NoTls`, or a connector
    /// from `tokio-postgres-rustls`, `postgres-native-tls` or `postgres-openssl`: see
    /// [TLS](self#tls)).
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice::postgres::PostgresConnectionManager;
    ///
    /// let config = "host=db.internal user=app password=secret dbname=orders".parse()?;
    /// let manager = PostgresConnectionManager::new(config, postgres::NoTls);
    /// assert!(!format!("{manager:?}").contains("secret"));
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn new(config: Config, tls: T) -> PostgresConnectionManager<T> {
        PostgresConnectionManager {
            config,
            tls,
            recycle: false,
        }
    }

    /// With `true`, every connection coming back is reset with `DISCARD ALL` (settings,
    /// temporary tables, prepared statements, advisory locks, `LISTEN`), so each borrower gets
    /// a clean session, at the cost of a round trip per check-in. A connection returned in the
    /// middle of a transaction cannot be reset, and is closed. Statements prepared by a
    /// borrower do not survive its check-in: prepare them again after each check-out. Default
    /// `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice::postgres::PostgresConnectionManager;
    ///
    /// let config = "host=127.0.0.1 user=postgres".parse()?;
    /// let manager = PostgresConnectionManager::new(config, postgres::NoTls).with_recycling(true);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    #[must_use]
    pub fn with_recycling(mut self, recycle: bool) -> PostgresConnectionManager<T> {
        self.recycle = recycle;
        self
    }
}

impl<T> crate::ManageConnection for PostgresConnectionManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + 'static + Sync + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = Client;
    type Error = Error;

    fn connect(&self) -> Result<Client, Error> {
        self.config.connect(self.tls.clone())
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), Error> {
        client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }

    fn is_closed(&self, client: &mut Client, _: &crate::Extensions) -> bool {
        client.is_closed()
    }

    fn is_permanent(&self, error: &Error) -> bool {
        error.code().is_some_and(|code| {
            [
                SqlState::INVALID_PASSWORD,
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                SqlState::INVALID_CATALOG_NAME,
            ]
            .contains(code)
        })
    }

    fn recycle(&self, client: &mut Client) -> Result<(), Error> {
        if !self.recycle {
            return Ok(());
        }
        client.batch_execute("DISCARD ALL")?;
        // The client caches statements of its own (for type lookups); DISCARD ALL dropped
        // them on the server.
        client.clear_type_cache();
        Ok(())
    }
}

// By hand: `postgres::Config`'s own Debug prints the password.
impl<T> fmt::Debug for PostgresConnectionManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        f.debug_struct("PostgresConnectionManager")
            .field("hosts", &hosts)
            .field("ports", &self.config.get_ports())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("password", &self.config.get_password().map(|_| "<hidden>"))
            .field("recycle", &self.recycle)
            .finish_non_exhaustive()
    }
}
