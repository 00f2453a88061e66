//! The sampler's shortlist on the device: a row of logits becomes its best few
//! candidates where it lies, so a decode step reads back a few hundred bytes instead of
//! the whole vocabulary's logits (`kernels/shortlist.wgsl`).

use crate::ops::{Bind, Word, grid, shape, u};
use crate::pool::Tensor;
use crate::{Gpu, GpuError};

/// The most candidates one shortlist keeps.
pub const MAX_SHORTLIST: usize = 256;
/// Entries one workgroup ranks (`CHUNK` in shortlist.wgsl).
const CHUNK: usize = 1024;
/// The id of padding entries.
const NONE: u32 = u32::MAX;

/// What to reduce a row of logits to (the engine fills it from the sampler's own
/// description).
#[derive(Debug, Clone, Copy)]
pub struct ShortlistSpec<'a> {
    /// Ids set to −∞.
    pub masked: &'a [u32],
    /// Distinct ids, none of them masked, whose logits the penalty changes.
    pub penalized: &'a [u32],
    /// Positive logits of penalized ids are divided by it, negative ones multiplied.
    pub penalty: f32,
    /// Candidates to keep, 1 to [`MAX_SHORTLIST`].
    pub keep: usize,
    /// Whether ±∞ ranks as −∞ (NaN always does).
    pub finite_only: bool,
}

impl Gpu {
    /// The best `spec.keep` entries of the one-row `logits` after masking and
    /// penalties, best first (larger logit in IEEE total order, ties to the lower id),
    /// each as its id and its ranked logit; fewer when the row is shorter. `logits` is
    /// left as it was.
    pub async fn shortlist_async(&self, logits: &Tensor, spec: &ShortlistSpec<'_>) -> Result<Vec<(u32, f32)>, GpuError> {
        let best = self.record_shortlist(logits, spec)?;
        let bytes = self.read_buffers(&[(best.buffer(), (spec.keep * 8) as u64)]).await?.remove(0);
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        Ok(words.chunks_exact(2).filter(|w| w[1] != NONE).map(|w| (w[1], f32::from_bits(w[0]))).collect())
    }

    /// [`Gpu::shortlist_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn shortlist(&self, logits: &Tensor, spec: &ShortlistSpec<'_>) -> Result<Vec<(u32, f32)>, GpuError> {
        pollster::block_on(self.shortlist_async(logits, spec))
    }

    /// Records the passes: the row in chunks, then the chunks' bests in chunks, until
    /// one chunk is left. Returns the tensor holding its `keep` pairs.
    fn record_shortlist(&self, logits: &Tensor, spec: &ShortlistSpec<'_>) -> Result<Tensor, GpuError> {
        if logits.n != 1 || logits.width == 0 || spec.keep == 0 || spec.keep > MAX_SHORTLIST {
            return Err(shape(format!("a shortlist of {} from {logits:?}", spec.keep)));
        }
        let list: Vec<u32> = spec.masked.iter().chain(spec.penalized).copied().collect();
        let (at, size) = self.stage(bytemuck::cast_slice(&list));
        let finite_only = Word::U(u32::from(spec.finite_only));
        let mut chunks = logits.width.div_ceil(CHUNK);
        let mut best = self.tensor(chunks * spec.keep, 2);
        let (gx, gy) = grid(chunks);
        let params = [
            u(logits.width)?,
            u(spec.keep)?,
            u(spec.masked.len())?,
            u(spec.penalized.len())?,
            Word::F(spec.penalty),
            finite_only,
        ];
        self.dispatch(
            &self.kernels.top_of_logits,
            &params,
            &[(1, Bind::Buffer(logits.buffer())), (2, Bind::Arena(at, size)), (3, Bind::Buffer(best.buffer()))],
            (gx, gy, 1),
        )?;
        while chunks > 1 {
            let n = chunks * spec.keep;
            chunks = n.div_ceil(CHUNK);
            let next = self.tensor(chunks * spec.keep, 2);
            let (gx, gy) = grid(chunks);
            let params = [u(n)?, u(spec.keep)?, Word::U(0), Word::U(0), Word::F(1.0), finite_only];
            self.dispatch(
                &self.kernels.top_of_pairs,
                &params,
                &[(4, Bind::Buffer(best.buffer())), (3, Bind::Buffer(next.buffer()))],
                (gx, gy, 1),
            )?;
            best = next;
        }
        Ok(best)
    }
}
