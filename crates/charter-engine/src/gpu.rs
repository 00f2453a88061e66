//! Charter's GPU backend: the [`Backend`] operations on `charter-gpu`'s WGSL kernels.
//!
//! Weights are uploaded once, as the GGUF bytes they are; each operation is recorded,
//! and the step runs when the decoder reads its logits back, so a decode step is one
//! submission. The KV cache is `f16` in the CPU cache's layout, so a state saved on one
//! backend restores on the other. On the web the readback is asynchronous: there the
//! decoder is driven through its `_async` methods, and a blocking read is an error.
//! Sampling's first half runs here too: a decode step reads back the sampler's
//! shortlist of candidates (`Backend::shortlist_async`), not the vocabulary's logits.

use charter_core::{Candidate, Shortlist};
#[cfg(not(target_arch = "wasm32"))]
use charter_gpu::GpuOptions;
use charter_gpu::{
    Gate, Gpu, KvCache, MAX_SHORTLIST, MAX_STACK, Matrix, Pairing, QkNorms, RopeTable, Rotary, ShortlistSpec, Tensor,
};
use charter_kernels::Format;
use charter_kernels::format::dequantize_row;
use charter_kernels::half::f32_to_f16;

use crate::backend::{
    Activation, AttentionInput, AttentionParams, Backend, BackendError, CacheData, CacheShift, RopeStyle, WeightData, biased_apart,
    gated_apart,
};

fn pairing(style: RopeStyle) -> Pairing {
    match style {
        RopeStyle::Interleaved => Pairing::Interleaved,
        RopeStyle::Halves => Pairing::Halves,
    }
}

fn gate_kind(act: Activation) -> Gate {
    match act {
        Activation::Silu => Gate::Silu,
        Activation::GeluTanh => Gate::GeluTanh,
    }
}

/// The backend on one GPU device.
#[derive(Debug)]
pub struct GpuBackend {
    gpu: Gpu,
}

impl GpuBackend {
    /// Opens the platform's first adapter (native only: the web has no blocking waits).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(options: GpuOptions) -> Result<GpuBackend, BackendError> {
        Ok(GpuBackend { gpu: Gpu::new_blocking(options)? })
    }

    /// The backend on a device already opened (with `Gpu::new`, awaited).
    pub fn on(gpu: Gpu) -> GpuBackend {
        GpuBackend { gpu }
    }

    /// The device, for tests and reports.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Matrices of one row length as one stack (of one format, or two one after the
    /// other), where they fit one binding.
    fn stack(&self, ws: &[WeightData<'_>]) -> Option<Matrix> {
        let cols = *ws.first()?.dims.first()?;
        let parts: Option<Vec<(Format, usize, &[u8])>> = ws
            .iter()
            .map(|w| match w.dims {
                [c, rows] if *c == cols => Some((w.ty, *rows as usize, w.bytes)),
                _ => None,
            })
            .collect();
        self.gpu.mixed_stack(cols as usize, &parts?).ok()
    }
}

impl Backend for GpuBackend {
    type Tensor = Tensor;
    type Matrix = Matrix;
    type Vector = Tensor;
    type Cache = KvCache;
    type Rope = RopeTable;

    fn describe(&self) -> String {
        self.gpu.describe()
    }

    fn matrix(&self, w: WeightData<'_>) -> Result<Matrix, BackendError> {
        let [cols, rows] = w.dims else {
            return Err(BackendError::Shape(format!("{} should be a matrix, has dims {:?}", w.name, w.dims)));
        };
        self.gpu
            .matrix(w.ty, *rows as usize, *cols as usize, w.bytes)
            .map_err(|e| BackendError::Shape(format!("{}: {e}", w.name)))
    }

    fn matrices(&self, ws: &[WeightData<'_>]) -> Result<Vec<Matrix>, BackendError> {
        // One stack where they share a row length and fit one binding, in one format or
        // two (a Q4_K_M file keeps v in Q6_K after q and k in Q4_K); failing that, each
        // run of neighbours in one format stacked, the rest apart.
        if ws.len() > 1
            && let Some(stack) = self.stack(ws)
        {
            return Ok(vec![stack]);
        }
        let mut out = Vec::with_capacity(ws.len());
        let mut rest = ws;
        while let [first, ..] = rest {
            let run = rest.iter().take(MAX_STACK).take_while(|w| w.ty == first.ty && w.dims.first() == first.dims.first()).count();
            let (group, tail) = rest.split_at(run);
            rest = tail;
            if run > 1
                && let Some(stack) = self.stack(group)
            {
                out.push(stack);
                continue;
            }
            for &w in group {
                out.push(self.matrix(w)?);
            }
        }
        Ok(out)
    }

    fn matmul_each(&self, x: &Tensor, ws: &[Matrix], out: &mut Vec<Tensor>) -> Result<(), BackendError> {
        for w in ws {
            out.extend(self.gpu.matmul_stack(x, w)?);
        }
        Ok(())
    }

    fn matmul_each_biased(&self, x: &Tensor, ws: &[Matrix], biases: &[Tensor], out: &mut Vec<Tensor>) -> Result<(), BackendError> {
        match ws {
            // One stack: the biases added as its products are stored.
            [stack] if stack.stack().len() == biases.len() && biases.len() > 1 => {
                let biases: Vec<&Tensor> = biases.iter().collect();
                out.extend(self.gpu.matmul_stack_biased(x, stack, &biases)?);
                Ok(())
            }
            _ => biased_apart(self, x, ws, biases, out),
        }
    }

    fn vector(&self, w: WeightData<'_>) -> Result<Tensor, BackendError> {
        let len = w.dims.iter().product::<u64>() as usize;
        if w.ty.row_bytes(len) != Some(w.bytes.len()) {
            return Err(BackendError::Shape(format!("{}: {} bytes for {len} {} values", w.name, w.bytes.len(), w.ty.name())));
        }
        let mut out = vec![0f32; len];
        dequantize_row(w.ty, w.bytes, &mut out);
        Ok(self.gpu.upload(&out, 1, len)?)
    }

    fn cache(&self, n_kv_heads: usize, capacity: usize, head_dim: usize) -> Result<KvCache, BackendError> {
        Ok(self.gpu.kv_cache(n_kv_heads, capacity, head_dim)?)
    }

    fn rope_table(&self, inv_freq: &[f32], capacity: usize) -> Result<RopeTable, BackendError> {
        let (mut cos, mut sin) = (Vec::with_capacity(capacity * inv_freq.len()), Vec::with_capacity(capacity * inv_freq.len()));
        for pos in 0..capacity {
            for &f in inv_freq {
                // In f64, as the CPU backend does, so both rotate by the same angles.
                let angle = pos as f64 * f64::from(f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(self.gpu.rope_table(&cos, &sin, inv_freq.len())?)
    }

    fn embed(&self, table: &Matrix, ids: &[u32]) -> Result<Tensor, BackendError> {
        Ok(self.gpu.embed(table, ids)?)
    }

    fn matmul(&self, x: &Tensor, w: &Matrix) -> Result<Tensor, BackendError> {
        Ok(self.gpu.matmul(x, w)?)
    }

    fn add_bias(&self, x: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        Ok(self.gpu.add_bias(x, b)?)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, BackendError> {
        Ok(self.gpu.add(a, b)?)
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor, BackendError> {
        Ok(self.gpu.scale(x, s)?)
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor, BackendError> {
        Ok(self.gpu.rms_norm(x, w, eps)?)
    }

    fn add_rms_norm(&self, a: &Tensor, b: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor), BackendError> {
        Ok(self.gpu.add_rms_norm(a, b, w, eps)?)
    }

    fn rope(&self, x: &Tensor, rope: &RopeTable, n_heads: usize, start: usize, style: RopeStyle) -> Result<Tensor, BackendError> {
        Ok(self.gpu.rope(x, rope, n_heads, start, pairing(style))?)
    }

    fn gated(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor, BackendError> {
        Ok(self.gpu.gated(gate, up, gate_kind(act))?)
    }

    fn gate_up(&self, gate: WeightData<'_>, up: WeightData<'_>) -> Result<Vec<Matrix>, BackendError> {
        // Paired where they share a format and a shape and fit one binding together.
        if let ([cols, rows], true) = (gate.dims, gate.ty == up.ty && gate.dims == up.dims)
            && let Ok(pair) = self.gpu.gate_up_matrix(gate.ty, *rows as usize, *cols as usize, gate.bytes, up.bytes)
        {
            return Ok(vec![pair]);
        }
        self.matrices(&[gate, up])
    }

    fn gated_product(
        &self,
        x: &Tensor,
        gate_up: &[Matrix],
        act: Activation,
        scratch: &mut Vec<Tensor>,
    ) -> Result<Tensor, BackendError> {
        match gate_up {
            [pair] if pair.is_paired() => Ok(self.gpu.matmul_gated(x, pair, gate_kind(act))?),
            _ => gated_apart(self, x, gate_up, act, scratch),
        }
    }

    fn norm_add_rms_norm(
        &self,
        a: &Tensor,
        b: &Tensor,
        wb: &Tensor,
        w: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor), BackendError> {
        Ok(self.gpu.norm_add_rms_norm(a, b, wb, w, eps)?)
    }

    fn attend(&self, input: AttentionInput<'_, Self>, cache: &mut KvCache, params: &AttentionParams) -> Result<Tensor, BackendError> {
        let AttentionInput { q, k, v, qk_norm, eps, rope, style, start } = input;
        let norms = qk_norm.map(|[q, k]| QkNorms { q, k, eps });
        let rotary = Rotary { table: rope, pairing: pairing(style), start };
        let q = self.gpu.prepare_attention(q, &k, v, norms, rotary, cache)?;
        Ok(self.gpu.attend(&q, cache, start, params)?)
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut KvCache,
        start: usize,
        params: &AttentionParams,
    ) -> Result<Tensor, BackendError> {
        Ok(self.gpu.attention(q, k, v, cache, start, params)?)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn read_cache(&self, cache: &KvCache, len: usize) -> Result<CacheData, BackendError> {
        Ok(CacheData::F16(self.gpu.read_cache(cache, len)?))
    }

    #[cfg(target_arch = "wasm32")]
    fn read_cache(&self, _: &KvCache, _: usize) -> Result<CacheData, BackendError> {
        Err(BackendError::Unsupported("a blocking GPU readback on the web (use the asynchronous path)".into()))
    }

    fn write_cache(&self, cache: &mut KvCache, data: &CacheData, len: usize) -> Result<(), BackendError> {
        match data {
            CacheData::F16(bits) => self.gpu.write_cache(cache, bits, len)?,
            CacheData::F32(values) => {
                let bits: Vec<u16> = values.iter().map(|&x| f32_to_f16(x.clamp(-65504.0, 65504.0))).collect();
                self.gpu.write_cache(cache, &bits, len)?;
            }
        }
        Ok(())
    }

    fn shift_cache(&self, cache: &mut KvCache, shift: &CacheShift<'_>) -> Result<(), BackendError> {
        let CacheShift { len, from, to, heads, head_dim, style, cos, sin } = *shift;
        if (heads, head_dim) != (cache.heads(), cache.head_dim()) {
            return Err(BackendError::Shape(format!("a shift of {heads}×{head_dim} in a cache of another shape")));
        }
        Ok(self.gpu.shift_cache(cache, len, from, to, cos, sin, pairing(style))?)
    }

    fn rows_from(&self, x: &Tensor, from: usize) -> Result<Tensor, BackendError> {
        if from == 0 {
            // Only the q handed to `attend` by value is written in place; any other tensor
            // may share its buffer.
            return Ok(x.clone());
        }
        Ok(self.gpu.rows_from(x, from.min(x.n))?)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn read(&self, x: &Tensor) -> Result<Vec<f32>, BackendError> {
        Ok(self.gpu.read(x)?)
    }

    #[cfg(target_arch = "wasm32")]
    fn read(&self, _: &Tensor) -> Result<Vec<f32>, BackendError> {
        Err(BackendError::Unsupported("a blocking GPU readback on the web (use the asynchronous path)".into()))
    }

    async fn read_into_async(&self, x: &Tensor, out: &mut Vec<f32>) -> Result<(), BackendError> {
        out.extend(self.gpu.read_async(x).await?);
        Ok(())
    }

    fn shortlist_limit(&self) -> usize {
        MAX_SHORTLIST
    }

    fn submissions(&self) -> Option<u64> {
        Some(self.gpu.total_submissions())
    }

    fn flush(&self) {
        self.gpu.flush();
    }

    fn dispatches(&self) -> Option<u64> {
        Some(self.gpu.total_dispatches())
    }

    async fn shortlist_async(&self, logits: &Tensor, list: &Shortlist, out: &mut Vec<Candidate>) -> Result<(), BackendError> {
        let spec = ShortlistSpec {
            masked: &list.masked,
            penalized: &list.penalized,
            penalty: list.penalty,
            keep: list.keep,
            finite_only: list.finite_only,
        };
        *out = self.gpu.shortlist_async(logits, &spec).await?;
        Ok(())
    }

    async fn read_cache_async(&self, cache: &KvCache, len: usize) -> Result<CacheData, BackendError> {
        Ok(CacheData::F16(self.gpu.read_cache_async(cache, len).await?))
    }
}

/// Checks, before a model is trusted to a device, that its matrix products agree with
/// the CPU's definition of the weights: for each storage format of the file, a few rows
/// of its first matrix times a fixed vector, against the `f64` reference. A driver that
/// miscompiles a kernel, or a device that returns garbage, fails here and the model runs
/// on the CPU instead.
pub async fn check_device(gpu: &Gpu, file: &[u8]) -> Result<(), String> {
    let gguf = crate::gguf::Gguf::parse(file).map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    for info in &gguf.tensors {
        let [cols, rows] = info.dims[..] else {
            continue;
        };
        if seen.contains(&info.ty) {
            continue;
        }
        seen.push(info.ty);
        let (cols, rows) = (cols as usize, (rows as usize).min(16));
        let Some(row_bytes) = info.ty.row_bytes(cols) else {
            continue;
        };
        let bytes = &gguf.tensor_bytes(info)[..rows * row_bytes];
        let matrix = gpu.matrix(info.ty, rows, cols, bytes).map_err(|e| format!("{}: {e}", info.name))?;
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 17) as f32 / 8.0 - 1.0).collect();
        let got = gpu
            .read_async(&gpu.matmul(&gpu.upload(&x, 1, cols).map_err(|e| e.to_string())?, &matrix).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let (want, scale) = charter_kernels::reference::matvec(info.ty, bytes, rows, &x);
        for (r, ((&g, &w), &s)) in got.iter().zip(&want).zip(&scale).enumerate() {
            if !g.is_finite() || (f64::from(g) - w).abs() > 1e-3 * s.max(1e-3) {
                return Err(format!(
                    "{} rows of {} disagree with the CPU (row {r}: {g} against {w:.6})",
                    info.ty.name(),
                    info.name
                ));
            }
        }
    }
    Ok(())
}
