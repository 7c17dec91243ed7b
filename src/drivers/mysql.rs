//! MySQL and MariaDB through the `mysql` crate, built without OpenSSL or zlib (feature
//! `mysql`): [`MysqlConnectionManager`], with r2d2_mysql's constructor.
//!
//! Validation is a ping. `has_broken` makes no round trip (r2d2_mysql pings on every return),
//! yet finds a session the server closed or killed: an idle connection has nothing to read,
//! so if its socket is readable, the server's error packet or FIN is waiting there; a
//! zero-timeout `poll` of the socket tells in about a microsecond. The same look runs on every
//! check-out (`is_closed`), so a session killed while it sat idle is never handed out, skip
//! window or not. The look needs Linux; elsewhere both answer from the client alone, which
//! learns of the end at its next round trip.
//!
//! On Linux every round trip the pool makes is bounded: a connect (TCP, TLS and the login)
//! reads and writes with the attempt's deadline unless your options set timeouts of their own
//! (yours are left on the socket afterwards), and a validation with what is left of the
//! check-out's. A server that stops answering costs a caller its timeout, not more. Connect
//! errors that happen below the server (refused, no answer) name the address tried.
//!
//! # TLS
//!
//! The `mysql` crate takes one TLS backend, chosen by its features, and sluicegate passes it
//! through (the socket check above looks beneath TLS): feature `mysql-rustls` for rustls with
//! the ring provider, no OpenSSL; for native-tls (OpenSSL on Linux), leave it off and put
//! `mysql = { version = "28", default-features = false, features = ["minimal-rust",
//! "native-tls"] }` in your Cargo.toml (Cargo builds one `mysql` for both). Then ask for TLS in
//! the options, as without a pool:
//!
//! ```no_run
//! use mysql::{OptsBuilder, SslOpts};
//! use sluicegate::mysql::MysqlConnectionManager;
//!
//! let opts = OptsBuilder::new()
//!     .ip_or_hostname(Some("db.internal"))
//!     .user(Some("app"))
//!     .ssl_opts(SslOpts::default().with_root_cert_path(Some(std::path::Path::new("ca.pem"))));
//! let pool = sluicegate::Pool::new(MysqlConnectionManager::new(opts))?;
//! # Ok::<(), sluicegate::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use ::mysql::{Conn, DriverError, Error, Opts, OptsBuilder};

use crate::Extensions;

/// Server error codes that waiting will not fix: access denied (wrong user or password), no
/// access to the database, unknown database.
const PERMANENT_CODES: [u16; 3] = [1045, 1044, 1049];

/// Opens MySQL or MariaDB connections for a pool.
///
/// # Examples
///
/// ```no_run
/// use mysql::prelude::Queryable;
/// use sluicegate::mysql::MysqlConnectionManager;
/// let opts = mysql::OptsBuilder::new().ip_or_hostname(Some("127.0.0.1")).user(Some("root"));
/// let pool = sluicegate::Pool::new(MysqlConnectionManager::new(opts))?;
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
    /// ```
    /// let opts = mysql::OptsBuilder::new().user(Some("app")).pass(Some("secret"));
    /// let manager = sluicegate::mysql::MysqlConnectionManager::new(opts);
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
    /// ```
    /// let opts = mysql::OptsBuilder::new();
    /// let manager = sluicegate::mysql::MysqlConnectionManager::new(opts).with_recycling(true);
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

    fn connect_within(&self, timeout: Duration, _: &mut Extensions) -> Result<Conn, Error> {
        if !socket::CAN_SET_TIMEOUTS {
            return self.connect();
        }
        let (read, write) = (
            self.opts.get_read_timeout().copied(),
            self.opts.get_write_timeout().copied(),
        );
        let opts = OptsBuilder::from_opts(self.opts.clone())
            .read_timeout(read.or(Some(timeout)))
            .write_timeout(write.or(Some(timeout)))
            .tcp_connect_timeout(self.opts.get_tcp_connect_timeout().or(Some(timeout)));
        let mut conn = Conn::new(opts).map_err(|err| self.named(err, timeout))?;
        // The user's own timeouts (none, by default) for the connection's life.
        socket::set_timeouts(&mut conn, read, write)?;
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Error> {
        conn.ping()
    }

    fn is_valid_within(
        &self,
        conn: &mut Conn,
        timeout: Duration,
        _: &Extensions,
    ) -> Result<(), Error> {
        if !socket::CAN_SET_TIMEOUTS {
            return conn.ping();
        }
        socket::set_timeouts(conn, Some(timeout), Some(timeout))?;
        conn.ping()?;
        socket::set_timeouts(
            conn,
            self.opts.get_read_timeout().copied(),
            self.opts.get_write_timeout().copied(),
        )
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        socket::server_spoke_or_hung_up(conn)
    }

    fn is_closed(&self, conn: &mut Conn, _: &Extensions) -> bool {
        socket::server_spoke_or_hung_up(conn)
    }

    fn is_permanent(&self, error: &Error) -> bool {
        refuses_login(error)
    }

    fn recycle(&self, conn: &mut Conn) -> Result<(), Error> {
        if self.recycle { conn.reset() } else { Ok(()) }
    }
}

/// Whether the server refused the login for a reason waiting will not fix (also what
/// `R2d2Manager` asks of r2d2_mysql's errors).
pub(crate) fn refuses_login(error: &Error) -> bool {
    matches!(error, Error::MySqlError(e) if PERMANENT_CODES.contains(&e.code))
}

impl MysqlConnectionManager {
    /// Names the address in a connect error that happened below the server (the TCP connect,
    /// or a handshake that got no answer in `timeout`); the server's own errors are left as
    /// they are.
    fn named(&self, err: Error, timeout: Duration) -> Error {
        let address = match self.opts.get_socket() {
            Some(path) => path.to_owned(),
            None => format!(
                "{}:{}",
                self.opts.get_ip_or_hostname(),
                self.opts.get_tcp_port()
            ),
        };
        let (description, kind) = match (&err, io_cause(&err)) {
            (Error::DriverError(DriverError::ConnectTimeout), _) => (
                format!("no answer within {}", crate::human::Human(timeout)),
                std::io::ErrorKind::TimedOut,
            ),
            // A read or write that ran into the socket timeouts, bare or inside the driver's
            // codec error.
            (_, Some(io))
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                (
                    format!(
                        "no answer to the login within {}",
                        crate::human::Human(timeout)
                    ),
                    std::io::ErrorKind::TimedOut,
                )
            }
            (Error::IoError(io), _) | (Error::CodecError(_), Some(io)) => {
                (io.to_string(), io.kind())
            }
            _ => return err,
        };
        Error::DriverError(DriverError::CouldNotConnect(Some((
            address,
            description,
            kind,
        ))))
    }
}

/// The I/O error behind `err`, if it is one: bare, or inside the driver's codec error (which
/// wraps the ones it meets while reading a packet, and shows them only as its `source()`).
fn io_cause(err: &Error) -> Option<&std::io::Error> {
    match err {
        Error::IoError(io) => Some(io),
        Error::CodecError(codec) => {
            std::error::Error::source(codec).and_then(|cause| cause.downcast_ref())
        }
        _ => None,
    }
}

#[cfg(target_os = "linux")]
mod socket {
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::time::Duration;

    use rustix::net::sockopt::{Timeout, set_socket_timeout};

    use crate::drivers::socket::{Look, look};

    /// Whether read and write timeouts can be put on a connection's socket.
    pub(super) const CAN_SET_TIMEOUTS: bool = true;

    /// Runs `f` with the socket `conn` owns.
    fn with_socket<R>(conn: &mut mysql::Conn, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
        let raw = conn.as_raw_fd();
        // SAFETY: `raw` is the socket `conn` owns, and `conn` is borrowed mutably for the whole
        // of this function, so the descriptor stays open while `fd` exists. The driver offers
        // only `AsRawFd`, not `AsFd`, so there is no way to borrow it without `unsafe`.
        #[allow(unsafe_code)]
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        f(fd)
    }

    /// Whether an idle connection's socket has something to read or has hung up: the server
    /// sent an error packet (the session was killed, timed out) or closed the connection.
    pub(super) fn server_spoke_or_hung_up(conn: &mut mysql::Conn) -> bool {
        with_socket(conn, |fd| look(fd) != Look::Quiet)
    }

    /// Puts read and write timeouts on the connection's socket (`None`: none).
    pub(super) fn set_timeouts(
        conn: &mut mysql::Conn,
        read: Option<Duration>,
        write: Option<Duration>,
    ) -> Result<(), mysql::Error> {
        with_socket(conn, |fd| {
            set_socket_timeout(fd, Timeout::Recv, read)?;
            set_socket_timeout(fd, Timeout::Send, write)
        })
        .map_err(|errno| mysql::Error::IoError(errno.into()))
    }
}

#[cfg(not(target_os = "linux"))]
mod socket {
    use std::time::Duration;

    pub(super) const CAN_SET_TIMEOUTS: bool = false;

    /// Without a cheap way to look at the socket, nothing is known to be wrong.
    pub(super) fn server_spoke_or_hung_up(_: &mut mysql::Conn) -> bool {
        false
    }

    pub(super) fn set_timeouts(
        _: &mut mysql::Conn,
        _: Option<Duration>,
        _: Option<Duration>,
    ) -> Result<(), mysql::Error> {
        Ok(())
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
