//! A soak run against PostgreSQL: minutes of load through a sluicegate pool while its server
//! sessions are killed and frozen, printing errors, recoveries, throughput over time and the
//! process's resident memory.
//!
//! `--threads` threads loop on a pool of `--max-size` connections: check out, run a short query
//! (`SELECT 1`, and every other time a sum over `generate_series(1, 1000)`), give the
//! connection back. Meanwhile, from a connection of its own (a plain `postgres::Client`, not
//! one of the pool's), the soak injects two faults into the pool's server sessions, which it
//! finds in `pg_stat_activity` by the pool's own `application_name` (`sluicegate-soak-<pid>`):
//!
//! - **kill**: every `--kill-every` seconds it ends each of them with `pg_terminate_backend()`,
//!   and waits (up to 2 s) until they are gone;
//! - **stop**: every `--stop-every` seconds it freezes each of their server processes with
//!   `SIGSTOP` for `--stop-for` seconds, then resumes them with `SIGCONT`: a server that stops
//!   answering without closing anything, as in a long stall or a network partition.
//!
//! Every `--interval` seconds it prints check-outs per second; the time `get()` took (p50, p99
//! and max, failed check-outs included; percentiles are within 12%); failed check-outs by kind
//! (timeout, closed, ...); failed queries by kind, with a sample message of each kind; the
//! faults injected; the recovery from each fault (from its end, the kill done or the SIGCONT
//! sent, to the first successful query of a check-out that began after it); the resident memory
//! (VmRSS); and the pool's metrics. It ends with a summary: totals, the worst recovery, the
//! error rate, and the resident memory at the start, after the first interval, at the end and
//! at its peak, to show whether anything leaks. Read the memory from the first interval on
//! (threads and connections are set up by then), and over a long run: resident memory also
//! holds what the allocator keeps after it is freed, so it can creep up by some hundreds of
//! KiB as connections are replaced while the heap in use stays flat; a leak is growth that
//! does not level off.
//!
//! ```sh
//! cargo run --release --features postgres --example soak -- --duration 600
//! ```
//!
//! Options (seconds may have decimals):
//!
//! - `--duration S` how long the load runs (600)
//! - `--threads N` threads checking out connections (16)
//! - `--max-size N` the pool's `max_size` (8)
//! - `--database-url URL` a `postgres://` URL or `key=value` settings
//!   (`host=127.0.0.1 user=postgres dbname=test`)
//! - `--interval S` seconds between reports (10)
//! - `--kill-every S` seconds between kills (15; 0 turns kills off)
//! - `--stop-every S` seconds between stops (45; 0 turns stops off)
//! - `--stop-for S` how long each stop lasts (3)
//!
//! **It signals PostgreSQL server processes: run it only on a machine whose database is a test
//! one.** The stops need the server on this machine, and the soak running as root or as the OS
//! user that owns the server's processes (usually `postgres`); it checks both before the load
//! starts, and says so (pass `--stop-every 0` to run without stops). The kills need the pool's
//! role to be allowed to end its own sessions, which it always is. The soak only ever touches
//! its own pool's backends: those with its `application_name`, never its own admin connection,
//! and only processes that `/proc` shows as a PostgreSQL backend serving that session's client
//! port (Linux). A stop freezes whatever the backend was doing, and anything that waits for
//! the backend waits with it (a server shutdown or restart, for one, waits for every backend
//! to exit), so keep `--stop-for` short (a few seconds) on a server others use too.
//!
//! A stopped backend is always resumed. The stopped pids live in a guard that sends `SIGCONT`
//! when it is dropped: at the end of the stop, on an early exit or a panic. Ctrl-C (or a
//! `kill -9`, or Ctrl-Z) ends or freezes the soak without running destructors, and catching
//! Ctrl-C would take a signal-handling dependency the project does not have; so each stop also
//! starts a small shell watchdog (`sh`, `timeout`, `cat`, `kill`) in a process group of its own
//! (Ctrl-C does not reach it), which sends the `SIGCONT` itself as soon as the soak exits (it
//! reads a pipe from the soak, which closes when the soak exits, however it exits), or
//! `--stop-for` plus 2 s after the stop at the latest (the bound for Ctrl-Z, which leaves the
//! pipe open). With Ctrl-C the soak prints no summary.
//!
//! The soak itself never hangs: every wait is bounded (check-outs by the pool's 2 s
//! `connection_timeout`, connects by a 5 s timeout, the admin connection's statements by a 5 s
//! `statement_timeout`, a query on a frozen backend by the stop's length). At the end it stops
//! the faults, closes the pool and waits at most 15 s for its threads; a thread still out then
//! is reported, and the soak exits with status 1.

use std::collections::{BTreeMap, HashSet};
use std::error::Error as StdError;
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::{Client, Config, NoTls};
use sluicegate::postgres::PostgresConnectionManager;
use sluicegate::{HandleError, Metrics, Pool, PooledConnection};

type BoxError = Box<dyn StdError + Send + Sync>;
type PgPool = Pool<PostgresConnectionManager<NoTls>>;

/// `println!` that shrugs off a reader going away (`soak | head`): the soak then finishes its
/// run, resuming and closing what it must, instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const USAGE: &str = "\
Load through a sluicegate pool on PostgreSQL, with its server sessions killed and frozen now and then.

usage: cargo run --release --features postgres --example soak -- [options]

  --duration S          how long the load runs, in seconds (default 600)
  --threads N           threads checking out connections (default 16)
  --max-size N          the pool's max_size (default 8)
  --database-url URL    postgres://user[:password]@host:port/db, or key=value settings
                        (default \"host=127.0.0.1 user=postgres dbname=test\")
  --interval S          seconds between reports (default 10)
  --kill-every S        pg_terminate_backend() the pool's sessions this often (default 15; 0: never)
  --stop-every S        SIGSTOP the pool's server processes this often (default 45; 0: never)
  --stop-for S          for this long, then SIGCONT (default 3)
  -h, --help            this text

It signals PostgreSQL server processes: run it on a test machine, as root or as the OS user
that owns the server's processes.";

/// The pool's `connection_timeout`: how long a check-out may wait.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// The socket-level connect timeout, for the pool's connections and the admin connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The CPU query; the other one is `SELECT 1`.
const CPU_QUERY: &str = "SELECT sum(i) FROM generate_series(1, 1000) i";
/// A check-out that returns this much later than `connection_timeout` waited longer than the
/// pool promises.
const OVERSHOOT: Duration = Duration::from_millis(250);
/// How long after `--stop-for` the watchdog resumes stopped backends on its own.
const WATCHDOG_SLACK: Duration = Duration::from_secs(2);
/// How long a kill waits for the terminated sessions to leave `pg_stat_activity`.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long the end waits for the threads.
const JOIN_DEADLINE: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let outcome = parse_args(std::env::args().skip(1)).and_then(|command| match command {
        Cmd::Help => {
            say!("{USAGE}");
            Ok(true)
        }
        Cmd::Run(options) => run(&options),
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: {}", error.to_string().replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

enum Cmd {
    Help,
    Run(Options),
}

#[derive(Clone)]
struct Options {
    duration: Duration,
    threads: usize,
    max_size: u32,
    database_url: String,
    interval: Duration,
    kill_every: Option<Duration>,
    stop_every: Option<Duration>,
    stop_for: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Cmd, BoxError> {
    let mut options = Options {
        duration: Duration::from_secs(600),
        threads: 16,
        max_size: 8,
        database_url: "host=127.0.0.1 user=postgres dbname=test".to_owned(),
        interval: Duration::from_secs(10),
        kill_every: Some(Duration::from_secs(15)),
        stop_every: Some(Duration::from_secs(45)),
        stop_for: Duration::from_secs(3),
    };
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Cmd::Help),
            "--duration" => options.duration = seconds(&flag, &value()?, false)?,
            "--threads" => options.threads = count(&flag, &value()?)?,
            "--max-size" => {
                options.max_size = u32::try_from(count(&flag, &value()?)?)
                    .map_err(|_| format!("{flag}: too large"))?;
            }
            "--database-url" => options.database_url = value()?,
            "--interval" => options.interval = seconds(&flag, &value()?, false)?,
            "--kill-every" => {
                options.kill_every =
                    Some(seconds(&flag, &value()?, true)?).filter(|d| !d.is_zero());
            }
            "--stop-every" => {
                options.stop_every =
                    Some(seconds(&flag, &value()?, true)?).filter(|d| !d.is_zero());
            }
            "--stop-for" => options.stop_for = seconds(&flag, &value()?, false)?,
            // Only the flag's name is echoed: the rest could be a URL with a password in it.
            _ if flag.starts_with('-') => {
                return Err(format!("unknown option {flag} (see --help)").into());
            }
            _ => return Err("unexpected argument: options start with -- (see --help)".into()),
        }
    }
    Ok(Cmd::Run(options))
}

fn seconds(flag: &str, text: &str, zero_ok: bool) -> Result<Duration, BoxError> {
    text.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 || (zero_ok && *s == 0.0))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            let wanted = if zero_ok {
                "a number of seconds, 0 or more"
            } else {
                "a positive number of seconds"
            };
            format!("{flag} wants {wanted}, got {text:?}").into()
        })
}

fn count(flag: &str, text: &str) -> Result<usize, BoxError> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} wants a positive whole number, got {text:?}").into())
}

// ---------------------------------------------------------------------------------------------
// What the threads count.

/// What a worker counts, each an index into its counters.
#[derive(Clone, Copy)]
enum Count {
    Checkout,
    GetTimeout,
    GetClosed,
    GetPermanent,
    GetOther,
    QueryOk,
    /// The server ended the session: SQLSTATE class 57 (`terminating connection due to
    /// administrator command`).
    QueryTerminated,
    /// The client already knew the connection was closed.
    QueryClosed,
    /// Any other error from the server.
    QueryDb,
    /// I/O errors (reset, broken pipe, unexpected end of stream) and the rest.
    QueryIo,
    /// A query failed on a connection whose query had failed before: a dead session handed out
    /// again.
    QueryRepeat,
    /// A check-out, failed or not, that took longer than `connection_timeout` + `OVERSHOOT`.
    OverTimeout,
    /// Failures once the end had begun (the pool closing), not counted as errors.
    AtShutdown,
}

const COUNTS: usize = Count::AtShutdown as usize + 1;
const GET_FAILURES: [(Count, &str); 4] = [
    (Count::GetTimeout, "timeout"),
    (Count::GetClosed, "closed"),
    (Count::GetPermanent, "permanent"),
    (Count::GetOther, "other"),
];
const QUERY_FAILURES: [(Count, &str); 4] = [
    (Count::QueryTerminated, "terminated"),
    (Count::QueryClosed, "closed"),
    (Count::QueryDb, "db error"),
    (Count::QueryIo, "i/o"),
];

/// Waits in microseconds, in buckets: exact below 16 µs, then 8 per power of two (each at most
/// 12.5% wide), up to about 12 days.
const BUCKETS: usize = 16 + 8 * 36;

fn bucket(micros: u64) -> usize {
    if micros < 16 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros() as usize; // 4 and up
    let sub = ((micros >> (exponent - 3)) & 7) as usize;
    (16 + (exponent - 4) * 8 + sub).min(BUCKETS - 1)
}

/// The largest wait, in microseconds, that falls in bucket `index`.
fn bucket_top(index: usize) -> u64 {
    if index < 16 {
        return index as u64;
    }
    let exponent = (index - 16) / 8 + 4;
    let sub = ((index - 16) % 8) as u64;
    ((9 + sub) << (exponent - 3)) - 1
}

/// One worker's counters, written by it alone (uncontended atomics) and taken by the reporter
/// with `swap(0)` at each interval.
#[repr(align(128))]
struct WorkerStats {
    counts: [AtomicU64; COUNTS],
    waits: Box<[AtomicU64]>,
    wait_max_micros: AtomicU64,
}

impl WorkerStats {
    fn new() -> WorkerStats {
        WorkerStats {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            waits: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            wait_max_micros: AtomicU64::new(0),
        }
    }

    fn add(&self, count: Count) {
        self.counts[count as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn record_wait(&self, wait: Duration) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.waits[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        self.wait_max_micros.fetch_max(micros, Ordering::Relaxed);
        if wait > CONNECTION_TIMEOUT + OVERSHOOT {
            self.add(Count::OverTimeout);
        }
    }
}

/// Counters summed over the workers, for an interval or the whole run.
#[derive(Clone)]
struct Tally {
    counts: [u64; COUNTS],
    waits: Vec<u64>,
    wait_max_micros: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            counts: [0; COUNTS],
            waits: vec![0; BUCKETS],
            wait_max_micros: 0,
        }
    }

    fn take(workers: &[WorkerStats]) -> Tally {
        let mut tally = Tally::new();
        for stats in workers {
            for (sum, count) in tally.counts.iter_mut().zip(&stats.counts) {
                *sum += count.swap(0, Ordering::Relaxed);
            }
            for (sum, bucket) in tally.waits.iter_mut().zip(stats.waits.iter()) {
                *sum += bucket.swap(0, Ordering::Relaxed);
            }
            let max = stats.wait_max_micros.swap(0, Ordering::Relaxed);
            tally.wait_max_micros = tally.wait_max_micros.max(max);
        }
        tally
    }

    fn add(&mut self, other: &Tally) {
        for (sum, count) in self.counts.iter_mut().zip(other.counts) {
            *sum += count;
        }
        for (sum, bucket) in self.waits.iter_mut().zip(&other.waits) {
            *sum += bucket;
        }
        self.wait_max_micros = self.wait_max_micros.max(other.wait_max_micros);
    }

    fn get(&self, count: Count) -> u64 {
        self.counts[count as usize]
    }

    fn sum(&self, kinds: &[(Count, &str)]) -> u64 {
        kinds.iter().map(|(count, _)| self.get(*count)).sum()
    }

    /// `12 (timeout 10, closed 2)`, or `0`.
    fn breakdown(&self, kinds: &[(Count, &str)]) -> String {
        let parts: Vec<String> = kinds
            .iter()
            .filter(|(count, _)| self.get(*count) > 0)
            .map(|(count, name)| format!("{name} {}", self.get(*count)))
            .collect();
        if parts.is_empty() {
            "0".to_owned()
        } else {
            format!("{} ({})", self.sum(kinds), parts.join(", "))
        }
    }

    /// The wait at percentile `p` (nearest rank, the top of its bucket, never above the max).
    fn wait_percentile(&self, p: f64) -> Option<Duration> {
        let total: u64 = self.waits.iter().sum();
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, n) in self.waits.iter().enumerate() {
            seen += n;
            if seen >= rank && *n > 0 {
                let micros = bucket_top(index).min(self.wait_max_micros);
                return Some(Duration::from_micros(micros));
            }
        }
        None
    }

    fn waits_text(&self) -> String {
        match (self.wait_percentile(50.0), self.wait_percentile(99.0)) {
            (Some(p50), Some(p99)) => format!(
                "wait p50 {} p99 {} max {}",
                human(p50),
                human(p99),
                human(Duration::from_micros(self.wait_max_micros))
            ),
            _ => "no check-outs".to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults and recoveries.

/// A fault that has ended, waiting for the first successful query after it.
#[derive(Clone)]
struct FaultEnd {
    name: String,
    ended: Instant,
}

#[derive(Default)]
struct RecoveryLog {
    pending: Vec<FaultEnd>,
    recovered: Vec<(FaultEnd, Duration)>,
}

/// Shared by the workers (which look at `pending` after each successful query, one relaxed
/// load while nothing is pending) and the fault thread.
#[derive(Default)]
struct Recoveries {
    pending: AtomicBool,
    log: Mutex<RecoveryLog>,
}

impl Recoveries {
    fn fault_ended(&self, name: String, ended: Instant) {
        let mut log = self.log.lock();
        log.pending.push(FaultEnd { name, ended });
        self.pending.store(true, Ordering::Release);
    }

    /// A query succeeded at `now`, on a check-out begun at `started`: it ends the recovery of
    /// every fault that had ended by `started`.
    fn query_succeeded(&self, started: Instant, now: Instant) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let mut log = self.log.lock();
        let RecoveryLog { pending, recovered } = &mut *log;
        pending.retain(|fault| {
            if fault.ended <= started {
                recovered.push((fault.clone(), now - fault.ended));
                false
            } else {
                true
            }
        });
        self.pending.store(!pending.is_empty(), Ordering::Release);
    }

    /// The recoveries since the last call, and the faults still waiting for theirs.
    fn take(&self) -> (Vec<(FaultEnd, Duration)>, Vec<FaultEnd>) {
        let mut log = self.log.lock();
        (std::mem::take(&mut log.recovered), log.pending.clone())
    }
}

/// What the fault thread did, per interval.
#[derive(Default)]
struct FaultCounts {
    kills: AtomicU64,
    killed: AtomicU64,
    stops: AtomicU64,
    stopped: AtomicU64,
    /// Faults that could not be injected (the admin connection failed, `kill` failed).
    failed: AtomicU64,
}

impl FaultCounts {
    fn take(&self) -> [u64; 5] {
        [
            &self.kills,
            &self.killed,
            &self.stops,
            &self.stopped,
            &self.failed,
        ]
        .map(|count| count.swap(0, Ordering::Relaxed))
    }
}

/// Everything the threads share.
struct Shared {
    stop: AtomicBool,
    workers: Vec<WorkerStats>,
    /// The first message of each kind of error in the current interval.
    samples: Mutex<BTreeMap<&'static str, String>>,
    /// Connections (by `PooledConnection::id`) a query has failed on, in this interval and the
    /// one before: a dead session handed out again fails again within moments, and the soak
    /// must not grow a set of its own while it watches the memory.
    failed_connections: Mutex<[HashSet<u64>; 2]>,
    /// Errors the pool passed to its error handler (connects and validations that failed).
    pool_errors: AtomicU64,
    faults: FaultCounts,
    recoveries: Recoveries,
}

impl Shared {
    fn new(threads: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            workers: (0..threads).map(|_| WorkerStats::new()).collect(),
            samples: Mutex::new(BTreeMap::new()),
            failed_connections: Mutex::new([HashSet::new(), HashSet::new()]),
            pool_errors: AtomicU64::new(0),
            faults: FaultCounts::default(),
            recoveries: Recoveries::default(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn sample(&self, kind: &'static str, message: impl FnOnce() -> String) {
        self.samples.lock().entry(kind).or_insert_with(message);
    }
}

/// The pool's error handler: counts connect and validation errors and keeps a sample.
struct PoolErrors(Arc<Shared>);

impl std::fmt::Debug for PoolErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolErrors")
    }
}

impl HandleError<sluicegate::postgres::Error> for PoolErrors {
    fn handle_error(&self, error: sluicegate::postgres::Error) {
        self.0.pool_errors.fetch_add(1, Ordering::Relaxed);
        self.0
            .sample("pool's error handler (connect or validation)", || {
                chain(&error)
            });
    }
}

/// An error and its `source()` chain on one line, skipping a source its parent already said.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = inner.source();
    }
    text.replace('\n', " ")
}

// ---------------------------------------------------------------------------------------------
// The load.

/// Sends one message when dropped, however its thread ends (a panic included).
struct Done(mpsc::Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn worker(index: usize, pool: &PgPool, shared: &Shared) {
    let stats = &shared.workers[index];
    let mut turn = index;
    while !shared.stopping() {
        let started = Instant::now();
        let got = pool.get();
        let waited = started.elapsed();
        let mut conn = match got {
            Ok(conn) => conn,
            Err(error) => {
                if shared.stopping() {
                    stats.add(Count::AtShutdown);
                    break;
                }
                stats.record_wait(waited);
                let (count, kind) = if error.is_timeout() {
                    (Count::GetTimeout, "get: timeout")
                } else if error.is_closed() {
                    (Count::GetClosed, "get: closed")
                } else if error.is_permanent() {
                    (Count::GetPermanent, "get: permanent")
                } else {
                    (Count::GetOther, "get: other")
                };
                stats.add(count);
                shared.sample(kind, || error.to_string().replace('\n', " "));
                // A check-out that fails at once (a closed or misconfigured pool) must not
                // make this loop spin.
                if waited < Duration::from_millis(10) {
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        stats.record_wait(waited);
        stats.add(Count::Checkout);
        turn = turn.wrapping_add(1);
        let sql = if turn % 2 == 0 { "SELECT 1" } else { CPU_QUERY };
        match conn.simple_query(sql) {
            Ok(_) => {
                stats.add(Count::QueryOk);
                shared.recoveries.query_succeeded(started, Instant::now());
            }
            Err(_) if shared.stopping() => stats.add(Count::AtShutdown),
            Err(error) => {
                let (count, kind) = match error.code() {
                    Some(code) if code.code().starts_with("57") => {
                        (Count::QueryTerminated, "query: terminated")
                    }
                    Some(_) => (Count::QueryDb, "query: db error"),
                    None if error.is_closed() => (Count::QueryClosed, "query: closed"),
                    None => (Count::QueryIo, "query: i/o"),
                };
                stats.add(count);
                shared.sample(kind, || chain(&error));
                // Deliberately no `mark_broken`: the soak shows what the pool does on its own.
                let id = PooledConnection::id(&conn);
                let failed_before = {
                    let mut failed = shared.failed_connections.lock();
                    let [now, before] = &mut *failed;
                    before.contains(&id) || !now.insert(id)
                };
                if failed_before {
                    stats.add(Count::QueryRepeat);
                    shared.sample("query: again on a connection that had failed", || {
                        format!("connection {id} failed again: {}", chain(&error))
                    });
                }
            }
        }
        drop(conn);
    }
}

// ---------------------------------------------------------------------------------------------
// The admin connection and the faults.

/// The soak's own connection to the server, outside the pool, reconnected when it breaks.
struct Admin {
    config: Config,
    client: Option<Client>,
}

impl Admin {
    fn client(&mut self) -> Result<&mut Client, postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(self.config.connect(NoTls)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Runs `f` on the client. When the session fails (not the statement: the server restarted,
    /// say), it runs `f` once more on a new one; an error drops the client, so that the next
    /// call reconnects.
    fn with<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let mut outcome = self.client().and_then(&mut f);
        if outcome.as_ref().is_err_and(|e| e.code().is_none()) {
            self.client = None;
            outcome = self.client().and_then(&mut f);
        }
        if outcome.is_err() {
            self.client = None;
        }
        outcome
    }

    /// The pool's sessions: pid and client port (-1 over a Unix socket).
    fn backends(&mut self, app: &str) -> Result<Vec<(i32, i32)>, postgres::Error> {
        self.with(|client| {
            let rows = client.query(
                "SELECT pid, coalesce(client_port, -1) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&app],
            )?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    /// Ends the pool's sessions; returns the pids it signalled.
    fn terminate(&mut self, app: &str) -> Result<Vec<i32>, postgres::Error> {
        self.with(|client| {
            let rows = client.query(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&app],
            )?;
            Ok(rows
                .iter()
                .filter(|row| row.get::<_, bool>(1))
                .map(|row| row.get(0))
                .collect())
        })
    }

    /// How many of `pids` are still in `pg_stat_activity`.
    fn still_there(&mut self, pids: &[i32]) -> Result<i64, postgres::Error> {
        self.with(|client| {
            let row = client.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )?;
            Ok(row.get(0))
        })
    }
}

/// Whether `/proc` shows `pid` as a PostgreSQL backend serving a client on `client_port` (or
/// over a Unix socket, for -1): the only processes the soak ever sends a signal to. Needs the
/// server's default `update_process_title = on`.
fn is_backend_process(pid: i32, client_port: i32) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let title = String::from_utf8_lossy(&raw).replace('\0', " ");
    title.starts_with("postgres:")
        && if client_port < 0 {
            title.contains("[local]")
        } else {
            title.contains(&format!("({client_port})"))
        }
}

/// `kill -<signal> <pids>`; the error is what `kill` printed.
fn signal(signal: &str, pids: &[i32]) -> Result<(), String> {
    let output = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(i32::to_string))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        // One complaint per pid that failed: the first says it.
        let said = String::from_utf8_lossy(&output.stderr);
        let mut lines = said.lines().filter(|line| !line.trim().is_empty());
        let first = lines.next().unwrap_or("failed").trim().to_owned();
        let more = match lines.count() {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        Err(format!("kill -{signal}: {first}{more}"))
    }
}

/// Backends frozen with SIGSTOP; dropping the guard resumes them with SIGCONT.
struct Stopped {
    pids: Vec<i32>,
    watchdog: Option<Child>,
}

impl Stopped {
    /// Starts the watchdog, then stops `pids`. The guard exists before the first SIGSTOP, so a
    /// partial failure still ends in SIGCONT. The error is `kill`'s (some pid gone, say): the
    /// others are stopped all the same.
    fn stop(pids: Vec<i32>, stop_for: Duration) -> Result<(Stopped, Result<(), String>), String> {
        let watchdog = spawn_watchdog(&pids, stop_for + WATCHDOG_SLACK)
            .map_err(|e| format!("cannot start the watchdog, so nothing was stopped: {e}"))?;
        let guard = Stopped {
            pids,
            watchdog: Some(watchdog),
        };
        let outcome = signal("STOP", &guard.pids);
        Ok((guard, outcome))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Err(e) = signal("CONT", &self.pids) {
            eprintln!("soak: resuming backends {:?}: {e}", self.pids);
        }
        // Resumed already: the watchdog goes before it sends SIGCONT again. Its `cat` ends when
        // the pipe closes, as `watchdog` (and its stdin) is dropped here.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A shell, in a process group of its own so that Ctrl-C does not reach it, that sends SIGCONT
/// to `pids` once this process is gone or `after` has passed, whichever comes first. It learns
/// that this process is gone from its standard input, a pipe from this process: the pipe
/// closes when this process exits, however it exits, even before its parent reaps it.
fn spawn_watchdog(pids: &[i32], after: Duration) -> std::io::Result<Child> {
    const SCRIPT: &str = r#"timeout "$1" cat >/dev/null; shift; exec kill -CONT "$@""#;
    let mut command = Command::new("sh");
    command
        .args(["-c", SCRIPT, "sluicegate-soak-watchdog"])
        .arg(format!("{:.1}", after.as_secs_f64()))
        .args(pids.iter().map(i32::to_string))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn()
}

/// Before the load: the stops will work, and will only reach the pool's backends.
fn check_stops(admin: &mut Admin, app: &str) -> Result<(), BoxError> {
    let backends = admin.backends(app)?;
    if backends.is_empty() {
        return Err(format!(
            "no session with application_name {app:?} in pg_stat_activity, so the faults \
             would find nothing to act on"
        )
        .into());
    }
    if let Some((pid, _)) = backends
        .iter()
        .find(|(pid, port)| !is_backend_process(*pid, *port))
    {
        return Err(format!(
            "the pool's session with server pid {pid} is not, as /proc shows it here, a \
             PostgreSQL backend serving this process: the stops need the server on this \
             machine, in the same PID namespace, with update_process_title on (or pass \
             --stop-every 0)"
        )
        .into());
    }
    let pids: Vec<i32> = backends.iter().map(|(pid, _)| *pid).collect();
    signal("0", &pids).map_err(|e| {
        format!(
            "cannot signal the server's processes ({e}): run as root or as the OS user that \
             owns them (usually postgres), or pass --stop-every 0"
        )
    })?;
    Ok(())
}

/// Sleeps until `deadline`, in short steps; false if the soak is ending.
fn sleep_until(deadline: Instant, shared: &Shared) -> bool {
    loop {
        if shared.stopping() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// The fault thread: kills and stops on their schedules until the soak ends. Gives the admin
/// connection back for the end's checks.
fn inject_faults(
    mut admin: Admin,
    shared: &Shared,
    options: &Options,
    app: &str,
    start: Instant,
) -> Admin {
    let end = start + options.duration;
    let mut next_kill = options.kill_every.map(|every| start + every);
    let mut next_stop = options.stop_every.map(|every| start + every);
    let (mut kills, mut stops) = (0, 0);
    let at = |instant: Instant| (instant - start).as_secs_f64();
    while let Some(due) = [next_kill, next_stop].into_iter().flatten().min() {
        if due >= end || !sleep_until(due, shared) {
            break;
        }
        // When both are due, the kill goes first, then the stop freezes the new sessions.
        if let (Some(when), Some(every)) = (next_kill, options.kill_every) {
            if when <= Instant::now() {
                kills += 1;
                kill(&mut admin, shared, app, kills, at(Instant::now()));
                next_kill = Some(next_after(when, every, Instant::now()));
            }
        }
        if let (Some(when), Some(every)) = (next_stop, options.stop_every) {
            if when <= Instant::now() && !shared.stopping() {
                // A stop that the end would cut short is left out.
                if Instant::now() + options.stop_for < end {
                    stops += 1;
                    stop(&mut admin, shared, options, app, stops, &at);
                }
                next_stop = Some(next_after(when, every, Instant::now()));
            }
        }
    }
    admin
}

/// The next time on the grid `when + k * every` after `now`.
fn next_after(mut when: Instant, every: Duration, now: Instant) -> Instant {
    while when <= now {
        when += every;
    }
    when
}

fn kill(admin: &mut Admin, shared: &Shared, app: &str, number: u32, at: f64) {
    let name = format!("kill #{number}");
    let began = Instant::now();
    let pids = match admin.terminate(app) {
        Ok(pids) => pids,
        Err(e) => {
            shared.faults.failed.fetch_add(1, Ordering::Relaxed);
            say!("{at:9.2} s  {name} failed: {}", chain(&e));
            return;
        }
    };
    // Done when the sessions have left pg_stat_activity (or after KILL_WAIT).
    let mut left = 0;
    while began.elapsed() < KILL_WAIT && !pids.is_empty() {
        match admin.still_there(&pids) {
            Ok(0) => {
                left = 0;
                break;
            }
            Ok(n) => left = n,
            Err(_) => break,
        }
        thread::sleep(Duration::from_millis(5));
    }
    let ended = Instant::now();
    shared.faults.kills.fetch_add(1, Ordering::Relaxed);
    shared
        .faults
        .killed
        .fetch_add(pids.len() as u64, Ordering::Relaxed);
    let gone = if left == 0 {
        format!("gone after {}", human(ended - began))
    } else {
        format!("{left} still there after {}", human(ended - began))
    };
    say!(
        "{at:9.2} s  {name}: pg_terminate_backend() on {} backends, {gone}",
        pids.len()
    );
    shared.recoveries.fault_ended(name, ended);
}

fn stop(
    admin: &mut Admin,
    shared: &Shared,
    options: &Options,
    app: &str,
    number: u32,
    at: &dyn Fn(Instant) -> f64,
) {
    let name = format!("stop #{number}");
    let fail = |why: String| {
        shared.faults.failed.fetch_add(1, Ordering::Relaxed);
        say!("{:9.2} s  {name} failed: {why}", at(Instant::now()));
    };
    // Right after a kill the pool is still opening its new sessions, one at a time: wait (up
    // to 2 s) until it has all of them (min_idle is max_size), so that the stop freezes the
    // whole pool. A pool still short after that is stopped as it is, and the line says so.
    let stop_for = options.stop_for;
    let looked = Instant::now();
    let settle_by = looked + Duration::from_secs(2);
    let backends = loop {
        let backends = match admin.backends(app) {
            Ok(backends) => backends,
            Err(e) => return fail(chain(&e)),
        };
        let full = backends.len() >= options.max_size as usize;
        if full || Instant::now() >= settle_by || shared.stopping() {
            break backends;
        }
        thread::sleep(Duration::from_millis(10));
    };
    // Checked again for each stop: only processes that are the pool's backends, here.
    let (pids, foreign): (Vec<i32>, Vec<i32>) = backends
        .iter()
        .map(|(pid, port)| (*pid, is_backend_process(*pid, *port)))
        .fold(
            (Vec::new(), Vec::new()),
            |(mut ours, mut foreign), (pid, is_ours)| {
                if is_ours { &mut ours } else { &mut foreign }.push(pid);
                (ours, foreign)
            },
        );
    if pids.is_empty() {
        return fail(if foreign.is_empty() {
            "the pool has no session to stop".to_owned()
        } else {
            format!(
                "none of the pool's {} sessions is a backend process here",
                foreign.len()
            )
        });
    }
    let began = Instant::now();
    let (guard, outcome) = match Stopped::stop(pids, stop_for) {
        Ok(stopped) => stopped,
        Err(why) => return fail(why),
    };
    let skipped = if foreign.is_empty() {
        String::new()
    } else {
        format!(" ({} skipped: not a backend process here)", foreign.len())
    };
    let problem = outcome.err().map(|e| format!(" ({e})")).unwrap_or_default();
    let short = if backends.len() < options.max_size as usize {
        format!(
            " (the pool had {} of its {} sessions after {})",
            backends.len(),
            options.max_size,
            human(began - looked)
        )
    } else {
        String::new()
    };
    say!(
        "{:9.2} s  {name}: SIGSTOP to {} backends for {}{short}{skipped}{problem}",
        at(began),
        guard.pids.len(),
        human(stop_for)
    );
    shared.faults.stops.fetch_add(1, Ordering::Relaxed);
    shared
        .faults
        .stopped
        .fetch_add(guard.pids.len() as u64, Ordering::Relaxed);
    // Cut short if the soak is ending; the guard resumes them either way.
    sleep_until(began + stop_for, shared);
    drop(guard);
    let ended = Instant::now();
    say!(
        "{:9.2} s  {name}: SIGCONT sent after {}",
        at(ended),
        human(ended - began)
    );
    shared.recoveries.fault_ended(name, ended);
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// A duration for people: µs, ms or s.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

/// A field of `/proc/self/status`, in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    )
}

/// Counters of the pool's metrics shown with their change since the last report.
fn counter(name: &str, now: u64, before: u64) -> String {
    format!("{name} {now} (+{})", now - before)
}

struct Reporter {
    start: Instant,
    last: Instant,
    metrics: Metrics,
    total: Tally,
    faults: [u64; 5],
    recoveries: Vec<(FaultEnd, Duration)>,
    rss_start: Option<u64>,
    rss_first: Option<u64>,
    pool_errors: u64,
}

impl Reporter {
    fn report(&mut self, shared: &Shared, pool: &PgPool) {
        let now = Instant::now();
        let length = (now - self.last).as_secs_f64();
        self.last = now;
        let tally = Tally::take(&shared.workers);
        self.total.add(&tally);
        let faults = shared.faults.take();
        for (total, n) in self.faults.iter_mut().zip(faults) {
            *total += n;
        }
        let samples = std::mem::take(&mut *shared.samples.lock());
        {
            let mut failed = shared.failed_connections.lock();
            let [now, before] = &mut *failed;
            *before = std::mem::take(now);
        }
        let (recovered, pending) = shared.recoveries.take();
        let pool_errors = shared.pool_errors.load(Ordering::Relaxed);
        let m = pool.metrics();
        let rss = proc_status_kib("VmRSS");
        if self.rss_first.is_none() {
            self.rss_first = rss;
        }

        let mut fault_parts = Vec::new();
        if faults[0] > 0 {
            fault_parts.push(format!(
                "{} ({})",
                plural(faults[0], "kill"),
                plural(faults[1], "backend")
            ));
        }
        if faults[2] > 0 {
            fault_parts.push(format!(
                "{} ({})",
                plural(faults[2], "stop"),
                plural(faults[3], "backend")
            ));
        }
        if faults[4] > 0 {
            fault_parts.push(format!("{} failed", faults[4]));
        }
        let faults_text = if fault_parts.is_empty() {
            "none".to_owned()
        } else {
            fault_parts.join(", ")
        };
        let repeats = match tally.get(Count::QueryRepeat) {
            0 => String::new(),
            n => format!(", {n} on a connection that had failed before"),
        };
        let over = match tally.get(Count::OverTimeout) {
            0 => String::new(),
            n => format!(", {n} took over connection_timeout"),
        };
        say!(
            "[{:6.1} s] {:6.0} check-outs/s | {} | get failed {}{over} | query failed {}{repeats} \
             | faults {faults_text} | RSS {}",
            (now - self.start).as_secs_f64(),
            tally.get(Count::Checkout) as f64 / length,
            tally.waits_text(),
            tally.breakdown(&GET_FAILURES),
            tally.breakdown(&QUERY_FAILURES),
            mib(rss),
        );
        if !recovered.is_empty() || !pending.is_empty() {
            let mut parts: Vec<String> = recovered
                .iter()
                .map(|(fault, took)| format!("{} in {}", fault.name, human(*took)))
                .collect();
            parts.extend(pending.iter().map(|fault| {
                format!(
                    "{} not yet ({} since it ended)",
                    fault.name,
                    human(now - fault.ended)
                )
            }));
            say!("           recovery: {}", parts.join(", "));
        }
        let before = &self.metrics;
        say!(
            "           pool: {} connections, {} idle, {} waiting; {}, {}, {}, {}; \
             error handler {} (+{})",
            m.connections,
            m.idle,
            m.waiting,
            counter("created", m.created, before.created),
            counter("closed_broken", m.closed_broken, before.closed_broken),
            counter("closed_invalid", m.closed_invalid, before.closed_invalid),
            counter(
                "connect_failures",
                m.connect_failures,
                before.connect_failures
            ),
            pool_errors,
            pool_errors - self.pool_errors,
        );
        for (kind, message) in &samples {
            say!("           {kind}: {}", shorten(message, 300));
        }
        self.recoveries.extend(recovered);
        self.metrics = m;
        self.pool_errors = pool_errors;
    }
}

/// `1 kill`, `3 kills`.
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Where the database is, from the parsed config (never the URL: it may hold a password).
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    format!(
        "PostgreSQL at {host}:{}, database {}, user {}",
        config.get_ports().first().unwrap_or(&5432),
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)"),
    )
}

/// The whole soak; `Ok(false)` when its end was not clean (threads stuck, backends left).
fn run(options: &Options) -> Result<bool, BoxError> {
    let app = format!("sluicegate-soak-{}", std::process::id());
    let mut config = Config::from_str(&options.database_url).map_err(|e| {
        let why = e
            .source()
            .map_or_else(|| e.to_string(), ToString::to_string);
        format!("malformed database URL or settings: {why}")
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let place = describe(&config);
    let mut admin_config = config.clone();
    admin_config
        .application_name(&format!("{app}-admin"))
        .options("-c statement_timeout=5000");
    config.application_name(&app);

    let mut admin = Admin {
        config: admin_config,
        client: None,
    };
    admin
        .client()
        .map_err(|e| format!("{place}: the admin connection: {}", chain(&e)))?;
    let shared = Arc::new(Shared::new(options.threads));
    let pool = Pool::builder()
        .pool_name("soak")
        .max_size(options.max_size)
        .connection_timeout(CONNECTION_TIMEOUT)
        .error_handler(Box::new(PoolErrors(shared.clone())))
        .build(PostgresConnectionManager::new(config, NoTls))
        .map_err(|e| format!("{place}: {e}"))?;
    if options.stop_every.is_some() {
        check_stops(&mut admin, &app)?;
    }

    let every = |every: Option<Duration>| every.map_or_else(|| "never".to_owned(), human);
    say!("soak: {place}, application_name {app}");
    say!(
        "      {} threads on pool \"soak\" (max_size {}, connection_timeout {}) for {}; \
         a report every {}",
        options.threads,
        options.max_size,
        human(CONNECTION_TIMEOUT),
        human(options.duration),
        human(options.interval),
    );
    say!(
        "      faults: kill every {}, stop every {} for {}; queries: SELECT 1 and {CPU_QUERY:?}",
        every(options.kill_every),
        every(options.stop_every),
        human(options.stop_for),
    );
    let rss_start = proc_status_kib("VmRSS");
    say!("      RSS at start {}\n", mib(rss_start));

    let start = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    let mut spawned = 0;
    let mut spawn_error = None;
    for index in 0..options.threads {
        let (pool, shared, done) = (pool.clone(), shared.clone(), Done(done_tx.clone()));
        let spawn = thread::Builder::new()
            .name(format!("soak-{index}"))
            .spawn(move || {
                let _done = done;
                worker(index, &pool, &shared);
            });
        match spawn {
            Ok(_) => spawned += 1,
            Err(e) => {
                spawn_error = Some(e);
                break;
            }
        }
    }
    drop(done_tx);
    let (faults_tx, faults_rx) = mpsc::channel();
    let faults = if spawn_error.is_none() {
        let (shared, options, app) = (shared.clone(), options.clone(), app.clone());
        let done = Done(faults_tx);
        thread::Builder::new()
            .name("soak-faults".to_owned())
            .spawn(move || {
                let _done = done;
                inject_faults(admin, &shared, &options, &app, start)
            })
            .map_err(|e| spawn_error = Some(e))
            .ok()
    } else {
        None
    };

    let mut reporter = Reporter {
        start,
        last: start,
        metrics: pool.metrics(),
        total: Tally::new(),
        faults: [0; 5],
        recoveries: Vec::new(),
        rss_start,
        rss_first: None,
        pool_errors: 0,
    };
    let end = start + options.duration;
    let mut tick = start;
    while spawn_error.is_none() {
        tick = (tick + options.interval).min(end);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        reporter.report(&shared, &pool);
        if tick >= end {
            break;
        }
    }
    let elapsed = start.elapsed();

    // The end: faults first (the stop guard resumes any stopped backend), then the pool, then
    // the threads, each with a deadline.
    shared.stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut clean = true;
    let admin = match faults {
        Some(handle) => match faults_rx.recv_timeout(deadline - Instant::now()) {
            Ok(()) => handle.join().ok(),
            Err(_) => {
                say!(
                    "soak: the fault thread did not finish within {}",
                    human(JOIN_DEADLINE)
                );
                clean = false;
                None
            }
        },
        None => None,
    };
    pool.close();
    let closing = Instant::now();
    let mut finished = 0;
    while finished < spawned {
        match done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(()) => finished += 1,
            Err(_) => break,
        }
    }
    let joined_in = closing.elapsed();
    if let Some(e) = spawn_error {
        return Err(format!("cannot start a thread: {e}").into());
    }
    // What finished in the last moments, after the last report.
    let last = Tally::take(&shared.workers);
    reporter.total.add(&last);

    let total = &reporter.total;
    let m = pool.metrics();
    let checkouts = total.get(Count::Checkout);
    let get_failed = total.sum(&GET_FAILURES);
    let query_failed = total.sum(&QUERY_FAILURES);
    let attempts = checkouts + get_failed;
    say!("\nsummary after {}:", human(elapsed));
    say!(
        "  check-outs      {checkouts} ({:.0}/s), {} queries succeeded",
        checkouts as f64 / elapsed.as_secs_f64(),
        total.get(Count::QueryOk)
    );
    say!(
        "  get failed      {}; {} check-outs took longer than connection_timeout ({}) + {}",
        total.breakdown(&GET_FAILURES),
        total.get(Count::OverTimeout),
        human(CONNECTION_TIMEOUT),
        human(OVERSHOOT),
    );
    say!(
        "  query failed    {}; {} on a connection whose query had failed before (a dead session \
         handed out again)",
        total.breakdown(&QUERY_FAILURES),
        total.get(Count::QueryRepeat),
    );
    say!(
        "  error rate      {:.3}% of {attempts} attempts (failed check-outs and queries)",
        if attempts == 0 {
            0.0
        } else {
            100.0 * (get_failed + query_failed) as f64 / attempts as f64
        }
    );
    say!(
        "  get() time      {} over the whole run",
        total.waits_text()
    );
    let f = reporter.faults;
    say!(
        "  faults          {} ({}), {} ({}), {} failed to inject",
        plural(f[0], "kill"),
        plural(f[1], "backend"),
        plural(f[2], "stop"),
        plural(f[3], "backend"),
        f[4]
    );
    let (late, never) = shared.recoveries.take();
    let mut recoveries = reporter.recoveries.clone();
    recoveries.extend(late);
    for kind in ["kill", "stop"] {
        let mut took: Vec<(Duration, &str)> = recoveries
            .iter()
            .filter(|(fault, _)| fault.name.starts_with(kind))
            .map(|(fault, took)| (*took, fault.name.as_str()))
            .collect();
        took.sort_unstable();
        if let Some((worst, name)) = took.last() {
            say!(
                "  recovery        after a {kind}: worst {} ({name}), median {}, best {}",
                human(*worst),
                human(took[(took.len() - 1) / 2].0),
                human(took[0].0),
            );
        }
    }
    if !never.is_empty() {
        let names: Vec<&str> = never.iter().map(|fault| fault.name.as_str()).collect();
        say!(
            "  recovery        none seen after {} (no successful query began after it ended)",
            names.join(", ")
        );
    }
    say!(
        "  RSS             start {}, after the first interval {}, end {}, peak {} (VmHWM)",
        mib(reporter.rss_start),
        mib(reporter.rss_first),
        mib(proc_status_kib("VmRSS")),
        mib(proc_status_kib("VmHWM")),
    );
    say!(
        "  pool            created {}, closed_broken {}, closed_invalid {}, closed_shutdown {}, \
         connect_failures {}, timeouts {}; error handler saw {}",
        m.created,
        m.closed_broken,
        m.closed_invalid,
        m.closed_shutdown,
        m.connect_failures,
        m.timeouts,
        shared.pool_errors.load(Ordering::Relaxed),
    );
    if finished < spawned {
        clean = false;
        say!(
            "  end             pool closed; {} of {spawned} threads still running after {}: \
             they are left behind",
            spawned - finished,
            human(JOIN_DEADLINE)
        );
    } else {
        say!(
            "  end             pool closed, {spawned} threads joined in {}",
            human(joined_in)
        );
    }
    // The pool's sessions should all be gone once it is closed and its threads are done.
    if let Some(mut admin) = admin {
        let gone_by = Instant::now() + Duration::from_secs(3);
        loop {
            match admin.backends(&app) {
                Ok(left) if left.is_empty() => {
                    say!("                  no session of the pool left in pg_stat_activity");
                    break;
                }
                Ok(left) if Instant::now() >= gone_by => {
                    clean = false;
                    say!(
                        "                  {} sessions of the pool still in pg_stat_activity",
                        left.len()
                    );
                    break;
                }
                Ok(_) => thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    say!(
                        "                  cannot check pg_stat_activity: {}",
                        chain(&e)
                    );
                    break;
                }
            }
        }
    }
    Ok(clean)
}
