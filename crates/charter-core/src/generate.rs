//! The generation loop, generic over the model: prefill what the cache lacks, then
//! sample, stream and stop, one token at a time.
//!
//! The [`Session`] owns the model and remembers which tokens its KV cache holds, so a
//! new prompt that shares a prefix with the last one (the next turn, a regenerate, an
//! edit of the last message) prefills only what differs.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::policy::TurnPolicy;
use crate::sampling::{Candidate, Sampler, SamplingParams, Shortlist, argmax};
use crate::stop::StopMatcher;
use crate::utf8::Utf8Stream;
use crate::vocab::Vocabulary;

/// An error from a model, boxed so the core stays independent of any engine.
pub type ModelError = Box<dyn std::error::Error + Send + Sync>;

/// A causal language model with a KV cache it owns.
pub trait LanguageModel {
    /// Number of token ids (the length of a logits row).
    fn n_vocab(&self) -> usize;

    /// How many positions the KV cache holds.
    fn capacity(&self) -> usize;

    /// How many positions are filled.
    fn n_cached(&self) -> usize;

    /// Forgets every position from `len` on.
    fn truncate(&mut self, len: usize);

    /// A context shift: forgets positions `from..to` and moves the filled positions
    /// after them down to `from..`, as if those tokens had been read there (a model
    /// with rotary embeddings turns their keys back by the distance). On failure the
    /// first `from` positions must stay as they were; the caller then reads the rest
    /// again. The default cannot shift.
    fn remove(&mut self, from: usize, to: usize) -> Result<(), ModelError> {
        let _ = (from, to);
        Err("this model cannot shift its cache".into())
    }

    /// Appends `tokens` at position [`LanguageModel::n_cached`] and returns the logits
    /// that follow the last of them.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError>;

    /// Like [`LanguageModel::forward`], into `logits` (replacing what it held), so a
    /// caller that keeps the buffer does not allocate a row per token.
    fn forward_into(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<(), ModelError> {
        *logits = self.forward(tokens)?;
        Ok(())
    }

    /// Like [`LanguageModel::forward`], but returns the logits after every token.
    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, ModelError> {
        tokens.iter().map(|&t| self.forward(&[t])).collect()
    }

    /// Like [`LanguageModel::forward_into`], for a model whose results arrive later: a
    /// GPU's readback is asynchronous on the web, where nothing may block. The default
    /// runs [`LanguageModel::forward_into`].
    fn forward_into_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        logits: &'a mut Vec<f32>,
    ) -> impl std::future::Future<Output = Result<(), ModelError>> + 'a {
        async move { self.forward_into(tokens, logits) }
    }

    /// The longest [`Shortlist`] the model computes where its logits are (0: none, the
    /// default): a GPU returns a token's candidates instead of a row of 49,152 logits.
    fn shortlist_limit(&self) -> usize {
        0
    }

    /// Kernel launches since load, where the model counts them (a GPU; `None`, the
    /// default, elsewhere): what a step costs in launches is the difference across it.
    fn dispatches(&self) -> Option<u64> {
        None
    }

    /// Like [`LanguageModel::forward_into_async`], but puts only `list`'s candidates of
    /// the logits that follow into `out`. Called with `list.keep` at most
    /// [`LanguageModel::shortlist_limit`]; the default reads the logits and applies the
    /// list here.
    fn forward_shortlist_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        list: &'a Shortlist,
        out: &'a mut Vec<Candidate>,
    ) -> impl std::future::Future<Output = Result<(), ModelError>> + 'a {
        async move {
            let mut logits = Vec::new();
            self.forward_into_async(tokens, &mut logits).await?;
            list.apply(&mut logits, out);
            Ok(())
        }
    }
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model ended its turn with a stop token.
    EndOfTurn,
    /// The reply reached a stop string.
    StopString,
    /// The token limit was reached.
    Length,
    /// The caller cancelled.
    Cancelled,
    /// The context window is full.
    ContextFull,
}

impl StopReason {
    /// The name used in JSON and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndOfTurn => "end_of_turn",
            StopReason::StopString => "stop_string",
            StopReason::Length => "length",
            StopReason::Cancelled => "cancelled",
            StopReason::ContextFull => "context_full",
        }
    }
}

/// Why generation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt holds an id outside the vocabulary.
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    /// The prompt does not fit the context window with room for one more token.
    #[error("the prompt has {n_prompt} tokens but the context holds {capacity}")]
    PromptTooLong {
        /// Prompt length.
        n_prompt: usize,
        /// Context capacity.
        capacity: usize,
    },
    /// The model failed.
    #[error("model: {0}")]
    Model(#[source] ModelError),
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// Raw-transcript mode: no masking, no stopping at the end of the turn, control
    /// tokens shown as text. For seeing what the model would write next; its output is
    /// never fed back into a conversation.
    pub raw: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { sampling: SamplingParams::default(), max_tokens: 512, raw: false }
    }
}

/// Timings and counts of one reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens found already in the KV cache.
    pub reused_tokens: usize,
    /// Of those, the tokens a context shift kept: they followed messages that left the
    /// window, and moved down instead of being read again.
    #[serde(default)]
    pub shifted_tokens: usize,
    /// Prompt tokens run through the model.
    pub prefill_tokens: usize,
    /// Seconds spent on them.
    pub prefill_seconds: f64,
    /// Tokens generated.
    pub decode_tokens: usize,
    /// Seconds from the end of prefill to the end of the reply.
    pub decode_seconds: f64,
    /// Seconds from the start to the first streamed token.
    pub first_token_seconds: f64,
}

impl GenerationStats {
    /// Prefill throughput.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_seconds)
    }

    /// Decode throughput.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_seconds)
    }
}

fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 { n as f64 / seconds } else { 0.0 }
}

/// A finished reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Generated ids, including the stop token when one ended the reply.
    pub ids: Vec<u32>,
    /// The reply's text, as streamed.
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// The stop string, when one ended it.
    pub stop_string: Option<String>,
    /// The tokens that were masked during this reply.
    pub n_masked: usize,
    /// Timings.
    pub stats: GenerationStats,
}

/// Callbacks from the loop: streaming, cancellation and the caller's clock.
pub trait GenerateHooks {
    /// Text safe to show, in order.
    fn on_text(&mut self, _text: &str) {}

    /// Each sampled token id.
    fn on_token(&mut self, _id: u32) {}

    /// Polled between tokens; `true` ends the reply with [`StopReason::Cancelled`].
    fn is_cancelled(&mut self) -> bool {
        false
    }

    /// Seconds on any monotonic clock (the core has none of its own).
    fn now(&mut self) -> f64 {
        0.0
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default)]
pub struct NoHooks;

impl GenerateHooks for NoHooks {}

/// A model together with the record of what its KV cache holds.
#[derive(Debug)]
pub struct Session<M> {
    model: M,
    cached: Vec<u32>,
    /// The positions the last [`Session::shift_for`] moved down, for the next reply's
    /// stats.
    shifted: (usize, usize),
}

impl<M: LanguageModel> Session<M> {
    /// A session over a model whose cache is empty.
    pub fn new(mut model: M) -> Self {
        model.truncate(0);
        Session { model, cached: Vec::new(), shifted: (0, 0) }
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The tokens in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Forgets the cache from `len` on (to rewind to a message boundary).
    pub fn rewind(&mut self, len: usize) {
        let len = len.min(self.cached.len());
        self.cached.truncate(len);
        self.model.truncate(len);
    }

    /// Runs `tokens` through the model so that a later prompt starting with them reuses
    /// the cache (the system block, prefilled while the user types). Reuses whatever
    /// prefix the cache already shares with them.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<(), GenerateError> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.check_prompt(tokens)?;
        let common = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        if common == tokens.len() {
            return Ok(());
        }
        self.rewind(common);
        self.model.forward(&tokens[common..]).map_err(GenerateError::Model)?;
        self.cached.extend_from_slice(&tokens[common..]);
        Ok(())
    }

    /// [`Session::prefill`] for a model that reads its results back asynchronously.
    pub async fn prefill_async(&mut self, tokens: &[u32]) -> Result<(), GenerateError> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.check_prompt(tokens)?;
        let common = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        if common == tokens.len() {
            return Ok(());
        }
        self.rewind(common);
        let mut logits = Vec::new();
        self.model.forward_into_async(&tokens[common..], &mut logits).await.map_err(GenerateError::Model)?;
        self.cached.extend_from_slice(&tokens[common..]);
        Ok(())
    }

    /// Appends `tokens` after what the cache holds and returns the logits that follow
    /// the last of them, as the raw model gives them (no turn policy, no sampling).
    pub fn extend(&mut self, tokens: &[u32]) -> Result<Vec<f32>, GenerateError> {
        let mut logits = Vec::new();
        self.extend_into(tokens, &mut logits)?;
        Ok(logits)
    }

    /// Like [`Session::extend`], into a buffer the caller keeps.
    pub fn extend_into(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<(), GenerateError> {
        self.check_prompt(tokens)?;
        let n = self.cached.len() + tokens.len();
        if n >= self.model.capacity() {
            return Err(GenerateError::PromptTooLong { n_prompt: n, capacity: self.model.capacity() });
        }
        self.model.forward_into(tokens, logits).map_err(GenerateError::Model)?;
        self.cached.extend_from_slice(tokens);
        Ok(())
    }

    /// Appends `tokens` after what the cache holds and returns the raw model's greedy
    /// choice of the next token (no turn policy): where the model shortlists, only that
    /// one candidate is read back, as in the app's greedy step. `row` and `best` are the
    /// caller's buffers.
    pub async fn extend_greedy_async(
        &mut self,
        tokens: &[u32],
        row: &mut Vec<f32>,
        best: &mut Vec<Candidate>,
    ) -> Result<u32, GenerateError> {
        self.check_prompt(tokens)?;
        let n = self.cached.len() + tokens.len();
        if n >= self.model.capacity() {
            return Err(GenerateError::PromptTooLong { n_prompt: n, capacity: self.model.capacity() });
        }
        let next = if self.model.shortlist_limit() >= 1 {
            let list = Shortlist { masked: Vec::new(), penalized: Vec::new(), penalty: 1.0, keep: 1, finite_only: false };
            best.clear();
            self.model.forward_shortlist_async(tokens, &list, best).await.map_err(GenerateError::Model)?;
            best.first().map(|c| c.0).ok_or_else(|| GenerateError::Model("the model gave no candidate".into()))?
        } else {
            self.model.forward_into_async(tokens, row).await.map_err(GenerateError::Model)?;
            argmax(row)
        };
        self.cached.extend_from_slice(tokens);
        Ok(next)
    }

    /// Takes over a KV state that `restore` puts into the model from elsewhere (a saved
    /// prefill of `tokens`, from an earlier load of the same model): afterwards the
    /// session knows the cache holds `tokens`. If `restore` fails, or leaves another
    /// number of positions, the cache is emptied and the error returned.
    pub fn restore(
        &mut self,
        tokens: &[u32],
        restore: impl FnOnce(&mut M) -> Result<(), ModelError>,
    ) -> Result<(), GenerateError> {
        self.rewind(0);
        let result = restore(&mut self.model).and_then(|()| {
            let n = self.model.n_cached();
            if n == tokens.len() {
                Ok(())
            } else {
                Err(format!("the restored state holds {n} positions, not {}", tokens.len()).into())
            }
        });
        match result {
            Ok(()) => {
                self.cached = tokens.to_vec();
                Ok(())
            }
            Err(e) => {
                self.model.truncate(0);
                Err(GenerateError::Model(e))
            }
        }
    }

    /// Teacher-forced scoring: the logits predicting each of `ids` after `prompt` (row
    /// `i` follows `prompt` and `ids[..i]`), reusing the cached prefix.
    pub fn score(&mut self, prompt: &[u32], ids: &[u32]) -> Result<Vec<Vec<f32>>, GenerateError> {
        let all: Vec<u32> = prompt.iter().chain(ids).copied().collect();
        self.check_prompt(&all)?;
        let (common, _) = self.prepare(prompt);
        let mut rows = vec![self.model.forward(&prompt[common..]).map_err(GenerateError::Model)?];
        self.cached.extend_from_slice(&prompt[common..]);
        if ids.len() > 1 {
            let fed = &ids[..ids.len() - 1];
            rows.extend(self.model.forward_all(fed).map_err(GenerateError::Model)?);
            self.cached.extend_from_slice(fed);
        }
        rows.truncate(ids.len().max(1));
        Ok(rows)
    }

    fn check_prompt(&self, prompt: &[u32]) -> Result<(), GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let n_vocab = self.model.n_vocab();
        if let Some(&bad) = prompt.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(GenerateError::BadToken(bad));
        }
        if prompt.len() >= self.model.capacity() {
            return Err(GenerateError::PromptTooLong { n_prompt: prompt.len(), capacity: self.model.capacity() });
        }
        Ok(())
    }

    /// Truncates the cache to the longest prefix it shares with `prompt`, keeping at
    /// least one prompt token to run so there are logits to sample from. Returns how
    /// many prompt tokens are cached, and how many of them the last
    /// [`Session::shift_for`] kept.
    fn prepare(&mut self, prompt: &[u32]) -> (usize, usize) {
        let mut common = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        if common == prompt.len() {
            common -= 1;
        }
        self.rewind(common);
        let (start, end) = std::mem::take(&mut self.shifted);
        (common, common.min(end).saturating_sub(start))
    }

    /// A context shift for `prompt`, a conversation whose oldest messages left the
    /// window: where the prompt leaves out a span the cache holds and goes on with
    /// tokens the cache holds after it ([`crate::reuse::plan`]), the span leaves the
    /// cache and those tokens move down, so the next [`Session::start`] reads neither
    /// again. Only for a prompt that dropped messages: an edited message must be read
    /// again from the edit on, not spliced. Returns how many tokens the shift kept (0:
    /// none made, or the model cannot shift, and the cache holds the common prefix).
    pub fn shift_for(&mut self, prompt: &[u32]) -> usize {
        let plan = crate::reuse::plan(&self.cached, prompt);
        self.shifted = (0, 0);
        if plan.removed == 0 {
            return 0;
        }
        let (from, to) = (plan.prefix, plan.prefix + plan.removed);
        if self.model.remove(from, to).is_err() {
            self.rewind(from);
            return 0;
        }
        self.cached.drain(from..to);
        self.rewind(plan.kept());
        self.shifted = (plan.prefix, plan.kept());
        plan.shifted
    }

    /// Generates the assistant's reply to `prompt`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        vocab: &dyn Vocabulary,
        policy: &TurnPolicy,
        options: &GenerateOptions,
        hooks: &mut dyn GenerateHooks,
    ) -> Result<Reply, GenerateError> {
        let mut generation = self.start(prompt, vocab, policy, options, hooks)?;
        loop {
            if let Some(reply) = generation.step(hooks)? {
                return Ok(reply);
            }
        }
    }

    /// Prefills `prompt` and returns the reply as a state machine that samples one
    /// token per [`Generation::step`]. A caller without threads (a browser worker)
    /// yields to its event loop between steps, so a cancel request can arrive.
    pub fn start<'a>(
        &'a mut self,
        prompt: &[u32],
        vocab: &'a dyn Vocabulary,
        policy: &TurnPolicy,
        options: &GenerateOptions,
        hooks: &mut dyn GenerateHooks,
    ) -> Result<Generation<'a, M>, GenerateError> {
        self.check_prompt(prompt)?;
        let start = hooks.now();
        let reuse = self.prepare(prompt);
        let logits = self.model.forward(&prompt[reuse.0..]).map_err(GenerateError::Model)?;
        let mut generation = self.begin(prompt, reuse, logits, start, vocab, policy, options);
        generation.prefilled(hooks);
        Ok(generation)
    }

    /// [`Session::start`] for a model that reads its results back asynchronously.
    pub async fn start_async<'a>(
        &'a mut self,
        prompt: &[u32],
        vocab: &'a dyn Vocabulary,
        policy: &TurnPolicy,
        options: &GenerateOptions,
        hooks: &mut dyn GenerateHooks,
    ) -> Result<Generation<'a, M>, GenerateError> {
        self.check_prompt(prompt)?;
        let start = hooks.now();
        let reuse = self.prepare(prompt);
        let mut generation = self.begin(prompt, reuse, Vec::new(), start, vocab, policy, options);
        generation.read_async(&prompt[reuse.0..]).await?;
        generation.prefilled(hooks);
        Ok(generation)
    }

    /// The reply's state, with the prompt's uncached tail (from `reuse.0`; `reuse.1` of
    /// the cached ones kept by a shift) to be read or,
    /// when `logits` holds a row, read already.
    #[allow(clippy::too_many_arguments)]
    fn begin<'a>(
        &'a mut self,
        prompt: &[u32],
        (common, shifted): (usize, usize),
        logits: Vec<f32>,
        start: f64,
        vocab: &'a dyn Vocabulary,
        policy: &TurnPolicy,
        options: &GenerateOptions,
    ) -> Generation<'a, M> {
        let raw = options.raw;
        let (masked, stop_ids): (Vec<u32>, BTreeSet<u32>) = if raw {
            (Vec::new(), BTreeSet::new())
        } else {
            (policy.masked_ids.iter().copied().collect(), policy.stop_ids.clone())
        };
        let stops = StopMatcher::new(if raw { &[] } else { &policy.stop_strings });
        Generation {
            session: self,
            vocab,
            raw,
            max_tokens: options.max_tokens,
            masked,
            stop_ids,
            stops,
            sampler: Sampler::new(options.sampling.clone()),
            utf8: Utf8Stream::new(),
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            common,
            shifted,
            logits,
            candidates: Vec::new(),
            shortlisted: false,
            ids: Vec::new(),
            text: String::new(),
            first_token_at: None,
            start,
            prefill_end: start,
            finished: false,
        }
    }
}

/// What follows a sampled token.
enum Next {
    /// The model reads it.
    Feed(u32),
    /// The reply ends.
    End(StopReason, Option<String>),
}

/// A reply in progress: the prompt is prefilled and each [`Generation::step`] samples
/// one token. Dropping it mid-way leaves the session's cache consistent with what was
/// fed, so the next prompt reuses it.
pub struct Generation<'a, M> {
    session: &'a mut Session<M>,
    vocab: &'a dyn Vocabulary,
    raw: bool,
    max_tokens: usize,
    masked: Vec<u32>,
    stop_ids: BTreeSet<u32>,
    stops: StopMatcher,
    sampler: Sampler,
    utf8: Utf8Stream,
    history: Vec<u32>,
    prompt_len: usize,
    common: usize,
    shifted: usize,
    /// The next token's logits, or (when `shortlisted`) only its candidates.
    logits: Vec<f32>,
    candidates: Vec<Candidate>,
    shortlisted: bool,
    ids: Vec<u32>,
    text: String,
    first_token_at: Option<f64>,
    start: f64,
    prefill_end: f64,
    finished: bool,
}

impl<M> std::fmt::Debug for Generation<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation").field("ids", &self.ids).field("finished", &self.finished).finish_non_exhaustive()
    }
}

impl<M: LanguageModel> Generation<'_, M> {
    /// The model, for reports.
    pub fn model(&self) -> &M {
        &self.session.model
    }

    /// Tokens sampled so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Samples the next token. Returns the reply once it has ended, `None` while it
    /// goes on. Calling it again after the end is an error-free no-op returning `None`.
    pub fn step(&mut self, hooks: &mut dyn GenerateHooks) -> Result<Option<Reply>, GenerateError> {
        if self.finished {
            return Ok(None);
        }
        let ended = match self.sample_one(hooks) {
            Ok(Next::Feed(token)) => {
                self.shortlisted = false;
                let model = &mut self.session.model;
                model.forward_into(&[token], &mut self.logits).map(|()| None).map_err(GenerateError::Model)
            }
            Ok(Next::End(reason, stop_string)) => Ok(Some((reason, stop_string))),
            Err(e) => Err(e),
        };
        self.settle(ended, hooks)
    }

    /// [`Generation::step`] for a model that reads its results back asynchronously.
    pub async fn step_async(&mut self, hooks: &mut dyn GenerateHooks) -> Result<Option<Reply>, GenerateError> {
        if self.finished {
            return Ok(None);
        }
        let ended = match self.sample_one(hooks) {
            Ok(Next::Feed(token)) => self.read_async(&[token]).await.map(|()| None),
            Ok(Next::End(reason, stop_string)) => Ok(Some((reason, stop_string))),
            Err(e) => Err(e),
        };
        self.settle(ended, hooks)
    }

    /// The prompt's tail has been read: the session records it, and the clock the end
    /// of the prefill.
    fn prefilled(&mut self, hooks: &mut dyn GenerateHooks) {
        let s = &mut self.session;
        s.cached.extend_from_slice(&self.history[self.common..self.prompt_len]);
        self.prefill_end = hooks.now();
    }

    /// Reads `tokens`, keeping what the next token is sampled from: only the shortlist
    /// where the model computes it itself (on a GPU), the whole row otherwise.
    async fn read_async(&mut self, tokens: &[u32]) -> Result<(), GenerateError> {
        let list = self.sampler.shortlist(&self.masked, &self.history);
        let model = &mut self.session.model;
        self.shortlisted = list.keep <= model.shortlist_limit();
        let read = if self.shortlisted {
            model.forward_shortlist_async(tokens, &list, &mut self.candidates).await
        } else {
            model.forward_into_async(tokens, &mut self.logits).await
        };
        read.map_err(GenerateError::Model)
    }

    /// After a step: the session records a token the model has read; an end finishes
    /// the reply; an error finishes it too.
    fn settle(
        &mut self,
        ended: Result<Option<(StopReason, Option<String>)>, GenerateError>,
        hooks: &mut dyn GenerateHooks,
    ) -> Result<Option<Reply>, GenerateError> {
        match ended {
            Ok(None) => {
                if let Some(&token) = self.ids.last() {
                    self.session.cached.push(token);
                }
                Ok(None)
            }
            Ok(Some((reason, stop_string))) => Ok(Some(self.finish(reason, stop_string, hooks))),
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    fn emit(&mut self, piece: &str, hooks: &mut dyn GenerateHooks) {
        if !piece.is_empty() {
            if self.first_token_at.is_none() {
                self.first_token_at = Some(hooks.now());
            }
            self.text.push_str(piece);
            hooks.on_text(piece);
        }
    }

    /// Samples a token from the current logits: the reply ends, or the model must read
    /// the token next.
    fn sample_one(&mut self, hooks: &mut dyn GenerateHooks) -> Result<Next, GenerateError> {
        if hooks.is_cancelled() {
            return Ok(Next::End(StopReason::Cancelled, None));
        }
        if self.ids.len() >= self.max_tokens {
            return Ok(Next::End(StopReason::Length, None));
        }
        let token = if self.shortlisted {
            self.sampler.pick(&self.candidates)
        } else {
            self.sampler.sample(&mut self.logits, &self.masked, &self.history)
        };
        self.ids.push(token);
        self.history.push(token);
        hooks.on_token(token);
        if self.stop_ids.contains(&token) {
            return Ok(Next::End(StopReason::EndOfTurn, None));
        }
        let shown = self.raw || !self.vocab.is_control(token);
        let piece = if shown { self.utf8.push(self.vocab.token_bytes(token)) } else { String::new() };
        let scan = self.stops.push(&piece);
        self.emit(&scan.emit, hooks);
        if let Some(s) = scan.stopped {
            return Ok(Next::End(StopReason::StopString, Some(s)));
        }
        let model = &self.session.model;
        if model.n_cached() + 1 > model.capacity() {
            return Ok(Next::End(StopReason::ContextFull, None));
        }
        Ok(Next::Feed(token))
    }

    fn finish(&mut self, stop_reason: StopReason, stop_string: Option<String>, hooks: &mut dyn GenerateHooks) -> Reply {
        self.finished = true;
        if stop_string.is_none() {
            let tail = self.utf8.finish();
            let scan = self.stops.push(&tail);
            self.emit(&scan.emit, hooks);
            let rest = if scan.stopped.is_some() { String::new() } else { self.stops.finish() };
            self.emit(&rest, hooks);
        }
        let end = hooks.now();
        let stats = GenerationStats {
            prompt_tokens: self.prompt_len,
            reused_tokens: self.common,
            shifted_tokens: self.shifted,
            prefill_tokens: self.prompt_len - self.common,
            prefill_seconds: self.prefill_end - self.start,
            decode_tokens: self.ids.len(),
            decode_seconds: end - self.prefill_end,
            first_token_seconds: self.first_token_at.unwrap_or(end) - self.start,
        };
        Reply {
            ids: std::mem::take(&mut self.ids),
            text: std::mem::take(&mut self.text),
            stop_reason,
            stop_string,
            n_masked: self.masked.len(),
            stats,
        }
    }
}
