//! The candle backend: quantized matmuls with candle's block kernels, everything else
//! with candle's tensor ops, in `f32` throughout (an `f32` KV cache).
//!
//! It is the reference Charter's own CPU backend and the GPU kernels are checked
//! against (`--backend candle` on the command line), not the one that runs by default.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file};
use candle_core::{DType, Device, Module, Tensor};

use crate::backend::{Activation, AttentionParams, Backend, BackendError, CacheData, RopeStyle, WeightData};
use crate::gguf::Format;

/// Candle on the CPU.
#[derive(Debug, Clone, Default)]
pub struct CandleBackend;

/// Precomputed `cos`/`sin`, each `(capacity, head_dim / 2)`.
#[derive(Debug, Clone)]
pub struct CandleRope {
    cos: Tensor,
    sin: Tensor,
}

fn ggml_dtype(ty: Format) -> GgmlDType {
    match ty {
        Format::F32 => GgmlDType::F32,
        Format::F16 => GgmlDType::F16,
        Format::BF16 => GgmlDType::BF16,
        Format::Q4_0 => GgmlDType::Q4_0,
        Format::Q4_1 => GgmlDType::Q4_1,
        Format::Q5_0 => GgmlDType::Q5_0,
        Format::Q5_1 => GgmlDType::Q5_1,
        Format::Q8_0 => GgmlDType::Q8_0,
        Format::Q2K => GgmlDType::Q2K,
        Format::Q3K => GgmlDType::Q3K,
        Format::Q4K => GgmlDType::Q4K,
        Format::Q5K => GgmlDType::Q5K,
        Format::Q6K => GgmlDType::Q6K,
        Format::Q8K => GgmlDType::Q8K,
    }
}

fn qtensor(w: WeightData<'_>) -> Result<QTensor, BackendError> {
    // candle reinterprets the bytes as block structs, which needs them aligned; a buffer
    // from the browser or a file read has no such promise, so copy when it is not.
    let aligned;
    let bytes = if (w.bytes.as_ptr() as usize) % 16 == 0 {
        w.bytes
    } else {
        let mut words = vec![0u128; w.bytes.len().div_ceil(16)];
        let dst = as_bytes_mut(&mut words);
        dst[..w.bytes.len()].copy_from_slice(w.bytes);
        aligned = words;
        &as_bytes(&aligned)[..w.bytes.len()]
    };
    let dims: Vec<usize> = w.dims.iter().rev().map(|&d| d as usize).collect();
    Ok(ggml_file::qtensor_from_ggml(ggml_dtype(w.ty), bytes, dims, &Device::Cpu)?)
}

fn as_bytes(words: &[u128]) -> &[u8] {
    // SAFETY: u128 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}

fn as_bytes_mut(words: &mut [u128]) -> &mut [u8] {
    // SAFETY: as above; the slice borrows `words` exclusively.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}

/// One layer's keys and values, each `(n_kv_heads, capacity, head_dim)`.
#[derive(Debug, Clone)]
pub struct CandleCache {
    k: Tensor,
    v: Tensor,
}

impl Backend for CandleBackend {
    type Tensor = Tensor;
    type Matrix = QMatMul;
    type Vector = Tensor;
    type Cache = CandleCache;
    type Rope = CandleRope;

    fn describe(&self) -> String {
        "candle".to_owned()
    }

    fn matrix(&self, w: WeightData<'_>) -> Result<QMatMul, BackendError> {
        if w.dims.len() != 2 {
            return Err(BackendError::Shape(format!("{} should be a matrix, has dims {:?}", w.name, w.dims)));
        }
        Ok(QMatMul::from_qtensor(qtensor(w)?)?)
    }

    fn vector(&self, w: WeightData<'_>) -> Result<Tensor, BackendError> {
        let t = qtensor(w)?.dequantize(&Device::Cpu)?;
        Ok(t.flatten_all()?)
    }

    fn cache(&self, n_kv_heads: usize, capacity: usize, head_dim: usize) -> Result<CandleCache, BackendError> {
        let zeros = || Tensor::zeros((n_kv_heads, capacity, head_dim), DType::F32, &Device::Cpu);
        Ok(CandleCache { k: zeros()?, v: zeros()? })
    }

    fn rope_table(&self, inv_freq: &[f32], capacity: usize) -> Result<CandleRope, BackendError> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(capacity * half);
        let mut sin = Vec::with_capacity(capacity * half);
        for pos in 0..capacity {
            for &f in inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(CandleRope {
            cos: Tensor::from_vec(cos, (capacity, half), &Device::Cpu)?,
            sin: Tensor::from_vec(sin, (capacity, half), &Device::Cpu)?,
        })
    }

    fn embed(&self, table: &QMatMul, ids: &[u32]) -> Result<Tensor, BackendError> {
        let ids = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
        Ok(table.embedding(&ids)?)
    }

    fn matmul(&self, x: &Tensor, w: &QMatMul) -> Result<Tensor, BackendError> {
        Ok(w.forward(x)?)
    }

    fn add_bias(&self, x: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        Ok(x.broadcast_add(b)?)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        Ok((a + b)?)
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor, BackendError> {
        Ok(x.affine(f64::from(s), 0.0)?)
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor, BackendError> {
        let (n, width) = x.dims2()?;
        let group = w.dims1()?;
        if group == 0 || width % group != 0 {
            return Err(BackendError::Shape(format!("rms norm of width {group} over rows of {width}")));
        }
        let x = x.reshape((n * width / group, group))?;
        Ok(candle_nn::ops::rms_norm(&x, w, eps)?.reshape((n, width))?)
    }

    fn rope(&self, x: &Tensor, rope: &CandleRope, n_heads: usize, start: usize, style: RopeStyle) -> Result<Tensor, BackendError> {
        let (n, width) = x.dims2()?;
        let head_dim = width / n_heads;
        let half = rope.cos.dim(1)?;
        if head_dim != 2 * half || start + n > rope.cos.dim(0)? {
            return Err(BackendError::Shape(format!("rope of {n} rows at {start} with head dim {head_dim}")));
        }
        // Each token is its own "batch" of one position, so positions come from the
        // per-batch tables and no transpose is needed.
        let x = x.reshape((n, n_heads, 1, head_dim))?;
        let cos = rope.cos.narrow(0, start, n)?.reshape((n, 1, half))?;
        let sin = rope.sin.narrow(0, start, n)?.reshape((n, 1, half))?;
        let out = match style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
            RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
        };
        Ok(out.reshape((n, width))?)
    }

    fn gated(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor, BackendError> {
        let a = match act {
            Activation::Silu => candle_nn::ops::silu(gate)?,
            Activation::GeluTanh => gate.gelu()?,
        };
        Ok((a * up)?)
    }

    fn read_cache(&self, cache: &CandleCache, len: usize) -> Result<CacheData, BackendError> {
        if len > cache.k.dim(1)? {
            return Err(BackendError::Shape(format!("reading {len} positions of a cache of {}", cache.k.dim(1)?)));
        }
        let mut out = cache.k.narrow(1, 0, len)?.flatten_all()?.to_vec1::<f32>()?;
        out.extend(cache.v.narrow(1, 0, len)?.flatten_all()?.to_vec1::<f32>()?);
        Ok(CacheData::F32(out))
    }

    fn write_cache(&self, cache: &mut CandleCache, data: &CacheData, len: usize) -> Result<(), BackendError> {
        let (heads, capacity, head_dim) = cache.k.dims3()?;
        let values: Vec<f32> = match data {
            CacheData::F32(v) => v.clone(),
            CacheData::F16(v) => v.iter().map(|&h| charter_kernels::half::f16_to_f32(h)).collect(),
        };
        let per = heads * len * head_dim;
        if len > capacity || values.len() != 2 * per {
            return Err(BackendError::Shape(format!(
                "writing {} values as {len} positions into a cache of {heads}×{capacity}×{head_dim}",
                values.len()
            )));
        }
        if len > 0 {
            let k = Tensor::from_slice(&values[..per], (heads, len, head_dim), &Device::Cpu)?;
            let v = Tensor::from_slice(&values[per..], (heads, len, head_dim), &Device::Cpu)?;
            cache.k.slice_set(&k, 1, 0)?;
            cache.v.slice_set(&v, 1, 0)?;
        }
        Ok(())
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut CandleCache,
        start: usize,
        p: &AttentionParams,
    ) -> Result<Tensor, BackendError> {
        let CandleCache { k: k_cache, v: v_cache } = cache;
        let n = q.dim(0)?;
        let (hq, hkv, hd) = (p.n_heads, p.n_kv_heads, p.head_dim);
        let capacity = k_cache.dim(1)?;
        if start + n > capacity || hkv == 0 || hq % hkv != 0 {
            return Err(BackendError::Shape(format!("attention of {n} rows at {start} into {capacity}")));
        }
        let group = hq / hkv;
        // (n, hkv·hd) → (hkv, n, hd), written at positions start..start+n.
        let k = k.reshape((n, hkv, hd))?.transpose(0, 1)?.contiguous()?;
        let v = v.reshape((n, hkv, hd))?.transpose(0, 1)?.contiguous()?;
        k_cache.slice_set(&k, 1, start)?;
        v_cache.slice_set(&v, 1, start)?;

        let end = start + n;
        // The first query (at `start`) sees no key before `start + 1 - window`.
        let lo = p.window.map_or(0, |w| (start + 1).saturating_sub(w));
        let len = end - lo;
        let keys = k_cache.narrow(1, lo, len)?;
        let values = v_cache.narrow(1, lo, len)?;

        // Query head h uses key head h / group, so grouping the query heads of one key
        // head along the row axis turns grouped-query attention into a batched matmul.
        let q = q.reshape((n, hq, hd))?.transpose(0, 1)?.contiguous()?.reshape((hkv, group * n, hd))?;
        let mut scores = (q.matmul(&keys.t()?)? * f64::from(p.scale))?;
        if let Some(cap) = p.softcap {
            scores = ((scores / f64::from(cap))?.tanh()? * f64::from(cap))?;
        }
        let needs_mask = n > 1 || p.window.is_some_and(|w| len > w);
        if needs_mask {
            // mask[i][j]: query at start+i, key at lo+j.
            let mut mask = vec![0f32; n * len];
            for i in 0..n {
                let qpos = start + i;
                for j in 0..len {
                    let kpos = lo + j;
                    let visible = kpos <= qpos && p.window.is_none_or(|w| qpos - kpos < w);
                    if !visible {
                        mask[i * len + j] = f32::NEG_INFINITY;
                    }
                }
            }
            let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu)?;
            scores = scores.reshape((hkv, group, n, len))?.broadcast_add(&mask)?.reshape((hkv, group * n, len))?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&values)?; // (hkv, group·n, hd)
        Ok(out.reshape((hq, n, hd))?.transpose(0, 1)?.contiguous()?.reshape((n, hq * hd))?)
    }

    fn rows_from(&self, x: &Tensor, from: usize) -> Result<Tensor, BackendError> {
        let n = x.dim(0)?;
        Ok(x.narrow(0, from.min(n), n - from.min(n))?)
    }

    fn read(&self, x: &Tensor) -> Result<Vec<f32>, BackendError> {
        Ok(x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }
}
