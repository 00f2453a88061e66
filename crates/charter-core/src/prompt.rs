//! Prompts as token segments: the template's control tokens by id, message text with
//! special-token parsing off.

use serde::{Deserialize, Serialize};

use crate::chat::{Message, Role};
use crate::template::{ChatTemplate, SegmentSource, TemplateError};
use crate::vocab::{VocabError, Vocabulary};

/// Who wrote a token of the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOrigin {
    /// The template: turn markers, role names, default text.
    Template,
    /// A system message.
    System,
    /// A user message.
    User,
    /// An assistant message.
    Assistant,
}

impl From<Role> for TokenOrigin {
    fn from(role: Role) -> Self {
        match role {
            Role::System => TokenOrigin::System,
            Role::User => TokenOrigin::User,
            Role::Assistant => TokenOrigin::Assistant,
        }
    }
}

/// Why a prompt could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The tokenizer failed.
    #[error(transparent)]
    Vocab(#[from] VocabError),
}

/// A tokenized prompt with the provenance of every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The rendered text.
    pub text: String,
    /// Token ids.
    pub ids: Vec<u32>,
    /// Who wrote each token, parallel to `ids`.
    pub origins: Vec<TokenOrigin>,
    /// For each token, the message it belongs to, if any.
    pub message_index: Vec<Option<usize>>,
}

impl Prompt {
    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the prompt has no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The number of control tokens in the prompt.
    pub fn n_control(&self, vocab: &dyn Vocabulary) -> usize {
        self.ids.iter().filter(|&&id| vocab.is_control(id)).count()
    }

    /// Where message `index` starts, if it contributed any token.
    pub fn message_start(&self, index: usize) -> Option<usize> {
        self.message_index.iter().position(|m| *m == Some(index))
    }
}

/// Renders `messages` through `template` and tokenizes the result segment by segment.
pub fn build_prompt(
    template: &ChatTemplate,
    vocab: &dyn Vocabulary,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Prompt, PromptError> {
    let segments = template.render_segments(messages, add_generation_prompt)?;
    let mut prompt = Prompt { text: String::new(), ids: Vec::new(), origins: Vec::new(), message_index: Vec::new() };
    for segment in &segments {
        let (parse_special, origin, index) = match segment.source {
            SegmentSource::Template => (true, TokenOrigin::Template, None),
            SegmentSource::Message { index, role } => (false, role.into(), Some(index)),
        };
        let ids = vocab.encode(&segment.text, parse_special)?;
        prompt.origins.extend(std::iter::repeat_n(origin, ids.len()));
        prompt.message_index.extend(std::iter::repeat_n(index, ids.len()));
        prompt.ids.extend(ids);
        prompt.text.push_str(&segment.text);
    }
    if let (true, Some(bos)) = (vocab.adds_bos(), vocab.bos()) {
        if prompt.ids.first() != Some(&bos) {
            prompt.ids.insert(0, bos);
            prompt.origins.insert(0, TokenOrigin::Template);
            prompt.message_index.insert(0, None);
        }
    }
    Ok(prompt)
}
