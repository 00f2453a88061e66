//! The backends against each other on the real test models: Charter's CPU backend gives
//! the same bits on every instruction set this machine has (the kernels' invariant, held
//! through a whole model: tiled weights, the f16 cache, the fused steps), and it agrees
//! with the candle reference backend.

mod common;

use charter_core::{LanguageModel, Session};
use charter_engine::{BackendChoice, Isa, LoadOptions, Model};
use common::*;

fn load_on(file: &str, backend: BackendChoice) -> Model {
    Model::load(&model_bytes(file), &LoadOptions { context_length: Some(256), backend, ..Default::default() }).unwrap()
}

#[test]
fn every_instruction_set_gives_the_same_logits() {
    for file in [SMOLLM2, GEMMA3] {
        let bytes = model_bytes(file);
        let run = |isa: Isa| {
            let mut model = Model::load(&bytes, &LoadOptions { context_length: Some(64), backend: BackendChoice::CpuOn(isa), ..Default::default() }).unwrap();
            let prompt = model.tokenizer.encode("The lighthouse keeper opened the bottle and read", false).unwrap();
            // A prefill (several tokens at once) and two decode steps.
            let mut out = LanguageModel::forward_all(&mut model.decoder, &prompt).unwrap();
            for t in [12u32, 345] {
                out.push(LanguageModel::forward(&mut model.decoder, &[t]).unwrap());
            }
            out
        };
        let scalar = run(Isa::Scalar);
        for isa in Isa::available() {
            let got = run(isa);
            for (step, (a, b)) in got.iter().zip(&scalar).enumerate() {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{file}: {} differs from scalar at step {step}", isa.name());
            }
        }
    }
}

#[test]
fn the_cpu_backend_agrees_with_candle() {
    for (file, oracle) in [(SMOLLM2, "generate_smollm2.jsonl"), (GEMMA3, "generate_gemma3.jsonl")] {
        let mut cpu = Session::new(load_on(file, BackendChoice::Cpu).decoder);
        let mut candle = Session::new(load_on(file, BackendChoice::Candle).decoder);
        for row in oracle_rows(oracle).iter().take(3) {
            let (prompt, generated) = (ids(&row["prompt_ids"]), ids(&row["generated_ids"]));
            let a = cpu.score(&prompt, &generated).unwrap();
            let b = candle.score(&prompt, &generated).unwrap();
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                // Over candle's ten best ids, each side centered (what a softmax sees).
                let mut top: Vec<usize> = (0..y.len()).collect();
                top.sort_by(|&p, &q| y[q].total_cmp(&y[p]));
                top.truncate(10);
                let (mx, my) = (mean(&top, x), mean(&top, y));
                let centered = top.iter().map(|&t| ((x[t] - mx) - (y[t] - my)).abs()).fold(0f32, f32::max);
                assert!(centered <= 1.0, "{file} {} step {i}: centered logits {centered} apart", row["id"]);
                if y[top[0]] - y[top[1]] >= 0.5 {
                    assert_eq!(charter_core::sampling::argmax(x) as usize, top[0], "{file} {} step {i}", row["id"]);
                }
            }
        }
    }
}

fn mean(ids: &[usize], x: &[f32]) -> f32 {
    ids.iter().map(|&t| x[t]).sum::<f32>() / ids.len() as f32
}
