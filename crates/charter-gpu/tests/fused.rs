//! The fused kernels (several steps of a layer in one dispatch) against the CPU
//! kernels doing those steps one by one, on awkward shapes, each in one dispatch.

use charter_gpu::{Gate, Pairing, QkNorms, Rotary};
use charter_kernels::attention::{Attention, KvCache, Scratch, attend};
use charter_kernels::half::f16_to_f32;
use charter_kernels::{Format, ops, reference};

#[macro_use]
mod common;

use common::{Rng, assert_close, both_precisions, both_reductions, product_tolerance, random_matrix};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

gpu_test!(
    preparing_attention_is_the_norms_the_rotation_and_the_cache_write,
    preparing_attention_is_the_norms_the_rotation_and_the_cache_write_body
);
async fn preparing_attention_is_the_norms_the_rotation_and_the_cache_write_body() {
    for gpu in both_reductions().await {
        let mut rng = Rng(23);
        // (query heads, key heads, head dim, positions before, new tokens, pairing, q/k norms)
        let cases = [
            (9, 3, 64, 0, 1, Pairing::Interleaved, false),
            (9, 3, 64, 70, 13, Pairing::Halves, false),
            (4, 1, 256, 5, 3, Pairing::Halves, true),
            (3, 3, 130, 2, 40, Pairing::Interleaved, true),
            (2, 1, 6, 0, 9, Pairing::Halves, true),
        ];
        for (n_heads, n_kv, hd, before, n, pairing, with_norms) in cases {
            let what = format!("{n_heads}/{n_kv} heads of {hd}, {n} after {before}, {pairing:?}, norms {with_norms}");
            let (half, capacity, eps) = (hd / 2, before + n + 5, 1e-6);
            let inv: Vec<f32> = (0..half).map(|i| 10000f32.powf(-(2.0 * i as f32) / hd as f32)).collect();
            let (mut cos, mut sin) = (Vec::new(), Vec::new());
            for pos in 0..capacity {
                for &f in &inv {
                    cos.push((pos as f32 * f).cos());
                    sin.push((pos as f32 * f).sin());
                }
            }
            let table = gpu.rope_table(&cos, &sin, half).unwrap();
            let mut cache = gpu.kv_cache(n_kv, capacity, hd).unwrap();
            let mut cpu_cache = KvCache::new(n_kv, capacity, hd);
            let (q_width, kv_width) = (n_heads * hd, n_kv * hd);
            let (qn, kn) = (rng.vec(hd), rng.vec(hd));
            let (tqn, tkn) = (gpu.upload(&qn, 1, hd).unwrap(), gpu.upload(&kn, 1, hd).unwrap());
            let norms = with_norms.then_some(QkNorms { q: &tqn, k: &tkn, eps });
            let p = Attention { n_heads, n_kv_heads: n_kv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), window: None, softcap: None };
            let mut last = None;
            for (start, count) in [(0, before), (before, n)] {
                if count == 0 {
                    continue;
                }
                let q: Vec<f32> = rng.vec(count * q_width).iter().map(|v| v * 3.0).collect();
                let (k, v) = (rng.vec(count * kv_width), rng.vec(count * kv_width));
                gpu.flush();
                let rotated = gpu
                    .prepare_attention(
                        gpu.upload(&q, count, q_width).unwrap(),
                        &gpu.upload(&k, count, kv_width).unwrap(),
                        &gpu.upload(&v, count, kv_width).unwrap(),
                        norms,
                        Rotary { table: &table, pairing, start },
                        &mut cache,
                    )
                    .unwrap();
                assert_eq!(gpu.pending_dispatches(), 1, "{what}: one dispatch");
                let prepared = |x: &[f32], w: &[f32], heads: usize| {
                    let mut x = x.to_vec();
                    if with_norms {
                        let mut normed = vec![0f32; x.len()];
                        ops::rms_norm(&x, w, eps, &mut normed);
                        x = normed;
                    }
                    for (i, row) in x.chunks_exact_mut(heads * hd).enumerate() {
                        let at = (start + i) * half;
                        let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
                        match pairing {
                            Pairing::Interleaved => ops::rope_interleaved(row, hd, c, s),
                            Pairing::Halves => ops::rope_halves(row, hd, c, s),
                        }
                    }
                    x
                };
                let (want_q, want_k) = (prepared(&q, &qn, n_heads), prepared(&k, &kn, n_kv));
                let got_q = gpu.read_async(&rotated).await.unwrap();
                assert_close(&got_q, &wide(&want_q), &vec![1.0; want_q.len()], 1e-5, &format!("{what}: q"));
                cpu_cache.write(start, &want_k, &v);
                let mut want = vec![0f32; q.len()];
                attend(&p, &want_q, &cpu_cache, start, &mut want, &mut Scratch::default());
                last = Some((gpu.read_async(&gpu.attend(&rotated, &cache, start, &p).unwrap()).await.unwrap(), want));
            }
            // The cache holds what the CPU's does, to the rounding of one f16 step.
            let len = before + n;
            let (got, want) = (gpu.read_cache_async(&cache, len).await.unwrap(), cpu_cache.read(len));
            assert_eq!(got.len(), want.len());
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let (g, w) = (f16_to_f32(g), f16_to_f32(w));
                assert!((g - w).abs() <= 1e-3 * w.abs().max(1.0), "{what}: cache[{i}] {g} vs {w}");
            }
            let (got, want) = last.unwrap();
            assert_close(&got, &wide(&want), &vec![1.0; want.len()], 1e-4, &format!("{what}: attention"));
        }
        // Shapes that do not fit the cache or the table are refused.
        let table = gpu.rope_table(&[1.0; 8], &[0.0; 8], 4).unwrap();
        let mut cache = gpu.kv_cache(1, 2, 8).unwrap();
        let x = gpu.upload(&[0.5; 24], 3, 8).unwrap();
        let rotary = Rotary { table: &table, pairing: Pairing::Halves, start: 0 };
        assert!(gpu.prepare_attention(x.clone(), &x, &x, None, rotary, &mut cache).is_err(), "three positions in two");
    }
}

gpu_test!(a_gate_and_up_pair_gives_the_gated_values_in_one_dispatch, a_gate_and_up_pair_gives_the_gated_values_in_one_dispatch_body);
async fn a_gate_and_up_pair_gives_the_gated_values_in_one_dispatch_body() {
    for gpu in both_precisions().await {
        gated_values_match_the_reference(&gpu).await;
    }
}

async fn gated_values_match_the_reference(gpu: &charter_gpu::Gpu) {
    let mut rng = Rng(29);
    // Row counts that leave a workgroup's or a tile's last run of four rows half full.
    for (format, rows, cols) in [(Format::Q4_1, 67, 576), (Format::Q4K, 37, 768), (Format::Q6K, 13, 768), (Format::F16, 33, 600)] {
        let (g, u) = (random_matrix(format, rows, cols, &mut rng), random_matrix(format, rows, cols, &mut rng));
        let pair = gpu.gate_up_matrix(format, rows, cols, &g, &u).unwrap();
        assert!(pair.is_paired());
        for (gate, act) in [(Gate::Silu, ops::silu as fn(f32) -> f32), (Gate::GeluTanh, ops::gelu_tanh)] {
            // The plain kernel's tile of eight tokens, and past it (the tiled kernel).
            for n in [1, 5, 37] {
                let x: Vec<f32> = rng.vec(n * cols).iter().map(|v| v * 4.0).collect();
                let tx = gpu.upload(&x, n, cols).unwrap();
                gpu.flush();
                let y = gpu.matmul_gated(&tx, &pair, gate).unwrap();
                assert_eq!(gpu.pending_dispatches(), 1);
                assert_eq!((y.n, y.width), (n, rows));
                let y = gpu.read_async(&y).await.unwrap();
                for t in 0..n {
                    let row = &x[t * cols..(t + 1) * cols];
                    let ((gw, gm), (uw, um)) = (reference::matvec(format, &g, rows, row), reference::matvec(format, &u, rows, row));
                    let want: Vec<f64> = gw.iter().zip(&uw).map(|(&g, &u)| f64::from(act(g as f32)) * u).collect();
                    // The error of each product, carried through the gate.
                    let mag: Vec<f64> = gm.iter().zip(&um).zip(gw.iter().zip(&uw)).map(|((gm, um), (g, u))| um * g.abs().max(1.0) + gm * u.abs()).collect();
                    let what = format!("{} {rows}×{cols} {gate:?} token {t}/{n}", format.name());
                    assert_close(&y[t * rows..(t + 1) * rows], &want, &mag, product_tolerance(gpu, n), &what);
                }
            }
        }
        let x = gpu.upload(&rng.vec(cols), 1, cols).unwrap();
        assert!(gpu.matmul(&x, &pair).is_err(), "a pair is read only through its gate");
        assert!(gpu.matmul_stack(&x, &pair).is_err(), "a pair is not a stack");
        let plain = gpu.matrix(format, rows, cols, &g).unwrap();
        assert!(gpu.matmul_gated(&x, &plain, Gate::Silu).is_err(), "a plain matrix has no gate");
    }
    let data = random_matrix(Format::Q8_0, 4, 64, &mut rng);
    assert!(gpu.gate_up_matrix(Format::Q8_0, 4, 64, &data, &data[..34]).is_err(), "halves of different sizes");
}

gpu_test!(a_post_norm_the_add_and_the_next_norm_are_one_step, a_post_norm_the_add_and_the_next_norm_are_one_step_body);
async fn a_post_norm_the_add_and_the_next_norm_are_one_step_body() {
    for gpu in both_reductions().await {
        let mut rng = Rng(31);
        for (n, width) in [(1, 640), (5, 600), (3, 576)] {
            let (a, b) = (rng.vec(n * width), rng.vec(n * width).iter().map(|v| v * 40.0).collect::<Vec<_>>());
            let (wb, w) = (rng.vec(width), rng.vec(width));
            let up = |v: &[f32], rows| gpu.upload(v, rows, width).unwrap();
            gpu.flush();
            let (sum, normed) = gpu.norm_add_rms_norm(&up(&a, n), &up(&b, n), &up(&wb, 1), &up(&w, 1), 1e-6).unwrap();
            assert_eq!(gpu.pending_dispatches(), 1);
            let mut post = vec![0f32; a.len()];
            ops::rms_norm(&b, &wb, 1e-6, &mut post);
            let want_sum: Vec<f32> = a.iter().zip(&post).map(|(x, y)| x + y).collect();
            let mut want = vec![0f32; a.len()];
            ops::rms_norm(&want_sum, &w, 1e-6, &mut want);
            let ones = vec![1.0; a.len()];
            assert_close(&gpu.read_async(&sum).await.unwrap(), &wide(&want_sum), &ones, 1e-5, &format!("sum {n}×{width}"));
            assert_close(&gpu.read_async(&normed).await.unwrap(), &wide(&want), &ones, 1e-5, &format!("norm {n}×{width}"));
        }
    }
}
