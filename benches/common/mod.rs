//! What the benches share: a manager whose connections cost nothing (so only the pool is
//! measured), the floor (the least a blocking pool can do), the timing of a batch of threads,
//! and the settings of the database servers, read from the same `SLUICEGATE_PG_*` and
//! `SLUICEGATE_MY_*` variables as the tests.
#![allow(dead_code)]

use std::sync::Barrier;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A connection that costs nothing to open, check or close.
#[derive(Debug)]
pub struct NoopConn(pub u64);

#[derive(Debug)]
pub struct NoopError;

impl std::fmt::Display for NoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("noop")
    }
}

impl std::error::Error for NoopError {}

/// A sluicegate manager of [`NoopConn`]s.
pub struct SluicegateNoop;

impl sluicegate::ManageConnection for SluicegateNoop {
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

/// The floor: the least a blocking pool can do.
pub struct Floor {
    idle: Mutex<Vec<NoopConn>>,
    returned: Condvar,
}

pub struct FloorGuard<'a> {
    pool: &'a Floor,
    conn: Option<NoopConn>,
}

impl Floor {
    pub fn new(size: u32) -> Floor {
        Floor {
            idle: Mutex::new((0..u64::from(size)).map(NoopConn).collect()),
            returned: Condvar::new(),
        }
    }

    pub fn get(&self) -> FloorGuard<'_> {
        let mut idle = self.idle.lock();
        loop {
            if let Some(conn) = idle.pop() {
                return FloorGuard {
                    pool: self,
                    conn: Some(conn),
                };
            }
            self.returned.wait(&mut idle);
        }
    }
}

impl Drop for FloorGuard<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().push(conn);
            self.pool.returned.notify_one();
        }
    }
}

/// Releases `workers`, all waiting on `ready`, and times them until the last one finishes.
pub fn time_workers(ready: &Barrier, workers: Vec<JoinHandle<()>>) -> Duration {
    ready.wait();
    let start = Instant::now();
    for worker in workers {
        worker.join().expect("bench thread");
    }
    start.elapsed()
}

/// Runs `work(n)` on `threads` scoped threads (n = 0, 1, ...), released together, and times
/// them as [`time_workers`] does: from their release until the last one finishes. The threads
/// borrow, so `work` can use the caller's pools and connections as they are.
pub fn time_threads(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let ready = Barrier::new(threads + 1);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|n| {
                let (ready, work) = (&ready, &work);
                scope.spawn(move || {
                    ready.wait();
                    work(n);
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("bench thread");
        }
        start.elapsed()
    })
}

// ---- database servers ---------------------------------------------------------------------

/// `name` from the environment, or `default` when unset or empty.
fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The PostgreSQL server of the tests: `SLUICEGATE_PG_HOST` (default `127.0.0.1`), `SLUICEGATE_PG_PORT`
/// (`5432`), `SLUICEGATE_PG_USER` (`postgres`), `SLUICEGATE_PG_PASSWORD` (none), `SLUICEGATE_PG_DATABASE`
/// (`test`). No TLS.
pub fn pg_config() -> postgres::Config {
    let mut config = postgres::Config::new();
    config
        .host(&env("SLUICEGATE_PG_HOST", "127.0.0.1"))
        .port(
            env("SLUICEGATE_PG_PORT", "5432")
                .parse()
                .expect("SLUICEGATE_PG_PORT is a port number"),
        )
        .user(&env("SLUICEGATE_PG_USER", "postgres"))
        .dbname(&env("SLUICEGATE_PG_DATABASE", "test"))
        .connect_timeout(Duration::from_secs(5))
        .application_name("sluicegate-bench");
    if let Ok(password) = std::env::var("SLUICEGATE_PG_PASSWORD") {
        config.password(password);
    }
    config
}

/// Where `config` connects, for messages (no password).
pub fn pg_target(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "?".to_owned(),
    };
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        host,
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or("?"),
    )
}

/// The MariaDB (or MySQL) server of the tests: `SLUICEGATE_MY_HOST` (default `127.0.0.1`),
/// `SLUICEGATE_MY_PORT` (`3306`), `SLUICEGATE_MY_USER` (`root`), `SLUICEGATE_MY_PASSWORD` (empty),
/// `SLUICEGATE_MY_DATABASE` (`test`). The driver's defaults otherwise (so, as in the tests, a
/// connection to a loopback address moves to the server's Unix socket when it has one).
#[cfg(feature = "mysql")]
pub fn my_opts() -> mysql::OptsBuilder {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some(env("SLUICEGATE_MY_HOST", "127.0.0.1")))
        .tcp_port(
            env("SLUICEGATE_MY_PORT", "3306")
                .parse()
                .expect("SLUICEGATE_MY_PORT is a port number"),
        )
        .user(Some(env("SLUICEGATE_MY_USER", "root")))
        .pass(std::env::var("SLUICEGATE_MY_PASSWORD").ok())
        .db_name(Some(env("SLUICEGATE_MY_DATABASE", "test")))
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
}

/// Where [`my_opts`] connects, for messages (no password).
#[cfg(feature = "mysql")]
pub fn my_target() -> String {
    format!(
        "mysql://{}@{}:{}/{}",
        env("SLUICEGATE_MY_USER", "root"),
        env("SLUICEGATE_MY_HOST", "127.0.0.1"),
        env("SLUICEGATE_MY_PORT", "3306"),
        env("SLUICEGATE_MY_DATABASE", "test"),
    )
}

/// Says on stderr, so that nobody misses it, that `what` is skipped because `target` could not
/// be reached, with `err` and its whole `source()` chain.
pub fn say_unreachable(what: &str, target: &str, err: &dyn std::error::Error, vars: &str) {
    eprintln!();
    eprintln!("==================================================================");
    eprintln!("SKIPPING {what}: cannot connect to {target}:");
    eprintln!("  {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    eprintln!("Set {vars}_HOST / _PORT / _USER / _PASSWORD / _DATABASE to point");
    eprintln!("the bench at another server.");
    eprintln!("==================================================================");
    eprintln!();
}

/// What `cargo bench` passed a bench binary: the filter (the first argument that is not a
/// flag), and whether criterion is measuring (`--bench`, and neither `--test` nor `--list`:
/// under `cargo test` it runs or lists each benchmark once, and nothing should be recorded).
pub fn bench_args() -> (Option<String>, bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let measuring =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    (filter, measuring)
}
