//! The loaded model as the worker holds it: the tokenizer, template and turn policy
//! beside a [`Session`] over the decoder, and the conversions from the engine's types
//! to the protocol's.

use charter_core::prompt::build_prompt;
use charter_core::vocab::Vocabulary;
use charter_core::{Message, Prompt, Reply, Session, StopReason, TokenOrigin, TurnPolicy};
use charter_engine::tokenizer::Tokenizer;
use charter_engine::{CpuDecoder, LoadOptions, Model, ModelInfo};
use charter_core::template::ChatTemplate;
use charter_protocol::{ContextToken, ErrorKind, FinishedReply, LoadedModel, Origin, TokenText, WorkerError};

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
    pub session: Session<CpuDecoder>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads a GGUF held in memory.
    pub fn load(bytes: &[u8], context_length: Option<usize>) -> Result<Engine, WorkerError> {
        let model = Model::load(bytes, &LoadOptions { context_length })
            .map_err(|e| WorkerError::new(ErrorKind::BadModel, format!("this file is not a model Charter can run: {e}")))?;
        let Model { info, tokenizer, template, policy, decoder } = model;
        Ok(Engine { info, tokenizer, template, policy, session: Session::new(decoder) })
    }

    /// What the UI shows about the model.
    pub fn describe(&self, load_seconds: f64) -> LoadedModel {
        let texts = |ids: &mut dyn Iterator<Item = u32>| ids.map(|id| self.token_text(id)).collect::<Vec<_>>();
        LoadedModel {
            name: self.info.name.clone().unwrap_or_else(|| self.info.architecture.clone()),
            architecture: self.info.architecture.clone(),
            context_length: self.info.context_length,
            template_source: format!("{:?}", self.info.template_source),
            stop_tokens: texts(&mut self.policy.stop_ids.iter().copied()),
            masked_tokens: texts(&mut self.policy.masked_ids.iter().copied()),
            stop_strings: self.policy.stop_strings.clone(),
            load_seconds,
        }
    }

    /// The prompt for the assistant's next message, or, with `predict_user`, the
    /// transcript left open after the assistant's last message.
    pub fn prompt(&self, messages: &[Message], predict_user: bool) -> Result<Prompt, WorkerError> {
        build_prompt(&self.template, &self.tokenizer, messages, !predict_user)
            .map_err(|e| WorkerError::new(ErrorKind::Prompt, format!("the conversation cannot be put into this model's chat format: {e}")))
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
    pub fn context_tokens(&self, prompt: &Prompt) -> Vec<ContextToken> {
        prompt
            .ids
            .iter()
            .zip(&prompt.origins)
            .map(|(&id, &origin)| ContextToken {
                id,
                text: self.display(id),
                origin: origin_of(origin),
                control: self.tokenizer.is_control(id),
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
        }
    }
}

fn origin_of(origin: TokenOrigin) -> Origin {
    match origin {
        TokenOrigin::Template => Origin::Template,
        TokenOrigin::System => Origin::System,
        TokenOrigin::User => Origin::User,
        TokenOrigin::Assistant => Origin::Assistant,
    }
}
