//! Real databases: `SELECT 1` from 8 threads on 8 connections, default pool settings otherwise,
//! through sluicegate and the alternatives, side by side in one run.
//!
//! `drivers/<database>/<variant>`, database `postgres` (PostgreSQL) or `mysql` (MariaDB):
//!
//! - `dedicated`: one connection per thread, no pool: the limit.
//! - `sluicegate`: `sluicegate::postgres::PostgresConnectionManager` or
//!   `sluicegate::mysql::MysqlConnectionManager`, `max_size(8)`.
//! - `r2d2`: r2d2 0.8, `max_size(8)`, with bench-local managers that do what r2d2_postgres 0.18 and
//!   r2d2_mysql 25 do (so r2d2 validates every check-out with a round trip, and r2d2_mysql pings
//!   again on every return).
//! - `mysql_pool` (MariaDB only): the `mysql` crate's own pool, its defaults (a ping on every
//!   check-out, a reset-connection round trip on every return) but 8 connections.
//! - `new_connection`: connect, `SELECT 1`, close, for every query. Slow, so measured briefly.
//!
//! One criterion iteration is one check-out + `SELECT 1` + return on each of the 8 threads, so
//! criterion reports queries per second, all threads together. Each variant's pools and
//! connections are opened before it is measured and closed after, so the servers never hold
//! more than one variant's connections. Which variants the run measured goes to
//! `target/sluicegate-bench/drivers_run.csv`, so that the table never mixes runs.
//!
//! Then `drivers_paired`: the variants other than `new_connection` take turns in short blocks
//! under the same load, each round giving every variant a ratio to `dedicated` (criterion's
//! one-after-the-other ratios move with the load on a shared machine). Printed, and written to
//! `target/sluicegate-bench/drivers_paired.csv`. `cargo bench ... -- drivers_paired` runs it alone.
//!
//! Server settings come from the same variables as the tests (`SLUICEGATE_PG_*`, `SLUICEGATE_MY_*`; see
//! `benches/common/mod.rs`). A database whose server cannot be reached is skipped, with a message
//! on stderr; a server that goes away during the run fails it.
//!
//! Run: `cargo bench --features postgres,mysql --bench drivers` (about 2 minutes), then
//! `python3 scripts/bench_table.py drivers` for a table per database: every variant's
//! throughput and its ratio to `dedicated` and to `r2d2`.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mysql::prelude::Queryable;
use postgres::NoTls;

mod common;

const THREADS: usize = 8;
const CONNECTIONS: u32 = 8;

/// What one bench thread does: `work(thread, queries)` runs `queries` requests as thread
/// number `thread`.
type Work = Box<dyn Fn(usize, u64) + Sync>;

/// A sluicegate pool that says on stderr, when its variant is done, what it did: had it waited for
/// connections or reopened them, it would not be measuring what the table claims.
struct Reported<M: sluicegate::ManageConnection>(sluicegate::Pool<M>);

impl<M: sluicegate::ManageConnection> Drop for Reported<M> {
    fn drop(&mut self) {
        let m = self.0.metrics();
        eprintln!(
            "{}: {} check-outs, {} waited; {} connections opened, {} closed",
            self.0.name(),
            m.checkouts,
            m.waited,
            m.created,
            m.closed(),
        );
    }
}

// ---- PostgreSQL ---------------------------------------------------------------------------

/// What r2d2_postgres 0.18's `PostgresConnectionManager` does (that crate is not a dependency):
/// `is_valid` is an empty simple query (one round trip, which r2d2's defaults make on every
/// check-out), `has_broken` asks the client whether its connection closed (no I/O).
struct R2d2Postgres(postgres::Config);

impl r2d2::ManageConnection for R2d2Postgres {
    type Connection = postgres::Client;
    type Error = postgres::Error;
    fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.0.connect(NoTls)
    }
    fn is_valid(&self, client: &mut postgres::Client) -> Result<(), postgres::Error> {
        client.simple_query("").map(|_| ())
    }
    fn has_broken(&self, client: &mut postgres::Client) -> bool {
        client.is_closed()
    }
}

/// One `SELECT 1` through the simple-query protocol (one round trip), checked.
fn pg_select_one(client: &mut postgres::Client) {
    let messages = client.simple_query("SELECT 1").expect("SELECT 1");
    let one = messages.iter().find_map(|message| match message {
        postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    });
    assert_eq!(one, Some("1"), "SELECT 1 returned one row with 1");
}

fn postgres_work(variant: &str) -> Work {
    let config = common::pg_config();
    match variant {
        "dedicated" => {
            let clients: Vec<_> = (0..THREADS)
                .map(|_| Mutex::new(config.connect(NoTls).expect("PostgreSQL connection")))
                .collect();
            Box::new(move |thread, queries| {
                let mut client = clients[thread].lock().expect("one thread per connection");
                for _ in 0..queries {
                    pg_select_one(&mut client);
                }
            })
        }
        "sluicegate" => {
            let manager = sluicegate::postgres::PostgresConnectionManager::new(config, NoTls);
            let pool = sluicegate::Pool::builder()
                .pool_name("drivers-postgres")
                .max_size(CONNECTIONS)
                .build(manager)
                .expect("sluicegate pool");
            let pool = Reported(pool);
            Box::new(move |_, queries| {
                for _ in 0..queries {
                    pg_select_one(&mut pool.0.get().expect("sluicegate check-out"));
                }
            })
        }
        "r2d2" => {
            let pool = r2d2::Pool::builder()
                .max_size(CONNECTIONS)
                .build(R2d2Postgres(config))
                .expect("r2d2 pool");
            Box::new(move |_, queries| {
                for _ in 0..queries {
                    pg_select_one(&mut pool.get().expect("r2d2 check-out"));
                }
            })
        }
        "new_connection" => Box::new(move |_, queries| {
            for _ in 0..queries {
                pg_select_one(&mut config.connect(NoTls).expect("PostgreSQL connection"));
            }
        }),
        other => unreachable!("no PostgreSQL variant {other}"),
    }
}

// ---- MariaDB --------------------------------------------------------------------------------

/// What r2d2_mysql 25's `MySqlConnectionManager` does (that crate is not a dependency):
/// `is_valid` is a ping (one round trip, which r2d2's defaults make on every check-out), and
/// `has_broken` runs `is_valid`, so every return costs another round trip.
struct R2d2Mysql(mysql::Opts);

impl r2d2::ManageConnection for R2d2Mysql {
    type Connection = mysql::Conn;
    type Error = mysql::Error;
    fn connect(&self) -> Result<mysql::Conn, mysql::Error> {
        mysql::Conn::new(self.0.clone())
    }
    fn is_valid(&self, conn: &mut mysql::Conn) -> Result<(), mysql::Error> {
        conn.ping()
    }
    fn has_broken(&self, conn: &mut mysql::Conn) -> bool {
        self.is_valid(conn).is_err()
    }
}

/// One `SELECT 1` through the text protocol (one round trip), checked.
fn my_select_one(conn: &mut impl Queryable) {
    let one: Option<i32> = conn.query_first("SELECT 1").expect("SELECT 1");
    assert_eq!(one, Some(1), "SELECT 1 returned one row with 1");
}

fn mysql_work(variant: &str) -> Work {
    let opts = common::my_opts();
    match variant {
        "dedicated" => {
            let conns: Vec<_> = (0..THREADS)
                .map(|_| Mutex::new(mysql::Conn::new(opts.clone()).expect("MariaDB connection")))
                .collect();
            Box::new(move |thread, queries| {
                let mut conn = conns[thread].lock().expect("one thread per connection");
                for _ in 0..queries {
                    my_select_one(&mut *conn);
                }
            })
        }
        "sluicegate" => {
            let manager = sluicegate::mysql::MysqlConnectionManager::new(opts);
            let pool = sluicegate::Pool::builder()
                .pool_name("drivers-mysql")
                .max_size(CONNECTIONS)
                .build(manager)
                .expect("sluicegate pool");
            let pool = Reported(pool);
            Box::new(move |_, queries| {
                for _ in 0..queries {
                    my_select_one(&mut *pool.0.get().expect("sluicegate check-out"));
                }
            })
        }
        "r2d2" => {
            let pool = r2d2::Pool::builder()
                .max_size(CONNECTIONS)
                .build(R2d2Mysql(opts.into()))
                .expect("r2d2 pool");
            Box::new(move |_, queries| {
                for _ in 0..queries {
                    my_select_one(&mut *pool.get().expect("r2d2 check-out"));
                }
            })
        }
        "mysql_pool" => {
            let size = CONNECTIONS as usize;
            let constraints = mysql::PoolConstraints::new(size, size).expect("8..8");
            let pool_opts = mysql::PoolOpts::default().with_constraints(constraints);
            let pool = mysql::Pool::new(opts.pool_opts(pool_opts)).expect("mysql pool");
            Box::new(move |_, queries| {
                for _ in 0..queries {
                    my_select_one(&mut pool.get_conn().expect("mysql pool check-out"));
                }
            })
        }
        "new_connection" => {
            let opts = mysql::Opts::from(opts);
            Box::new(move |_, queries| {
                for _ in 0..queries {
                    my_select_one(&mut mysql::Conn::new(opts.clone()).expect("MariaDB connection"));
                }
            })
        }
        other => unreachable!("no MariaDB variant {other}"),
    }
}

// ---- the run ----------------------------------------------------------------------------------

/// Why a server could not be reached: where the bench tried to connect, and the error.
type Unreachable = (String, Box<dyn Error>);

/// A database under test: its name in the benchmark ids, its variants, how to make one, and
/// how to tell whether its server is there.
struct Database {
    id: &'static str,
    variants: &'static [&'static str],
    make: fn(&str) -> Work,
    /// `None` if a connection succeeds; where it was going and why it failed if not.
    probe: fn() -> Option<Unreachable>,
    /// The prefix of its environment variables, for the message when it is unreachable.
    vars: &'static str,
}

const POSTGRES: Database = Database {
    id: "postgres",
    variants: &["dedicated", "sluicegate", "r2d2", "new_connection"],
    make: postgres_work,
    probe: || {
        let config = common::pg_config();
        let err = config.connect(NoTls).err()?;
        Some((common::pg_target(&config), Box::new(err)))
    },
    vars: "SLUICEGATE_PG",
};

const MYSQL: Database = Database {
    id: "mysql",
    variants: &[
        "dedicated",
        "sluicegate",
        "r2d2",
        "mysql_pool",
        "new_connection",
    ],
    make: mysql_work,
    probe: || {
        let err = mysql::Conn::new(common::my_opts()).err()?;
        Some((common::my_target(), Box::new(err)))
    },
    vars: "SLUICEGATE_MY",
};

/// Whether `database`'s server takes a connection; if not, says so loudly on stderr.
fn reachable(database: &Database) -> bool {
    let Some((target, err)) = (database.probe)() else {
        return true;
    };
    let what = format!("drivers/{}", database.id);
    common::say_unreachable(&what, &target, &*err, database.vars);
    false
}

/// Where the bench leaves what `scripts/bench_table.py` needs besides criterion's estimates.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sluicegate-bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// `target/sluicegate-bench/drivers_run.csv`: which variants this run measured, so that the table
/// never mixes criterion's estimates of different runs (a skipped database's stay on disk).
struct RunLog {
    run: u64,
    path: PathBuf,
}

impl RunLog {
    fn start(run: u64) -> RunLog {
        let path = out_dir().join("drivers_run.csv");
        let _ = std::fs::write(&path, "run,database,variant\n");
        RunLog { run, path }
    }

    fn measured(&self, database: &str, variant: &str) {
        let line = format!("{},{database},{variant}\n", self.run);
        let file = std::fs::OpenOptions::new().append(true).open(&self.path);
        let _ = file.and_then(|mut file| file.write_all(line.as_bytes()));
    }
}

/// The criterion group: each variant of each reachable database, its connections opened just
/// before it is measured and closed just after.
fn drivers(c: &mut Criterion, databases: &[&Database], log: Option<&RunLog>) {
    let mut group = c.benchmark_group("drivers");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(THREADS as u64));
    for database in databases {
        for &variant in database.variants {
            // A new connection per request is tens to thousands of times slower: a short look
            // is enough to place it.
            let (warm_up, measurement) = if variant == "new_connection" {
                (Duration::from_secs(1), Duration::from_secs(3))
            } else {
                (Duration::from_secs(1), Duration::from_secs(8))
            };
            group.warm_up_time(warm_up).measurement_time(measurement);
            let work = (database.make)(variant);
            let ran = AtomicBool::new(false);
            group.bench_function(BenchmarkId::new(database.id, variant), |b| {
                ran.store(true, Ordering::Relaxed);
                b.iter_custom(|iters| common::time_threads(THREADS, |thread| work(thread, iters)));
            });
            if let Some(log) = log.filter(|_| ran.load(Ordering::Relaxed)) {
                log.measured(database.id, variant);
            }
        }
    }
    group.finish();
}

/// `drivers_paired`: criterion measures one variant after the other, so load that comes and
/// goes on a shared machine moves their ratios. Here the pooled variants and `dedicated` of each
/// database take turns instead, in blocks of `BLOCK` (all 8 threads querying one variant until
/// the block's time is up), the order rotating from round to round; each round gives every
/// variant a ratio to `dedicated` under the same load. Printed, and written to
/// `target/sluicegate-bench/drivers_paired.csv` (one row per block) for `scripts/bench_table.py`.
fn drivers_paired(databases: &[&Database], run: u64) {
    const BLOCK: Duration = Duration::from_millis(200);
    const ROUNDS: usize = 15;

    let mut csv = String::from("run,database,round,variant,queries_per_s\n");
    for database in databases {
        let variants: Vec<&str> = database
            .variants
            .iter()
            .copied()
            .filter(|&v| v != "new_connection")
            .collect();
        let work: Vec<Work> = variants.iter().map(|v| (database.make)(v)).collect();
        // rates[round][variant], queries per second; one warm-up round first, not kept.
        let mut rates = vec![vec![0.0; variants.len()]; ROUNDS];
        for round in 0..=ROUNDS {
            for turn in 0..variants.len() {
                let v = (turn + round) % variants.len();
                let done = AtomicU64::new(0);
                let elapsed = common::time_threads(THREADS, |thread| {
                    let until = Instant::now() + BLOCK;
                    let mut queries = 0;
                    while Instant::now() < until {
                        work[v](thread, 1);
                        queries += 1;
                    }
                    done.fetch_add(queries, Ordering::Relaxed);
                });
                if round > 0 {
                    rates[round - 1][v] = done.into_inner() as f64 / elapsed.as_secs_f64();
                }
            }
        }
        drop(work);
        println!(
            "\ndrivers_paired/{}: {ROUNDS} rounds of {BLOCK:?} per variant, {THREADS} threads",
            database.id
        );
        for (v, variant) in variants.iter().enumerate() {
            let mut ratios: Vec<f64> = rates.iter().map(|r| r[v] / r[0]).collect();
            ratios.sort_by(f64::total_cmp);
            let mean = rates.iter().map(|r| r[v]).sum::<f64>() / ROUNDS as f64;
            let dedicated = rates.iter().map(|r| r[0]).sum::<f64>() / ROUNDS as f64;
            println!(
                "  {variant:<10} {mean:>8.0} queries/s, {:.3}x dedicated; per round: median \
                 {:.3}, p10 {:.3}, p90 {:.3}",
                mean / dedicated,
                ratios[ROUNDS / 2],
                ratios[ROUNDS / 10],
                ratios[ROUNDS * 9 / 10],
            );
            for (round, r) in rates.iter().enumerate() {
                csv.push_str(&format!(
                    "{run},{},{round},{variant},{:.1}\n",
                    database.id, r[v]
                ));
            }
        }
    }
    let _ = std::fs::write(out_dir().join("drivers_paired.csv"), csv);
}

fn main() {
    // `cargo bench --bench drivers -- <filter>` runs only the matching criterion benchmarks;
    // the paired run goes with them when no filter is given, and alone when the filter is
    // "drivers_paired". Under `cargo test` (no `--bench`), `--test` or `--list`, criterion runs
    // or lists each benchmark once, and nothing is written for the tables.
    let (filter, measuring) = common::bench_args();
    let filter = filter.as_deref();
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let databases: Vec<&Database> = [&POSTGRES, &MYSQL]
        .into_iter()
        .filter(|d| reachable(d))
        .collect();
    if filter != Some("drivers_paired") {
        let log = measuring.then(|| RunLog::start(run));
        let mut c = Criterion::default().configure_from_args();
        drivers(&mut c, &databases, log.as_ref());
        c.final_summary();
    }
    if measuring && matches!(filter, None | Some("drivers_paired")) {
        drivers_paired(&databases, run);
    }
}
