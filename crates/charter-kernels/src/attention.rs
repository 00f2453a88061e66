//! Causal attention over a KV cache kept in `f16` (half the memory and bandwidth of
//! `f32`), computed in `f32`.
//!
//! The cache is head-major (`[head][position][dim]`), so one head's keys are one run
//! of memory. Queries are taken a tile of positions at a time, with every query head
//! that shares a key head: each cached key and value is converted once per tile and
//! used by all of the tile's queries, so a prefill chunk reads the cache once per tile,
//! not once per query.

use charter_threads::{Job, Pool};

use crate::dot::scalar::dot_f32;
use crate::shared::SharedOut;
use crate::half::{f16_to_f32_finite, f32_to_f16};
use crate::ops;

/// Query positions per tile.
const TILE: usize = 16;

/// One layer's keys and values.
#[derive(Debug, Clone)]
pub struct KvCache {
    heads: usize,
    capacity: usize,
    head_dim: usize,
    k: Vec<u16>,
    v: Vec<u16>,
}

/// The shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads; query head `h` reads key head `h / (n_heads / n_kv_heads)`.
    pub n_kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// A query sees keys less than this many positions back, if set.
    pub window: Option<usize>,
    /// `tanh` soft cap of the scores, if set.
    pub softcap: Option<f32>,
}

/// Buffers one attention call reuses.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    scores: Vec<f32>,
    key: Vec<f32>,
    /// A tile's values, converted to `f32` once: `(span, head_dim)`.
    values: Vec<f32>,
}

/// Largest finite half: values beyond it are clamped on the way into the cache rather
/// than turned into infinities.
const F16_MAX: f32 = 65504.0;

impl KvCache {
    /// A zeroed cache of `capacity` positions for `heads` heads of `head_dim`.
    pub fn new(heads: usize, capacity: usize, head_dim: usize) -> Self {
        let len = heads * capacity * head_dim;
        KvCache { heads, capacity, head_dim, k: vec![0; len], v: vec![0; len] }
    }

    /// Positions it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Key/value heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Values per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Bytes it occupies.
    pub fn bytes(&self) -> usize {
        2 * 2 * self.k.len()
    }

    /// Writes rows of keys and values (`(n, heads · head_dim)` each) at positions
    /// `start..start + n`.
    ///
    /// # Panics
    /// When the rows do not fit.
    pub fn write(&mut self, start: usize, k: &[f32], v: &[f32]) {
        let width = self.heads * self.head_dim;
        let n = k.len() / width;
        assert!(k.len() == n * width && v.len() == k.len() && start + n <= self.capacity, "{n} rows at {start}");
        for (dst, src) in [(&mut self.k, k), (&mut self.v, v)] {
            for (i, row) in src.chunks_exact(width).enumerate() {
                for (h, head) in row.chunks_exact(self.head_dim).enumerate() {
                    let at = (h * self.capacity + start + i) * self.head_dim;
                    for (d, &x) in dst[at..at + self.head_dim].iter_mut().zip(head) {
                        *d = f32_to_f16(x.clamp(-F16_MAX, F16_MAX));
                    }
                }
            }
        }
    }

    /// The first `len` positions as `f16` bits, `(heads, len, head_dim)` for keys, then
    /// the same for values.
    pub fn read(&self, len: usize) -> Vec<u16> {
        let mut out = Vec::with_capacity(2 * self.heads * len * self.head_dim);
        for data in [&self.k, &self.v] {
            for h in 0..self.heads {
                let at = h * self.capacity * self.head_dim;
                out.extend_from_slice(&data[at..at + len * self.head_dim]);
            }
        }
        out
    }

    /// Fills the first `len` positions from [`KvCache::read`]'s layout.
    ///
    /// # Panics
    /// When `data` does not hold `len` positions or they do not fit.
    pub fn write_raw(&mut self, len: usize, data: &[u16]) {
        let per = self.heads * len * self.head_dim;
        assert!(len <= self.capacity && data.len() == 2 * per, "{} values as {len} positions", data.len());
        let (capacity, head_dim) = (self.capacity, self.head_dim);
        for (dst, src) in [(&mut self.k, &data[..per]), (&mut self.v, &data[per..])] {
            if len == 0 {
                break;
            }
            for (h, head) in src.chunks_exact(len * head_dim).enumerate() {
                let at = h * capacity * head_dim;
                dst[at..at + head.len()].copy_from_slice(head);
            }
        }
    }

    /// Removes positions `from..to` of the first `len` and moves the positions after
    /// them down by `to - from`, so the cache holds `len - (to - from)` positions:
    /// values move unchanged, and each moved key is converted, passed to `turn` (one
    /// head's `head_dim` values: the caller rotates it back by the distance moved, as
    /// rotary embeddings are rotations) and stored again. Returns the new length.
    ///
    /// # Panics
    /// When `from <= to <= len <= capacity` does not hold.
    pub fn remove(&mut self, len: usize, from: usize, to: usize, turn: &mut dyn FnMut(&mut [f32])) -> usize {
        remove_positions(&mut self.k, &mut self.v, self.heads, self.capacity, self.head_dim, len, from, to, turn)
    }

    fn row(data: &[u16], at: usize, out: &mut [f32]) {
        let n = out.len();
        for (o, &h) in out.iter_mut().zip(&data[at..at + n]) {
            *o = f16_to_f32_finite(h);
        }
    }
}

/// [`KvCache::remove`] over head-major `f16` keys and values laid out with `stride`
/// positions per head (a cache's capacity, or the length of a saved state): the one
/// definition of a context shift, which every backend's cache follows.
///
/// # Panics
/// When `from <= to <= len <= stride` does not hold or the slices are shorter than
/// `heads` runs of `stride` positions.
#[allow(clippy::too_many_arguments)]
pub fn remove_positions(
    k: &mut [u16],
    v: &mut [u16],
    heads: usize,
    stride: usize,
    head_dim: usize,
    len: usize,
    from: usize,
    to: usize,
    turn: &mut dyn FnMut(&mut [f32]),
) -> usize {
    assert!(from <= to && to <= len && len <= stride, "removing {from}..{to} of {len} positions");
    assert!(k.len() >= heads * stride * head_dim && v.len() == k.len(), "a cache of {} values", k.len());
    let kept = len - to;
    let mut key = vec![0f32; head_dim];
    for h in 0..heads {
        let base = h * stride * head_dim;
        v.copy_within(base + to * head_dim..base + len * head_dim, base + from * head_dim);
        for p in 0..kept {
            let src = base + (to + p) * head_dim;
            for (x, &bits) in key.iter_mut().zip(&k[src..src + head_dim]) {
                *x = f16_to_f32_finite(bits);
            }
            turn(&mut key);
            let dst = base + (from + p) * head_dim;
            for (d, &x) in k[dst..dst + head_dim].iter_mut().zip(&key) {
                *d = f32_to_f16(x.clamp(-F16_MAX, F16_MAX));
            }
        }
    }
    len - (to - from)
}

/// Checks an attention call's shapes; returns the query rows.
fn rows_of(p: &Attention, q: &[f32], cache: &KvCache, start: usize, out: &[f32]) -> usize {
    let hd = p.head_dim;
    let width = p.n_heads * hd;
    let n = q.len() / width.max(1);
    assert!(
        width > 0
            && q.len() == n * width
            && out.len() == q.len()
            && hd == cache.head_dim
            && p.n_kv_heads == cache.heads
            && p.n_kv_heads > 0
            && p.n_heads % p.n_kv_heads == 0
            && start + n <= cache.capacity,
        "attention of {n} rows at {start}"
    );
    n
}

/// Attends `n` query rows (`(n, n_heads · head_dim)`) at positions `start..start + n`
/// over the cache, whose positions `0..start + n` must be written; the result has the
/// queries' shape.
///
/// # Panics
/// When shapes disagree with the cache.
pub fn attend(p: &Attention, q: &[f32], cache: &KvCache, start: usize, out: &mut [f32], scratch: &mut Scratch) {
    let n = rows_of(p, q, cache, start, out);
    out.fill(0.0);
    let tiles = n.div_ceil(TILE);
    let shared = SharedOut::new(out);
    for unit in 0..p.n_kv_heads * tiles {
        // SAFETY: `shared` is this call's output, and units run one after another.
        unsafe { attend_unit(p, q, cache, start, n, unit / tiles, unit % tiles * TILE, &shared, scratch) };
    }
}

thread_local! {
    /// Each thread's buffers for [`attend_on`] (a pool's helpers live as long as it).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// [`attend`] shared among a pool's threads, a key head and a tile of queries per task:
/// the same values, since every task computes what [`attend`] computes for its part, in
/// the same order.
///
/// # Panics
/// As [`attend`].
pub fn attend_on(pool: &Pool, p: &Attention, q: &[f32], cache: &KvCache, start: usize, out: &mut [f32], scratch: &mut Scratch) {
    let n = rows_of(p, q, cache, start, out);
    let tiles = n.div_ceil(TILE);
    let units = p.n_kv_heads * tiles;
    if pool.threads() == 1 || units == 1 {
        return attend(p, q, cache, start, out, scratch);
    }
    out.fill(0.0);
    // Scores and weighted sums: about 2 · n · context · n_heads · head_dim multiply-adds.
    let work = 2 * (n * (start + n) * p.n_heads * p.head_dim) as u64;
    let shape = (1 << 63) ^ ((p.n_heads as u64) << 40) ^ ((p.head_dim as u64) << 24) ^ (u64::from(n.ilog2()) << 8) ^ u64::from((start + n).ilog2());
    let shared = SharedOut::new(out);
    pool.run(Job { tasks: units, work, shape }, &|unit| {
        SCRATCH.with(|s| {
            // SAFETY: each unit writes only its own key head's query heads in its own
            // tile's rows, and the job ends before `out`'s borrow does.
            unsafe { attend_unit(p, q, cache, start, n, unit / tiles, unit % tiles * TILE, &shared, &mut s.borrow_mut()) };
        });
    });
}

/// One key head's part of attention for one tile of queries: the rows
/// `tile_start..tile_start + TILE` of the query heads that read key head `kh`.
///
/// # Safety
/// `out` is the output of `rows_of`'s shape, and no other thread writes these rows of
/// these heads while this runs.
#[allow(clippy::too_many_arguments)]
unsafe fn attend_unit(
    p: &Attention,
    q: &[f32],
    cache: &KvCache,
    start: usize,
    n: usize,
    kh: usize,
    tile_start: usize,
    out: &SharedOut,
    scratch: &mut Scratch,
) {
    let hd = p.head_dim;
    let width = p.n_heads * hd;
    let group = p.n_heads / p.n_kv_heads;
    let visible_from = |qpos: usize| p.window.map_or(0, |w| (qpos + 1).saturating_sub(w));
    // Room for a whole tile over the whole cache, once: later calls never grow it.
    let most = TILE * group * cache.capacity;
    scratch.scores.reserve(most.saturating_sub(scratch.scores.len()));
    scratch.values.reserve((cache.capacity * hd).saturating_sub(scratch.values.len()));
    scratch.key.resize(hd, 0.0);
    let base = kh * cache.capacity * hd;
    let tile = TILE.min(n - tile_start);
    let lo = visible_from(start + tile_start);
    let hi = start + tile_start + tile; // exclusive
    let span = hi - lo;
    let rows = tile * group;
    scratch.scores.resize(rows * span, 0.0);
    // Scores: each key once, against every query of the tile that sees it.
    for pos in lo..hi {
        KvCache::row(&cache.k, base + pos * hd, &mut scratch.key);
        for i in 0..tile {
            let qpos = start + tile_start + i;
            if pos > qpos || pos < visible_from(qpos) {
                continue;
            }
            for g in 0..group {
                let h = kh * group + g;
                let qv = &q[(tile_start + i) * width + h * hd..][..hd];
                let mut s = dot_f32(qv, &scratch.key) * p.scale;
                if let Some(cap) = p.softcap {
                    s = cap * ops::tanh(s / cap);
                }
                scratch.scores[(i * group + g) * span + (pos - lo)] = s;
            }
        }
    }
    for i in 0..tile {
        let qpos = start + tile_start + i;
        let (from, to) = (visible_from(qpos) - lo, qpos + 1 - lo);
        for g in 0..group {
            ops::softmax(&mut scratch.scores[(i * group + g) * span + from..(i * group + g) * span + to]);
        }
    }
    // Values: the span's converted once, then summed into each query row a run of
    // dimensions at a time, in registers (the same order as adding them one position
    // at a time).
    scratch.values.resize(span * hd, 0.0);
    for (pos, row) in (lo..hi).zip(scratch.values.chunks_exact_mut(hd)) {
        KvCache::row(&cache.v, base + pos * hd, row);
    }
    for i in 0..tile {
        let qpos = start + tile_start + i;
        let (from, to) = (visible_from(qpos) - lo, qpos + 1 - lo);
        for g in 0..group {
            let h = kh * group + g;
            let w = &scratch.scores[(i * group + g) * span + from..(i * group + g) * span + to];
            // SAFETY: row `tile_start + i`, head `h` lies in the output, and the caller
            // promises no one else writes it now.
            let o = unsafe { out.slice((tile_start + i) * width + h * hd, hd) };
            weighted_sum(w, &scratch.values[from * hd..to * hd], o);
        }
    }
}

/// `out = Σ_p w[p] · values[p]` over rows of `out.len()` values, adding position after
/// position from zero; sixteen dimensions at a time stay in registers across all the
/// positions.
fn weighted_sum(w: &[f32], values: &[f32], out: &mut [f32]) {
    const RUN: usize = 16;
    let hd = out.len();
    let (runs, tail) = out.as_chunks_mut::<RUN>();
    for (c, o) in runs.iter_mut().enumerate() {
        let mut acc = [0f32; RUN];
        for (&wp, row) in w.iter().zip(values.chunks_exact(hd)) {
            let v: &[f32; RUN] = row[c * RUN..][..RUN].try_into().expect("a run of the row");
            for j in 0..RUN {
                acc[j] += wp * v[j];
            }
        }
        *o = acc;
    }
    let done = hd - tail.len();
    for (j, o) in tail.iter_mut().enumerate() {
        *o = w.iter().zip(values.chunks_exact(hd)).fold(0.0, |a, (&wp, row)| a + wp * row[done + j]);
    }
}
