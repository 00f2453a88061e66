//! Times the matrix products on model-sized shapes: `cargo run --release -p
//! charter-kernels --example kbench [ISA]`. A measuring tool, not a test.

use std::time::Instant;

use charter_kernels::attention::{self, Attention, KvCache};
use charter_kernels::format::Format;
use charter_kernels::{Isa, Matrix, Q8Rows, matmul_q};

fn main() {
    let isa = match std::env::args().nth(1).as_deref() {
        Some("scalar") => Isa::Scalar,
        Some("simd128") => Isa::Simd128,
        _ => Isa::best(),
    };
    println!("{}", isa.name());
    for (heads, kv, hd, len) in [(9, 3, 64, 500), (4, 1, 256, 500)] {
        let mut cache = KvCache::new(kv, 1024, hd);
        let row: Vec<f32> = (0..kv * hd).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
        for p in 0..len {
            cache.write(p, &row, &row);
        }
        let shape = Attention { n_heads: heads, n_kv_heads: kv, head_dim: hd, scale: 0.125, window: None, softcap: None };
        let mut scratch = attention::Scratch::default();
        // One query (a decode step), then a prefill chunk of 64 queries.
        for n in [1usize, 64] {
            let q: Vec<f32> = (0..n * heads * hd).map(|i| (i % 7) as f32 / 7.0).collect();
            let mut out = vec![0f32; q.len()];
            let reps = 300 / n + 2;
            let t = Instant::now();
            for _ in 0..reps {
                attention::attend(&shape, &q, &cache, len - n, &mut out, &mut scratch);
            }
            println!("attention {heads}/{kv}x{hd}, {n} queries up to {len}: {:.3} ms", t.elapsed().as_secs_f64() / reps as f64 * 1e3);
        }
    }
    for (format, rows, cols) in [
        (Format::Q4_1, 1536, 576),
        (Format::Q4_1, 576, 1536),
        (Format::Q4_1, 65536, 576),
        (Format::Q8_0, 49152, 576),
        (Format::Q4K, 2048, 1024),
        (Format::Q5_0, 640, 2048),
        (Format::Q6K, 65536, 1024),
        (Format::Q8_0, 2048, 640),
    ] {
        let Some(rb) = format.row_bytes(cols) else { continue };
        let mut seed = 1u32;
        let mut data: Vec<u8> = (0..rb * rows)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 24) as u8
            })
            .collect();
        // Tame the scales: zero the top bits of every byte pair would be overkill; random
        // f16 scales may be huge or NaN, which costs nothing in these kernels.
        data.iter_mut().step_by(7).for_each(|b| *b &= 0x3f);
        if format == Format::Q8_0 {
            // As llama.cpp writes them: weights in −127..=127.
            data.iter_mut().filter(|b| **b == 0x80).for_each(|b| *b = 0x81);
        }
        // As the engine lays them out.
        charter_kernels::dot::tile_in_place(format, rows, cols, &mut data);
        let w = Matrix::tiled(format, rows, cols, &data).unwrap();
        let w = w.with_symmetric_q8(w.symmetric_q8());
        for n in [1usize, 16] {
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let mut q = Q8Rows::default();
            q.quantize(&x, n, cols, w.activation_block().unwrap());
            let mut out = vec![0f32; n * rows];
            // The best of five batches: the machine is shared, and the best is the kernel's.
            let reps = (40_000_000 / (rows * cols * n)).max(2);
            matmul_q(isa, &w, &q, &mut out);
            let s = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        matmul_q(isa, &w, &q, &mut out);
                    }
                    t.elapsed().as_secs_f64() / reps as f64
                })
                .fold(f64::INFINITY, f64::min);
            println!(
                "{:5} {rows}x{cols} n={n}: {:.3} ms {:.2} GMAC/s {:.2} GB/s",
                format.name(),
                s * 1e3,
                (rows * cols * n) as f64 / s / 1e9,
                (rb * rows) as f64 / s / 1e9
            );
        }
    }
}
