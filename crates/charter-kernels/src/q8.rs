//! Activations quantized to signed bytes, once per row, for the integer dot products.
//!
//! As in llama.cpp, a row of activations is cut into blocks (32 values for the legacy
//! formats, 256 for the k-quants), each stored as bytes with one `f32` scale: `x ≈ d · q`,
//! `|q| ≤ 127`. The sum of every 16 bytes is kept beside them, so the kernels can take a
//! weight format's offset or minimum out of the inner loop (`Σ (u − o)·a = Σ u·a − o·Σ a`)
//! and multiply only unsigned weights, which is what relaxed SIMD's dot product and
//! x86's `pmaddubsw` need.

/// Quantized activation rows: `n` rows of `cols` values in blocks of `block`.
#[derive(Debug, Clone, Default)]
pub struct Q8Rows {
    block: usize,
    cols: usize,
    n: usize,
    d: Vec<f32>,
    qs: Vec<i8>,
    sums: Vec<i16>,
}

/// One quantized row, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Q8Row<'a> {
    /// Scale of each block.
    pub d: &'a [f32],
    /// The bytes.
    pub qs: &'a [i8],
    /// Sum of each run of 16 bytes.
    pub sums: &'a [i16],
}

impl Q8Rows {
    /// Quantizes `n` rows of `cols` values (`x.len() == n * cols`) in blocks of `block`
    /// (32 or 256), reusing this value's buffers.
    ///
    /// # Panics
    /// When `cols` is not a multiple of `block`, or `x` is not `n × cols`.
    pub fn quantize(&mut self, x: &[f32], n: usize, cols: usize, block: usize) {
        assert!(block % 16 == 0 && cols % block == 0 && x.len() == n * cols, "{n}×{cols} in blocks of {block}");
        self.block = block;
        self.cols = cols;
        self.n = n;
        self.d.clear();
        self.qs.clear();
        self.sums.clear();
        self.d.reserve(x.len() / block);
        self.qs.reserve(x.len());
        self.sums.reserve(x.len() / 16);
        for chunk in x.chunks_exact(block) {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            self.d.push(d);
            for group in chunk.chunks_exact(16) {
                let mut sum = 0i16;
                for &v in group {
                    // Ties to even, as SIMD conversions round; |v · id| ≤ 127 by construction.
                    let q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
                    self.qs.push(q);
                    sum += i16::from(q);
                }
                self.sums.push(sum);
            }
        }
    }

    /// Values per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Row `t`.
    pub fn row(&self, t: usize) -> Q8Row<'_> {
        let (nb, ng) = (self.cols / self.block, self.cols / 16);
        Q8Row {
            d: &self.d[t * nb..(t + 1) * nb],
            qs: &self.qs[t * self.cols..(t + 1) * self.cols],
            sums: &self.sums[t * ng..(t + 1) * ng],
        }
    }

    /// Every value back as `d · q`, for tests.
    pub fn dequantize(&self) -> Vec<f32> {
        self.qs.iter().enumerate().map(|(i, &q)| self.d[i / self.block] * f32::from(q)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..512).map(|i| ((i as f32) * 0.731).sin() * (1.0 + (i % 7) as f32)).collect();
        for block in [32, 256] {
            let mut q = Q8Rows::default();
            q.quantize(&x, 2, 256, block);
            let back = q.dequantize();
            for (i, (&a, &b)) in x.iter().zip(&back).enumerate() {
                let step = q.d[i / block];
                assert!((a - b).abs() <= 0.5 * step * 1.0001, "{i}: {a} vs {b}, step {step}");
            }
            let row = q.row(1);
            assert_eq!(row.qs.len(), 256);
            for (g, &s) in row.sums.iter().enumerate() {
                assert_eq!(s, row.qs[16 * g..16 * g + 16].iter().map(|&v| i16::from(v)).sum::<i16>());
            }
        }
    }

    #[test]
    fn a_zero_block_has_zero_scale_and_bytes() {
        let mut q = Q8Rows::default();
        q.quantize(&[0.0; 32], 1, 32, 32);
        assert_eq!(q.row(0).d, &[0.0]);
        assert!(q.row(0).qs.iter().all(|&v| v == 0));
    }
}
