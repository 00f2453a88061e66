//! The decoder-only transformer, written once over [`Backend`].
//!
//! One block, in the order the residual stream passes through it (shapes are
//! `(n_tokens, width)`):
//!
//! ```text
//! x ─ norm ─ q,k,v proj (+bias) ─ [q/k norm] ─ rope ─ attention ─ o proj ─ [post norm] ─ + ─┐
//! └──────────────────────────────────────────────────────────────────────────────────────┘ │
//! x ─ norm ─ act(gate proj) · up proj ─ down proj ─ [post norm] ─ + ────────────────────────┘
//! ```
//!
//! The KV cache lives in the layers, allocated at load for the whole context and
//! written in place; `truncate` only moves the fill mark, so rewinding to a message
//! boundary costs nothing. Prompts are run in chunks so a long prefill never needs a
//! `(n_tokens, n_tokens)` score matrix for the whole prompt at once.

use charter_core::{Candidate, Shortlist};

use crate::architecture::DecoderConfig;
use crate::backend::{AttentionInput, AttentionParams, Backend, BackendError, CacheData, CacheShift, WeightData};
use crate::gguf::{Format, Gguf};

/// Tokens per prefill chunk.
const PREFILL_CHUNK: usize = 256;

/// Why a forward pass or a load failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecoderError {
    /// A tensor the architecture needs is absent.
    #[error("the model has no tensor {0}")]
    MissingTensor(String),
    /// A tensor has the wrong shape for the metadata.
    #[error("tensor {name} has dimensions {found:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Its dimensions.
        found: Vec<u64>,
        /// What the metadata implies.
        expected: Vec<u64>,
    },
    /// The input does not fit what remains of the context.
    #[error("{n_tokens} more tokens do not fit: {n_cached} of {capacity} positions are used")]
    ContextFull {
        /// Tokens asked for.
        n_tokens: usize,
        /// Positions used.
        n_cached: usize,
        /// Positions in all.
        capacity: usize,
    },
    /// A tensor stored in a way this architecture cannot use.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A token id outside the vocabulary.
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    /// A saved KV state that does not belong to this model.
    #[error("saved model state does not fit this model: {0}")]
    State(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The products [`Backend::matmul_each`] left in `v`, which must be `n`.
fn wrong_count<T>(v: &[T], n: usize) -> DecoderError {
    DecoderError::Backend(BackendError::Shape(format!("{} products of {n} matrices", v.len())))
}

/// Takes the three products of q, k and v out of `v` (emptied, its capacity kept).
fn three<T>(v: &mut Vec<T>) -> Result<[T; 3], DecoderError> {
    if v.len() != 3 {
        return Err(wrong_count(v, 3));
    }
    match (v.pop(), v.pop(), v.pop()) {
        (Some(c), Some(b), Some(a)) => Ok([a, b, c]),
        _ => Err(wrong_count(v, 3)),
    }
}

/// The first bytes of a saved KV state (and its layout's version).
const STATE_MAGIC: &[u8; 4] = b"CKV2";
/// Header: magic, then layers, KV heads, head dimension, positions and the value type
/// (0: `f32`, 1: `f16`), each a little-endian `u32`.
const STATE_HEADER: usize = 24;

struct Layer<B: Backend> {
    attn_norm: B::Vector,
    /// The q, k and v projections, as [`Backend::matrices`] loaded them.
    qkv: Vec<B::Matrix>,
    wo: B::Matrix,
    /// q, k, v biases (Qwen2).
    bias: Option<[B::Vector; 3]>,
    /// Per-head q and k norms (Qwen3, Gemma 3).
    qk_norm: Option<[B::Vector; 2]>,
    /// Norms after attention and after the feed-forward block (Gemma 3).
    post_norm: Option<[B::Vector; 2]>,
    ffn_norm: B::Vector,
    /// The gate and up projections, as [`Backend::gate_up`] loaded them.
    gate_up: Vec<B::Matrix>,
    down: B::Matrix,
    /// Keys and values, `(n_kv_heads, capacity, head_dim)` each.
    cache: B::Cache,
    /// Index into `Decoder::ropes`.
    rope: usize,
}

/// A loaded model's weights, rotary tables and KV cache on one backend.
pub struct Decoder<B: Backend> {
    backend: B,
    config: DecoderConfig,
    embed: B::Matrix,
    /// `None` when the output head is tied to the embeddings.
    output: Option<B::Matrix>,
    output_norm: B::Vector,
    layers: Vec<Layer<B>>,
    ropes: Vec<B::Rope>,
    /// Each rotary table's inverse frequencies, for turning keys in a context shift.
    inv_freqs: Vec<Vec<f32>>,
    capacity: usize,
    n_cached: usize,
    /// Where [`Backend::matmul_each`] puts a layer's products, kept from step to step.
    products: Vec<B::Tensor>,
}

impl<B: Backend> std::fmt::Debug for Decoder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("config", &self.config)
            .field("capacity", &self.capacity)
            .field("n_cached", &self.n_cached)
            .finish_non_exhaustive()
    }
}

struct Weights<'g, 'a> {
    gguf: &'g Gguf<'a>,
}

impl<'g> Weights<'g, '_> {
    fn get(&self, name: &str, expected: &[u64]) -> Result<WeightData<'g>, DecoderError> {
        let info = self.gguf.tensor(name).ok_or_else(|| DecoderError::MissingTensor(name.to_owned()))?;
        if info.dims != expected {
            return Err(DecoderError::TensorShape {
                name: name.to_owned(),
                found: info.dims.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(WeightData { name: &info.name, dims: &info.dims, ty: info.ty, bytes: self.gguf.tensor_bytes(info) })
    }

    fn has(&self, name: &str) -> bool {
        self.gguf.tensor(name).is_some()
    }
}

impl<B: Backend> Decoder<B> {
    /// Loads the weights named by `config` and allocates a KV cache of `capacity`
    /// positions.
    pub fn load(backend: B, gguf: &Gguf<'_>, config: DecoderConfig, capacity: usize) -> Result<Self, DecoderError> {
        let w = Weights { gguf };
        let c = &config;
        let (d, ff, hd) = (c.n_embd as u64, c.n_ff as u64, c.head_dim as u64);
        let (q_width, kv_width) = (c.n_heads as u64 * hd, c.n_kv_heads as u64 * hd);
        let vocab = c.n_vocab as u64;

        let embed = backend.matrix(w.get("token_embd.weight", &[d, vocab])?)?;
        let output = if w.has("output.weight") { Some(backend.matrix(w.get("output.weight", &[d, vocab])?)?) } else { None };
        let output_norm = backend.vector(w.get("output_norm.weight", &[d])?)?;

        // Llama 3's long-context frequency factors.
        let rope_factors = if w.has("rope_freqs.weight") {
            let data = w.get("rope_freqs.weight", &[hd / 2])?;
            if data.ty != Format::F32 {
                return Err(DecoderError::Unsupported(format!("rope_freqs.weight stored as {}", data.ty.name())));
            }
            Some(data.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<_>>())
        } else {
            None
        };
        let mut inv_freqs = vec![c.inv_freq(c.rope_base, rope_factors.as_deref())];
        if let Some(local) = c.rope_base_local {
            inv_freqs.push(c.inv_freq(local, rope_factors.as_deref()));
        }
        let ropes = inv_freqs.iter().map(|f| backend.rope_table(f, capacity)).collect::<Result<Vec<_>, _>>()?;

        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}");
            let vector = |t: &str, len: u64| -> Result<B::Vector, DecoderError> { Ok(backend.vector(w.get(&name(t), &[len])?)?) };
            let names: Vec<String> = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
                .iter()
                .map(|t| name(&format!("{t}.weight")))
                .collect();
            let weight = |i: usize, cols: u64, rows: u64| w.get(&names[i], &[cols, rows]);
            let bias = if c.qkv_bias {
                Some([vector("attn_q.bias", q_width)?, vector("attn_k.bias", kv_width)?, vector("attn_v.bias", kv_width)?])
            } else {
                None
            };
            let qk_norm =
                if c.qk_norm { Some([vector("attn_q_norm.weight", hd)?, vector("attn_k_norm.weight", hd)?]) } else { None };
            let post_norm = if c.post_norms {
                Some([vector("post_attention_norm.weight", d)?, vector("post_ffw_norm.weight", d)?])
            } else {
                None
            };
            let local = c.layer_windows[i].is_some() && c.rope_base_local.is_some();
            layers.push(Layer {
                attn_norm: vector("attn_norm.weight", d)?,
                qkv: backend.matrices(&[weight(0, d, q_width)?, weight(1, d, kv_width)?, weight(2, d, kv_width)?])?,
                wo: backend.matrix(weight(3, q_width, d)?)?,
                bias,
                qk_norm,
                post_norm,
                ffn_norm: vector("ffn_norm.weight", d)?,
                gate_up: backend.gate_up(weight(4, d, ff)?, weight(5, d, ff)?)?,
                down: backend.matrix(weight(6, ff, d)?)?,
                cache: backend.cache(c.n_kv_heads, capacity, c.head_dim)?,
                rope: usize::from(local),
            });
        }
        Ok(Decoder {
            backend,
            config,
            embed,
            output,
            output_norm,
            layers,
            ropes,
            inv_freqs,
            capacity,
            n_cached: 0,
            products: Vec::with_capacity(3),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Positions the KV cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions filled.
    pub fn n_cached(&self) -> usize {
        self.n_cached
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.n_cached = self.n_cached.min(len);
    }

    /// A context shift: forgets positions `from..to` and moves the filled positions
    /// after them down by `to - from`, turning their keys back as many positions (see
    /// [`CacheShift`]), so the tokens after the removed ones stay cached. On failure
    /// the cache keeps its first `from` positions, which a shift never touches.
    pub fn shift(&mut self, from: usize, to: usize) -> Result<(), DecoderError> {
        let len = self.n_cached;
        if !(from <= to && to <= len) {
            return Err(DecoderError::State(format!("cannot remove positions {from}..{to} of {len}")));
        }
        if from == to {
            return Ok(());
        }
        let distance = (to - from) as f64;
        // As the rotary tables are made: angles in f64, so every platform rounds alike.
        let turns: Vec<(Vec<f32>, Vec<f32>)> = self
            .inv_freqs
            .iter()
            .map(|freqs| freqs.iter().map(|&f| ((distance * f64::from(f)).cos() as f32, -(distance * f64::from(f)).sin() as f32)).unzip())
            .collect();
        let c = &self.config;
        for layer in &mut self.layers {
            let (cos, sin) = &turns[layer.rope];
            let shift = CacheShift { len, from, to, heads: c.n_kv_heads, head_dim: c.head_dim, style: c.rope_style, cos, sin };
            if let Err(e) = self.backend.shift_cache(&mut layer.cache, &shift) {
                self.n_cached = from;
                return Err(e.into());
            }
        }
        self.n_cached = len - (to - from);
        Ok(())
    }

    /// What runs the model, for reports.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The first `len` positions of the KV cache as bytes, for [`Decoder::restore_state`]
    /// on a later load of the same model: a header (magic, layers, KV heads, head
    /// dimension, positions, value type), then each layer's keys and values in the
    /// backend's precision (`f16` on Charter's CPU backend), little-endian.
    pub fn save_state(&self, len: usize) -> Result<Vec<u8>, DecoderError> {
        self.check_saved(len)?;
        let layers = self.layers.iter().map(|layer| self.backend.read_cache(&layer.cache, len)).collect::<Result<Vec<_>, _>>()?;
        self.state_bytes(len, layers)
    }

    /// [`Decoder::save_state`] on a backend whose readback completes later.
    pub async fn save_state_async(&self, len: usize) -> Result<Vec<u8>, DecoderError> {
        self.check_saved(len)?;
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            layers.push(self.backend.read_cache_async(&layer.cache, len).await?);
        }
        self.state_bytes(len, layers)
    }

    fn check_saved(&self, len: usize) -> Result<(), DecoderError> {
        if len > self.n_cached {
            return Err(DecoderError::State(format!("{len} positions asked for, {} filled", self.n_cached)));
        }
        Ok(())
    }

    /// The saved form of each layer's first `len` positions.
    fn state_bytes(&self, len: usize, layers: Vec<CacheData>) -> Result<Vec<u8>, DecoderError> {
        let c = &self.config;
        let mut body = Vec::new();
        let mut kind = None;
        for data in layers {
            let this = match &data {
                CacheData::F32(values) => {
                    body.extend(values.iter().flat_map(|x| x.to_le_bytes()));
                    0u32
                }
                CacheData::F16(bits) => {
                    body.extend(bits.iter().flat_map(|x| x.to_le_bytes()));
                    1u32
                }
            };
            if kind.is_some_and(|k| k != this) {
                return Err(DecoderError::State("layers of mixed precision".into()));
            }
            kind = Some(this);
        }
        let mut out = Vec::with_capacity(STATE_HEADER + body.len());
        out.extend_from_slice(STATE_MAGIC);
        for n in [self.layers.len() as u32, c.n_kv_heads as u32, c.head_dim as u32, len as u32, kind.unwrap_or(1)] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Fills the KV cache from [`Decoder::save_state`]'s bytes and returns how many
    /// positions they hold. Bytes of another shape are refused and leave the cache empty.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<usize, DecoderError> {
        self.n_cached = 0;
        let bad = |what: &str| DecoderError::State(what.to_owned());
        let header = bytes.get(..STATE_HEADER).ok_or_else(|| bad("too short"))?;
        if &header[..4] != STATE_MAGIC {
            return Err(bad("not a saved state of this version"));
        }
        let field =
            |i: usize| u32::from_le_bytes([header[4 + 4 * i], header[5 + 4 * i], header[6 + 4 * i], header[7 + 4 * i]]) as usize;
        let (layers, heads, head_dim, len, kind) = (field(0), field(1), field(2), field(3), field(4));
        let c = &self.config;
        if (layers, heads, head_dim) != (self.layers.len(), c.n_kv_heads, c.head_dim) {
            return Err(DecoderError::State(format!(
                "{layers} layers of {heads}×{head_dim}, this model has {} of {}×{}",
                self.layers.len(),
                c.n_kv_heads,
                c.head_dim
            )));
        }
        if len >= self.capacity {
            return Err(DecoderError::State(format!("{len} positions, the context holds {}", self.capacity)));
        }
        let width = match kind {
            0 => 4,
            1 => 2,
            _ => return Err(bad("an unknown value type")),
        };
        let per_layer = 2 * heads * len * head_dim;
        let body = &bytes[STATE_HEADER..];
        if body.len() != layers * per_layer * width {
            return Err(bad("its length does not match its header"));
        }
        for (layer, chunk) in self.layers.iter_mut().zip(body.chunks_exact(per_layer * width)) {
            let data = if width == 4 {
                CacheData::F32(chunk.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            } else {
                CacheData::F16(chunk.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
            };
            self.backend.write_cache(&mut layer.cache, &data, len)?;
        }
        self.n_cached = len;
        Ok(len)
    }

    /// Appends `tokens` and returns logits: for the last token only, or for every token
    /// (`n_tokens × n_vocab`, row-major) when `all_logits` is set.
    pub fn forward(&mut self, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>, DecoderError> {
        let mut logits = Vec::new();
        self.forward_into(tokens, all_logits, &mut logits)?;
        Ok(logits)
    }

    /// Like [`Decoder::forward`], into `logits` (replacing what it held): with a buffer
    /// kept from step to step, a decode step allocates nothing.
    pub fn forward_into(&mut self, tokens: &[u32], all_logits: bool, logits: &mut Vec<f32>) -> Result<(), DecoderError> {
        self.check_input(tokens)?;
        logits.clear();
        let n_chunks = tokens.len().div_ceil(PREFILL_CHUNK);
        for (i, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let stream = self.run_layers(chunk)?;
            self.n_cached += chunk.len();
            if all_logits || i + 1 == n_chunks {
                let rows = if all_logits { stream } else { stream.rows_from(&self.backend, chunk.len() - 1)? };
                let out = self.logits(&rows)?;
                self.backend.read_into(&out, logits)?;
            } else {
                self.backend.flush();
            }
        }
        Ok(())
    }

    /// [`Decoder::forward_into`] for the last token's logits, on a backend whose
    /// readback completes later: the whole pass is recorded, then read once.
    pub async fn forward_async(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<(), DecoderError> {
        logits.clear();
        let out = self.record_last(tokens)?;
        Ok(self.backend.read_into_async(&out, logits).await?)
    }

    /// [`Decoder::forward_async`], reading back only the candidates `list` leaves of
    /// the last token's logits (computed on the device where the backend can).
    pub async fn forward_shortlist_async(
        &mut self,
        tokens: &[u32],
        list: &Shortlist,
        out: &mut Vec<Candidate>,
    ) -> Result<(), DecoderError> {
        let logits = self.record_last(tokens)?;
        Ok(self.backend.shortlist_async(&logits, list, out).await?)
    }

    /// Kernel launches since load, where the backend counts them.
    pub fn dispatches(&self) -> Option<u64> {
        self.backend.dispatches()
    }

    /// Submissions since load, where the backend counts them.
    pub fn submissions(&self) -> Option<u64> {
        self.backend.submissions()
    }

    /// The longest shortlist the backend computes itself.
    pub fn shortlist_limit(&self) -> usize {
        self.backend.shortlist_limit()
    }

    /// Records the pass over `tokens` and returns the last token's logits, not yet read.
    fn record_last(&mut self, tokens: &[u32]) -> Result<B::Tensor, DecoderError> {
        self.check_input(tokens)?;
        let mut last = None;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            if last.is_some() {
                // One submission per chunk of a long prompt.
                self.backend.flush();
            }
            let stream = self.run_layers(chunk)?;
            self.n_cached += chunk.len();
            last = Some(stream.rows_from(&self.backend, chunk.len() - 1)?);
        }
        let Some(rows) = last else {
            return Err(DecoderError::ContextFull { n_tokens: 0, n_cached: self.n_cached, capacity: self.capacity });
        };
        self.logits(&rows)
    }

    fn check_input(&self, tokens: &[u32]) -> Result<(), DecoderError> {
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.config.n_vocab) {
            return Err(DecoderError::BadToken(bad));
        }
        if tokens.is_empty() || self.n_cached + tokens.len() > self.capacity {
            return Err(DecoderError::ContextFull { n_tokens: tokens.len(), n_cached: self.n_cached, capacity: self.capacity });
        }
        Ok(())
    }

    fn run_layers(&mut self, tokens: &[u32]) -> Result<Stream<B::Tensor>, DecoderError> {
        let b = &self.backend;
        let c = &self.config;
        let eps = c.rms_eps;
        let products = &mut self.products;
        let start = self.n_cached;
        let mut x = b.embed(&self.embed, tokens)?;
        if let Some(s) = c.embed_scale {
            x = b.scale(&x, s)?;
        }
        // The block's output (a residual still to add), carried to the next block so its
        // post-norm, the add and the next norm happen in one step.
        let mut pending: Option<B::Tensor> = None;
        for i in 0..self.layers.len() {
            let (done, rest) = self.layers.split_at_mut(i);
            let Some(layer) = rest.first_mut() else { break };
            let h = match pending.take() {
                Some(f) => {
                    let (sum, h) = add_block(b, &x, &f, ffn_post_norm(done.last()), &layer.attn_norm, eps)?;
                    x = sum;
                    h
                }
                None => b.rms_norm(&x, &layer.attn_norm, eps)?,
            };
            products.clear();
            match &layer.bias {
                Some(biases) => b.matmul_each_biased(&h, &layer.qkv, biases, products)?,
                None => b.matmul_each(&h, &layer.qkv, products)?,
            }
            let [q, k, v] = three(products)?;
            let params = AttentionParams {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                scale: c.attn_scale,
                window: c.layer_windows.get(i).copied().flatten(),
                softcap: None,
            };
            let input = AttentionInput {
                q,
                k,
                v: &v,
                qk_norm: layer.qk_norm.as_ref(),
                eps,
                rope: &self.ropes[layer.rope],
                style: c.rope_style,
                start,
            };
            let a = b.attend(input, &mut layer.cache, &params)?;
            let a = b.matmul(&a, &layer.wo)?;
            let attn_post = layer.post_norm.as_ref().map(|[post_attn, _]| post_attn);
            let (sum, h) = add_block(b, &x, &a, attn_post, &layer.ffn_norm, eps)?;
            x = sum;
            let gated = b.gated_product(&h, &layer.gate_up, c.activation, products)?;
            pending = Some(b.matmul(&gated, &layer.down)?);
        }
        Ok(Stream { x, pending })
    }

    /// The logits of the rows of the residual stream.
    fn logits(&self, stream: &Stream<B::Tensor>) -> Result<B::Tensor, DecoderError> {
        let b = &self.backend;
        let eps = self.config.rms_eps;
        let h = match &stream.pending {
            Some(f) => add_block(b, &stream.x, f, ffn_post_norm(self.layers.last()), &self.output_norm, eps)?.1,
            None => b.rms_norm(&stream.x, &self.output_norm, eps)?,
        };
        let head = self.output.as_ref().unwrap_or(&self.embed);
        Ok(b.matmul(&h, head)?)
    }
}

/// The residual stream after the last block: `x`, and the last block's output still
/// to add (so the add and the output norm are one step).
struct Stream<T> {
    x: T,
    pending: Option<T>,
}

impl<T> Stream<T> {
    /// Rows `from..` of both.
    fn rows_from<B: Backend<Tensor = T>>(self, b: &B, from: usize) -> Result<Stream<T>, BackendError> {
        let pending = self.pending.map(|f| b.rows_from(&f, from)).transpose()?;
        Ok(Stream { x: b.rows_from(&self.x, from)?, pending })
    }
}

/// The norm a layer applies to its feed-forward output before the add (Gemma 3).
fn ffn_post_norm<B: Backend>(layer: Option<&Layer<B>>) -> Option<&B::Vector> {
    layer?.post_norm.as_ref().map(|[_, post_ffn]| post_ffn)
}

/// The residual step after a block: `x + f` (`f` first normed by the block's post-norm
/// where it has one) and that sum normed by `w`.
fn add_block<B: Backend>(
    b: &B,
    x: &B::Tensor,
    f: &B::Tensor,
    post: Option<&B::Vector>,
    w: &B::Vector,
    eps: f32,
) -> Result<(B::Tensor, B::Tensor), BackendError> {
    match post {
        Some(wb) => b.norm_add_rms_norm(x, f, wb, w, eps),
        None => b.add_rms_norm(x, f, w, eps),
    }
}
