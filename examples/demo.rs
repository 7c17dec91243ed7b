//! sluicegate in a minute, with no database server to set up.
//!
//! A thread-per-request workload (every request runs on a thread of its own, as in a simple
//! blocking server; 16 at a time), each request reading one row by key, is run twice against
//! the same database: first opening a new connection for each request, as code without a pool
//! does, then borrowing one from a sluicegate pool. The demo prints throughput and latency side by
//! side, the pool's metrics, and then a leaked connection as leak detection reports it: which
//! connection, for how long, on which thread, and the line that borrowed it.
//!
//! With no arguments it runs on SQLite, in a file in a fresh temporary directory that it
//! removes at the end:
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! Against a server, with that driver's feature (it creates a table `sluicegate_demo`, replacing one
//! an interrupted run left, and drops it at the end):
//!
//! ```sh
//! cargo run --release --features postgres --example demo -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --features mysql --example demo -- \
//!     --database-url mysql://root@127.0.0.1:3306/test
//! ```
//!
//! `--seconds N` sets how long each run lasts (3 by default).

use std::error::Error as StdError;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use sluicegate::sqlite::SqliteConnectionManager;
use sluicegate::{Leak, ManageConnection, Metrics, Pool, PooledConnection};

type Error = Box<dyn StdError + Send + Sync>;

/// `println!` that shrugs off a reader going away (`demo | head`): the demo then finishes its
/// run and cleans up instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Requests in flight at once, each on its own thread.
const IN_FLIGHT: usize = 16;
/// Fewer connections than requests in flight: a pool is sized to what the database does well,
/// not to the number of threads; the other requests wait their turn, first come, first served.
const POOL_SIZE: u32 = 8;
/// An unreachable server should fail the demo in seconds, not after the default 30.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// The table the requests read, and its size.
const TABLE: &str = "sluicegate_demo";
const ROWS: i64 = 1000;

const USAGE: &str = "\
Runs a thread-per-request workload without a pool, then through a sluicegate pool, and shows a leak.

usage: cargo run --release --example demo -- [--seconds N] [--database-url URL]

  --seconds N           how long each run lasts (default 3)
  --database-url URL    postgres://user[:password]@host:port/db (needs --features postgres)
                        or mysql://user[:password]@host:port/db (needs --features mysql);
                        without it the demo uses SQLite in a temporary directory
  -h, --help            this text";

fn main() -> ExitCode {
    let outcome = parse_args(std::env::args().skip(1)).and_then(|command| match command {
        Command::Help => {
            say!("{USAGE}");
            Ok(())
        }
        Command::Run(options) => run(&options),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the cause: the error is the whole answer, not a crash.
            eprintln!("demo: {}", error.to_string().replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

enum Command {
    Help,
    Run(Options),
}

struct Options {
    seconds: Duration,
    database_url: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, Error> {
    let mut options = Options {
        seconds: Duration::from_secs(3),
        database_url: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--seconds" => options.seconds = parse_seconds(&value()?)?,
            "--database-url" => options.database_url = Some(value()?),
            // Only the flag's name is echoed: the rest could be a URL with a password in it.
            _ if flag.starts_with('-') => {
                return Err(format!("unknown option {flag} (see --help)").into());
            }
            _ => return Err("unexpected argument: options start with -- (see --help)".into()),
        }
    }
    Ok(Command::Run(options))
}

fn parse_seconds(text: &str) -> Result<Duration, Error> {
    text.parse::<f64>()
        .ok()
        .filter(|seconds| *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("--seconds wants a positive number, got {text:?}").into())
}

fn run(options: &Options) -> Result<(), Error> {
    let seconds = options.seconds;
    let Some(url) = &options.database_url else {
        return run_sqlite(seconds);
    };
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => run_postgres(url, seconds),
        Some("mysql") => run_mysql(url, seconds),
        // Echoed only when it is a plain word: a malformed URL could hold a password anywhere.
        Some(scheme) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => Err(format!(
            "unsupported database URL scheme {scheme:?}: use postgres:// or mysql://"
        )
        .into()),
        _ => Err(
            "malformed database URL: expected postgres://user@host:port/db or mysql://...".into(),
        ),
    }
}

/// What the workload needs from a database beyond its manager: the two calls whose API differs
/// between drivers. Its errors must be `Send` and `Sync` to travel back from request threads.
trait Database: ManageConnection<Error: Send + Sync> {
    /// Runs one statement that returns no rows.
    fn execute(conn: &mut Self::Connection, sql: &str) -> Result<(), Error>;

    /// A request's query: the name and balance of account `id`.
    fn account(conn: &mut Self::Connection, id: i64) -> Result<(String, i64), Error>;
}

impl Database for SqliteConnectionManager {
    fn execute(conn: &mut rusqlite::Connection, sql: &str) -> Result<(), Error> {
        Ok(conn.execute_batch(sql)?)
    }

    fn account(conn: &mut rusqlite::Connection, id: i64) -> Result<(String, i64), Error> {
        // Cached per connection: a pooled connection prepares the statement once, a new
        // connection every time, which is part of what a pool saves.
        let mut query =
            conn.prepare_cached(&format!("SELECT name, balance FROM {TABLE} WHERE id = ?1"))?;
        Ok(query.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))?)
    }
}

fn run_sqlite(seconds: Duration) -> Result<(), Error> {
    // Named by process and clock, so that demos side by side, or a rerun, never share a file.
    let nanos = SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(0, |since| since.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("sluicegate-demo-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("demo.db");
    let manager = || {
        // WAL, as an application with concurrent readers and a writer would set it.
        SqliteConnectionManager::file(&path)
            .with_init(|conn| conn.execute_batch("PRAGMA journal_mode = WAL"))
    };
    let outcome = demo(
        &format!("SQLite, file {}", path.display()),
        manager,
        seconds,
    );
    // The pools are gone by now, and with them every connection to the file.
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

#[cfg(feature = "postgres")]
impl Database for sluicegate::postgres::PostgresConnectionManager<postgres::NoTls> {
    fn execute(conn: &mut postgres::Client, sql: &str) -> Result<(), Error> {
        Ok(conn.batch_execute(sql)?)
    }

    fn account(conn: &mut postgres::Client, id: i64) -> Result<(String, i64), Error> {
        let row = conn.query_one(
            &format!("SELECT name, balance FROM {TABLE} WHERE id = $1"),
            &[&id],
        )?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}

#[cfg(feature = "postgres")]
fn run_postgres(url: &str, seconds: Duration) -> Result<(), Error> {
    use std::str::FromStr;

    use sluicegate::postgres::PostgresConnectionManager;

    // The parser's own message is generic; its source names the option at fault.
    let config = postgres::Config::from_str(url).map_err(|e| {
        let why = e
            .source()
            .map_or_else(|| e.to_string(), ToString::to_string);
        format!("malformed PostgreSQL URL: {why}")
    })?;
    // Described from the parsed config, never from the URL: that may hold a password.
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let place = format!(
        "PostgreSQL at {host}:{}, database {}, user {}",
        config.get_ports().first().unwrap_or(&5432),
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)"),
    );
    let manager = || PostgresConnectionManager::new(config.clone(), postgres::NoTls);
    demo(&place, manager, seconds)
}

#[cfg(not(feature = "postgres"))]
fn run_postgres(_url: &str, _seconds: Duration) -> Result<(), Error> {
    Err("a postgres:// URL needs the PostgreSQL driver: add `--features postgres` to the cargo command".into())
}

#[cfg(feature = "mysql")]
impl Database for sluicegate::mysql::MysqlConnectionManager {
    fn execute(conn: &mut mysql::Conn, sql: &str) -> Result<(), Error> {
        use mysql::prelude::Queryable;
        Ok(conn.query_drop(sql)?)
    }

    fn account(conn: &mut mysql::Conn, id: i64) -> Result<(String, i64), Error> {
        use mysql::prelude::Queryable;
        let query = format!("SELECT name, balance FROM {TABLE} WHERE id = ?");
        conn.exec_first(query, (id,))?
            .ok_or_else(|| format!("no account {id}").into())
    }
}

#[cfg(feature = "mysql")]
fn run_mysql(url: &str, seconds: Duration) -> Result<(), Error> {
    use sluicegate::mysql::MysqlConnectionManager;

    let opts = mysql::Opts::from_url(url).map_err(|e| format!("malformed MySQL URL: {e}"))?;
    // Described from the parsed options, never from the URL: that may hold a password.
    let place = format!(
        "MySQL at {}:{}, database {}, user {}",
        opts.get_ip_or_hostname(),
        opts.get_tcp_port(),
        opts.get_db_name().unwrap_or("(none)"),
        opts.get_user().unwrap_or("(default)"),
    );
    let manager = || MysqlConnectionManager::new(mysql::OptsBuilder::from_opts(opts.clone()));
    demo(&place, manager, seconds)
}

#[cfg(not(feature = "mysql"))]
fn run_mysql(_url: &str, _seconds: Duration) -> Result<(), Error> {
    Err("a mysql:// URL needs the MySQL driver: add `--features mysql` to the cargo command".into())
}

/// The whole demo, on any database: set up, the two runs, metrics, the leak, clean up.
fn demo<M: Database>(place: &str, manager: impl Fn() -> M, seconds: Duration) -> Result<(), Error> {
    // Building the pool is also the check that the database is there: sluicegate's error says why
    // not (refused, wrong password, unknown database).
    let pool = Pool::builder()
        .pool_name("demo")
        .max_size(POOL_SIZE)
        .connection_timeout(CONNECTION_TIMEOUT)
        .build(manager())
        .map_err(|e| format!("{place}: {e}"))?;
    create_table::<M>(&mut *pool.get()?)?;
    say!("database: {place}");
    say!(
        "workload: thread-per-request, {IN_FLIGHT} requests in flight, each reading one row by \
         key; {:.1} s per run\n",
        seconds.as_secs_f64()
    );

    let without_pool = {
        let manager = manager();
        measure("new connection per request", seconds, move |id| {
            // Open, query, close: what code without a pool does for every request.
            let mut conn = manager.connect()?;
            M::account(&mut conn, id).map(drop)
        })?
    };
    let with_pool = {
        let pool = pool.clone();
        measure("sluicegate pool", seconds, move |id| {
            let mut conn = pool.get()?;
            M::account(&mut conn, id).map(drop)
        })?
    };
    print_comparison(&without_pool, &with_pool);
    print_metrics(pool.name(), &pool.metrics());

    show_leak(manager())?;
    M::execute(&mut *pool.get()?, &format!("DROP TABLE {TABLE}"))
}

fn create_table<M: Database>(conn: &mut M::Connection) -> Result<(), Error> {
    // What an interrupted run left would make CREATE fail.
    M::execute(conn, &format!("DROP TABLE IF EXISTS {TABLE}"))?;
    // Types that all three databases accept, so that one statement serves them all.
    M::execute(
        conn,
        &format!(
            "CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, \
             balance BIGINT NOT NULL)"
        ),
    )?;
    let rows: Vec<String> = (1..=ROWS)
        .map(|id| format!("({id}, 'account {id}', {})", id * 10))
        .collect();
    M::execute(
        conn,
        &format!("INSERT INTO {TABLE} VALUES {}", rows.join(", ")),
    )
}

/// What one run measured.
struct Run {
    elapsed: Duration,
    /// Each request's time, from its arrival (before its thread is spawned) to its answer; sorted.
    latencies: Vec<Duration>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The nearest-rank percentile `p` (0 to 100).
    fn percentile(&self, p: f64) -> Duration {
        let rank = (p / 100.0 * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

/// Serves requests for `length`, each on a new thread, at most `IN_FLIGHT` at once.
fn measure(
    label: &str,
    length: Duration,
    request: impl Fn(i64) -> Result<(), Error> + Send + Sync + 'static,
) -> Result<Run, Error> {
    let request = Arc::new(request);
    let bar = progress_bar(label, length)?;
    // Each request thread reports here when done, which also frees its place in flight.
    let (done_tx, done_rx) = mpsc::channel::<Result<Duration, Error>>();
    let mut latencies = Vec::new();
    let mut started = 0;
    let start = Instant::now();
    while start.elapsed() < length {
        if started - latencies.len() == IN_FLIGHT {
            latencies.push(done_rx.recv()??);
            bar.set_position(start.elapsed().as_millis() as u64);
            bar.set_message(format!("{} requests", latencies.len()));
        }
        let arrived = Instant::now();
        let id = started as i64 % ROWS + 1;
        let (request, done_tx) = (request.clone(), done_tx.clone());
        thread::Builder::new().spawn(move || {
            let answer = request(id).map(|()| arrived.elapsed());
            // The receiver is gone only if the run already failed.
            let _ = done_tx.send(answer);
        })?;
        started += 1;
    }
    while latencies.len() < started {
        latencies.push(done_rx.recv()??);
    }
    let elapsed = start.elapsed();
    bar.set_position(length.as_millis() as u64);
    bar.finish_with_message(format!("{} requests", latencies.len()));
    latencies.sort_unstable();
    Ok(Run { elapsed, latencies })
}

fn progress_bar(label: &str, length: Duration) -> Result<ProgressBar, Error> {
    // Measured in milliseconds of the run; indicatif hides it when stderr is not a terminal.
    let bar = ProgressBar::new(length.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:<28} [{bar:30}] {msg}")?.progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    Ok(bar)
}

fn print_comparison(without_pool: &Run, with_pool: &Run) {
    let pooled = format!("sluicegate, {POOL_SIZE} conns");
    say!("{:<14}{:>18}{pooled:>18}   the pool is", "", "no pool");
    let (slow, fast) = (without_pool.latencies.len(), with_pool.latencies.len());
    say!("requests      {slow:>18}{fast:>18}");
    let (slow, fast) = (without_pool.per_second(), with_pool.per_second());
    let ratio = times(fast / slow);
    say!("requests/s    {slow:>18.0}{fast:>18.0}   {ratio}");
    for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)] {
        let (slow, fast) = (without_pool.percentile(p), with_pool.percentile(p));
        let ratio = times(slow.as_secs_f64() / fast.as_secs_f64());
        let (slow, fast) = (millis(slow), millis(fast));
        say!("latency {name:<6}{slow:>18}{fast:>18}   {ratio}");
    }
}

/// How many times faster the pool is (or slower: a noisy machine can make it so for `max`).
fn times(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.1}x faster")
    } else {
        format!("{:.1}x slower", 1.0 / ratio)
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn print_metrics(pool: &str, m: &Metrics) {
    let mean_wait = Duration::from_secs_f64(m.wait_time.as_secs_f64() / m.waited.max(1) as f64);
    say!("\npool {pool:?}, pool.metrics() after the run:");
    say!(
        "  connections  {} open of {}: {} idle, {} in use; {} threads waiting",
        m.connections,
        m.max_size,
        m.idle,
        m.in_use,
        m.waiting
    );
    say!(
        "  check-outs   {}, of which {} waited for a connection ({} on average); {} timed out",
        m.checkouts,
        m.waited,
        millis(mean_wait),
        m.timeouts
    );
    say!(
        "  lifetime     {} connections opened, {} failed to open, {} closed",
        m.created,
        m.connect_failures,
        m.closed()
    );
}

/// An application's shared state, with a bug: a handler keeps its connection "for next time",
/// so it never goes back to the pool.
struct AppState<M: ManageConnection> {
    pool: Pool<M>,
    cached: Mutex<Option<PooledConnection<M>>>,
}

/// The handler with the leak. Not inlined, so that a release build still has a frame for leak
/// detection to name.
#[inline(never)]
fn handle_account_request<M: Database>(state: &AppState<M>, id: i64) -> Result<String, Error> {
    let mut conn = state.pool.get()?;
    let (name, balance) = M::account(&mut conn, id)?;
    *state.cached.lock() = Some(conn);
    Ok(format!("{name}: {balance}"))
}

fn show_leak<M: Database>(manager: M) -> Result<(), Error> {
    // Far shorter than a service would use (a minute, say), to catch the leak in the demo.
    let threshold = Duration::from_millis(200);
    let pool = Pool::builder()
        .pool_name("demo-leaky")
        .max_size(2)
        .connection_timeout(CONNECTION_TIMEOUT)
        .leak_detection_threshold(Some(threshold))
        .build(manager)?;
    let state = Arc::new(AppState {
        pool: pool.clone(),
        cached: Mutex::new(None),
    });
    let handler_state = state.clone();
    thread::Builder::new()
        .name("request-1".to_owned())
        .spawn(move || handle_account_request(&handler_state, 1))?
        .join()
        .map_err(|_| "the request thread panicked")??;

    // The request is over and its thread gone, but the connection is still out.
    let leak = wait_for_leak(&pool, threshold * 10)?;
    let borrower = leak
        .backtrace()
        .borrower()
        .and_then(|frame| frame.function());
    say!(
        "\nleak detection (threshold {} ms) caught it; pool.leaks() reports:\n  \
         connection   {} of pool {:?}\n  \
         held for     {}\n  \
         by thread    {}\n  \
         borrowed at  {}, in {}\n\
         (a Leak's Display adds the whole backtrace; the pool also logs it once, at warn)",
        threshold.as_millis(),
        leak.connection_id(),
        leak.pool(),
        millis(leak.held_for()),
        leak.thread_name().unwrap_or("(unnamed)"),
        leak.location(),
        borrower.unwrap_or("(a binary without symbols)"),
    );
    drop(state.cached.lock().take());
    say!("once the cache gives it back: {} leaks", pool.leaks().len());
    Ok(())
}

/// Asks the pool until it reports a leak, for at most `patience`.
fn wait_for_leak<M: ManageConnection>(pool: &Pool<M>, patience: Duration) -> Result<Leak, Error> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(leak) = pool.leaks().into_iter().next() {
            return Ok(leak);
        }
        if Instant::now() >= deadline {
            return Err(format!("leak detection found nothing within {}", millis(patience)).into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}
