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

use super::Matrix;
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
    fn dot_signed(w: v128, a: Signed, acc: v128, symmetric: bool) -> Option<v128> {
        // w·a = (w·sign a)·|a|: |a| is a valid 7-bit operand, and w·sign a is a byte when
        // w ≠ −128. (x ^ m) − m negates x where the mask m is all ones.
        symmetric.then(|| {
            let signed = i8x16_sub(v128_xor(w, a.negative), a.negative);
            i32x4_relaxed_dot_i8x16_i7x16_add(signed, a.magnitude, acc)
        })
    }
}

/// The layout of a legacy 32-value block.
trait Legacy {
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
        struct $name;
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

/// `Σ q·a` of one legacy block (before the offset), as partial sums. `symmetric`: a
/// Q8_0 matrix without −128 weights.
#[inline(always)]
unsafe fn legacy_block<D: Dot, L: Legacy>(blk: *const u8, a: &[D::A; 2], s: i32, symmetric: bool) -> v128 {
    let zero = i32x4_splat(0);
    // SAFETY: `blk` points at a whole block of `L::BB` bytes.
    unsafe {
        if L::SIGNED {
            let (w0, w1) = (load(blk.add(L::QS)), load(blk.add(L::QS + 16)));
            if let Some(first) = D::dot_signed(w0, a[0], zero, symmetric) {
                if let Some(both) = D::dot_signed(w1, a[1], first, symmetric) {
                    return both;
                }
            }
            // As unsigned bytes, w + 128 = 128·top + low7; Σ w·a = Σ low7·a + 128·Σ top·a − 128·Σ a.
            let (u0, u1) = (v128_xor(w0, u8x16_splat(0x80)), v128_xor(w1, u8x16_splat(0x80)));
            let low7 = u8x16_splat(0x7f);
            let low = D::dot(v128_and(u1, low7), a[1], D::dot(v128_and(u0, low7), a[0], zero));
            let top = D::dot(u8x16_shr(u1, 7), a[1], D::dot(u8x16_shr(u0, 7), a[0], zero));
            return i32x4_sub(i32x4_add(low, i32x4_shl(top, 7)), i32x4(128 * s, 0, 0, 0));
        }
        let qs = load(blk.add(L::QS));
        let mut lo = v128_and(qs, u8x16_splat(0x0f));
        let mut hi = u8x16_shr(qs, 4);
        if let Some(at) = L::QH {
            let (bl, bh) = fifth_bits(blk.add(at).cast::<u32>().read_unaligned());
            lo = v128_or(lo, bl);
            hi = v128_or(hi, bh);
        }
        D::dot(hi, a[1], D::dot(lo, a[0], zero))
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

/// Four rows from `p` times one activation row: block `b` of row `r` is at
/// `p + b·bs + r·rs` (see [`Matrix::tile_strides`]).
#[inline(always)]
unsafe fn legacy_rows4<D: Dot, L: Legacy>(p: *const u8, (rs, bs): (usize, usize), nb: usize, a: &Q8Row<'_>, symmetric: bool) -> v128 {
    let mut acc = f32x4_splat(0.0);
    for b in 0..nb {
        // SAFETY: block `b` of four rows lies inside the matrix; the activation row has
        // 32 bytes per block.
        unsafe {
            let blk = p.add(b * bs);
            let qa = a.qs.as_ptr().add(32 * b);
            let acts = [D::prep(load_i8(qa)), D::prep(load_i8(qa.add(16)))];
            let s = scalar::sum32(a, b);
            let da = f32x4_splat(*a.d.get_unchecked(b));
            let dots = [0, 1, 2, 3].map(|r| legacy_block::<D, L>(blk.add(r * rs), &acts, s, symmetric));
            let mut i = transpose_sum(dots);
            if L::OFFSET != 0 {
                i = i32x4_sub(i, i32x4_splat(L::OFFSET * s));
            }
            let dw = gather_f16(blk, rs);
            let step = f32x4_mul(f32x4_mul(dw, da), f32x4_convert_i32x4(i));
            acc = match L::MIN {
                None => f32x4_add(acc, step),
                Some(at) => {
                    let m = gather_f16(blk.add(at), rs);
                    f32x4_add(acc, f32x4_add(step, f32x4_mul(f32x4_mul(m, da), f32x4_splat(s as f32))))
                }
            };
        }
    }
    acc
}

/// One row times one activation row, with the scalar float steps.
#[inline(always)]
unsafe fn legacy_row<D: Dot, L: Legacy>(row: &[u8], a: &Q8Row<'_>, symmetric: bool) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(L::BB).enumerate() {
        // SAFETY: `blk` is a whole block, and the activation row has 32 bytes per block.
        let i = unsafe {
            let qa = a.qs.as_ptr().add(32 * b);
            let acts = [D::prep(load_i8(qa)), D::prep(load_i8(qa.add(16)))];
            hsum_i32(legacy_block::<D, L>(blk.as_ptr(), &acts, scalar::sum32(a, b), symmetric))
        };
        let s = scalar::sum32(a, b);
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
    let (rows, nb) = (w.rows(), w.cols() / 32);
    let symmetric = w.is_symmetric_q8();
    let strides = w.tile_strides();
    let tiles = rows / 4;
    for tile in 0..tiles {
        let p = w.tile_start(4 * tile);
        for t in 0..x.n() {
            // SAFETY: rows 4·tile..4·tile+4 exist, laid out as `strides` say.
            let v = unsafe { legacy_rows4::<D, L>(p, strides, nb, &x.row(t), symmetric) };
            let o = &mut out[t * rows + 4 * tile..t * rows + 4 * tile + 4];
            // SAFETY: `o` has four f32s.
            unsafe { v128_store(o.as_mut_ptr().cast::<v128>(), v) };
        }
    }
    for r in 4 * tiles..rows {
        for t in 0..x.n() {
            // SAFETY: row `r` is whole.
            out[t * rows + r] = unsafe { legacy_row::<D, L>(w.row(r), &x.row(t), symmetric) };
        }
    }
}

/// One Q4_K or Q5_K row times one activation row.
#[inline(always)]
unsafe fn q45k_row<D: Dot, const FIVE: bool>(row: &[u8], a: &Q8Row<'_>) -> f32 {
    let mut acc = 0f32;
    let bb = if FIVE { 176 } else { 144 };
    for (b, blk) in row.chunks_exact(bb).enumerate() {
        let (sc, m) = scalar::k4_scales(blk);
        let p = blk.as_ptr();
        let mut isum = i32x4_splat(0);
        // SAFETY: the block is whole; its activations are 256 bytes at 256·b.
        unsafe {
            let qs = p.add(if FIVE { 48 } else { 16 });
            let qa = a.qs.as_ptr().add(256 * b);
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
                let qa = qa.add(64 * c);
                let low = D::dot(u[1], D::prep(load_i8(qa.add(16))), D::dot(u[0], D::prep(load_i8(qa)), i32x4_splat(0)));
                let high =
                    D::dot(u[3], D::prep(load_i8(qa.add(48))), D::dot(u[2], D::prep(load_i8(qa.add(32))), i32x4_splat(0)));
                isum = i32x4_add(isum, i32x4_add(i32x4_mul(low, i32x4_splat(sc[2 * c])), i32x4_mul(high, i32x4_splat(sc[2 * c + 1]))));
            }
        }
        let msum: i32 = (0..8).map(|g| m[g] * scalar::sum32(a, 8 * b + g)).sum();
        acc = scalar::step_k_min(acc, read_f16_finite(blk, 0), read_f16_finite(blk, 2), a.d[b], hsum_i32(isum), msum);
    }
    acc
}

/// One Q6_K row times one activation row.
#[inline(always)]
unsafe fn q6k_row<D: Dot>(row: &[u8], a: &Q8Row<'_>) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(210).enumerate() {
        let p = blk.as_ptr();
        let mut isum = i32x4_splat(0);
        // SAFETY: the block is whole; its activations are 256 bytes at 256·b.
        unsafe {
            let qa = a.qs.as_ptr().add(256 * b);
            for n in 0..2 {
                let ql = p.add(64 * n);
                let (qh0, qh1) = (load(p.add(128 + 32 * n)), load(p.add(144 + 32 * n)));
                let (l0, l1, l2, l3) = (load(ql), load(ql.add(16)), load(ql.add(32)), load(ql.add(48)));
                let f = u8x16_splat(0x0f);
                let three = u8x16_splat(3);
                let hb = |qh: v128, s: u32| i8x16_shl(v128_and(u8x16_shr(qh, s), three), 4);
                let u = [
                    v128_or(v128_and(l0, f), hb(qh0, 0)),
                    v128_or(v128_and(l1, f), hb(qh1, 0)),
                    v128_or(v128_and(l2, f), hb(qh0, 2)),
                    v128_or(v128_and(l3, f), hb(qh1, 2)),
                    v128_or(u8x16_shr(l0, 4), hb(qh0, 4)),
                    v128_or(u8x16_shr(l1, 4), hb(qh1, 4)),
                    v128_or(u8x16_shr(l2, 4), hb(qh0, 6)),
                    v128_or(u8x16_shr(l3, 4), hb(qh1, 6)),
                ];
                for (k, &u) in u.iter().enumerate() {
                    let g = 8 * n + k;
                    let d = D::dot(u, D::prep(load_i8(qa.add(16 * g))), i32x4_splat(0));
                    isum = i32x4_add(isum, i32x4_mul(d, i32x4_splat(i32::from(blk[192 + g] as i8))));
                }
            }
        }
        let offset: i32 = (0..16).map(|k| i32::from(blk[192 + k] as i8) * i32::from(a.sums[16 * b + k])).sum();
        acc = scalar::step_offset(acc, read_f16_finite(blk, 208), a.d[b], hsum_i32(isum) - 32 * offset);
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
        // SAFETY: rows are whole blocks (checked by `Matrix::new`) and activations match.
        Format::Q4K => per_row(w, x, out, |row, a| unsafe { q45k_row::<D, false>(row, a) }),
        Format::Q5K => per_row(w, x, out, |row, a| unsafe { q45k_row::<D, true>(row, a) }),
        Format::Q6K => per_row(w, x, out, |row, a| unsafe { q6k_row::<D>(row, a) }),
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
