//! Leak detection: what a check-out records when `leak_detection_threshold` is set, how the
//! pool finds the check-outs held too long, and how a [`Leak`] prints.
//!
//! A check-out records when it happened, on which thread, the caller's source location and the
//! raw return addresses of its stack (a few microseconds); symbols are resolved only when a
//! leak is printed. With leak detection off nothing is recorded and nothing here runs.
//!
//! Invariants: the tracker holds one record per connection currently checked out (keyed by
//! connection id, removed when the connection comes back or is detached), and each record is
//! reported (logged, or put in an `assert_no_leaks` panic) and counted at most once.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::human::Human;

/// How many return addresses a check-out records: the pool's own frames (a few) and the
/// caller's nearest ones. Each costs about 0.15 µs to record.
const MAX_FRAMES: usize = 40;

/// A check-out held longer than the pool's `leak_detection_threshold`: which connection, for
/// how long, on which thread, and where it was borrowed.
///
/// Its `Display` prints all of it, the backtrace of the check-out included, starting with the
/// function that called [`Pool::get`](crate::Pool::get) (or one of its siblings).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # use sluicegate::doc_fixture::Manager;
/// let pool = sluicegate::Pool::builder()
///     .max_size(1)
///     .leak_detection_threshold(Some(Duration::ZERO))
///     .build(Manager)?;
/// let conn = pool.get()?;
/// let leaks = pool.leaks();
/// assert_eq!(leaks.len(), 1);
/// assert_eq!(leaks[0].connection_id(), sluicegate::PooledConnection::id(&conn));
/// println!("{}", leaks[0]); // where `conn` was borrowed, and the backtrace
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Clone)]
pub struct Leak {
    pool: Arc<str>,
    connection_id: u64,
    held_for: Duration,
    threshold: Duration,
    record: Arc<Record>,
}

impl Leak {
    /// The leaked connection's id (as in [`PooledConnection::id`](crate::PooledConnection::id)
    /// and the pool's events).
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// assert_eq!(pool.leaks()[0].connection_id(), sluicegate::PooledConnection::id(&conn));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// How long the connection had been checked out when this leak was found.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// std::thread::sleep(Duration::from_millis(5));
    /// assert!(pool.leaks()[0].held_for() >= Duration::from_millis(5));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn held_for(&self) -> Duration {
        self.held_for
    }

    /// The name of the thread that checked the connection out, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let worker = pool.clone();
    /// let conn = std::thread::Builder::new()
    ///     .name("worker-7".into())
    ///     .spawn(move || worker.get())
    ///     .unwrap()
    ///     .join()
    ///     .unwrap()?;
    /// assert_eq!(pool.leaks()[0].thread_name(), Some("worker-7"));
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn thread_name(&self) -> Option<&str> {
        self.record.thread_name.as_deref()
    }

    /// Where in the source the connection was checked out: the caller of [`Pool::get`],
    /// [`Pool::get_timeout`] or [`Pool::try_get`]. Known even in a binary without symbols.
    ///
    /// [`Pool::get`]: crate::Pool::get
    /// [`Pool::get_timeout`]: crate::Pool::get_timeout
    /// [`Pool::try_get`]: crate::Pool::try_get
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?; let line = line!();
    /// assert_eq!(pool.leaks()[0].location().line(), line);
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn location(&self) -> &'static Location<'static> {
        self.record.location
    }

    /// The stack of the thread when it checked the connection out.
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// for frame in pool.leaks()[0].backtrace().frames() {
    ///     println!("{:?} at {:?}:{:?}", frame.function(), frame.file(), frame.line());
    /// }
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn backtrace(&self) -> &Backtrace {
        &self.record.trace
    }

    /// The name of the pool the connection belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder()
    ///     .pool_name("orders")
    ///     .leak_detection_threshold(Some(Duration::ZERO))
    ///     .build(Manager)?;
    /// let conn = pool.get()?;
    /// assert_eq!(pool.leaks()[0].pool(), "orders");
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn pool(&self) -> &str {
        &self.pool
    }
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = &self.record;
        write!(
            f,
            "connection {} of pool {:?} has been checked out for {}",
            self.connection_id,
            self.pool,
            Human(self.held_for),
        )?;
        if !self.threshold.is_zero() {
            write!(f, " (leak detection threshold {})", Human(self.threshold))?;
        }
        f.write_str(" by ")?;
        match &record.thread_name {
            Some(name) => write!(f, "thread {name:?}")?,
            None => write!(f, "an unnamed thread ({:?})", record.thread_id)?,
        }
        write!(f, "; borrowed at {}", record.location)?;
        if let Some(function) = record.trace.borrower().and_then(Frame::function) {
            write!(f, " in {function}")?;
        }
        write!(f, "\nbacktrace of the check-out:\n{}", record.trace)
    }
}

impl fmt::Debug for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leak")
            .field("pool", &self.pool)
            .field("connection_id", &self.connection_id)
            .field("held_for", &self.held_for)
            .field("thread_name", &self.record.thread_name)
            .field("location", &self.record.location)
            .finish_non_exhaustive()
    }
}

/// The stack of a thread at a check-out: raw return addresses, resolved to functions, files
/// and lines the first time it is printed or its [`frames`](Backtrace::frames) are asked for.
///
/// Recording raw addresses costs about half as much as capturing a
/// [`std::backtrace::Backtrace`], which also looks up each frame's function start. Names and
/// lines need the binary's symbols and debug info (`debug = 1` or more in the profile gives
/// lines; a stripped binary gives addresses only).
///
/// # Examples
///
/// ```
/// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
/// let conn = pool.get()?;
/// let leak = &pool.leaks()[0];
/// let trace: &sluicegate::leak::Backtrace = leak.backtrace();
/// println!("{trace}");
/// # Ok::<(), sluicegate::Error>(())
/// ```
pub struct Backtrace {
    addresses: Box<[usize]>,
    frames: OnceLock<Box<[Frame]>>,
}

impl Backtrace {
    /// Records the calling thread's stack, unresolved.
    #[inline(never)]
    fn capture() -> Backtrace {
        let mut addresses = Vec::with_capacity(MAX_FRAMES);
        trace(|frame| {
            addresses.push(frame.ip() as usize);
            addresses.len() < MAX_FRAMES
        });
        Backtrace {
            addresses: addresses.into_boxed_slice(),
            frames: OnceLock::new(),
        }
    }

    /// Every frame recorded, innermost first, the pool's own included; an inlined call gives
    /// one frame per function. Resolved on first use (which reads the binary's debug info).
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// let leaks = pool.leaks();
    /// assert!(!leaks[0].backtrace().frames().is_empty());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn frames(&self) -> &[Frame] {
        self.frames.get_or_init(|| resolve(&self.addresses))
    }

    /// The frame that borrowed the connection: the first one, from the innermost, outside
    /// sluicegate and the standard library. `None` when the binary has no symbols.
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// if let Some(frame) = pool.leaks()[0].backtrace().borrower() {
    ///     println!("borrowed in {:?}", frame.function());
    /// }
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn borrower(&self) -> Option<&Frame> {
        self.frames().iter().find(|frame| !frame.is_machinery())
    }

    /// The frames worth printing: from the borrower outwards (all of them if none is known),
    /// up to where the thread or `main` started (the runtime's frames below say nothing).
    fn printed_frames(&self) -> &[Frame] {
        let frames = self.frames();
        let first = frames
            .iter()
            .position(|frame| !frame.is_machinery())
            .unwrap_or(0);
        let frames = &frames[first..];
        let end = frames
            .iter()
            .position(Frame::is_runtime_start)
            .unwrap_or(frames.len());
        &frames[..end]
    }
}

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, frame) in self.printed_frames().iter().enumerate() {
            write!(f, "{n:>4}: ")?;
            match &frame.function {
                Some(function) => writeln!(f, "{function}")?,
                None => writeln!(f, "{:#x}", frame.address)?,
            }
            if let Some(file) = &frame.file {
                write!(f, "             at {}", file.display())?;
                if let Some(line) = frame.line {
                    write!(f, ":{line}")?;
                    if let Some(column) = frame.column {
                        write!(f, ":{column}")?;
                    }
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.printed_frames()).finish()
    }
}

/// One function on a recorded stack.
///
/// # Examples
///
/// ```
/// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
/// let conn = pool.get()?;
/// let leaks = pool.leaks();
/// let frame: &sluicegate::leak::Frame = &leaks[0].backtrace().frames()[0];
/// println!("{:?}", frame.function());
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Frame {
    address: usize,
    function: Option<String>,
    file: Option<PathBuf>,
    line: Option<u32>,
    column: Option<u32>,
}

impl Frame {
    /// The function's demangled name, without its hash (`my_app::handlers::fetch_user`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// let leaks = pool.leaks();
    /// let names: Vec<_> = leaks[0].backtrace().frames().iter().filter_map(|f| f.function()).collect();
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The source file, when the binary has debug info.
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// let leaks = pool.leaks();
    /// if let Some(frame) = leaks[0].backtrace().borrower() {
    ///     println!("{:?}:{:?}", frame.file(), frame.line());
    /// }
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The line in [`file`](Frame::file), when the binary has debug info.
    ///
    /// # Examples
    ///
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// let lines: Vec<u32> = pool.leaks()[0].backtrace().frames().iter().filter_map(|f| f.line()).collect();
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn line(&self) -> Option<u32> {
        self.line
    }

    /// Whether the frame is where the Rust runtime hands over to a thread's or the program's
    /// code (std marks it for its own backtraces in the same way).
    fn is_runtime_start(&self) -> bool {
        self.function
            .as_deref()
            .is_some_and(|name| name.contains("__rust_begin_short_backtrace"))
    }

    /// Whether the frame belongs to the pool, the backtrace recorder or the standard library,
    /// rather than to the code that borrowed the connection.
    fn is_machinery(&self) -> bool {
        let Some(name) = &self.function else {
            return false;
        };
        let name = name.trim_start_matches('<');
        ["sluicegate::", "backtrace::", "std::", "core::", "alloc::"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
    }
}

/// Walks the calling thread's stack without the `backtrace` crate's process-wide lock.
///
/// That lock also guards symbol resolution, and the first resolution of a process reads the
/// binary's debug information: seconds, for a large binary. Taken on every check-out, it would
/// hold every check-out of every pool up (whatever their timeouts) while a leak report is
/// being written, and keep check-outs from different threads from recording in parallel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trace(callback: impl FnMut(&backtrace::Frame) -> bool) {
    // SAFETY: the walk only reads this thread's own stack through the platform's unwinder,
    // libgcc's `_Unwind_Backtrace`, which is thread-safe (C++ exceptions unwind through it on
    // many threads at once); the lock this skips exists for unwinders that are not (Windows'
    // dbghelp) and for the symbol cache, which a walk does not touch.
    #[allow(unsafe_code)]
    unsafe {
        backtrace::trace_unsynchronized(callback);
    }
}

/// Elsewhere, the crate's own locked walk.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trace(callback: impl FnMut(&backtrace::Frame) -> bool) {
    backtrace::trace(callback);
}

/// Turns return addresses into frames (an inlined call gives several frames for one address).
fn resolve(addresses: &[usize]) -> Box<[Frame]> {
    let mut frames = Vec::with_capacity(addresses.len());
    for &address in addresses {
        let before = frames.len();
        backtrace::resolve(address as *mut std::ffi::c_void, |symbol| {
            frames.push(Frame {
                address,
                function: symbol.name().map(|name| format!("{name:#}")),
                file: symbol.filename().map(Path::to_path_buf),
                line: symbol.lineno(),
                column: symbol.colno(),
            });
        });
        if frames.len() == before {
            frames.push(Frame {
                address,
                function: None,
                file: None,
                line: None,
                column: None,
            });
        }
    }
    frames.into_boxed_slice()
}

/// What a check-out recorded.
struct Record {
    since: Instant,
    thread_name: Option<String>,
    thread_id: ThreadId,
    location: &'static Location<'static>,
    trace: Backtrace,
}

/// A check-out in progress.
struct Borrow {
    record: Arc<Record>,
    reported: bool,
}

/// The check-outs in progress, and when the pool's reaper will next look at them.
struct Borrows {
    by_connection: HashMap<u64, Borrow>,
    /// When the reaper plans to look for leaks next (`None`: it has not planned yet). Once
    /// planned, it is never later than a threshold after the reaper last looked, so a new
    /// check-out (due a threshold after now) never needs to wake it.
    scan_at: Option<Instant>,
}

/// A pool's leak detector: one per pool with a `leak_detection_threshold`.
pub(crate) struct Tracker {
    pool: Arc<str>,
    threshold: Duration,
    borrows: Mutex<Borrows>,
    detected: AtomicU64,
}

/// A leak that came back to the pool after it was reported: for the `info` line.
pub(crate) struct Returned {
    connection_id: u64,
    held_for: Duration,
    threshold: Duration,
    location: &'static Location<'static>,
}

impl fmt::Display for Returned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {} (borrowed at {}), reported as leaked after {}, came back after {}",
            self.connection_id,
            self.location,
            Human(self.threshold),
            Human(self.held_for),
        )
    }
}

impl Tracker {
    pub(crate) fn new(pool: Arc<str>, threshold: Duration) -> Tracker {
        Tracker {
            pool,
            threshold,
            borrows: Mutex::new(Borrows {
                by_connection: HashMap::new(),
                scan_at: None,
            }),
            detected: AtomicU64::new(0),
        }
    }

    /// Whether this is the test-suite mode (`Some(Duration::ZERO)`): every check-out in
    /// progress is a leak when asked, and nothing is reported in the background (it would
    /// report every check-out).
    fn asks_only(&self) -> bool {
        self.threshold.is_zero()
    }

    /// Records a check-out of `connection_id` by the calling thread. Returns whether the
    /// reaper must be woken to watch it (it was watching nothing).
    #[inline(never)]
    pub(crate) fn borrowed(
        &self,
        connection_id: u64,
        location: &'static Location<'static>,
    ) -> bool {
        let trace = Backtrace::capture();
        let current = thread::current();
        let record = Arc::new(Record {
            since: Instant::now(),
            thread_name: current.name().map(str::to_owned),
            thread_id: current.id(),
            location,
            trace,
        });
        let due = record.since.checked_add(self.threshold);
        let mut borrows = self.borrows.lock();
        borrows.by_connection.insert(
            connection_id,
            Borrow {
                record,
                reported: false,
            },
        );
        if self.asks_only() {
            return false;
        }
        match (borrows.scan_at, due) {
            (Some(at), Some(due)) if at <= due => false,
            (_, None) => false,
            (_, due) => {
                borrows.scan_at = due;
                true
            }
        }
    }

    /// `connection_id` came back (or was detached). If it had been reported, says so.
    pub(crate) fn returned(&self, connection_id: u64) -> Option<Returned> {
        let borrow = self.borrows.lock().by_connection.remove(&connection_id)?;
        borrow.reported.then(|| Returned {
            connection_id,
            held_for: borrow.record.since.elapsed(),
            threshold: self.threshold,
            location: borrow.record.location,
        })
    }

    /// The check-outs held at least as long as the threshold, longest first.
    pub(crate) fn leaks(&self) -> Vec<Leak> {
        let now = Instant::now();
        let borrows = self.borrows.lock();
        let mut leaks: Vec<Leak> = borrows
            .by_connection
            .iter()
            .filter_map(|(&id, borrow)| self.leak(id, &borrow.record, now))
            .collect();
        drop(borrows);
        leaks.sort_by_key(|leak| std::cmp::Reverse(leak.held_for));
        leaks
    }

    fn leak(&self, connection_id: u64, record: &Arc<Record>, now: Instant) -> Option<Leak> {
        let held_for = now.saturating_duration_since(record.since);
        (held_for >= self.threshold).then(|| Leak {
            pool: self.pool.clone(),
            connection_id,
            held_for,
            threshold: self.threshold,
            record: record.clone(),
        })
    }

    /// Counts `leaks` as reported, those not reported before.
    pub(crate) fn report(&self, leaks: &[Leak]) {
        let mut borrows = self.borrows.lock();
        let mut fresh = 0;
        for leak in leaks {
            if let Some(borrow) = borrows.by_connection.get_mut(&leak.connection_id) {
                if Arc::ptr_eq(&borrow.record, &leak.record) && !borrow.reported {
                    borrow.reported = true;
                    fresh += 1;
                }
            }
        }
        drop(borrows);
        self.detected.fetch_add(fresh, Ordering::Relaxed);
    }

    /// For the reaper, in a round that started at `start`: the check-outs that crossed the
    /// threshold since it last looked (now counted as reported), and when it should look next.
    pub(crate) fn scan(&self, start: Instant) -> (Vec<Leak>, Option<Instant>) {
        if self.asks_only() {
            return (Vec::new(), None);
        }
        let now = Instant::now();
        let mut borrows = self.borrows.lock();
        let mut found = Vec::new();
        // Looking again a threshold after the round started covers every check-out that
        // starts meanwhile, so that none of them has to wake the reaper.
        let mut next: Option<Instant> = start.checked_add(self.threshold);
        for (&id, borrow) in &mut borrows.by_connection {
            if borrow.reported {
                continue;
            }
            match self.leak(id, &borrow.record, now) {
                Some(leak) => {
                    borrow.reported = true;
                    found.push(leak);
                }
                None => {
                    let due = borrow.record.since.checked_add(self.threshold);
                    next = crate::clock::earliest(next, due);
                }
            }
        }
        borrows.scan_at = next;
        drop(borrows);
        self.detected
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        found.sort_by_key(|leak| std::cmp::Reverse(leak.held_for));
        (found, next)
    }

    /// How many leaks were reported.
    pub(crate) fn detected(&self) -> u64 {
        self.detected.load(Ordering::Relaxed)
    }

    pub(crate) fn threshold(&self) -> Duration {
        self.threshold
    }
}
