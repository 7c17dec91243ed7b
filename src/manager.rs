//! What a driver implements ([`ManageConnection`]) and the hooks a user can plug into a pool
//! ([`HandleError`], [`CustomizeConnection`]). The traits have r2d2's names and signatures, so a
//! manager written for r2d2 compiles against sluicegate unchanged.

use std::error;
use std::fmt;
use std::time::Duration;

use crate::error::Chain;
use crate::extensions::Extensions;

/// Opens and checks connections of one kind: the part of a pool that knows the database.
///
/// The pool calls every method without holding its lock. A panic in `connect` counts as a
/// failed connect, one in `is_valid` as a failed validation, one in `has_broken` as a broken
/// connection: a misbehaving driver costs at most one connection, never a pool slot or one of
/// the pool's threads. The methods beyond r2d2's have default bodies.
///
/// # Examples
///
/// A manager for an imaginary in-memory store:
///
/// ```
/// struct KvConnection { open: bool }
/// struct KvManager { address: String }
///
/// impl sluicegate::ManageConnection for KvManager {
///     type Connection = KvConnection;
///     type Error = std::io::Error;
///     fn connect(&self) -> std::io::Result<KvConnection> {
///         Ok(KvConnection { open: !self.address.is_empty() })
///     }
///     fn is_valid(&self, conn: &mut KvConnection) -> std::io::Result<()> {
///         if conn.open { Ok(()) } else { Err(std::io::Error::other("closed")) }
///     }
///     fn has_broken(&self, conn: &mut KvConnection) -> bool { !conn.open }
/// }
///
/// let pool = sluicegate::Pool::new(KvManager { address: "127.0.0.1:7000".into() })?;
/// assert!(pool.get()?.open);
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub trait ManageConnection: Send + Sync + 'static {
    /// The connection type this manager opens.
    ///
    /// ```
    /// fn open<M: sluicegate::ManageConnection>(m: &M) -> Result<M::Connection, M::Error> {
    ///     m.connect()
    /// }
    /// ```
    type Connection: Send + 'static;

    /// The error type its operations return.
    ///
    /// ```
    /// fn why<M: sluicegate::ManageConnection>(m: &M) -> Option<M::Error> { m.connect().err() }
    /// ```
    type Error: error::Error + 'static;

    /// Opens a new connection, on the pool's opener thread (never on a thread that is
    /// waiting for a connection).
    ///
    /// # Errors
    ///
    /// Whatever keeps the connection from opening; the pool retries with back-off while
    /// connections are wanted, and shows the error (with its `source()` chain) to check-outs that
    /// time out.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::{ManageConnection, doc_fixture::Manager};
    /// let conn: () = Manager.connect()?; // what the pool's opener thread does
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn connect(&self) -> Result<Self::Connection, Self::Error>;

    /// Opens a new connection, giving up after `timeout`: what the pool calls, one attempt at
    /// a time. Default: [`connect`], which knows no deadline.
    ///
    /// `timeout` is a little less than [`connection_timeout`](crate::Builder::connection_timeout).
    /// A connect that never ends (a server that accepts and never answers, a proxy holding the
    /// login) would keep the pool from opening any other connection, so a manager that can bound
    /// the whole attempt (TCP connect, TLS, authentication) should: the built-in drivers do, trying
    /// the next host where the configuration names several. The pool logs once if an attempt
    /// overruns. What the manager puts in `extensions` stays with the new connection, under types
    /// of its own (see [`is_closed`](ManageConnection::is_closed)).
    ///
    /// # Errors
    ///
    /// As [`connect`]; running out of time is an error too.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, net::{SocketAddr, TcpStream}, time::Duration};
    /// # struct Manager(SocketAddr);
    /// # impl sluicegate::ManageConnection for Manager { type Error = io::Error;
    /// # fn connect(&self) -> io::Result<TcpStream> { TcpStream::connect(self.0) }
    /// # fn is_valid(&self, _: &mut TcpStream) -> io::Result<()> { Ok(()) }
    /// # fn has_broken(&self, _: &mut TcpStream) -> bool { false }
    /// type Connection = TcpStream;
    /// fn connect_within(&self, timeout: Duration, _: &mut sluicegate::Extensions)
    ///     -> io::Result<TcpStream> {
    ///     let stream = TcpStream::connect_timeout(&self.0, timeout)?;
    ///     stream.set_read_timeout(Some(timeout))?; // for the handshake
    ///     Ok(stream)
    /// }
    /// # }
    /// ```
    ///
    /// [`connect`]: ManageConnection::connect
    #[allow(unused_variables)]
    fn connect_within(
        &self,
        timeout: Duration,
        extensions: &mut Extensions,
    ) -> Result<Self::Connection, Self::Error> {
        self.connect()
    }

    /// Checks that a connection still works, usually with a round trip such as `SELECT 1`.
    /// Runs on the checking-out thread, as [`test_on_check_out`] and
    /// [`validation_skip_window`] say.
    ///
    /// [`test_on_check_out`]: crate::Builder::test_on_check_out
    /// [`validation_skip_window`]: crate::Builder::validation_skip_window
    ///
    /// # Errors
    ///
    /// An error closes the connection; the check-out goes on with another one, within its
    /// deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::{ManageConnection, doc_fixture::Manager};
    /// let mut conn = Manager.connect()?;
    /// Manager.is_valid(&mut conn)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error>;

    /// Checks that a connection still works, giving up after `timeout`: what the pool calls.
    /// Default: [`is_valid`], which knows no deadline.
    ///
    /// On a check-out, `timeout` is what is left of the caller's own, so that a database that
    /// stopped answering cannot hold a caller past its deadline; for keepalive it is
    /// `connection_timeout`. A validation that overruns it (a manager that keeps the default) is
    /// logged once. The built-in drivers all honour it. `extensions` are the connection's.
    ///
    /// # Errors
    ///
    /// As [`is_valid`]; running out of time is an error too. The pool then closes the
    /// connection (its answer may still be on its way), on the caller's thread: a driver whose
    /// connections wait for the server when dropped should make sure this one does not (the
    /// PostgreSQL driver shuts its socket down).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io, time::Duration};
    /// # struct Manager;
    /// # impl sluicegate::ManageConnection for Manager { type Error = io::Error;
    /// # type Connection = (); fn connect(&self) -> io::Result<()> { Ok(()) }
    /// # fn has_broken(&self, _: &mut ()) -> bool { false }
    /// fn is_valid(&self, _: &mut ()) -> io::Result<()> {
    ///     Ok(std::thread::sleep(Duration::from_secs(3))) // a ping answered after 3 s
    /// }
    /// fn is_valid_within(&self, conn: &mut (), timeout: Duration, _: &sluicegate::Extensions)
    ///     -> io::Result<()> {
    ///     if timeout >= Duration::from_secs(3) {
    ///         return self.is_valid(conn);
    ///     }
    ///     std::thread::sleep(timeout);
    ///     Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))
    /// }
    /// # }
    /// ```
    ///
    /// [`is_valid`]: ManageConnection::is_valid
    #[allow(unused_variables)]
    fn is_valid_within(
        &self,
        conn: &mut Self::Connection,
        timeout: Duration,
        extensions: &Extensions,
    ) -> Result<(), Self::Error> {
        self.is_valid(conn)
    }

    /// Tells, *quickly* and without I/O, whether a connection is known to be unusable.
    ///
    /// Runs on every check-in, on the returning thread. `true` closes the connection.
    ///
    /// ```
    /// # use sluicegate::{ManageConnection, doc_fixture::Manager};
    /// let mut conn = Manager.connect()?;
    /// assert!(!Manager.has_broken(&mut conn));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn has_broken(&self, conn: &mut Self::Connection) -> bool;

    /// Whether an error from [`connect`](ManageConnection::connect) will not go away by
    /// waiting: failed authentication, an unknown user or database. Default: `false` (every
    /// error is retried). Errors that can heal (connection refused or reset, too many
    /// connections, the server starting up) must stay `false`.
    ///
    /// A permanent error can make `build` and check-outs fail at once, as
    /// [`Error::is_permanent`](crate::Error::is_permanent) says.
    ///
    /// ```
    /// # use std::io; struct Manager;
    /// # impl sluicegate::ManageConnection for Manager { type Error = io::Error;
    /// # type Connection = (); fn connect(&self) -> io::Result<()> { Ok(()) }
    /// # fn is_valid(&self, _: &mut ()) -> io::Result<()> { Ok(()) }
    /// # fn has_broken(&self, _: &mut ()) -> bool { false }
    /// fn is_permanent(&self, error: &io::Error) -> bool {
    ///     error.kind() == io::ErrorKind::PermissionDenied // authentication failed
    /// }
    /// # }
    /// ```
    #[allow(unused_variables)]
    fn is_permanent(&self, error: &Self::Error) -> bool {
        false
    }

    /// Returns a connection to a clean session before the next borrower gets it: resets settings,
    /// temporary tables, prepared statements, locks. Default: does nothing. Runs on every check-in
    /// of a connection that is not broken, on the returning thread; drivers make it opt-in, as it
    /// costs a round trip per check-in.
    ///
    /// # Errors
    ///
    /// An error means the session is in an unknown state: the connection is closed (counted
    /// in `closed_broken`) and the error goes to the error handler.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::io; struct Manager;
    /// # impl sluicegate::ManageConnection for Manager { type Error = io::Error;
    /// # fn connect(&self) -> io::Result<Vec<String>> { Ok(Vec::new()) }
    /// # fn is_valid(&self, _: &mut Vec<String>) -> io::Result<()> { Ok(()) }
    /// # fn has_broken(&self, _: &mut Vec<String>) -> bool { false }
    /// type Connection = Vec<String>; // session settings a borrower may change
    /// fn recycle(&self, settings: &mut Vec<String>) -> io::Result<()> {
    ///     Ok(settings.clear())
    /// }
    /// # }
    /// ```
    #[allow(unused_variables)]
    fn recycle(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Tells, without a round trip, whether the server has already closed this connection's
    /// session: its error packet or end-of-stream is waiting on the socket. Default: `false`.
    ///
    /// Runs on every check-out, on the checking-out thread, skip window or not and with
    /// `test_on_check_out` off too: it keeps a session the server ended (an idle timeout on the
    /// server, an administrator's kill, a restart) from reaching a borrower. `true` closes the
    /// connection (counted in `closed_broken`) and the check-out goes on with another one.
    /// `extensions` hold what [`connect_within`](ManageConnection::connect_within) put there.
    ///
    /// It must cost about as much as a system call, never a round trip (a zero-timeout poll of the
    /// connection's socket, or a flag the driver keeps), and must not consume anything the
    /// connection's user could still read (a `LISTEN` notification). Drivers that hide their socket
    /// leave the default; for them a dead idle session surfaces as one failed query, after which
    /// [`has_broken`](ManageConnection::has_broken) retires it. The pool never calls this method
    /// unless the manager overrides it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    /// # use std::{io, sync::Arc}; struct Manager;
    /// # impl sluicegate::ManageConnection for Manager { type Error = io::Error;
    /// # fn connect(&self) -> io::Result<Arc<AtomicBool>> { Ok(Arc::default()) }
    /// # fn is_valid(&self, _: &mut Arc<AtomicBool>) -> io::Result<()> { Ok(()) }
    /// # fn has_broken(&self, hung_up: &mut Arc<AtomicBool>) -> bool { hung_up.load(Relaxed) }
    /// type Connection = std::sync::Arc<AtomicBool>; // set when the server hangs up
    /// fn is_closed(&self, hung_up: &mut Self::Connection, _: &sluicegate::Extensions) -> bool {
    ///     hung_up.load(Relaxed)
    /// }
    /// # }
    /// ```
    #[allow(unused_variables)]
    fn is_closed(&self, conn: &mut Self::Connection, extensions: &Extensions) -> bool {
        false
    }
}

/// Receives the errors a pool's manager reports: failed connects, failed validations and
/// failing customizers.
///
/// # Examples
///
/// ```
/// #[derive(Debug)]
/// struct PrintingHandler;
///
/// impl<E: std::error::Error> sluicegate::HandleError<E> for PrintingHandler {
///     fn handle_error(&self, error: E) {
///         eprintln!("database error: {error}");
///     }
/// }
/// ```
pub trait HandleError<E>: fmt::Debug + Send + Sync + 'static {
    /// Handles one error. Called off the pool's lock, on the thread that met the error; a
    /// panic here is logged.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct Stderr;
    /// impl sluicegate::HandleError<std::io::Error> for Stderr {
    ///     fn handle_error(&self, error: std::io::Error) {
    ///         eprintln!("database error: {error}");
    ///     }
    /// }
    /// ```
    fn handle_error(&self, error: E);
}

/// A [`HandleError`] that drops errors.
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let builder = sluicegate::Pool::<Manager>::builder()
///     .error_handler(Box::new(sluicegate::NopErrorHandler));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct NopErrorHandler;

impl<E> HandleError<E> for NopErrorHandler {
    fn handle_error(&self, _: E) {}
}

/// A [`HandleError`] that logs each error, with its `source()` chain, at `debug` level, under
/// the target `sluicegate::manager` (the default handler).
///
/// # Differences from r2d2
///
/// r2d2's `LoggingErrorHandler` logs every error at `error`: a database down for an hour fills the
/// log with a line per connect attempt (about 1,800 an hour with a 2 s timeout), none naming the
/// pool. A sluicegate pool logs trouble itself, under its name: a failed connect at `error` when an
/// outage starts, then at most one line a minute while it lasts (the failures since the last line,
/// the last error), one `info` line when it connects again (how long it was down, how many connects
/// failed), a `warn` line for a connection that fails a validation or a reset (with the cause; at
/// most five a minute, the next line counting those held back), and a `debug` line, with the
/// reason, for every connection opened or closed. So this handler only adds each error at `debug`;
/// handlers of your own still receive every error, as in r2d2.
///
/// # Examples
///
/// ```
/// use sluicegate::{HandleError, LoggingErrorHandler};
///
/// LoggingErrorHandler.handle_error(std::io::Error::other("connection refused"));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct LoggingErrorHandler;

impl<E> HandleError<E> for LoggingErrorHandler
where
    E: error::Error + 'static,
{
    fn handle_error(&self, error: E) {
        // A driver's `Display` may panic, and so may the application's logger.
        log_shielded!(log::Level::Debug, "{}", Chain(&error));
    }
}

/// Adjusts connections as the pool opens and closes them.
///
/// # Examples
///
/// ```
/// #[derive(Debug)]
/// struct SessionSetup;
/// struct Session { timezone: &'static str }
///
/// impl sluicegate::CustomizeConnection<Session, std::io::Error> for SessionSetup {
///     fn on_acquire(&self, conn: &mut Session) -> Result<(), std::io::Error> {
///         conn.timezone = "UTC";
///         Ok(())
///     }
/// }
/// ```
pub trait CustomizeConnection<C, E>: fmt::Debug + Send + Sync + 'static {
    /// Called on the opener thread with each connection right after `connect` opened it.
    ///
    /// # Errors
    ///
    /// An error (or a panic) discards the connection and counts as a failed connect.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct Tag;
    /// impl sluicegate::CustomizeConnection<Vec<String>, std::io::Error> for Tag {
    ///     fn on_acquire(&self, conn: &mut Vec<String>) -> std::io::Result<()> {
    ///         conn.push("SET application_name = 'app'".into());
    ///         Ok(())
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn on_acquire(&self, conn: &mut C) -> Result<(), E> {
        Ok(())
    }

    /// Called with each connection the pool closes (broken, invalid, expired, evicted, or the
    /// pool closed); dropping `conn` closes it. A panic here is logged.
    ///
    /// # Examples
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct Goodbye;
    /// impl sluicegate::CustomizeConnection<Vec<String>, std::io::Error> for Goodbye {
    ///     fn on_release(&self, conn: Vec<String>) {
    ///         eprintln!("closing a connection that ran {} statements", conn.len());
    ///     }
    /// }
    /// ```
    #[allow(unused_variables)]
    fn on_release(&self, conn: C) {}
}

/// A [`CustomizeConnection`] that changes nothing (the default).
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let builder = sluicegate::Pool::<Manager>::builder()
///     .connection_customizer(Box::new(sluicegate::NopConnectionCustomizer));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct NopConnectionCustomizer;

impl<C, E> CustomizeConnection<C, E> for NopConnectionCustomizer {}
