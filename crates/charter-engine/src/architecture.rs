//! Architectures: what each `general.architecture` means for the shared decoder.
//!
//! Llama, Qwen2, Qwen3 and Gemma 3 are one decoder with different switches: where the
//! norms sit, whether queries and keys are normalized per head, how rotary embeddings
//! pair dimensions, which layers attend through a sliding window. This module reads a
//! GGUF file's metadata into one validated [`DecoderConfig`]; `decoder.rs` runs it.
//!
//! GGUF keys read, with `{a}` the architecture: `{a}.block_count`,
//! `{a}.embedding_length`, `{a}.feed_forward_length`, `{a}.attention.head_count`,
//! `{a}.attention.head_count_kv`, `{a}.attention.key_length`,
//! `{a}.attention.layer_norm_rms_epsilon`, `{a}.context_length`, `{a}.rope.freq_base`,
//! `{a}.rope.dimension_count`, `{a}.rope.scaling.type`, `{a}.rope.scaling.factor`,
//! `{a}.attention.sliding_window` (Gemma 3), `{a}.vocab_size`.

use crate::gguf::{Gguf, GgufError};
use crate::backend::{Activation, RopeStyle};

/// A model family Charter can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3, SmolLM, Mistral-style models.
    Llama,
    /// Qwen2 and Qwen2.5: biases on q, k, v.
    Qwen2,
    /// Qwen3: per-head q/k norms.
    Qwen3,
    /// Gemma 3: pre and post norms, per-head q/k norms, sliding-window layers.
    Gemma3,
}

impl Architecture {
    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// The architectures Charter supports, by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            "gemma3" => Architecture::Gemma3,
            _ => return None,
        })
    }
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// The family.
    pub architecture: Architecture,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Width of the feed-forward hidden layer.
    pub n_ff: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding table).
    pub n_vocab: usize,
    /// The context length the model was trained for.
    pub train_context: usize,
    /// RMS norm epsilon.
    pub rms_eps: f32,
    /// Rotary pairing.
    pub rope_style: RopeStyle,
    /// Rotary base of global-attention layers.
    pub rope_base: f32,
    /// Rotary base of sliding-window layers, where it differs.
    pub rope_base_local: Option<f32>,
    /// Linear rotary scaling: positions are divided by this.
    pub rope_linear_scale: f32,
    /// Multiplier of the token embeddings (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    /// Multiplier of `q·k`.
    pub attn_scale: f32,
    /// Feed-forward gate activation.
    pub activation: Activation,
    /// Sliding window of each layer, `None` for global attention.
    pub layer_windows: Vec<Option<usize>>,
    /// Per-head RMS norms of queries and keys.
    pub qk_norm: bool,
    /// Biases on the q, k, v projections.
    pub qkv_bias: bool,
    /// Norms after attention and after the feed-forward block (Gemma).
    pub post_norms: bool,
}

/// Largest dimension Charter accepts; a guard against forged metadata, far above real models.
const MAX_DIM: u64 = 1 << 18;
const MAX_LAYERS: u64 = 512;

fn invalid(msg: String) -> GgufError {
    GgufError::Invalid(msg)
}

impl DecoderConfig {
    /// Reads and validates the configuration of a GGUF model.
    pub fn from_gguf(gguf: &Gguf<'_>, n_vocab: usize) -> Result<Self, ConfigError> {
        let arch_name = gguf.architecture()?;
        let architecture = Architecture::from_name(arch_name).ok_or_else(|| {
            ConfigError::Unsupported(format!(
                "architecture {arch_name:?} (Charter runs llama, qwen2, qwen3 and gemma3)"
            ))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let dim = |k: &str, max: u64| -> Result<usize, GgufError> {
            let v = gguf.u64(&key(k))?;
            if v == 0 || v > max {
                return Err(invalid(format!("{} is {v}, outside 1..={max}", key(k))));
            }
            Ok(v as usize)
        };
        let n_layers = dim("block_count", MAX_LAYERS)?;
        let n_embd = dim("embedding_length", MAX_DIM)?;
        let n_ff = dim("feed_forward_length", MAX_DIM)?;
        let n_heads = dim("attention.head_count", MAX_DIM)?;
        let n_kv_heads = match gguf.opt_u64(&key("attention.head_count_kv"))? {
            None => n_heads,
            Some(_) => dim("attention.head_count_kv", MAX_DIM)?,
        };
        if n_heads % n_kv_heads != 0 {
            return Err(invalid(format!("{n_heads} query heads cannot share {n_kv_heads} key/value heads")).into());
        }
        let head_dim = match gguf.opt_u64(&key("attention.key_length"))? {
            Some(_) => dim("attention.key_length", MAX_DIM)?,
            None => n_embd / n_heads,
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(invalid(format!("head dimension {head_dim} must be even and non-zero")).into());
        }
        if let Some(v) = gguf.opt_u64(&key("attention.value_length"))? {
            if v as usize != head_dim {
                return Err(ConfigError::Unsupported(format!("value heads of {v} with key heads of {head_dim}")));
            }
        }
        if let Some(n_rot) = gguf.opt_u64(&key("rope.dimension_count"))? {
            if n_rot as usize != head_dim {
                return Err(ConfigError::Unsupported(format!(
                    "partial rotary embeddings ({n_rot} of {head_dim} dimensions)"
                )));
            }
        }
        let train_context = match gguf.opt_u64(&key("context_length"))? {
            Some(c) if c > 0 => c.min(1 << 24) as usize,
            _ => 2048,
        };
        let rms_eps = gguf.opt_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5) as f32;
        if !(rms_eps.is_finite() && rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(invalid(format!("rms epsilon {rms_eps} is not a small positive number")).into());
        }
        let positive = |v: f64, what: &str| -> Result<f32, GgufError> {
            if v.is_finite() && v > 0.0 { Ok(v as f32) } else { Err(invalid(format!("{what} is {v}"))) }
        };
        let default_base = if architecture == Architecture::Gemma3 { 1_000_000.0 } else { 10_000.0 };
        let rope_base = positive(gguf.opt_f64(&key("rope.freq_base"))?.unwrap_or(default_base), "rope.freq_base")?;
        let rope_linear_scale = match gguf.opt_str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => positive(gguf.opt_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0), "rope.scaling.factor")?,
            Some(other) => return Err(ConfigError::Unsupported(format!("rope scaling {other:?}"))),
        };
        let inv_sqrt_head = 1.0 / (head_dim as f32).sqrt();

        let base = DecoderConfig {
            architecture,
            n_layers,
            n_embd,
            n_ff,
            n_heads,
            n_kv_heads,
            head_dim,
            n_vocab,
            train_context,
            rms_eps,
            rope_style: RopeStyle::Halves,
            rope_base,
            rope_base_local: None,
            rope_linear_scale,
            embed_scale: None,
            attn_scale: inv_sqrt_head,
            activation: Activation::Silu,
            layer_windows: vec![None; n_layers],
            qk_norm: false,
            qkv_bias: false,
            post_norms: false,
        };
        Ok(match architecture {
            // llama.cpp's converter permutes Llama's q/k rows so that rotary pairs are adjacent.
            Architecture::Llama => DecoderConfig { rope_style: RopeStyle::Interleaved, ..base },
            Architecture::Qwen2 => DecoderConfig { qkv_bias: true, ..base },
            Architecture::Qwen3 => DecoderConfig { qk_norm: true, ..base },
            Architecture::Gemma3 => {
                let window = match gguf.opt_u64(&key("attention.sliding_window"))? {
                    Some(w) if w > 0 => w as usize,
                    Some(_) => return Err(invalid("a sliding window of 0".into()).into()),
                    None => 512,
                };
                // Five sliding-window layers, then one global, as in llama.cpp.
                let pattern = match gguf.opt_u64(&key("attention.sliding_window_pattern"))? {
                    Some(p) if p > 0 && p <= MAX_LAYERS => p as usize,
                    _ => 6,
                };
                let layer_windows = (0..n_layers).map(|i| ((i + 1) % pattern != 0).then_some(window)).collect();
                DecoderConfig {
                    rope_base_local: Some(10_000.0),
                    embed_scale: Some((n_embd as f32).sqrt()),
                    activation: Activation::GeluTanh,
                    layer_windows,
                    qk_norm: true,
                    post_norms: true,
                    ..base
                }
            }
        })
    }

    /// Inverse rotary frequencies for a base, with linear scaling and optional
    /// per-frequency factors (Llama 3's `rope_freqs`).
    pub fn inv_freq(&self, base: f32, factors: Option<&[f32]>) -> Vec<f32> {
        (0..self.head_dim / 2)
            .map(|i| {
                let f = base.powf(-2.0 * i as f32 / self.head_dim as f32) / self.rope_linear_scale;
                match factors.and_then(|fs| fs.get(i)) {
                    Some(&div) if div > 0.0 => f / div,
                    _ => f,
                }
            })
            .collect()
    }
}

/// Why a model's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Malformed or missing metadata.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Well-formed, but a variant Charter does not run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
}
