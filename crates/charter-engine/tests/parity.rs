//! Teacher-forced parity with llama.cpp on every shared SmolLM2 and Gemma 3 row.
//!
//! At each step Charter's argmax must equal llama.cpp's token wherever llama.cpp's
//! top-two margin is at least 0.5, and its first-step logits must be close to
//! llama.cpp's on two references: the shared oracle (another machine) and llama.cpp run
//! with the same settings on x86-64 (`tests/reference/`). Quantized kernels that sum in
//! different orders move these logits (magnitude 15 to 35) by a few tenths; a gap over
//! 1.0 means a bug.

mod common;

use std::collections::HashMap;

use charter_core::Session;
use charter_engine::{LoadOptions, Model};
use common::*;

/// First-step logits of the oracle's `first_top10` ids, by row id.
fn reference_logits(path: &str) -> HashMap<String, Vec<(usize, f32)>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let pairs = v["first_top10"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap() as f32))
                .collect();
            (v["id"].as_str().unwrap().to_owned(), pairs)
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

/// `oracle_raw_bound`: the largest raw gap to the shared oracle.
fn check(file: &str, oracle: &str, oracle_raw_bound: f32) {
    let model = Model::load(&model_bytes(file), &LoadOptions { context_length: Some(1024), ..Default::default() }).unwrap();
    let local = reference_logits(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference/llamacpp_x86_first_logits.jsonl"));
    let mut session = Session::new(model.decoder);
    let mut worst = [0f32; 3];
    for row in oracle_rows(oracle) {
        let id = row["id"].as_str().unwrap().to_owned();
        let prompt = ids(&row["prompt_ids"]);
        let generated = ids(&row["generated_ids"]);
        let margins = floats(&row["top2_margins"]);
        let steps = session.score(&prompt, &generated).unwrap();
        assert_eq!(steps.len(), generated.len());
        for (i, logits) in steps.iter().enumerate() {
            if margins[i] >= 0.5 {
                let argmax = charter_core::sampling::argmax(logits);
                assert_eq!(argmax, generated[i], "{id} step {i}: llama.cpp's margin was {}", margins[i]);
            }
        }
        let oracle_top: Vec<(usize, f32)> = row["first_top10"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap() as f32))
            .collect();
        let (raw, centered) = gaps(&steps[0], &oracle_top);
        let (local_raw, _) = gaps(&steps[0], &local[&id]);
        eprintln!("{id}: oracle gap {raw:.3} (centered {centered:.3}), x86 llama.cpp gap {local_raw:.3}");
        assert!(raw <= oracle_raw_bound, "{id}: first-step logits {raw} from the oracle");
        assert!(centered <= 1.0, "{id}: centered first-step logits {centered} from the oracle");
        assert!(local_raw <= 1.0, "{id}: first-step logits {local_raw} from llama.cpp on x86-64");
        for (w, g) in worst.iter_mut().zip([raw, centered, local_raw]) {
            *w = w.max(g);
        }
    }
    eprintln!("worst: oracle {:.3}, centered {:.3}, x86 llama.cpp {:.3}", worst[0], worst[1], worst[2]);
}

#[test]
fn smollm2_teacher_forced() {
    check(SMOLLM2, "generate_smollm2.jsonl", 1.0);
}

#[test]
fn gemma3_teacher_forced() {
    // On gemma_09, llama.cpp itself on x86-64 is 1.199 from the oracle (its kernels sum
    // in another order than the oracle machine's, and this prompt is sensitive), so the
    // raw bound to the oracle is looser here; the centered and x86 bounds are not.
    check(GEMMA3, "generate_gemma3.jsonl", 1.5);
}
