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

    /// What the next token's logits may be reduced to before [`Sampler::pick`]: the
    /// masked ids (`masked`, the turn policy's), this sampler's penalties over `recent`,
    /// and its top-k cut. A device that computes it itself (a GPU) reads back only the
    /// candidates instead of a whole row.
    pub fn shortlist(&self, masked: &[u32], recent: &[u32]) -> Shortlist {
        let p = &self.params;
        let mut penalized = Vec::new();
        if p.repetition_penalty != 1.0 && p.repetition_penalty > 0.0 {
            let start = recent.len().saturating_sub(p.repeat_last_n);
            let mut seen: std::collections::HashSet<u32> = masked.iter().copied().collect();
            // A masked id stays −∞ whatever the penalty; leaving it out keeps every id
            // of the list distinct, so a device may change them all at once.
            penalized.extend(recent[start..].iter().copied().filter(|&id| seen.insert(id)));
        }
        let greedy = p.is_greedy();
        Shortlist {
            masked: masked.to_vec(),
            penalized,
            penalty: p.repetition_penalty,
            keep: if greedy {
                1
            } else if p.top_k == 0 {
                usize::MAX
            } else {
                p.top_k
            },
            finite_only: !greedy,
        }
    }

    /// Picks a token from the candidates a [`Sampler::shortlist`] left, best first.
    pub fn pick(&mut self, candidates: &[Candidate]) -> u32 {
        let p = &self.params;
        let first = candidates.first().map_or(0, |c| c.0);
        if p.is_greedy() {
            return first;
        }
        let mut cands: Vec<Candidate> = candidates.iter().copied().filter(|c| c.1.is_finite()).collect();
        if cands.is_empty() {
            return first;
        }
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

    /// Picks a token from a whole row of logits: masks `masked`, then
    /// [`Sampler::shortlist`] and [`Sampler::pick`]. `logits` is changed on the way.
    /// `recent` is the token history the penalty applies to.
    pub fn sample(&mut self, logits: &mut [f32], masked: &[u32], recent: &[u32]) -> u32 {
        let mut cands = Vec::new();
        self.shortlist(masked, recent).apply(logits, &mut cands);
        self.pick(&cands)
    }
}

/// A token id and its logit.
pub type Candidate = (u32, f32);

/// The sampler's work on a row of logits up to its top-k cut, so that a device can do
/// it where the logits are and send back only what survives ([`Shortlist::apply`] is
/// the definition every device follows).
#[derive(Debug, Clone, PartialEq)]
pub struct Shortlist {
    /// Ids whose logits become −∞ (tokens that would open a turn).
    pub masked: Vec<u32>,
    /// Distinct ids, none of them masked, whose logits the repetition penalty changes.
    pub penalized: Vec<u32>,
    /// Positive logits of penalized ids are divided by this, negative ones multiplied.
    pub penalty: f32,
    /// How many candidates to keep: 1 for greedy decoding, `usize::MAX` for every one.
    pub keep: usize,
    /// Whether infinite logits rank as −∞ (sampling draws only from finite ones); NaN
    /// always does.
    pub finite_only: bool,
}

impl Shortlist {
    /// The value a logit is ranked by and reported as.
    pub fn rank(&self, logit: f32) -> f32 {
        if logit.is_nan() || (self.finite_only && logit.is_infinite()) { f32::NEG_INFINITY } else { logit }
    }

    /// Masks, penalizes (both in `logits`) and puts the best `keep` candidates, best
    /// first, in `out` (replacing what it held). Ranking is by [`Shortlist::rank`] in
    /// IEEE total order, ties to the lowest id, so every device that follows it keeps
    /// the same candidates in the same order.
    pub fn apply(&self, logits: &mut [f32], out: &mut Vec<Candidate>) {
        for &id in &self.masked {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        for &id in &self.penalized {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / self.penalty } else { *l * self.penalty };
            }
        }
        out.clear();
        let order = |a: &Candidate, b: &Candidate| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if self.keep == 1 {
            let best = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, self.rank(l)))
                .reduce(|best, c| if order(&c, &best).is_lt() { c } else { best });
            out.extend(best);
            return;
        }
        out.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, self.rank(l))));
        // A total order, so selecting the best `keep` and sorting only them gives
        // exactly what sorting everything would.
        if self.keep > 0 && self.keep < out.len() {
            out.select_nth_unstable_by(self.keep - 1, order);
            out.truncate(self.keep);
        }
        out.sort_unstable_by(order);
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
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, f32::NEG_INFINITY], &[], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 7, ..Default::default() };
        let run = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone());
            (0..32).map(|_| s.sample(&mut logits.clone(), &[], &[])).collect::<Vec<_>>()
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
            assert_ne!(s.sample(&mut logits.clone(), &[], &[]), 3);
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
            assert!(allowed.contains(&s.sample(&mut logits.clone(), &[], &[])));
        }
    }

    /// The shortlist's definition, the slow way: mask, penalize, rank, sort everything.
    fn by_full_sort(list: &Shortlist, logits: &[f32]) -> Vec<Candidate> {
        let mut l = logits.to_vec();
        for &id in &list.masked {
            l[id as usize] = f32::NEG_INFINITY;
        }
        for &id in &list.penalized {
            let x = &mut l[id as usize];
            *x = if *x > 0.0 { *x / list.penalty } else { *x * list.penalty };
        }
        let mut all: Vec<Candidate> = l.iter().enumerate().map(|(i, &x)| (i as u32, list.rank(x))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(list.keep);
        all
    }

    #[test]
    fn a_shortlist_keeps_what_a_full_sort_keeps() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [1usize, 2, 7, 40, 41, 1000, 1025] {
            // Few distinct values, so ties are everywhere; a few NaNs and infinities.
            let logits: Vec<f32> = (0..n)
                .map(|_| match next() % 50 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => -0.0,
                    r => (r % 9) as f32 - 4.0,
                })
                .collect();
            let masked: Vec<u32> = (0..n as u32).filter(|i| i % 11 == 3).collect();
            let penalized: Vec<u32> = (0..n as u32).filter(|i| i % 7 == 1 && i % 11 != 3).collect();
            for keep in [1, 3, 40, usize::MAX] {
                for finite_only in [false, true] {
                    let list =
                        Shortlist { masked: masked.clone(), penalized: penalized.clone(), penalty: 1.3, keep, finite_only };
                    let mut got = Vec::new();
                    list.apply(&mut logits.clone(), &mut got);
                    let want = by_full_sort(&list, &logits);
                    assert_eq!(format!("{got:?}"), format!("{want:?}"), "n {n}, keep {keep}, finite only {finite_only}");
                }
            }
        }
    }

    #[test]
    fn penalties_leave_masked_ids_out_and_count_each_id_once() {
        let params = SamplingParams { repetition_penalty: 1.5, repeat_last_n: 4, ..SamplingParams::greedy() };
        let list = Sampler::new(params).shortlist(&[3], &[9, 5, 5, 3, 7]);
        assert_eq!((list.penalized, list.keep, list.finite_only), (vec![5, 7], 1, false));
        let sampling = SamplingParams { temperature: 0.7, top_k: 0, ..Default::default() };
        let list = Sampler::new(sampling).shortlist(&[], &[1, 1]);
        assert_eq!((list.penalized, list.keep, list.finite_only), (vec![], usize::MAX, true));
    }

    #[test]
    fn top_k_one_is_greedy_and_penalty_discourages_repeats() {
        let params = SamplingParams { temperature: 0.8, top_k: 1, ..Default::default() };
        assert_eq!(Sampler::new(params).sample(&mut [0.1, 0.2, 0.9], &[], &[]), 2);
        let params = SamplingParams { repetition_penalty: 10.0, ..SamplingParams::greedy() };
        assert_eq!(Sampler::new(params).sample(&mut [0.1, 0.5, 0.9], &[], &[2]), 1);
    }
}
