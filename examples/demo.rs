//! sluice in two minutes, with no database server: a thread-per-request workload against a
//! simulated in-memory database whose connections take a few milliseconds to open (as a real
//! handshake does), run twice: a new connection per request, then through a pool.
//!
//! Then it shows what sluice tells you when the pool runs dry.
//!
//! Run: `cargo run --release --example demo`

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice::{ManageConnection, Pool};

/// The "server": a shared key-value map.
#[derive(Default)]
struct Database {
    rows: Mutex<HashMap<u64, u64>>,
}

/// A session with the database.
struct Session {
    db: Arc<Database>,
}

impl Session {
    /// A read-modify-write "query" that takes a little while, as a round trip does.
    fn increment(&mut self, key: u64) -> u64 {
        thread::sleep(Duration::from_micros(200));
        let mut rows = self.db.rows.lock();
        let value = rows.entry(key).or_insert(0);
        *value += 1;
        *value
    }
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

struct Manager {
    db: Arc<Database>,
    handshake: Duration,
}

impl Manager {
    fn open(&self) -> Session {
        thread::sleep(self.handshake);
        Session {
            db: self.db.clone(),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = Session;
    type Error = DbError;

    fn connect(&self) -> Result<Session, DbError> {
        Ok(self.open())
    }

    fn is_valid(&self, _: &mut Session) -> Result<(), DbError> {
        thread::sleep(Duration::from_micros(100));
        Ok(())
    }

    fn has_broken(&self, _: &mut Session) -> bool {
        false
    }
}

const THREADS: u64 = 32;
const REQUESTS_PER_THREAD: u64 = 40;

/// Runs the workload; `request` serves one request and returns nothing. Returns the
/// throughput and the sorted latencies.
fn run(request: impl Fn(u64) + Send + Sync + 'static) -> (f64, Vec<Duration>) {
    let request = Arc::new(request);
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let request = request.clone();
            thread::spawn(move || {
                (0..REQUESTS_PER_THREAD)
                    .map(|i| {
                        let began = Instant::now();
                        request(t * REQUESTS_PER_THREAD + i);
                        began.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (rate, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at].as_secs_f64() * 1e3
}

fn main() -> Result<(), sluice::Error> {
    let db = Arc::new(Database::default());
    let handshake = Duration::from_millis(5);
    println!(
        "{THREADS} threads x {REQUESTS_PER_THREAD} requests; opening a connection takes {handshake:?}\n"
    );

    let direct = Manager {
        db: db.clone(),
        handshake,
    };
    let (direct_rate, direct_lat) = run(move |key| {
        let mut session = direct.open();
        session.increment(key % 100);
    });

    let pool = Pool::builder()
        .pool_name("demo")
        .max_size(8)
        .connection_timeout(Duration::from_secs(5))
        .build(Manager {
            db: db.clone(),
            handshake,
        })?;
    let p = pool.clone();
    let (pooled_rate, pooled_lat) = run(move |key| {
        let mut session = p.get().expect("a pooled connection");
        session.increment(key % 100);
    });

    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>9}",
        "", "requests/s", "p50 ms", "p99 ms", "max ms"
    );
    for (name, rate, lat) in [
        ("new connection per request", direct_rate, &direct_lat),
        ("sluice, 8 connections", pooled_rate, &pooled_lat),
    ] {
        println!(
            "{name:<26} {rate:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            percentile(lat, 1.0)
        );
    }
    println!("\npool metrics: {:#?}", pool.metrics());

    // Run the pool dry: hold every connection and ask for one more.
    let held: Vec<_> = (0..pool.max_size())
        .map(|_| pool.get())
        .collect::<Result<_, _>>()?;
    let err = pool
        .get_timeout(Duration::from_millis(50))
        .err()
        .expect("the pool is dry");
    println!("\nwhen every connection is out, a check-out fails with:\n  {err}");
    drop(held);
    Ok(())
}
