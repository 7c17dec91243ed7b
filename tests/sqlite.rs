//! `sluicegate::sqlite::SqliteConnectionManager` against the embedded SQLite.
#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::OpenFlags;
use sluicegate::Pool;
use sluicegate::sqlite::SqliteConnectionManager;

/// A database file in the temporary directory, removed when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        let path =
            std::env::temp_dir().join(format!("sluicegate-test-{}-{name}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempDb(path)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

#[test]
fn a_file_database_round_trips_and_its_connections_are_reused() {
    let db = TempDb::new("round-trip");
    let pool = Pool::builder()
        .max_size(3)
        .build(SqliteConnectionManager::file(&db.0))
        .unwrap();
    pool.get()
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    let first = sluicegate::PooledConnection::id(&pool.get().unwrap());
    let conn = pool.get().unwrap();
    assert_eq!(sluicegate::PooledConnection::id(&conn), first);
    assert_eq!(count(&conn, "t"), 2);
    assert_eq!(pool.metrics().created, 3);
}

#[test]
fn memory_is_one_database_shared_by_every_connection_and_kept_with_the_manager() {
    let pool = Pool::builder()
        .max_size(2)
        .build(SqliteConnectionManager::memory())
        .unwrap();
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    a.execute_batch("CREATE TABLE shared (x INTEGER); INSERT INTO shared VALUES (7);")
        .unwrap();
    assert_eq!(count(&b, "shared"), 1);
    drop((a, b));
    // Every pooled connection closes and is replaced: the database stays.
    pool.evict_all();
    assert_eq!(count(&pool.get().unwrap(), "shared"), 1);
    assert!(pool.metrics().closed_evicted >= 2);

    // Another manager's memory database is another database.
    let other = Pool::builder()
        .max_size(1)
        .build(SqliteConnectionManager::memory())
        .unwrap();
    let conn = other.get().unwrap();
    assert!(conn.execute_batch("SELECT * FROM shared").is_err());
}

#[test]
fn init_runs_on_every_new_connection_and_its_error_fails_the_connect() {
    let pool = Pool::builder()
        .max_size(2)
        .build(
            SqliteConnectionManager::memory()
                .with_init(|conn| conn.execute_batch("PRAGMA foreign_keys = ON")),
        )
        .unwrap();
    let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
    for conn in [&a, &b] {
        let on: bool = conn
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert!(on);
    }

    let failing = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(300))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(SqliteConnectionManager::memory().with_init(|conn| conn.execute_batch("NOT SQL")));
    let err = failing.unwrap_err();
    assert!(err.is_timeout());
    assert!(err.to_string().contains("syntax error"), "{err}");
}

#[test]
fn flags_and_busy_timeout_apply() {
    let db = TempDb::new("flags");
    rusqlite::Connection::open(&db.0)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let read_only = SqliteConnectionManager::file(&db.0)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX);
    let pool = Pool::builder().max_size(1).build(read_only).unwrap();
    let conn = pool.get().unwrap();
    assert_eq!(count(&conn, "t"), 0);
    assert!(conn.execute_batch("INSERT INTO t VALUES (1)").is_err());
    let busy_ms: i64 = conn
        .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
        .unwrap();
    assert_eq!(busy_ms, 5000, "the default busy timeout");
}

#[test]
fn debug_shows_where_the_database_is() {
    let manager = SqliteConnectionManager::file("/var/lib/app/app.db");
    let printed = format!("{manager:?}");
    assert!(printed.contains("/var/lib/app/app.db"), "{printed}");
    assert!(format!("{:?}", SqliteConnectionManager::memory()).contains("mode=memory"));
}
