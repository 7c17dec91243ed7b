//! SQLite through `rusqlite`, with SQLite compiled in (feature `sqlite`):
//! [`SqliteConnectionManager`], with the constructors of r2d2_sqlite (`file`, `memory`,
//! `with_flags`, `with_init`), so moving from it is a change of path (but see
//! [`memory`](SqliteConnectionManager::memory) and
//! [`with_busy_timeout`](SqliteConnectionManager::with_busy_timeout)).
//!
//! ```
//! use sluicegate::sqlite::SqliteConnectionManager;
//!
//! # let path = std::env::temp_dir().join(format!("sluicegate-doc-{}.db", std::process::id()));
//! let pool = sluicegate::Pool::new(SqliteConnectionManager::file(&path))?;
//! let two: i64 = pool.get()?.query_row("SELECT 1 + 1", [], |row| row.get(0))?;
//! # drop(pool);
//! # std::fs::remove_file(&path).ok();
//! assert_eq!(two, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # One SQLite per build
//!
//! Cargo allows only one crate with rusqlite's `links = "sqlite3"` in a build: two versions of
//! `libsqlite3-sys` do not resolve ("package `libsqlite3-sys` links to the native library
//! `sqlite3`, but it conflicts with a previous package"). This feature uses rusqlite 0.40
//! (libsqlite3-sys 0.38), the version r2d2_sqlite 0.35 uses and within the range diesel 2.3's
//! `sqlite` backend accepts, so a project may use all three. With another rusqlite, leave the
//! `sqlite` feature off and pool your own manager, or r2d2_sqlite's through
//! [`R2d2Manager`](crate::r2d2::R2d2Manager) (feature `r2d2`). Nothing else in sluicegate links
//! SQLite; the default features build the pool alone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

/// Names in-memory databases uniquely within the process.
static MEMORY_DATABASES: AtomicU64 = AtomicU64::new(1);

/// How long a connection waits for another's lock by default.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs on every new connection, after it opened.
type Init = Box<dyn Fn(&mut Connection) -> Result<(), rusqlite::Error> + Send + Sync>;

enum Source {
    File(PathBuf),
    /// A shared-cache in-memory database, named by `uri`. `anchor` holds one connection to it
    /// from the first connect on, so the database outlives the pool's own connections (SQLite
    /// drops an in-memory database with its last connection).
    Memory {
        uri: String,
        anchor: Mutex<Option<Connection>>,
    },
}

/// Opens SQLite connections for a pool.
///
/// # Examples
///
/// ```
/// use sluicegate::sqlite::SqliteConnectionManager;
/// let pool = sluicegate::Pool::new(SqliteConnectionManager::memory())?;
/// let x: i64 = pool.get()?.query_row("SELECT 41 + 1", [], |row| row.get(0))?;
/// assert_eq!(x, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteConnectionManager {
    source: Source,
    flags: OpenFlags,
    busy_timeout: Duration,
    init: Option<Init>,
}

impl SqliteConnectionManager {
    /// Connections to the database file at `path` (created if missing, with the default
    /// flags).
    ///
    /// # Examples
    ///
    /// ```
    /// use sluicegate::sqlite::SqliteConnectionManager;
    /// let path = std::env::temp_dir().join(format!("sluicegate-doc-{}.db", std::process::id()));
    /// let pool = sluicegate::Pool::new(SqliteConnectionManager::file(&path))?;
    /// pool.get()?.execute_batch("CREATE TABLE IF NOT EXISTS t (x INTEGER)")?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file(path: impl AsRef<Path>) -> SqliteConnectionManager {
        SqliteConnectionManager::new(Source::File(path.as_ref().to_path_buf()))
    }

    /// Connections to one in-memory database of their own, shared by every connection this
    /// manager opens and kept as long as the manager lives (r2d2_sqlite gives each connection a
    /// private, empty one).
    ///
    /// The connections share SQLite's cache, whose locks are per table and are not waited
    /// for: a statement that meets one fails with "database table is locked". That suits
    /// tests and read-mostly caches; for concurrent writers, use a [`file`](Self::file) in
    /// WAL mode (`PRAGMA journal_mode = WAL` in [`with_init`](Self::with_init)).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = sluicegate::Pool::new(sluicegate::sqlite::SqliteConnectionManager::memory())?;
    /// pool.get()?.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42);")?;
    /// pool.evict_all(); // every pooled connection is replaced; the data stays
    /// let x: i64 = pool.get()?.query_row("SELECT x FROM t", [], |row| row.get(0))?;
    /// assert_eq!(x, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memory() -> SqliteConnectionManager {
        let n = MEMORY_DATABASES.fetch_add(1, Ordering::Relaxed);
        let uri = format!(
            "file:sluicegate-memory-{}-{n}?mode=memory&cache=shared",
            std::process::id()
        );
        SqliteConnectionManager::new(Source::Memory {
            uri,
            anchor: Mutex::new(None),
        })
    }

    fn new(source: Source) -> SqliteConnectionManager {
        SqliteConnectionManager {
            source,
            flags: OpenFlags::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            init: None,
        }
    }

    /// Opens connections with `flags` instead of rusqlite's default (read-write, create,
    /// URI file names, no mutex). An in-memory database always gets `SQLITE_OPEN_URI`, which
    /// it needs.
    ///
    /// ```
    /// use rusqlite::OpenFlags;
    /// let manager = sluicegate::sqlite::SqliteConnectionManager::file("app.db")
    ///     .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX);
    /// ```
    #[must_use]
    pub fn with_flags(mut self, flags: OpenFlags) -> SqliteConnectionManager {
        self.flags = flags;
        self
    }

    /// Runs `init` on every new connection before the pool uses it (pragmas, functions,
    /// attached databases). An error fails that connect.
    ///
    /// ```
    /// let manager = sluicegate::sqlite::SqliteConnectionManager::memory()
    ///     .with_init(|conn| conn.execute_batch("PRAGMA foreign_keys = ON"));
    /// ```
    #[must_use]
    pub fn with_init<F>(mut self, init: F) -> SqliteConnectionManager
    where
        F: Fn(&mut Connection) -> Result<(), rusqlite::Error> + Send + Sync + 'static,
    {
        self.init = Some(Box::new(init));
        self
    }

    /// How long a connection waits for a lock another connection holds before a statement
    /// fails with `SQLITE_BUSY`. Default 5 seconds; `Duration::ZERO` fails at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// let manager = sluicegate::sqlite::SqliteConnectionManager::memory()
    ///     .with_busy_timeout(Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_busy_timeout(mut self, timeout: Duration) -> SqliteConnectionManager {
        self.busy_timeout = timeout;
        self
    }

    fn open(&self) -> Result<Connection, rusqlite::Error> {
        match &self.source {
            Source::File(path) => Connection::open_with_flags(path, self.flags),
            Source::Memory { uri, anchor } => {
                let flags = self.flags | OpenFlags::SQLITE_OPEN_URI;
                let mut anchor = anchor.lock();
                if anchor.is_none() {
                    *anchor = Some(Connection::open_with_flags(uri, flags)?);
                }
                drop(anchor);
                Connection::open_with_flags(uri, flags)
            }
        }
    }
}

impl crate::ManageConnection for SqliteConnectionManager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        self.connect_within(self.busy_timeout, &mut crate::Extensions::new())
    }

    /// Opens the database; the initialisation (`with_init`: a `PRAGMA journal_mode = WAL`
    /// waits for every other connection's lock) waits no longer than `timeout` for a lock,
    /// and the connection then gets its busy timeout.
    fn connect_within(
        &self,
        timeout: Duration,
        _: &mut crate::Extensions,
    ) -> Result<Connection, rusqlite::Error> {
        let mut conn = self.open()?;
        if let Some(init) = &self.init {
            conn.busy_timeout(self.busy_timeout.min(timeout))?;
            init(&mut conn)?;
        }
        conn.busy_timeout(self.busy_timeout)?;
        Ok(conn)
    }

    /// Runs an empty statement, which takes no lock and so never waits, whatever the deadline.
    fn is_valid(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        conn.execute_batch("")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        // An embedded database has no session to lose.
        false
    }
}

impl fmt::Debug for SqliteConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SqliteConnectionManager");
        match &self.source {
            Source::File(path) => d.field("file", path),
            Source::Memory { uri, .. } => d.field("memory", uri),
        };
        d.field("flags", &self.flags)
            .field("busy_timeout", &self.busy_timeout)
            .field("init", &self.init.is_some())
            .finish()
    }
}
