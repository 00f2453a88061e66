//! Matrix products of GGUF weights with activations: `out[t][r] = W[r] · x[t]`.
//!
//! Quantized weights multiply activations quantized once per row ([`Q8Rows`]); float
//! weights multiply `f32` activations. Every instruction set computes the same bits:
//! integer block sums are exact in any order, and the float steps follow
//! [`scalar`]'s order exactly, lane by lane (a SIMD lane holds one weight row or one
//! token, never a partial sum that the scalar code would add in another order).

pub mod scalar;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::format::Format;
use crate::q8::Q8Rows;

/// A weight matrix in its file layout: `rows` rows of `cols` values.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    format: Format,
    rows: usize,
    cols: usize,
    data: &'a [u8],
}

/// A matrix whose bytes do not fit its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {format} matrix of {rows}×{cols} needs {expected} bytes, has {found}")]
pub struct ShapeError {
    /// The format's name.
    pub format: &'static str,
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// Bytes the shape needs, when `cols` is a whole number of blocks.
    pub expected: String,
    /// Bytes given.
    pub found: usize,
}

impl<'a> Matrix<'a> {
    /// Checks that `data` holds exactly `rows × cols` values in `format`.
    pub fn new(format: Format, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, ShapeError> {
        let expected = format.row_bytes(cols).and_then(|r| r.checked_mul(rows));
        if expected != Some(data.len()) || cols == 0 {
            return Err(ShapeError {
                format: format.name(),
                rows,
                cols,
                expected: expected.map_or_else(|| format!("rows of whole {}-value blocks", format.block_len()), |e| e.to_string()),
                found: data.len(),
            });
        }
        Ok(Matrix { format, rows, cols, data })
    }

    /// The storage format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// The values per block of activations this matrix multiplies: 32 for the legacy
    /// formats, 256 for the k-quants, `None` for float formats (which take `f32`).
    pub fn activation_block(&self) -> Option<usize> {
        self.format.is_quantized().then(|| self.format.block_len())
    }
}

/// An instruction set the kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust: the reference order of operations.
    Scalar,
    /// WebAssembly SIMD128.
    Simd128,
    /// WebAssembly SIMD128 with relaxed SIMD's integer dot product.
    RelaxedSimd,
    /// x86-64 AVX2 (with FMA not used: the order of operations is the scalar one).
    Avx2,
}

impl Isa {
    /// The fastest instruction set this build and this machine have.
    pub fn best() -> Isa {
        Isa::available().last().copied().unwrap_or(Isa::Scalar)
    }

    /// Every instruction set usable here, slowest first.
    pub fn available() -> Vec<Isa> {
        let mut out = vec![Isa::Scalar];
        #[cfg(target_arch = "wasm32")]
        {
            out.push(Isa::Simd128);
            if cfg!(feature = "relaxed-simd") {
                out.push(Isa::RelaxedSimd);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("sse4.1") {
            out.push(Isa::Avx2);
        }
        out
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Simd128 => "wasm-simd128",
            Isa::RelaxedSimd => "wasm-relaxed-simd",
            Isa::Avx2 => "avx2",
        }
    }
}

/// `out[t · rows + r] = W[r] · x[t]` for quantized weights and activations quantized in
/// blocks of [`Matrix::activation_block`].
///
/// # Panics
/// When the shapes do not fit, or `isa` is not [`Isa::available`].
pub fn matmul_q(isa: Isa, w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    assert_eq!(Some(x.block()), w.activation_block(), "{} weights need activations in blocks of their own size", w.format.name());
    assert!(x.cols() == w.cols && out.len() == x.n() * w.rows, "{}×{} times {}×{}", w.rows, w.cols, x.n(), x.cols());
    match isa {
        Isa::Scalar => {
            for t in 0..x.n() {
                let a = x.row(t);
                for (r, o) in out[t * w.rows..(t + 1) * w.rows].iter_mut().enumerate() {
                    *o = scalar::dot_q(w.format, w.row(r), a);
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        Isa::Simd128 => wasm::matmul_q::<false>(w, x, out),
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        Isa::RelaxedSimd => wasm::matmul_q::<true>(w, x, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(Isa::available().contains(&Isa::Avx2), "this processor has no AVX2");
            // SAFETY: AVX2 and SSE4.1 are present, checked above.
            unsafe { x86::matmul_q(w, x, out) }
        }
        #[allow(unreachable_patterns)]
        other => panic!("{} kernels are not in this build", other.name()),
    }
}

/// `out[t · rows + r] = W[r] · x[t]` for float weights and `n` rows of `f32` activations.
///
/// # Panics
/// When the shapes do not fit, or `isa` is not [`Isa::available`].
pub fn matmul_f(isa: Isa, w: &Matrix<'_>, x: &[f32], n: usize, out: &mut [f32]) {
    assert!(!w.format.is_quantized(), "{} weights take quantized activations", w.format.name());
    assert!(x.len() == n * w.cols && out.len() == n * w.rows, "{}×{} times {} values of {n} rows", w.rows, w.cols, x.len());
    match isa {
        Isa::Scalar => {
            for t in 0..n {
                let xt = &x[t * w.cols..(t + 1) * w.cols];
                for (r, o) in out[t * w.rows..(t + 1) * w.rows].iter_mut().enumerate() {
                    *o = scalar::dot_f(w.format, w.row(r), xt);
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        Isa::Simd128 | Isa::RelaxedSimd => wasm::matmul_f(w, x, n, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(Isa::available().contains(&Isa::Avx2), "this processor has no AVX2");
            // SAFETY: AVX2 and SSE4.1 are present, checked above.
            unsafe { x86::matmul_f(w, x, n, out) }
        }
        #[allow(unreachable_patterns)]
        other => panic!("{} kernels are not in this build", other.name()),
    }
}
