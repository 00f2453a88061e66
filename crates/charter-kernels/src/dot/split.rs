//! Matrix products shared among a pool's threads: each task computes a run of rows
//! for every token, through the same kernels as one thread, so every value is the one
//! a single thread computes, bit for bit, on any number of threads.

use charter_threads::{Job, Pool};

use super::{Isa, Matrix, matmul_f, matmul_q};
use crate::format::Format;
use crate::shared::SharedOut;
use crate::q8::Q8Rows;

/// Runs of rows are multiples of this: four-row tiles stay whole, and a run is long
/// enough that claiming it costs nothing next to computing it.
const ROW_STEP: usize = 16;

/// Tasks per thread: enough that a thread the system preempts holds up little of a
/// job, few enough that each task is worth claiming.
const TASKS_PER_THREAD: usize = 4;

impl<'a> Matrix<'a> {
    /// Rows `from..to` as a matrix of their own. `from` is a multiple of four (so a
    /// tiled matrix's tiles stay whole) and `to` is one too, or the last row.
    ///
    /// # Panics
    /// When the range is empty, out of the matrix, or cuts a tile.
    pub fn row_range(&self, from: usize, to: usize) -> Matrix<'a> {
        assert!(from < to && to <= self.rows, "rows {from}..{to} of {}", self.rows);
        assert!(from % 4 == 0 && (to % 4 == 0 || to == self.rows), "rows {from}..{to} cut a tile of four");
        let rb = self.row_bytes();
        Matrix { rows: to - from, data: &self.data[from * rb..to * rb], ..*self }
    }
}

/// How a product of `rows` rows is cut for a pool: the run of rows a task computes,
/// and the job.
fn plan(pool: &Pool, format: Format, rows: usize, cols: usize, n: usize) -> (usize, Job) {
    let wanted = pool.threads() * TASKS_PER_THREAD;
    let run = rows.div_ceil(wanted).next_multiple_of(ROW_STEP).max(ROW_STEP);
    let tasks = rows.div_ceil(run);
    let work = (rows as u64).saturating_mul(cols as u64).saturating_mul(n as u64);
    (run, Job { tasks, work, shape: shape(format, rows, cols, n) })
}

/// What the pool's governor tells products apart by: the dimensions, the format, and
/// the tokens (one by one up to eight, then by powers of two, as prefill chunks vary).
fn shape(format: Format, rows: usize, cols: usize, n: usize) -> u64 {
    let tokens = if n <= 8 { n as u64 } else { 8 + u64::from(n.ilog2()) };
    let format = Format::ALL.iter().position(|&f| f == format).unwrap_or(0) as u64;
    ((rows as u64) << 36) ^ ((cols as u64) << 12) ^ (format << 6) ^ tokens
}

/// Runs `product(rows, part)` for every task's rows, where `part` is `n × rows.len()`
/// values to fill token-major, and puts each part into `out` (`n × total rows`).
fn by_rows(
    pool: &Pool,
    w: &Matrix<'_>,
    n: usize,
    out: &mut [f32],
    product: &(dyn Fn(&Matrix<'_>, &mut [f32]) + Sync),
) {
    let rows = w.rows();
    assert_eq!(out.len(), n * rows, "an output of {n} × {rows}");
    let (run, job) = plan(pool, w.format(), rows, w.cols(), n);
    let shared = SharedOut::new(out);
    pool.run(job, &|task| {
        let from = task * run;
        let to = (from + run).min(rows);
        let part = w.row_range(from, to);
        let width = to - from;
        if n == 1 {
            // SAFETY: no other task writes rows `from..to`.
            product(&part, unsafe { shared.slice(from, width) });
        } else {
            let mut local = vec![0.0; n * width];
            product(&part, &mut local);
            for (t, values) in local.chunks_exact(width).enumerate() {
                // SAFETY: no other task writes token `t`'s rows `from..to`.
                unsafe { shared.slice(t * rows + from, width) }.copy_from_slice(values);
            }
        }
    });
}

/// [`matmul_q`] on a pool's threads: the same values, in less time where the pool has
/// cores to give.
///
/// # Panics
/// As [`matmul_q`].
pub fn matmul_q_on(pool: &Pool, isa: Isa, w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    if pool.threads() == 1 {
        return matmul_q(isa, w, x, out);
    }
    assert!(out.len() == x.n() * w.rows(), "{}×{} times {} rows", w.rows(), w.cols(), x.n());
    by_rows(pool, w, x.n(), out, &|part, values| matmul_q(isa, part, x, values));
}

/// [`matmul_f`] on a pool's threads.
///
/// # Panics
/// As [`matmul_f`].
pub fn matmul_f_on(pool: &Pool, isa: Isa, w: &Matrix<'_>, x: &[f32], n: usize, out: &mut [f32]) {
    if pool.threads() == 1 {
        return matmul_f(isa, w, x, n, out);
    }
    assert!(out.len() == n * w.rows(), "{}×{} times {n} rows", w.rows(), w.cols());
    by_rows(pool, w, n, out, &|part, values| matmul_f(isa, part, x, n, values));
}
