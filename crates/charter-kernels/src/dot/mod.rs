//! Matrix products of GGUF weights with activations: `out[t][r] = W[r] · x[t]`.
//!
//! Quantized weights multiply activations quantized once per row ([`Q8Rows`]); float
//! weights multiply `f32` activations. Every instruction set computes the same bits:
//! integer block sums are exact in any order, and the float steps follow
//! [`scalar`]'s order exactly, lane by lane (a SIMD lane holds one weight row or one
//! token, never a partial sum that the scalar code would add in another order).

/// Applies a row kernel to every row, over the tokens four at a time and then what is
/// left: `|row, a| kernel(row, &a)` where `a` is an array of `T` activation rows and
/// the kernel returns `[f32; T]`.
macro_rules! rows_by_tokens {
    ($w:expr, $x:expr, $out:expr, |$row:ident, $a:ident| $call:expr) => {{
        let (w, x, out): (&Matrix<'_>, &Q8Rows, &mut [f32]) = ($w, $x, $out);
        let rows = w.rows();
        for r in 0..rows {
            let $row = w.row(r);
            let mut t0 = 0;
            while t0 < x.n() {
                let left = x.n() - t0;
                let mut put = |v: &[f32]| {
                    for (i, v) in v.iter().enumerate() {
                        out[(t0 + i) * rows + r] = *v;
                    }
                };
                // SAFETY (each arm): the row is whole blocks, the activations match.
                match left {
                    1 => {
                        let $a: [Q8Row<'_>; 1] = [x.row(t0)];
                        put(&unsafe { $call });
                    }
                    2 => {
                        let $a: [Q8Row<'_>; 2] = core::array::from_fn(|t| x.row(t0 + t));
                        put(&unsafe { $call });
                    }
                    3 => {
                        let $a: [Q8Row<'_>; 3] = core::array::from_fn(|t| x.row(t0 + t));
                        put(&unsafe { $call });
                    }
                    _ => {
                        let $a: [Q8Row<'_>; 4] = core::array::from_fn(|t| x.row(t0 + t));
                        put(&unsafe { $call });
                    }
                }
                t0 += left.min(4);
            }
        }
    }};
}

/// Applies a legacy-format product to a matrix four rows at a time: `tile` computes a
/// four-row tile for `T` activation rows from `t0` (the tile's bytes at `p`) and
/// returns one vector of the four rows' results per token, which `store` writes to the
/// four `f32`s at `ptr`; the tokens go four at a time and then what is left. Rows after
/// the last whole tile go through `row`, one row and one activation row at a time.
macro_rules! legacy_by_tiles {
    (
        $w:expr, $x:expr, $out:expr,
        tile: |$p:ident, $t0:ident, $T:ident| $tile:expr,
        store: |$ptr:ident, $v:ident| $store:expr,
        row: |$row:ident, $a:ident| $one:expr $(,)?
    ) => {{
        let (w, x, out): (&Matrix<'_>, &Q8Rows, &mut [f32]) = ($w, $x, $out);
        let rows = w.rows();
        let tiles = rows / 4;
        for tile in 0..tiles {
            let $p = w.tile_start(4 * tile);
            let mut put = |t0: usize, vs: &[_]| {
                for (i, &$v) in vs.iter().enumerate() {
                    let $ptr = out[(t0 + i) * rows + 4 * tile..][..4].as_mut_ptr();
                    // SAFETY: `ptr` points at four f32s.
                    unsafe { $store };
                }
            };
            // SAFETY (each call): rows 4·tile..4·tile+4 exist, laid out as the matrix's
            // tile strides say, and so do the activation rows asked for.
            let mut $t0 = 0;
            while $t0 + 8 <= x.n() {
                const $T: usize = 8;
                put($t0, &unsafe { $tile });
                $t0 += 8;
            }
            if x.n() - $t0 >= 4 {
                const $T: usize = 4;
                put($t0, &unsafe { $tile });
                $t0 += 4;
            }
            match x.n() - $t0 {
                3 => {
                    const $T: usize = 3;
                    put($t0, &unsafe { $tile })
                }
                2 => {
                    const $T: usize = 2;
                    put($t0, &unsafe { $tile })
                }
                1 => {
                    const $T: usize = 1;
                    put($t0, &unsafe { $tile })
                }
                _ => {}
            }
        }
        for r in 4 * tiles..rows {
            let $row = w.row(r);
            for t in 0..x.n() {
                let $a = x.row(t);
                // SAFETY: row `r` is whole, and the activation row matches it.
                out[t * rows + r] = unsafe { $one };
            }
        }
    }};
}

/// The layout of a legacy 32-value block, for the SIMD kernels (one type per format, so
/// each kernel is compiled for its layout).
#[cfg_attr(not(any(target_arch = "wasm32", target_arch = "x86_64")), allow(dead_code))]
pub(crate) trait Legacy {
    /// Block bytes.
    const BB: usize;
    /// Offset of the 16 nibble bytes (or of the 32 signed bytes).
    const QS: usize;
    /// Offset of the 32 fifth bits, if any.
    const QH: Option<usize>;
    /// Offset of the `f16` minimum, if any.
    const MIN: Option<usize>;
    /// What is subtracted from each stored value (`Σ (u − o)·a = Σ u·a − o·Σ a`).
    const OFFSET: i32;
    /// Signed bytes (Q8_0) rather than unsigned values.
    const SIGNED: bool;
}

macro_rules! legacy {
    ($name:ident, $bb:expr, $qs:expr, $qh:expr, $min:expr, $off:expr, $signed:expr) => {
        #[cfg_attr(not(any(target_arch = "wasm32", target_arch = "x86_64")), allow(dead_code))]
        pub(crate) struct $name;
        impl Legacy for $name {
            const BB: usize = $bb;
            const QS: usize = $qs;
            const QH: Option<usize> = $qh;
            const MIN: Option<usize> = $min;
            const OFFSET: i32 = $off;
            const SIGNED: bool = $signed;
        }
    };
}
legacy!(Q40, 18, 2, None, None, 8, false);
legacy!(Q41, 20, 4, None, Some(2), 0, false);
legacy!(Q50, 22, 6, Some(2), None, 16, false);
legacy!(Q51, 24, 8, Some(4), Some(2), 0, false);
legacy!(Q80, 34, 2, None, None, 0, true);

pub mod scalar;
mod split;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use split::{matmul_f_on, matmul_q_on};

use crate::format::Format;
use crate::q8::Q8Rows;

/// How a matrix's blocks lie in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As in the file: row after row.
    Rows,
    /// In tiles of four rows whose blocks are interleaved (row 0's block 0, row 1's
    /// block 0, …, row 0's block 1, …), so the kernels, which take four rows at a time,
    /// read one stream front to back; rows after the last whole tile stay as they are.
    /// See [`tile_in_place`].
    Tiles4,
}

/// Whether [`tile_in_place`] rearranges a matrix of this format and shape: the legacy
/// 32-value formats with at least one whole tile. (k-quants are read a row at a time,
/// which is one stream already.)
pub fn tileable(format: Format, rows: usize) -> bool {
    matches!(format, Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 | Format::Q8_0) && rows >= 4
}

/// Rearranges a matrix stored row after row into [`Layout::Tiles4`], in place (the
/// size does not change); does nothing where [`tileable`] says no. Returns whether it
/// did.
///
/// # Panics
/// When `data` is not `rows × cols` values in `format`.
pub fn tile_in_place(format: Format, rows: usize, cols: usize, data: &mut [u8]) -> bool {
    if !tileable(format, rows) {
        return false;
    }
    let rb = format.row_bytes(cols).expect("whole blocks");
    assert_eq!(data.len(), rb * rows, "{} matrix of {rows}×{cols}", format.name());
    let bb = format.block_bytes();
    let mut tile = vec![0u8; 4 * rb];
    for chunk in data.chunks_exact_mut(4 * rb) {
        tile.copy_from_slice(chunk);
        for b in 0..rb / bb {
            for r in 0..4 {
                chunk[(4 * b + r) * bb..(4 * b + r + 1) * bb].copy_from_slice(&tile[r * rb + b * bb..r * rb + (b + 1) * bb]);
            }
        }
    }
    true
}

/// A weight matrix: `rows` rows of `cols` values, in a [`Layout`].
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    format: Format,
    rows: usize,
    cols: usize,
    data: &'a [u8],
    layout: Layout,
    /// For Q8_0: no weight byte is −128, so a weight's negation is a byte too (checked
    /// by [`Matrix::symmetric_q8`], which a caller runs once at load).
    symmetric: bool,
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
        Ok(Matrix { format, rows, cols, data, layout: Layout::Rows, symmetric: false })
    }

    /// Like [`Matrix::new`], for bytes that [`tile_in_place`] rearranged (where it did).
    pub fn tiled(format: Format, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, ShapeError> {
        let m = Matrix::new(format, rows, cols, data)?;
        Ok(if tileable(format, rows) { Matrix { layout: Layout::Tiles4, ..m } } else { m })
    }

    /// How the blocks lie.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Rows in whole tiles of four (none in [`Layout::Rows`]).
    pub(crate) fn tiled_rows(&self) -> usize {
        match self.layout {
            Layout::Rows => 0,
            Layout::Tiles4 => self.rows / 4 * 4,
        }
    }

    /// The bytes of block `b` of row `r`.
    pub fn block(&self, r: usize, b: usize) -> &'a [u8] {
        let (rb, bb) = (self.row_bytes(), self.format.block_bytes());
        let at = if r < self.tiled_rows() { r / 4 * 4 * rb + (4 * b + r % 4) * bb } else { r * rb + b * bb };
        &self.data[at..at + bb]
    }

    /// Row `r`, decoded.
    ///
    /// # Panics
    /// When `out` is not one row long.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols, "a row of {} values", self.cols);
        let block = self.format.block_len();
        for (b, chunk) in out.chunks_exact_mut(block).enumerate() {
            crate::format::dequantize_row(self.format, self.block(r, b), chunk);
        }
    }

    /// Where four-row tiles start, and the strides of their blocks: (bytes from a row to
    /// the next within a block column, bytes from a block to the next within a row).
    pub(crate) fn tile_strides(&self) -> (usize, usize) {
        let bb = self.format.block_bytes();
        match self.layout {
            Layout::Rows => (self.row_bytes(), bb),
            Layout::Tiles4 => (bb, 4 * bb),
        }
    }

    /// Whether every Q8_0 weight lies in −127..=127 (as llama.cpp writes them), which
    /// lets relaxed SIMD multiply by weights with their signs moved onto them; false for
    /// other formats. A pass over the matrix: run it once at load, then mark views of the
    /// same bytes with [`Matrix::with_symmetric_q8`].
    pub fn symmetric_q8(&self) -> bool {
        self.format == Format::Q8_0 && self.data.chunks_exact(34).all(|b| b[2..].iter().all(|&q| q != 0x80))
    }

    /// This matrix, marked as [`Matrix::symmetric_q8`] found it. Marking a matrix that
    /// is not gives wrong products for its −128 weights (never unsafe).
    pub fn with_symmetric_q8(mut self, symmetric: bool) -> Self {
        self.symmetric = symmetric && self.format == Format::Q8_0;
        self
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn is_symmetric_q8(&self) -> bool {
        self.symmetric
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

    /// The bytes of row `r`, which must not lie in a tile: with [`Layout::Tiles4`],
    /// a tiled row's blocks are apart (see [`Matrix::block`]).
    ///
    /// # Panics
    /// When row `r` lies in a tile.
    pub fn row(&self, r: usize) -> &'a [u8] {
        assert!(r >= self.tiled_rows(), "row {r} is interleaved with its tile's");
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// The bytes where row `r`'s tile starts (row `r` itself in [`Layout::Rows`]).
    pub(crate) fn tile_start(&self, r: usize) -> *const u8 {
        let rb = self.row_bytes();
        self.data[r * rb..].as_ptr()
    }

    /// The values per block of activations this matrix multiplies: 32 for the legacy
    /// formats, 256 for the k-quants, `None` for float formats (which take `f32`).
    pub fn activation_block(&self) -> Option<usize> {
        self.format.is_quantized().then(|| self.format.block_len())
    }
}

/// Whether this processor runs the AVX2 kernels (which also use SSE4.1 and F16C). The
/// standard library caches the answer, so asking on every product costs nothing.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("sse4.1")
        && std::arch::is_x86_feature_detected!("f16c")
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
        if has_avx2() {
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
            let nb = w.cols / w.format.block_len();
            for t in 0..x.n() {
                let a = x.row(t);
                for (r, o) in out[t * w.rows..(t + 1) * w.rows].iter_mut().enumerate() {
                    *o = (0..nb).fold(0.0, |acc, b| scalar::block_step(w.format, w.block(r, b), &a, b, acc));
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        Isa::Simd128 => wasm::matmul_q::<false>(w, x, out),
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        Isa::RelaxedSimd => wasm::matmul_q::<true>(w, x, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(has_avx2(), "this processor has no AVX2");
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
            assert!(has_avx2(), "this processor has no AVX2");
            // SAFETY: AVX2, SSE4.1 and F16C are present, checked above.
            unsafe { x86::matmul_f(w, x, n, out) }
        }
        #[allow(unreachable_patterns)]
        other => panic!("{} kernels are not in this build", other.name()),
    }
}
