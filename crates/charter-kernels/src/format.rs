//! The GGUF weight formats, as the file stores them, and their dequantization.
//!
//! Every quantized format is a sequence of blocks; a row of a weight matrix is a whole
//! number of blocks. [`dequantize_row`] is the definition of what the bits mean: the
//! dot-product kernels are tested against it, never the other way round. The block
//! layouts are ggml's (`ggml-common.h`), little-endian, with `f16` scales.

use crate::half::{bf16_to_f32, read_f16};

/// A storage format of weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Format {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 32 values: `f16` scale, 4-bit values minus 8.
    Q4_0,
    /// 32 values: `f16` scale and minimum, 4-bit values.
    Q4_1,
    /// 32 values: `f16` scale, 5-bit values minus 16.
    Q5_0,
    /// 32 values: `f16` scale and minimum, 5-bit values.
    Q5_1,
    /// 32 values: `f16` scale, signed bytes.
    Q8_0,
    /// 256 values: 16 groups with 4-bit scales and minimums, 2-bit values.
    Q2K,
    /// 256 values: 16 groups with 6-bit scales, 3-bit values minus 4.
    Q3K,
    /// 256 values: 8 groups with 6-bit scales and minimums, 4-bit values.
    Q4K,
    /// 256 values: 8 groups with 6-bit scales and minimums, 5-bit values.
    Q5K,
    /// 256 values: 16 groups with signed 8-bit scales, 6-bit values minus 32.
    Q6K,
    /// 256 values: `f32` scale, signed bytes, group sums.
    Q8K,
}

/// Values in a k-quant super-block.
pub const QK_K: usize = 256;

impl Format {
    /// Every format, for tests and tables.
    pub const ALL: [Format; 14] = [
        Format::F32,
        Format::F16,
        Format::BF16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q5_1,
        Format::Q8_0,
        Format::Q2K,
        Format::Q3K,
        Format::Q4K,
        Format::Q5K,
        Format::Q6K,
        Format::Q8K,
    ];

    /// Values per block.
    pub const fn block_len(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 | Format::Q8_0 => 32,
            Format::Q2K | Format::Q3K | Format::Q4K | Format::Q5K | Format::Q6K | Format::Q8K => QK_K,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q5_0 => 22,
            Format::Q5_1 => 24,
            Format::Q8_0 => 34,
            Format::Q2K => 84,
            Format::Q3K => 110,
            Format::Q4K => 144,
            Format::Q5K => 176,
            Format::Q6K => 210,
            Format::Q8K => 292,
        }
    }

    /// ggml's name for the format.
    pub const fn name(self) -> &'static str {
        match self {
            Format::F32 => "F32",
            Format::F16 => "F16",
            Format::BF16 => "BF16",
            Format::Q4_0 => "Q4_0",
            Format::Q4_1 => "Q4_1",
            Format::Q5_0 => "Q5_0",
            Format::Q5_1 => "Q5_1",
            Format::Q8_0 => "Q8_0",
            Format::Q2K => "Q2_K",
            Format::Q3K => "Q3_K",
            Format::Q4K => "Q4_K",
            Format::Q5K => "Q5_K",
            Format::Q6K => "Q6_K",
            Format::Q8K => "Q8_K",
        }
    }

    /// Whether the kernels multiply it with quantized activations (every block format)
    /// rather than with `f32` ones (the float formats).
    pub const fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes of one row of `cols` values, or `None` when `cols` is not a whole number of
    /// blocks.
    pub const fn row_bytes(self, cols: usize) -> Option<usize> {
        if cols % self.block_len() != 0 {
            return None;
        }
        Some(cols / self.block_len() * self.block_bytes())
    }
}

/// Decodes one row of `out.len()` values stored in `format`.
///
/// # Panics
/// When `bytes` is not exactly one row of that many values; callers check shapes once,
/// when a matrix is loaded.
pub fn dequantize_row(format: Format, bytes: &[u8], out: &mut [f32]) {
    assert_eq!(Some(bytes.len()), format.row_bytes(out.len()), "{} row of {} values", format.name(), out.len());
    let block = format.block_len();
    for (b, y) in bytes.chunks_exact(format.block_bytes()).zip(out.chunks_exact_mut(block)) {
        match format {
            Format::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Format::F16 => y[0] = read_f16(b, 0),
            Format::BF16 => y[0] = bf16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Format::Q4_0 => legacy(b, y, 0, false, 8.0),
            Format::Q4_1 => legacy(b, y, 0, true, 0.0),
            Format::Q5_0 => legacy(b, y, 4, false, 16.0),
            Format::Q5_1 => legacy(b, y, 4, true, 0.0),
            Format::Q8_0 => {
                let d = read_f16(b, 0);
                for (v, &q) in y.iter_mut().zip(&b[2..34]) {
                    *v = d * f32::from(q as i8);
                }
            }
            Format::Q2K => q2k(b, y),
            Format::Q3K => q3k(b, y),
            Format::Q4K => q45k(b, y, false),
            Format::Q5K => q45k(b, y, true),
            Format::Q6K => q6k(b, y),
            Format::Q8K => {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                for (v, &q) in y.iter_mut().zip(&b[4..260]) {
                    *v = d * f32::from(q as i8);
                }
            }
        }
    }
}

/// The 4- and 5-bit formats of 32: value `i` is the low nibble of byte `i` (the high
/// nibble for `i ≥ 16`), plus bit `i` of `qh` as its fifth bit.
fn legacy(b: &[u8], y: &mut [f32], qh_bytes: usize, has_min: bool, offset: f32) {
    let d = read_f16(b, 0);
    let (m, qh_at) = if has_min { (read_f16(b, 2), 4) } else { (0.0, 2) };
    let qh = if qh_bytes == 4 { u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]) } else { 0 };
    let qs = &b[qh_at + qh_bytes..qh_at + qh_bytes + 16];
    for i in 0..32 {
        let nibble = if i < 16 { qs[i] & 0x0f } else { qs[i - 16] >> 4 };
        let high = if qh_bytes == 4 { (((qh >> i) & 1) << 4) as u8 } else { 0 };
        y[i] = d * (f32::from(nibble | high) - offset) + m;
    }
}

/// The 6-bit scale and minimum of group `j` (0..8) of a Q4_K or Q5_K block.
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

fn q45k(b: &[u8], y: &mut [f32], five: bool) {
    let d = read_f16(b, 0);
    let dmin = read_f16(b, 2);
    let scales = &b[4..16];
    let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
    // Four chunks of 64 values: 32 low nibbles (group 2c), then 32 high ones (2c + 1).
    for c in 0..4 {
        let q = &qs[32 * c..32 * c + 32];
        for half in 0..2 {
            let g = 2 * c + half;
            let (sc, m) = scale_min_k4(g, scales);
            let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
            for l in 0..32 {
                let low = if half == 0 { q[l] & 0x0f } else { q[l] >> 4 };
                let high = if five { ((qh[l] >> g) & 1) << 4 } else { 0 };
                y[32 * g + l] = dl * f32::from(low | high) - ml;
            }
        }
    }
}

fn q6k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = read_f16(b, 208);
    for n in 0..2 {
        let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &scales[8 * n..]);
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0f) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, &q) in q.iter().enumerate() {
                let s = f32::from(sc[is + 2 * k] as i8);
                y[128 * n + 32 * k + l] = d * s * f32::from(q as i8 - 32);
            }
        }
    }
}

fn q2k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let d = read_f16(b, 80);
    let dmin = read_f16(b, 82);
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in 0..4 {
            for half in 0..2 {
                let g = 8 * n + 2 * shift + half;
                let (dl, ml) = (d * f32::from(scales[g] & 0x0f), dmin * f32::from(scales[g] >> 4));
                for l in 0..16 {
                    let v = (q[16 * half + l] >> (2 * shift)) & 3;
                    y[16 * g + l] = dl * f32::from(v) - ml;
                }
            }
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, unpacked from its 12 bytes.
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0x0f } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

fn q3k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3k_scales(&b[96..108]);
    let d = read_f16(b, 108);
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in 0..4 {
            let bit = 4 * n + shift;
            for half in 0..2 {
                let g = 8 * n + 2 * shift + half;
                let dl = d * f32::from(scales[g]);
                for l in 0..16 {
                    let i = 16 * half + l;
                    let low = (q[i] >> (2 * shift)) & 3;
                    let high = if (hmask[i] >> bit) & 1 == 1 { 0 } else { 4 };
                    y[16 * g + l] = dl * f32::from(low as i8 - high);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q3k_scales_match_ggmls_word_shuffle() {
        // ggml unpacks the scales with 32-bit masks; the byte-wise form above must agree.
        let s: Vec<u8> = (0..12).map(|i| (i * 37 + 11) as u8).collect();
        let mut aux = [0u32; 4];
        for (i, w) in aux.iter_mut().take(3).enumerate() {
            *w = u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
        }
        let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
        let tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
        aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
        aux[0] = (aux[0] & k2) | ((tmp & k1) << 4);
        aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
        let expected: Vec<i8> = aux.iter().flat_map(|w| w.to_le_bytes()).map(|b| b as i8 - 32).collect();
        assert_eq!(q3k_scales(&s).to_vec(), expected);
    }

    #[test]
    fn row_bytes_needs_whole_blocks() {
        assert_eq!(Format::Q4_1.row_bytes(576), Some(18 * 20));
        assert_eq!(Format::Q4K.row_bytes(576), None);
        assert_eq!(Format::Q6K.row_bytes(512), Some(420));
        assert_eq!(Format::F16.row_bytes(3), Some(6));
    }
}
