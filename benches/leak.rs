//! What leak detection costs: the same pool with `leak_detection_threshold(None)` ("off") and
//! `leak_detection_threshold(Some(60 s))` ("on"), side by side in one run.
//!
//! - `leak_cycle/{floor,off,on}`: one thread, check-out + return on a pool of 4 connections that
//!   cost nothing to open or check (as `cycle/sluicegate/1` in `benches/pool.rs`, default settings
//!   otherwise, so `test_on_check_out` is on), and the floor (a bare `Mutex<Vec<_>>` + `Condvar`
//!   pool) as the same run's reference. "on" records the raw return addresses of the stack on
//!   every check-out, so it costs microseconds.
//! - `leak_postgres/{off,on}`: `SELECT 1` on PostgreSQL, 8 threads on 8 connections, default
//!   settings otherwise. One iteration is 800 queries spread over the 8 threads; criterion
//!   reports queries per second. The query goes through the simple-query protocol, one round
//!   trip: the cheapest query there is, so leak detection's share of the cost is as large as it
//!   gets on a real database. Skipped, with a message on stderr, when PostgreSQL is unreachable.
//! - `leak_postgres_paired`: the same two pools taking turns, short blocks of queries each, so
//!   that load coming and going on a shared machine hits both alike; one on / off ratio per
//!   round. Printed, and written to `target/sluicegate-bench/leak_postgres_paired.csv`. Runs after
//!   the criterion groups when no filter is given; `cargo bench --features postgres --bench
//!   leak -- leak_postgres_paired` runs it alone.
//!
//! The PostgreSQL pools use `sluicegate::postgres::PostgresConnectionManager` (so the bench needs
//! feature `postgres`), with settings from the environment (the same names the tests read),
//! with these defaults:
//!
//! | variable | default |
//! |---|---|
//! | `SLUICEGATE_PG_HOST` | `127.0.0.1` |
//! | `SLUICEGATE_PG_PORT` | `5432` |
//! | `SLUICEGATE_PG_USER` | `postgres` |
//! | `SLUICEGATE_PG_PASSWORD` | none |
//! | `SLUICEGATE_PG_DATABASE` | `test` |
//!
//! No TLS. Run: `cargo bench --features postgres --bench leak` (then
//! `python3 scripts/bench_table.py leak` for the README tables; it also reads `cycle/sluicegate/1`
//! from `cargo bench --bench pool`, when there).

use std::hint::black_box;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group};
use postgres::NoTls;
use sluicegate::postgres::PostgresConnectionManager;

mod common;

use common::{Floor, SluicegateNoop};

/// The leak detection threshold of the "on" pools: long enough that nothing is ever reported.
const THRESHOLD: Duration = Duration::from_secs(60);

/// Leak detection settings under test.
const MODES: [(&str, Option<Duration>); 2] = [("off", None), ("on", Some(THRESHOLD))];

// ---- leak_cycle: a manager that does nothing -------------------------------------------------

fn leak_cycle(c: &mut Criterion) {
    const CONNECTIONS: u32 = 4;
    let mut group = c.benchmark_group("leak_cycle");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let floor = Floor::new(CONNECTIONS);
    group.bench_function("floor", |b| {
        b.iter(|| {
            let conn = floor.get();
            black_box(&conn);
        });
    });

    for (mode, threshold) in MODES {
        let pool = sluicegate::Pool::builder()
            .pool_name(format!("leak-cycle-{mode}"))
            .max_size(CONNECTIONS)
            .leak_detection_threshold(threshold)
            .build(SluicegateNoop)
            .expect("sluicegate pool");
        group.bench_function(mode, |b| {
            b.iter(|| {
                let conn = pool.get().expect("sluicegate check-out");
                black_box(&conn);
            });
        });
        assert_eq!(pool.metrics().leaks_detected, 0, "nothing is held 60 s");
    }
    group.finish();
}

// ---- leak_postgres: sluicegate::postgres on a real server ------------------------------------------

/// The pools' manager: the crate's own (empty-query validation, `has_broken` without I/O).
type PgManager = PostgresConnectionManager<NoTls>;

/// One `SELECT 1`, checked.
fn select_one(client: &mut postgres::Client) {
    let messages = client.simple_query("SELECT 1").expect("SELECT 1");
    let one = messages.iter().find_map(|message| match message {
        postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    });
    assert_eq!(one, Some("1"), "SELECT 1 returned one row with 1");
}

/// Runs `queries` check-out + `SELECT 1` + return, spread over `threads` threads; returns the
/// time from the moment all threads are ready to the moment the last one finishes.
fn run_queries(pool: &sluicegate::Pool<PgManager>, threads: u64, queries: u64) -> Duration {
    let ready = Arc::new(Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|n| {
            let pool = pool.clone();
            let ready = ready.clone();
            // The remainder goes to the first threads, so exactly `queries` run.
            let mine = queries / threads + u64::from(n < queries % threads);
            thread::spawn(move || {
                ready.wait();
                for _ in 0..mine {
                    let mut conn = pool.get().expect("PostgreSQL check-out");
                    select_one(&mut conn);
                }
            })
        })
        .collect();
    common::time_workers(&ready, workers)
}

/// Threads and connections of the PostgreSQL runs.
const PG_THREADS: u64 = 8;
const PG_CONNECTIONS: u32 = 8;

/// A manager for the configured server, after one connection to it succeeded; `None` (and a
/// message on stderr, once) when it is unreachable.
fn reachable_postgres() -> Option<PgManager> {
    static REACHABLE: OnceLock<bool> = OnceLock::new();
    let reachable = *REACHABLE.get_or_init(|| {
        let config = common::pg_config();
        let Err(err) = config.connect(NoTls) else {
            return true;
        };
        let target = common::pg_target(&config);
        common::say_unreachable("leak_postgres", &target, &err, "SLUICEGATE_PG");
        false
    });
    reachable.then(|| PostgresConnectionManager::new(common::pg_config(), NoTls))
}

/// A pool of [`PG_CONNECTIONS`] connections, default settings otherwise.
fn pg_pool(
    mode: &str,
    threshold: Option<Duration>,
    manager: PgManager,
) -> sluicegate::Pool<PgManager> {
    let target = common::pg_target(&common::pg_config());
    sluicegate::Pool::builder()
        .pool_name(format!("leak-pg-{mode}"))
        .max_size(PG_CONNECTIONS)
        .leak_detection_threshold(threshold)
        .build(manager)
        .unwrap_or_else(|err| panic!("pool of {PG_CONNECTIONS} connections to {target}: {err}"))
}

fn leak_postgres(c: &mut Criterion) {
    /// Queries per criterion iteration, all threads together.
    const QUERIES: u64 = 800;

    // One connection first, so an unreachable server skips the group instead of failing it.
    if reachable_postgres().is_none() {
        return;
    }
    let mut group = c.benchmark_group("leak_postgres");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(QUERIES));
    for (mode, threshold) in MODES {
        let Some(manager) = reachable_postgres() else {
            return;
        };
        let pool = pg_pool(mode, threshold, manager);
        group.bench_function(mode, |b| {
            b.iter_custom(|iters| run_queries(&pool, PG_THREADS, iters * QUERIES));
        });
        assert_eq!(pool.metrics().leaks_detected, 0, "nothing is held 60 s");
    }
    group.finish();
}

/// `leak_postgres_paired`: the criterion group measures off, then on, so load that comes and
/// goes on a shared machine between the two moves their ratio. Here the same [`PG_THREADS`]
/// threads run both pools in turns, blocks of `BLOCK` each (every thread querying one pool
/// until the block's time is up, so no thread's tail stretches a block), off first in even
/// rounds and on first in odd ones; every round gives one on / off ratio under the same load.
/// Printed, and written to `target/sluicegate-bench/leak_postgres_paired.csv` (one row per round)
/// for `scripts/bench_table.py`.
fn leak_postgres_paired() {
    const BLOCK: Duration = Duration::from_millis(100);
    const ROUNDS: usize = 60;

    let (Some(off_manager), Some(on_manager)) = (reachable_postgres(), reachable_postgres()) else {
        return;
    };
    let pools = [
        pg_pool("paired-off", None, off_manager),
        pg_pool("paired-on", Some(THRESHOLD), on_manager),
    ];
    // Which pool each block uses: 0 (off) or 1 (on). One warm-up round first.
    let plan: Arc<Vec<usize>> = Arc::new(
        (0..=ROUNDS)
            .flat_map(|round| if round % 2 == 0 { [0, 1] } else { [1, 0] })
            .collect(),
    );
    let edge = Arc::new(Barrier::new(PG_THREADS as usize + 1));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..PG_THREADS)
        .map(|_| {
            let (pools, plan, edge, done) =
                (pools.clone(), plan.clone(), edge.clone(), done.clone());
            thread::spawn(move || {
                let mut failed = false;
                for &pool in plan.iter() {
                    edge.wait();
                    let until = Instant::now() + BLOCK;
                    // A failing query must not leave the others waiting at the barrier: this
                    // thread stops querying, keeps meeting them, and reports at the end.
                    let block = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let mut queries = 0;
                        while !failed && Instant::now() < until {
                            let mut conn = pools[pool].get().expect("PostgreSQL check-out");
                            select_one(&mut conn);
                            queries += 1;
                        }
                        queries
                    }));
                    match block {
                        Ok(queries) => done.fetch_add(queries, Ordering::Relaxed),
                        Err(_) => {
                            failed = true;
                            0
                        }
                    };
                    edge.wait();
                }
                assert!(!failed, "a query failed (see the panic above)");
            })
        })
        .collect();
    // Queries per second of each block, in plan order.
    let mut rates = Vec::with_capacity(plan.len());
    for _ in plan.iter() {
        edge.wait();
        let start = Instant::now();
        edge.wait();
        let elapsed = start.elapsed();
        rates.push(done.swap(0, Ordering::Relaxed) as f64 / elapsed.as_secs_f64());
    }
    for worker in workers {
        worker.join().expect("bench thread");
    }
    assert_eq!(pools[1].metrics().leaks_detected, 0, "nothing is held 60 s");

    // (off, on) queries per second of each round after the warm-up one.
    let rounds: Vec<(f64, f64)> = rates
        .chunks(2)
        .zip(plan.chunks(2))
        .skip(1)
        .map(|(rate, pools)| {
            if pools[0] == 0 {
                (rate[0], rate[1])
            } else {
                (rate[1], rate[0])
            }
        })
        .collect();
    let mut ratios: Vec<f64> = rounds.iter().map(|(off, on)| on / off).collect();
    ratios.sort_by(f64::total_cmp);
    let mean =
        |pick: fn(&(f64, f64)) -> f64| rounds.iter().map(pick).sum::<f64>() / rounds.len() as f64;
    let (off_rate, on_rate) = (mean(|r| r.0), mean(|r| r.1));
    println!(
        "\nleak_postgres_paired: {} rounds of {BLOCK:?} per pool, {PG_THREADS} threads, \
         {PG_CONNECTIONS} connections",
        rounds.len()
    );
    println!(
        "off {off_rate:.0} queries/s, on {on_rate:.0} queries/s, on / off {:.3}; per round: \
         median {:.3}, p10 {:.3}, p90 {:.3}",
        on_rate / off_rate,
        ratios[ratios.len() / 2],
        ratios[ratios.len() / 10],
        ratios[ratios.len() * 9 / 10],
    );

    let mut csv = String::from("round,first,off_queries_per_s,on_queries_per_s\n");
    for (n, (off_rate, on_rate)) in rounds.iter().enumerate() {
        // Round 0 (the warm-up) is left out, so the first kept round ran on first.
        let first = if n % 2 == 0 { "on" } else { "off" };
        csv.push_str(&format!("{n},{first},{off_rate:.1},{on_rate:.1}\n"));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sluicegate-bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("leak_postgres_paired.csv"), csv);
    }
}

criterion_group!(benches, leak_cycle, leak_postgres);

fn main() {
    // `cargo bench --bench leak -- <filter>` runs only the matching criterion benchmarks; the
    // paired PostgreSQL run goes with them when no filter is given, and alone when the filter is
    // "leak_postgres_paired".
    // Under `cargo test` (no `--bench`), `--test` or `--list`, criterion runs or lists each
    // benchmark once; the paired run stays out of it.
    let (filter, measuring) = common::bench_args();
    let filter = filter.as_deref();
    if filter != Some("leak_postgres_paired") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if measuring && matches!(filter, None | Some("leak_postgres_paired")) {
        leak_postgres_paired();
    }
}
