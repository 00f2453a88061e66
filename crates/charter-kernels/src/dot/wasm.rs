//! WebAssembly SIMD128 kernels, and the same kernels over relaxed SIMD's integer dot
//! product (`i32x4.relaxed_dot_i8x16_i7x16_add_s`).
//!
//! The relaxed dot product is exact on every engine only when its second operand is in
//! `0..128`, so weights are always passed there as unsigned values (nibbles, 5- or
//! 6-bit values, or a signed byte split into its low 7 bits and its top bit), and the
//! activations, signed, go first. Offsets and minimums come out of the loop through the
//! activation block sums.
//!
//! Legacy 32-value formats are computed four rows at a time: the four rows' integer sums
//! are transposed into one vector, so their scales and float steps are vector operations
//! with one row per lane. k-quants keep one row at a time, since their float step
//! happens once per 256 values.

use core::arch::wasm32::*;

use super::{Legacy, Matrix, Q40, Q41, Q50, Q51, Q80};
use super::scalar::{self, LANES};
use crate::format::Format;
use crate::half::{F16_RESCALE, read_f16_finite};
use crate::q8::{Q8Row, Q8Rows};

/// An integer dot product of 16 unsigned weights (`< 128`) with 16 signed activations.
pub(crate) trait Dot {
    /// 16 activations, prepared once and used with many weight rows.
    type A: Copy;
    /// Prepares 16 activation bytes.
    fn prep(a: v128) -> Self::A;
    /// `acc + partial sums of u·a`, as `i32x4`.
    fn dot(u: v128, a: Self::A, acc: v128) -> v128;
    /// `acc + partial sums of u0·a0 + u1·a1` for weights below 32 (one 32-value block).
    #[inline(always)]
    fn dot2(u0: v128, a0: Self::A, u1: v128, a1: Self::A, acc: v128) -> v128 {
        Self::dot(u1, a1, Self::dot(u0, a0, acc))
    }
    /// `acc + scale · (partial sums of u0·a0 + u1·a1)` for weights below 64.
    #[inline(always)]
    fn dot2_scaled(u0: v128, a0: Self::A, u1: v128, a1: Self::A, scale: i16, acc: v128) -> v128 {
        i32x4_add(acc, i32x4_mul(Self::dot(u1, a1, Self::dot(u0, a0, i32x4_splat(0))), i32x4_splat(i32::from(scale))))
    }
    /// `acc + scale · (partial sums of u·a)` for weights below 64.
    #[inline(always)]
    fn dot_scaled(u: v128, a: Self::A, scale: i16, acc: v128) -> v128 {
        i32x4_add(acc, i32x4_mul(Self::dot(u, a, i32x4_splat(0)), i32x4_splat(i32::from(scale))))
    }
    /// `acc + partial sums of w·a` for signed weights, where this product has a form
    /// faster than [`Dot::dot`] on unsigned parts for them: always (SIMD128), or when no
    /// weight is −128 (`symmetric`, relaxed SIMD); `None` otherwise.
    fn dot_signed(w: v128, a: Self::A, acc: v128, symmetric: bool) -> Option<v128>;
}

/// SIMD128: widen to 16 bits, `i32x4.dot_i16x8_s`.
#[derive(Clone, Copy)]
pub(crate) struct Plain;

impl Dot for Plain {
    type A = (v128, v128);

    #[inline(always)]
    fn prep(a: v128) -> (v128, v128) {
        (i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a))
    }

    #[inline(always)]
    fn dot(u: v128, a: (v128, v128), acc: v128) -> v128 {
        let lo = i32x4_dot_i16x8(u16x8_extend_low_u8x16(u), a.0);
        let hi = i32x4_dot_i16x8(u16x8_extend_high_u8x16(u), a.1);
        i32x4_add(acc, i32x4_add(lo, hi))
    }

    #[inline(always)]
    fn dot_signed(w: v128, a: (v128, v128), acc: v128, _: bool) -> Option<v128> {
        // Signed bytes widen as they are, −128 included: no split needed.
        let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), a.0);
        let hi = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), a.1);
        Some(i32x4_add(acc, i32x4_add(lo, hi)))
    }
}

/// Relaxed SIMD: one instruction per 16 products.
#[cfg(feature = "relaxed-simd")]
#[derive(Clone, Copy)]
pub(crate) struct Relaxed;

/// Activations for relaxed SIMD: the bytes, their sign masks and their magnitudes.
#[cfg(feature = "relaxed-simd")]
#[derive(Clone, Copy)]
pub(crate) struct Signed {
    a: v128,
    negative: v128,
    magnitude: v128,
}

#[cfg(feature = "relaxed-simd")]
impl Dot for Relaxed {
    type A = Signed;

    #[inline(always)]
    fn prep(a: v128) -> Signed {
        // |a| ≤ 127: activations are quantized to −127..=127.
        Signed { a, negative: i8x16_lt(a, i8x16_splat(0)), magnitude: i8x16_abs(a) }
    }

    #[inline(always)]
    fn dot(u: v128, a: Signed, acc: v128) -> v128 {
        i32x4_relaxed_dot_i8x16_i7x16_add(a.a, u, acc)
    }

    #[inline(always)]
    fn dot2(u0: v128, a0: Signed, u1: v128, a1: Signed, acc: v128) -> v128 {
        // Pair sums in 16 bits: |2 · 31 · 127| twice is below 2^15, so adding the two
        // halves before widening is exact.
        let pairs = i16x8_add(i16x8_relaxed_dot_i8x16_i7x16(a0.a, u0), i16x8_relaxed_dot_i8x16_i7x16(a1.a, u1));
        i32x4_add(acc, i32x4_extadd_pairwise_i16x8(pairs))
    }

    #[inline(always)]
    fn dot2_scaled(u0: v128, a0: Signed, u1: v128, a1: Signed, scale: i16, acc: v128) -> v128 {
        // |2 · 63 · 127| twice is below 2^15; the scale's multiply rides on the widening.
        let pairs = i16x8_add(i16x8_relaxed_dot_i8x16_i7x16(a0.a, u0), i16x8_relaxed_dot_i8x16_i7x16(a1.a, u1));
        i32x4_add(acc, i32x4_dot_i16x8(pairs, i16x8_splat(scale)))
    }

    #[inline(always)]
    fn dot_scaled(u: v128, a: Signed, scale: i16, acc: v128) -> v128 {
        i32x4_add(acc, i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(a.a, u), i16x8_splat(scale)))
    }

    #[inline(always)]
    fn dot_signed(w: v128, a: Signed, acc: v128, symmetric: bool) -> Option<v128> {
        // w·a = (w·sign a)·|a|: |a| is a valid 7-bit operand, and w·sign a is a byte when
        // w ≠ −128. (x ^ m) − m negates x where the mask m is all ones.
        symmetric.then(|| {
            let signed = i8x16_sub(v128_xor(w, a.negative), a.negative);
            i32x4_relaxed_dot_i8x16_i7x16_add(signed, a.magnitude, acc)
        })
    }
}


#[inline(always)]
unsafe fn load(p: *const u8) -> v128 {
    // SAFETY: the caller passes 16 readable bytes; v128.load has no alignment need.
    unsafe { v128_load(p.cast::<v128>()) }
}

#[inline(always)]
unsafe fn load_i8(p: *const i8) -> v128 {
    // SAFETY: as `load`.
    unsafe { v128_load(p.cast::<v128>()) }
}

/// The fifth bits of a Q5 block as `0x10` bytes: (values 0..16, values 16..32).
#[inline(always)]
fn fifth_bits(qh: u32) -> (v128, v128) {
    let v = u32x4_splat(qh);
    let low = i8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(v, v);
    let high = i8x16_shuffle::<2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3>(v, v);
    let bits = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    let to_bit = |x: v128| v128_and(i8x16_eq(v128_and(x, bits), bits), u8x16_splat(0x10));
    (to_bit(low), to_bit(high))
}

/// The weights of one legacy block as the products read them: unsigned values with
/// their fifth bits (0..16 first, then 16..32), or the 32 signed bytes of Q8_0.
#[inline(always)]
unsafe fn unpack<L: Legacy>(blk: *const u8) -> [v128; 2] {
    // SAFETY: `blk` points at a whole block of `L::BB` bytes.
    unsafe {
        if L::SIGNED {
            return [load(blk.add(L::QS)), load(blk.add(L::QS + 16))];
        }
        let qs = load(blk.add(L::QS));
        let mut lo = v128_and(qs, u8x16_splat(0x0f));
        let mut hi = u8x16_shr(qs, 4);
        if let Some(at) = L::QH {
            let (bl, bh) = fifth_bits(blk.add(at).cast::<u32>().read_unaligned());
            lo = v128_or(lo, bl);
            hi = v128_or(hi, bh);
        }
        [lo, hi]
    }
}

/// `Σ q·a` of one legacy block (before the offset), as partial sums; `s` is the sum of
/// the activations, `symmetric` marks a Q8_0 matrix without −128 weights.
#[inline(always)]
fn block_dot<D: Dot, L: Legacy>(u: [v128; 2], a: &[D::A; 2], s: i32, symmetric: bool) -> v128 {
    let zero = i32x4_splat(0);
    if !L::SIGNED {
        return D::dot2(u[0], a[0], u[1], a[1], zero);
    }
    if let Some(first) = D::dot_signed(u[0], a[0], zero, symmetric) {
        if let Some(both) = D::dot_signed(u[1], a[1], first, symmetric) {
            return both;
        }
    }
    // As unsigned bytes, w + 128 = 128·top + low7; Σ w·a = Σ low7·a + 128·Σ top·a − 128·Σ a.
    let (u0, u1) = (v128_xor(u[0], u8x16_splat(0x80)), v128_xor(u[1], u8x16_splat(0x80)));
    let low7 = u8x16_splat(0x7f);
    let low = D::dot(v128_and(u1, low7), a[1], D::dot(v128_and(u0, low7), a[0], zero));
    let top = D::dot(u8x16_shr(u1, 7), a[1], D::dot(u8x16_shr(u0, 7), a[0], zero));
    i32x4_sub(i32x4_add(low, i32x4_shl(top, 7)), i32x4(128 * s, 0, 0, 0))
}

/// The prepared activations of block `b` of a row.
#[inline(always)]
unsafe fn acts<D: Dot>(a: &Q8Row<'_>, b: usize) -> [D::A; 2] {
    // SAFETY: the row has 32 bytes per block.
    unsafe {
        let qa = a.qs.as_ptr().add(32 * b);
        [D::prep(load_i8(qa)), D::prep(load_i8(qa.add(16)))]
    }
}

/// Four `i32x4` partial sums to one vector of their four totals.
#[inline(always)]
fn transpose_sum(d: [v128; 4]) -> v128 {
    let s01 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(d[0], d[1]), i32x4_shuffle::<2, 6, 3, 7>(d[0], d[1]));
    let s23 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(d[2], d[3]), i32x4_shuffle::<2, 6, 3, 7>(d[2], d[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(s01, s23), i32x4_shuffle::<2, 3, 6, 7>(s01, s23))
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    let t = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    i32x4_extract_lane::<0>(t).wrapping_add(i32x4_extract_lane::<1>(t))
}

/// The `f16`s at `p`, `p + stride`, `p + 2·stride`, `p + 3·stride`, as `f32x4`, converted
/// as [`crate::half::f16_to_f32_finite`] does.
#[inline(always)]
unsafe fn gather_f16(p: *const u8, stride: usize) -> v128 {
    // SAFETY: the caller passes four readable `u16`s.
    let h = unsafe {
        let mut v = i16x8_splat(0);
        v = v128_load16_lane::<0>(v, p.cast::<u16>());
        v = v128_load16_lane::<1>(v, p.add(stride).cast::<u16>());
        v = v128_load16_lane::<2>(v, p.add(2 * stride).cast::<u16>());
        v = v128_load16_lane::<3>(v, p.add(3 * stride).cast::<u16>());
        u32x4_extend_low_u16x8(v)
    };
    let bits = v128_or(i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16), i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13));
    f32x4_mul(bits, f32x4_splat(F16_RESCALE))
}

/// Four rows from `p` times the `T` activation rows from `t0`: block `b` of row `r` is
/// at `p + b·bs + r·rs` (see [`Matrix::tile_strides`]). Each block is unpacked and its
/// four scales converted once, for all `T` tokens: prefill is matrix-matrix work.
#[inline(always)]
unsafe fn legacy_tile<D: Dot, L: Legacy, const T: usize>(
    p: *const u8,
    (rs, bs): (usize, usize),
    nb: usize,
    x: &Q8Rows,
    t0: usize,
    symmetric: bool,
) -> [v128; T] {
    let rows: [Q8Row<'_>; T] = core::array::from_fn(|t| x.row(t0 + t));
    let mut acc = [f32x4_splat(0.0); T];
    for b in 0..nb {
        // SAFETY: block `b` of four rows lies inside the matrix; the activation rows have
        // 32 bytes per block.
        unsafe {
            let blk = p.add(b * bs);
            let u = [0, 1, 2, 3].map(|r| unpack::<L>(blk.add(r * rs)));
            let dw = gather_f16(blk, rs);
            let m = L::MIN.map(|at| gather_f16(blk.add(at), rs));
            for (a, acc) in rows.iter().zip(acc.iter_mut()) {
                let x = acts::<D>(a, b);
                let s = scalar::sum32(a, b);
                let da = f32x4_splat(*a.d.get_unchecked(b));
                let mut i = transpose_sum(u.map(|u| block_dot::<D, L>(u, &x, s, symmetric)));
                if L::OFFSET != 0 {
                    i = i32x4_sub(i, i32x4_splat(L::OFFSET * s));
                }
                let step = f32x4_mul(f32x4_mul(dw, da), f32x4_convert_i32x4(i));
                *acc = match m {
                    None => f32x4_add(*acc, step),
                    Some(m) => f32x4_add(*acc, f32x4_add(step, f32x4_mul(f32x4_mul(m, da), f32x4_splat(s as f32)))),
                };
            }
        }
    }
    acc
}

/// One row times one activation row, with the scalar float steps.
#[inline(always)]
unsafe fn legacy_row<D: Dot, L: Legacy>(row: &[u8], a: &Q8Row<'_>, symmetric: bool) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(L::BB).enumerate() {
        let s = scalar::sum32(a, b);
        // SAFETY: `blk` is a whole block, and the activation row has 32 bytes per block.
        let i = unsafe { hsum_i32(block_dot::<D, L>(unpack::<L>(blk.as_ptr()), &acts::<D>(a, b), s, symmetric)) };
        let dw = read_f16_finite(blk, 0);
        acc = match L::MIN {
            None => scalar::step_offset(acc, dw, a.d[b], i - L::OFFSET * s),
            Some(at) => scalar::step_min(acc, dw, read_f16_finite(blk, at), a.d[b], i, s),
        };
    }
    acc
}

#[inline(always)]
fn legacy<D: Dot, L: Legacy>(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    let nb = w.cols() / 32;
    let symmetric = w.is_symmetric_q8();
    let strides = w.tile_strides();
    legacy_by_tiles!(w, x, out,
        tile: |p, t0, T| legacy_tile::<D, L, T>(p, strides, nb, x, t0, symmetric),
        store: |ptr, v| v128_store(ptr.cast::<v128>(), v),
        row: |row, a| legacy_row::<D, L>(row, &a, symmetric),
    );
}

/// One Q4_K or Q5_K row times `T` activation rows: each 64-value chunk is unpacked
/// once for all of them, and the scales once per block.
#[inline(always)]
unsafe fn q45k_rows<D: Dot, const FIVE: bool, const T: usize>(row: &[u8], a: &[Q8Row<'_>; T]) -> [f32; T] {
    let mut acc = [0f32; T];
    let bb = if FIVE { 176 } else { 144 };
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let sm = scalar::k4_scale_bytes(blk);
        // SAFETY: `sm` has 16 bytes; the minimums are its second half.
        let mins = unsafe { load(sm.as_ptr()) };
        let zero = i8x16_splat(0);
        // Each group's minimum twice, as 16-bit lanes, against the 16 per-16 sums.
        let m_lo = i8x16_shuffle::<8, 16, 8, 16, 9, 16, 9, 16, 10, 16, 10, 16, 11, 16, 11, 16>(mins, zero);
        let m_hi = i8x16_shuffle::<12, 16, 12, 16, 13, 16, 13, 16, 14, 16, 14, 16, 15, 16, 15, 16>(mins, zero);
        let p = blk.as_ptr();
        let mut isum = [i32x4_splat(0); T];
        // SAFETY: the block is whole; its activations are 256 bytes at 256·b.
        unsafe {
            let qs = p.add(if FIVE { 48 } else { 16 });
            let (qh0, qh1) = if FIVE { (load(p.add(16)), load(p.add(32))) } else { (i8x16_splat(0), i8x16_splat(0)) };
            for c in 0..4 {
                let (q0, q1) = (load(qs.add(32 * c)), load(qs.add(32 * c + 16)));
                let mut u = [v128_and(q0, u8x16_splat(0x0f)), v128_and(q1, u8x16_splat(0x0f)), u8x16_shr(q0, 4), u8x16_shr(q1, 4)];
                if FIVE {
                    let bit = |qh: v128, g: u32| i8x16_shl(v128_and(u8x16_shr(qh, g), u8x16_splat(1)), 4);
                    let g = 2 * c as u32;
                    u[0] = v128_or(u[0], bit(qh0, g));
                    u[1] = v128_or(u[1], bit(qh1, g));
                    u[2] = v128_or(u[2], bit(qh0, g + 1));
                    u[3] = v128_or(u[3], bit(qh1, g + 1));
                }
                let (s0, s1) = (i16::from(sm[2 * c]), i16::from(sm[2 * c + 1]));
                for (x, isum) in a.iter().zip(isum.iter_mut()) {
                    let qa = x.qs.as_ptr().add(256 * b + 64 * c);
                    let (a0, a1) = (D::prep(load_i8(qa)), D::prep(load_i8(qa.add(16))));
                    let (a2, a3) = (D::prep(load_i8(qa.add(32))), D::prep(load_i8(qa.add(48))));
                    *isum = D::dot2_scaled(u[2], a2, u[3], a3, s1, D::dot2_scaled(u[0], a0, u[1], a1, s0, *isum));
                }
            }
        }
        let (d, dmin) = (read_f16_finite(blk, 0), read_f16_finite(blk, 2));
        for ((x, acc), isum) in a.iter().zip(acc.iter_mut()).zip(isum) {
            // SAFETY: the row has 16 sums per block.
            let msum = unsafe { sums_dot(x.sums.as_ptr().add(16 * b), m_lo, m_hi) };
            *acc = scalar::step_k_min(*acc, d, dmin, x.d[b], hsum_i32(isum), msum);
        }
    }
    acc
}

/// `Σ w_k · sums[k]` over a block's 16 activation sums, with the 16-bit weights in
/// two vectors (exact: |sum| ≤ 2032 and |w| ≤ 128).
#[inline(always)]
unsafe fn sums_dot(sums: *const i16, lo: v128, hi: v128) -> i32 {
    // SAFETY: the caller passes 16 readable sums.
    let (a, b) = unsafe { (v128_load(sums.cast::<v128>()), v128_load(sums.add(8).cast::<v128>())) };
    hsum_i32(i32x4_add(i32x4_dot_i16x8(a, lo), i32x4_dot_i16x8(b, hi)))
}

/// One Q6_K row times `T` activation rows, each half-block unpacked once for all of them.
#[inline(always)]
unsafe fn q6k_rows<D: Dot, const T: usize>(row: &[u8], a: &[Q8Row<'_>; T]) -> [f32; T] {
    let mut acc = [0f32; T];
    for (b, blk) in row.chunks_exact(210).enumerate() {
        let p = blk.as_ptr();
        let mut isum = [i32x4_splat(0); T];
        // SAFETY: the block is whole; its activations are 256 bytes at 256·b.
        unsafe {
            for n in 0..2 {
                let ql = p.add(64 * n);
                let (qh0, qh1) = (load(p.add(128 + 32 * n)), load(p.add(144 + 32 * n)));
                let (l0, l1, l2, l3) = (load(ql), load(ql.add(16)), load(ql.add(32)), load(ql.add(48)));
                // Byte-wise work in 16-bit lanes, masked per byte (wasm has no byte
                // shifts; engines build them from 16-bit ones and a mask anyway): the
                // two high bits of each value go to bits 4-5 where they are.
                let (f, hi2) = (u8x16_splat(0x0f), u8x16_splat(0x30));
                let high = |l: v128| v128_and(u16x8_shr(l, 4), f);
                let (h0, h1) = ([i16x8_shl(qh0, 4), i16x8_shl(qh0, 2), qh0, u16x8_shr(qh0, 2)], [i16x8_shl(qh1, 4), i16x8_shl(qh1, 2), qh1, u16x8_shr(qh1, 2)]);
                let u = [
                    v128_or(v128_and(l0, f), v128_and(h0[0], hi2)),
                    v128_or(v128_and(l1, f), v128_and(h1[0], hi2)),
                    v128_or(v128_and(l2, f), v128_and(h0[1], hi2)),
                    v128_or(v128_and(l3, f), v128_and(h1[1], hi2)),
                    v128_or(high(l0), v128_and(h0[2], hi2)),
                    v128_or(high(l1), v128_and(h1[2], hi2)),
                    v128_or(high(l2), v128_and(h0[3], hi2)),
                    v128_or(high(l3), v128_and(h1[3], hi2)),
                ];
                for (k, &u) in u.iter().enumerate() {
                    let g = 8 * n + k;
                    let scale = i16::from(blk[192 + g] as i8);
                    for (x, isum) in a.iter().zip(isum.iter_mut()) {
                        *isum = D::dot_scaled(u, D::prep(load_i8(x.qs.as_ptr().add(256 * b + 16 * g))), scale, *isum);
                    }
                }
            }
        }
        let d = read_f16_finite(blk, 208);
        // SAFETY: the 16 scales lie at 192.
        let scales = unsafe { load(p.add(192)) };
        let (s_lo, s_hi) = (i16x8_extend_low_i8x16(scales), i16x8_extend_high_i8x16(scales));
        for ((x, acc), isum) in a.iter().zip(acc.iter_mut()).zip(isum) {
            // SAFETY: the row has 16 sums per block.
            let offset = unsafe { sums_dot(x.sums.as_ptr().add(16 * b), s_lo, s_hi) };
            *acc = scalar::step_offset(*acc, d, x.d[b], hsum_i32(isum) - 32 * offset);
        }
    }
    acc
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

#[inline(always)]
fn matmul_q_with<D: Dot>(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    match w.format() {
        Format::Q4_0 => legacy::<D, Q40>(w, x, out),
        Format::Q4_1 => legacy::<D, Q41>(w, x, out),
        Format::Q5_0 => legacy::<D, Q50>(w, x, out),
        Format::Q5_1 => legacy::<D, Q51>(w, x, out),
        Format::Q8_0 => legacy::<D, Q80>(w, x, out),
        Format::Q4K => rows_by_tokens!(w, x, out, |row, a| q45k_rows::<D, false, _>(row, &a)),
        Format::Q5K => rows_by_tokens!(w, x, out, |row, a| q45k_rows::<D, true, _>(row, &a)),
        Format::Q6K => rows_by_tokens!(w, x, out, |row, a| q6k_rows::<D, _>(row, &a)),
        format => per_row(w, x, out, |row, a| scalar::dot_q(format, row, *a)),
    }
}

/// Quantized weights times quantized activations.
pub(crate) fn matmul_q<const RELAXED: bool>(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    if RELAXED {
        // This build was made for engines with relaxed SIMD (the module would not
        // validate otherwise).
        #[cfg(feature = "relaxed-simd")]
        matmul_q_relaxed(w, x, out);
    } else {
        matmul_q_with::<Plain>(w, x, out);
    }
}

#[cfg(feature = "relaxed-simd")]
#[target_feature(enable = "relaxed-simd")]
fn matmul_q_relaxed(w: &Matrix<'_>, x: &Q8Rows, out: &mut [f32]) {
    matmul_q_with::<Relaxed>(w, x, out);
}

/// Eight `f16`s at `p` as two `f32x4`, exactly (infinities and NaN included).
#[inline(always)]
unsafe fn f16x8(p: *const u8) -> (v128, v128) {
    // SAFETY: the caller passes 16 readable bytes.
    let h = unsafe { load(p) };
    let convert = |h: v128| {
        let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
        let finite = f32x4_mul(v128_or(sign, i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13)), f32x4_splat(F16_RESCALE));
        let special = v128_or(sign, v128_or(u32x4_splat(0x7f80_0000), i32x4_shl(v128_and(h, u32x4_splat(0x3ff)), 13)));
        let is_special = i32x4_eq(v128_and(h, u32x4_splat(0x7c00)), u32x4_splat(0x7c00));
        v128_bitselect(special, finite, is_special)
    };
    (convert(u32x4_extend_low_u16x8(h)), convert(u32x4_extend_high_u16x8(h)))
}

/// Sixteen weights at value index `i` of a float-format row, as four `f32x4`.
#[inline(always)]
unsafe fn float16(format: Format, row: *const u8, i: usize) -> [v128; 4] {
    // SAFETY: the caller passes a row with 16 values from `i`.
    unsafe {
        match format {
            Format::F32 => [0, 1, 2, 3].map(|k| load(row.add(4 * (i + 4 * k)))),
            Format::F16 => {
                let (a, b) = f16x8(row.add(2 * i));
                let (c, d) = f16x8(row.add(2 * i + 16));
                [a, b, c, d]
            }
            _ => {
                let (h0, h1) = (load(row.add(2 * i)), load(row.add(2 * i + 16)));
                let widen = |h: v128, high: bool| {
                    let w = if high { u32x4_extend_high_u16x8(h) } else { u32x4_extend_low_u16x8(h) };
                    i32x4_shl(w, 16)
                };
                [widen(h0, false), widen(h0, true), widen(h1, false), widen(h1, true)]
            }
        }
    }
}

/// Float weights times `f32` activations, in the canonical 16-lane order.
pub(crate) fn matmul_f(w: &Matrix<'_>, x: &[f32], n: usize, out: &mut [f32]) {
    let (rows, cols) = (w.rows(), w.cols());
    let body = cols - cols % LANES;
    for r in 0..rows {
        let row = w.row(r);
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let mut l = [f32x4_splat(0.0); 4];
            for i in (0..body).step_by(LANES) {
                // SAFETY: values i..i+16 exist in the row and in `xt`.
                unsafe {
                    let wv = float16(w.format(), row.as_ptr(), i);
                    for k in 0..4 {
                        let xv = v128_load(xt.as_ptr().add(i + 4 * k).cast::<v128>());
                        l[k] = f32x4_add(l[k], f32x4_mul(wv[k], xv));
                    }
                }
            }
            let v = f32x4_add(f32x4_add(l[0], l[1]), f32x4_add(l[2], l[3]));
            let t2 = f32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
            let mut s = f32x4_extract_lane::<0>(t2) + f32x4_extract_lane::<1>(t2);
            for i in body..cols {
                let mut one = [0f32; 1];
                let bytes = &row[i * w.format().block_bytes()..(i + 1) * w.format().block_bytes()];
                crate::format::dequantize_row(w.format(), bytes, &mut one);
                s += one[0] * xt[i];
            }
            out[t * rows + r] = s;
        }
    }
}
