//! Charter's CPU backend, on `charter-kernels`: the weights are read where they lie in
//! the model's buffer (rearranged in place, at load, into the tiles the kernels read as
//! one stream: [`tile_matrices`]), activations are quantized once per tensor and reused
//! by every matrix that reads them, and the KV cache is `f16`.
//!
//! Tensors borrow their storage from a pool that the backend owns: when a tensor is
//! dropped its buffers go back to the pool, so after the first step of a given shape
//! a decode step allocates nothing.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use charter_kernels::attention::{self, KvCache};
use charter_kernels::format::{Format, dequantize_row};
use charter_kernels::half::f32_to_f16;
use charter_kernels::dot::tile_in_place;
use charter_kernels::{Isa, Matrix, Q8Rows, matmul_f_on, matmul_q_on, ops};
use charter_threads::Pool as Threads;

use crate::backend::{Activation, AttentionParams, Backend, BackendError, CacheData, CacheShift, RopeStyle, WeightData};
use crate::gguf::GgufHeader;

/// Rearranges every matrix of a legacy 32-value format in the model's buffer into
/// tiles of four interleaved rows (`charter_kernels::dot::Layout::Tiles4`), in place:
/// the kernels take four rows at a time, and in this layout they read one stream front
/// to back instead of four, which the processor's prefetchers follow (about four times
/// the bandwidth). A [`CpuBackend`] over this buffer reads its matrices that way.
pub fn tile_matrices(bytes: &mut [u8], header: &GgufHeader) {
    for (t, range) in header.tensor_ranges() {
        if let [cols, rows] = t.dims[..] {
            tile_in_place(t.ty, rows as usize, cols as usize, &mut bytes[range]);
        }
    }
}

/// Buffers returned by dropped tensors, for the next ones.
#[derive(Debug, Default)]
struct Pool {
    floats: RefCell<Vec<Vec<f32>>>,
    quantized: RefCell<Vec<Q8Rows>>,
}

impl Pool {
    /// A buffer of `len` values for the caller to overwrite: the smallest free buffer
    /// that holds `len` without growing, else the largest.
    fn take(&self, len: usize) -> Vec<f32> {
        let mut free = self.floats.borrow_mut();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)
            .or_else(|| free.iter().enumerate().max_by_key(|(_, v)| v.capacity()).map(|(i, _)| i));
        let mut v = best.map(|i| free.swap_remove(i)).unwrap_or_default();
        v.clear();
        v.resize(len, 0.0);
        v
    }
}

/// An activation matrix `(n, width)` and, once a matrix has read it, its quantized rows
/// (in blocks of 32 and of 256).
pub struct CpuTensor {
    data: Vec<f32>,
    n: usize,
    width: usize,
    quantized: RefCell<[Option<Q8Rows>; 2]>,
    pool: Rc<Pool>,
}

impl std::fmt::Debug for CpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuTensor({}×{})", self.n, self.width)
    }
}

impl Clone for CpuTensor {
    fn clone(&self) -> Self {
        let mut data = self.pool.take(self.data.len());
        data.copy_from_slice(&self.data);
        CpuTensor { data, n: self.n, width: self.width, quantized: RefCell::new([None, None]), pool: self.pool.clone() }
    }
}

impl Drop for CpuTensor {
    fn drop(&mut self) {
        self.pool.floats.borrow_mut().push(std::mem::take(&mut self.data));
        let mut q = self.pool.quantized.borrow_mut();
        q.extend(self.quantized.get_mut().iter_mut().filter_map(Option::take));
    }
}

/// Where a weight matrix's bytes are: in the model's buffer, or copied.
#[derive(Debug)]
enum Bytes {
    Shared { source: Arc<Vec<u8>>, at: usize, len: usize },
    Owned(Vec<u8>),
}

/// A weight matrix in its file format.
#[derive(Debug)]
pub struct CpuMatrix {
    bytes: Bytes,
    format: Format,
    rows: usize,
    cols: usize,
    /// Q8_0 without −128 weights (see `Matrix::symmetric_q8`), found once at load.
    symmetric: bool,
}

impl CpuMatrix {
    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Shared { source, at, len } => &source[*at..*at + *len],
            Bytes::Owned(v) => v,
        }
    }

    fn view(&self) -> Result<Matrix<'_>, BackendError> {
        let m = match self.bytes {
            Bytes::Shared { .. } => Matrix::tiled(self.format, self.rows, self.cols, self.bytes()),
            Bytes::Owned(_) => Matrix::new(self.format, self.rows, self.cols, self.bytes()),
        };
        Ok(m.map_err(|e| BackendError::Shape(e.to_string()))?.with_symmetric_q8(self.symmetric))
    }
}

/// Rotary tables: `cos` and `sin` of every position and frequency, `(capacity, half)`.
#[derive(Debug)]
pub struct CpuRope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

/// Charter's kernels on the CPU.
#[derive(Debug)]
pub struct CpuBackend {
    isa: Isa,
    source: Option<Arc<Vec<u8>>>,
    pool: Rc<Pool>,
    scratch: RefCell<attention::Scratch>,
    /// The threads matrix products and attention are shared among (the caller alone by
    /// default); every other step runs on the caller, where splitting it does not pay.
    threads: Rc<Threads>,
}

impl CpuBackend {
    /// A backend on the fastest instruction set here. Weights that lie inside `source`
    /// (the model's buffer, its matrices tiled by [`tile_matrices`]) are read there;
    /// others are copied, as they are.
    pub fn new(source: Option<Arc<Vec<u8>>>) -> Self {
        CpuBackend::with_isa(Isa::best(), source)
    }

    /// A backend on a chosen instruction set (which must be in [`Isa::available`]).
    pub fn with_isa(isa: Isa, source: Option<Arc<Vec<u8>>>) -> Self {
        CpuBackend {
            isa,
            source,
            pool: Rc::new(Pool::default()),
            scratch: RefCell::new(attention::Scratch::default()),
            threads: Rc::new(Threads::single()),
        }
    }

    /// This backend with its matrix products shared among `threads` (the results are
    /// the same bits on any number of threads).
    pub fn with_threads(self, threads: Rc<Threads>) -> Self {
        CpuBackend { threads, ..self }
    }

    /// The threads it shares products among.
    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    fn tensor(&self, n: usize, width: usize) -> CpuTensor {
        CpuTensor { data: self.pool.take(n * width), n, width, quantized: RefCell::new([None, None]), pool: self.pool.clone() }
    }

    /// Applies `f` to every element pair of `a` and `b` into a new tensor.
    fn zip(&self, a: &CpuTensor, b: &CpuTensor, f: impl Fn(f32, f32) -> f32) -> Result<CpuTensor, BackendError> {
        if (a.n, a.width) != (b.n, b.width) {
            return Err(BackendError::Shape(format!("{}×{} with {}×{}", a.n, a.width, b.n, b.width)));
        }
        let mut out = self.tensor(a.n, a.width);
        for ((o, &x), &y) in out.data.iter_mut().zip(&a.data).zip(&b.data) {
            *o = f(x, y);
        }
        Ok(out)
    }
}


impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Matrix = CpuMatrix;
    type Vector = Vec<f32>;
    type Cache = KvCache;
    type Rope = CpuRope;

    fn describe(&self) -> String {
        match self.threads.threads() {
            1 => format!("cpu ({})", self.isa.name()),
            n => format!("cpu ({}, {n} threads)", self.isa.name()),
        }
    }

    fn matrix(&self, w: WeightData<'_>) -> Result<CpuMatrix, BackendError> {
        let [cols, rows] = w.dims else {
            return Err(BackendError::Shape(format!("{} should be a matrix, has dims {:?}", w.name, w.dims)));
        };
        let (rows, cols) = (*rows as usize, *cols as usize);
        let format = w.ty;
        let symmetric =
            Matrix::new(format, rows, cols, w.bytes).map_err(|e| BackendError::Shape(format!("{}: {e}", w.name)))?.symmetric_q8();
        let start = w.bytes.as_ptr() as usize;
        let bytes = match &self.source {
            Some(source)
                if start >= source.as_ptr() as usize && start + w.bytes.len() <= source.as_ptr() as usize + source.len() =>
            {
                Bytes::Shared { source: source.clone(), at: start - source.as_ptr() as usize, len: w.bytes.len() }
            }
            _ => Bytes::Owned(w.bytes.to_vec()),
        };
        Ok(CpuMatrix { bytes, format, rows, cols, symmetric })
    }

    fn vector(&self, w: WeightData<'_>) -> Result<Vec<f32>, BackendError> {
        let len: u64 = w.dims.iter().product();
        let format = w.ty;
        if format.row_bytes(len as usize) != Some(w.bytes.len()) {
            return Err(BackendError::Shape(format!("{}: {} bytes for {len} {} values", w.name, w.bytes.len(), format.name())));
        }
        let mut out = vec![0f32; len as usize];
        dequantize_row(format, w.bytes, &mut out);
        Ok(out)
    }

    fn cache(&self, n_kv_heads: usize, capacity: usize, head_dim: usize) -> Result<KvCache, BackendError> {
        Ok(KvCache::new(n_kv_heads, capacity, head_dim))
    }

    fn rope_table(&self, inv_freq: &[f32], capacity: usize) -> Result<CpuRope, BackendError> {
        let half = inv_freq.len();
        let (mut cos, mut sin) = (Vec::with_capacity(capacity * half), Vec::with_capacity(capacity * half));
        for pos in 0..capacity {
            for &f in inv_freq {
                // In f64, so that every platform's libm rounds to the same f32.
                let angle = pos as f64 * f64::from(f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(CpuRope { cos, sin, half })
    }

    fn embed(&self, table: &CpuMatrix, ids: &[u32]) -> Result<CpuTensor, BackendError> {
        let m = table.view()?;
        let mut out = self.tensor(ids.len(), table.cols);
        for (row, &id) in out.data.chunks_exact_mut(table.cols).zip(ids) {
            if id as usize >= table.rows {
                return Err(BackendError::Shape(format!("token {id} of a table of {}", table.rows)));
            }
            m.dequantize_row(id as usize, row);
        }
        Ok(out)
    }

    fn matmul(&self, x: &CpuTensor, w: &CpuMatrix) -> Result<CpuTensor, BackendError> {
        if x.width != w.cols {
            return Err(BackendError::Shape(format!("{}×{} times a {}×{} matrix", x.n, x.width, w.rows, w.cols)));
        }
        let m = w.view()?;
        let mut out = self.tensor(x.n, w.rows);
        match m.activation_block() {
            Some(block) => {
                let slot = usize::from(block != 32);
                let mut cache = x.quantized.borrow_mut();
                let q = cache[slot].get_or_insert_with(|| {
                    let mut q = self.pool.quantized.borrow_mut().pop().unwrap_or_default();
                    q.quantize(&x.data, x.n, x.width, block);
                    q
                });
                matmul_q_on(&self.threads, self.isa, &m, q, &mut out.data);
            }
            None => matmul_f_on(&self.threads, self.isa, &m, &x.data, x.n, &mut out.data),
        }
        Ok(out)
    }

    fn add_bias(&self, x: &CpuTensor, b: &Vec<f32>) -> Result<CpuTensor, BackendError> {
        if b.len() != x.width {
            return Err(BackendError::Shape(format!("bias of {} on rows of {}", b.len(), x.width)));
        }
        let mut out = self.tensor(x.n, x.width);
        for (o, xs) in out.data.chunks_exact_mut(x.width).zip(x.data.chunks_exact(x.width)) {
            for ((o, &v), &bv) in o.iter_mut().zip(xs).zip(b) {
                *o = v + bv;
            }
        }
        Ok(out)
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor, BackendError> {
        self.zip(a, b, |x, y| x + y)
    }

    fn scale(&self, x: &CpuTensor, s: f32) -> Result<CpuTensor, BackendError> {
        let mut out = self.tensor(x.n, x.width);
        for (o, &v) in out.data.iter_mut().zip(&x.data) {
            *o = v * s;
        }
        Ok(out)
    }

    fn rms_norm(&self, x: &CpuTensor, w: &Vec<f32>, eps: f32) -> Result<CpuTensor, BackendError> {
        if w.is_empty() || x.width % w.len() != 0 {
            return Err(BackendError::Shape(format!("rms norm of width {} over rows of {}", w.len(), x.width)));
        }
        let mut out = self.tensor(x.n, x.width);
        ops::rms_norm(&x.data, w, eps, &mut out.data);
        Ok(out)
    }

    fn rope(&self, x: &CpuTensor, rope: &CpuRope, n_heads: usize, start: usize, style: RopeStyle) -> Result<CpuTensor, BackendError> {
        let head_dim = x.width / n_heads.max(1);
        let capacity = rope.cos.len() / rope.half.max(1);
        if head_dim != 2 * rope.half || n_heads * head_dim != x.width || start + x.n > capacity {
            return Err(BackendError::Shape(format!("rope of {} rows at {start} with head dim {head_dim}", x.n)));
        }
        let mut out = self.clone_tensor(x);
        for (i, row) in out.data.chunks_exact_mut(x.width).enumerate() {
            let at = (start + i) * rope.half;
            let (cos, sin) = (&rope.cos[at..at + rope.half], &rope.sin[at..at + rope.half]);
            match style {
                RopeStyle::Interleaved => ops::rope_interleaved(row, head_dim, cos, sin),
                RopeStyle::Halves => ops::rope_halves(row, head_dim, cos, sin),
            }
        }
        Ok(out)
    }

    fn gated(&self, gate: &CpuTensor, up: &CpuTensor, act: Activation) -> Result<CpuTensor, BackendError> {
        match act {
            Activation::Silu => self.zip(gate, up, |g, u| ops::silu(g) * u),
            Activation::GeluTanh => self.zip(gate, up, |g, u| ops::gelu_tanh(g) * u),
        }
    }

    fn attention(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        cache: &mut KvCache,
        start: usize,
        p: &AttentionParams,
    ) -> Result<CpuTensor, BackendError> {
        let kv_width = p.n_kv_heads * p.head_dim;
        let fits = q.width == p.n_heads * p.head_dim
            && (k.width, v.width) == (kv_width, kv_width)
            && (k.n, v.n) == (q.n, q.n)
            && (cache.heads(), cache.head_dim()) == (p.n_kv_heads, p.head_dim)
            && p.n_kv_heads > 0
            && p.n_heads % p.n_kv_heads == 0
            && start + q.n <= cache.capacity();
        if !fits {
            return Err(BackendError::Shape(format!("attention of {} rows at {start} into {}", q.n, cache.capacity())));
        }
        cache.write(start, &k.data, &v.data);
        let mut out = self.tensor(q.n, q.width);
        attention::attend_on(&self.threads, p, &q.data, cache, start, &mut out.data, &mut self.scratch.borrow_mut());
        Ok(out)
    }

    fn read_cache(&self, cache: &KvCache, len: usize) -> Result<CacheData, BackendError> {
        if len > cache.capacity() {
            return Err(BackendError::Shape(format!("reading {len} positions of a cache of {}", cache.capacity())));
        }
        Ok(CacheData::F16(cache.read(len)))
    }

    fn write_cache(&self, cache: &mut KvCache, data: &CacheData, len: usize) -> Result<(), BackendError> {
        let want = 2 * cache.heads() * len * cache.head_dim();
        if len > cache.capacity() || data.len() != want {
            return Err(BackendError::Shape(format!("writing {} values as {len} positions into a cache of {}", data.len(), cache.capacity())));
        }
        match data {
            CacheData::F16(bits) => cache.write_raw(len, bits),
            CacheData::F32(values) => cache.write_raw(len, &values.iter().map(|&x| f32_to_f16(x)).collect::<Vec<_>>()),
        }
        Ok(())
    }

    fn shift_cache(&self, cache: &mut KvCache, shift: &CacheShift<'_>) -> Result<(), BackendError> {
        let CacheShift { len, from, to, heads, head_dim, .. } = *shift;
        if !(from <= to && to <= len && len <= cache.capacity()) || (heads, head_dim) != (cache.heads(), cache.head_dim()) {
            return Err(BackendError::Shape(format!("removing positions {from}..{to} of {len} from a cache of {}", cache.capacity())));
        }
        cache.remove(len, from, to, &mut |key| shift.turn(key));
        Ok(())
    }

    fn rows_from(&self, x: &CpuTensor, from: usize) -> Result<CpuTensor, BackendError> {
        let from = from.min(x.n);
        let mut out = self.tensor(x.n - from, x.width);
        out.data.copy_from_slice(&x.data[from * x.width..]);
        Ok(out)
    }

    fn read(&self, x: &CpuTensor) -> Result<Vec<f32>, BackendError> {
        Ok(x.data.clone())
    }

    fn read_into(&self, x: &CpuTensor, out: &mut Vec<f32>) -> Result<(), BackendError> {
        out.extend_from_slice(&x.data);
        Ok(())
    }
}

impl CpuBackend {
    fn clone_tensor(&self, x: &CpuTensor) -> CpuTensor {
        let mut out = self.tensor(x.n, x.width);
        out.data.copy_from_slice(&x.data);
        out
    }
}
