//! A scriptable fake database for sluicegate's tests.
//!
//! `FakeManager` opens `FakeConn`s. What each `connect` and `is_valid` does is scripted through
//! the shared `Script`: queue outcomes for the next calls (`plan_connect`, `plan_validation`) or
//! set what happens when the queue is empty (`set_connect_default`, `fail_validation`). The
//! script counts every call and every live connection, so tests can check what the pool did
//! to the "database" without reaching into the pool.
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

/// An error with an optional cause, like a driver's ("db error" → "FATAL: …").
#[derive(Debug, Clone)]
pub struct FakeError {
    pub message: String,
    pub source: Option<Box<FakeError>>,
    /// What `FakeManager::is_permanent` says of it.
    pub permanent: bool,
    /// A driver bug: its `Display` panics.
    pub display_panics: bool,
    /// A driver bug: its `source()` panics.
    pub source_panics: bool,
}

impl FakeError {
    pub fn new(message: impl Into<String>) -> FakeError {
        FakeError {
            message: message.into(),
            source: None,
            permanent: false,
            display_panics: false,
            source_panics: false,
        }
    }

    /// An error whose `Display` and `source()` panic, as a buggy driver's might.
    pub fn panicking() -> FakeError {
        FakeError {
            display_panics: true,
            source_panics: true,
            ..FakeError::new("unprintable")
        }
    }

    /// `message`, caused by `cause`.
    pub fn caused_by(message: impl Into<String>, cause: impl Into<String>) -> FakeError {
        FakeError {
            source: Some(Box::new(FakeError::new(cause))),
            ..FakeError::new(message)
        }
    }

    /// An error waiting will not fix (a wrong password), caused by `cause`.
    pub fn permanent(message: impl Into<String>, cause: impl Into<String>) -> FakeError {
        FakeError {
            permanent: true,
            ..FakeError::caused_by(message, cause)
        }
    }
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.display_panics {
            panic!("the error's Display blew up");
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if self.source_panics {
            panic!("the error's source() blew up");
        }
        self.source.as_deref().map(|s| s as _)
    }
}

/// What one `connect` call does.
pub enum Connect {
    Ok,
    Fail(FakeError),
    Panic(&'static str),
    /// Sleep, then succeed (a slow database).
    Delay(Duration),
    /// Block until the test sends on (or drops) the channel's sender, then succeed.
    Gate(Receiver<()>),
    /// Block like `Gate`, then fail.
    GateThenFail(Receiver<()>, FakeError),
}

/// What `connect` does when no outcome is queued.
#[derive(Clone)]
pub enum ConnectDefault {
    Ok,
    Fail(FakeError),
    Delay(Duration),
}

pub struct Script {
    connect_plan: Mutex<VecDeque<Connect>>,
    connect_default: Mutex<ConnectDefault>,
    validation_plan: Mutex<VecDeque<Result<(), FakeError>>>,
    validation_fails: Mutex<Option<FakeError>>,
    /// How long each validation takes (a slow or stopped server).
    validation_delay: Mutex<Duration>,
    /// Whether `is_valid_within` honours its timeout (a well-behaved driver) or ignores it
    /// (a manager that only has `is_valid`).
    pub honours_deadlines: AtomicBool,
    /// Connection ids `has_broken` reports as broken.
    broken: Mutex<HashSet<u64>>,
    broken_all: AtomicBool,
    /// Connection ids whose server hung up: `is_closed` and `has_broken` report them.
    hung_up: Mutex<HashSet<u64>>,
    /// How many of the next `is_closed` calls panic.
    pub is_closed_panics: AtomicU64,
    pub is_closed_calls: AtomicU64,
    next_id: AtomicU64,
    /// Calls to `connect`, successful or not.
    pub connects: AtomicU64,
    pub validations: AtomicU64,
    pub has_broken_calls: AtomicU64,
    /// `FakeConn`s that exist right now (opened and not yet dropped).
    pub live: AtomicI64,
    /// The most `FakeConn`s that ever existed at once.
    pub max_live: AtomicI64,
    /// Ids of the connections dropped, in order.
    pub dropped: Mutex<Vec<u64>>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            connect_plan: Mutex::new(VecDeque::new()),
            connect_default: Mutex::new(ConnectDefault::Ok),
            validation_plan: Mutex::new(VecDeque::new()),
            validation_fails: Mutex::new(None),
            validation_delay: Mutex::new(Duration::ZERO),
            honours_deadlines: AtomicBool::new(true),
            broken: Mutex::new(HashSet::new()),
            broken_all: AtomicBool::new(false),
            hung_up: Mutex::new(HashSet::new()),
            is_closed_panics: AtomicU64::new(0),
            is_closed_calls: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            connects: AtomicU64::new(0),
            validations: AtomicU64::new(0),
            has_broken_calls: AtomicU64::new(0),
            live: AtomicI64::new(0),
            max_live: AtomicI64::new(0),
            dropped: Mutex::new(Vec::new()),
        }
    }
}

impl Script {
    /// Queues what the next `connect` calls do, in order.
    pub fn plan_connect(&self, outcomes: impl IntoIterator<Item = Connect>) {
        self.connect_plan.lock().extend(outcomes);
    }

    /// What `connect` does once the queue is empty.
    pub fn set_connect_default(&self, default: ConnectDefault) {
        *self.connect_default.lock() = default;
    }

    /// Queues the results of the next `is_valid` calls, in order.
    pub fn plan_validation(&self, results: impl IntoIterator<Item = Result<(), FakeError>>) {
        self.validation_plan.lock().extend(results);
    }

    /// Makes every `is_valid` (once the queue is empty) fail with `error`, or pass with `None`.
    pub fn fail_validation(&self, error: Option<FakeError>) {
        *self.validation_fails.lock() = error;
    }

    /// Makes every validation take `delay` (or its timeout, if shorter and honoured), then do
    /// what it would have done.
    pub fn slow_validation(&self, delay: Duration) {
        *self.validation_delay.lock() = delay;
    }

    /// Makes `has_broken` report connection `id` as broken.
    pub fn break_conn(&self, id: u64) {
        self.broken.lock().insert(id);
    }

    /// Plays a server that ends connection `id`'s session: `is_closed` (no round trip) and
    /// `has_broken` see it from now on.
    pub fn hang_up(&self, id: u64) {
        self.hung_up.lock().insert(id);
    }

    /// Makes `has_broken` report every connection as broken.
    pub fn break_all(&self, broken: bool) {
        self.broken_all.store(broken, Ordering::SeqCst);
    }

    pub fn live(&self) -> i64 {
        self.live.load(Ordering::SeqCst)
    }

    pub fn max_live(&self) -> i64 {
        self.max_live.load(Ordering::SeqCst)
    }

    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    pub fn validations(&self) -> u64 {
        self.validations.load(Ordering::SeqCst)
    }

    fn open(self: &Arc<Self>) -> FakeConn {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_live.fetch_max(live, Ordering::SeqCst);
        FakeConn {
            id,
            uses: 0,
            script: self.clone(),
        }
    }
}

/// A fake connection. `uses` is free for tests to count with.
pub struct FakeConn {
    pub id: u64,
    pub uses: u64,
    script: Arc<Script>,
}

impl fmt::Debug for FakeConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeConn").field("id", &self.id).finish()
    }
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.script.live.fetch_sub(1, Ordering::SeqCst);
        self.script.dropped.lock().push(self.id);
    }
}

#[derive(Clone, Default)]
pub struct FakeManager {
    pub script: Arc<Script>,
}

impl FakeManager {
    pub fn new() -> FakeManager {
        FakeManager::default()
    }
}

impl fmt::Debug for FakeManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("FakeManager")
    }
}

impl sluicegate::ManageConnection for FakeManager {
    type Connection = FakeConn;
    type Error = FakeError;

    fn connect(&self) -> Result<FakeConn, FakeError> {
        self.script.connects.fetch_add(1, Ordering::SeqCst);
        let planned = self.script.connect_plan.lock().pop_front();
        let outcome = match planned {
            Some(outcome) => outcome,
            None => match self.script.connect_default.lock().clone() {
                ConnectDefault::Ok => Connect::Ok,
                ConnectDefault::Fail(err) => Connect::Fail(err),
                ConnectDefault::Delay(d) => Connect::Delay(d),
            },
        };
        match outcome {
            Connect::Ok => Ok(self.script.open()),
            Connect::Fail(err) => Err(err),
            Connect::Panic(message) => panic!("{message}"),
            Connect::Delay(d) => {
                std::thread::sleep(d);
                Ok(self.script.open())
            }
            Connect::Gate(gate) => {
                let _ = gate.recv();
                Ok(self.script.open())
            }
            Connect::GateThenFail(gate, err) => {
                let _ = gate.recv();
                Err(err)
            }
        }
    }

    fn is_valid(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.is_valid_within(conn, Duration::MAX, &sluicegate::Extensions::new())
    }

    fn is_valid_within(
        &self,
        _conn: &mut FakeConn,
        timeout: Duration,
        _: &sluicegate::Extensions,
    ) -> Result<(), FakeError> {
        self.script.validations.fetch_add(1, Ordering::SeqCst);
        let delay = *self.script.validation_delay.lock();
        if !delay.is_zero() {
            if self.script.honours_deadlines.load(Ordering::SeqCst) && delay > timeout {
                std::thread::sleep(timeout);
                return Err(FakeError::new("no answer within the deadline"));
            }
            std::thread::sleep(delay);
        }
        if let Some(result) = self.script.validation_plan.lock().pop_front() {
            return result;
        }
        match &*self.script.validation_fails.lock() {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    fn is_permanent(&self, error: &FakeError) -> bool {
        error.permanent
    }

    fn has_broken(&self, conn: &mut FakeConn) -> bool {
        self.script.has_broken_calls.fetch_add(1, Ordering::SeqCst);
        self.script.broken_all.load(Ordering::SeqCst)
            || self.script.broken.lock().contains(&conn.id)
            || self.script.hung_up.lock().contains(&conn.id)
    }

    fn is_closed(&self, conn: &mut FakeConn, _: &sluicegate::Extensions) -> bool {
        self.script.is_closed_calls.fetch_add(1, Ordering::SeqCst);
        let panic_now = self
            .script
            .is_closed_panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if panic_now {
            panic!("is_closed blew up");
        }
        self.script.hung_up.lock().contains(&conn.id)
    }
}

/// A pool of `max_size` fake connections (all open once this returns) that does not log
/// connect errors, and its manager.
pub fn pool(max_size: u32) -> (sluicegate::Pool<FakeManager>, FakeManager) {
    let manager = FakeManager::new();
    let pool = sluicegate::Pool::builder()
        .max_size(max_size)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager.clone())
        .unwrap();
    (pool, manager)
}

/// Polls `condition` until it holds or `within` passes; for effects of the pool's own thread,
/// which the test cannot synchronise with directly. Returns whether it held.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Generous bound for things that should happen "at once" on a loaded two-core machine.
pub const SOON: Duration = Duration::from_secs(10);

/// Runs `f` on its own thread and returns its result, failing the test if it does not finish
/// within `within` (a deadlock shows up as a failure, not a hung test run).
pub fn finishes_within<T: Send + 'static>(
    within: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(within) {
        Ok(value) => value,
        Err(_) => panic!("did not finish within {within:?}: deadlock?"),
    }
}

/// Names of this process's threads, from /proc/self/task/*/comm (15 characters at most).
/// Linux only: a test that reads them starts with [`linux_only`]. Elsewhere this panics rather
/// than return nothing, under which "no thread named X is left" would pass without looking.
pub fn thread_names() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap_or_else(|err| {
        panic!("cannot list /proc/self/task ({err}): a test reading thread names is linux_only")
    });
    tasks
        // A thread may end between the listing and the read.
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// What a test reading [`thread_names`] needs, for [`linux_only`].
pub const THREAD_NAMES: &str = "thread names from /proc";

/// Whether `test`, which needs what only Linux has (`needs`: thread names in /proc, the
/// pool's look at a connection's socket), can run here; elsewhere says loudly that it did
/// not. On Linux it always runs, so under `CI=true` (on Linux) nothing is skipped.
pub fn linux_only(test: &str, needs: &str) -> bool {
    if cfg!(target_os = "linux") {
        return true;
    }
    announce_skip(test, &format!("it needs {needs}, which only Linux has"));
    false
}

/// Log lines captured from every test in this binary (tests run in parallel, so each test
/// picks out its own pool's lines by name).
static LOGS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        LOGS.lock()
            .push((record.level(), record.args().to_string()));
    }

    fn flush(&self) {}
}

/// Starts capturing this process's log lines (idempotent).
pub fn capture_logs() {
    static CAPTURE: Capture = Capture;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The captured lines that mention pool `name` (as the pool writes it: `pool "name"`).
pub fn logged(name: &str) -> Vec<(log::Level, String)> {
    let needle = format!("pool {name:?}");
    LOGS.lock()
        .iter()
        .filter(|(_, line)| line.contains(&needle))
        .cloned()
        .collect()
}

/// Every captured line, whichever pool or test it came from: the error handler's lines name
/// no pool.
pub fn all_logged() -> Vec<(log::Level, String)> {
    LOGS.lock().clone()
}

/// A loopback port nothing listens on (it was free a moment ago).
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Checks a `build` that met a wrong password: it failed at once (since `started`) with a
/// permanent error carrying the server's `reason`, and `secret` shows in no `Display`, no
/// `Debug` (the error's, or `manager_debug`) and no captured log line of pool `pool_name`.
pub fn check_wrong_password<M: sluicegate::ManageConnection>(
    result: Result<sluicegate::Pool<M>, sluicegate::Error>,
    started: Instant,
    reason: &str,
    secret: &str,
    manager_debug: &str,
    pool_name: &str,
) {
    let Err(err) = result else {
        panic!("the build succeeded with a wrong password");
    };
    assert!(
        started.elapsed() < SOON,
        "failed at once, not after the timeout"
    );
    assert!(err.is_permanent(), "{err}");
    let text = err.to_string();
    assert!(text.contains(reason), "{text}");
    let debug = format!("{err:?} {manager_debug}");
    assert!(
        !text.contains(secret) && !debug.contains(secret),
        "{text} {debug}"
    );
    for (_, line) in logged(pool_name) {
        assert!(!line.contains(secret), "{line}");
    }
}

/// Checks a `build` against a port where nothing listens: a timeout within `timeout` (and a
/// generous margin) that says the connection was refused.
pub fn check_refused<M: sluicegate::ManageConnection>(
    result: Result<sluicegate::Pool<M>, sluicegate::Error>,
    started: Instant,
    timeout: Duration,
) {
    let Err(err) = result else {
        panic!("the build succeeded with nothing listening");
    };
    assert!(started.elapsed() < timeout + SOON);
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}

/// After a session was killed on the server: checks out up to three times and asks each
/// connection for its session id (`session`), until one answers. Asserts that at most one
/// error surfaced and returns the live session's id.
pub fn live_session_after_a_kill<M, Id, E>(
    pool: &sluicegate::Pool<M>,
    mut session: impl FnMut(&mut M::Connection) -> Result<Id, E>,
) -> Id
where
    M: sluicegate::ManageConnection,
{
    let mut errors = 0;
    for _ in 0..3 {
        let mut conn = pool.get_timeout(SOON).unwrap();
        match session(&mut conn) {
            Ok(id) => {
                assert!(errors <= 1, "{errors} errors surfaced");
                return id;
            }
            Err(_) => errors += 1,
        }
    }
    panic!("no live connection after the kill ({errors} errors)");
}

/// An error and its `source()` chain, on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        text.push_str(" <- ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

/// Says loudly that `test` did not run and why (`fix` says what would let it run); under
/// `CI=true`, where every test must run, fails instead.
pub fn skip(test: &str, why: &str, fix: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {test} cannot run: {why}; {fix}");
    }
    announce_skip(test, &format!("{why}; {fix}"));
}

fn announce_skip(test: &str, why: &str) {
    eprintln!("\n!!! SKIPPED {test}: {why} !!!\n");
}

/// Whether `test`, which stops, restarts, signals or reconfigures a database server, may run:
/// only under `CI=true` or with `SLUICEGATE_SERVER_FAULTS=1`, as it disturbs everyone else using
/// that server. Otherwise says loudly that it did not run (the test then passes).
pub fn server_faults_allowed(test: &str) -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let asked = std::env::var("SLUICEGATE_SERVER_FAULTS").as_deref() == Ok("1");
    if !ci && !asked {
        eprintln!(
            "\n!!! {test}: not run: set SLUICEGATE_SERVER_FAULTS=1 or CI=true (it stops, restarts \
             or signals the database server, which disturbs everyone else using it) !!!\n"
        );
    }
    ci || asked
}

/// Environment variable `name`, or `default` when it is not set.
pub fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A database server the tests use: where it is and whom to log in as. The one place the
/// `SLUICEGATE_PG_*` and `SLUICEGATE_MY_*` settings are read; each driver's settings (and
/// diesel's URL) are built from it. No `Debug`: it holds the password.
#[derive(Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

impl Server {
    /// The local PostgreSQL server `scripts/services.sh` sets up, the one the fault and
    /// restart tests act on: user `postgres` (no password) at 127.0.0.1:5432, database `test`.
    pub fn local_postgres() -> Server {
        Server::local(5432, "postgres")
    }

    /// The local MariaDB server `scripts/services.sh` sets up, the one the fault and restart
    /// tests act on: user `root` (empty password) at 127.0.0.1:3306, database `test`.
    pub fn local_mysql() -> Server {
        Server::local(3306, "root")
    }

    /// The PostgreSQL server of the driver tests: [`Server::local_postgres`] but for what
    /// `SLUICEGATE_PG_HOST`, `_PORT`, `_USER`, `_PASSWORD` and `_DATABASE` say.
    pub fn postgres() -> Server {
        Server::local_postgres().but_for_env("SLUICEGATE_PG")
    }

    /// The MariaDB (or MySQL) server of the driver tests: [`Server::local_mysql`] but for what
    /// `SLUICEGATE_MY_HOST`, `_PORT`, `_USER`, `_PASSWORD` and `_DATABASE` say.
    pub fn mysql() -> Server {
        Server::local_mysql().but_for_env("SLUICEGATE_MY")
    }

    fn local(port: u16, user: &str) -> Server {
        Server {
            host: "127.0.0.1".to_string(),
            port,
            user: user.to_string(),
            password: None,
            database: "test".to_string(),
        }
    }

    /// This server, with each setting the environment variable `{prefix}_{SETTING}` gives.
    fn but_for_env(self, prefix: &str) -> Server {
        let var = |setting: &str| std::env::var(format!("{prefix}_{setting}")).ok();
        Server {
            host: var("HOST").unwrap_or(self.host),
            port: var("PORT").map_or(self.port, |port| {
                port.parse()
                    .unwrap_or_else(|_| panic!("{prefix}_PORT={port:?} is not a port number"))
            }),
            user: var("USER").unwrap_or(self.user),
            password: var("PASSWORD").or(self.password),
            database: var("DATABASE").unwrap_or(self.database),
        }
    }

    /// A `postgres://` URL for it (diesel's way), given 5 s to connect. It holds the password:
    /// never print it.
    pub fn url(&self) -> String {
        let login = match &self.password {
            Some(password) => format!("{}:{password}", self.user),
            None => self.user.clone(),
        };
        format!(
            "postgres://{login}@{}:{}/{}?connect_timeout=5",
            self.host, self.port, self.database
        )
    }

    /// Its settings for the `postgres` driver. (`host` and `port` add to a `Config`'s lists, so
    /// change them here, not on the result.)
    #[cfg(feature = "postgres")]
    pub fn pg_config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database);
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }

    /// Its settings for the `mysql` driver.
    #[cfg(feature = "mysql")]
    pub fn my_opts(&self) -> mysql::OptsBuilder {
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some(self.host.clone()))
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .db_name(Some(self.database.clone()))
    }
}

/// The PostgreSQL server of tests/postgres.rs and tests/postgres_tls.rs ([`Server::postgres`]),
/// given 5 s to connect.
#[cfg(feature = "postgres")]
pub fn pg_config() -> postgres::Config {
    let mut config = Server::postgres().pg_config();
    config.connect_timeout(Duration::from_secs(5));
    config
}

/// The local PostgreSQL server ([`Server::local_postgres`]) whatever the `SLUICEGATE_PG_*`
/// settings say, but at 127.0.0.1:`port`: at 5432 the server itself, elsewhere PgBouncer or a
/// listener of the test's own.
#[cfg(feature = "postgres")]
pub fn pg_local(port: u16) -> postgres::Config {
    Server {
        port,
        ..Server::local_postgres()
    }
    .pg_config()
}

/// `SELECT 1` on `client`, which must answer 1: the query of the fault and restart tests.
#[cfg(feature = "postgres")]
pub fn pg_select_1(client: &mut postgres::Client) -> Result<(), String> {
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .map_err(|err| chain(&err))?
        .get(0);
    assert_eq!(one, 1);
    Ok(())
}

/// The MariaDB server of tests/mysql.rs ([`Server::mysql`]), given 5 s to connect.
#[cfg(feature = "mysql")]
pub fn my_opts() -> mysql::OptsBuilder {
    Server::mysql()
        .my_opts()
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
}

/// The local MariaDB server ([`Server::local_mysql`]) whatever the `SLUICEGATE_MY_*` settings
/// say.
#[cfg(feature = "mysql")]
pub fn my_local() -> mysql::OptsBuilder {
    Server::local_mysql().my_opts()
}

/// `SELECT 1` on `conn`, which must answer 1: the query of the fault and restart tests.
#[cfg(feature = "mysql")]
pub fn my_select_1(conn: &mut mysql::Conn) -> Result<(), String> {
    use mysql::prelude::Queryable;
    let one: Option<i32> = conn.query_first("SELECT 1").map_err(|err| chain(&err))?;
    assert_eq!(one, Some(1));
    Ok(())
}
