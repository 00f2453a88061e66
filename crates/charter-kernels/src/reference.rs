//! Slow, obviously correct versions of the kernels, in `f64`, for the tests.

use crate::format::{Format, dequantize_row};

/// `W[r] · x` for every row, by dequantizing each row and summing in `f64`; returns the
/// products and, per row, `Σ |w·x|` (the scale a rounding tolerance is relative to).
pub fn matvec(format: Format, data: &[u8], rows: usize, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let cols = x.len();
    let rb = data.len() / rows.max(1);
    let mut row = vec![0f32; cols];
    let mut out = Vec::with_capacity(rows);
    let mut mag = Vec::with_capacity(rows);
    for r in 0..rows {
        dequantize_row(format, &data[r * rb..(r + 1) * rb], &mut row);
        out.push(row.iter().zip(x).map(|(&w, &v)| f64::from(w) * f64::from(v)).sum());
        mag.push(row.iter().zip(x).map(|(&w, &v)| (f64::from(w) * f64::from(v)).abs()).sum());
    }
    (out, mag)
}

/// Causal attention of `n` queries at positions `start..start + n` over keys and values
/// at positions `0..start + n` (`keys[p]` is position `p`'s `(n_kv_heads, head_dim)`
/// row), in `f64`. Query head `h` reads key head `h / (n_heads / n_kv_heads)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    keys: &[Vec<f32>],
    values: &[Vec<f32>],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    start: usize,
    scale: f32,
    window: Option<usize>,
    softcap: Option<f32>,
) -> Vec<f32> {
    let n = q.len() / (n_heads * head_dim);
    let group = n_heads / n_kv_heads;
    let mut out = vec![0f32; q.len()];
    for i in 0..n {
        let qpos = start + i;
        for h in 0..n_heads {
            let kh = h / group;
            let qv = &q[(i * n_heads + h) * head_dim..][..head_dim];
            let visible: Vec<usize> = (0..=qpos).filter(|&p| window.is_none_or(|w| qpos - p < w)).collect();
            let scores: Vec<f64> = visible
                .iter()
                .map(|&p| {
                    let k = &keys[p][kh * head_dim..][..head_dim];
                    let s = qv.iter().zip(k).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() * f64::from(scale);
                    softcap.map_or(s, |c| f64::from(c) * (s / f64::from(c)).tanh())
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            for d in 0..head_dim {
                let v: f64 = visible.iter().zip(&exps).map(|(&p, e)| e * f64::from(values[p][kh * head_dim + d])).sum();
                out[(i * n_heads + h) * head_dim + d] = (v / sum) as f32;
            }
        }
    }
    out
}
