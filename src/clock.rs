//! Timestamps for the check-out and check-in paths.
//!
//! Reading `Instant::now` on every check-out and check-in costs about as much as a whole
//! lock/unlock cycle, so the pool stamps connections with the kernel's coarse monotonic clock
//! instead (a few nanoseconds, a few milliseconds of resolution), and falls back to the precise
//! clock when a configured duration is short enough for that resolution to matter. Both read the
//! same time base, so [`Stamp`]s from either compare; waiters' deadlines still use `Instant`.

use std::time::{Duration, Instant};

/// A point on the monotonic clock, in nanoseconds since an arbitrary origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// A deadline that never arrives.
    pub(crate) const NEVER: Stamp = Stamp(u64::MAX);

    /// The clock's origin, for tests that build their own timelines.
    #[cfg(test)]
    pub(crate) const ORIGIN: Stamp = Stamp(0);

    /// `self + d`, or [`Stamp::NEVER`] when that does not fit.
    pub(crate) fn after(self, d: Duration) -> Stamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Stamp(self.0.saturating_add(nanos))
    }

    /// `self - d`, saturating at the clock's origin.
    pub(crate) fn before(self, d: Duration) -> Stamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Stamp(self.0.saturating_sub(nanos))
    }

    /// How long after `earlier` this stamp is (zero if it is not after it).
    pub(crate) fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// The earlier of two optional deadlines (`None`: no deadline).
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Which clock a pool stamps its connections with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Clock {
    /// The kernel's coarse clock: cheap, but only as fine as its tick.
    Coarse,
    /// The precise monotonic clock.
    Precise,
}

/// A duration must span this many ticks of the coarse clock before the coarse clock may
/// measure it: its error is then under 4%.
const TICKS_PER_DURATION: u32 = 25;

impl Clock {
    /// The cheapest clock that can measure `finest`, the shortest duration the hot path compares
    /// stamps against, to within a few percent.
    pub(crate) fn for_finest(finest: Option<Duration>) -> Clock {
        match (finest, sys::coarse_resolution()) {
            (None, Some(_)) => Clock::Coarse,
            (Some(d), Some(res)) if d >= res * TICKS_PER_DURATION => Clock::Coarse,
            _ => Clock::Precise,
        }
    }

    #[inline]
    pub(crate) fn now(self) -> Stamp {
        match self {
            Clock::Coarse => sys::coarse(),
            Clock::Precise => sys::precise(),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use super::Stamp;
    use rustix::time::{ClockId, Timespec, clock_getres, clock_gettime};
    use std::time::Duration;

    fn stamp(ts: Timespec) -> Stamp {
        // CLOCK_MONOTONIC counts from boot, so neither field is ever negative.
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Stamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    #[inline]
    pub(super) fn coarse() -> Stamp {
        stamp(clock_gettime(ClockId::MonotonicCoarse))
    }

    #[inline]
    pub(super) fn precise() -> Stamp {
        stamp(clock_gettime(ClockId::Monotonic))
    }

    pub(super) fn coarse_resolution() -> Option<Duration> {
        let res = clock_getres(ClockId::MonotonicCoarse);
        let secs = u64::try_from(res.tv_sec).ok()?;
        let nanos = u32::try_from(res.tv_nsec).ok()?;
        Some(Duration::new(secs, nanos)).filter(|d| !d.is_zero())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod sys {
    use super::Stamp;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    static ORIGIN: OnceLock<Instant> = OnceLock::new();

    pub(super) fn coarse() -> Stamp {
        precise()
    }

    pub(super) fn precise() -> Stamp {
        let origin = *ORIGIN.get_or_init(Instant::now);
        Stamp(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn coarse_resolution() -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_monotonic_across_clocks() {
        let a = Clock::Precise.now();
        let b = Clock::Precise.now();
        assert!(b >= a);
        // The coarse clock lags the precise one by less than a tick, never leads it.
        let coarse = Clock::Coarse.now();
        let precise = Clock::Precise.now();
        assert!(coarse <= precise);
        assert!(precise.since(coarse) < Duration::from_millis(100));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Stamp(10);
        assert_eq!(t.after(Duration::MAX), Stamp::NEVER);
        assert_eq!(t.before(Duration::from_nanos(20)), Stamp(0));
        assert_eq!(t.since(Stamp(20)), Duration::ZERO);
        assert_eq!(Stamp(25).since(t), Duration::from_nanos(15));
    }

    #[test]
    fn short_durations_get_the_precise_clock() {
        assert_eq!(
            Clock::for_finest(Some(Duration::from_micros(1))),
            Clock::Precise
        );
        if sys::coarse_resolution().is_some() {
            assert_eq!(
                Clock::for_finest(Some(Duration::from_secs(10))),
                Clock::Coarse
            );
            assert_eq!(Clock::for_finest(None), Clock::Coarse);
        }
    }
}
