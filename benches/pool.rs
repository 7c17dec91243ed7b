//! Check-out + return cost: sluicegate against r2d2 0.8 and a bare `Mutex<Vec<_>> + Condvar` floor,
//! side by side in one run, with a manager that does nothing (so only the pool is measured).
//!
//! - `cycle/<pool>/<threads>`: threads looping get + drop on a pool of 4 connections, at 1, 2,
//!   8 and 32 threads. Criterion reports the throughput (check-outs per second, all threads
//!   together).
//! - `overload`: 32 threads on 4 connections, each holding its connection for 1 ms. Printed as
//!   a table of throughput and wait mean / p50 / p99 / max per pool, and written to
//!   `target/sluicegate-bench/overload.csv`.
//!
//! Run: `cargo bench --bench pool` (then `python3 scripts/bench_table.py` for the README table).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

mod common;

use common::{Floor, NoopConn, NoopError, SluicegateNoop};

const CONNECTIONS: u32 = 4;
const THREADS: [usize; 4] = [1, 2, 8, 32];

struct R2d2Noop;

impl r2d2::ManageConnection for R2d2Noop {
    type Connection = NoopConn;
    type Error = NoopError;
    fn connect(&self) -> Result<NoopConn, NoopError> {
        Ok(NoopConn(0))
    }
    fn is_valid(&self, _: &mut NoopConn) -> Result<(), NoopError> {
        Ok(())
    }
    fn has_broken(&self, _: &mut NoopConn) -> bool {
        false
    }
}

/// The pools under test, behind one interface.
#[derive(Clone)]
enum AnyPool {
    Floor(Arc<Floor>),
    Sluicegate(sluicegate::Pool<SluicegateNoop>),
    R2d2(r2d2::Pool<R2d2Noop>),
}

impl AnyPool {
    fn new(kind: &str, size: u32) -> AnyPool {
        match kind {
            "floor" => AnyPool::Floor(Arc::new(Floor::new(size))),
            "sluicegate" => AnyPool::Sluicegate(
                sluicegate::Pool::builder()
                    .max_size(size)
                    .build(SluicegateNoop)
                    .expect("sluicegate pool"),
            ),
            "r2d2" => AnyPool::R2d2(
                r2d2::Pool::builder()
                    .max_size(size)
                    .build(R2d2Noop)
                    .expect("r2d2 pool"),
            ),
            other => unreachable!("unknown pool {other}"),
        }
    }

    /// One check-out, holding the connection for `hold`, and the return.
    #[inline]
    fn cycle(&self, hold: Option<Duration>) {
        match self {
            AnyPool::Floor(pool) => {
                let conn = pool.get();
                if let Some(hold) = hold {
                    thread::sleep(hold);
                }
                black_box(&conn);
            }
            AnyPool::Sluicegate(pool) => {
                let conn = pool.get().expect("sluicegate check-out");
                if let Some(hold) = hold {
                    thread::sleep(hold);
                }
                black_box(&conn);
            }
            AnyPool::R2d2(pool) => {
                let conn = pool.get().expect("r2d2 check-out");
                if let Some(hold) = hold {
                    thread::sleep(hold);
                }
                black_box(&conn);
            }
        }
    }
}

/// Runs `iters` cycles on each of `threads` threads; returns the time from the moment all of
/// them are ready to the moment the last one finishes.
fn run_threads(pool: &AnyPool, threads: usize, iters: u64) -> Duration {
    let ready = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let pool = pool.clone();
            let ready = ready.clone();
            thread::spawn(move || {
                ready.wait();
                for _ in 0..iters {
                    pool.cycle(None);
                }
            })
        })
        .collect();
    common::time_workers(&ready, workers)
}

fn cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        for kind in ["floor", "sluicegate", "r2d2"] {
            let pool = AnyPool::new(kind, CONNECTIONS);
            group.bench_with_input(BenchmarkId::new(kind, threads), &threads, |b, &threads| {
                if threads == 1 {
                    b.iter(|| pool.cycle(None));
                } else {
                    b.iter_custom(|iters| run_threads(&pool, threads, iters));
                }
            });
        }
    }
    group.finish();
}

/// Wait statistics of one overload run.
struct Waits {
    pool: &'static str,
    checkouts: usize,
    elapsed: Duration,
    mean: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn overload_run(kind: &'static str, run_for: Duration) -> Waits {
    const THREADS: usize = 32;
    let pool = AnyPool::new(kind, CONNECTIONS);
    let ready = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let pool = pool.clone();
            let ready = ready.clone();
            thread::spawn(move || {
                let mut waits = Vec::with_capacity(4096);
                ready.wait();
                let stop = Instant::now() + run_for;
                while Instant::now() < stop {
                    let asked = Instant::now();
                    match &pool {
                        AnyPool::Floor(p) => {
                            let conn = p.get();
                            waits.push(asked.elapsed());
                            thread::sleep(Duration::from_millis(1));
                            drop(conn);
                        }
                        AnyPool::Sluicegate(p) => {
                            let conn = p.get().expect("sluicegate check-out");
                            waits.push(asked.elapsed());
                            thread::sleep(Duration::from_millis(1));
                            drop(conn);
                        }
                        AnyPool::R2d2(p) => {
                            let conn = p.get().expect("r2d2 check-out");
                            waits.push(asked.elapsed());
                            thread::sleep(Duration::from_millis(1));
                            drop(conn);
                        }
                    }
                }
                waits
            })
        })
        .collect();
    ready.wait();
    let began = Instant::now();
    let mut waits: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("overload thread"))
        .collect();
    let elapsed = began.elapsed();
    waits.sort_unstable();
    let n = waits.len();
    let mean = waits.iter().sum::<Duration>() / n as u32;
    Waits {
        pool: kind,
        checkouts: n,
        elapsed,
        mean,
        p50: waits[n / 2],
        p99: waits[(n * 99 / 100).min(n - 1)],
        max: waits[n - 1],
    }
}

fn overload() {
    let run_for = Duration::from_secs(3);
    let results: Vec<Waits> = ["floor", "sluicegate", "r2d2"]
        .into_iter()
        .map(|kind| overload_run(kind, run_for))
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut csv = String::from("pool,checkouts_per_s,mean_ms,p50_ms,p99_ms,max_ms\n");
    println!("\noverload: 32 threads, {CONNECTIONS} connections, each held 1 ms");
    println!(
        "{:<8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "pool", "checkouts/s", "mean ms", "p50 ms", "p99 ms", "max ms", "p99/mean"
    );
    for w in &results {
        let rate = w.checkouts as f64 / w.elapsed.as_secs_f64();
        println!(
            "{:<8} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            w.pool,
            rate,
            ms(w.mean),
            ms(w.p50),
            ms(w.p99),
            ms(w.max),
            w.p99.as_secs_f64() / w.mean.as_secs_f64()
        );
        csv.push_str(&format!(
            "{},{:.0},{:.3},{:.3},{:.3},{:.3}\n",
            w.pool,
            rate,
            ms(w.mean),
            ms(w.p50),
            ms(w.p99),
            ms(w.max)
        ));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sluicegate-bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("overload.csv"), csv);
    }
}

criterion_group!(benches, cycle);

fn main() {
    // `cargo bench -- <filter>` runs only the matching criterion benchmarks; the overload table
    // runs when no filter is given or the filter is "overload".
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref() != Some("overload") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.is_none() || filter.as_deref() == Some("overload") {
        overload();
    }
}
