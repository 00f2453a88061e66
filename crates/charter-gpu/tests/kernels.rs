//! Every GPU kernel against the CPU reference, on random inputs of awkward shapes (row
//! counts that are not multiples of a workgroup, rows of 576 and 600 values, token
//! counts across the matmul's tile of eight), on whatever adapter the platform offers
//! (Mesa's lavapipe in CI).

use charter_gpu::{Gate, GpuOptions, MAX_SHORTLIST, Pairing, ShortlistSpec};
use charter_kernels::attention::{Attention, KvCache, Scratch, attend};
use charter_kernels::format::dequantize_row;
use charter_kernels::{Format, ops, reference};

#[macro_use]
mod common;

use common::{GPU_FORMATS, Rng, assert_close, both_precisions, both_reductions, gpu, product_tolerance, gpu_with, random_matrix, widths};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_test!(matmul_matches_the_f64_reference_in_every_format, matmul_matches_the_f64_reference_in_every_format_body);
async fn matmul_matches_the_f64_reference_in_every_format_body() {
    let gpus = both_precisions().await;
    for gpu in &gpus {
        matmul_matches_the_f64_reference(gpu).await;
    }
    // Where the adapter has shader-f16 the two devices run different prefill kernels:
    // the f16 tile rounds weights the f32 one keeps.
    if gpus.len() == 2 {
        let mut rng = Rng(3);
        let (rows, cols, n) = (40, 576, 37);
        let data = random_matrix(Format::Q8_0, rows, cols, &mut rng);
        let x = rng.vec(n * cols);
        let mut products = Vec::new();
        for gpu in &gpus {
            let m = gpu.matrix(Format::Q8_0, rows, cols, &data).unwrap();
            products.push(gpu.read_async(&gpu.matmul(&gpu.upload(&x, n, cols).unwrap(), &m).unwrap()).await.unwrap());
        }
        assert_ne!(products[0], products[1], "the f16 tile rounds some weight");
    }
}

async fn matmul_matches_the_f64_reference(gpu: &charter_gpu::Gpu) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for format in GPU_FORMATS {
        for &cols in widths(format) {
            let rows = 67;
            let data = random_matrix(format, rows, cols, &mut rng);
            let m = gpu.matrix(format, rows, cols, &data).unwrap();
            // One token, a few (one tile of eight), and past a tile of 32 (the tiled kernel).
            for n in [1, 3, 8, 11, 37] {
                let x = rng.vec(n * cols);
                let y = gpu.read_async(&gpu.matmul(&gpu.upload(&x, n, cols).unwrap(), &m).unwrap()).await.unwrap();
                let tol = product_tolerance(gpu, n);
                for t in 0..n {
                    let (want, mag) = reference::matvec(format, &data, rows, &x[t * cols..(t + 1) * cols]);
                    assert_close(
                        &y[t * rows..(t + 1) * rows],
                        &want,
                        &mag,
                        tol,
                        &format!("{} {rows}×{cols} token {t}/{n}, {}", format.name(), gpu.describe()),
                    );
                }
            }
        }
    }
}

gpu_test!(a_matrix_split_across_bindings_gives_the_same_products, a_matrix_split_across_bindings_gives_the_same_products_body);
async fn a_matrix_split_across_bindings_gives_the_same_products_body() {
    let (whole, split) = (gpu().await, gpu_with(GpuOptions { max_binding: Some(4096), ..GpuOptions::default() }).await);
    let mut rng = Rng(7);
    let (format, rows, cols) = (Format::Q8_0, 301, 576);
    let data = random_matrix(format, rows, cols, &mut rng);
    let (a, b) = (whole.matrix(format, rows, cols, &data).unwrap(), split.matrix(format, rows, cols, &data).unwrap());
    assert_eq!(a.parts(), 1);
    assert!(b.parts() > 3, "{} parts", b.parts());
    for n in [5, 40] {
        let x = rng.vec(n * cols);
        let ya = whole.read_async(&whole.matmul(&whole.upload(&x, n, cols).unwrap(), &a).unwrap()).await.unwrap();
        let yb = split.read_async(&split.matmul(&split.upload(&x, n, cols).unwrap(), &b).unwrap()).await.unwrap();
        assert_eq!(ya, yb, "{n} tokens");
    }
    let ids = [0, 300, 7, 150, 299];
    let ea = whole.read_async(&whole.embed(&a, &ids).unwrap()).await.unwrap();
    let eb = split.read_async(&split.embed(&b, &ids).unwrap()).await.unwrap();
    assert_eq!(ea, eb);
}

gpu_test!(embed_dequantizes_rows_as_the_cpu_does, embed_dequantizes_rows_as_the_cpu_does_body);
async fn embed_dequantizes_rows_as_the_cpu_does_body() {
    let gpu = gpu().await;
    let mut rng = Rng(11);
    for format in GPU_FORMATS {
        let cols = widths(format)[0];
        let rows = 37;
        let data = random_matrix(format, rows, cols, &mut rng);
        let m = gpu.matrix(format, rows, cols, &data).unwrap();
        let ids = [36u32, 0, 5, 5, 17];
        let got = gpu.read_async(&gpu.embed(&m, &ids).unwrap()).await.unwrap();
        let rb = format.row_bytes(cols).unwrap();
        let mut row = vec![0f32; cols];
        for (i, &id) in ids.iter().enumerate() {
            dequantize_row(format, &data[id as usize * rb..][..rb], &mut row);
            let want: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let scale: Vec<f64> = row.iter().map(|v| f64::from(v.abs()).max(1e-2)).collect();
            assert_close(&got[i * cols..(i + 1) * cols], &want, &scale, 1e-6, &format!("{} row {id}", format.name()));
        }
    }
    let m = gpu.matrix(Format::Q4_1, 4, 576, &random_matrix(Format::Q4_1, 4, 576, &mut rng)).unwrap();
    assert!(gpu.embed(&m, &[4]).is_err(), "an id outside the table is refused");
}

gpu_test!(matrices_the_kernels_cannot_read_are_refused, matrices_the_kernels_cannot_read_are_refused_body);
async fn matrices_the_kernels_cannot_read_are_refused_body() {
    let gpu = gpu().await;
    assert!(gpu.matrix(Format::Q3K, 1, 256, &[0; 110]).is_err());
    assert!(gpu.matrix(Format::F32, 1, 3, &[0; 12]).is_err(), "rows must hold whole groups of eight");
    assert!(gpu.matrix(Format::Q4_0, 2, 32, &[0; 18]).is_err(), "the byte count must match");
}

gpu_test!(norms_match_the_cpu_kernels, norms_match_the_cpu_kernels_body);
async fn norms_match_the_cpu_kernels_body() {
    for gpu in both_reductions().await {
        let mut rng = Rng(3);
        for (n, width, run) in [(1, 576, 576), (5, 600, 600), (3, 576, 64), (2, 1024, 256)] {
            let (a, b, w) = (rng.vec(n * width), rng.vec(n * width), rng.vec(run));
            let (ta, tb, tw) =
                (gpu.upload(&a, n, width).unwrap(), gpu.upload(&b, n, width).unwrap(), gpu.upload(&w, 1, run).unwrap());
            let mut want = vec![0f32; n * width];
            ops::rms_norm(&a, &w, 1e-6, &mut want);
            let got = gpu.read_async(&gpu.rms_norm(&ta, &tw, 1e-6).unwrap()).await.unwrap();
            let ones = vec![1.0; want.len()];
            assert_close(&got, &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), &ones, 1e-5, "rms_norm");
            let (sum, normed) = gpu.add_rms_norm(&ta, &tb, &tw, 1e-6).unwrap();
            let s: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            ops::rms_norm(&s, &w, 1e-6, &mut want);
            assert_eq!(gpu.read_async(&sum).await.unwrap(), s);
            assert_close(
                &gpu.read_async(&normed).await.unwrap(),
                &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                &ones,
                1e-5,
                "add_rms_norm",
            );
        }
    }
}

gpu_test!(elementwise_steps_match_the_cpu, elementwise_steps_match_the_cpu_body);
async fn elementwise_steps_match_the_cpu_body() {
    let gpu = gpu().await;
    let mut rng = Rng(5);
    let (n, width) = (3, 600);
    let a: Vec<f32> = rng.vec(n * width).iter().map(|v| v * 12.0).collect();
    let b = rng.vec(n * width);
    let bias = rng.vec(width);
    let (ta, tb, tbias) =
        (gpu.upload(&a, n, width).unwrap(), gpu.upload(&b, n, width).unwrap(), gpu.upload(&bias, 1, width).unwrap());
    let close = |got: Vec<f32>, want: Vec<f32>, what: &str| {
        let scale: Vec<f64> = want.iter().map(|v| f64::from(v.abs()).max(1.0)).collect();
        assert_close(&got, &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), &scale, 2e-6, what);
    };
    close(gpu.read_async(&gpu.add(&ta, &tb).unwrap()).await.unwrap(), a.iter().zip(&b).map(|(x, y)| x + y).collect(), "add");
    close(
        gpu.read_async(&gpu.add_bias(&ta, &tbias).unwrap()).await.unwrap(),
        a.iter().enumerate().map(|(i, x)| x + bias[i % width]).collect(),
        "add_bias",
    );
    close(gpu.read_async(&gpu.scale(&ta, 0.125).unwrap()).await.unwrap(), a.iter().map(|x| x * 0.125).collect(), "scale");
    close(
        gpu.read_async(&gpu.gated(&ta, &tb, Gate::Silu).unwrap()).await.unwrap(),
        a.iter().zip(&b).map(|(&g, &u)| ops::silu(g) * u).collect(),
        "silu",
    );
    close(
        gpu.read_async(&gpu.gated(&ta, &tb, Gate::GeluTanh).unwrap()).await.unwrap(),
        a.iter().zip(&b).map(|(&g, &u)| ops::gelu_tanh(g) * u).collect(),
        "gelu",
    );
    assert_eq!(gpu.read_async(&gpu.rows_from(&ta, 2).unwrap()).await.unwrap(), a[2 * width..].to_vec());
}

gpu_test!(rope_matches_the_cpu_in_both_pairings, rope_matches_the_cpu_in_both_pairings_body);
async fn rope_matches_the_cpu_in_both_pairings_body() {
    let gpu = gpu().await;
    let mut rng = Rng(13);
    let (capacity, half, heads, n, start) = (40, 32, 3, 7, 29);
    let inv: Vec<f32> = (0..half).map(|i| 10000f32.powf(-(2.0 * i as f32) / (2 * half) as f32)).collect();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for pos in 0..capacity {
        for &f in &inv {
            cos.push((pos as f32 * f).cos());
            sin.push((pos as f32 * f).sin());
        }
    }
    let table = gpu.rope_table(&cos, &sin, half).unwrap();
    let x = rng.vec(n * heads * 2 * half);
    let tx = gpu.upload(&x, n, heads * 2 * half).unwrap();
    for pairing in [Pairing::Interleaved, Pairing::Halves] {
        let got = gpu.read_async(&gpu.rope(&tx, &table, heads, start, pairing).unwrap()).await.unwrap();
        let mut want = x.clone();
        for (i, row) in want.chunks_exact_mut(heads * 2 * half).enumerate() {
            let at = (start + i) * half;
            match pairing {
                Pairing::Interleaved => ops::rope_interleaved(row, 2 * half, &cos[at..at + half], &sin[at..at + half]),
                Pairing::Halves => ops::rope_halves(row, 2 * half, &cos[at..at + half], &sin[at..at + half]),
            }
        }
        let ones = vec![1.0; want.len()];
        assert_close(&got, &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), &ones, 1e-6, &format!("{pairing:?}"));
    }
    assert!(gpu.rope(&tx, &table, heads, capacity - 3, Pairing::Halves).is_err(), "positions past the table");
}

gpu_test!(
    attention_matches_the_cpu_kernel_and_shares_its_cache_layout,
    attention_matches_the_cpu_kernel_and_shares_its_cache_layout_body
);
async fn attention_matches_the_cpu_kernel_and_shares_its_cache_layout_body() {
    for gpu in both_reductions().await {
        let mut rng = Rng(17);
        // (query heads, key heads, head dim, positions before, new tokens, window, soft cap)
        let cases = [
            (9, 3, 64, 0, 1, None, None),
            (9, 3, 64, 70, 13, None, None),
            (4, 1, 256, 130, 3, Some(50), None),
            (2, 2, 128, 5, 70, Some(64), Some(30.0)),
        ];
        for (n_heads, n_kv, hd, before, n, window, softcap) in cases {
            let capacity = before + n + 9;
            let p = Attention { n_heads, n_kv_heads: n_kv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), window, softcap };
            let mut cache = gpu.kv_cache(n_kv, capacity, hd).unwrap();
            let mut cpu_cache = KvCache::new(n_kv, capacity, hd);
            let kv_width = n_kv * hd;
            let mut last = Vec::new();
            // Fill the earlier positions through the kernel itself, then attend the new ones.
            for (start, count) in [(0, before), (before, n)] {
                if count == 0 {
                    continue;
                }
                let q: Vec<f32> = rng.vec(count * n_heads * hd).iter().map(|v| v * 3.0).collect();
                let (k, v) = (rng.vec(count * kv_width), rng.vec(count * kv_width));
                let out = gpu
                    .attention(
                        &gpu.upload(&q, count, n_heads * hd).unwrap(),
                        &gpu.upload(&k, count, kv_width).unwrap(),
                        &gpu.upload(&v, count, kv_width).unwrap(),
                        &mut cache,
                        start,
                        &p,
                    )
                    .unwrap();
                cpu_cache.write(start, &k, &v);
                let mut want = vec![0f32; q.len()];
                attend(&p, &q, &cpu_cache, start, &mut want, &mut Scratch::default());
                last = vec![(gpu.read_async(&out).await.unwrap(), want)];
            }
            let (got, want) = &last[0];
            let ones = vec![1.0; want.len()];
            let what = format!("{n_heads}/{n_kv} heads of {hd}, {n} after {before}, window {window:?}, cap {softcap:?}");
            assert_close(got, &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), &ones, 2e-5, &what);
            let len = before + n;
            assert_eq!(gpu.read_cache_async(&cache, len).await.unwrap(), cpu_cache.read(len), "{what}: cache bits");
            // A state written back reads back the same.
            let saved = cpu_cache.read(len);
            let mut fresh = gpu.kv_cache(n_kv, capacity, hd).unwrap();
            gpu.write_cache(&mut fresh, &saved, len).unwrap();
            assert_eq!(gpu.read_cache_async(&fresh, len).await.unwrap(), saved, "{what}: restored");
        }
    }
}

gpu_test!(the_adapter_is_named, the_adapter_is_named_body);
async fn the_adapter_is_named_body() {
    let gpu = gpu().await;
    let name = gpu.describe();
    eprintln!("the adapter: {name}");
    assert!(name.starts_with("gpu (") && name.len() > "gpu ()".len(), "{name}");
}

gpu_test!(a_step_is_recorded_until_it_is_read, a_step_is_recorded_until_it_is_read_body);
async fn a_step_is_recorded_until_it_is_read_body() {
    let gpu = gpu().await;
    let x = gpu.upload(&[1.0; 64], 1, 64).unwrap();
    let mut y = x.clone();
    for _ in 0..10 {
        y = gpu.add(&y, &x).unwrap();
    }
    assert_eq!(gpu.pending_dispatches(), 10);
    assert_eq!(gpu.read_async(&y).await.unwrap(), vec![11.0; 64]);
    assert_eq!(gpu.pending_dispatches(), 0);
}

gpu_test!(a_lost_device_fails_its_reads_with_the_reason, a_lost_device_fails_its_reads_with_the_reason_body);
async fn a_lost_device_fails_its_reads_with_the_reason_body() {
    let gpu = gpu().await;
    let x = gpu.upload(&[1.0; 64], 1, 64).unwrap();
    assert_eq!(gpu.read_async(&gpu.add(&x, &x).unwrap()).await.unwrap(), vec![2.0; 64]);
    gpu.destroy();
    // Whatever the step records after the loss, its read is an error, not a panic or a hang.
    let y = gpu.add(&x, &x);
    let read = match y {
        Ok(y) => gpu.read_async(&y).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let e = read.expect_err("a read from a lost device");
    assert!(e.to_string().to_lowercase().contains("lost") || e.to_string().contains("map"), "{e}");
}

/// The shortlist's definition, the slow way: mask, penalize, rank, sort everything.
fn shortlist_reference(logits: &[f32], spec: &ShortlistSpec<'_>) -> Vec<(u32, f32)> {
    let mut l = logits.to_vec();
    for &id in spec.masked {
        l[id as usize] = f32::NEG_INFINITY;
    }
    for &id in spec.penalized {
        let x = &mut l[id as usize];
        *x = if *x > 0.0 { *x / spec.penalty } else { *x * spec.penalty };
    }
    let rank = |x: f32| {
        if x.is_nan() || (spec.finite_only && x.is_infinite()) { f32::NEG_INFINITY } else { x }
    };
    let mut all: Vec<(u32, f32)> = l.iter().enumerate().map(|(i, &x)| (i as u32, rank(x))).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(spec.keep);
    all
}

gpu_test!(the_shortlist_keeps_what_a_full_sort_keeps, the_shortlist_keeps_what_a_full_sort_keeps_body);
async fn the_shortlist_keeps_what_a_full_sort_keeps_body() {
    let gpu = gpu().await;
    let mut rng = Rng(41);
    // One chunk, one chunk exactly, one over, a vocabulary's worth, and Gemma's (several
    // passes over the chunks' bests).
    for n in [3usize, 1024, 1025, 49_159, 262_147] {
        // Few distinct values, so ties are everywhere; a few NaNs, infinities and zeros
        // of both signs.
        let logits: Vec<f32> = (0..n)
            .map(|_| match rng.next() % 64 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => -0.0,
                r => (r % 13) as f32 * 0.5 - 3.0,
            })
            .collect();
        let masked: Vec<u32> = (0..n as u32).filter(|i| i % 997 == 5).collect();
        let penalized: Vec<u32> = (0..n as u32).filter(|i| i % 389 == 7 && i % 997 != 5).collect();
        let row = gpu.upload(&logits, 1, n).unwrap();
        for keep in [1, 5, 40, MAX_SHORTLIST] {
            for finite_only in [false, true] {
                let spec = ShortlistSpec { masked: &masked, penalized: &penalized, penalty: 1.3, keep, finite_only };
                let got = gpu.shortlist_async(&row, &spec).await.unwrap();
                let want = shortlist_reference(&logits, &spec);
                assert_eq!(format!("{got:?}"), format!("{want:?}"), "n {n}, keep {keep}, finite only {finite_only}");
            }
        }
    }
    // The row itself is left as it was.
    let row = gpu.upload(&[1.0, 2.0, 3.0], 1, 3).unwrap();
    let spec = ShortlistSpec { masked: &[2], penalized: &[1], penalty: 2.0, keep: 2, finite_only: true };
    assert_eq!(gpu.shortlist_async(&row, &spec).await.unwrap(), vec![(0, 1.0), (1, 1.0)]);
    assert_eq!(gpu.read_async(&row).await.unwrap(), vec![1.0, 2.0, 3.0]);
    let too_many = ShortlistSpec { keep: MAX_SHORTLIST + 1, ..spec };
    assert!(gpu.shortlist_async(&row, &too_many).await.is_err());
}

gpu_test!(
    a_stack_of_matrices_gives_each_product_from_one_dispatch,
    a_stack_of_matrices_gives_each_product_from_one_dispatch_body
);
async fn a_stack_of_matrices_gives_each_product_from_one_dispatch_body() {
    let gpu = gpu().await;
    let mut rng = Rng(77);
    // Row counts that are not multiples of a workgroup's rows or a tile's, so a
    // workgroup's rows straddle two matrices of the stack.
    for (format, cols) in [(Format::Q4_1, 576), (Format::Q8_0, 640), (Format::Q6K, 768), (Format::F32, 600)] {
        for rows in [&[37usize, 13, 13][..], &[21, 21]] {
            let data: Vec<Vec<u8>> = rows.iter().map(|&r| random_matrix(format, r, cols, &mut rng)).collect();
            let apart: Vec<_> = rows.iter().zip(&data).map(|(&r, d)| gpu.matrix(format, r, cols, d).unwrap()).collect();
            let parts: Vec<(usize, &[u8])> = rows.iter().zip(&data).map(|(&r, d)| (r, d.as_slice())).collect();
            let stack = gpu.stacked_matrix(format, cols, &parts).unwrap();
            assert_eq!(stack.stack(), rows);
            for n in [1, 5, 40] {
                let x = gpu.upload(&rng.vec(n * cols), n, cols).unwrap();
                gpu.flush();
                let products = gpu.matmul_stack(&x, &stack).unwrap();
                assert_eq!(gpu.pending_dispatches(), 1);
                assert_eq!(products.len(), rows.len());
                for ((got, m), &r) in products.iter().zip(&apart).zip(rows) {
                    assert_eq!((got.n, got.width), (n, r));
                    let want = gpu.read_async(&gpu.matmul(&x, m).unwrap()).await.unwrap();
                    assert_eq!(gpu.read_async(got).await.unwrap(), want, "{} {rows:?}×{cols}, {n} tokens", format.name());
                }
            }
        }
    }
    // Biases (Qwen2's q, k and v) are added as the products are stored, in the same one
    // dispatch, as adding them after would.
    let (format, cols, rows) = (Format::Q8_0, 576, [37usize, 13, 13]);
    let data: Vec<Vec<u8>> = rows.iter().map(|&r| random_matrix(format, r, cols, &mut rng)).collect();
    let parts: Vec<(usize, &[u8])> = rows.iter().zip(&data).map(|(&r, d)| (r, d.as_slice())).collect();
    let stack = gpu.stacked_matrix(format, cols, &parts).unwrap();
    let biases: Vec<_> = rows.iter().map(|&r| gpu.upload(&rng.vec(r), 1, r).unwrap()).collect();
    let bias_refs: Vec<_> = biases.iter().collect();
    for n in [1, 5, 40] {
        let x = gpu.upload(&rng.vec(n * cols), n, cols).unwrap();
        gpu.flush();
        let biased = gpu.matmul_stack_biased(&x, &stack, &bias_refs).unwrap();
        assert_eq!(gpu.pending_dispatches(), 1);
        let plain = gpu.matmul_stack(&x, &stack).unwrap();
        for ((got, p), b) in biased.iter().zip(&plain).zip(&biases) {
            let want = gpu.read_async(&gpu.add_bias(p, b).unwrap()).await.unwrap();
            assert_eq!(gpu.read_async(got).await.unwrap(), want, "biased, {n} tokens");
        }
    }
    let x = gpu.upload(&rng.vec(cols), 1, cols).unwrap();
    assert!(gpu.matmul_stack_biased(&x, &stack, &bias_refs[..2]).is_err(), "a bias for each matrix");
    // A stack in two formats (q and k in one, v in another, as Q4_K_M files keep them)
    // gives each product bit for bit as its own matrix does, from one dispatch.
    for (first, second, cols) in [(Format::Q4K, Format::Q6K, 768), (Format::Q8_0, Format::Q4_0, 576), (Format::Q4_1, Format::F16, 640)] {
        for formats in [[first, first, second], [first, second, second]] {
            let rows = [37usize, 13, 13];
            let data: Vec<Vec<u8>> = rows.iter().zip(formats).map(|(&r, f)| random_matrix(f, r, cols, &mut rng)).collect();
            let apart: Vec<_> =
                rows.iter().zip(formats).zip(&data).map(|((&r, f), d)| gpu.matrix(f, r, cols, d).unwrap()).collect();
            let parts: Vec<(Format, usize, &[u8])> =
                rows.iter().zip(formats).zip(&data).map(|((&r, f), d)| (f, r, d.as_slice())).collect();
            let stack = gpu.mixed_stack(cols, &parts).unwrap();
            assert_eq!(stack.stack(), rows);
            for n in [1, 5, 40] {
                let x = gpu.upload(&rng.vec(n * cols), n, cols).unwrap();
                gpu.flush();
                let products = gpu.matmul_stack(&x, &stack).unwrap();
                assert_eq!(gpu.pending_dispatches(), 1);
                for (got, m) in products.iter().zip(&apart) {
                    let want = gpu.read_async(&gpu.matmul(&x, m).unwrap()).await.unwrap();
                    assert_eq!(gpu.read_async(got).await.unwrap(), want, "{formats:?}×{cols}, {n} tokens");
                }
            }
            let x = gpu.upload(&rng.vec(cols), 1, cols).unwrap();
            assert!(gpu.matmul(&x, &stack).is_err(), "a stack in two formats is read only as a stack");
        }
    }
    let q = random_matrix(Format::Q8_0, 2, 64, &mut rng);
    let k = random_matrix(Format::Q4_0, 2, 64, &mut rng);
    assert!(gpu.mixed_stack(64, &[(Format::Q8_0, 2, &q), (Format::Q4_0, 2, &k), (Format::Q8_0, 2, &q)]).is_err(), "the first format again");
    // Parts whose bytes do not match their rows, and more than a stack holds, are refused.
    let data = random_matrix(Format::Q8_0, 4, 64, &mut rng);
    assert!(gpu.stacked_matrix(Format::Q8_0, 64, &[(3, &data[..]), (1, &data[..])]).is_err());
    assert!(gpu.stacked_matrix(Format::Q8_0, 64, &[(4, data.as_slice()); 4]).is_err());
}

gpu_test!(a_context_shift_moves_the_cache_as_the_cpu_definition_does, a_context_shift_moves_the_cache_as_the_cpu_definition_does_body);
async fn a_context_shift_moves_the_cache_as_the_cpu_definition_does_body() {
    let gpu = gpu().await;
    let mut rng = Rng(29);
    // (key heads, head dim, positions filled, removed span): heads of 12 and 64, a
    // span at the start, in the middle, and one that leaves a single position.
    for (heads, hd, len, from, to) in [(3, 64, 70, 10, 33), (1, 12, 9, 0, 4), (2, 64, 130, 64, 129), (3, 12, 5, 2, 2)] {
        for pairing in [Pairing::Interleaved, Pairing::Halves] {
            let capacity = len + 7;
            let mut cpu = KvCache::new(heads, capacity, hd);
            for pos in 0..len {
                let (k, v) = (rng.vec(heads * hd), rng.vec(heads * hd));
                cpu.write(pos, &k.iter().map(|x| x * 4.0).collect::<Vec<_>>(), &v);
            }
            let mut cache = gpu.kv_cache(heads, capacity, hd).unwrap();
            gpu.write_cache(&mut cache, &cpu.read(len), len).unwrap();
            let d = (to - from) as f64;
            let (cos, sin): (Vec<f32>, Vec<f32>) = (0..hd / 2)
                .map(|i| {
                    let a = d * 10_000f64.powf(-2.0 * i as f64 / hd as f64);
                    (a.cos() as f32, -(a.sin() as f32))
                })
                .unzip();
            let turn = |key: &mut [f32]| match pairing {
                Pairing::Interleaved => ops::rope_interleaved(key, hd, &cos, &sin),
                Pairing::Halves => ops::rope_halves(key, hd, &cos, &sin),
            };
            let n = cpu.remove(len, from, to, &mut |key| turn(key));
            gpu.shift_cache(&mut cache, len, from, to, &cos, &sin, pairing).unwrap();
            let (got, want) = (gpu.read_cache_async(&cache, n).await.unwrap(), cpu.read(n));
            let what = format!("{heads}×{hd}, {from}..{to} of {len}, {pairing:?}");
            let (gk, gv) = got.split_at(heads * n * hd);
            let (wk, wv) = want.split_at(heads * n * hd);
            assert_eq!(gv, wv, "{what}: values move bit for bit");
            // Keys: the same rotation in f32, rounded to f16 once; a fused multiply-add on
            // the device may round the last bit the other way.
            let f = charter_kernels::half::f16_to_f32;
            for (i, (&g, &w)) in gk.iter().zip(wk).enumerate() {
                let (g, w) = (f(g), f(w));
                assert!((g - w).abs() <= 2e-3 * w.abs().max(1.0), "{what}: key value {i} is {g}, the CPU's {w}");
            }
        }
    }
}
