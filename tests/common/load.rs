//! Load on a pool for the scenarios of common/faults.rs and common/restart.rs (each declares
//! this file as a module of its own, so no test file needs to): threads looping check-out and
//! query, each recording every check-out, until the load ends.
//!
//! The test moves the load through [`UP`], [`DOWN`] and [`BACK`] as its server goes down and
//! comes back; each worker tells it once per phase that the phase has reached it (see
//! [`Event`]), and everything it recorded at the end.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use sluicegate::{ManageConnection, Pool, PooledConnection};

/// Where the test is when a check-out begins: before the fault, ...
pub const UP: u8 = 0;
/// ... while the server is down (a scenario that waits for no failure stays [`UP`]), ...
pub const DOWN: u8 = 1;
/// ... and once it is back.
pub const BACK: u8 = 2;

/// One check-out and what came of it.
pub struct Get<T> {
    pub worker: usize,
    pub began: Instant,
    /// When `get` returned.
    pub got: Instant,
    /// When the query returned (`got`, when there was no connection to query).
    pub ended: Instant,
    /// The connection's id, or why there was none.
    pub outcome: Result<u64, sluicegate::Error>,
    /// The query on the connection, if one was checked out.
    pub query: Option<Result<T, String>>,
}

impl<T> Get<T> {
    /// How long `get` took.
    pub fn took(&self) -> Duration {
        self.got - self.began
    }

    /// Whether the check-out or its query failed.
    pub fn failed(&self) -> bool {
        !matches!(self.query, Some(Ok(_)))
    }
}

/// What a worker tells the test: each of the first three once.
pub enum Event<T> {
    /// A query answered in phase [`UP`].
    Warm,
    /// A check-out failed in phase [`DOWN`].
    Failed,
    /// A query answered in phase [`BACK`], at this instant.
    Recovered(Instant),
    /// Every check-out, when the load ended.
    Finished(Vec<Get<T>>),
}

/// Threads looping check-out and query on a pool. Ends the load when dropped, also when the
/// test fails.
pub struct Load<T> {
    workers: usize,
    /// The phase the workers are in: [`UP`], [`DOWN`] or [`BACK`].
    pub phase: Arc<AtomicU8>,
    /// Set when the load is to end.
    pub done: Arc<AtomicBool>,
    events: Receiver<(usize, Event<T>)>,
}

impl<T: Send + 'static> Load<T> {
    /// Starts `workers` threads, in phase [`UP`], each looping `pool.get()` and `query` on the
    /// connection, a millisecond apart.
    pub fn start<M, Q>(pool: &Pool<M>, workers: usize, query: Q) -> Load<T>
    where
        M: ManageConnection,
        Q: Fn(&mut M::Connection) -> Result<T, String> + Clone + Send + 'static,
    {
        let (tx, events) = crossbeam_channel::unbounded();
        let load = Load {
            workers,
            phase: Arc::new(AtomicU8::new(UP)),
            done: Arc::new(AtomicBool::new(false)),
            events,
        };
        for worker in 0..workers {
            let (pool, query) = (pool.clone(), query.clone());
            let (phase, done, tx) = (load.phase.clone(), load.done.clone(), tx.clone());
            thread::spawn(move || work(worker, pool, query, phase, done, tx));
        }
        load
    }

    /// Moves the workers to `phase`.
    pub fn enter(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Waits until every worker has sent its next event, or fails the test after `within`.
    pub fn wait_for_each(&self, within: Duration, what: &str) -> Vec<Event<T>> {
        let workers = self.workers;
        let deadline = Instant::now() + within;
        let mut got: Vec<Option<Event<T>>> = (0..workers).map(|_| None).collect();
        while got.iter().any(Option::is_none) {
            match self.events.recv_deadline(deadline) {
                Ok((worker, event)) => {
                    assert!(
                        got[worker].is_none(),
                        "worker {worker}: events out of order"
                    );
                    got[worker] = Some(event);
                }
                Err(_) => {
                    let missing: Vec<usize> = (0..workers).filter(|&w| got[w].is_none()).collect();
                    panic!(
                        "workers {missing:?} (of {workers}) never {what} within {within:?}: hung?"
                    );
                }
            }
        }
        got.into_iter().map(Option::unwrap).collect()
    }

    /// Ends the load and returns every check-out, in the order they began; fails the test if a
    /// worker has not finished within `within`.
    pub fn finish(&self, within: Duration) -> Vec<Get<T>> {
        self.done.store(true, Ordering::SeqCst);
        let mut gets: Vec<Get<T>> = self
            .wait_for_each(within, "finished")
            .into_iter()
            .flat_map(|event| match event {
                Event::Finished(gets) => gets,
                _ => Vec::new(),
            })
            .collect();
        gets.sort_by_key(|g| g.began);
        gets
    }
}

impl<T> Drop for Load<T> {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// One worker: check-out and query, over and over, until `done`.
fn work<M, T, Q>(
    worker: usize,
    pool: Pool<M>,
    query: Q,
    phase: Arc<AtomicU8>,
    done: Arc<AtomicBool>,
    events: Sender<(usize, Event<T>)>,
) where
    M: ManageConnection,
    Q: Fn(&mut M::Connection) -> Result<T, String>,
{
    let mut gets = Vec::new();
    let (mut warm, mut failed, mut recovered) = (false, false, false);
    while !done.load(Ordering::SeqCst) {
        let now_in = phase.load(Ordering::SeqCst);
        let began = Instant::now();
        let get = match pool.get() {
            Ok(mut conn) => {
                let got = Instant::now();
                let result = query(&mut conn);
                Get {
                    worker,
                    began,
                    got,
                    ended: Instant::now(),
                    outcome: Ok(PooledConnection::id(&conn)),
                    query: Some(result),
                }
            }
            Err(err) => {
                let got = Instant::now();
                Get {
                    worker,
                    began,
                    got,
                    ended: got,
                    outcome: Err(err),
                    query: None,
                }
            }
        };
        let answered = !get.failed();
        let event = match now_in {
            UP if answered && !warm => {
                warm = true;
                Some(Event::Warm)
            }
            DOWN if get.outcome.is_err() && !failed => {
                failed = true;
                Some(Event::Failed)
            }
            BACK if answered && !recovered => {
                recovered = true;
                Some(Event::Recovered(Instant::now()))
            }
            _ => None,
        };
        gets.push(get);
        if let Some(event) = event {
            let _ = events.send((worker, event));
        }
        // Paced, so that the machine stays responsive enough to act on the server: this is
        // load, not a benchmark.
        thread::sleep(Duration::from_millis(1));
    }
    let _ = events.send((worker, Event::Finished(gets)));
}
