//! The portable kernels, and the definition of the order of every float operation.
//!
//! A block's integer dot product is exact in any order, so the SIMD kernels may
//! compute it however suits them; what they must reproduce is the float arithmetic
//! written here, operation for operation (no fused multiply-add, no reassociation).
//! Then every build gives the same bits as this one, which the tests check with `==`.

use crate::format::{Format, q3k_scales, scale_min_k4};
use crate::half::{read_f16, read_f16_finite};
use crate::q8::Q8Row;

/// `Σ u·a` over one run.
#[inline]
fn idot(u: &[u8], a: &[i8]) -> i32 {
    u.iter().zip(a).map(|(&u, &a)| i32::from(u) * i32::from(a)).sum()
}

/// The 32 unsigned values (0..16 or 0..32) of a legacy 4- or 5-bit block, in order.
#[inline]
pub(crate) fn unpack_legacy(qs: &[u8], qh: Option<u32>) -> [u8; 32] {
    let mut u = [0u8; 32];
    for i in 0..16 {
        u[i] = qs[i] & 0x0f;
        u[i + 16] = qs[i] >> 4;
    }
    if let Some(qh) = qh {
        for (i, v) in u.iter_mut().enumerate() {
            *v |= (((qh >> i) & 1) << 4) as u8;
        }
    }
    u
}

/// The 256 unsigned values of a Q4_K (0..16) or Q5_K (0..32) block.
#[inline]
pub(crate) fn unpack_q45k(b: &[u8], five: bool) -> [u8; 256] {
    let mut u = [0u8; 256];
    let qs = if five { &b[48..176] } else { &b[16..144] };
    for c in 0..4 {
        for l in 0..32 {
            u[64 * c + l] = qs[32 * c + l] & 0x0f;
            u[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
    }
    if five {
        let qh = &b[16..48];
        for g in 0..8 {
            for l in 0..32 {
                u[32 * g + l] |= ((qh[l] >> g) & 1) << 4;
            }
        }
    }
    u
}

/// The 256 unsigned values (0..64) of a Q6_K block.
#[inline]
pub(crate) fn unpack_q6k(b: &[u8]) -> [u8; 256] {
    let mut u = [0u8; 256];
    for n in 0..2 {
        let (ql, qh) = (&b[64 * n..], &b[128 + 32 * n..]);
        for l in 0..32 {
            u[128 * n + l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
            u[128 * n + 32 + l] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
            u[128 * n + 64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            u[128 * n + 96 + l] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    u
}

/// The 256 unsigned values of a Q2_K (0..4) or Q3_K (0..8, the stored value plus 4) block.
#[inline]
pub(crate) fn unpack_q23k(b: &[u8], three: bool) -> [u8; 256] {
    let mut u = [0u8; 256];
    let qs = if three { &b[32..96] } else { &b[16..80] };
    for n in 0..2 {
        for shift in 0..4 {
            for i in 0..32 {
                let mut v = (qs[32 * n + i] >> (2 * shift)) & 3;
                if three && (b[i] >> (4 * n + shift)) & 1 == 1 {
                    v += 4;
                }
                u[128 * n + 32 * shift + i] = v;
            }
        }
    }
    u
}

/// The Q4_K/Q5_K group scales (bytes 0..8) and minimums (8..16), unpacked from the
/// block's 12 scale bytes four at a time: for groups 0..4 the low six bits of bytes 0..4
/// and 4..8; for groups 4..8 the nibbles of bytes 8..12 with the top two bits of bytes
/// 0..4 (scales) and 4..8 (minimums) above them. Equal to [`scale_min_k4`] for every
/// group (tested).
#[inline]
pub(crate) fn k4_scale_bytes(b: &[u8]) -> [u8; 16] {
    let word = |i: usize| u32::from_le_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let (six, four, two) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    let words = [
        w0 & six,
        (w2 & four) | (((w0 >> 6) & two) << 4),
        w1 & six,
        ((w2 >> 4) & four) | (((w1 >> 6) & two) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The Q4_K/Q5_K group scales and minimums.
#[inline]
pub(crate) fn k4_scales(b: &[u8]) -> ([i32; 8], [i32; 8]) {
    let (mut sc, mut m) = ([0i32; 8], [0i32; 8]);
    for g in 0..8 {
        let (s, mn) = scale_min_k4(g, &b[4..16]);
        sc[g] = i32::from(s);
        m[g] = i32::from(mn);
    }
    (sc, m)
}

/// Sum of the activation bytes of 32-value group `g`.
#[inline]
pub(crate) fn sum32(a: &Q8Row<'_>, g: usize) -> i32 {
    i32::from(a.sums[2 * g]) + i32::from(a.sums[2 * g + 1])
}

/// The float step of a legacy block with an offset folded into the integer sum.
#[inline]
pub(crate) fn step_offset(acc: f32, dw: f32, da: f32, i: i32) -> f32 {
    acc + (dw * da) * i as f32
}

/// The float step of a legacy block with a minimum.
#[inline]
pub(crate) fn step_min(acc: f32, dw: f32, m: f32, da: f32, i: i32, s: i32) -> f32 {
    acc + ((dw * da) * i as f32 + (m * da) * s as f32)
}

/// The float step of a k-quant block with minimums.
#[inline]
pub(crate) fn step_k_min(acc: f32, d: f32, dmin: f32, da: f32, isum: i32, msum: i32) -> f32 {
    acc + ((d * da) * isum as f32 - (dmin * da) * msum as f32)
}

/// One quantized weight row times one quantized activation row.
pub fn dot_q(format: Format, w: &[u8], a: Q8Row<'_>) -> f32 {
    let bb = format.block_bytes();
    let mut acc = 0f32;
    for (b, blk) in w.chunks_exact(bb).enumerate() {
        acc = block_step(format, blk, &a, b, acc);
    }
    acc
}

/// Adds block `b` of a row to `acc`, in the canonical order.
#[inline]
pub(crate) fn block_step(format: Format, blk: &[u8], a: &Q8Row<'_>, b: usize, acc: f32) -> f32 {
    let da = a.d[b];
    match format {
        Format::Q4_0 | Format::Q5_0 => {
            let (qh, qs, offset) = if format == Format::Q5_0 {
                (Some(u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]])), &blk[6..22], 16)
            } else {
                (None, &blk[2..18], 8)
            };
            let i = idot(&unpack_legacy(qs, qh), &a.qs[32 * b..32 * b + 32]) - offset * sum32(a, b);
            step_offset(acc, read_f16_finite(blk, 0), da, i)
        }
        Format::Q4_1 | Format::Q5_1 => {
            let (qh, qs) = if format == Format::Q5_1 {
                (Some(u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]])), &blk[8..24])
            } else {
                (None, &blk[4..20])
            };
            let i = idot(&unpack_legacy(qs, qh), &a.qs[32 * b..32 * b + 32]);
            step_min(acc, read_f16_finite(blk, 0), read_f16_finite(blk, 2), da, i, sum32(a, b))
        }
        Format::Q8_0 => {
            let i: i32 = blk[2..34].iter().zip(&a.qs[32 * b..]).map(|(&w, &x)| i32::from(w as i8) * i32::from(x)).sum();
            step_offset(acc, read_f16_finite(blk, 0), da, i)
        }
        Format::Q4K | Format::Q5K => {
            let u = unpack_q45k(blk, format == Format::Q5K);
            let (sc, m) = k4_scales(blk);
            let qa = &a.qs[256 * b..256 * b + 256];
            let (mut isum, mut msum) = (0i32, 0i32);
            for g in 0..8 {
                isum += sc[g] * idot(&u[32 * g..32 * g + 32], &qa[32 * g..32 * g + 32]);
                msum += m[g] * sum32(a, 8 * b + g);
            }
            step_k_min(acc, read_f16_finite(blk, 0), read_f16_finite(blk, 2), da, isum, msum)
        }
        Format::Q6K => {
            let u = unpack_q6k(blk);
            let qa = &a.qs[256 * b..256 * b + 256];
            let mut isum = 0i32;
            for k in 0..16 {
                let i = idot(&u[16 * k..16 * k + 16], &qa[16 * k..16 * k + 16]) - 32 * i32::from(a.sums[16 * b + k]);
                isum += i32::from(blk[192 + k] as i8) * i;
            }
            step_offset(acc, read_f16_finite(blk, 208), da, isum)
        }
        Format::Q2K => {
            let u = unpack_q23k(blk, false);
            let qa = &a.qs[256 * b..256 * b + 256];
            let (mut isum, mut msum) = (0i32, 0i32);
            for k in 0..16 {
                isum += i32::from(blk[k] & 0x0f) * idot(&u[16 * k..16 * k + 16], &qa[16 * k..16 * k + 16]);
                msum += i32::from(blk[k] >> 4) * i32::from(a.sums[16 * b + k]);
            }
            step_k_min(acc, read_f16_finite(blk, 80), read_f16_finite(blk, 82), da, isum, msum)
        }
        Format::Q3K => {
            let u = unpack_q23k(blk, true);
            let sc = q3k_scales(&blk[96..108]);
            let qa = &a.qs[256 * b..256 * b + 256];
            let mut isum = 0i32;
            for k in 0..16 {
                let i = idot(&u[16 * k..16 * k + 16], &qa[16 * k..16 * k + 16]) - 4 * i32::from(a.sums[16 * b + k]);
                isum += i32::from(sc[k]) * i;
            }
            step_offset(acc, read_f16_finite(blk, 108), da, isum)
        }
        Format::Q8K => {
            let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
            let i: i32 = blk[4..260].iter().zip(&a.qs[256 * b..]).map(|(&w, &x)| i32::from(w as i8) * i32::from(x)).sum();
            step_offset(acc, d, da, i)
        }
        Format::F32 | Format::F16 | Format::BF16 => unreachable!("float formats take f32 activations"),
    }
}

/// Lanes of the canonical float dot product.
pub const LANES: usize = 16;

/// Reduces the 16 lane sums in the canonical tree: `v_j = (l_j + l_{4+j}) + (l_{8+j} +
/// l_{12+j})`, then `(v_0 + v_2) + (v_1 + v_3)`.
#[inline]
pub fn reduce_lanes(l: &[f32; LANES]) -> f32 {
    let v: [f32; 4] = std::array::from_fn(|j| (l[j] + l[4 + j]) + (l[8 + j] + l[12 + j]));
    (v[0] + v[2]) + (v[1] + v[3])
}

/// `Σ w·x` in the canonical order: 16 lane sums over whole runs of 16, reduced by
/// [`reduce_lanes`], then the tail in order.
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (wc, wt) = w[..n].as_chunks::<LANES>();
    let (xc, xt) = x[..n].as_chunks::<LANES>();
    let mut lanes = [0f32; LANES];
    for (a, b) in wc.iter().zip(xc) {
        for j in 0..LANES {
            lanes[j] += a[j] * b[j];
        }
    }
    wt.iter().zip(xt).fold(reduce_lanes(&lanes), |s, (a, b)| s + a * b)
}

/// A float-format weight row times `f32` activations, in the canonical order.
pub fn dot_f(format: Format, w: &[u8], x: &[f32]) -> f32 {
    match format {
        Format::F32 => dot_f_with(x.len(), |i| f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]), x),
        Format::F16 => dot_f_with(x.len(), |i| read_f16(w, 2 * i), x),
        Format::BF16 => dot_f_with(x.len(), |i| crate::half::bf16_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])), x),
        _ => unreachable!("{} is a block format", format.name()),
    }
}

#[inline]
fn dot_f_with(n: usize, w: impl Fn(usize) -> f32, x: &[f32]) -> f32 {
    let body = n - n % LANES;
    let mut lanes = [0f32; LANES];
    for i in (0..body).step_by(LANES) {
        for (j, l) in lanes.iter_mut().enumerate() {
            *l += w(i + j) * x[i + j];
        }
    }
    let mut s = reduce_lanes(&lanes);
    for i in body..n {
        s += w(i) * x[i];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_wise_k4_scales_match_the_definition() {
        let mut blk = [0u8; 16];
        for seed in 0..64u32 {
            for (i, v) in blk.iter_mut().enumerate() {
                *v = (seed.wrapping_mul(2654435761).rotate_left(i as u32 * 3) >> 7) as u8;
            }
            let fast = k4_scale_bytes(&blk);
            for g in 0..8 {
                let (sc, m) = scale_min_k4(g, &blk[4..16]);
                assert_eq!((fast[g], fast[8 + g]), (sc, m), "group {g}, seed {seed}");
            }
        }
    }
}
