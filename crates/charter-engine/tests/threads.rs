//! The CPU backend on several threads against one: matrix products shared by rows give
//! the same bits, so a whole model gives the same logits and the same greedy tokens on
//! the oracle prompts, however many threads take part and whenever the governor
//! changes how many do.

mod common;

use std::rc::Rc;

use charter_core::{LanguageModel, Session};
use charter_engine::{LoadOptions, Model};
use charter_threads::Pool;
use common::*;

fn load_with(bytes: &[u8], threads: Option<Rc<Pool>>) -> Model {
    Model::load(bytes, &LoadOptions { context_length: Some(512), threads, ..Default::default() }).unwrap()
}

#[test]
fn two_and_three_threads_give_one_threads_logits_and_greedy_tokens() {
    for (file, oracle) in [(SMOLLM2, "generate_smollm2.jsonl"), (GEMMA3, "generate_gemma3.jsonl")] {
        let bytes = model_bytes(file);
        let mut one = Session::new(load_with(&bytes, None).decoder);
        for threads in [2, 3] {
            let pool = Rc::new(Pool::native(threads).unwrap());
            let model = load_with(&bytes, Some(pool.clone()));
            assert!(model.decoder.describe().contains(&format!("{threads} threads")), "{}", model.decoder.describe());
            let mut many = Session::new(model.decoder);
            for (r, row) in oracle_rows(oracle).iter().take(3).enumerate() {
                let (prompt, generated) = (ids(&row["prompt_ids"]), ids(&row["generated_ids"]));
                // Teacher-forced: the prompt read at once (a prefill's products), then
                // each generated token alone (a decode step's).
                let a = one.score(&prompt, &generated).unwrap();
                let b = many.score(&prompt, &generated).unwrap();
                for (step, (x, y)) in a.iter().zip(&b).enumerate() {
                    let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
                    assert!(same, "{file} {}: {threads} threads differ from one at step {step}", row["id"]);
                }
                if r > 0 {
                    continue;
                }
                let greedy = |m: &mut charter_engine::ModelDecoder| -> Vec<u32> {
                    let mut logits = LanguageModel::forward_all(m, &prompt).unwrap().pop().unwrap();
                    let mut out = Vec::new();
                    for _ in 0..12 {
                        let next = charter_core::sampling::argmax(&logits);
                        out.push(next);
                        logits = LanguageModel::forward(m, &[next]).unwrap();
                    }
                    out
                };
                let mut a = load_with(&bytes, None).decoder;
                let mut b = load_with(&bytes, Some(pool.clone())).decoder;
                assert_eq!(greedy(&mut a), greedy(&mut b), "{file} {}: greedy tokens on {threads} threads", row["id"]);
            }
            assert!(pool.started() > 1, "no helper of the {threads}-thread pool started");
        }
    }
}
