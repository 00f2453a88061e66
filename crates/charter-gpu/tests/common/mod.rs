//! What the GPU kernel tests share: a test macro that runs one async body natively and
//! in the browser, a seeded generator, the adapter, random weights of every format the
//! kernels read, and a tolerance check.

#![allow(dead_code)]

use charter_gpu::{Gpu, GpuOptions};
use charter_kernels::Format;
use charter_kernels::half::f32_to_f16;

/// A test natively (on a blocking executor) and in the browser (wasm-bindgen-test, on
/// the page's WebGPU adapter), from one async body.
macro_rules! gpu_test {
    ($name:ident, $body:ident) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on($body());
        }

        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            $body().await;
        }
    };
}

/// A small deterministic generator (xorshift), so failures repeat.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }

    /// A float in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}

pub async fn gpu() -> Gpu {
    gpu_with(GpuOptions::default()).await
}

pub async fn gpu_with(options: GpuOptions) -> Gpu {
    Gpu::new(options).await.unwrap_or_else(|e| {
        panic!("{e}: the GPU tests need an adapter (on Linux, Mesa's lavapipe: apt-get install mesa-vulkan-drivers)")
    })
}

/// The device twice: reducing as the adapter best can (subgroup operations where it has
/// them) and through workgroup memory only, so each reduction is tested both ways.
pub async fn both_reductions() -> Vec<Gpu> {
    let (best, tree) = (gpu().await, gpu_with(GpuOptions { without_subgroups: true, ..GpuOptions::default() }).await);
    assert!(!tree.uses_subgroups());
    vec![best, tree]
}

/// The device twice where the adapter has `shader-f16`: with the prefill products'
/// weight tiles in f16, and in f32, so each product is tested in both precisions; once
/// where it has not (Chromium's SwiftShader), since both would be the f32 one.
pub async fn both_precisions() -> Vec<Gpu> {
    let best = gpu().await;
    if !best.uses_f16() {
        return vec![best];
    }
    let wide = gpu_with(GpuOptions { without_f16: true, ..GpuOptions::default() }).await;
    assert!(!wide.uses_f16());
    vec![best, wide]
}

/// How far a matrix product of `n` tokens may be from the f64 reference, relative to the
/// sum of its terms' magnitudes: f32 rounding, or where the prefill kernel's weight tile
/// holds f16, that tile's rounding of each weight by at most 2⁻¹¹ of itself (with room
/// for a gate's slope, at most 1.13, when the product goes through one).
pub fn product_tolerance(gpu: &Gpu, n: usize) -> f64 {
    // The tiled kernel serves more than eight tokens.
    if gpu.uses_f16() && n > 8 { 6e-4 } else { 1e-5 }
}

/// Random rows with sane scales: every `f16` scale field moderate, every other byte random.
pub fn random_matrix(format: Format, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data: Vec<u8> = (0..format.row_bytes(cols).unwrap() * rows).map(|_| rng.byte()).collect();
    let f16 = |rng: &mut Rng, lo: f32, hi: f32| f32_to_f16(lo + (hi - lo) * (rng.unit() * 0.5 + 0.5)).to_le_bytes();
    for blk in data.chunks_exact_mut(format.block_bytes()) {
        let mut put = |at: usize, v: [u8; 2]| blk[at..at + 2].copy_from_slice(&v);
        match format {
            Format::F32 => {
                let v = rng.unit();
                blk.copy_from_slice(&v.to_le_bytes());
            }
            Format::F16 => put(0, f16(rng, -2.0, 2.0)),
            Format::BF16 => put(0, ((rng.unit().to_bits() >> 16) as u16).to_le_bytes()),
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => put(0, f16(rng, -0.05, 0.05)),
            Format::Q4_1 | Format::Q5_1 => {
                put(0, f16(rng, 0.001, 0.05));
                put(2, f16(rng, -0.4, 0.0));
            }
            Format::Q4K | Format::Q5K => {
                put(0, f16(rng, 0.0001, 0.003));
                put(2, f16(rng, 0.0001, 0.003));
            }
            Format::Q6K => put(208, f16(rng, -0.003, 0.003)),
            _ => unreachable!("not a GPU format"),
        }
    }
    data
}

pub const GPU_FORMATS: [Format; 11] = [
    Format::F32,
    Format::F16,
    Format::BF16,
    Format::Q4_0,
    Format::Q4_1,
    Format::Q5_0,
    Format::Q5_1,
    Format::Q8_0,
    Format::Q4K,
    Format::Q5K,
    Format::Q6K,
];

/// Row lengths each format is tested at: 576 and 600 where the blocks allow.
pub fn widths(format: Format) -> &'static [usize] {
    match format.block_len() {
        1 => &[576, 600],
        32 => &[576, 640],
        _ => &[768],
    }
}

pub fn assert_close(got: &[f32], want: &[f64], scale: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        assert!((f64::from(g) - w).abs() <= tol * s.max(1e-3), "{what}[{i}]: {g} vs {w} (scale {s})");
    }
}

