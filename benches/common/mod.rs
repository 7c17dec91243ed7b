//! What the benches share: a manager whose connections cost nothing (so only the pool is
//! measured), and the floor, the least a blocking pool can do.
#![allow(dead_code)]

use std::sync::Barrier;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A connection that costs nothing to open, check or close.
#[derive(Debug)]
pub struct NoopConn(pub u64);

#[derive(Debug)]
pub struct NoopError;

impl std::fmt::Display for NoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("noop")
    }
}

impl std::error::Error for NoopError {}

/// A sluice manager of [`NoopConn`]s.
pub struct SluiceNoop;

impl sluice::ManageConnection for SluiceNoop {
    type Connection = NoopConn;
    type Error = NoopError;
    fn connect(&self) -> Result<NoopConn, NoopError> {
        Ok(NoopConn(0))
    }
    fn is_valid(&self, _: &mut NoopConn) -> Result<(), NoopError> {
        Ok(())
    }
    fn has_broken(&self, _: &mut NoopConn) -> bool {
        false
    }
}

/// The floor: the least a blocking pool can do.
pub struct Floor {
    idle: Mutex<Vec<NoopConn>>,
    returned: Condvar,
}

pub struct FloorGuard<'a> {
    pool: &'a Floor,
    conn: Option<NoopConn>,
}

impl Floor {
    pub fn new(size: u32) -> Floor {
        Floor {
            idle: Mutex::new((0..u64::from(size)).map(NoopConn).collect()),
            returned: Condvar::new(),
        }
    }

    pub fn get(&self) -> FloorGuard<'_> {
        let mut idle = self.idle.lock();
        loop {
            if let Some(conn) = idle.pop() {
                return FloorGuard {
                    pool: self,
                    conn: Some(conn),
                };
            }
            self.returned.wait(&mut idle);
        }
    }
}

impl Drop for FloorGuard<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().push(conn);
            self.pool.returned.notify_one();
        }
    }
}

/// Releases `workers`, all waiting on `ready`, and times them until the last one finishes.
pub fn time_workers(ready: &Barrier, workers: Vec<JoinHandle<()>>) -> Duration {
    ready.wait();
    let start = Instant::now();
    for worker in workers {
        worker.join().expect("bench thread");
    }
    start.elapsed()
}
