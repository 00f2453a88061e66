//! The seam between the transformer and the device it runs on.
//!
//! A decoder step needs a dozen operations; [`Backend`] names exactly those, over
//! activations that are always row-major `(n_tokens, width)` matrices of `f32`. The
//! architecture code in `decoder.rs` is written once against this trait and has no
//! device branches. The CPU backend (`cpu.rs`) implements it on Charter's own kernels;
//! the candle backend (`candle.rs`) is the reference it is checked against; a WebGPU
//! backend implements the same operations in WGSL.
//!
//! Weights arrive as [`WeightData`]: the raw GGUF bytes of one tensor, which a backend
//! reads in place or keeps in whatever form its kernels read (candle's block types,
//! storage buffers on a GPU). The KV cache is allocated by the backend at load, at full
//! capacity, and written in place: nothing grows during generation.

use charter_core::{Candidate, Shortlist};

use crate::gguf::Format;

/// A backend failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The candle backend's tensor library failed.
    #[cfg(feature = "candle")]
    #[error("candle backend: {0}")]
    Candle(#[from] candle_core::Error),
    /// The GPU backend's device failed or cannot run the model.
    #[cfg(feature = "gpu")]
    #[error(transparent)]
    Gpu(#[from] charter_gpu::GpuError),
    /// An operation this backend cannot do here (a blocking readback on the web).
    #[error("{0}")]
    Unsupported(String),
    /// Shapes that do not fit together; a bug or a malformed model.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// One weight tensor as stored in the file.
#[derive(Debug, Clone, Copy)]
pub struct WeightData<'a> {
    /// The tensor's name, for messages.
    pub name: &'a str,
    /// Dimensions in ggml order (`dims[0]` is the row length).
    pub dims: &'a [u64],
    /// Storage type.
    pub ty: Format,
    /// The raw bytes.
    pub bytes: &'a [u8],
}

/// The activation applied to the gate of a gated feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (Llama, Qwen).
    Silu,
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: llama.cpp's "normal" mode, used by `llama` GGUFs.
    Interleaved,
    /// Halves `(i, i + d/2)`: llama.cpp's "neox" mode (Gemma, Qwen).
    Halves,
}

/// Everything about one attention call that is not a tensor (heads, head dimension,
/// scale, sliding window, soft cap): the kernels' own description, shared by every
/// backend.
pub use charter_kernels::attention::Attention as AttentionParams;

/// The first positions of one layer's KV cache, as a backend stores them: keys
/// `(n_kv_heads, len, head_dim)` row-major, then values in the same layout.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheData {
    /// `f32` values.
    F32(Vec<f32>),
    /// `f16` bits.
    F16(Vec<u16>),
}

impl CacheData {
    /// Values held (keys and values together).
    pub fn len(&self) -> usize {
        match self {
            CacheData::F32(v) => v.len(),
            CacheData::F16(v) => v.len(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A context shift of one layer's cache: positions `from..to` of its first `len` leave,
/// the positions after them move down by `to - from`, and each moved key is turned back
/// by as many positions. Rotary embeddings are rotations, so a key rotated for position
/// `p` and then by `-(to - from)` is the key for `p - (to - from)`: the kept tokens keep
/// their relative distances and need not be read again.
#[derive(Debug, Clone, Copy)]
pub struct CacheShift<'a> {
    /// Positions filled before the shift.
    pub len: usize,
    /// The first position removed.
    pub from: usize,
    /// The first position kept after the removed ones.
    pub to: usize,
    /// Key/value heads.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// How the layer's rotary embeddings pair dimensions.
    pub style: RopeStyle,
    /// Per frequency of the layer's rotary table, the cosine of the angle of
    /// `to - from` positions, and the negated sine (a rotation backwards).
    pub cos: &'a [f32],
    /// See [`CacheShift::cos`].
    pub sin: &'a [f32],
}

impl CacheShift<'_> {
    /// Positions filled after the shift.
    pub fn new_len(&self) -> usize {
        self.len - (self.to - self.from)
    }

    /// Turns one head's key back by the distance it moves.
    pub fn turn(&self, key: &mut [f32]) {
        match self.style {
            RopeStyle::Interleaved => charter_kernels::ops::rope_interleaved(key, self.head_dim, self.cos, self.sin),
            RopeStyle::Halves => charter_kernels::ops::rope_halves(key, self.head_dim, self.cos, self.sin),
        }
    }
}

/// [`Backend::shift_cache`] through [`Backend::read_cache`] and
/// [`Backend::write_cache`]: the default, for a backend without a kernel of its own.
pub fn shift_through_host<B: Backend + ?Sized>(b: &B, cache: &mut B::Cache, shift: &CacheShift<'_>) -> Result<(), BackendError> {
    let CacheShift { len, from, to, heads, head_dim, .. } = *shift;
    if !(from <= to && to <= len) {
        return Err(BackendError::Shape(format!("removing positions {from}..{to} of {len}")));
    }
    let mut bits = match b.read_cache(cache, len)? {
        CacheData::F16(bits) => bits,
        CacheData::F32(values) => values.iter().map(|&x| charter_kernels::half::f32_to_f16(x)).collect(),
    };
    let per = heads * len * head_dim;
    if bits.len() != 2 * per {
        return Err(BackendError::Shape(format!("{} cached values for {len} positions of {heads}×{head_dim}", bits.len())));
    }
    let (k, v) = bits.split_at_mut(per);
    let n = charter_kernels::attention::remove_positions(k, v, heads, len, head_dim, len, from, to, &mut |key| shift.turn(key));
    let mut out = Vec::with_capacity(2 * heads * n * head_dim);
    for half in [&*k, &*v] {
        for h in 0..heads {
            out.extend_from_slice(&half[h * len * head_dim..][..n * head_dim]);
        }
    }
    b.write_cache(cache, &CacheData::F16(out), n)
}

/// A layer's q, k and v projections on their way into attention: per-head norms of q
/// and k where the architecture has them (Qwen3, Gemma 3), then rotary embeddings of
/// both at positions `start..`.
pub struct AttentionInput<'a, B: Backend + ?Sized> {
    /// Queries, `(n, n_heads · head_dim)`.
    pub q: B::Tensor,
    /// Keys, `(n, n_kv_heads · head_dim)`.
    pub k: B::Tensor,
    /// Values, as the keys.
    pub v: &'a B::Tensor,
    /// The q and k norm weights (`head_dim` each).
    pub qk_norm: Option<&'a [B::Vector; 2]>,
    /// The norms' epsilon.
    pub eps: f32,
    /// The rotary tables.
    pub rope: &'a B::Rope,
    /// How the rotary embeddings pair dimensions.
    pub style: RopeStyle,
    /// The position of the first row.
    pub start: usize,
}

/// The operations of one decoder step on one device.
///
/// Three operations are compositions of the others that a device with a high cost per
/// kernel launch does in fewer: [`Backend::attend`], [`Backend::gated_product`] and
/// [`Backend::norm_add_rms_norm`]. Their default bodies say what they compute.
pub trait Backend {
    /// An activation matrix `(n_tokens, width)`.
    type Tensor: Clone;
    /// A weight matrix `(rows, cols)`, applied as `x · Wᵀ`.
    type Matrix;
    /// A weight vector (norm scales, biases).
    type Vector;
    /// One layer's key and value cache.
    type Cache;
    /// Precomputed rotary tables.
    type Rope;

    /// What runs, for reports: the backend and its kernels (`"cpu (avx2)"`).
    fn describe(&self) -> String;

    /// Loads a weight matrix.
    fn matrix(&self, w: WeightData<'_>) -> Result<Self::Matrix, BackendError>;
    /// Loads matrices that are applied to the same input (a layer's q, k and v; its
    /// gate and up). A backend may stack them into fewer matrices that
    /// [`Backend::matmul_each`] reads at once; by default each is its own.
    fn matrices(&self, ws: &[WeightData<'_>]) -> Result<Vec<Self::Matrix>, BackendError> {
        ws.iter().map(|&w| self.matrix(w)).collect()
    }
    /// Loads a gated feed-forward block's gate and up projections, for
    /// [`Backend::gated_product`]; by default as [`Backend::matrices`] does.
    fn gate_up(&self, gate: WeightData<'_>, up: WeightData<'_>) -> Result<Vec<Self::Matrix>, BackendError> {
        self.matrices(&[gate, up])
    }
    /// Loads a weight vector.
    fn vector(&self, w: WeightData<'_>) -> Result<Self::Vector, BackendError>;
    /// Allocates one layer's keys and values: `capacity` positions for `n_kv_heads`
    /// heads of `head_dim`.
    fn cache(&self, n_kv_heads: usize, capacity: usize, head_dim: usize) -> Result<Self::Cache, BackendError>;
    /// Precomputes rotary tables for positions `0..capacity` from inverse frequencies.
    fn rope_table(&self, inv_freq: &[f32], capacity: usize) -> Result<Self::Rope, BackendError>;

    /// Rows `ids` of an embedding table: `(ids.len(), cols)`.
    fn embed(&self, table: &Self::Matrix, ids: &[u32]) -> Result<Self::Tensor, BackendError>;
    /// `x · Wᵀ`: `(n, cols)` to `(n, rows)`.
    fn matmul(&self, x: &Self::Tensor, w: &Self::Matrix) -> Result<Self::Tensor, BackendError>;
    /// Appends `x · Wᵀ` for each matrix [`Backend::matrices`] loaded to `out`, in the
    /// order they were given (`out` is the caller's, kept so a step allocates nothing).
    fn matmul_each(&self, x: &Self::Tensor, ws: &[Self::Matrix], out: &mut Vec<Self::Tensor>) -> Result<(), BackendError> {
        for w in ws {
            out.push(self.matmul(x, w)?);
        }
        Ok(())
    }
    /// [`Backend::matmul_each`] with `biases[i]` added to every row of the i-th product
    /// (Qwen2's q, k and v), which a backend may add as it stores the products.
    fn matmul_each_biased(
        &self,
        x: &Self::Tensor,
        ws: &[Self::Matrix],
        biases: &[Self::Vector],
        out: &mut Vec<Self::Tensor>,
    ) -> Result<(), BackendError> {
        biased_apart(self, x, ws, biases, out)
    }
    /// Adds `b` to every row.
    fn add_bias(&self, x: &Self::Tensor, b: &Self::Vector) -> Result<Self::Tensor, BackendError>;
    /// Elementwise sum.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor, BackendError>;
    /// Multiplies every element by `s`.
    fn scale(&self, x: &Self::Tensor, s: f32) -> Result<Self::Tensor, BackendError>;
    /// RMS normalization of each run of `w`'s length (a whole row, or one head), then
    /// multiplication by `w`.
    fn rms_norm(&self, x: &Self::Tensor, w: &Self::Vector, eps: f32) -> Result<Self::Tensor, BackendError>;
    /// The residual step: `s = a + b` and `rms_norm(s, w)`, which a backend may do in one
    /// pass.
    fn add_rms_norm(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        w: &Self::Vector,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::Tensor), BackendError> {
        let s = self.add(a, b)?;
        let n = self.rms_norm(&s, w, eps)?;
        Ok((s, n))
    }
    /// Rotates each head of `x` (`n_heads` heads per row) for positions `start..start+n`.
    fn rope(
        &self,
        x: &Self::Tensor,
        rope: &Self::Rope,
        n_heads: usize,
        start: usize,
        style: RopeStyle,
    ) -> Result<Self::Tensor, BackendError>;
    /// `act(gate) · up`, elementwise.
    fn gated(&self, gate: &Self::Tensor, up: &Self::Tensor, act: Activation) -> Result<Self::Tensor, BackendError>;
    /// Writes `k` and `v` at positions `start..start+n` of the cache, then attends the
    /// queries at those positions over every cached position they may see (causal, and
    /// within the window).
    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        cache: &mut Self::Cache,
        start: usize,
        params: &AttentionParams,
    ) -> Result<Self::Tensor, BackendError>;
    /// [`AttentionInput`]'s norms and rotary embeddings, then [`Backend::attention`].
    fn attend(
        &self,
        input: AttentionInput<'_, Self>,
        cache: &mut Self::Cache,
        params: &AttentionParams,
    ) -> Result<Self::Tensor, BackendError> {
        let AttentionInput { mut q, mut k, v, qk_norm, eps, rope, style, start } = input;
        if let Some([qn, kn]) = qk_norm {
            q = self.rms_norm(&q, qn, eps)?;
            k = self.rms_norm(&k, kn, eps)?;
        }
        let q = self.rope(&q, rope, params.n_heads, start, style)?;
        let k = self.rope(&k, rope, params.n_kv_heads, start, style)?;
        self.attention(&q, &k, v, cache, start, params)
    }
    /// `act(x · Gᵀ) · (x · Uᵀ)`: a gated feed-forward block's input to its down
    /// projection, from the matrices [`Backend::gate_up`] loaded (`scratch` is the
    /// caller's, kept so a step allocates nothing).
    fn gated_product(
        &self,
        x: &Self::Tensor,
        gate_up: &[Self::Matrix],
        act: Activation,
        scratch: &mut Vec<Self::Tensor>,
    ) -> Result<Self::Tensor, BackendError> {
        gated_apart(self, x, gate_up, act, scratch)
    }
    /// [`Backend::add_rms_norm`] of `a` and `rms_norm(b, wb)`: a block's output norm
    /// (Gemma 3), the residual add and the next norm.
    fn norm_add_rms_norm(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        wb: &Self::Vector,
        w: &Self::Vector,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::Tensor), BackendError> {
        let b = self.rms_norm(b, wb, eps)?;
        self.add_rms_norm(a, &b, w, eps)
    }
    /// The first `len` positions of a cache, in the backend's own precision (to keep a
    /// prefilled state, such as Charter's system block, across loads).
    fn read_cache(&self, cache: &Self::Cache, len: usize) -> Result<CacheData, BackendError>;
    /// Writes `data`, laid out as [`Backend::read_cache`] returns it, into the first
    /// `len` positions of a cache; data of another precision is converted.
    fn write_cache(&self, cache: &mut Self::Cache, data: &CacheData, len: usize) -> Result<(), BackendError>;
    /// Applies a context shift to one layer's cache ([`CacheShift`]). By default through
    /// the host ([`shift_through_host`]), which a device whose reads cannot block (a GPU
    /// on the web) must replace with a kernel of its own; where a shift fails, the
    /// caller reads the kept tokens again.
    fn shift_cache(&self, cache: &mut Self::Cache, shift: &CacheShift<'_>) -> Result<(), BackendError> {
        shift_through_host(self, cache, shift)
    }
    /// Rows `from..` of `x`.
    fn rows_from(&self, x: &Self::Tensor, from: usize) -> Result<Self::Tensor, BackendError>;
    /// Reads a tensor back as row-major `f32`.
    fn read(&self, x: &Self::Tensor) -> Result<Vec<f32>, BackendError>;
    /// Appends a tensor, row-major `f32`, to `out` (a buffer the caller reuses).
    fn read_into(&self, x: &Self::Tensor, out: &mut Vec<f32>) -> Result<(), BackendError> {
        out.extend(self.read(x)?);
        Ok(())
    }
    /// [`Backend::read_into`] for a device whose readback completes later (a GPU on the
    /// web, where nothing may block); everything recorded runs first.
    fn read_into_async<'a>(
        &'a self,
        x: &'a Self::Tensor,
        out: &'a mut Vec<f32>,
    ) -> impl std::future::Future<Output = Result<(), BackendError>> + 'a {
        async move { self.read_into(x, out) }
    }
    /// Kernel launches since load, where the device counts them (a GPU; `None` here):
    /// the difference across a decode step is the figure that bounds a small model's
    /// speed on a real GPU.
    fn dispatches(&self) -> Option<u64> {
        None
    }
    /// Submissions since load, where the device counts them (a GPU; `None` here).
    fn submissions(&self) -> Option<u64> {
        None
    }
    /// Starts what is recorded so far without waiting for it, where a device records
    /// (a GPU submits it): the decoder calls this between the chunks of a long prompt,
    /// so no one submission runs long enough to trip an operating system's GPU watchdog
    /// (about two seconds on Windows). By default, nothing.
    fn flush(&self) {}
    /// The longest [`Shortlist`] the device computes itself (0: none, the default).
    fn shortlist_limit(&self) -> usize {
        0
    }
    /// The candidates `list` leaves of a one-row tensor of logits, into `out`: on a
    /// device that computes them where the logits are (see
    /// [`Backend::shortlist_limit`]), only they are read back. The default reads the row
    /// and applies the list here.
    fn shortlist_async<'a>(
        &'a self,
        logits: &'a Self::Tensor,
        list: &'a Shortlist,
        out: &'a mut Vec<Candidate>,
    ) -> impl std::future::Future<Output = Result<(), BackendError>> + 'a {
        async move {
            let mut row = Vec::new();
            self.read_into_async(logits, &mut row).await?;
            list.apply(&mut row, out);
            Ok(())
        }
    }
    /// [`Backend::read_cache`] for a device whose readback completes later.
    fn read_cache_async<'a>(
        &'a self,
        cache: &'a Self::Cache,
        len: usize,
    ) -> impl std::future::Future<Output = Result<CacheData, BackendError>> + 'a {
        async move { self.read_cache(cache, len) }
    }
}

/// [`Backend::gated_product`] as two products and [`Backend::gated`]: the default, and
/// what a backend falls back to for matrices it could not pair.
pub fn gated_apart<B: Backend + ?Sized>(
    b: &B,
    x: &B::Tensor,
    gate_up: &[B::Matrix],
    act: Activation,
    scratch: &mut Vec<B::Tensor>,
) -> Result<B::Tensor, BackendError> {
    scratch.clear();
    b.matmul_each(x, gate_up, scratch)?;
    let found = scratch.len();
    match (scratch.pop(), scratch.pop()) {
        (Some(up), Some(gate)) if found == 2 => b.gated(&gate, &up, act),
        _ => Err(BackendError::Shape(format!("{found} products of a gate and an up projection"))),
    }
}

/// [`Backend::matmul_each_biased`] as the products and then [`Backend::add_bias`] on
/// each: the default, and what a backend falls back to for matrices it did not stack.
pub fn biased_apart<B: Backend + ?Sized>(
    b: &B,
    x: &B::Tensor,
    ws: &[B::Matrix],
    biases: &[B::Vector],
    out: &mut Vec<B::Tensor>,
) -> Result<(), BackendError> {
    let first = out.len();
    b.matmul_each(x, ws, out)?;
    let products = &mut out[first..];
    if products.len() != biases.len() {
        return Err(BackendError::Shape(format!("{} biases for {} products", biases.len(), products.len())));
    }
    for (y, bias) in products.iter_mut().zip(biases) {
        *y = b.add_bias(y, bias)?;
    }
    Ok(())
}
