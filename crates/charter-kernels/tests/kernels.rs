//! Every kernel against its reference on awkward shapes, on every instruction set this
//! build and machine have: natively (scalar and AVX2) and in wasm under
//! wasm-bindgen-test (scalar, SIMD128 and, in the relaxed build, relaxed SIMD).
//!
//! Two properties are checked: each result is within rounding of the `f64` reference
//! (dequantize, multiply, sum), and every SIMD result equals the scalar kernel's bit
//! for bit.

use charter_kernels::attention::{self, Attention, KvCache};
use charter_kernels::format::{Format, dequantize_row};
use charter_kernels::half::f32_to_f16;
use charter_kernels::dot::{Layout, tile_in_place};
use charter_kernels::{Isa, Matrix, Q8Rows, matmul_f, matmul_f_on, matmul_q, matmul_q_on, reference};
use charter_threads::Pool;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A small deterministic generator (xorshift), so failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }

    /// A float in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random bytes for `rows` rows of `cols` values with sane scales: every `f16` scale
/// field a value of moderate size, every other byte random.
fn random_matrix(format: Format, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
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
            Format::BF16 => {
                let v = (rng.unit().to_bits() >> 16) as u16;
                put(0, v.to_le_bytes());
            }
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => put(0, f16(rng, -0.05, 0.05)),
            Format::Q4_1 | Format::Q5_1 => {
                put(0, f16(rng, 0.001, 0.05));
                put(2, f16(rng, -0.4, 0.0));
            }
            Format::Q4K | Format::Q5K | Format::Q2K => {
                let (d, m) = if format == Format::Q2K { (80, 82) } else { (0, 2) };
                put(d, f16(rng, 0.0001, 0.003));
                put(m, f16(rng, 0.0001, 0.003));
            }
            Format::Q3K => put(108, f16(rng, -0.003, 0.003)),
            Format::Q6K => put(208, f16(rng, -0.003, 0.003)),
            Format::Q8K => {
                let d = 0.001 + 0.01 * (rng.unit() * 0.5 + 0.5);
                blk[0..4].copy_from_slice(&d.to_le_bytes());
            }
        }
    }
    data
}

fn activations(n: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    // Some rows with a large outlier, as real activations have.
    (0..n * cols).map(|i| rng.unit() * if i % 97 == 5 { 20.0 } else { 1.5 }).collect()
}

/// Row lengths for a format: the awkward ones the issue names, where the format allows.
fn widths(format: Format) -> Vec<usize> {
    let mut ws: Vec<usize> = [32, 576, 600, 2048 + 32, 256, 1536, 17].into_iter().filter(|&c| format.row_bytes(c).is_some()).collect();
    if format.block_len() == 256 {
        ws.push(2304);
    }
    ws
}

/// Checks every instruction set on one shape. `symmetric`: Q8_0 weights kept off −128
/// and the matrix marked so, as the engine marks llama.cpp's.
fn check(format: Format, rows: usize, cols: usize, n: usize, rng: &mut Rng, symmetric: bool) {
    let mut data = random_matrix(format, rows, cols, rng);
    if symmetric {
        for blk in data.chunks_exact_mut(34) {
            blk[2..].iter_mut().filter(|q| **q == 0x80).for_each(|q| *q = 0x81);
        }
    }
    let w = Matrix::new(format, rows, cols, &data).unwrap();
    assert_eq!(w.symmetric_q8(), symmetric || (format == Format::Q8_0 && !data.chunks(34).any(|b| b[2..].contains(&0x80))));
    let w = w.with_symmetric_q8(w.symmetric_q8());
    let x = activations(n, cols, rng);
    let mut q = Q8Rows::default();
    // The activations the quantized kernels actually multiply, for the reference.
    let effective = match w.activation_block() {
        Some(block) => {
            q.quantize(&x, n, cols, block);
            q.dequantize()
        }
        None => x.clone(),
    };
    let run = |isa: Isa| {
        let mut out = vec![0f32; n * rows];
        if format.is_quantized() {
            matmul_q(isa, &w, &q, &mut out);
        } else {
            matmul_f(isa, &w, &x, n, &mut out);
        }
        out
    };
    let scalar = run(Isa::Scalar);
    for t in 0..n {
        let (want, mag) = reference::matvec(format, &data, rows, &effective[t * cols..(t + 1) * cols]);
        for r in 0..rows {
            let got = f64::from(scalar[t * rows + r]);
            let tol = 1e-5 * mag[r] + 1e-6;
            assert!((got - want[r]).abs() <= tol, "{} {rows}×{cols}, token {t} row {r}: {got} vs {}", format.name(), want[r]);
        }
    }
    for isa in Isa::available() {
        let got = run(isa);
        for (i, (a, b)) in got.iter().zip(&scalar).enumerate() {
            assert!(
                a.to_bits() == b.to_bits(),
                "{} on {} {rows}×{cols} n={n}: output {i} is {a}, scalar gives {b}",
                isa.name(),
                format.name()
            );
        }
    }
    // The same matrix with its rows interleaved in tiles of four: the same bits.
    let mut tiled = data.clone();
    if tile_in_place(format, rows, cols, &mut tiled) {
        let t = Matrix::tiled(format, rows, cols, &tiled).unwrap().with_symmetric_q8(w.symmetric_q8());
        assert_eq!(t.layout(), Layout::Tiles4);
        let (mut want_row, mut got_row) = (vec![0f32; cols], vec![0f32; cols]);
        for r in 0..rows {
            w.dequantize_row(r, &mut want_row);
            t.dequantize_row(r, &mut got_row);
            assert_eq!(want_row, got_row, "{} row {r} of {rows} tiled", format.name());
        }
        for isa in Isa::available() {
            let mut got = vec![0f32; n * rows];
            matmul_q(isa, &t, &q, &mut got);
            assert!(got.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()), "{} on tiled {} {rows}×{cols} n={n}", isa.name(), format.name());
        }
    }
}

#[test]
fn every_format_on_awkward_shapes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for format in Format::ALL {
        for cols in widths(format) {
            for (rows, n) in [(1, 1), (7, 3), (13, 17), (4, 1), (8, 7), (5, 14)] {
                check(format, rows, cols, n, &mut rng, false);
                if format == Format::Q8_0 {
                    check(format, rows, cols, n, &mut rng, true);
                }
            }
        }
    }
}

/// A pool of `threads` threads: real ones natively; in a wasm test (one thread) a pool
/// whose helpers never start, so the caller runs every task of the split itself.
fn pool(threads: usize) -> Pool {
    #[cfg(not(target_arch = "wasm32"))]
    return Pool::native(threads).unwrap();
    #[cfg(target_arch = "wasm32")]
    {
        let mut unstarted = Vec::new();
        let pool = Pool::with_helpers(threads, || 0.0, |h| {
            unstarted.push(h);
            Ok(())
        })
        .unwrap();
        std::mem::forget(unstarted);
        pool
    }
}

#[test]
fn products_shared_among_threads_equal_one_threads_bit_for_bit() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let pools = [pool(2), pool(3)];
    for format in [Format::Q4_0, Format::Q4_1, Format::Q8_0, Format::Q4K, Format::Q6K, Format::F16, Format::F32] {
        let cols = if format.block_len() == 256 { 512 } else { 320 };
        // Rows that are no multiple of the split's runs, of tiles, or of the threads.
        for (rows, n) in [(203, 1), (203, 3), (97, 9), (37, 1), (1000, 2)] {
            let mut data = random_matrix(format, rows, cols, &mut rng);
            let tiled = tile_in_place(format, rows, cols, &mut data);
            let w = if tiled { Matrix::tiled(format, rows, cols, &data) } else { Matrix::new(format, rows, cols, &data) }.unwrap();
            let x = activations(n, cols, &mut rng);
            let mut q = Q8Rows::default();
            if let Some(block) = w.activation_block() {
                q.quantize(&x, n, cols, block);
            }
            for isa in Isa::available() {
                let mut one = vec![0f32; n * rows];
                match format.is_quantized() {
                    true => matmul_q(isa, &w, &q, &mut one),
                    false => matmul_f(isa, &w, &x, n, &mut one),
                }
                for pool in &pools {
                    // Many times: the governor changes how many threads take part.
                    for round in 0..40 {
                        let mut many = vec![f32::NAN; n * rows];
                        match format.is_quantized() {
                            true => matmul_q_on(pool, isa, &w, &q, &mut many),
                            false => matmul_f_on(pool, isa, &w, &x, n, &mut many),
                        }
                        let same = many.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{} {rows}×{cols} n={n} on {} threads, {} (round {round})", format.name(), pool.threads(), isa.name());
                    }
                }
            }
        }
    }
}

#[test]
fn the_instruction_sets_this_build_has() {
    let isas = Isa::available();
    assert_eq!(isas[0], Isa::Scalar);
    #[cfg(target_arch = "wasm32")]
    {
        assert!(isas.contains(&Isa::Simd128));
        assert_eq!(isas.contains(&Isa::RelaxedSimd), cfg!(feature = "relaxed-simd"));
    }
}

#[test]
fn extreme_bytes_stay_exact() {
    // Q8_0 weights of −128 (never written by llama.cpp, legal in a file) and activations
    // at ±127: the paths that split bytes or use `pmaddubsw` must not saturate.
    let mut data = Vec::new();
    for i in 0..8 {
        data.extend_from_slice(&f32_to_f16(0.01).to_le_bytes());
        data.extend((0..32).map(|j| if (i + j) % 3 == 0 { 0x80u8 } else { 0x7f }));
    }
    let w = Matrix::new(Format::Q8_0, 4, 64, &data).unwrap();
    assert!(!w.symmetric_q8());
    let w = w.with_symmetric_q8(w.symmetric_q8());
    let x: Vec<f32> = (0..64).map(|j| if j % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let mut q = Q8Rows::default();
    q.quantize(&x, 1, 64, 32);
    let mut want = vec![0f32; 4];
    matmul_q(Isa::Scalar, &w, &q, &mut want);
    let (exact, _) = reference::matvec(Format::Q8_0, &data, 4, &q.dequantize());
    for (a, b) in want.iter().zip(&exact) {
        assert!((f64::from(*a) - b).abs() < 1e-4, "{a} vs {b}");
    }
    for isa in Isa::available() {
        let mut got = vec![0f32; 4];
        matmul_q(isa, &w, &q, &mut got);
        assert_eq!(got, want, "{}", isa.name());
    }
}

#[test]
fn dequantized_rows_match_the_block_layouts() {
    // A hand-built Q4_1 block: d = 0.5, m = −1, nibbles i % 16 low, 15 − i % 16 high.
    let mut blk = Vec::new();
    blk.extend_from_slice(&f32_to_f16(0.5).to_le_bytes());
    blk.extend_from_slice(&f32_to_f16(-1.0).to_le_bytes());
    blk.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
    let mut y = [0f32; 32];
    dequantize_row(Format::Q4_1, &blk, &mut y);
    for i in 0..16 {
        assert_eq!(y[i], 0.5 * i as f32 - 1.0);
        assert_eq!(y[16 + i], 0.5 * (15 - i) as f32 - 1.0);
    }
}

fn random_cache(heads: usize, capacity: usize, hd: usize, len: usize, rng: &mut Rng) -> (KvCache, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut cache = KvCache::new(heads, capacity, hd);
    let (mut ks, mut vs) = (Vec::new(), Vec::new());
    for pos in 0..len {
        let k: Vec<f32> = (0..heads * hd).map(|_| rng.unit() * 2.0).collect();
        let v: Vec<f32> = (0..heads * hd).map(|_| rng.unit()).collect();
        cache.write(pos, &k, &v);
        // What the cache holds is the f16 rounding of what was written.
        let round = |x: &[f32]| x.iter().map(|&x| charter_kernels::half::f16_to_f32(f32_to_f16(x))).collect::<Vec<_>>();
        ks.push(round(&k));
        vs.push(round(&v));
    }
    (cache, ks, vs)
}

#[test]
fn attention_matches_the_reference() {
    let mut rng = Rng(7);
    for (n_heads, n_kv, hd, start, n, window, softcap) in [
        (9, 3, 64, 0, 1, None, None),
        (9, 3, 64, 40, 1, None, None),
        (4, 1, 32, 5, 17, None, None),
        (4, 4, 16, 0, 33, Some(7), None),
        (2, 1, 256, 3, 3, Some(4), Some(50.0)),
        // Prefill-sized: several tiles of queries per key head, enough work to split.
        (9, 3, 64, 7, 50, None, None),
        (8, 2, 32, 0, 40, Some(20), Some(30.0)),
    ] {
        let (cache, ks, vs) = random_cache(n_kv, 64, hd, start + n, &mut rng);
        let q: Vec<f32> = (0..n * n_heads * hd).map(|_| rng.unit()).collect();
        let p = Attention { n_heads, n_kv_heads: n_kv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), window, softcap };
        let mut out = vec![0f32; q.len()];
        attention::attend(&p, &q, &cache, start, &mut out, &mut attention::Scratch::default());
        let want = reference::attention(&q, &ks, &vs, n_heads, n_kv, hd, start, p.scale, window, softcap);
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 2e-5, "{n_heads}/{n_kv}×{hd} at {start}+{n}: value {i} is {a}, reference {b}");
        }
        // Shared among threads, a key head and a tile of queries a task: the same bits.
        for threads in [2, 3] {
            let pool = pool(threads);
            for round in 0..20 {
                let mut many = vec![f32::NAN; q.len()];
                attention::attend_on(&pool, &p, &q, &cache, start, &mut many, &mut attention::Scratch::default());
                let same = many.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{n_heads}/{n_kv}×{hd} at {start}+{n} on {threads} threads (round {round})");
            }
        }
    }
}

#[test]
fn the_cache_saves_and_restores_its_prefix() {
    let mut rng = Rng(11);
    let (cache, _, _) = random_cache(3, 16, 8, 10, &mut rng);
    let saved = cache.read(6);
    let mut other = KvCache::new(3, 16, 8);
    other.write_raw(6, &saved);
    assert_eq!(other.read(6), saved);
    assert_eq!(saved.len(), 2 * 3 * 6 * 8);
}

#[test]
fn removing_positions_moves_values_and_passes_every_moved_key_through_the_turn() {
    let mut rng = Rng(13);
    // Awkward shapes: odd lengths, a removal at the start, at the end, and none.
    for (heads, hd, len, from, to) in [(3, 8, 11, 4, 7), (1, 6, 9, 0, 5), (2, 4, 5, 2, 5), (2, 4, 6, 3, 3)] {
        let (mut cache, ks, vs) = random_cache(heads, 16, hd, len, &mut rng);
        let mut turned = 0;
        let n = cache.remove(len, from, to, &mut |key: &mut [f32]| {
            turned += 1;
            key.iter_mut().for_each(|x| *x = -*x);
        });
        assert_eq!(n, len - (to - from));
        assert_eq!(turned, heads * (len - to));
        let data = cache.read(n);
        let (k, v) = data.split_at(heads * n * hd);
        let at = |h: usize, p: usize, d: usize| (h * n + p) * hd + d;
        for h in 0..heads {
            for p in 0..n {
                let (old, sign) = if p < from { (p, 1.0) } else { (p + to - from, -1.0) };
                for d in 0..hd {
                    let f = |bits: u16| charter_kernels::half::f16_to_f32(bits);
                    assert_eq!(f(v[at(h, p, d)]), vs[old][h * hd + d], "value {h}/{p}/{d}");
                    assert_eq!(f(k[at(h, p, d)]), sign * ks[old][h * hd + d], "key {h}/{p}/{d}");
                }
            }
        }
    }
}

#[test]
fn a_key_turned_back_by_d_positions_is_the_key_at_p_minus_d() {
    // Rotary embeddings are rotations: R(p) then R(-d) is R(p - d), the shift's premise.
    let (hd, base) = (64usize, 10_000f64);
    let angles = |pos: f64, sign: f64| -> (Vec<f32>, Vec<f32>) {
        (0..hd / 2)
            .map(|i| {
                let a = pos * base.powf(-2.0 * i as f64 / hd as f64);
                (a.cos() as f32, (sign * a.sin()) as f32)
            })
            .unzip()
    };
    let mut rng = Rng(17);
    for rope in [charter_kernels::ops::rope_halves, charter_kernels::ops::rope_interleaved] {
        for (p, d) in [(7000usize, 3000usize), (513, 1), (40, 40)] {
            let x: Vec<f32> = (0..hd).map(|_| rng.unit()).collect();
            let (mut shifted, mut fresh) = (x.clone(), x.clone());
            let (c, s) = angles(p as f64, 1.0);
            rope(&mut shifted, hd, &c, &s);
            let (c, s) = angles(d as f64, -1.0);
            rope(&mut shifted, hd, &c, &s);
            let (c, s) = angles((p - d) as f64, 1.0);
            rope(&mut fresh, hd, &c, &s);
            for (a, b) in shifted.iter().zip(&fresh) {
                assert!((a - b).abs() < 1e-5, "at {p} less {d}: {a} vs {b}");
            }
        }
    }
}
