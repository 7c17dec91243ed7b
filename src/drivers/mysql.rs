//! MySQL and MariaDB through the `mysql` crate, built without OpenSSL or zlib (feature
//! `mysql`): [`MysqlConnectionManager`], with r2d2_mysql's constructor.
//!
//! Validation is a ping. `has_broken` makes no round trip (r2d2_mysql pings on every return),
//! yet finds a session the server closed or killed: an idle connection has nothing to read,
//! so if its socket is readable, the server's error packet or FIN is waiting there; a
//! zero-timeout `poll` of the socket tells in about a microsecond. The same look runs on every
//! check-out (`is_closed`), so a session killed while it sat idle is never handed out, skip
//! window or not.
//!
//! # TLS
//!
//! The `mysql` crate takes one TLS backend, chosen by its features; sluice passes whichever is
//! on straight through, and the socket check above looks beneath the TLS layer, so it works
//! the same with TLS on.
//!
//! - Feature `mysql-rustls`: rustls with the ring provider, no OpenSSL needed.
//! - native-tls (OpenSSL on Linux): leave `mysql-rustls` off and turn on the `mysql` crate's
//!   own feature in your Cargo.toml, `mysql = { version = "28", default-features = false,
//!   features = ["minimal-rust", "native-tls"] }`; Cargo builds one `mysql` for both.
//!
//! Then ask for TLS in the options, as without a pool:
//!
//! ```no_run
//! use mysql::{OptsBuilder, SslOpts};
//! use sluice::mysql::MysqlConnectionManager;
//!
//! let opts = OptsBuilder::new()
//!     .ip_or_hostname(Some("db.internal"))
//!     .user(Some("app"))
//!     .ssl_opts(SslOpts::default().with_root_cert_path(Some(std::path::Path::new("ca.pem"))));
//! let pool = sluice::Pool::new(MysqlConnectionManager::new(opts))?;
//! # Ok::<(), sluice::Error>(())
//! ```

use std::fmt;

use ::mysql::{Conn, Error, Opts, OptsBuilder};

/// Server error codes that waiting will not fix: access denied (wrong user or password), no
/// access to the database, unknown database.
const PERMANENT_CODES: [u16; 3] = [1045, 1044, 1049];

/// Opens MySQL or MariaDB connections for a pool.
///
/// # Examples
///
/// ```no_run
/// use mysql::prelude::Queryable;
/// use sluice::mysql::MysqlConnectionManager;
///
/// let opts = mysql::OptsBuilder::new()
///     .ip_or_hostname(Some("127.0.0.1"))
///     .user(Some("root"))
///     .db_name(Some("test"));
/// let pool = sluice::Pool::new(MysqlConnectionManager::new(opts))?;
/// let one: Option<i32> = pool.get()?.query_first("SELECT 1")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MysqlConnectionManager {
    opts: Opts,
    recycle: bool,
}

impl MysqlConnectionManager {
    /// A manager connecting with `opts`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice::mysql::MysqlConnectionManager;
    ///
    /// let opts = mysql::OptsBuilder::new()
    ///     .ip_or_hostname(Some("db.internal"))
    ///     .user(Some("app"))
    ///     .pass(Some("secret"));
    /// let manager = MysqlConnectionManager::new(opts);
    /// assert!(!format!("{manager:?}").contains("secret"));
    /// ```
    pub fn new(opts: OptsBuilder) -> MysqlConnectionManager {
        MysqlConnectionManager {
            opts: Opts::from(opts),
            recycle: false,
        }
    }

    /// With `true`, every connection coming back is reset with the server's reset-connection
    /// command (session variables, user variables, temporary tables, prepared statements,
    /// locks, an open transaction), so each borrower gets a clean session, at the cost of a
    /// round trip per check-in. Default `false`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice::mysql::MysqlConnectionManager;
    ///
    /// let manager = MysqlConnectionManager::new(mysql::OptsBuilder::new()).with_recycling(true);
    /// ```
    #[must_use]
    pub fn with_recycling(mut self, recycle: bool) -> MysqlConnectionManager {
        self.recycle = recycle;
        self
    }
}

impl crate::ManageConnection for MysqlConnectionManager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn, Error> {
        Conn::new(self.opts.clone())
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Error> {
        conn.ping()
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        socket::has_news(conn)
    }

    fn is_closed(&self, conn: &mut Conn, _: &crate::Extensions) -> bool {
        socket::has_news(conn)
    }

    fn is_permanent(&self, error: &Error) -> bool {
        matches!(error, Error::MySqlError(e) if PERMANENT_CODES.contains(&e.code))
    }

    fn recycle(&self, conn: &mut Conn) -> Result<(), Error> {
        if self.recycle { conn.reset() } else { Ok(()) }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod socket {
    use std::os::fd::{AsRawFd, BorrowedFd};

    use rustix::event::{PollFd, PollFlags, poll};
    use rustix::time::Timespec;

    /// Whether an idle connection's socket has something to read or has hung up: the server
    /// sent an error packet (the session was killed, timed out) or closed the connection.
    pub(super) fn has_news(conn: &mut mysql::Conn) -> bool {
        let raw = conn.as_raw_fd();
        // SAFETY: `raw` is the socket `conn` owns, and `conn` is borrowed mutably for the whole
        // of this function, so the descriptor stays open while `fd` exists. The driver offers
        // only `AsRawFd`, not `AsFd`, so there is no way to borrow it without `unsafe`.
        #[allow(unsafe_code)]
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(0) => false,
            Ok(_) => !fds[0].revents().is_empty(),
            // A socket that cannot be polled cannot be trusted either.
            Err(_) => true,
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod socket {
    /// Without a cheap way to look at the socket, nothing is known to be wrong.
    pub(super) fn has_news(_: &mut mysql::Conn) -> bool {
        false
    }
}

// By hand: `mysql::Opts`'s own Debug prints the password.
impl fmt::Debug for MysqlConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opts = &self.opts;
        f.debug_struct("MysqlConnectionManager")
            .field("host", &opts.get_ip_or_hostname())
            .field("port", &opts.get_tcp_port())
            .field("socket", &opts.get_socket())
            .field("user", &opts.get_user())
            .field("db_name", &opts.get_db_name())
            .field("password", &opts.get_pass().map(|_| "<hidden>"))
            // Only whether TLS is asked for: a client identity can carry a password.
            .field("tls", &opts.get_ssl_opts().is_some())
            .field("recycle", &self.recycle)
            .finish_non_exhaustive()
    }
}
