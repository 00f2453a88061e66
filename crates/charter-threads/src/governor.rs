//! How many threads a job gets: the one that has cost least per unit of work lately,
//! for jobs of its shape.
//!
//! Each shape of job (a matrix product's rows, columns, format and tokens) has its own
//! governor: a decode step repeats the same few shapes every layer, each with its own
//! crossover (a small product may cost more on two threads than on one, a large one
//! less), and comparing one shape's costs with another's would only measure the mix.
//! Jobs are timed in windows of [`WINDOW_JOBS`] (or [`WINDOW_MS`], for a job as large
//! as a vocabulary's product) at one thread count; each window
//! updates that count's estimate of milliseconds per unit of work. The next window
//! runs at the cheapest count known, except that every [`PROBE_EVERY_MS`] one window
//! runs at a neighbouring count, so an estimate made before another process took a
//! core (or gave it back) does not hold forever. A probe costs one window; while the
//! cheapest count is right, that is all it costs.

/// Jobs timed at one thread count before its estimate is updated…
pub const WINDOW_JOBS: u32 = 32;

/// …or fewer, once they took this long.
pub const WINDOW_MS: f64 = 2.0;

/// How often a window runs at a neighbouring thread count.
pub const PROBE_EVERY_MS: f64 = 250.0;

/// A counter of what the governor did, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Windows completed.
    pub windows: u64,
    /// Windows run at a neighbouring count to check it.
    pub probes: u64,
    /// Times the count changed.
    pub changes: u64,
}

/// One shape's estimates and current choice.
#[derive(Debug, Clone)]
pub struct Governor {
    /// The thread count jobs run at now (1 = the caller alone).
    current: usize,
    /// Milliseconds per unit of work at each count (index = count − 1), once measured.
    estimate: Vec<Option<f64>>,
    /// When each count's estimate was last updated.
    measured_at: Vec<f64>,
    window: Window,
    /// When the last probe started, and, while one runs, the count it left.
    last_probe: f64,
    probing: Option<usize>,
    counts: Counts,
    /// Whether the first window is behind it: a shape's first jobs pay for what runs
    /// once (buffers growing, weights coming into cache), so it is not counted.
    warm: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    jobs: u32,
    ms: f64,
    work: f64,
}

impl Governor {
    /// A governor for up to `max` threads, starting at all of them.
    pub fn new(max: usize) -> Governor {
        let max = max.max(1);
        Governor {
            current: max,
            estimate: vec![None; max],
            measured_at: vec![f64::NEG_INFINITY; max],
            window: Window::default(),
            last_probe: f64::NEG_INFINITY,
            probing: None,
            counts: Counts::default(),
            warm: false,
        }
    }

    /// The thread count for the next job, given how many can take part now.
    pub fn choose(&self, available: usize) -> usize {
        self.current.clamp(1, available.max(1))
    }

    /// What the governor did so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The estimate at `threads`, in milliseconds per unit of work.
    pub fn estimate(&self, threads: usize) -> Option<f64> {
        self.estimate.get(threads.wrapping_sub(1)).copied().flatten()
    }

    /// Records a job that ran at `threads` and took `ms` for `work` units; at the end
    /// of a window, updates the estimate and picks the count for the next one. A job
    /// at another count than the current one (too few helpers had started) is not
    /// counted.
    pub fn record(&mut self, threads: usize, work: f64, ms: f64, now: f64) {
        if threads != self.current || !(ms >= 0.0) || !(work > 0.0) {
            return;
        }
        self.window.jobs += 1;
        self.window.ms += ms;
        self.window.work += work;
        if self.window.jobs < WINDOW_JOBS && self.window.ms < WINDOW_MS {
            return;
        }
        let rate = self.window.ms / self.window.work;
        self.window = Window::default();
        if !std::mem::replace(&mut self.warm, true) {
            return;
        }
        self.counts.windows += 1;
        // A probe's window replaces what was known at its count (which is old by
        // then); the current count's windows are averaged, so one slow window (a
        // moment's preemption) does not make the pool shrink at once.
        let left = self.probing.take();
        let probed = left.is_some();
        let slot = &mut self.estimate[self.current - 1];
        *slot = Some(match *slot {
            Some(old) if !probed => 0.5 * old + 0.5 * rate,
            _ => rate,
        });
        self.measured_at[self.current - 1] = now;
        let next = if probed {
            self.cheapest()
        } else if let Some(neighbour) = self.probe_target(now) {
            self.probing = Some(self.current);
            self.last_probe = now;
            self.counts.probes += 1;
            neighbour
        } else {
            self.cheapest()
        };
        // A change is a new count to run at, not a probe or the end of one.
        if self.probing.is_none() && next != left.unwrap_or(self.current) {
            self.counts.changes += 1;
        }
        self.current = next;
    }

    /// The count with the lowest estimate (the current one on a tie).
    fn cheapest(&self) -> usize {
        let mut best = self.current;
        let mut best_rate = self.estimate(best).unwrap_or(f64::INFINITY);
        for (i, e) in self.estimate.iter().enumerate() {
            if let Some(rate) = *e {
                if rate < best_rate {
                    best = i + 1;
                    best_rate = rate;
                }
            }
        }
        best
    }

    /// A neighbouring count to probe now, if one is due: one never measured first,
    /// else, every [`PROBE_EVERY_MS`], the neighbour measured longest ago.
    fn probe_target(&self, now: f64) -> Option<usize> {
        let max = self.estimate.len();
        let below = (self.current > 1).then(|| self.current - 1);
        let above = (self.current < max).then(|| self.current + 1);
        let unmeasured = [below, above].into_iter().flatten().find(|&k| self.estimate(k).is_none());
        if unmeasured.is_some() {
            return unmeasured;
        }
        if now - self.last_probe < PROBE_EVERY_MS {
            return None;
        }
        [below, above].into_iter().flatten().min_by(|&a, &b| self.measured_at[a - 1].total_cmp(&self.measured_at[b - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `windows` windows at whatever count the governor picks, with `cost(k)`
    /// milliseconds per unit of work at `k` threads, `step` ms apart.
    fn drive(g: &mut Governor, windows: usize, now: &mut f64, cost: impl Fn(usize) -> f64) -> Vec<usize> {
        let mut chosen = Vec::new();
        for _ in 0..windows {
            let k = g.choose(usize::MAX);
            chosen.push(k);
            // A job of about a decode step's product: a twentieth of a millisecond.
            let ms = 0.05 * cost(k);
            for _ in 0..WINDOW_JOBS {
                g.record(k, 1.0, ms, *now);
                *now += ms;
            }
        }
        chosen
    }

    #[test]
    fn settles_on_the_cheapest_count_and_leaves_it_only_to_probe() {
        let mut g = Governor::new(4);
        let mut now = 0.0;
        // Three threads are best.
        let cost = |k: usize| [1.0, 0.6, 0.45, 0.5][k - 1];
        let chosen = drive(&mut g, 400, &mut now, cost);
        let tail = &chosen[100..];
        let at_best = tail.iter().filter(|&&k| k == 3).count();
        assert!(at_best * 100 >= tail.len() * 90, "{at_best} of {} windows at the best count", tail.len());
        assert!(tail.iter().all(|&k| (2..=4).contains(&k)), "only neighbours are probed");
    }

    #[test]
    fn a_taken_core_makes_it_shrink_and_a_core_given_back_makes_it_grow() {
        let mut g = Governor::new(2);
        let mut now = 0.0;
        let quiet = |k: usize| if k == 2 { 0.55 } else { 1.0 };
        let busy = |k: usize| if k == 2 { 3.0 } else { 1.0 };
        drive(&mut g, 50, &mut now, quiet);
        assert_eq!(g.choose(2), 2);
        // Another process takes a core: one window and the pool runs alone.
        drive(&mut g, 1, &mut now, busy);
        assert_eq!(g.choose(2), 1, "two threads cost 3× one now");
        let during = drive(&mut g, 200, &mut now, busy);
        let probes = during.iter().filter(|&&k| k == 2).count();
        assert!(probes * 20 <= during.len(), "{probes} probe windows of {}", during.len());
        // The core comes back: within a probe period or two the pool grows again.
        let after = drive(&mut g, (2.0 * PROBE_EVERY_MS / (0.05 * f64::from(WINDOW_JOBS))) as usize, &mut now, quiet);
        assert_eq!(g.choose(2), 2, "{after:?}");
    }

    #[test]
    fn never_more_than_can_take_part() {
        let g = Governor::new(8);
        assert_eq!(g.choose(3), 3);
        assert_eq!(g.choose(0), 1);
        assert_eq!(Governor::new(0).choose(4), 1);
    }

    #[test]
    fn jobs_at_another_count_or_without_work_are_not_counted() {
        let mut g = Governor::new(2);
        for _ in 0..2 * WINDOW_JOBS {
            g.record(1, 1.0, 1.0, 0.0);
            g.record(2, 0.0, 1.0, 0.0);
            g.record(2, 1.0, f64::NAN, 0.0);
        }
        assert_eq!(g.counts().windows, 0);
        assert_eq!(g.estimate(1), None);
    }
}
