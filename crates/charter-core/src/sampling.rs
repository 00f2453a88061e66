//! Choosing the next token from logits: greedy, or temperature with top-k, top-p,
//! min-p and a repetition penalty, from a seeded generator so runs repeat exactly.
//!
//! The order follows llama.cpp's default chain: penalties, top-k, top-p, min-p, then
//! temperature and the draw.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling settings. `temperature <= 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 or less picks the most likely token.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens by this (1: off).
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: the argmax of the raw logits.
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, ..Self::default() }
    }

    /// Whether these settings decode greedily.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// A sampler with its own random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler { params, rng }
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token. `logits` may be changed (penalties); masked entries must already
    /// be `-inf`. `recent` is the token history the penalty applies to.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 && p.repetition_penalty > 0.0 {
            let start = recent.len().saturating_sub(p.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &id in &recent[start..] {
                if let (true, Some(l)) = (seen.insert(id), logits.get_mut(id as usize)) {
                    *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
                }
            }
        }
        if p.is_greedy() {
            return argmax(logits);
        }
        let mut cands: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cands.is_empty() {
            return argmax(logits);
        }
        // Most likely first, ties to the lowest id: a total order, so selecting the top k
        // and sorting only them gives exactly what sorting everything would.
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < cands.len() {
            cands.select_nth_unstable_by(p.top_k - 1, order);
            cands.truncate(p.top_k);
        }
        cands.sort_unstable_by(order);
        let probs = softmax(&cands, 1.0);
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = cands.len();
            for (i, pr) in probs.iter().enumerate() {
                cum += pr;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let max = cands[0].1;
            let floor = max + p.min_p.ln();
            let keep = cands.iter().take_while(|c| c.1 >= floor).count();
            cands.truncate(keep.max(1));
        }
        let probs = softmax(&cands, p.temperature);
        let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut cum = 0.0f64;
        for (c, pr) in cands.iter().zip(&probs) {
            cum += f64::from(*pr);
            if draw < cum {
                return c.0;
            }
        }
        cands.last().map_or(0, |c| c.0)
    }
}

/// The index of the largest logit; ties go to the lowest id, as llama.cpp's reference
/// runs do.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(cands: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let max = cands.first().map_or(0.0, |c| c.1);
    let exps: Vec<f32> = cands.iter().map(|c| ((c.1 - max) / temperature).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_breaks_ties_towards_the_lowest_id() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, f32::NEG_INFINITY], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 7, ..Default::default() };
        let run = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone());
            (0..32).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(&params), run(&params));
        assert_ne!(run(&params), run(&SamplingParams { seed: 8, ..params.clone() }));
    }

    #[test]
    fn masked_tokens_are_never_drawn() {
        let mut logits = vec![0.0f32; 10];
        logits[3] = f32::NEG_INFINITY;
        let params = SamplingParams { temperature: 5.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() };
        let mut s = Sampler::new(params);
        for _ in 0..500 {
            assert_ne!(s.sample(&mut logits.clone(), &[]), 3);
        }
    }

    #[test]
    fn top_k_by_selection_keeps_exactly_the_k_best_in_order() {
        // Many ties: selection must keep the lowest ids among equal logits, as a sort does.
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 13) as f32).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 25, top_p: 1.0, min_p: 0.0, seed: 3, ..Default::default() };
        let mut s = Sampler::new(params);
        let mut expected: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let allowed: std::collections::HashSet<u32> = expected[..25].iter().map(|c| c.0).collect();
        for _ in 0..300 {
            assert!(allowed.contains(&s.sample(&mut logits.clone(), &[])));
        }
    }

    #[test]
    fn top_k_one_is_greedy_and_penalty_discourages_repeats() {
        let params = SamplingParams { temperature: 0.8, top_k: 1, ..Default::default() };
        assert_eq!(Sampler::new(params).sample(&mut [0.1, 0.2, 0.9], &[]), 2);
        let params = SamplingParams { repetition_penalty: 10.0, ..SamplingParams::greedy() };
        assert_eq!(Sampler::new(params).sample(&mut [0.1, 0.5, 0.9], &[2]), 1);
    }
}
