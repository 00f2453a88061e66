//! The pool's mechanics: one job at a time, tasks claimed from a shared counter,
//! helpers that spin a little and then block.

use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::Clock;
use crate::governor::{Counts, Governor};

/// How many times a waiting thread looks at its flag before it blocks: long enough to
/// cover the gap between two products of a decode step (a norm, a rotation: a few
/// microseconds), short enough that a helper with nothing to do gives its core back
/// within about a tenth of a millisecond.
const SPINS: u32 = if cfg!(target_arch = "wasm32") { 20_000 } else { 2_000 };

/// Work below which a job runs on the caller alone: waking a helper and sharing the
/// output costs about what this much work does (multiply-adds; a 576 × 64 product).
pub const MIN_WORK: u64 = 36_864;

/// One piece of work for [`Pool::run`].
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// Tasks, numbered from 0; each runs once, on any thread, in any order.
    pub tasks: usize,
    /// The work it holds, in any unit proportional to its cost (multiply-adds).
    pub work: u64,
    /// What kind of job it is, for the governor: jobs with the same `shape` cost the
    /// same per unit of work at a given thread count (a matrix product's dimensions,
    /// format and token count, hashed).
    pub shape: u64,
}

/// Shapes whose estimates a pool keeps (a model's products have a dozen or so); the
/// one used longest ago makes room for a new one.
const SHAPES: usize = 64;

/// A shape's governor, and when it was last used.
#[derive(Debug)]
struct Entry {
    shape: u64,
    used: u64,
    governor: Governor,
}

/// A pool that could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// A helper thread (or worker) could not be started.
    #[error("a helper thread could not be started: {0}")]
    Spawn(String),
}

/// The task a job runs, as the caller lent it (its lifetime erased: see [`Shared::job`]).
type Task = *const (dyn Fn(usize) + Sync);

/// A flag one thread waits on and another raises.
#[derive(Debug, Default)]
struct Signal {
    value: AtomicU64,
    sleeping: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Signal {
    /// Waits until `ready()` holds: spins, then blocks until [`Signal::notify`].
    fn wait_until(&self, ready: impl Fn() -> bool) {
        for _ in 0..SPINS {
            if ready() {
                return;
            }
            core::hint::spin_loop();
        }
        // The waker raises its condition, then looks at `sleeping` (both SeqCst); this
        // side sets `sleeping`, then looks at the condition under the lock the waker
        // takes to notify: one of the two sees the other, so no wake-up is lost.
        self.sleeping.store(true, SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !ready() {
            guard = self.wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
        drop(guard);
        self.sleeping.store(false, SeqCst);
    }

    /// Wakes the waiter if it blocked (call after making its condition true).
    fn notify(&self) {
        if self.sleeping.load(SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_all();
        }
    }
}

/// What the caller and the helpers share.
struct Shared {
    /// One signal per helper: its value counts the jobs it was called to.
    calls: Vec<Signal>,
    /// Helpers running their loop (slots `0..started` are theirs).
    started: AtomicUsize,
    /// The job's tasks (high half) and the next unclaimed one (low half). A task is
    /// claimed by moving the low half up while it is below the high half, so a claim
    /// succeeds only on a live job.
    claim: AtomicU64,
    /// Tasks of the live job completed.
    completed: AtomicU32,
    /// The caller waits on this for `completed` to reach the job's tasks.
    done: Signal,
    /// The live job's task. Written by the caller only between jobs (every task
    /// claimed and completed); read by a helper only after it claimed a task, which
    /// cannot complete before the read.
    job: UnsafeCell<Option<Task>>,
    /// Set when a task panicked on a helper; the caller panics in turn.
    panicked: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: every field but `job` is a synchronisation primitive; `job` is written and
// read only under the claim protocol described on it, and the task it points to is
// `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the pointer in `job` is only dereferenced under that protocol.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs tasks of the live job until none is left.
    fn work(&self) {
        loop {
            let claim = self.claim.load(Acquire);
            let (tasks, next) = ((claim >> 32) as u32, claim as u32);
            if next >= tasks {
                return;
            }
            if self.claim.compare_exchange_weak(claim, claim + 1, AcqRel, Relaxed).is_err() {
                continue;
            }
            // SAFETY: the claim succeeded on a live job, whose task the caller wrote
            // before publishing it and keeps alive until this task completes below.
            let task = unsafe { (*self.job.get()).map(|t| &*t) };
            if let Some(task) = task {
                task(next as usize);
            }
            self.complete_one(tasks);
        }
    }

    fn complete_one(&self, tasks: u32) {
        if self.completed.fetch_add(1, AcqRel) + 1 == tasks {
            self.done.notify();
        }
    }

    /// [`Shared::work`], catching a panic: the task that panicked is counted as
    /// completed (so nobody waits for it) and `true` comes back.
    fn work_catching(&self) -> bool {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work()));
        if outcome.is_err() {
            self.complete_one((self.claim.load(Acquire) >> 32) as u32);
        }
        outcome.is_err()
    }
}

/// A helper's side of the pool, to run on its own thread: [`Helper::run`] serves jobs
/// until the pool is dropped.
pub struct Helper {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Helper")
    }
}

impl Helper {
    /// Serves the pool's jobs on this thread until the pool is dropped.
    pub fn run(self) {
        let shared = &*self.shared;
        let slot = shared.started.fetch_add(1, AcqRel);
        let Some(signal) = shared.calls.get(slot) else { return };
        let mut seen = 0;
        loop {
            signal.wait_until(|| signal.value.load(Acquire) != seen || shared.stop.load(Acquire));
            if shared.stop.load(Acquire) {
                return;
            }
            seen = signal.value.load(Acquire);
            if shared.work_catching() {
                shared.panicked.store(true, SeqCst);
            }
        }
    }
}

/// Threads for the kernels: the caller and up to `threads − 1` helpers.
pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    governors: RefCell<Vec<Entry>>,
    jobs: std::cell::Cell<u64>,
    clock: Clock,
    #[cfg(not(target_arch = "wasm32"))]
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.threads).field("started", &self.started()).finish()
    }
}

impl Pool {
    /// The caller alone: every job runs inline.
    pub fn single() -> Pool {
        Pool::bare(1, || 0.0)
    }

    fn bare(threads: usize, clock: Clock) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            calls: (1..threads).map(|_| Signal::default()).collect(),
            started: AtomicUsize::new(0),
            claim: AtomicU64::new(0),
            completed: AtomicU32::new(0),
            done: Signal::default(),
            job: UnsafeCell::new(None),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        Pool {
            shared,
            threads,
            governors: RefCell::new(Vec::new()),
            jobs: std::cell::Cell::new(0),
            clock,
            #[cfg(not(target_arch = "wasm32"))]
            handles: Vec::new(),
        }
    }

    /// `threads` threads in all: the caller and `threads − 1` helpers, each handed to
    /// `spawn` to run ([`Helper::run`]) on a thread of its own. A helper that starts
    /// late only joins the jobs after it started; one that never starts holds nothing
    /// up.
    pub fn with_helpers(
        threads: usize,
        clock: Clock,
        mut spawn: impl FnMut(Helper) -> Result<(), String>,
    ) -> Result<Pool, PoolError> {
        let pool = Pool::bare(threads, clock);
        for _ in 1..pool.threads {
            spawn(Helper { shared: pool.shared.clone() }).map_err(PoolError::Spawn)?;
        }
        Ok(pool)
    }

    /// `threads` threads on this machine (`std::thread`), timed by the system clock.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn native(threads: usize) -> Result<Pool, PoolError> {
        fn now_ms() -> f64 {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
        }
        let mut handles = Vec::new();
        let mut pool = Pool::with_helpers(threads, now_ms, |helper| {
            let name = format!("charter-helper-{}", handles.len() + 1);
            let handle = std::thread::Builder::new().name(name).spawn(move || helper.run()).map_err(|e| e.to_string())?;
            handles.push(handle);
            Ok(())
        })?;
        pool.handles = handles;
        Ok(pool)
    }

    /// The threads this pool may use, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Threads running now: the caller and the helpers that started.
    pub fn started(&self) -> usize {
        1 + self.shared.started.load(Acquire).min(self.threads - 1)
    }

    /// The thread count the governor picks for jobs of a shape now.
    pub fn active(&self, shape: u64) -> usize {
        let started = self.started();
        let governors = self.governors.borrow();
        governors.iter().find(|e| e.shape == shape).map_or(started, |e| e.governor.choose(started))
    }

    /// Every shape's current thread count and what its governor did so far, in the
    /// order the shapes were last used (most recent first).
    pub fn report(&self) -> Vec<(u64, usize, Counts)> {
        let started = self.started();
        let mut out: Vec<_> = self.governors.borrow().iter().map(|e| (e.used, e.shape, e.governor.choose(started), e.governor.counts())).collect();
        out.sort_by_key(|&(used, ..)| std::cmp::Reverse(used));
        out.into_iter().map(|(_, shape, k, counts)| (shape, k, counts)).collect()
    }

    /// Runs `f` on the governor of `shape`, made when it is new.
    fn governor<T>(&self, shape: u64, f: impl FnOnce(&mut Governor) -> T) -> T {
        let mut governors = self.governors.borrow_mut();
        let used = self.jobs.get();
        self.jobs.set(used + 1);
        let i = match governors.iter().position(|e| e.shape == shape) {
            Some(i) => i,
            None if governors.len() < SHAPES => {
                governors.push(Entry { shape, used, governor: Governor::new(self.threads) });
                governors.len() - 1
            }
            None => {
                let oldest = governors.iter().enumerate().min_by_key(|(_, e)| e.used).map_or(0, |(i, _)| i);
                governors[oldest] = Entry { shape, used, governor: Governor::new(self.threads) };
                oldest
            }
        };
        governors[i].used = used;
        f(&mut governors[i].governor)
    }

    /// Runs `task(i)` for every `i` in `0..job.tasks`, on as many threads as the
    /// governor picks (the caller always among them), and returns when all are done.
    ///
    /// # Panics
    /// When a task panics (on a helper, the panic is caught there and raised here),
    /// or with more than `u32::MAX` tasks.
    pub fn run(&self, job: Job, task: &(dyn Fn(usize) + Sync)) {
        let tasks = u32::try_from(job.tasks).expect("at most u32::MAX tasks");
        if tasks == 0 {
            return;
        }
        let governed = tasks > 1 && job.work >= MIN_WORK && self.threads > 1;
        let started = self.started();
        let chosen = if governed { self.governor(job.shape, |g| g.choose(started)).min(job.tasks) } else { 1 };
        let start = (self.clock)();
        if chosen == 1 {
            (0..job.tasks).for_each(task);
        } else {
            self.share(chosen, tasks, task);
        }
        if governed {
            let now = (self.clock)();
            self.governor(job.shape, |g| g.record(chosen, job.work as f64, now - start, now));
        }
    }

    /// Runs a job on the caller and `threads − 1` helpers.
    fn share(&self, threads: usize, tasks: u32, task: &(dyn Fn(usize) + Sync)) {
        let shared = &*self.shared;
        // SAFETY: no job is live (the last one's tasks were all claimed and completed
        // before `run` returned), so no helper reads `job` now; the pointer's lifetime
        // is erased, and it is cleared below before `task`'s borrow ends.
        unsafe {
            let task: Task = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task);
            *shared.job.get() = Some(task);
        }
        shared.completed.store(0, SeqCst);
        shared.claim.store(u64::from(tasks) << 32, SeqCst);
        for signal in &shared.calls[..threads - 1] {
            signal.value.fetch_add(1, SeqCst);
            signal.notify();
        }
        // A task that panics here must not unwind past the helpers still running
        // others with `task` borrowed: wait for them first.
        let panicked_here = shared.work_catching();
        shared.done.wait_until(|| shared.completed.load(Acquire) >= tasks);
        // SAFETY: every task completed, so no helper holds a claim that lets it read
        // `job`.
        unsafe { *shared.job.get() = None };
        if shared.panicked.swap(false, SeqCst) || panicked_here {
            panic!("a task of the pool panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        for signal in &self.shared.calls {
            signal.value.fetch_add(1, SeqCst);
            signal.notify();
        }
        #[cfg(not(target_arch = "wasm32"))]
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn job(tasks: usize) -> Job {
        Job { tasks, work: 1 << 30, shape: 1 }
    }

    #[test]
    fn every_task_runs_once_on_any_number_of_threads() {
        for threads in [1, 2, 3, 5] {
            let pool = Pool::native(threads).unwrap();
            for tasks in [0, 1, 2, 7, 64, 1000] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                for _ in 0..20 {
                    pool.run(job(tasks), &|i| {
                        hits[i].fetch_add(1, Relaxed);
                    });
                }
                assert!(hits.iter().all(|h| h.load(Relaxed) == 20), "{threads} threads, {tasks} tasks");
            }
        }
    }

    #[test]
    fn helpers_take_part_and_the_work_is_shared() {
        let pool = Pool::native(2).unwrap();
        while pool.started() < 2 {
            std::thread::yield_now();
        }
        let caller = std::thread::current().id();
        let elsewhere = AtomicUsize::new(0);
        for _ in 0..50 {
            pool.run(job(16), &|_| {
                if std::thread::current().id() != caller {
                    elsewhere.fetch_add(1, Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            });
        }
        assert!(elsewhere.load(Relaxed) > 0, "no task ran on the helper");
    }

    #[test]
    fn small_jobs_stay_on_the_caller() {
        let pool = Pool::native(2).unwrap();
        let caller = std::thread::current().id();
        for _ in 0..100 {
            pool.run(Job { tasks: 8, work: MIN_WORK - 1, shape: 1 }, &|_| {
                assert_eq!(std::thread::current().id(), caller);
            });
        }
    }

    #[test]
    fn a_helper_that_never_starts_holds_nothing_up() {
        let mut parked = Vec::new();
        let pool = Pool::with_helpers(3, || 0.0, |helper| {
            parked.push(helper);
            Ok(())
        })
        .unwrap();
        let count = AtomicUsize::new(0);
        pool.run(job(10), &|_| {
            count.fetch_add(1, Relaxed);
        });
        assert_eq!(count.load(Relaxed), 10);
        assert_eq!(pool.started(), 1);
    }

    #[test]
    fn a_task_that_panics_on_a_helper_panics_the_caller() {
        let pool = Pool::native(2).unwrap();
        while pool.started() < 2 {
            std::thread::yield_now();
        }
        let caller = std::thread::current().id();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..200 {
                pool.run(job(64), &|_| {
                    if std::thread::current().id() != caller {
                        panic!("on a helper");
                    }
                    std::thread::sleep(std::time::Duration::from_micros(50));
                });
            }
        }));
        assert!(outcome.is_err());
        // The pool goes on working afterwards.
        let count = AtomicUsize::new(0);
        pool.run(job(10), &|_| {
            count.fetch_add(1, Relaxed);
        });
        assert_eq!(count.load(Relaxed), 10);
    }

    #[test]
    fn a_spawn_that_fails_is_an_error() {
        let err = Pool::with_helpers(2, || 0.0, |_| Err("no workers here".into())).unwrap_err();
        assert_eq!(err.to_string(), "a helper thread could not be started: no workers here");
    }
}
