//! x86-64 AVX2 kernels: `pmaddubsw` multiplies unsigned weights with signed activations
//! (the same split as relaxed SIMD), `pmaddwd` widens to 32 bits. Float steps run on
//! four SSE lanes in the scalar order, so results equal the scalar kernels' bit for bit.

use std::arch::x86_64::*;

use super::{Legacy, Matrix, Q40, Q41, Q50, Q51, Q80};
use super::scalar::{self, LANES};
use crate::format::Format;
use crate::half::{F16_RESCALE, read_f16_finite};
use crate::q8::{Q8Row, Q8Rows};


/// `Σ u·a` of 32 unsigned weights (`< 128`) and 32 signed activations, as `i32x8`.
#[inline(always)]
unsafe fn dot32(u: __m256i, a: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)) }
}

#[inline(always)]
unsafe fn load256(p: *const u8) -> __m256i {
    // SAFETY: the caller passes 32 readable bytes.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

#[inline(always)]
unsafe fn load128(p: *const u8) -> __m128i {
    // SAFETY: the caller passes 16 readable bytes.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// The 32 values of a 4-bit block in order (low nibbles, then high nibbles).
#[inline(always)]
unsafe fn nibbles(qs: __m128i) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let f = _mm_set1_epi8(0x0f);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), f), _mm_and_si128(qs, f))
    }
}

/// Bit `i` of `qh` as byte `i` equal to `0x10`, for the 32 values of a Q5 block.
#[inline(always)]
unsafe fn fifth_bits(qh: u32) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let v = _mm256_set1_epi32(qh as i32);
        let spread = _mm256_shuffle_epi8(
            v,
            _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0x0000_0000_0000_0000),
        );
        let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bits), bits), _mm256_set1_epi8(0x10))
    }
}

/// The weights of one legacy block as the products read them: 32 unsigned values
/// with their fifth bits, or the 32 signed bytes of Q8_0.
#[inline(always)]
unsafe fn unpack<L: Legacy>(blk: *const u8) -> __m256i {
    // SAFETY: `blk` points at a whole block; AVX2 is enabled in every caller.
    unsafe {
        if L::SIGNED {
            return load256(blk.add(L::QS));
        }
        let u = nibbles(load128(blk.add(L::QS)));
        match L::QH {
            Some(at) => _mm256_or_si256(u, fifth_bits(blk.add(at).cast::<u32>().read_unaligned())),
            None => u,
        }
    }
}

/// `Σ q·a` of one legacy block (before the offset), as `i32x8` partial sums.
#[inline(always)]
unsafe fn block_dot<L: Legacy>(u: __m256i, a: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        if L::SIGNED {
            return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(a, u)), _mm256_set1_epi16(1));
        }
        dot32(u, a)
    }
}

#[inline(always)]
unsafe fn fold(v: __m256i) -> __m128i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe { _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)) }
}

#[inline(always)]
unsafe fn hsum(v: __m256i) -> i32 {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let x = fold(v);
        let x = _mm_hadd_epi32(x, x);
        _mm_cvtsi128_si32(_mm_hadd_epi32(x, x))
    }
}

/// Four `f16` block scales, `stride` bytes apart, as `f32x4` (as `f16_to_f32_finite`).
#[inline(always)]
unsafe fn gather_f16(p: *const u8, stride: usize) -> __m128 {
    // SAFETY: the caller passes four readable `u16`s; SSE4.1 is enabled in every caller.
    unsafe {
        let read = |k: usize| i32::from(p.add(k * stride).cast::<u16>().read_unaligned());
        let h = _mm_set_epi32(read(3), read(2), read(1), read(0));
        let sign = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16);
        let mag = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7fff)), 13);
        _mm_mul_ps(_mm_castsi128_ps(_mm_or_si128(sign, mag)), _mm_set1_ps(F16_RESCALE))
    }
}

/// Four rows from `p` times the `T` activation rows from `t0`: block `b` of row `r` is
/// at `p + b·bs + r·rs` (see `Matrix::tile_strides`). Each block is unpacked and its
/// four scales converted once, for all `T` tokens.
#[inline(always)]
unsafe fn legacy_tile<L: Legacy, const T: usize>(p: *const u8, (rs, bs): (usize, usize), nb: usize, x: &Q8Rows, t0: usize) -> [__m128; T] {
    let rows: [Q8Row<'_>; T] = core::array::from_fn(|t| x.row(t0 + t));
    // SAFETY: AVX2 and SSE4.1 are enabled in every caller.
    let mut acc = [unsafe { _mm_setzero_ps() }; T];
    for b in 0..nb {
        // SAFETY: block `b` of four rows lies inside the matrix; the activation rows have
        // 32 bytes per block.
        unsafe {
            let blk = p.add(b * bs);
            let u = [0, 1, 2, 3].map(|r| unpack::<L>(blk.add(r * rs)));
            let dw = gather_f16(blk, rs);
            let m = L::MIN.map(|at| gather_f16(blk.add(at), rs));
            for (a, acc) in rows.iter().zip(acc.iter_mut()) {
                let av = load256(a.qs.as_ptr().add(32 * b).cast());
                let s = scalar::sum32(a, b);
                let da = _mm_set1_ps(*a.d.get_unchecked(b));
                let d = u.map(|u| fold(block_dot::<L>(u, av)));
                let mut i = _mm_hadd_epi32(_mm_hadd_epi32(d[0], d[1]), _mm_hadd_epi32(d[2], d[3]));
                if L::OFFSET != 0 {
                    i = _mm_sub_epi32(i, _mm_set1_epi32(L::OFFSET * s));
                }
                let step = _mm_mul_ps(_mm_mul_ps(dw, da), _mm_cvtepi32_ps(i));
                *acc = match m {
                    None => _mm_add_ps(*acc, step),
                    Some(m) => _mm_add_ps(*acc, _mm_add_ps(step, _mm_mul_ps(_mm_mul_ps(m, da), _mm_set1_ps(s as f32)))),
                };
            }
        }
    }
    acc
}

#[target_feature(enable = "avx2,sse4.1")]
unsafe fn legacy_row<L: Legacy>(row: &[u8], a: &Q8Row<'_>) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(L::BB).enumerate() {
        // SAFETY: `blk` is a whole block, and the activation row has 32 bytes per block.
        let i = unsafe { hsum(block_dot::<L>(unpack::<L>(blk.as_ptr()), load256(a.qs.as_ptr().add(32 * b).cast()))) };
        let s = scalar::sum32(a, b);
        let dw = read_f16_finite(blk, 0);
        acc = match L::MIN {
            None => scalar::step_offset(acc, dw, a.d[b], i - L::OFFSET * s),
            Some(at) => scalar::step_min(acc, dw, read_f16_finite(blk, at), a.d[b], i, s),
        };
    }
    acc
}

#[target_feature(enable = "avx2,sse4.1")]
unsafe fn legacy<L: Legacy>(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    let nb = w.cols() / 32;
    let strides = w.tile_strides();
    legacy_by_tiles!(w, x, out,
        tile: |p, t0, T| legacy_tile::<L, T>(p, strides, nb, x, t0),
        store: |ptr, v| _mm_storeu_ps(ptr, v),
        row: |row, a| legacy_row::<L>(row, &a),
    );
}

/// `Σ w_k · sums[k]` over a block's 16 activation sums, with the 16-bit weights in one
/// vector (exact: |sum| ≤ 2032 and |w| ≤ 128).
#[inline(always)]
unsafe fn sums_dot(sums: *const i16, w: __m256i) -> i32 {
    // SAFETY: the caller passes 16 readable sums; AVX2 is enabled in every caller.
    unsafe { hsum(_mm256_madd_epi16(_mm256_loadu_si256(sums.cast()), w)) }
}

/// One Q4_K or Q5_K row times `T` activation rows: each 64-value chunk is unpacked
/// once for all of them, and the scales once per block.
#[inline(always)]
unsafe fn q45k_rows<const FIVE: bool, const T: usize>(row: &[u8], a: &[Q8Row<'_>; T]) -> [f32; T] {
    let mut acc = [0f32; T];
    let bb = if FIVE { 176 } else { 144 };
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let sm = scalar::k4_scale_bytes(blk);
        // SAFETY: the block is whole; its activations are 256 bytes at 256·b; AVX2 is
        // enabled in every caller.
        unsafe {
            // Each group's minimum twice, as 16-bit lanes, against the 16 per-16 sums.
            let mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(
                _mm_loadu_si128(sm.as_ptr().cast()),
                _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8),
            ));
            let p = blk.as_ptr();
            let qs = p.add(if FIVE { 48 } else { 16 });
            let qh = if FIVE { load256(p.add(16)) } else { _mm256_setzero_si256() };
            let f = _mm256_set1_epi8(0x0f);
            let one = _mm256_set1_epi8(1);
            let mut isum = [_mm256_setzero_si256(); T];
            for c in 0..4 {
                let q = load256(qs.add(32 * c));
                let mut lo = _mm256_and_si256(q, f);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), f);
                if FIVE {
                    let g = _mm_cvtsi32_si128(2 * c as i32);
                    let g1 = _mm_cvtsi32_si128(2 * c as i32 + 1);
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, g), one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, g1), one), 4));
                }
                let (s0, s1) = (_mm256_set1_epi16(i16::from(sm[2 * c])), _mm256_set1_epi16(i16::from(sm[2 * c + 1])));
                for (x, isum) in a.iter().zip(isum.iter_mut()) {
                    let qa = x.qs.as_ptr().add(256 * b + 64 * c).cast::<u8>();
                    let pl = _mm256_maddubs_epi16(lo, load256(qa));
                    let ph = _mm256_maddubs_epi16(hi, load256(qa.add(32)));
                    *isum = _mm256_add_epi32(*isum, _mm256_add_epi32(_mm256_madd_epi16(pl, s0), _mm256_madd_epi16(ph, s1)));
                }
            }
            let (d, dmin) = (read_f16_finite(blk, 0), read_f16_finite(blk, 2));
            for ((x, acc), isum) in a.iter().zip(acc.iter_mut()).zip(isum) {
                let msum = sums_dot(x.sums.as_ptr().add(16 * b), mins);
                *acc = scalar::step_k_min(*acc, d, dmin, x.d[b], hsum(isum), msum);
            }
        }
    }
    acc
}

/// One Q6_K row times `T` activation rows, each half-block unpacked once for all of them.
#[inline(always)]
unsafe fn q6k_rows<const T: usize>(row: &[u8], a: &[Q8Row<'_>; T]) -> [f32; T] {
    let mut acc = [0f32; T];
    for (b, blk) in row.chunks_exact(210).enumerate() {
        // SAFETY: the block is whole; its activations are 256 bytes at 256·b; AVX2 is
        // enabled in every caller.
        unsafe {
            let p = blk.as_ptr();
            let f = _mm256_set1_epi8(0x0f);
            let hi2 = _mm256_set1_epi8(0x30);
            let mut isum = [_mm256_setzero_si256(); T];
            for n in 0..2 {
                let ql = p.add(64 * n);
                let qh = load256(p.add(128 + 32 * n));
                let (l0, l1) = (load256(ql), load256(ql.add(32)));
                // The two high bits of each value moved to bits 4-5 where they are.
                let u = [
                    _mm256_or_si256(_mm256_and_si256(l0, f), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2)),
                    _mm256_or_si256(_mm256_and_si256(l1, f), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), f), _mm256_and_si256(qh, hi2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), f), _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2)),
                ];
                for (k, &u) in u.iter().enumerate() {
                    // 32 values: groups 8n + 2k and 8n + 2k + 1, each with its scale.
                    let g = 8 * n + 2 * k;
                    let sc = _mm256_set_m128i(
                        _mm_set1_epi16(i16::from(blk[192 + g + 1] as i8)),
                        _mm_set1_epi16(i16::from(blk[192 + g] as i8)),
                    );
                    for (x, isum) in a.iter().zip(isum.iter_mut()) {
                        let prod = _mm256_maddubs_epi16(u, load256(x.qs.as_ptr().add(256 * b + 16 * g).cast()));
                        *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(prod, sc));
                    }
                }
            }
            let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192).cast()));
            let d = read_f16_finite(blk, 208);
            for ((x, acc), isum) in a.iter().zip(acc.iter_mut()).zip(isum) {
                let offset = sums_dot(x.sums.as_ptr().add(16 * b), scales);
                *acc = scalar::step_offset(*acc, d, x.d[b], hsum(isum) - 32 * offset);
            }
        }
    }
    acc
}

#[target_feature(enable = "avx2,sse4.1")]
unsafe fn k_quants(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    match w.format() {
        Format::Q4K => rows_by_tokens!(w, x, out, |row, a| q45k_rows::<false, _>(row, &a)),
        Format::Q5K => rows_by_tokens!(w, x, out, |row, a| q45k_rows::<true, _>(row, &a)),
        _ => rows_by_tokens!(w, x, out, |row, a| q6k_rows::<_>(row, &a)),
    }
}

#[inline(always)]
fn per_row(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32], f: impl Fn(&[u8], &Q8Row<'_>) -> f32) {
    let rows = w.rows();
    for r in 0..rows {
        let row = w.row(r);
        for t in 0..x.n() {
            out[t * rows + r] = f(row, &x.row(t));
        }
    }
}

/// Quantized weights times quantized activations.
///
/// # Safety
/// The processor must have AVX2 and SSE4.1.
pub(crate) unsafe fn matmul_q(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    // SAFETY (every arm): the caller checked the processor; shapes are checked by
    // `Matrix::new` and `matmul_q`.
    unsafe {
        match w.format() {
            Format::Q4_0 => legacy::<Q40>(w, x, out),
            Format::Q4_1 => legacy::<Q41>(w, x, out),
            Format::Q5_0 => legacy::<Q50>(w, x, out),
            Format::Q5_1 => legacy::<Q51>(w, x, out),
            Format::Q8_0 => legacy::<Q80>(w, x, out),
            Format::Q4K | Format::Q5K | Format::Q6K => k_quants(w, x, out),
            format => per_row(w, x, out, |row, a| scalar::dot_q(format, row, *a)),
        }
    }
}

/// Sixteen weights from value `i` of a float-format row, as two `f32x8`.
#[inline(always)]
unsafe fn float16(format: Format, row: *const u8, i: usize) -> [__m256; 2] {
    // SAFETY: the caller passes a row with 16 values from `i`; F16C comes with AVX2 on
    // every processor that has AVX2, and the callers enable it.
    unsafe {
        match format {
            Format::F32 => [_mm256_loadu_ps(row.add(4 * i).cast()), _mm256_loadu_ps(row.add(4 * i + 32).cast())],
            Format::F16 => [_mm256_cvtph_ps(load128(row.add(2 * i))), _mm256_cvtph_ps(load128(row.add(2 * i + 16)))],
            _ => {
                let widen = |h: __m128i| _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
                [widen(load128(row.add(2 * i))), widen(load128(row.add(2 * i + 16)))]
            }
        }
    }
}

/// Float weights times `f32` activations, in the canonical 16-lane order.
///
/// # Safety
/// The processor must have AVX2, SSE4.1 and F16C.
#[target_feature(enable = "avx2,sse4.1,f16c")]
pub(crate) unsafe fn matmul_f(w: &Matrix<'_>, x: &[f32], n: usize, out: &mut [f32]) {
    let (rows, cols) = (w.rows(), w.cols());
    let body = cols - cols % LANES;
    for r in 0..rows {
        let row = w.row(r);
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            // SAFETY: values i..i+16 exist in the row and in `xt`.
            let mut s = unsafe {
                let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for i in (0..body).step_by(LANES) {
                    let wv = float16(w.format(), row.as_ptr(), i);
                    a = _mm256_add_ps(a, _mm256_mul_ps(wv[0], _mm256_loadu_ps(xt.as_ptr().add(i))));
                    b = _mm256_add_ps(b, _mm256_mul_ps(wv[1], _mm256_loadu_ps(xt.as_ptr().add(i + 8))));
                }
                // Lanes j of (a.lo + a.hi) + (b.lo + b.hi), then (v0 + v2) + (v1 + v3).
                let fa = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
                let fb = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
                let v = _mm_add_ps(fa, fb);
                let t2 = _mm_add_ps(v, _mm_movehl_ps(v, v));
                _mm_cvtss_f32(t2) + _mm_cvtss_f32(_mm_shuffle_ps(t2, t2, 1))
            };
            for i in body..cols {
                let mut one = [0f32; 1];
                let bb = w.format().block_bytes();
                crate::format::dequantize_row(w.format(), &row[i * bb..(i + 1) * bb], &mut one);
                s += one[0] * xt[i];
            }
            out[t * rows + r] = s;
        }
    }
}
