//! PostgreSQL through the `postgres` crate (feature `postgres`):
//! [`PostgresConnectionManager`], generic over the TLS connector like r2d2_postgres, so
//! moving from it is a change of path (and of the error type, see [`Error`]).
//!
//! # A sick server
//!
//! - **Connecting** is bounded as a whole (TCP, TLS and the login, not only the TCP connect that
//!   the driver's `connect_timeout` covers): each attempt gets the pool's `connection_timeout`,
//!   split between the hosts where the configuration names several, so a host that accepts and
//!   never answers is given up on and the next one tried (and tried last for a while). A
//!   `connect_timeout` you set caps each host's share. Connect errors name the host and port tried.
//!   sluicegate tries the hosts itself, each through a configuration of its own built from yours,
//!   so a `notice_callback` set on yours is not carried over (notices are then logged, the driver's
//!   default).
//! - **Validation** (an empty query) gives up when the check-out's time runs out, and then shuts
//!   the session's socket down, so that closing the connection does not wait for the server either.
//! - **A session the server ended** is never handed out again, and costs no round trip to find: on
//!   Linux the pool keeps a duplicate of each connection's socket (the client does not show its
//!   own) and, on every check-out, looks at it without reading from it. A hang-up, or an error
//!   message the server sent while the connection was idle (always a `FATAL` one), retires the
//!   connection; `LISTEN` notifications stay where they are. So a session killed while idle costs
//!   no error, and one killed during a query costs that query. One gap is left: the server hangs up
//!   only once its process has exited, some milliseconds after its `FATAL` error (about 10 ms on
//!   PostgreSQL 15), and the client has read the error by then; under load the connection may be
//!   handed on inside that window, and its next query fails too. Elsewhere than on Linux, and when
//!   two connections to the same server opened at the same instant from different threads, the pool
//!   asks the client, which learns of the end only at its next query. To close the gap, retire a
//!   connection yourself when a query fails with class `08` or `57`, or with no SQLSTATE on a
//!   client that says it is closed (the example under "Behind PgBouncer").
//! - Failed authentication, an unknown database, and the same reported by a proxy (PgBouncer
//!   answers with SQLSTATE `08P01` and a `FATAL` message: `SASL authentication failed`, `password
//!   authentication failed`, `no such database`, `no such user`) are permanent errors: `build` and
//!   check-outs fail at once with the server's reason (measured: 1 to 40 ms through PgBouncer, with
//!   a 10 s `connection_timeout`).
//!
//! # Behind PgBouncer
//!
//! In transaction mode (the usual one) PgBouncer lends a server connection to a client for
//! one transaction only (or one exchange, outside a transaction), so whatever lives in a
//! *session* belongs to the server connection it ran on, not to your pooled connection. What
//! follows was checked against PgBouncer 1.18 with the `postgres` driver, several pools at
//! once (tests/pgbouncer.rs).
//!
//! **What works, and what to use by default:** `simple_query` and `batch_execute` (one
//! exchange each); `query_typed` (`query_typed_one`, `query_typed_opt`; `postgres` 0.19.8 and
//! later): parameters and typed rows in one exchange, with no named statement, wherever you
//! would use `query`, `query_one` or `execute` with parameters; and transactions
//! (`conn.transaction()`): everything in one stays on one server connection, so `SET LOCAL`,
//! `prepare` and `query` work inside it, **provided every `Statement` and every `Row` from it
//! is dropped before `commit` or `rollback`** (see below).
//!
//! **What fails** (each reproduced by the tests, every time):
//!
//! - A statement prepared in one exchange and executed in another outside a transaction: the
//!   execution lands on another server connection, `prepared statement "s3" does not exist`.
//!   `query`, `query_one` and `execute` with a `&str` prepare and execute in two exchanges, so
//!   they fail the same way, now and then, under load; so does keeping prepared statements per
//!   pooled connection (the r2d2 habit).
//! - A statement that outlives its transaction. A `Row` keeps its `Statement` alive; when the
//!   last one is dropped after the commit, the driver's `Close` goes with the client's next
//!   exchange to whichever server connection that lands on, and the statement stays prepared
//!   on the one the transaction ran on, for that server connection's life. The driver names
//!   statements per process from `s0`, so another instance (or this one, restarted) preparing
//!   on that server connection fails with `prepared statement "s0" already exists`.
//! - Session `SET`s (`search_path`, `statement_timeout`, custom settings): the next exchange
//!   may run elsewhere, where the setting is not, and the client that gets that server
//!   connection next inherits it. Use `SET LOCAL` inside a transaction, or `ALTER ROLE` /
//!   `ALTER DATABASE ... SET` on the server. (PgBouncer carries `client_encoding`, `DateStyle`,
//!   `TimeZone`, `standard_conforming_strings` and `application_name` over itself.)
//! - Advisory session locks, `LISTEN`, temporary tables kept across transactions, `WITH HOLD`
//!   cursors.
//!
//! PgBouncer 1.21 and later can track protocol-level prepared statements
//! (`max_prepared_statements` above 0), which makes `prepare` and `query` work; not checked
//! here (Debian 12 ships 1.18).
//!
//! **Leave recycling off** (the default of [`with_recycling`]). Its `DISCARD ALL` is one more
//! exchange per check-in, and it runs on whichever server connection PgBouncer picks, wiping
//! what other clients left there (their prepared statements included) rather than anything of
//! yours; with 1.21's `max_prepared_statements`, PgBouncer is reported to disconnect a client
//! that sends it (not checked here).
//!
//! [`with_recycling`]: PostgresConnectionManager::with_recycling
//!
//! **PgBouncer's own errors end the client connection**: `query_wait_timeout`, `server login has
//! been failing, try again later (server_login_retry)`, `database removed` (an admin `KILL`), all
//! `FATAL` with SQLSTATE `08P01`. PgBouncer closes the connection right after, and the driver often
//! reports only `connection closed`, with no SQLSTATE. The pool retires such a connection itself
//! (see "A sick server"); to leave no window, retire it yourself:
//!
//! ```no_run
//! # let config = "host=127.0.0.1 port=6432 user=app dbname=orders".parse()?;
//! # let manager = sluicegate::postgres::PostgresConnectionManager::new(config, postgres::NoTls);
//! # let pool = sluicegate::Pool::new(manager)?;
//! let mut conn = pool.get()?;
//! if let Err(err) = conn.batch_execute("UPDATE orders SET state = 'sent' WHERE id = 42") {
//!     // Class 08 (PgBouncer's 08P01 among them) or 57, or a closed client: the session is
//!     // over, so it must not go to the next borrower.
//!     let class = err.code().map(|code| &code.code()[..2]);
//!     if matches!(class, Some("08" | "57")) || (class.is_none() && conn.is_closed()) {
//!         sluicegate::PooledConnection::mark_broken(&mut conn);
//!     }
//!     return Err(err.into());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **`connection_timeout` does not bound PgBouncer's own waits.** It bounds check-outs and logins:
//! a login PgBouncer holds (no server connection free, its server down, the database paused) is
//! given up at the pool's timeout, as a timeout that does not say why. But a query on a connection
//! already checked out waits inside PgBouncer (under `PAUSE`, after a `KILL`, which leaves the
//! database paused until `RESUME`, or while its pool is exhausted) until `query_wait_timeout` (120
//! s by default) ends the client connection. PgBouncer's `server_connect_timeout` (15 s) bounds its
//! own login to the server, and after a failed one it refuses or holds clients for
//! `server_login_retry` (15 s), also after a `RECONNECT` that closes a server connection still
//! logging in (seen under load). So set on PgBouncer a `query_wait_timeout` of the order of the
//! pool's `connection_timeout` (a few seconds), `server_connect_timeout` and `server_login_retry`
//! of a few seconds, and on the server a `statement_timeout` per role for slow queries.
//!
//! **Sizing.** In transaction mode, what reaches the server is PgBouncer's `default_pool_size` (per
//! database and user); the sum of all instances' `max_size` must stay below `max_client_conn`, and
//! beyond a small multiple of `default_pool_size` only moves the queue into PgBouncer, where
//! `connection_timeout` no longer applies. In session mode each pooled connection keeps a server
//! connection from its first query to its close, so the sum of all instances' `max_size` must fit
//! `default_pool_size` (plus `reserve_pool_size`) for that database and user: the others get no
//! server connection until another client leaves, and their queries fail at `query_wait_timeout`
//! (checked: two pools of 3 against a PgBouncer pool of 4 serve 4). Session state does stick there,
//! and PgBouncer resets a server connection only when its client disconnects, which a pooled
//! connection rarely does: turn recycling on if borrowers leave session state behind. Either way
//! keep `max_lifetime` below PgBouncer's `client_idle_timeout` (if set).
//!
//! # TLS
//!
//! The manager hands its `MakeTlsConnect` to the driver unchanged. The look at the socket
//! works beneath TLS: a hang-up shows the same, and only an error message sent to an idle
//! connection is hidden by the encryption (the hang-up that follows it then retires the
//! connection). Connectors that work: `tokio-postgres-rustls` (0.14, rustls 0.23, with its
//! `ring` or `aws-lc-rs` feature; no OpenSSL; sluicegate's own TLS tests use it), and
//! `postgres-native-tls` (OpenSSL on Linux) or `postgres-openssl`, by the driver's author.
//!
//! Ask for `sslmode=require`: the default, `prefer`, goes on unencrypted when the server offers
//! no TLS. Once TLS is on, rustls checks the server's certificate and host name (libpq's
//! `require` checks neither):
//!
//! ```no_run
//! use rustls::pki_types::{CertificateDer, pem::PemObject};
//! use sluicegate::postgres::PostgresConnectionManager;
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
//! let pool = sluicegate::Pool::new(PostgresConnectionManager::new(config, tls))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ::postgres::config::{Host, LoadBalanceHosts};
use ::postgres::error::{DbError, Severity, SqlState};
use ::postgres::tls::{MakeTlsConnect, TlsConnect};
use ::postgres::{Client, Config, Socket};
use parking_lot::Mutex;

use crate::Extensions;
use crate::human::Human;

/// How many connect attempts that got no answer may still be waiting (each on a thread of its
/// own) before the manager stops starting new ones: a bound on threads, whatever the server
/// does. On Linux the manager also cuts off such an attempt's socket, which ends it at once.
const MAX_HANGING: usize = 4;

/// How long a host that gave no answer is tried after the others.
const SILENT_FOR: Duration = Duration::from_secs(30);

/// Opens PostgreSQL connections for a pool.
///
/// # Examples
///
/// ```no_run
/// use sluicegate::postgres::PostgresConnectionManager;
/// let config = "host=127.0.0.1 user=postgres dbname=test".parse()?;
/// let manager = PostgresConnectionManager::new(config, postgres::NoTls);
/// let pool = sluicegate::Pool::new(manager)?;
/// let row = pool.get()?.query_one("SELECT 1 + 1", &[])?;
/// assert_eq!(row.get::<_, i32>(0), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresConnectionManager<T> {
    config: Config,
    tls: T,
    recycle: bool,
    /// Connect attempts given up on whose thread has not finished yet.
    hanging: Arc<Mutex<usize>>,
    /// Hosts (by label) that last gave no answer, and when.
    silent: Mutex<Vec<(String, Instant)>>,
}

impl<T> PostgresConnectionManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + 'static + Sync + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// A manager connecting with `config` through `tls` (`postgres::NoTls`, or a connector
    /// from `tokio-postgres-rustls`, `postgres-native-tls` or `postgres-openssl`).
    ///
    /// ```
    /// let config = "host=db.internal user=app password=secret dbname=orders".parse()?;
    /// let manager = sluicegate::postgres::PostgresConnectionManager::new(config, postgres::NoTls);
    /// assert!(!format!("{manager:?}").contains("secret"));
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn new(config: Config, tls: T) -> PostgresConnectionManager<T> {
        PostgresConnectionManager {
            config,
            tls,
            recycle: false,
            hanging: Arc::new(Mutex::new(0)),
            silent: Mutex::new(Vec::new()),
        }
    }

    /// With `true`, every connection coming back is reset with `DISCARD ALL` (settings,
    /// temporary tables, prepared statements, advisory locks, `LISTEN`), so each borrower gets
    /// a clean session, at the cost of a round trip per check-in. A connection returned in the
    /// middle of a transaction cannot be reset, and is closed. Statements prepared by a
    /// borrower do not survive its check-in: prepare them again after each check-out. Default
    /// `false`.
    ///
    /// ```
    /// use sluicegate::postgres::PostgresConnectionManager;
    /// let config = "host=127.0.0.1 user=postgres".parse()?;
    /// let manager = PostgresConnectionManager::new(config, postgres::NoTls).with_recycling(true);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    #[must_use]
    pub fn with_recycling(mut self, recycle: bool) -> PostgresConnectionManager<T> {
        self.recycle = recycle;
        self
    }

    /// The hosts to try, in order, each with a configuration that names it alone (the
    /// configuration itself when it names one host).
    fn targets(&self) -> Vec<Target> {
        let hosts = self.config.get_hosts();
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        if hosts.len() <= 1 {
            let host = hosts.first().cloned().unwrap_or_else(|| {
                let addr = self.config.get_hostaddrs().first();
                Host::Tcp(addr.map_or_else(|| "localhost".into(), ToString::to_string))
            });
            return vec![Target::new(host, port(0), self.config.clone())];
        }
        let mut targets: Vec<Target> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let config = alone(
                    &self.config,
                    host,
                    self.config.get_hostaddrs().get(i),
                    port(i),
                );
                Target::new(host.clone(), port(i), config)
            })
            .collect();
        if self.config.get_load_balance_hosts() == LoadBalanceHosts::Random {
            shuffle(&mut targets);
        }
        // A host that just gave no answer goes last, so that each new connection does not
        // spend its share of the time there first.
        let mut silent = self.silent.lock();
        silent.retain(|(_, at)| at.elapsed() < SILENT_FOR);
        targets.sort_by_key(|t| silent.iter().any(|(label, _)| *label == t.label));
        targets
    }

    /// Remembers whether `target` answered.
    fn answered(&self, target: &Target, answered: bool) {
        let mut silent = self.silent.lock();
        silent.retain(|(label, _)| *label != target.label);
        if !answered {
            silent.push((target.label.clone(), Instant::now()));
        }
    }

    /// One attempt at `target`, on a thread of its own so that it can be given up on after
    /// `budget`. On Linux, a connection comes with a duplicate of its socket; an attempt given
    /// up on has its socket shut down, which ends it.
    fn attempt(&self, target: &Target, budget: Duration) -> Result<Opened, Outcome> {
        let hanging = *self.hanging.lock();
        if hanging >= MAX_HANGING {
            return Err(Outcome::Hanging(hanging));
        }
        let before = sockets::before();
        let (tx, rx) = crossbeam_channel::bounded(1);
        // Whether the attempt was given up on: then its thread counts itself out when done.
        let abandoned = Arc::new(Mutex::new(false));
        let spawned = {
            let (mut config, tls) = (target.config.clone(), self.tls.clone());
            // The TCP connect gets no longer than the whole attempt, so that the thread of an
            // attempt given up on ends with it (the driver's `connect_timeout` covers only that
            // part).
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(budget);
            }
            let (abandoned, hanging) = (abandoned.clone(), self.hanging.clone());
            thread::Builder::new()
                .name("sluice-pg-connect".into())
                .spawn(move || {
                    let result = config.connect(tls);
                    let abandoned = abandoned.lock();
                    if *abandoned {
                        *hanging.lock() -= 1;
                    } else {
                        let _ = tx.send(result);
                    }
                })
        };
        if spawned.is_err() {
            // No thread to spare: connect here, bounded by the driver's TCP timeout only.
            let client = target
                .config
                .connect(self.tls.clone())
                .map_err(Outcome::Failed)?;
            return Ok(Opened::new(client, &before, target));
        }
        let outcome = rx.recv_timeout(budget);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) => {
                let mut abandoned = abandoned.lock();
                match rx.try_recv() {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        *abandoned = true;
                        *self.hanging.lock() += 1;
                        drop(abandoned);
                        sockets::cut_off(&before, target);
                        return Err(Outcome::NoAnswer(budget));
                    }
                }
            }
        };
        match outcome {
            Ok(client) => Ok(Opened::new(client, &before, target)),
            Err(err) => Err(Outcome::Failed(err)),
        }
    }
}

/// A copy of `config` naming `host` (and `hostaddr`, `port`) alone.
fn alone(config: &Config, host: &Host, hostaddr: Option<&std::net::IpAddr>, port: u16) -> Config {
    let mut c = Config::new();
    if let Some(user) = config.get_user() {
        c.user(user);
    }
    if let Some(password) = config.get_password() {
        c.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        c.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        c.options(options);
    }
    if let Some(name) = config.get_application_name() {
        c.application_name(name);
    }
    match host {
        Host::Tcp(name) => c.host(name),
        #[cfg(unix)]
        Host::Unix(path) => c.host_path(path),
    };
    if let Some(addr) = hostaddr {
        c.hostaddr(*addr);
    }
    c.port(port)
        .ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation())
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle())
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding());
    if let Some(timeout) = config.get_connect_timeout() {
        c.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        c.tcp_user_timeout(*timeout);
    }
    if let Some(interval) = config.get_keepalives_interval() {
        c.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        c.keepalives_retries(retries);
    }
    c
}

/// Shuffles `targets` (for `load_balance_hosts=random`).
fn shuffle(targets: &mut [Target]) {
    use std::hash::{BuildHasher, RandomState};
    // A fresh `RandomState` is randomly keyed: hashing anything with it gives random bits.
    for i in (1..targets.len()).rev() {
        let j = RandomState::new().hash_one(i) as usize % (i + 1);
        targets.swap(i, j);
    }
}

/// A host to try.
struct Target {
    /// `host:port`, or the socket directory and port, for errors.
    label: String,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    peer: Peer,
    config: Config,
}

/// Where a connection to a target leads, to find its socket.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum Peer {
    Tcp(u16),
    Unix(std::path::PathBuf),
}

impl Target {
    fn new(host: Host, port: u16, config: Config) -> Target {
        let (label, peer) = match host {
            Host::Tcp(name) => (format!("{name}:{port}"), Peer::Tcp(port)),
            #[cfg(unix)]
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                (path.display().to_string(), Peer::Unix(path))
            }
        };
        Target {
            label,
            peer,
            config,
        }
    }
}

/// A new connection, and (on Linux) a duplicate of its socket to look at.
struct Opened {
    client: Client,
    socket: Option<SessionSocket>,
}

impl Opened {
    fn new(client: Client, before: &sockets::Before, target: &Target) -> Opened {
        Opened {
            client,
            socket: sockets::found(before, target),
        }
    }
}

/// The pool's own duplicate of a connection's socket, kept in its extensions: looking at it
/// costs a system call and takes nothing away from the client.
struct SessionSocket(#[cfg_attr(not(target_os = "linux"), allow(dead_code))] std::os::fd::OwnedFd);

impl SessionSocket {
    /// Whether the server has ended the session: it hung up, or sent an error message (`E`)
    /// to a connection that asked nothing (a `FATAL` one: the session is over), or a TLS
    /// alert. Notifications, notices and parameter changes leave it open.
    #[cfg(target_os = "linux")]
    fn ended(&self) -> bool {
        use crate::drivers::socket::{Look, look};
        use std::os::fd::AsFd;
        /// A TLS record carrying an alert, as TLS 1.2 shows it (a close, or a fatal error).
        const TLS_ALERT: u8 = 0x15;
        match look(self.0.as_fd()) {
            Look::Quiet => false,
            Look::Waiting(first) => first == b'E' || first == TLS_ALERT,
            Look::Ended => true,
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn ended(&self) -> bool {
        false
    }

    /// Ends the session's traffic both ways, so that nothing waits on it any more.
    #[cfg(target_os = "linux")]
    fn shut_down(&self) {
        let _ = rustix::net::shutdown(&self.0, rustix::net::Shutdown::Both);
    }

    #[cfg(not(target_os = "linux"))]
    fn shut_down(&self) {}
}

#[cfg(target_os = "linux")]
mod sockets {
    use rustix::net::Shutdown;

    use super::{Peer, SessionSocket, Target};
    use crate::drivers::socket::{self, Sockets};

    pub(super) type Before = Sockets;

    pub(super) fn before() -> Before {
        Sockets::now()
    }

    fn peer(target: &Target) -> socket::Peer {
        match &target.peer {
            Peer::Tcp(port) => socket::Peer::Tcp(*port),
            Peer::Unix(path) => socket::Peer::Unix(path.clone()),
        }
    }

    /// The socket of the connection just opened to `target`, if it can be told apart.
    pub(super) fn found(before: &Before, target: &Target) -> Option<SessionSocket> {
        before.new_one_to(&peer(target)).map(SessionSocket)
    }

    /// Shuts down the socket of an attempt at `target` that got no answer, which makes the
    /// attempt fail at once and its thread finish.
    pub(super) fn cut_off(before: &Before, target: &Target) {
        if let Some(fd) = before.new_one_to(&peer(target)) {
            let _ = rustix::net::shutdown(&fd, Shutdown::Both);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sockets {
    use super::{SessionSocket, Target};

    pub(super) struct Before;

    pub(super) fn before() -> Before {
        Before
    }

    pub(super) fn found(_: &Before, _: &Target) -> Option<SessionSocket> {
        None
    }

    pub(super) fn cut_off(_: &Before, _: &Target) {}
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
        self.connect_within(Duration::from_secs(30), &mut Extensions::new())
    }

    /// Tries each host in turn (one that gave no answer lately last). Each gets, for the whole
    /// attempt, what is left of `timeout` shared among the hosts not yet tried, and no more
    /// than the configuration's own `connect_timeout`, if it sets one.
    fn connect_within(
        &self,
        timeout: Duration,
        extensions: &mut Extensions,
    ) -> Result<Client, Error> {
        let deadline = Instant::now() + timeout;
        let targets = self.targets();
        let mut attempts = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / (targets.len() - i) as u32;
            let budget = match self.config.get_connect_timeout() {
                Some(own) => (*own).min(share),
                None => share,
            };
            match self.attempt(target, budget) {
                Ok(opened) => {
                    self.answered(target, true);
                    if let Some(socket) = opened.socket {
                        extensions.insert(socket);
                    }
                    return Ok(opened.client);
                }
                Err(outcome) => {
                    self.answered(target, !matches!(outcome, Outcome::NoAnswer(_)));
                    attempts.push(Attempt {
                        target: target.label.clone(),
                        outcome,
                    });
                }
            }
        }
        Err(Error(Box::new(Failure::Connect(attempts))))
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), Error> {
        client.simple_query("").map(|_| ()).map_err(Error::from)
    }

    /// On failure (a timeout above all, which leaves the query in flight), the session's
    /// socket is shut down: the client would otherwise wait, when the pool drops it, for the
    /// answer of a server that may never give one.
    fn is_valid_within(
        &self,
        client: &mut Client,
        timeout: Duration,
        extensions: &Extensions,
    ) -> Result<(), Error> {
        client.is_valid(timeout).map_err(|err| {
            if let Some(socket) = extensions.get::<SessionSocket>() {
                socket.shut_down();
            }
            Error::from(err)
        })
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }

    fn is_closed(&self, client: &mut Client, extensions: &Extensions) -> bool {
        client.is_closed()
            || extensions
                .get::<SessionSocket>()
                .is_some_and(SessionSocket::ended)
    }

    fn is_permanent(&self, error: &Error) -> bool {
        match &*error.0 {
            Failure::Connect(attempts) => {
                !attempts.is_empty()
                    && attempts.iter().all(|a| match &a.outcome {
                        Outcome::Failed(err) => refuses_login(err),
                        _ => false,
                    })
            }
            Failure::Postgres(err) => refuses_login(err),
        }
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

/// Whether the server (or a proxy in front of it) refused the login for a reason waiting will
/// not fix: a wrong password, an unknown role or database.
pub(crate) fn refuses_login(error: &::postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
    ]
    .contains(db.code())
        || proxy_refuses_login(db)
}

/// PgBouncer reports login failures as `FATAL` protocol violations (`08P01`), the same code as
/// its passing troubles (`pgbouncer cannot connect to server`, `no more connections
/// allowed`): only the message tells them apart.
fn proxy_refuses_login(db: &DbError) -> bool {
    const REFUSALS: [&str; 5] = [
        "password authentication failed",
        "sasl authentication failed",
        "no such database",
        "no such user",
        "auth failed",
    ];
    let message = db.message().to_ascii_lowercase();
    // PgBouncer sends the severity only as text (`S`), not in the field PostgreSQL adds for
    // clients (`V`, which `parsed_severity` reads).
    let fatal = db.parsed_severity() == Some(Severity::Fatal) || db.severity() == "FATAL";
    db.code() == &SqlState::PROTOCOL_VIOLATION
        && fatal
        && REFUSALS.iter().any(|refusal| message.contains(refusal))
}

/// What went wrong with a PostgreSQL connection: a failed connect (naming each host tried and
/// what happened there), or the driver's error from a validation or a reset.
///
/// The driver's own error, when there is one, is [`source()`](StdError::source) and
/// [`as_postgres`](Error::as_postgres); its text is part of this error's `Display` too.
///
/// # Examples
///
/// ```
/// use sluicegate::postgres::PostgresConnectionManager;
/// let config = "host=127.0.0.1 port=1 user=postgres".parse()?; // nothing listens on port 1
/// let err = sluicegate::Pool::builder()
///     .connection_timeout(std::time::Duration::from_secs(1))
///     .error_handler(Box::new(sluicegate::NopErrorHandler))
///     .build(PostgresConnectionManager::new(config, postgres::NoTls))
///     .unwrap_err();
/// let cause = err.last_error().unwrap().to_string();
/// assert!(cause.starts_with("connecting to 127.0.0.1:1: "), "{cause}");
/// # Ok::<(), postgres::Error>(())
/// ```
#[derive(Debug)]
pub struct Error(Box<Failure>);

#[derive(Debug)]
enum Failure {
    /// Every host was tried, in this order.
    Connect(Vec<Attempt>),
    Postgres(::postgres::Error),
}

/// One host tried, and what came of it.
#[derive(Debug)]
struct Attempt {
    target: String,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    Failed(::postgres::Error),
    /// The server did not finish the login within this long.
    NoAnswer(Duration),
    /// Not tried: this many earlier attempts are still waiting for their answer.
    Hanging(usize),
}

impl Error {
    /// The driver's own error, if there is one: the last host's, for a failed connect.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use postgres::error::SqlState;
    ///
    /// fn is_wrong_password(err: &sluicegate::postgres::Error) -> bool {
    ///     err.as_postgres().and_then(postgres::Error::code) == Some(&SqlState::INVALID_PASSWORD)
    /// }
    /// ```
    #[must_use]
    pub fn as_postgres(&self) -> Option<&::postgres::Error> {
        match &*self.0 {
            Failure::Postgres(err) => Some(err),
            Failure::Connect(attempts) => attempts.iter().rev().find_map(|a| match &a.outcome {
                Outcome::Failed(err) => Some(err),
                _ => None,
            }),
        }
    }

    /// The SQLSTATE code of the driver's error, if the server gave one.
    ///
    /// ```no_run
    /// # fn f(err: sluicegate::postgres::Error) {
    /// if err.code() == Some(&postgres::error::SqlState::INVALID_CATALOG_NAME) {
    ///     eprintln!("no such database");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn code(&self) -> Option<&SqlState> {
        self.as_postgres().and_then(::postgres::Error::code)
    }

    /// Whether a connect failed because no host answered in time.
    ///
    /// ```no_run
    /// # fn f(err: sluicegate::postgres::Error) {
    /// if err.is_timeout() {
    ///     eprintln!("the database does not answer: {err}");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        match &*self.0 {
            Failure::Connect(attempts) => {
                !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|a| matches!(a.outcome, Outcome::NoAnswer(_)))
            }
            Failure::Postgres(_) => false,
        }
    }
}

impl From<::postgres::Error> for Error {
    fn from(err: ::postgres::Error) -> Error {
        Error(Box::new(Failure::Postgres(err)))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Failure::Postgres(err) => fmt::Display::fmt(err, f),
            Failure::Connect(attempts) => {
                if attempts.is_empty() {
                    return f.write_str("no host to connect to");
                }
                for (i, attempt) in attempts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "connecting to {}: ", attempt.target)?;
                    match &attempt.outcome {
                        Outcome::Failed(err) => write!(f, "{err}")?,
                        Outcome::NoAnswer(after) => {
                            write!(f, "no answer within {}", Human(*after))?;
                        }
                        Outcome::Hanging(count) => write!(
                            f,
                            "not tried: {count} earlier attempts are still waiting for an answer"
                        )?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.as_postgres().map(|err| err as _)
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
