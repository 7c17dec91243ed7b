//! Not part of the API: what the documentation's examples use; may change in any release.

use std::io;
use std::time::Duration;

use crate::error::Error;
use crate::manager::ManageConnection;
use crate::pool::Pool;

/// A manager whose connections are `()`, always valid and never broken.
#[derive(Debug)]
pub struct Manager;

impl ManageConnection for Manager {
    type Connection = ();
    type Error = io::Error;
    fn connect(&self) -> Result<(), io::Error> {
        Ok(())
    }
    fn is_valid(&self, _: &mut ()) -> Result<(), io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// As [`Manager`], with a connection that holds data: an empty `Vec<u32>`.
#[derive(Debug)]
pub struct VecManager;

impl ManageConnection for VecManager {
    type Connection = Vec<u32>;
    type Error = io::Error;
    fn connect(&self) -> Result<Vec<u32>, io::Error> {
        Ok(Vec::new())
    }
    fn is_valid(&self, _: &mut Vec<u32>) -> Result<(), io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut Vec<u32>) -> bool {
        false
    }
}

/// As [`Manager`], but every connect fails with the error "refused".
#[derive(Debug)]
pub struct RefusingManager;

impl ManageConnection for RefusingManager {
    type Connection = ();
    type Error = io::Error;
    fn connect(&self) -> Result<(), io::Error> {
        Err(io::Error::other("refused"))
    }
    fn is_valid(&self, _: &mut ()) -> Result<(), io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// A pool of one [`Manager`] connection, every connection out a leak (threshold zero).
///
/// # Errors
///
/// As [`Builder::build`](crate::Builder::build).
pub fn leak_checked_pool() -> Result<Pool<Manager>, Error> {
    Pool::builder()
        .max_size(1)
        .leak_detection_threshold(Some(Duration::ZERO))
        .build(Manager)
}

/// A manager written for r2d2 whose connections are `u32` counters starting at 0.
#[cfg(feature = "r2d2")]
#[derive(Debug)]
pub struct R2d2Counter;

#[cfg(feature = "r2d2")]
impl ::r2d2::ManageConnection for R2d2Counter {
    type Connection = u32;
    type Error = io::Error;
    fn connect(&self) -> Result<u32, io::Error> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u32) -> Result<(), io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u32) -> bool {
        false
    }
}
