//! Operations that do in one dispatch what a decoder step would otherwise do in
//! several: on a real GPU a small model's decode step is bound by launches, not by
//! arithmetic, so a layer's dispatches are the figure to cut.
//!
//! * [`Gpu::prepare_attention`]: q/k norms, rotary embeddings and the KV cache write
//!   (`kernels/prepare_attention.wgsl`), then [`Gpu::attend`];
//! * [`Gpu::matmul_gated`] (in `stack.rs`): gate and up products gated as they are
//!   stored;
//! * [`Gpu::norm_add_rms_norm`]: a block's post-norm, the residual add and the next
//!   norm (`norm_add_rms_norm` in `kernels/rms_norm.wgsl`).

use crate::cache::KvCache;
use crate::ops::{Bind, Pairing, RopeTable, Word, count, grid, shape, u};
use crate::pool::Tensor;
use crate::{Gpu, GpuError};

/// Rotary embeddings for one call: the table and the first position.
#[derive(Debug, Clone, Copy)]
pub struct Rotary<'a> {
    /// The precomputed angles.
    pub table: &'a RopeTable,
    /// How the dimensions of a head pair up.
    pub pairing: Pairing,
    /// The position of the first row.
    pub start: usize,
}

/// Per-head RMS norms of q and k (Qwen3, Gemma 3): one weight of `head_dim` each.
#[derive(Debug, Clone, Copy)]
pub struct QkNorms<'a> {
    /// The weight of every query head.
    pub q: &'a Tensor,
    /// The weight of every key head.
    pub k: &'a Tensor,
    /// Added to the mean square.
    pub eps: f32,
}

impl Gpu {
    /// In one dispatch: the per-head `norms` of `q` and `k` (when given), rotary
    /// embeddings of both at positions `rotary.start..`, and `k` and `v` written into
    /// `cache` there. Returns `q` rotated (its buffer, written over).
    pub fn prepare_attention(
        &self,
        q: Tensor,
        k: &Tensor,
        v: &Tensor,
        norms: Option<QkNorms<'_>>,
        rotary: Rotary<'_>,
        cache: &mut KvCache,
    ) -> Result<Tensor, GpuError> {
        let (hd, half, start) = (cache.head_dim, rotary.table.half, rotary.start);
        let kv_width = cache.heads * hd;
        if hd != 2 * half
            || q.width == 0
            || !q.width.is_multiple_of(hd)
            || (k.n, k.width) != (q.n, kv_width)
            || (v.n, v.width) != (q.n, kv_width)
            || start + q.n > cache.capacity.min(rotary.table.capacity)
            || norms.is_some_and(|n| n.q.len() != hd || n.k.len() != hd)
        {
            return Err(shape(format!("attention input {q:?}, {k:?}, {v:?} at {start} for heads of {hd}")));
        }
        let n_heads = q.width / hd;
        let style = match rotary.pairing {
            Pairing::Interleaved => 0,
            Pairing::Halves => 1,
        };
        let params = [
            u(q.n)?,
            u(start)?,
            u(n_heads)?,
            u(cache.heads)?,
            u(half)?,
            u(cache.capacity)?,
            Word::U(style),
            Word::U(u32::from(norms.is_some())),
            Word::F(norms.map_or(0.0, |n| n.eps)),
        ];
        // Without norms the kernel reads neither weight; any buffer fills the bindings.
        let (q_norm, k_norm) = norms.map_or((k, k), |n| (n.q, n.k));
        self.dispatch(
            &self.kernels.prepare_attention,
            &params,
            &[
                (1, Bind::Buffer(&rotary.table.buffer)),
                (2, Bind::Buffer(q.buffer())),
                (3, Bind::Buffer(k.buffer())),
                (4, Bind::Buffer(v.buffer())),
                (5, Bind::Buffer(q_norm.buffer())),
                (6, Bind::Buffer(k_norm.buffer())),
                (7, Bind::Buffer(&cache.k)),
                (8, Bind::Buffer(&cache.v)),
            ],
            (count(n_heads + cache.heads)?, count(q.n)?, 1),
        )?;
        Ok(q)
    }

    /// `s = a + rms_norm(b) · wb` and `rms_norm(s) · w` in one dispatch (Gemma's norm
    /// after a block, the residual add and the next block's norm).
    pub fn norm_add_rms_norm(
        &self,
        a: &Tensor,
        b: &Tensor,
        wb: &Tensor,
        w: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor), GpuError> {
        if wb.len() != w.len() {
            return Err(shape(format!("a post-norm of {} before a norm of {}", wb.len(), w.len())));
        }
        self.residual_norm(a, b, Some(wb), w, eps)
    }

    /// `s = a + b` (with `wb`, `a + rms_norm(b) · wb`) and `rms_norm(s) · w`, one dispatch.
    pub(crate) fn residual_norm(
        &self,
        a: &Tensor,
        b: &Tensor,
        wb: Option<&Tensor>,
        w: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor), GpuError> {
        if (a.n, a.width) != (b.n, b.width) {
            return Err(shape(format!("{a:?} + {b:?}")));
        }
        let runs = self.check_norm(a, w)?;
        let (sum, out) = (self.tensor(a.n, a.width), self.tensor(a.n, a.width));
        let (gx, gy) = grid(runs);
        let kernel = if wb.is_some() { &self.kernels.norm_add_rms_norm } else { &self.kernels.add_rms_norm };
        self.dispatch(
            kernel,
            &[u(runs)?, u(w.len())?, Word::F(eps)],
            &[
                (1, Bind::Buffer(w.buffer())),
                (2, Bind::Buffer(a.buffer())),
                (3, Bind::Buffer(b.buffer())),
                (4, Bind::Buffer(sum.buffer())),
                (5, Bind::Buffer(out.buffer())),
                // Read only with a post-norm; `w` fills the binding otherwise.
                (6, Bind::Buffer(wb.unwrap_or(w).buffer())),
            ],
            (gx, gy, 1),
        )?;
        Ok((sum, out))
    }
}
