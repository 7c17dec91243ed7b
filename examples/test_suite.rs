//! How a test suite catches leaked connections with sluicegate: build each test's pool with
//! `leak_detection_threshold(Some(Duration::ZERO))`, and end each test with
//! `pool.assert_no_leaks()`. A connection still checked out there fails the test with where it
//! was borrowed: the file and line, the function, and the backtrace.
//!
//! The `tests` module at the bottom is what you would copy into your own suite: `cargo test`
//! runs it (this example's `[[example]]` entry says `test = true`). `main` goes through the
//! same two cases, a helper that gives its connection back and one that keeps it, and prints
//! the message the leaky one's test fails with.
//!
//! Run: `cargo run --example test_suite` (the walk-through) or
//! `cargo test --example test_suite` (the tests).
//!
//! It runs on SQLite in memory: no server, and each test's pool has a database of its own, so
//! the tests can run in parallel without seeing each other's rows.

use std::error::Error;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Duration;

use sluicegate::sqlite::SqliteConnectionManager;
use sluicegate::{Pool, PooledConnection};

type SqlitePool = Pool<SqliteConnectionManager>;

// ---- The application code under test -------------------------------------------------------

/// Well-behaved: `conn` drops at the end of the function, and the connection goes back.
fn add_user(pool: &SqlitePool, name: &str) -> Result<i64, Box<dyn Error>> {
    let conn = pool.get()?;
    conn.execute("INSERT INTO users (name) VALUES (?1)", [name])?;
    Ok(conn.last_insert_rowid())
}

/// Leaky: keeps its connection "for next time" to save a check-out. The connection never goes
/// back while the counter lives; put a few such counters in long-lived places and the pool runs
/// dry, with timeouts far away from this code.
#[derive(Default)]
struct UserCounter {
    conn: Option<PooledConnection<SqliteConnectionManager>>,
}

impl UserCounter {
    // Test builds are unoptimized and every function shows in a leak's backtrace; this keeps
    // `count` there in an optimized build too (`cargo run --release`), where a function this
    // small would be inlined into its caller and the report would name the caller.
    #[inline(never)]
    fn count(&mut self, pool: &SqlitePool) -> Result<i64, Box<dyn Error>> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => pool.get()?,
        };
        let users = conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
        self.conn = Some(conn); // the bug
        Ok(users)
    }
}

// ---- The test suite's side ------------------------------------------------------------------

/// A pool for one test, named after it (the name heads `assert_no_leaks`'s message): its own
/// in-memory database, with every check-out recorded (threshold zero) so that
/// `assert_no_leaks` can name where a connection still out was borrowed.
fn test_pool(test: &str) -> SqlitePool {
    let pool = Pool::builder()
        .pool_name(test)
        .max_size(2)
        .leak_detection_threshold(Some(Duration::ZERO))
        // A leak that starves the pool then fails the next check-out in seconds, not after
        // the default 30.
        .connection_timeout(Duration::from_secs(5))
        .build(SqliteConnectionManager::memory())
        .expect("an in-memory database opens");
    pool.get()
        .expect("a connection")
        .execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .expect("the schema");
    pool
}

fn main() -> ExitCode {
    // 1. The well-behaved helper: every connection is back, so the assertion passes.
    let pool = test_pool("add_user");
    let id = add_user(&pool, "ada").expect("add_user");
    pool.assert_no_leaks();
    println!("add_user: added user {id}; assert_no_leaks passed: every connection is back");

    // 2. The leaky helper: `counter` still holds a connection when the test asserts.
    let pool = test_pool("user_counter");
    add_user(&pool, "ada").expect("add_user");
    add_user(&pool, "grace").expect("add_user");
    let mut counter = UserCounter::default();
    let users = counter.count(&pool).expect("count");
    // In a test, the panic fails the test. Here we catch it to show its message; the default
    // panic hook would print it to stderr as well, so it is silenced meanwhile.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let caught = panic::catch_unwind(AssertUnwindSafe(|| pool.assert_no_leaks()));
    panic::set_hook(hook);
    let Err(panic) = caught else {
        eprintln!("test_suite: assert_no_leaks missed the connection UserCounter::count kept");
        return ExitCode::FAILURE;
    };
    let message = panic.downcast_ref::<String>().map_or("", String::as_str);
    println!(
        "UserCounter::count: counted {users} users and kept its connection; \
         assert_no_leaks panicked with:\n\n{message}"
    );
    // The file and line are recorded at the check-out; the function's name comes from the
    // binary's symbols, which Rust keeps unless you strip them.
    if !message.contains("borrowed at examples/test_suite.rs:")
        || !message.contains("in test_suite::UserCounter::count")
    {
        eprintln!("test_suite: the message does not name UserCounter::count and its line");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_user_returns_its_connection() {
        let pool = test_pool("add_user_returns_its_connection");
        add_user(&pool, "ada").unwrap();
        pool.assert_no_leaks();
    }

    // In your suite this test would simply fail, with the message `main` prints. Here
    // `should_panic` turns the catch into a pass, so that `cargo test` stays green.
    #[test]
    #[should_panic(expected = "UserCounter::count")]
    fn user_counter_leaks_its_connection() {
        let pool = test_pool("user_counter_leaks_its_connection");
        add_user(&pool, "ada").unwrap();
        let mut counter = UserCounter::default();
        assert_eq!(counter.count(&pool).unwrap(), 1);
        pool.assert_no_leaks(); // panics: `counter` still holds a connection
    }
}
