//! A pool of threads for Charter's CPU kernels: the caller splits one piece of work
//! (a matrix product) into tasks, the pool runs them on the threads it has, and a
//! governor decides, from what each piece of work cost, how many threads take part.
//!
//! This crate is not a general executor: one caller at a time hands it one job and
//! waits for it, as a decode step does. What it is for is waiting well:
//!
//! * helpers wait for work with a short spin, then block on a condition variable (on
//!   the web, `memory.atomic.wait32` under the standard library), so an idle pool and
//!   a pool on a machine whose cores are taken cost nothing;
//! * tasks are claimed one at a time from a shared counter, so a helper that the
//!   operating system has descheduled holds at most the task it started, and one that
//!   never woke up holds none;
//! * the [`governor`] times every job, compares what a unit of work costs at each
//!   thread count for jobs of the same shape, runs the cheapest, and probes the others
//!   now and then, so a small product that does not pay for a second thread keeps to
//!   one, and a core
//!   taken by another process makes the pool shrink instead of stalling, and a core
//!   given back makes it grow again.
//!
//! Natively [`Pool::native`] starts `std::thread`s; in a browser the worker starts Web
//! Workers on the same shared memory and runs a [`Helper`] in each
//! ([`Pool::with_helpers`]).

pub mod governor;
mod pool;

pub use governor::Counts;
pub use pool::{Helper, Job, Pool, PoolError};

/// A clock in milliseconds, for the governor (a wasm worker has no system clock; its
/// `performance.now()` comes in through this).
pub type Clock = fn() -> f64;
