//! The loaded model as the worker holds it: the tokenizer, template and turn policy
//! beside a [`Session`] over the decoder, and the conversions from the engine's types
//! to the protocol's.

use charter_core::chat::merge_runs;
use charter_core::prompt::build_prompt;
use charter_core::vocab::Vocabulary;
use charter_core::{Message, Prompt, Reply, Session, StopReason, TokenOrigin, TurnPolicy};
use charter_engine::tokenizer::Tokenizer;
use charter_engine::{LoadOptions, Model, ModelDecoder, ModelInfo};
use charter_core::template::ChatTemplate;
use charter_core::constitution::{
    Composed, Constitution, OperatorConfig, UserSettings, check_layers, compose, mark_units,
};
use charter_core::history::{Window, fit_to_window};
use charter_protocol::{ContextToken, ErrorKind, FinishedReply, LoadedModel, Origin, SystemBlock, TokenText, WorkerError};

/// The layers under Charter's constitution: the site operator's configuration and the
/// user's settings, as last accepted.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// The operator's configuration, where a site has one.
    pub operator: Option<OperatorConfig>,
    /// The user's settings.
    pub user: UserSettings,
}

impl Layers {
    /// Checks both layers against the constitution (the token cap on the operator's
    /// text is checked when a block is composed with a model's tokenizer).
    pub fn validate(&self) -> Result<(), WorkerError> {
        check_layers(&builtin()?, self.operator.as_ref(), &self.user)
            .map_err(|e| WorkerError::new(ErrorKind::Config, e.to_string()))
    }
}

fn builtin() -> Result<Constitution, WorkerError> {
    Constitution::builtin().map_err(|e| WorkerError::new(ErrorKind::Internal, format!("Charter's constitution: {e}")))
}

/// The size of this worker's WebAssembly memory.
fn memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    0
}

/// A model ready to chat.
pub struct Engine {
    /// Facts about the model.
    pub info: ModelInfo,
    /// Its vocabulary.
    pub tokenizer: Tokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
    /// Its turn policy.
    pub policy: TurnPolicy,
    /// The decoder and what its KV cache holds.
    pub session: Session<ModelDecoder>,
    /// Charter's system block for this model, and the budget it was composed for.
    pub system: (Composed, usize),
    /// Tokens kept free for the reply when older messages are dropped.
    pub reply_reserve: usize,
    /// Why the window is as long as it is, for the user.
    pub window_reason: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads a GGUF held in memory and composes its system block under `layers`. A
    /// block that cannot be composed (the operator's text over its cap, a window too
    /// small for the hard limits) fails the load: Charter does not run without it.
    ///
    /// With a GPU device the model goes onto it once the device's products agree with
    /// the CPU's on the model's own weights; if they do not, or the load fails there, the
    /// model runs on the CPU and the second value says why. The window is chosen by
    /// `charter_core::window`, its cache within `cache_budget_bytes`. On the CPU, matrix
    /// products are shared among `threads` where there are any.
    pub async fn load(
        bytes: Vec<u8>,
        context_length: Option<usize>,
        layers: &Layers,
        gpu: Option<charter_gpu::Gpu>,
        threads: Option<std::rc::Rc<charter_threads::Pool>>,
        cache_budget_bytes: u64,
    ) -> Result<(Engine, Option<String>), WorkerError> {
        let bad = |e: charter_engine::LoadError| WorkerError::new(ErrorKind::BadModel, format!("this file is not a model Charter can run: {e}"));
        let facts = Model::window_facts(&bytes).map_err(bad)?;
        let window = charter_core::window::for_model(
            &builtin()?,
            facts.name.as_deref().unwrap_or(""),
            &facts.architecture,
            context_length,
            facts.train_context,
            facts.kv_bytes_per_token,
            cache_budget_bytes,
        );
        let window_reason = window.describe(facts.train_context, facts.kv_bytes_per_token);
        let options = LoadOptions { context_length: Some(window.tokens), threads, ..LoadOptions::default() };
        let mut fell_back = None;
        let mut on_gpu = None;
        if let Some(gpu) = gpu {
            match charter_engine::gpu::check_device(&gpu, &bytes).await {
                Ok(()) => match Model::load_on_gpu(&bytes, &options, gpu) {
                    Ok(model) => on_gpu = Some(model),
                    Err(e @ charter_engine::LoadError::Decoder(_)) => fell_back = Some(format!("the model did not load on the GPU ({e})")),
                    Err(e) => return Err(bad(e)),
                },
                Err(why) => fell_back = Some(format!("the GPU failed Charter's check ({why})")),
            }
        }
        let model = match on_gpu {
            Some(model) => model,
            None => Model::load_owned(bytes, &options).map_err(bad)?,
        };
        Ok((Engine::new(model, layers, window_reason)?, fell_back))
    }

    fn new(model: Model, layers: &Layers, window_reason: String) -> Result<Engine, WorkerError> {
        let Model { info, tokenizer, template, policy, decoder } = model;
        let constitution = builtin()?;
        let (_, profile) = constitution.profile_for(info.name.as_deref().unwrap_or(""), &info.architecture);
        // The block never takes more than a quarter of a small window.
        let budget = profile.system_cap.min(info.context_length / 4);
        let system = (compose_block(&constitution, &tokenizer, budget, layers)?, budget);
        let reply_reserve = profile.reply_reserve.min(info.context_length / 4);
        Ok(Engine { info, tokenizer, template, policy, session: Session::new(decoder), system, reply_reserve, window_reason })
    }

    /// Composes the system block again under new layers; on failure the block in force
    /// stays. The caller re-warms the shared prefix.
    pub fn configure(&mut self, layers: &Layers) -> Result<(), WorkerError> {
        let block = compose_block(&builtin()?, &self.tokenizer, self.system.1, layers)?;
        self.system.0 = block;
        Ok(())
    }

    /// The protocol's view of the system block.
    pub fn system_block(&self) -> SystemBlock {
        let (c, budget) = &self.system;
        SystemBlock {
            tokens: c.tokens,
            budget: *budget,
            units: c.units.clone(),
            operator_block: c.operator_block,
            restored: false,
        }
    }

    /// What the UI shows about the model.
    pub fn describe(&self, load_seconds: f64) -> LoadedModel {
        let texts = |ids: &mut dyn Iterator<Item = u32>| ids.map(|id| self.token_text(id)).collect::<Vec<_>>();
        LoadedModel {
            name: self.info.name.clone().unwrap_or_else(|| self.info.architecture.clone()),
            architecture: self.info.architecture.clone(),
            context_length: self.info.context_length,
            context_reason: self.window_reason.clone(),
            template_source: format!("{:?}", self.info.template_source),
            stop_tokens: texts(&mut self.policy.stop_ids.iter().copied()),
            masked_tokens: texts(&mut self.policy.masked_ids.iter().copied()),
            stop_strings: self.policy.stop_strings.clone(),
            load_seconds,
            system_block: Some(self.system_block()),
            engine: self.session.model().describe(),
            memory_bytes: memory_bytes(),
        }
    }

    /// The tokens every conversation starts with (the template's opening and Charter's
    /// system block): what two conversations with different first messages share.
    pub fn shared_prefix(&self) -> Vec<u32> {
        let block = &self.system.0;
        let prompt = |text: &str| {
            let messages = [Message::system(block.text.clone()), Message::user(text)];
            build_prompt(&self.template, &self.tokenizer, &messages, true).map(|p| p.ids).unwrap_or_default()
        };
        let (a, b) = (prompt("a"), prompt("b"));
        let n = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        a[..n].to_vec()
    }

    /// Prefills [`Engine::shared_prefix`], so the first reply of every conversation
    /// reuses it. Returns how many tokens that is.
    pub async fn warm(&mut self) -> Result<usize, WorkerError> {
        let prefix = self.shared_prefix();
        self.session
            .prefill_async(&prefix)
            .await
            .map_err(|e| WorkerError::new(ErrorKind::Internal, format!("preparing the system block: {e}")))?;
        Ok(prefix.len())
    }

    /// The KV state after the shared prefix, once [`Engine::warm`] has run.
    pub async fn save_state(&self) -> Result<Vec<u8>, WorkerError> {
        let n = self.session.cached_tokens().len();
        self.session
            .model()
            .save_state_async(n)
            .await
            .map_err(|e| WorkerError::new(ErrorKind::Internal, format!("saving the model's state: {e}")))
    }

    /// Restores a state saved after `prefix` by [`Engine::save_state`]; `false` (and an
    /// empty cache) when the bytes do not fit this model.
    pub fn restore_state(&mut self, prefix: &[u32], bytes: &[u8]) -> bool {
        self.session.restore(prefix, |decoder| decoder.restore_state(bytes).map(|_| ()).map_err(Into::into)).is_ok()
    }

    /// The prompt for the assistant's next message, or, with `predict_user`, the
    /// transcript left open after the assistant's last message: Charter's system block,
    /// then as many of the latest messages as leave room for a reply (after an overflow,
    /// down to half the window, a drop point later turns keep while they fit; see
    /// `charter_core::history`). Returns the prompt
    /// and how many of the oldest messages were left out. System messages from the page
    /// are ignored: only the worker's own block speaks as the system.
    pub fn prompt(&self, messages: &[Message], predict_user: bool) -> Result<(Prompt, usize), WorkerError> {
        let mut view = vec![Message::system(self.system.0.text.clone())];
        view.extend(messages.iter().filter(|m| m.role != charter_core::Role::System).cloned());
        let window = Window {
            capacity: self.info.context_length,
            reserve: self.reply_reserve,
            cached: self.session.cached_tokens(),
            shared: self.shared_prefix().len(),
        };
        let build = |m: &[Message]| build_prompt(&self.template, &self.tokenizer, &merge_runs(m), !predict_user);
        let dropped = fit_to_window(&mut view, &window, |m| build(m).map(|p| p.ids));
        let prompt = build(&view)
            .map_err(|e| WorkerError::new(ErrorKind::Prompt, format!("the conversation cannot be put into this model's chat format: {e}")))?;
        Ok((prompt, dropped))
    }

    /// What [`Engine::prompt`] would take for `messages`, counted before any message is
    /// left out: the whole prompt (with the assistant's turn opened), what the last
    /// `input` messages add to the ones before them, and the longest prompt that leaves
    /// a reply its room.
    pub fn measure(&self, messages: &[Message], input: usize) -> Result<(usize, usize, usize), WorkerError> {
        let mut view = vec![Message::system(self.system.0.text.clone())];
        view.extend(messages.iter().filter(|m| m.role != charter_core::Role::System).cloned());
        let input = input.min(view.len() - 1);
        let count = |m: &[Message], open: bool| {
            build_prompt(&self.template, &self.tokenizer, &merge_runs(m), open).map(|p| p.ids.len()).map_err(|e| {
                WorkerError::new(ErrorKind::Prompt, format!("the conversation cannot be put into this model's chat format: {e}"))
            })
        };
        let total = count(&view, true)?;
        let closed = count(&view, false)?;
        let before = count(&view[..view.len() - input], false)?;
        Ok((total, closed.saturating_sub(before), (self.info.context_length - self.reply_reserve).saturating_sub(1)))
    }

    /// A token with its text.
    pub fn token_text(&self, id: u32) -> TokenText {
        TokenText { id, text: self.display(id) }
    }

    fn display(&self, id: u32) -> String {
        match self.tokenizer.token_text(id) {
            Some(text) if self.tokenizer.is_control(id) => text.to_owned(),
            _ => self.tokenizer.token_display(id),
        }
    }

    /// The prompt's tokens coloured by who wrote them.
    /// Tokens of the system block carry the unit that wrote them.
    pub fn context_tokens(&self, prompt: &Prompt) -> Vec<ContextToken> {
        let units = mark_units(prompt, &self.tokenizer, &self.system.0);
        prompt
            .ids
            .iter()
            .zip(&prompt.origins)
            .zip(units)
            .map(|((&id, &origin), unit)| ContextToken {
                id,
                text: self.display(id),
                origin: origin_of(origin),
                control: self.tokenizer.is_control(id),
                unit,
            })
            .collect()
    }

    /// The protocol's view of a finished reply.
    pub fn finished(&self, reply: Reply) -> FinishedReply {
        let stop_token = match reply.stop_reason {
            StopReason::EndOfTurn => reply.ids.last().map(|&id| self.token_text(id)),
            _ => None,
        };
        let tokens = reply
            .ids
            .iter()
            .map(|&id| ContextToken {
                id,
                text: self.display(id),
                origin: Origin::Assistant,
                control: self.tokenizer.is_control(id),
                unit: None,
            })
            .collect();
        FinishedReply {
            text: reply.text,
            stop_reason: reply.stop_reason,
            stop_token,
            stop_string: reply.stop_string,
            tokens,
            context_used: self.session.cached_tokens().len(),
            stats: reply.stats,
            memory_bytes: memory_bytes(),
        }
    }
}

fn compose_block(
    constitution: &Constitution,
    tokenizer: &Tokenizer,
    budget: usize,
    layers: &Layers,
) -> Result<Composed, WorkerError> {
    let count = |text: &str| tokenizer.encode(text, false).map(|ids| ids.len()).map_err(|e| e.to_string());
    compose(constitution, budget, layers.operator.as_ref(), Some(&layers.user), &count).map_err(|e| {
        WorkerError::new(ErrorKind::Config, format!("Charter's system block for this model ({budget} tokens) cannot be composed: {e}"))
    })
}

fn origin_of(origin: TokenOrigin) -> Origin {
    match origin {
        TokenOrigin::Template => Origin::Template,
        TokenOrigin::System => Origin::System,
        TokenOrigin::User => Origin::User,
        TokenOrigin::Assistant => Origin::Assistant,
    }
}
