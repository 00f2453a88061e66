//! The element-wise and row-wise parts of a step: norms, rotary embeddings, gate
//! activations, softmax.
//!
//! They are written in plain Rust in shapes the compiler vectorizes without changing a
//! result: element-wise maps, and reductions over 16 independent lanes (the canonical
//! order of [`crate::dot::scalar`]). `exp` and `tanh` are Charter's own, branch-free and
//! built from `+`, `−`, `×`, rounding and bit moves only, so a wasm build and a native
//! build compute the same bits (the platforms' `libm`s differ in the last place).

use crate::dot::scalar::{LANES, dot_f32, reduce_lanes};

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n · LN2_HI` is exact for every `n` used.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `e^x`, within 2 ulp over the range where it is a normal float; below about `−87.3`
/// it returns the smallest values near `1.2e-38` rather than 0, above `88` it saturates.
#[inline]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 7 on |r| ≤ ln 2 / 2, in Horner form.
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `tanh x`, from [`exp`].
#[inline]
pub fn tanh(x: f32) -> f32 {
    let t = exp(-2.0 * x.abs());
    let y = (1.0 - t) / (1.0 + t);
    y.copysign(x)
}

/// `x · sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU, tanh approximation (as llama.cpp and Gemma use it).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)))
}

/// `Σ x` in the canonical lane order.
pub fn sum(x: &[f32]) -> f32 {
    let (chunks, tail) = x.as_chunks::<LANES>();
    let mut lanes = [0f32; LANES];
    for chunk in chunks {
        for j in 0..LANES {
            lanes[j] += chunk[j];
        }
    }
    tail.iter().fold(reduce_lanes(&lanes), |s, &v| s + v)
}

/// RMS normalization of each run of `w.len()` values of `x`, times `w`, into `out`.
///
/// # Panics
/// When `x.len()` is not a multiple of `w.len()`, or `out` differs from `x` in length.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert!(!w.is_empty() && x.len() % w.len() == 0 && out.len() == x.len(), "rms norm of {} over {}", w.len(), x.len());
    for (xs, ys) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        let mean = dot_f32(xs, xs) / xs.len() as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((y, &v), &g) in ys.iter_mut().zip(xs).zip(w) {
            *y = (v * scale) * g;
        }
    }
}

/// Rotates adjacent pairs `(2i, 2i + 1)` of each head of one row by the angles whose
/// cosines and sines are `cos[i]`, `sin[i]` (llama.cpp's "normal" mode).
pub fn rope_interleaved(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, (&c, &s)) in head.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * c - b * s;
            pair[1] = a * s + b * c;
        }
    }
}

/// Rotates pairs `(i, i + head_dim/2)` of each head of one row (the "neox" mode).
pub fn rope_halves(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        let (lo, hi) = head.split_at_mut(half);
        for (((a, b), &c), &s) in lo.iter_mut().zip(hi.iter_mut()).zip(cos).zip(sin) {
            let (x0, x1) = (*a, *b);
            *a = x0 * c - x1 * s;
            *b = x0 * s + x1 * c;
        }
    }
}

/// Softmax in place; returns nothing for an empty slice.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.0137;
        }
        assert!(worst <= 2.0, "exp is {worst} ulp off");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1.3e-38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn activations_match_their_definitions() {
        for i in -400..400 {
            let x = i as f32 * 0.025;
            let xd = f64::from(x);
            assert!((f64::from(tanh(x)) - xd.tanh()).abs() < 5e-7, "tanh {x}");
            assert!((f64::from(silu(x)) - xd / (1.0 + (-xd).exp())).abs() < 1e-6, "silu {x}");
            let g = 0.5 * xd * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            assert!((f64::from(gelu_tanh(x)) - g).abs() < 1e-6, "gelu {x}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        let orig = x.clone();
        softmax(&mut x);
        assert!((x.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-6);
        let imax = orig.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let jmax = x.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(imax, jmax);
    }

    #[test]
    fn rms_norm_and_rotations() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        let mut y = vec![0f32; 8];
        rms_norm(&x, &[2.0; 4], 0.0, &mut y);
        for (xs, ys) in x.chunks(4).zip(y.chunks(4)) {
            let rms = (xs.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
            for (a, b) in xs.iter().zip(ys) {
                assert!((a / rms * 2.0 - b).abs() < 1e-5);
            }
        }
        // A quarter turn maps (1, 0) to (0, 1) in both pairings.
        let mut v = vec![1.0, 0.0, 1.0, 0.0];
        rope_interleaved(&mut v, 4, &[0.0, 0.0], &[1.0, 1.0]);
        assert_eq!(v, [0.0, 1.0, 0.0, 1.0]);
        let mut v = vec![1.0, 1.0, 0.0, 0.0];
        rope_halves(&mut v, 4, &[0.0, 0.0], &[1.0, 1.0]);
        assert_eq!(v, [0.0, 0.0, 1.0, 1.0]);
    }
}
