//! The KV cache on the GPU and attention over it: `f16` keys and values laid out as the
//! CPU's cache (`[kv head][position][dim]`), so a saved state moves between backends
//! unchanged; `kernels/attention.wgsl` writes and reads it.

use charter_kernels::attention::Attention;

use crate::ops::{Bind, Pairing, Word, count, grid, shape, u};
use crate::pool::Tensor;
use crate::{Gpu, GpuError};

/// The largest head the attention kernel holds in workgroup memory.
const MAX_HEAD_DIM: usize = 256;

/// One layer's keys and values, `f16`, `(heads, capacity, head_dim)` each.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) k: wgpu::Buffer,
    pub(crate) v: wgpu::Buffer,
    pub(crate) heads: usize,
    pub(crate) capacity: usize,
    pub(crate) head_dim: usize,
}

impl KvCache {
    /// Key/value heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Values per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
}

/// The parameters of `attention.wgsl`, once the shapes are checked.
fn attention_params(q: &Tensor, cache: &KvCache, start: usize, p: &Attention) -> Result<[Word; 9], GpuError> {
    if p.head_dim != cache.head_dim
        || p.n_kv_heads != cache.heads
        || p.n_kv_heads == 0
        || !p.n_heads.is_multiple_of(p.n_kv_heads)
        || q.width != p.n_heads * p.head_dim
        || q.n == 0
        || start + q.n > cache.capacity
    {
        return Err(shape(format!("attention of {q:?} at {start} in a cache of {} positions", cache.capacity)));
    }
    Ok([
        u(q.n)?,
        u(start)?,
        u(p.n_heads)?,
        u(p.n_kv_heads)?,
        u(p.head_dim)?,
        u(cache.capacity)?,
        u(p.window.unwrap_or(0))?,
        Word::F(p.scale),
        Word::F(p.softcap.unwrap_or(0.0)),
    ])
}

impl Gpu {
    /// A KV cache of `capacity` positions for `heads` heads of `head_dim` (even, ≤ 256).
    pub fn kv_cache(&self, heads: usize, capacity: usize, head_dim: usize) -> Result<KvCache, GpuError> {
        if !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM || heads == 0 {
            return Err(GpuError::Unsupported(format!("attention heads of {head_dim} values")));
        }
        let size = ((heads * capacity * head_dim * 2) as u64).next_multiple_of(16).max(16);
        if size > self.max_binding {
            return Err(GpuError::Unsupported(format!("a KV cache of {size} bytes per layer exceeds a binding")));
        }
        let make = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        Ok(KvCache { k: make("keys"), v: make("values"), heads, capacity, head_dim })
    }

    /// Writes `k` and `v` at positions `start..start + n`, then attends the queries at
    /// those positions over every position they see.
    pub fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut KvCache,
        start: usize,
        p: &Attention,
    ) -> Result<Tensor, GpuError> {
        let kv_width = cache.heads * cache.head_dim;
        if (k.n, k.width) != (q.n, kv_width) || (v.n, v.width) != (q.n, kv_width) || start + q.n > cache.capacity {
            return Err(shape(format!("attention of {q:?}, {k:?}, {v:?} at {start} in {} positions", cache.capacity)));
        }
        let params = attention_params(q, cache, start, p)?;
        let (gx, gy) = grid((q.n * kv_width / 2).div_ceil(64));
        self.dispatch(
            &self.kernels.kv_write,
            &params,
            &[
                (1, Bind::Buffer(k.buffer())),
                (2, Bind::Buffer(v.buffer())),
                (5, Bind::Buffer(&cache.k)),
                (6, Bind::Buffer(&cache.v)),
            ],
            (gx, gy, 1),
        )?;
        self.attend(q, cache, start, p)
    }

    /// Attends the queries `q` at positions `start..start + n` over every position of
    /// `cache` they see (their own keys and values already written).
    pub fn attend(&self, q: &Tensor, cache: &KvCache, start: usize, p: &Attention) -> Result<Tensor, GpuError> {
        let params = attention_params(q, cache, start, p)?;
        let out = self.tensor(q.n, q.width);
        self.dispatch(
            &self.kernels.attend,
            &params,
            &[
                (3, Bind::Buffer(q.buffer())),
                (4, Bind::Buffer(out.buffer())),
                (5, Bind::Buffer(&cache.k)),
                (6, Bind::Buffer(&cache.v)),
            ],
            (count(p.n_heads)?, count(q.n)?, 1),
        )?;
        Ok(out)
    }

    /// A context shift (`kernels/shift_cache.wgsl`): positions `from..to` of the first
    /// `len` leave and the positions after them move down to `from`, each key turned by
    /// the angles whose cosines and sines are `cos` and `sin` (one per frequency: those
    /// of minus the distance moved). As `charter_kernels::attention::remove_positions`
    /// does, on the device: nothing is read back.
    #[allow(clippy::too_many_arguments)]
    pub fn shift_cache(
        &self,
        cache: &mut KvCache,
        len: usize,
        from: usize,
        to: usize,
        cos: &[f32],
        sin: &[f32],
        pairing: Pairing,
    ) -> Result<(), GpuError> {
        if !(from <= to && to <= len && len <= cache.capacity) || cos.len() != cache.head_dim / 2 || sin.len() != cos.len() {
            return Err(shape(format!("removing {from}..{to} of {len} positions of {} with {} angles", cache.capacity, cos.len())));
        }
        if !cache.head_dim.is_multiple_of(4) {
            return Err(GpuError::Unsupported(format!("a context shift of heads of {} values", cache.head_dim)));
        }
        let kept = len - to;
        if from == to || kept == 0 {
            return Ok(());
        }
        let angles: Vec<f32> = cos.iter().zip(sin).flat_map(|(&c, &s)| [c, s]).collect();
        let words = cache.heads * cache.head_dim / 2;
        let (moved_k, moved_v) = (self.tensor(kept, words), self.tensor(kept, words));
        let style = match pairing {
            Pairing::Interleaved => 0,
            Pairing::Halves => 1,
        };
        let params =
            [u(kept)?, u(from)?, u(to)?, u(cache.heads)?, u(cache.head_dim)?, u(cache.capacity)?, Word::U(style)];
        let (gx, gy) = grid((kept * cache.heads * cache.head_dim / 4).div_ceil(64));
        let (at, size) = self.stage(bytemuck::cast_slice(&angles));
        let buffers = [
            (2, Bind::Buffer(&cache.k)),
            (3, Bind::Buffer(&cache.v)),
            (4, Bind::Buffer(moved_k.buffer())),
            (5, Bind::Buffer(moved_v.buffer())),
        ];
        let mut gather = vec![(1, Bind::Arena(at, size))];
        gather.extend(buffers.iter().map(|(i, b)| (*i, b.clone())));
        self.dispatch(&self.kernels.shift_gather, &params, &gather, (gx, gy, 1))?;
        // The scatter reads no angles.
        self.dispatch(&self.kernels.shift_scatter, &params, &buffers, (gx, gy, 1))
    }

    /// The first `len` positions of a cache as `f16` bits: keys `(heads, len, head_dim)`,
    /// then values in the same layout.
    pub async fn read_cache_async(&self, cache: &KvCache, len: usize) -> Result<Vec<u16>, GpuError> {
        if len > cache.capacity {
            return Err(shape(format!("{len} positions of {}", cache.capacity)));
        }
        let size = cache.k.size();
        let both = self.read_buffers(&[(&cache.k, size), (&cache.v, size)]).await?;
        let run = len * cache.head_dim;
        let mut out = Vec::with_capacity(2 * cache.heads * run);
        for bytes in &both {
            let bits: &[u16] = bytemuck::cast_slice(bytes);
            for h in 0..cache.heads {
                out.extend_from_slice(&bits[h * cache.capacity * cache.head_dim..][..run]);
            }
        }
        Ok(out)
    }

    /// [`Gpu::read_cache_async`], waiting for it (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_cache(&self, cache: &KvCache, len: usize) -> Result<Vec<u16>, GpuError> {
        pollster::block_on(self.read_cache_async(cache, len))
    }

    /// Writes `bits`, laid out as [`Gpu::read_cache_async`] returns them, into the first `len`
    /// positions of a cache.
    pub fn write_cache(&self, cache: &mut KvCache, bits: &[u16], len: usize) -> Result<(), GpuError> {
        let run = len * cache.head_dim;
        if len > cache.capacity || bits.len() != 2 * cache.heads * run {
            return Err(shape(format!("{} values for {len} positions", bits.len())));
        }
        self.flush();
        for (buffer, half) in [(&cache.k, &bits[..cache.heads * run]), (&cache.v, &bits[cache.heads * run..])] {
            for h in 0..cache.heads {
                let mut chunk: Vec<u16> = half[h * run..(h + 1) * run].to_vec();
                // write_buffer takes whole words.
                if chunk.len() % 2 == 1 {
                    chunk.push(0);
                }
                if !chunk.is_empty() {
                    self.queue.write_buffer(
                        buffer,
                        (h * cache.capacity * cache.head_dim * 2) as u64,
                        bytemuck::cast_slice(&chunk),
                    );
                }
            }
        }
        self.check()
    }
}
