//! A speed test of a model on this device, the same everywhere Charter runs: the
//! browser worker (the app's speed test and `cargo xtask bench`) and the command line
//! (`charter bench`) both run [`Session::measure_async`] ([`Session::measure`] where
//! nothing needs to wait), so their figures mean the same. Decoding is the app's greedy
//! step: on a GPU only the chosen token comes back, and the launches it takes are
//! counted.
//!
//! What is timed, after one untimed pass: prefills of fresh prompts (from an empty
//! cache) of each length asked,
//! greedy decoding of a number of tokens after the shortest of them, and a second turn:
//! with a context already cached, the time from reading the new turn's tokens to the
//! first token of the reply. Token ids are given, so other engines can be timed on the
//! very same tokens. The clock comes in from outside: a wasm worker has no system clock.

use serde::{Deserialize, Serialize};

use crate::generate::{GenerateError, LanguageModel, Session};
use crate::{ChatTemplate, Message, Vocabulary, build_prompt};

/// The speed test's first request: long enough that, behind a small model's system
/// block, the prompt passes 300 tokens.
const REQUEST: &str = "Write a detailed story about a lighthouse keeper who finds a message in a bottle. \
Describe the keeper, the lighthouse on its rock, the sea in each season, the storm that brings the bottle, \
the old glass and the cork, the paper inside and the handwriting on it, who wrote the message and why, \
and what the keeper decides to do after reading it. Give the keeper a name, a past and a reason to stay.";
/// The reply the second turn follows.
const REPLY: &str = "Elias had kept the light on Gull Rock for thirty winters. The night the storm broke, \
he found a green bottle wedged between the stones, its cork sealed with wax, and inside a letter \
written in a careful hand: a girl on the mainland asking whoever found it to tell her whether the \
light was still kept, because her grandfather had once been its keeper.";
/// The second turn.
const FOLLOW_UP: &str = "Now tell me what happened next, in as much detail.";

/// What to time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchPlan {
    /// Tokens for the fresh prompts, at least as many as the longest prefill.
    pub prompt: Vec<u32>,
    /// Lengths of fresh prompts to prefill, each from an empty cache.
    pub prefill: Vec<usize>,
    /// Tokens to decode greedily after the shortest prompt.
    pub decode: usize,
    /// The conversation so far, for the second turn (cached before the clock starts).
    pub context: Vec<u32>,
    /// The second turn's tokens, read after `context`.
    pub turn: Vec<u32>,
}

/// One timed prefill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefillTime {
    /// Prompt tokens.
    pub tokens: usize,
    /// Seconds.
    pub seconds: f64,
}

/// The figures of a [`BenchPlan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Each prefill.
    pub prefill: Vec<PrefillTime>,
    /// Tokens decoded.
    pub decode_tokens: usize,
    /// Seconds they took.
    pub decode_seconds: f64,
    /// Tokens of the second turn.
    pub turn_tokens: usize,
    /// Seconds from reading the second turn to its first token.
    pub turn_seconds: f64,
    /// Kernel launches per decoded token, where the model counts them (a GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatches_per_token: Option<f64>,
}

impl BenchResult {
    /// Prefill speed for `tokens`, in tokens per second.
    pub fn prefill_tokens_per_s(&self, tokens: usize) -> Option<f64> {
        self.prefill.iter().find(|p| p.tokens == tokens).map(|p| p.tokens as f64 / p.seconds)
    }

    /// Decode speed, in tokens per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_seconds
    }
}

/// Why a plan cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The plan asks for more than it gives or than the model holds.
    #[error("bad speed test: {0}")]
    Plan(String),
    /// The model failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

impl<M: LanguageModel> Session<M> {
    /// Runs `plan`, reading seconds from `now`. The cache is empty afterwards: a caller
    /// that had a prefix cached puts it back. For a model whose every read completes at
    /// once (the CPU's; a GPU natively, which waits inside); see
    /// [`Session::measure_async`] for the others.
    pub fn measure(&mut self, plan: &BenchPlan, now: &mut dyn FnMut() -> f64) -> Result<BenchResult, BenchError> {
        let mut run = std::pin::pin!(self.measure_async(plan, now));
        match run.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => Err(BenchError::Plan("this model's results arrive later; time it asynchronously".into())),
        }
    }

    /// [`Session::measure`] for any model, awaiting its reads.
    pub async fn measure_async(&mut self, plan: &BenchPlan, now: &mut dyn FnMut() -> f64) -> Result<BenchResult, BenchError> {
        let shortest = plan.prefill.iter().copied().min().ok_or_else(|| BenchError::Plan("no prefill lengths".into()))?;
        let longest = plan.prefill.iter().copied().max().unwrap_or(0);
        if shortest == 0 || longest > plan.prompt.len() {
            return Err(BenchError::Plan(format!("prefills of {shortest}..={longest} tokens from {} prompt tokens", plan.prompt.len())));
        }
        if plan.context.is_empty() || plan.turn.is_empty() {
            return Err(BenchError::Plan("an empty second turn".into()));
        }
        let (mut row, mut best) = (Vec::new(), Vec::new());
        // One untimed pass first: the first use of a model touches its memory for the
        // first time, which is the load's cost, not the prefill's.
        self.rewind(0);
        self.extend_greedy_async(&plan.prompt[..shortest], &mut row, &mut best).await?;
        let mut prefill = Vec::with_capacity(plan.prefill.len());
        for &n in &plan.prefill {
            self.rewind(0);
            let start = now();
            self.extend_greedy_async(&plan.prompt[..n], &mut row, &mut best).await?;
            prefill.push(PrefillTime { tokens: n, seconds: now() - start });
        }
        self.rewind(0);
        let mut next = self.extend_greedy_async(&plan.prompt[..shortest], &mut row, &mut best).await?;
        let launched = self.model().dispatches();
        let start = now();
        for _ in 0..plan.decode {
            next = self.extend_greedy_async(&[next], &mut row, &mut best).await?;
        }
        let decode_seconds = now() - start;
        let dispatches_per_token = match (launched, self.model().dispatches()) {
            (Some(a), Some(b)) if plan.decode > 0 => Some(b.saturating_sub(a) as f64 / plan.decode as f64),
            _ => None,
        };
        self.rewind(0);
        self.extend_greedy_async(&plan.context, &mut row, &mut best).await?;
        let start = now();
        self.extend_greedy_async(&plan.turn, &mut row, &mut best).await?;
        let turn_seconds = now() - start;
        self.rewind(0);
        Ok(BenchResult {
            prefill,
            decode_tokens: plan.decode,
            decode_seconds,
            turn_tokens: plan.turn.len(),
            turn_seconds,
            dispatches_per_token,
        })
    }
}

impl BenchPlan {
    /// Charter's speed test for a model: a conversation as the app builds it (the
    /// system block, then a user's request, through the model's own template), fresh
    /// prefills of its first 42 and 300 tokens (where it has that many), 128 decoded
    /// tokens, and a second turn: a reply and a follow-up read after the first request.
    pub fn chat(template: &ChatTemplate, vocab: &dyn Vocabulary, system: &str) -> Result<BenchPlan, BenchError> {
        let plan_error = |e: crate::PromptError| BenchError::Plan(e.to_string());
        let mut first = Vec::new();
        if !system.is_empty() {
            first.push(Message::system(system));
        }
        first.push(Message::user(REQUEST));
        let prompt = build_prompt(template, vocab, &first, true).map_err(plan_error)?.ids;
        let mut second = first.clone();
        second.push(Message::assistant(REPLY));
        second.push(Message::user(FOLLOW_UP));
        let whole = build_prompt(template, vocab, &second, true).map_err(plan_error)?.ids;
        // The context is what the second prompt shares with the first turn and its reply.
        second.truncate(second.len() - 1);
        let answered = build_prompt(template, vocab, &second, false).map_err(plan_error)?.ids;
        let split = answered.iter().zip(&whole).take_while(|(a, b)| a == b).count();
        let prefill: Vec<usize> = [42, 300].into_iter().filter(|&n| n <= prompt.len()).collect();
        if prefill.is_empty() || split == whole.len() {
            return Err(BenchError::Plan(format!("a prompt of {} tokens is too short for the speed test", prompt.len())));
        }
        Ok(BenchPlan { prompt, prefill, decode: 128, context: whole[..split].to_vec(), turn: whole[split..].to_vec() })
    }

    /// A plan over tokens of the model's own: the fresh prompts are the first tokens of
    /// `prompt`, the second turn reads its last `turn` tokens after the rest.
    pub fn from_tokens(prompt: Vec<u32>, prefill: Vec<usize>, decode: usize, turn: usize) -> BenchPlan {
        let split = prompt.len().saturating_sub(turn);
        BenchPlan { context: prompt[..split].to_vec(), turn: prompt[split..].to_vec(), prompt, prefill, decode }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::ModelError;

    /// A model that costs one clock tick per token read and always predicts token 3,
    /// recording what it was asked to read.
    struct Ticking {
        cached: usize,
        reads: Vec<usize>,
        clock: std::rc::Rc<std::cell::Cell<f64>>,
    }

    impl LanguageModel for Ticking {
        fn n_vocab(&self) -> usize {
            8
        }
        fn capacity(&self) -> usize {
            64
        }
        fn n_cached(&self) -> usize {
            self.cached
        }
        fn truncate(&mut self, len: usize) {
            self.cached = self.cached.min(len);
        }
        fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
            self.cached += tokens.len();
            self.reads.push(tokens.len());
            self.clock.set(self.clock.get() + tokens.len() as f64);
            let mut logits = vec![0.0; 8];
            logits[3] = 1.0;
            Ok(logits)
        }
    }

    #[test]
    fn each_part_is_timed_from_an_empty_cache_and_the_cache_is_left_empty() {
        let clock = std::rc::Rc::new(std::cell::Cell::new(0.0));
        let mut session = Session::new(Ticking { cached: 0, reads: Vec::new(), clock: clock.clone() });
        let plan = BenchPlan::from_tokens((0..30).map(|i| i % 8).collect(), vec![4, 20], 5, 6);
        let c = clock.clone();
        let result = session.measure(&plan, &mut move || c.get()).unwrap();
        // A warm-up, fresh prefills of 4 and 20, the 4-token start of the decode, 5 decode
        // steps, the 24-token context and the 6-token turn.
        assert_eq!(session.model().reads, [4, 4, 20, 4, 1, 1, 1, 1, 1, 24, 6]);
        assert_eq!(result.prefill, [PrefillTime { tokens: 4, seconds: 4.0 }, PrefillTime { tokens: 20, seconds: 20.0 }]);
        assert_eq!((result.decode_tokens, result.decode_seconds), (5, 5.0));
        assert_eq!((result.turn_tokens, result.turn_seconds), (6, 6.0));
        assert_eq!(result.prefill_tokens_per_s(20), Some(1.0));
        assert!(session.cached_tokens().is_empty() && session.model().n_cached() == 0);
    }

    /// One token per byte, no control tokens: what a prompt's text is, token for token.
    struct Bytes;

    impl Vocabulary for Bytes {
        fn n_vocab(&self) -> usize {
            256
        }
        fn encode(&self, text: &str, _: bool) -> Result<Vec<u32>, crate::VocabError> {
            Ok(text.bytes().map(u32::from).collect())
        }
        fn token_bytes(&self, id: u32) -> &[u8] {
            const ALL: [u8; 256] = {
                let mut a = [0u8; 256];
                let mut i = 0;
                while i < 256 {
                    a[i] = i as u8;
                    i += 1;
                }
                a
            };
            &ALL[id as usize..id as usize + 1]
        }
        fn is_control(&self, _: u32) -> bool {
            false
        }
        fn control_tokens(&self) -> Vec<u32> {
            Vec::new()
        }
        fn bos(&self) -> Option<u32> {
            None
        }
        fn eos(&self) -> Option<u32> {
            None
        }
        fn adds_bos(&self) -> bool {
            false
        }
        fn end_of_generation(&self) -> Vec<u32> {
            Vec::new()
        }
    }

    #[test]
    fn the_chat_plan_follows_the_template_and_reads_the_second_turn_after_its_context() {
        let template = ChatTemplate::new(
            crate::template::CHATML_TEMPLATE,
            crate::TemplateSource::BuiltinChatMl,
            crate::TemplateTokens { bos: String::new(), eos: String::new() },
        )
        .unwrap();
        let vocab = Bytes;
        let plan = BenchPlan::chat(&template, &vocab, "You are Charter.").unwrap();
        assert!(plan.prompt.len() >= 300, "{} prompt tokens", plan.prompt.len());
        assert_eq!(plan.prefill, [42, 300]);
        assert_eq!(plan.decode, 128);
        // The context starts with the first prompt's turns and holds the reply; the turn
        // is the follow-up, up to the assistant's header.
        let text = |ids: &[u32]| String::from_utf8(ids.iter().map(|&i| i as u8).collect()).unwrap();
        assert!(text(&plan.context).contains("Elias had kept the light"));
        assert!(text(&plan.turn).contains("Now tell me what happened next"));
        assert!(text(&plan.turn).ends_with("<|im_start|>assistant\n"), "{:?}", text(&plan.turn));
        let prompt_text = text(&plan.prompt);
        assert!(text(&plan.context).starts_with(prompt_text.trim_end_matches("<|im_start|>assistant\n")));
    }

    #[test]
    fn a_plan_that_asks_for_more_than_it_gives_is_refused() {
        let clock = std::rc::Rc::new(std::cell::Cell::new(0.0));
        let mut session = Session::new(Ticking { cached: 0, reads: Vec::new(), clock });
        let plan = BenchPlan::from_tokens(vec![1; 10], vec![42], 5, 3);
        assert!(matches!(session.measure(&plan, &mut || 0.0), Err(BenchError::Plan(_))));
        let plan = BenchPlan::from_tokens(vec![1; 100], vec![42], 5, 3);
        assert!(session.measure(&plan, &mut || 0.0).is_err(), "longer than the context");
    }
}
