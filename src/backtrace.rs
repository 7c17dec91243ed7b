//! The stack a check-out records for leak reports ([`Backtrace`]). Invariant: its frames are
//! resolved at most once (resolution is slow), and never on the check-out path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How many return addresses a check-out records: the pool's own frames (a few) and the
/// caller's nearest ones. Each costs about 0.15 µs to record.
const MAX_FRAMES: usize = 40;

/// The stack of a thread at a check-out: raw return addresses, resolved to functions, files
/// and lines the first time it is printed or its [`frames`](Backtrace::frames) are asked for.
///
/// Recording raw addresses costs about half as much as capturing a
/// [`std::backtrace::Backtrace`], which also looks up each frame's function start. Names and
/// lines need the binary's symbols and debug info (`debug = 1` or more in the profile gives
/// lines; a stripped binary gives addresses only).
///
/// ```
/// fn print(trace: &sluicegate::leak::Backtrace) { println!("{trace}") }
/// ```
pub struct Backtrace {
    addresses: Box<[usize]>,
    frames: OnceLock<Box<[Frame]>>,
}

impl Backtrace {
    /// Records the calling thread's stack, unresolved.
    #[inline(never)]
    pub(crate) fn capture() -> Backtrace {
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
    /// ```
    /// # let pool = sluicegate::doc_fixture::leak_checked_pool()?;
    /// let conn = pool.get()?;
    /// assert!(!pool.leaks()[0].backtrace().frames().is_empty());
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
/// for frame in pool.leaks()[0].backtrace().frames() {
///     println!("{:?} at {:?}:{:?}", frame.function(), frame.file(), frame.line());
/// }
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
    /// ```
    /// fn function(frame: &sluicegate::leak::Frame) -> Option<&str> { frame.function() }
    /// ```
    #[must_use]
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The source file, when the binary has debug info.
    ///
    /// ```
    /// fn file(frame: &sluicegate::leak::Frame) -> Option<&std::path::Path> { frame.file() }
    /// ```
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The line in [`file`](Frame::file), when the binary has debug info.
    ///
    /// ```
    /// fn line(frame: &sluicegate::leak::Frame) -> Option<u32> { frame.line() }
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
