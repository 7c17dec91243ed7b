//! `sluicegate::postgres` behind PgBouncer (1.18, Debian's), as `scripts/services.sh` runs it:
//! transaction mode on 127.0.0.1:6432, session mode on 127.0.0.1:6433, in front of the local
//! PostgreSQL's `test` database (also served as `one_server` and `two_servers`, through that
//! many server connections, and `unreachable`, a server nothing listens on), with
//! `query_wait_timeout = 5`.
//!
//! What the crate guide ("Behind PgBouncer") says is checked here: what
//! works through transaction mode from several pools at once, the failures it documents
//! (reproduced step by step, each client's place known, so that they happen every time), how
//! fast a refused login fails, what bounds a login PgBouncer holds, and session mode.
//!
//! The tests that act on PgBouncer as a whole (`RECONNECT`, `KILL`, `PAUSE`, a restart through
//! `scripts/services.sh stop|start pgbouncer`) run only under `CI=true` or with
//! `SLUICEGATE_SERVER_FAULTS=1`, one at a time while no other test of this binary runs, and
//! resume or restart PgBouncer whatever happens. Without PgBouncer the tests say so loudly and
//! pass, except under `CI=true`, where they fail.
#![cfg(feature = "postgres")]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::thread;
use std::time::{Duration, Instant};

use postgres::types::Type;
use postgres::{Client, Config, NoTls, SimpleQueryMessage};
use sluicegate::postgres::PostgresConnectionManager;
use sluicegate::{ManageConnection, Pool};

use common::{SOON, capture_logs, chain, check_wrong_password, pg_local, skip};

/// PgBouncer in transaction mode.
const TRANSACTION: u16 = 6432;
/// PgBouncer in session mode.
const SESSION: u16 = 6433;

/// Taken for reading by every test, for writing by those that disturb PgBouncer as a whole,
/// which then run alone.
static PGBOUNCER: RwLock<()> = RwLock::new(());
/// The databases served through a fixed number of server connections: one test at a time.
static ONE_SERVER: Mutex<()> = Mutex::new(());
static TWO_SERVERS: Mutex<()> = Mutex::new(());

/// A test that leaves PgBouncer as it found it: it runs beside the others like it, and only
/// where PgBouncer answers (otherwise it says so, and under CI=true fails).
fn sharing(test: &str) -> Option<RwLockReadGuard<'static, ()>> {
    let guard = PGBOUNCER.read().unwrap_or_else(PoisonError::into_inner);
    reachable(test).then_some(guard)
}

fn exclusive(lock: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Database `db` through PgBouncer at `port`, as `postgres`.
fn config(port: u16, db: &str) -> Config {
    let mut config = pg_local(port);
    config.dbname(db).connect_timeout(Duration::from_secs(5));
    config
}

/// PgBouncer's admin console at `port`.
fn admin(port: u16) -> Result<Client, postgres::Error> {
    config(port, "pgbouncer").connect(NoTls)
}

/// Whether both PgBouncers answer; if not, says so (loudly, or fails under CI).
fn reachable(test: &str) -> bool {
    for port in [TRANSACTION, SESSION] {
        if let Err(err) = admin(port).and_then(|mut c| c.simple_query("SHOW VERSION")) {
            let why = format!("no PgBouncer at 127.0.0.1:{port} ({})", chain(&err));
            skip(test, &why, "run scripts/services.sh");
            return false;
        }
    }
    true
}

/// The rows of an admin command (or simple query), each as (column, value) pairs.
fn rows(client: &mut Client, sql: &str) -> Vec<Vec<(String, Option<String>)>> {
    client
        .simple_query(sql)
        .unwrap_or_else(|err| panic!("{sql}: {}", chain(&err)))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), row.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn field<'a>(row: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    row.iter()
        .find(|(column, _)| column == name)
        .and_then(|(_, v)| v.as_deref())
}

/// The first column of the first row of a simple query.
fn simple_value(client: &mut Client, sql: &str) -> Result<Option<String>, postgres::Error> {
    let first = client.simple_query(sql)?.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
        _ => None,
    });
    Ok(first.flatten())
}

/// PgBouncer's server connections for database `db` (their PostgreSQL backend pids).
fn servers(port: u16, db: &str) -> Vec<String> {
    let mut admin = admin(port).expect("the admin console");
    rows(&mut admin, "SHOW SERVERS")
        .iter()
        .filter(|row| field(row, "database") == Some(db))
        .filter_map(|row| field(row, "remote_pid").map(str::to_string))
        .collect()
}

/// Closes PgBouncer's server connections for `db` and waits until they are gone, so that a
/// test starts (and leaves) without the sessions, statements and settings of earlier ones.
fn fresh_servers(db: &str) {
    let mut admin = admin(TRANSACTION).expect("the admin console");
    admin.simple_query(&format!("RECONNECT {db}")).unwrap();
    assert!(
        common::eventually(SOON, || servers(TRANSACTION, db).is_empty()),
        "the server connections of {db} were not closed"
    );
}

/// A pool of `size` connections to `db` through the PgBouncer at `port`.
fn pool(port: u16, db: &str, size: u32) -> Pool<PostgresConnectionManager<NoTls>> {
    Pool::builder()
        .max_size(size)
        .connection_timeout(SOON)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(PostgresConnectionManager::new(config(port, db), NoTls))
        .expect("a pool through PgBouncer")
}

/// A client that holds whichever server connection PgBouncer gives its `BEGIN` until
/// `commit`: how the tests pin the server connection others will land on.
struct Holder(Client);

impl Holder {
    fn begin(db: &str) -> Holder {
        let mut client = config(TRANSACTION, db).connect(NoTls).unwrap();
        client.batch_execute("BEGIN").unwrap();
        Holder(client)
    }

    fn commit(mut self) {
        self.0.batch_execute("COMMIT").unwrap();
    }
}

/// A `SELECT` whose text no other statement has, to find it in `pg_prepared_statements`.
fn unique_select() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("SELECT 1 AS marker_{}_{n}", std::process::id())
}

/// How many statements with the text `sql` are prepared in the server session `client` is
/// on (inside a transaction, so that the answer is about one server connection).
fn prepared(client: &mut Client, sql: &str) -> u32 {
    let count = simple_value(
        client,
        &format!("SELECT count(*) FROM pg_prepared_statements WHERE statement = '{sql}'"),
    )
    .unwrap();
    count.unwrap().parse().unwrap()
}

// ---- What works in transaction mode --------------------------------------------------------

/// The work of one request that transaction mode serves: returns what went wrong, if anything.
fn request(conn: &mut Client, i: i32) -> Result<(), String> {
    let fail = |err: postgres::Error| chain(&err);
    // Simple queries: one exchange each.
    let one = simple_value(conn, "SELECT 1").map_err(fail)?;
    assert_eq!(one.as_deref(), Some("1"));
    conn.batch_execute("SELECT 1; SELECT 2").map_err(fail)?;
    // A typed query with parameters in one exchange: no named statement.
    let row = conn
        .query_typed_one("SELECT $1::int4 + 1", &[(&i, Type::INT4)])
        .map_err(fail)?;
    assert_eq!(row.get::<_, i32>(0), i + 1);
    // A transaction keeps its server connection: SET LOCAL holds inside it, and statements
    // prepared inside it work as long as they and their rows are gone before the commit.
    let mut tx = conn.transaction().map_err(fail)?;
    tx.batch_execute("SET LOCAL statement_timeout = '4321ms'")
        .map_err(fail)?;
    let timeout: String = tx
        .query_one("SHOW statement_timeout", &[])
        .map_err(fail)?
        .get(0);
    assert_eq!(timeout, "4321ms");
    let stmt = tx.prepare("SELECT $1::int4 * 2").map_err(fail)?;
    let doubled: i32 = tx.query_one(&stmt, &[&i]).map_err(fail)?.get(0);
    assert_eq!(doubled, i * 2);
    drop(stmt);
    tx.commit().map_err(fail)?;
    // SET LOCAL ended with the transaction, on whichever server connection it ran.
    let after = simple_value(conn, "SHOW statement_timeout").map_err(fail)?;
    assert_ne!(after.as_deref(), Some("4321ms"));
    Ok(())
}

#[test]
fn transaction_mode_serves_simple_typed_and_transactional_queries_from_several_instances() {
    let Some(_shared) = sharing("transaction_mode_serves_simple_typed_and_transactional_queries")
    else {
        return;
    };
    // Four application instances of four connections each (16 clients on PgBouncer's 4
    // server connections), each used by four threads.
    const INSTANCES: usize = 4;
    const THREADS: usize = 4;
    const REQUESTS: i32 = 25;
    let pools: Vec<_> = (0..INSTANCES)
        .map(|_| pool(TRANSACTION, "test", 4))
        .collect();
    let start = Arc::new(Barrier::new(INSTANCES * THREADS));
    let workers: Vec<_> = pools
        .iter()
        .flat_map(|pool| (0..THREADS).map(move |_| pool.clone()))
        .map(|pool| {
            let start = start.clone();
            thread::spawn(move || -> Vec<String> {
                start.wait();
                (0..REQUESTS)
                    .filter_map(|i| request(&mut pool.get().unwrap(), i).err())
                    .collect()
            })
        })
        .collect();
    let errors: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
}

// ---- The documented failures of transaction mode -------------------------------------------

#[test]
fn a_statement_prepared_before_is_missing_on_the_next_server_connection() {
    let Some(_shared) = sharing("a_statement_prepared_before_is_missing") else {
        return;
    };
    let _two = exclusive(&TWO_SERVERS);
    fresh_servers("two_servers");
    let pool = pool(TRANSACTION, "two_servers", 1);
    let mut conn = pool.get().unwrap();

    // Server connection 1 is held; the statement is prepared on 2.
    let first = Holder::begin("two_servers");
    let sql = unique_select();
    let stmt = conn.prepare(&sql).unwrap();
    // Connection 2 is held by someone else, whose session has the statement; 1 comes free.
    let mut second = Holder::begin("two_servers");
    assert_eq!(prepared(&mut second.0, &sql), 1, "prepared on the held one");
    first.commit();

    let err = conn
        .query(&stmt, &[])
        .expect_err("the statement's execution landed on the other server connection");
    let text = chain(&err);
    assert!(
        text.contains("prepared statement \"s") && text.contains("\" does not exist"),
        "{text}"
    );
    second.commit();
    drop(stmt);
    drop(conn);
    fresh_servers("two_servers");
}

/// Runs a transaction that prepares a statement, lets its rows live on past the commit
/// (`rows_outlive`) or not, and returns whether the statement stayed on the server connection
/// the transaction ran on.
fn statement_left_behind(rows_outlive: bool) -> bool {
    fresh_servers("two_servers");
    let pool = pool(TRANSACTION, "two_servers", 1);
    let mut conn = pool.get().unwrap();
    let first = Holder::begin("two_servers");
    // The transaction runs on server connection 2.
    let mut tx = conn.transaction().unwrap();
    let sql = unique_select();
    let stmt = tx.prepare(&sql).unwrap();
    let rows = tx.query(&stmt, &[]).unwrap();
    drop(stmt);
    let rows = if rows_outlive {
        Some(rows)
    } else {
        drop(rows);
        None
    };
    tx.commit().unwrap();
    // Connection 2 goes to someone else, 1 comes free; then the rows go, and the client's
    // next exchange carries the statement's Close, to connection 1.
    let mut second = Holder::begin("two_servers");
    first.commit();
    drop(rows);
    simple_value(&mut conn, "SELECT 1").unwrap();
    let count = prepared(&mut second.0, &sql);
    second.commit();
    drop(conn);
    fresh_servers("two_servers");
    count == 1
}

#[test]
fn rows_that_outlive_their_transaction_leave_its_statement_on_the_server() {
    let Some(_shared) = sharing("rows_that_outlive_their_transaction") else {
        return;
    };
    let _two = exclusive(&TWO_SERVERS);
    assert!(
        !statement_left_behind(false),
        "rows dropped inside the transaction: the statement is closed there"
    );
    assert!(
        statement_left_behind(true),
        "rows dropped after the commit: the Close goes to another server connection"
    );
}

#[test]
fn a_session_set_does_not_stick_and_reaches_other_clients() {
    let Some(_shared) = sharing("a_session_set_does_not_stick") else {
        return;
    };
    let _two = exclusive(&TWO_SERVERS);
    fresh_servers("two_servers");
    let pool = pool(TRANSACTION, "two_servers", 1);
    let mut conn = pool.get().unwrap();
    let marker = format!("run-{}", std::process::id());
    let first = Holder::begin("two_servers");
    // Runs on server connection 2. (A custom setting: PgBouncer itself carries a few
    // parameters, application_name among them, from server connection to server connection.)
    conn.batch_execute(&format!("SET sluicegate.marker = '{marker}'"))
        .unwrap();
    let mut second = Holder::begin("two_servers");
    first.commit();
    let read = "SELECT current_setting('sluicegate.marker', true)";
    let mine = simple_value(&mut conn, read).unwrap();
    assert_ne!(mine.as_deref(), Some(&*marker), "the SET did not stick");
    let theirs = simple_value(&mut second.0, read).unwrap();
    assert_eq!(theirs.as_deref(), Some(&*marker), "another client has it");
    second.commit();
    drop(conn);
    fresh_servers("two_servers");
}

/// The environment variable that tells the `instance` test which role to play.
const INSTANCE_ROLE: &str = "SLUICEGATE_PGB_INSTANCE";

/// A second application instance, in a process of its own (statement names are counted per
/// process, from `s0`): prepares `SELECT 1` through `one_server` and prints the outcome. With
/// role `keep`, it then exits at once, as a process with cached statements does when it is
/// stopped, so nothing closes the statement.
#[test]
#[ignore = "an application instance run by another_instance_meets_the_statements_left_behind"]
fn instance() {
    let Ok(role) = std::env::var(INSTANCE_ROLE) else {
        return;
    };
    let pool = pool(TRANSACTION, "one_server", 1);
    let mut conn = pool.get().unwrap();
    match conn.prepare("SELECT 1") {
        Ok(_) => {
            println!("PREPARED");
            if role == "keep" {
                std::process::exit(0);
            }
        }
        Err(err) => println!("FAILED {}", chain(&err)),
    }
}

/// Runs the `instance` test in a process of its own with `role`; returns its outcome line.
fn run_instance(role: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "instance", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(INSTANCE_ROLE, role)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The harness prints "test instance ... " before the test's own line.
    stdout
        .lines()
        .find_map(|line| {
            let at = line.find("PREPARED").or_else(|| line.find("FAILED"))?;
            Some(&line[at..])
        })
        .unwrap_or_else(|| {
            panic!(
                "no outcome from the instance: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .to_string()
}

#[test]
fn another_instance_meets_the_statements_left_behind() {
    let Some(_shared) = sharing("another_instance_meets_the_statements_left_behind") else {
        return;
    };
    let _one = exclusive(&ONE_SERVER);
    fresh_servers("one_server");
    assert_eq!(run_instance("keep"), "PREPARED");
    // Its first statement, like the first instance's, is named s0.
    let second = run_instance("prepare");
    assert!(
        second.starts_with("FAILED") && second.contains("prepared statement \"s0\" already exists"),
        "{second}"
    );
    fresh_servers("one_server");
}

// ---- Logins ----------------------------------------------------------------------------------

#[test]
fn a_login_pgbouncer_refuses_fails_at_once_with_its_reason() {
    let Some(_shared) = sharing("a_login_pgbouncer_refuses_fails_at_once") else {
        return;
    };
    capture_logs();
    let secret = "not-the-password-Zq8";
    let mut wrong = config(TRANSACTION, "test");
    wrong.user("sluicegate_auth").password(secret);
    let unknown = config(TRANSACTION, "no_such_database");
    for (name, config, reason) in [
        ("pgb-wrong-password", wrong, "SASL authentication failed"),
        ("pgb-unknown-database", unknown, "no such database"),
    ] {
        let debug = format!(
            "{:?}",
            PostgresConnectionManager::new(config.clone(), NoTls)
        );
        let started = Instant::now();
        let result = Pool::builder()
            .pool_name(name)
            .connection_timeout(Duration::from_secs(10))
            .build(PostgresConnectionManager::new(config, NoTls));
        let took = started.elapsed();
        eprintln!("{name}: failed after {took:?}");
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        check_wrong_password(result, started, reason, secret, &debug, name);
    }
    // And the right password gets in.
    let mut right = config(TRANSACTION, "test");
    right
        .user("sluicegate_auth")
        .password("sluicegate-auth-secret");
    let pool = Pool::builder()
        .max_size(1)
        .build(PostgresConnectionManager::new(right, NoTls))
        .unwrap();
    let user = simple_value(&mut pool.get().unwrap(), "SELECT current_user").unwrap();
    assert_eq!(user.as_deref(), Some("sluicegate_auth"));
}

#[test]
fn a_login_pgbouncer_holds_ends_at_the_pools_timeout_or_at_query_wait_timeout() {
    let Some(_shared) = sharing("a_login_pgbouncer_holds") else {
        return;
    };
    // PgBouncer cannot reach the server behind `unreachable`: it holds the login. (No
    // connect_timeout of the driver's own: it would cap the manager's budget.)
    let mut unreachable = pg_local(TRANSACTION);
    unreachable.dbname("unreachable");
    let manager = PostgresConnectionManager::new(unreachable, NoTls);
    // The pool gives up at its own timeout, without PgBouncer's reason.
    let started = Instant::now();
    let err = manager
        .connect_within(Duration::from_secs(2), &mut sluicegate::Extensions::new())
        .err()
        .expect("no server behind it");
    let took = started.elapsed();
    eprintln!("unreachable, 2 s budget: {took:?}: {err}");
    assert!(err.is_timeout(), "{err}");
    assert!(took < Duration::from_secs(2) + SOON, "{took:?}");
    // Given longer than PgBouncer's query_wait_timeout (5 s here), the login fails with
    // PgBouncer's reason.
    let started = Instant::now();
    let err = manager
        .connect_within(Duration::from_secs(30), &mut sluicegate::Extensions::new())
        .err()
        .expect("no server behind it");
    let took = started.elapsed();
    let text = chain(&err);
    eprintln!("unreachable, 30 s budget: {took:?}: {text}");
    assert!(!err.is_timeout(), "{text}");
    // (Or, within server_login_retry of PgBouncer's last failed try, its refusal.)
    assert!(
        text.contains("query_wait_timeout") || text.contains("server login has been failing"),
        "{text}"
    );
    assert!(!manager.is_permanent(&err), "PgBouncer's passing trouble");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

// ---- Session mode ----------------------------------------------------------------------------

#[test]
fn session_mode_keeps_a_session_within_a_pooled_connection() {
    let Some(_shared) = sharing("session_mode_keeps_a_session") else {
        return;
    };
    let pool = pool(SESSION, "test", 1);
    let marker = format!("session-{}", std::process::id());
    let stmt = {
        let mut conn = pool.get().unwrap();
        conn.batch_execute(&format!("SET sluicegate.marker = '{marker}'"))
            .unwrap();
        conn.prepare("SELECT current_setting('sluicegate.marker', true)")
            .unwrap()
    };
    for _ in 0..20 {
        let mut conn = pool.get().unwrap();
        let value: Option<String> = conn.query_one(&stmt, &[]).unwrap().get(0);
        assert_eq!(value.as_deref(), Some(&*marker));
    }
}

#[test]
fn session_mode_serves_no_more_pooled_connections_than_pgbouncers_pool() {
    let Some(_shared) = sharing("session_mode_serves_no_more_pooled_connections") else {
        return;
    };
    // Two instances of 3 connections, as user `root` (PgBouncer's pools are per database and
    // user: this test has root's to itself), against PgBouncer's pool of 4: 6 clients, of
    // which 2 get no server connection until another client leaves.
    let mut root = config(SESSION, "test");
    root.user("root");
    let pools: Vec<_> = (0..2)
        .map(|_| {
            Pool::builder()
                .max_size(3)
                .connection_timeout(SOON)
                .error_handler(Box::new(sluicegate::NopErrorHandler))
                .build(PostgresConnectionManager::new(root.clone(), NoTls))
                .unwrap()
        })
        .collect();
    let done = Arc::new(Barrier::new(6));
    let clients: Vec<_> = pools
        .iter()
        .flat_map(|pool| (0..3).map(move |_| pool.clone()))
        .map(|pool| {
            let done = done.clone();
            thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                let outcome = conn
                    .query_typed_one("SELECT pg_backend_pid()", &[])
                    .map(|row| row.get::<_, i32>(0))
                    .map_err(|err| chain(&err));
                // Hold the server connection until every client has its answer.
                done.wait();
                outcome
            })
        })
        .collect();
    let outcomes: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(served, 4, "{outcomes:?}");
    // PgBouncer closes them at its query_wait_timeout (its log says so); the driver reports
    // the closed connection, or PgBouncer's message when it read it first.
    assert!(
        refused
            .iter()
            .all(|e| e.contains("query_wait_timeout") || e.contains("connection closed")),
        "{refused:?}"
    );
}

// ---- PgBouncer disturbed: RECONNECT, PAUSE, KILL, restart ------------------------------------

/// A test that disturbs PgBouncer: it runs alone, and only where server faults are allowed.
fn disturbing(test: &str) -> Option<std::sync::RwLockWriteGuard<'static, ()>> {
    if !common::server_faults_allowed(test) {
        return None;
    }
    let guard = PGBOUNCER.write().unwrap_or_else(PoisonError::into_inner);
    reachable(test).then_some(guard)
}

/// Resumes database `test` on the transaction-mode PgBouncer when dropped, whatever happened.
struct ResumeOnDrop;

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        if let Ok(mut admin) = admin(TRANSACTION) {
            // An error only says it was not paused.
            let _ = admin.simple_query("RESUME test");
        }
    }
}

/// Several instances under load: each thread runs typed queries until told to stop, counting
/// successes and failures.
struct Load {
    pools: Vec<Pool<PostgresConnectionManager<NoTls>>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// The first failures' messages.
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let pools: Vec<_> = (0..4)
            .map(|_| {
                Pool::builder()
                    .max_size(3)
                    .connection_timeout(Duration::from_secs(1))
                    .error_handler(Box::new(sluicegate::NopErrorHandler))
                    .build(PostgresConnectionManager::new(
                        config(TRANSACTION, "test"),
                        NoTls,
                    ))
                    .unwrap()
            })
            .collect();
        let (stop, ok, failed, errors) = Default::default();
        let mut load = Load {
            pools,
            stop,
            ok,
            failed,
            errors,
            threads: Vec::new(),
        };
        for pool in &load.pools {
            for _ in 0..3 {
                let (pool, stop) = (pool.clone(), load.stop.clone());
                let (ok, failed) = (load.ok.clone(), load.failed.clone());
                let errors = load.errors.clone();
                load.threads.push(thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let outcome = match pool.get() {
                            Ok(mut conn) => conn
                                .query_typed_one("SELECT 1", &[])
                                .map(|_| ())
                                .map_err(|err| chain(&err)),
                            Err(err) => Err(err.to_string()),
                        };
                        let count = if outcome.is_ok() { &ok } else { &failed };
                        count.fetch_add(1, Ordering::SeqCst);
                        if let Err(err) = outcome {
                            let mut errors = exclusive_vec(&errors);
                            if errors.len() < 5 {
                                errors.push(err);
                            }
                            drop(errors);
                            // Failures come fast (refused logins): do not spin on them.
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                }));
            }
        }
        load
    }

    /// Waits until `n` more requests succeeded.
    fn serves(&self, n: u64, within: Duration) -> bool {
        let target = self.ok.load(Ordering::SeqCst) + n;
        common::eventually(within, || self.ok.load(Ordering::SeqCst) >= target)
    }

    /// Polls until every instance hands out all its connections at once and each answers,
    /// returning how long that took.
    fn recovered(&self, within: Duration) -> Duration {
        let started = Instant::now();
        let healthy = common::eventually(within, || {
            self.pools.iter().all(|pool| {
                let conns: Vec<_> = (0..3).filter_map(|_| pool.get().ok()).collect();
                conns.len() == 3
                    && conns
                        .into_iter()
                        .all(|mut conn| conn.query_typed_one("SELECT 1", &[]).is_ok())
            })
        });
        assert!(healthy, "the instances did not recover within {within:?}");
        started.elapsed()
    }

    /// Stops the threads; returns the successes and failures counted, and the first
    /// failures' messages.
    fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let errors = exclusive_vec(&self.errors).clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

fn exclusive_vec(errors: &Mutex<Vec<String>>) -> MutexGuard<'_, Vec<String>> {
    errors.lock().unwrap_or_else(PoisonError::into_inner)
}

/// RECONNECT is not seamless under load (PgBouncer 1.18): a server connection it closes while
/// that connection is still logging in counts as a failed login, so the clients waiting for
/// a server connection at that moment are disconnected ("server login has been failing, try
/// again later (server_login_retry)", which the driver may report as "connection closed"),
/// and new ones are refused or held for `server_login_retry` (1 s here, 15 s by default).
/// The instances get over it on their own.
#[test]
fn the_instances_recover_from_reconnect() {
    let Some(_alone) = disturbing("the_instances_recover_from_reconnect") else {
        return;
    };
    let load = Load::start();
    assert!(load.serves(100, SOON));
    let before = servers(TRANSACTION, "test");
    assert!(!before.is_empty());
    let started = Instant::now();
    admin(TRANSACTION)
        .unwrap()
        .simple_query("RECONNECT test")
        .unwrap();
    let replaced = common::eventually(Duration::from_secs(30), || {
        !servers(TRANSACTION, "test")
            .iter()
            .any(|pid| before.contains(pid))
    });
    assert!(replaced, "old server connections still there");
    eprintln!(
        "RECONNECT: all server connections replaced after {:?}",
        started.elapsed()
    );
    load.recovered(Duration::from_secs(60));
    eprintln!(
        "RECONNECT: every instance served again {:?} after RECONNECT",
        started.elapsed()
    );
    assert!(load.serves(100, SOON));
    let (ok, failed, errors) = load.stop();
    eprintln!("RECONNECT: {ok} requests served, {failed} failed, first: {errors:?}");
}

#[test]
fn a_paused_pgbouncer_holds_queries_past_the_pools_timeout() {
    let Some(_alone) = disturbing("a_paused_pgbouncer_holds_queries") else {
        return;
    };
    let _resume = ResumeOnDrop;
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(1))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(PostgresConnectionManager::new(
            config(TRANSACTION, "test"),
            NoTls,
        ))
        .unwrap();
    let mut conn = pool.get().unwrap();
    admin(TRANSACTION)
        .unwrap()
        .simple_query("PAUSE test")
        .unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let started = Instant::now();
    let query = thread::spawn(move || {
        let outcome = conn
            .query_typed_one("SELECT 1", &[])
            .map(|_| ())
            .map_err(|err| chain(&err));
        let _ = tx.send((outcome, started.elapsed()));
    });
    // Twice the pool's timeout, and the query still waits on PgBouncer.
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a query answered while PgBouncer was paused"
    );
    // PgBouncer's query_wait_timeout (5 s here) ends it: PgBouncer closes the client (its
    // log says why), and the driver reports the closed connection, or PgBouncer's message
    // when it read it first.
    let (outcome, took) = rx.recv_timeout(Duration::from_secs(5) + SOON).unwrap();
    eprintln!("PAUSE: the query ended after {took:?}: {outcome:?}");
    let err = outcome.expect_err("paused");
    assert!(
        err.contains("query_wait_timeout") || err.contains("connection closed"),
        "{err}"
    );
    query.join().unwrap();
    admin(TRANSACTION)
        .unwrap()
        .simple_query("RESUME test")
        .unwrap();
    let started = Instant::now();
    let mut conn = pool.get_timeout(SOON).unwrap();
    conn.query_typed_one("SELECT 1", &[]).unwrap();
    eprintln!("PAUSE: served again {:?} after RESUME", started.elapsed());
}

#[test]
fn the_instances_recover_from_kill_once_the_database_is_resumed() {
    let Some(_alone) = disturbing("the_instances_recover_from_kill") else {
        return;
    };
    let _resume = ResumeOnDrop;
    let load = Load::start();
    assert!(load.serves(100, SOON));
    admin(TRANSACTION)
        .unwrap()
        .simple_query("KILL test")
        .unwrap();
    // KILL also pauses the database: a new login waits (here until query_wait_timeout).
    let mut admin_client = admin(TRANSACTION).unwrap();
    let paused = rows(&mut admin_client, "SHOW DATABASES")
        .iter()
        .find(|row| field(row, "name") == Some("test"))
        .and_then(|row| field(row, "paused").map(str::to_string));
    assert_eq!(paused.as_deref(), Some("1"), "KILL pauses the database");
    let failed_before = load.failed.load(Ordering::SeqCst);
    assert!(
        common::eventually(SOON, || load.failed.load(Ordering::SeqCst) > failed_before),
        "requests fail while the database is killed"
    );
    admin_client.simple_query("RESUME test").unwrap();
    let took = load.recovered(Duration::from_secs(60));
    eprintln!("KILL: every instance served again {took:?} after RESUME");
    assert!(load.serves(100, SOON));
    let (ok, failed, errors) = load.stop();
    eprintln!("KILL: {ok} requests served, {failed} failed, first: {errors:?}");
}

/// `scripts/services.sh stop|start pgbouncer`; whether it worked.
fn services(action: &str) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    Command::new("bash")
        .args([script, action, "pgbouncer"])
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts PgBouncer again when dropped, whatever happened.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        if !services("start") {
            eprintln!("could not start PgBouncer again: run scripts/services.sh");
        }
    }
}

#[test]
fn the_instances_recover_from_a_pgbouncer_restart() {
    let Some(_alone) = disturbing("the_instances_recover_from_a_pgbouncer_restart") else {
        return;
    };
    let load = Load::start();
    assert!(load.serves(100, SOON));
    let restart = StartOnDrop;
    if !services("stop") {
        skip(
            "the_instances_recover_from_a_pgbouncer_restart",
            "scripts/services.sh cannot stop PgBouncer",
            "run as root on a machine that script manages",
        );
        return;
    }
    let failed_before = load.failed.load(Ordering::SeqCst);
    assert!(
        common::eventually(SOON, || load.failed.load(Ordering::SeqCst) > failed_before),
        "requests fail while PgBouncer is down"
    );
    // A check-out fails within the pool's timeout, saying why.
    let started = Instant::now();
    let err = load.pools[0]
        .get_timeout(Duration::from_secs(1))
        .err()
        .expect("PgBouncer is down");
    assert!(started.elapsed() < Duration::from_secs(1) + SOON);
    assert!(err.to_string().contains("refused"), "{err}");
    drop(restart);
    let took = load.recovered(Duration::from_secs(60));
    eprintln!("restart: every instance served again {took:?} after the start returned");
    assert!(load.serves(100, SOON));
    let (ok, failed, errors) = load.stop();
    eprintln!("restart: {ok} requests served, {failed} failed, first: {errors:?}");
}
