//! The lock, condition variables and yield that the pool's hand-off protocol is built on.
//!
//! In every real build these are parking_lot's and std's, re-exported as they are. With
//! `--cfg sluicegate_model` (tests/model.rs) they are stand-ins with the same API on the
//! `shuttle` crate, whose scheduler explores the interleavings of the pool's threads.
//!
//! Shuttle does not model time (its `wait_timeout` never times out), so in the model a timed
//! wait stands for "the timer may fire at any moment": it releases the lock, lets others run,
//! relocks, and says timed out or not as shuttle's replayable random source decides. That
//! explores immediate timeouts, spurious wake-ups, and hand-offs landing between a waiter's
//! looks. An untimed `wait` really blocks, so shuttle reports a waiter that is never woken.

#[cfg(not(sluicegate_model))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
#[cfg(not(sluicegate_model))]
pub(crate) use std::thread;

#[cfg(sluicegate_model)]
pub(crate) use model::{Condvar, Mutex, MutexGuard, thread};

#[cfg(sluicegate_model)]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;
    use std::time::Instant;

    use shuttle::rand::{Rng, thread_rng};

    /// What the pool uses of `std::thread`, with shuttle's `yield_now` (a scheduling point).
    pub(crate) mod thread {
        pub(crate) use shuttle::thread::yield_now;
        pub(crate) use std::thread::panicking;
    }

    /// parking_lot's `Mutex` API (no poisoning) over shuttle's.
    pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: &self.0,
                guard: Some(relock(&self.0)),
            }
        }
    }

    fn relock<T>(mutex: &shuttle::sync::Mutex<T>) -> shuttle::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds shuttle's guard, which shuttle's `Condvar::wait` takes by value: it is out only
    /// while a wait on this guard is in progress.
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a shuttle::sync::Mutex<T>,
        guard: Option<shuttle::sync::MutexGuard<'a, T>>,
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.guard
                .as_ref()
                .expect("the lock is held outside a wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard
                .as_mut()
                .expect("the lock is held outside a wait")
        }
    }

    /// How a timed wait ended, as parking_lot's `WaitTimeoutResult`.
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    /// parking_lot's `Condvar` API over shuttle's.
    pub(crate) struct Condvar(shuttle::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(shuttle::sync::Condvar::new())
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }

        /// Blocks until notified: a waiter no one wakes is a deadlock shuttle reports.
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let held = guard.guard.take().expect("the lock is held outside a wait");
            guard.guard = Some(self.0.wait(held).unwrap_or_else(PoisonError::into_inner));
        }

        /// The timer may fire at any moment: see the module's doc.
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            drop(guard.guard.take());
            shuttle::thread::yield_now();
            guard.guard = Some(relock(guard.mutex));
            WaitTimeoutResult(thread_rng().gen_bool(0.5))
        }
    }
}
