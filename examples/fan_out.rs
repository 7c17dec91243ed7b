//! A command-line tool that fans work out over threads through a sluicegate pool, with a progress
//! bar: it imports generated items into a SQLite file in a temporary directory. Each worker
//! thread takes the next batch of items, prepares them (a stand-in for parsing, or a call to
//! another service), then checks out a connection to write the batch in one transaction.
//! At the end it checks what was written and prints the throughput and the pool's numbers.
//!
//! Run: `cargo run --release --example fan_out -- [--items N] [--threads T] [--batch B]
//! [--connections C]` (defaults: 5000 items, 8 threads, batches of 50, 2 connections).
//!
//! SQLite is compiled in and the database file is removed at the end: no server needed.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::TransactionBehavior;
use sluicegate::Pool;
use sluicegate::sqlite::SqliteConnectionManager;

type SqlitePool = Pool<SqliteConnectionManager>;
type BoxError = Box<dyn Error + Send + Sync>;

const USAGE: &str = "usage: fan_out [--items N] [--threads T] [--batch B] [--connections C]";
/// What preparing one item costs, spent asleep: the time a parser or a remote call would take.
const PREPARE: Duration = Duration::from_millis(1);

struct Options {
    items: usize,
    threads: usize,
    batch: usize,
    connections: u32,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(args.into_iter()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("fan_out: {message} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fan_out: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        items: 5000,
        threads: 8,
        batch: 50,
        connections: 2,
    };
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number = value
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("{arg}: {value:?} is not a positive number"))?;
        match arg.as_str() {
            "--items" => options.items = number,
            "--threads" => options.threads = number,
            "--batch" => options.batch = number,
            "--connections" => {
                options.connections =
                    u32::try_from(number).map_err(|_| format!("{arg}: too many"))?;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(options)
}

fn run(options: &Options) -> Result<(), BoxError> {
    // Declared before the pool, so that it is dropped (and the directory removed) after the
    // pool has closed its connections.
    let dir = TempDir::new()?;
    let path = dir.0.join("items.db");
    // WAL lets readers go on while a connection writes. But SQLite has one writer at a time,
    // whatever the pool's size, so the pool is small: the threads beyond its connections wait
    // in its first-come, first-served line, where connections beyond the one writer would
    // wait in SQLite's busy handler, which polls with sleeps. Where the writes dominate, more
    // connections make the import slower: try `--batch 2` with `--connections 8`, then 2.
    let manager = SqliteConnectionManager::file(&path)
        .with_init(|conn| conn.execute_batch("PRAGMA journal_mode = WAL"));
    let pool = Pool::builder()
        .pool_name("import")
        .max_size(options.connections)
        .build(manager)?;
    pool.get()?.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum INTEGER NOT NULL)",
    )?;

    // Hidden when stderr is not a terminal (CI, a pipe), so logs stay clean.
    let bar = ProgressBar::new(options.items as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} items, {per_sec:0}, eta {eta}")?
            .progress_chars("##-"),
    );
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    // Each worker returns its own result; the scope joins them all before we look.
    let results: Vec<Result<(), BoxError>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..options.threads)
            .map(|_| scope.spawn(|| worker(&pool, &next, options, &bar)))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("a worker panicked".into()))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    results.into_iter().collect::<Result<(), _>>()?;

    // Check the import: every item once, with the checksum it was prepared with.
    let (rows, sum): (i64, i64) = pool.get()?.query_row(
        "SELECT count(*), coalesce(sum(checksum), 0) FROM items",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let expected: i64 = (0..options.items).map(|id| checksum(&name(id))).sum();
    if rows != options.items as i64 || sum != expected {
        return Err(format!(
            "wrote {rows} rows with checksum sum {sum}, expected {} and {expected}",
            options.items
        )
        .into());
    }

    let m = pool.metrics();
    println!(
        "imported {} items in {:.2} s ({:.0} items/s): {} threads, {} connections, \
         batches of {}; all {rows} rows check out",
        options.items,
        elapsed.as_secs_f64(),
        options.items as f64 / elapsed.as_secs_f64(),
        options.threads,
        options.connections,
        options.batch,
    );
    let mean_wait = u32::try_from(m.waited)
        .ok()
        .and_then(|waited| m.wait_time.checked_div(waited))
        .unwrap_or_default();
    println!(
        "pool {:?}: {} check-outs, {} of them waited for a connection (mean wait {:.1?}), \
         {} connections opened, {} timeouts",
        pool.name(),
        m.checkouts,
        m.waited,
        mean_wait,
        m.created,
        m.timeouts,
    );
    Ok(())
}

/// Takes batches until there are none left: prepares each batch, then writes it.
fn worker(
    pool: &SqlitePool,
    next: &AtomicUsize,
    options: &Options,
    bar: &ProgressBar,
) -> Result<(), BoxError> {
    loop {
        let start = next.fetch_add(options.batch, Ordering::Relaxed);
        if start >= options.items {
            return Ok(());
        }
        let end = options.items.min(start + options.batch);
        // Prepare first, without a connection: a connection held while this thread does
        // something else is one that another thread waits for.
        let items: Vec<Item> = (start..end).map(prepare).collect();

        // Then check out a connection only for the write. `BEGIN IMMEDIATE` takes SQLite's
        // write lock up front; a transaction that started as a reader and then wrote could
        // fail with "database is locked" instead of waiting.
        let mut conn = pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO items (id, name, checksum) VALUES (?1, ?2, ?3)")?;
            for item in &items {
                insert.execute((item.id, &item.name, item.checksum))?;
            }
        }
        tx.commit()?;
        drop(conn); // back to the pool before the progress bar, not at the end of the loop
        bar.inc(items.len() as u64);
    }
}

struct Item {
    id: i64,
    name: String,
    checksum: i64,
}

/// Makes item `id` ready to write: the part of the work that needs no database.
fn prepare(id: usize) -> Item {
    thread::sleep(PREPARE);
    let name = name(id);
    Item {
        id: id as i64,
        checksum: checksum(&name),
        name,
    }
}

fn name(id: usize) -> String {
    format!("item-{id:06}")
}

/// FNV-1a: something to check the rows against at the end.
fn checksum(name: &str) -> i64 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    i64::from(hash)
}

/// A directory of our own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("sluicegate-fan-out-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
