//! [`Error`]: why a check-out or a build failed, with what the pool looked like at that moment.
//! The last database error is kept as a [`Cause`], so that every waiter that times out sees it.

use std::error::Error as StdError;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::human::Human;

/// The error type of a pool.
///
/// A timeout's `Display` starts with `timed out waiting for connection`, then, when one is known,
/// `: ` and the last error the database gave (its whole `source()` chain), then the pool's name,
/// how long the caller waited, how many connections were in use, idle, being opened and waited
/// for, and what to do about it.
///
/// `Debug` (what `fn main() -> Result<(), Box<dyn std::error::Error>>` prints on failure, and
/// `unwrap`) prints the same text; `{:#?}` prints it as `Error { kind: Timeout, message: ".." }`.
///
/// # Examples
///
/// ```
/// # use sluicegate::doc_fixture::Manager;
/// let pool = sluicegate::Pool::builder().max_size(1).pool_name("orders").build(Manager)?;
/// let _held = pool.get()?;
/// let err = pool.get_timeout(std::time::Duration::from_millis(10)).unwrap_err();
/// assert!(err.to_string().starts_with("timed out waiting for connection"));
/// assert!(err.to_string().contains("\"orders\""));
/// # Ok::<(), sluicegate::Error>(())
/// ```
#[derive(Clone)]
pub struct Error(Box<Kind>);

#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum Kind {
    #[error("{0}")]
    Timeout(TimedOut),
    #[error(
        "pool {pool:?} is closed: it hands out no connections after Pool::close() \
         or once every Pool handle is dropped"
    )]
    Closed { pool: Arc<str> },
    #[error("invalid pool setting `{setting}`: {problem}")]
    Config {
        setting: &'static str,
        problem: String,
    },
    #[error("pool {pool:?} could not start its background thread: {reason}")]
    Spawn { pool: Arc<str>, reason: String },
    #[error("{0}")]
    Permanent(Permanent),
}

/// A connect error the manager called permanent, while no connection could come back.
#[derive(Clone, Debug)]
pub(crate) struct Permanent {
    pub(crate) pool: Arc<str>,
    pub(crate) waited: Duration,
    pub(crate) cause: Arc<Cause>,
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect: {}; pool {:?} gave up after {} instead of waiting for a \
             connection, because the database gave an error that waiting will not fix: check \
             the user, password and database name (the pool keeps retrying in the background)",
            Chain(&*self.cause),
            self.pool,
            Human(self.waited),
        )
    }
}

/// What a pool looked like when a wait for a connection ran out.
#[derive(Clone, Debug)]
pub(crate) struct TimedOut {
    pub(crate) pool: Arc<str>,
    pub(crate) waited: Duration,
    pub(crate) phase: Phase,
    pub(crate) counts: Counts,
    pub(crate) last_error: Option<LastError>,
}

/// What the caller was waiting for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    /// `get` or `get_timeout`.
    Checkout,
    /// `build`, waiting for its first `target` connections.
    Build { target: u32 },
}

/// The pool's gauges when the wait ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) max_size: u32,
    pub(crate) in_use: u32,
    pub(crate) idle: u32,
    pub(crate) opening: u32,
    pub(crate) waiting: u32,
}

/// The last error the manager reported, and when.
#[derive(Clone, Debug)]
pub(crate) struct LastError {
    pub(crate) cause: Arc<Cause>,
    pub(crate) what: Failed,
    pub(crate) age: Duration,
}

/// Which manager operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    Connect,
    Validation,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Error {
        Error(Box::new(kind))
    }

    pub(crate) fn config(setting: &'static str, problem: impl Into<String>) -> Error {
        Error::new(Kind::Config {
            setting,
            problem: problem.into(),
        })
    }

    pub(crate) fn closed(pool: &Arc<str>) -> Error {
        Error::new(Kind::Closed { pool: pool.clone() })
    }

    /// Whether the caller gave up waiting for a connection (`get`, `get_timeout` or `build`):
    /// the pool is exhausted, or the database is slow or down ([`last_error`](Error::last_error)
    /// says which). In a server, answer with 503 and let the client retry; raising the timeout
    /// only makes callers queue longer.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let _held = pool.get()?;
    /// let err = pool.get_timeout(std::time::Duration::ZERO).unwrap_err();
    /// assert!(err.is_timeout() && !err.is_closed());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(*self.0, Kind::Timeout(_))
    }

    /// Whether the pool was closed (by [`Pool::close`](crate::Pool::close), or because every
    /// `Pool` handle was dropped).
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::new(Manager)?;
    /// pool.close();
    /// assert!(pool.get().unwrap_err().is_closed());
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(*self.0, Kind::Closed { .. })
    }

    /// Whether the database refused to connect for a reason that waiting will not fix (the
    /// manager's [`is_permanent`](crate::ManageConnection::is_permanent) said so), and the
    /// pool had no connection to wait for: the check-out or `build` failed at once.
    /// [`last_error`](Error::last_error) gives the database's error. Fix the settings: the pool
    /// keeps retrying in the background, with back-off, and recovers once they are right.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::Manager;
    /// let pool = sluicegate::Pool::builder().max_size(1).build(Manager)?;
    /// let _held = pool.get()?;
    /// let err = pool.get_timeout(std::time::Duration::from_millis(1)).unwrap_err();
    /// assert!(!err.is_permanent()); // a timeout
    /// # Ok::<(), sluicegate::Error>(())
    /// ```
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(*self.0, Kind::Permanent(_))
    }

    /// The last connect or validation error the pool met before this timeout, with its
    /// `source()` chain kept (as text: a driver's error need not be `Send`).
    ///
    /// It is also part of this error's `Display`, so it is not repeated as `source()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use sluicegate::doc_fixture::RefusingManager as Manager; // every connect: "refused"
    /// let err = sluicegate::Pool::builder()
    ///     .connection_timeout(std::time::Duration::from_millis(100))
    ///     .error_handler(Box::new(sluicegate::NopErrorHandler))
    ///     .build(Manager)
    ///     .unwrap_err();
    /// assert_eq!(err.last_error().unwrap().to_string(), "refused");
    /// ```
    #[must_use]
    pub fn last_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match &*self.0 {
            Kind::Timeout(t) => t.last_error.as_ref().map(|l| &*l.cause as _),
            Kind::Permanent(p) => Some(&*p.cause as _),
            _ => None,
        }
    }
}

// By hand, as `Error`'s doc says: what `main` and `unwrap` print should be the message, not the
// internal structs.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            let kind = match &*self.0 {
                Kind::Timeout(_) => "Timeout",
                Kind::Closed { .. } => "Closed",
                Kind::Config { .. } => "Config",
                Kind::Spawn { .. } => "Spawn",
                Kind::Permanent(_) => "Permanent",
            };
            f.debug_struct("Error")
                .field("kind", &format_args!("{kind}"))
                .field("message", &self.to_string())
                .finish()
        } else {
            fmt::Display::fmt(&self.0, f)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Error {}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for connection")?;
        if let Some(last) = &self.last_error {
            let what = match last.what {
                Failed::Connect => "connect",
                Failed::Validation => "validation",
            };
            write!(
                f,
                ": {} (last {what} error, {} ago)",
                Chain(&*last.cause),
                Human(last.age)
            )?;
        }
        let c = self.counts;
        write!(f, "; pool {:?} waited {}", self.pool, Human(self.waited))?;
        if let Phase::Build { target } = self.phase {
            write!(
                f,
                " for the {target} connection{} min_idle asks for",
                if target == 1 { "" } else { "s" }
            )?;
        }
        write!(
            f,
            " with {} of max_size {} connections in use, {} idle, {} being opened, \
             {} other thread{} waiting",
            c.in_use,
            c.max_size,
            c.idle,
            c.opening,
            c.waiting,
            if c.waiting == 1 { "" } else { "s" }
        )?;
        let hint = if self.last_error.as_ref().map(|l| l.what) == Some(Failed::Connect) {
            "check that the database is up and accepts these settings"
        } else if c.in_use >= c.max_size {
            "every connection is in use: return connections sooner, raise max_size, \
             or look for a leaked connection"
        } else if c.opening > 0 {
            "a new connection did not open in time: the database may be slow to accept \
             connections"
        } else {
            "raise the timeout, or max_size"
        };
        write!(f, ": {hint}")
    }
}

/// A captured error: its message and its `source()` chain, owned, `Send` and `Sync`.
#[derive(Clone, Debug)]
pub(crate) struct Cause {
    message: String,
    source: Option<Box<Cause>>,
}

impl Cause {
    /// Captures `error` and every error in its `source()` chain. A driver's `Display` or
    /// `source()` that panics leaves a note in the text instead: this runs where a panic
    /// would leave the pool's counts unbalanced.
    pub(crate) fn capture(error: &(dyn StdError + 'static)) -> Cause {
        let mut message = catch_unwind(AssertUnwindSafe(|| error.to_string()))
            .unwrap_or_else(|_| "<the error's Display panicked>".to_owned());
        // libpq's messages (diesel's PostgreSQL errors) end with a newline, which would split
        // the pool's own sentence that follows the cause.
        message.truncate(message.trim_end().len());
        let source = match catch_unwind(AssertUnwindSafe(|| error.source())) {
            Ok(source) => source.map(|s| Box::new(Cause::capture(s))),
            Err(_) => Some(Box::new(Cause::message("<the error's source() panicked>"))),
        };
        Cause { message, source }
    }

    /// A cause with a message and no source.
    pub(crate) fn message(message: impl Into<String>) -> Cause {
        Cause {
            message: message.into(),
            source: None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

/// Displays an error and its `source()` chain as `outer: inner: innermost`, skipping a source
/// whose text its parent already printed.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = self.0.to_string();
        f.write_str(&printed)?;
        let mut next = self.0.source();
        while let Some(err) = next {
            let text = err.to_string();
            if !text.is_empty() && !printed.contains(&text) {
                write!(f, ": {text}")?;
                printed = text;
            }
            next = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|s| s as _)
        }
    }

    #[test]
    fn chain_prints_every_source_once() {
        let err = Layer(
            "db error",
            Some(Box::new(Layer(
                "FATAL: password authentication failed",
                Some(Box::new(Layer("password authentication failed", None))),
            ))),
        );
        assert_eq!(
            Chain(&err).to_string(),
            "db error: FATAL: password authentication failed"
        );
        let cause = Cause::capture(&err);
        assert_eq!(cause.to_string(), "db error");
        assert_eq!(
            cause.source().unwrap().to_string(),
            "FATAL: password authentication failed"
        );
        assert_eq!(Chain(&cause).to_string(), Chain(&err).to_string());
    }

    #[test]
    fn debug_says_what_display_says() {
        let err = Error::config("max_size", "must be at least 1, got 0");
        assert_eq!(format!("{err:?}"), err.to_string());
        assert_eq!(
            format!("{err:#?}"),
            "Error {\n    kind: Config,\n    message: \"invalid pool setting `max_size`: must be \
             at least 1, got 0\",\n}"
        );
        let closed = Error::closed(&Arc::from("orders"));
        assert!(format!("{closed:?}").starts_with("pool \"orders\" is closed"));
    }

    #[test]
    fn error_is_send_sync() {
        fn check<T: Send + Sync + StdError + 'static>() {}
        check::<Error>();
    }
}
