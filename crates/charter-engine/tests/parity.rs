//! Teacher-forced parity with llama.cpp on every shared SmolLM2 and Gemma 3 row, on
//! Charter's CPU backend and on the candle reference backend.
//!
//! Two references: the shared oracle (another machine) and llama.cpp run with the same
//! settings on x86-64 (`tests/reference/`), which gives the ten best logits at *every*
//! step. At each step Charter's argmax must equal each reference's token wherever that
//! reference's top-two margin is at least 0.5, and its logits for the reference's best
//! ids must be close to llama.cpp's: within 1.0 at the first step (after reading the
//! prompt alone, as the oracle did), and, as teacher-forced contexts drift apart in
//! rounding over a reply, within 2.0 raw and 1.5 after centering (what a softmax sees)
//! at every step. Quantized kernels
//! that sum in different orders move these logits (magnitude 15 to 35) by a few tenths;
//! the candle backend, in `f32` throughout, drifts as far as Charter's (measured: raw
//! 1.75, centered 1.26 on SmolLM2, against Charter's 1.38 and 0.97).

mod common;

use std::collections::HashMap;

use charter_core::Session;
use charter_engine::{BackendChoice, LoadOptions, Model};
use common::*;

/// `(id, logit)` pairs from a JSON array of pairs.
fn pairs(v: &serde_json::Value) -> Vec<(usize, f32)> {
    v.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap() as f32)).collect()
}

/// Per row id: for every step, x86-64 llama.cpp's ten best `(id, logit)` and its margin.
fn x86_steps() -> HashMap<String, Vec<(Vec<(usize, f32)>, f32)>> {
    let path = common::checkout().join("tests/reference/llamacpp_x86_steps.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let steps = v["steps"].as_array().unwrap().iter().map(|s| (pairs(&s["top10"]), s["margin"].as_f64().unwrap() as f32)).collect();
            (v["id"].as_str().unwrap().to_owned(), steps)
        })
        .collect()
}

/// Per row id: x86-64 llama.cpp's first-step logits after reading the prompt alone.
fn x86_first() -> HashMap<String, Vec<(usize, f32)>> {
    let path = common::checkout().join("tests/reference/llamacpp_x86_first_logits.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_owned(), pairs(&v["first_top10"]))
        })
        .collect()
}

/// Largest raw gap, and largest gap after each side is shifted to zero mean over the
/// ids (what a softmax sees).
fn gaps(ours: &[f32], reference: &[(usize, f32)]) -> (f32, f32) {
    let n = reference.len() as f32;
    let ours_mean = reference.iter().map(|&(t, _)| ours[t]).sum::<f32>() / n;
    let ref_mean = reference.iter().map(|&(_, l)| l).sum::<f32>() / n;
    reference.iter().fold((0f32, 0f32), |(raw, centered), &(t, l)| {
        (raw.max((ours[t] - l).abs()), centered.max(((ours[t] - ours_mean) - (l - ref_mean)).abs()))
    })
}

/// `oracle_raw_bound`: the largest raw first-step gap to the shared oracle.
fn check(file: &str, oracle: &str, oracle_raw_bound: f32, backend: BackendChoice) {
    let options = LoadOptions { context_length: Some(1024), backend, ..Default::default() };
    let model = Model::load(&model_bytes(file), &options).unwrap();
    let engine = model.decoder.describe();
    let x86 = x86_steps();
    let first = x86_first();
    let mut session = Session::new(model.decoder);
    // Worst: first-step raw and centered gaps to the oracle, any-step raw and centered
    // gaps to x86-64 llama.cpp.
    let mut worst = [0f32; 4];
    // The largest margin of x86-64 llama.cpp at a step where Charter's argmax differs.
    let mut disagreement = 0f32;
    for row in oracle_rows(oracle) {
        let id = row["id"].as_str().unwrap().to_owned();
        let prompt = ids(&row["prompt_ids"]);
        let generated = ids(&row["generated_ids"]);
        let margins = floats(&row["top2_margins"]);
        let steps = session.score(&prompt, &generated).unwrap();
        assert_eq!(steps.len(), generated.len());
        let reference = &x86[&id];
        assert_eq!(reference.len(), generated.len(), "{id}: reference steps");
        let mut row_worst = (0f32, 0f32);
        for (i, logits) in steps.iter().enumerate() {
            let argmax = charter_core::sampling::argmax(logits);
            if margins[i] >= 0.5 {
                assert_eq!(argmax, generated[i], "{engine} {id} step {i}: the oracle's margin was {}", margins[i]);
            }
            let (top, margin) = &reference[i];
            if argmax as usize != top[0].0 {
                disagreement = disagreement.max(*margin);
            }
            if *margin >= 0.5 {
                assert_eq!(argmax as usize, top[0].0, "{engine} {id} step {i}: x86-64 llama.cpp's margin was {margin}");
            }
            let (raw, centered) = gaps(logits, top);
            assert!(raw <= 2.0, "{engine} {id} step {i}: logits {raw} from llama.cpp on x86-64");
            assert!(centered <= 1.5, "{engine} {id} step {i}: centered logits {centered} from llama.cpp on x86-64");
            row_worst = (row_worst.0.max(raw), row_worst.1.max(centered));
        }
        // The first step against llama.cpp reading the prompt alone, as the oracle did
        // (in one batch with the reply, as above, its own first logits move by up to 0.3).
        let (first_x86, _) = gaps(&steps[0], &first[&id]);
        assert!(first_x86 <= 1.0, "{engine} {id}: first-step logits {first_x86} from llama.cpp on x86-64");
        let (raw, centered) = gaps(&steps[0], &pairs(&row["first_top10"]));
        eprintln!(
            "{engine} {id}: oracle first-step gap {raw:.3} (centered {centered:.3}); x86 llama.cpp worst step gap {:.3} (centered {:.3})",
            row_worst.0, row_worst.1
        );
        assert!(raw <= oracle_raw_bound, "{engine} {id}: first-step logits {raw} from the oracle");
        assert!(centered <= 1.0, "{engine} {id}: centered first-step logits {centered} from the oracle");
        for (w, g) in worst.iter_mut().zip([raw, centered, row_worst.0, row_worst.1]) {
            *w = w.max(g);
        }
    }
    eprintln!(
        "{engine} worst: oracle first step {:.3} (centered {:.3}); x86 llama.cpp any step {:.3} (centered {:.3}); \
         argmax differs from x86 llama.cpp only where its margin is at most {disagreement:.3}",
        worst[0], worst[1], worst[2], worst[3]
    );
}

// On gemma_09, llama.cpp itself on x86-64 is 1.199 from the oracle at the first step (its
// kernels sum in another order than the oracle machine's, and this prompt is sensitive),
// so the raw bound to the oracle is looser for Gemma; the centered and x86 bounds are not.

#[test]
fn smollm2_teacher_forced() {
    check(SMOLLM2, "generate_smollm2.jsonl", 1.0, BackendChoice::Cpu);
}

#[test]
fn gemma3_teacher_forced() {
    check(GEMMA3, "generate_gemma3.jsonl", 1.5, BackendChoice::Cpu);
}

#[test]
fn smollm2_teacher_forced_on_candle() {
    check(SMOLLM2, "generate_smollm2.jsonl", 1.0, BackendChoice::Candle);
}

#[test]
fn gemma3_teacher_forced_on_candle() {
    check(GEMMA3, "generate_gemma3.jsonl", 1.5, BackendChoice::Candle);
}
