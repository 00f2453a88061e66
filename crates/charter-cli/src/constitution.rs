//! The constitution on the command line: composing the system block for a model,
//! putting it in front of a conversation, and the training view of the same turn
//! structure (`masks`).

use std::path::Path;

use anyhow::{Context, bail};
use charter_core::constitution::{Composed, Constitution, OperatorConfig, compose};
use charter_core::vocab::Vocabulary;
use charter_core::{Message, Prompt, Role, TokenOrigin, TurnPolicy};
use charter_engine::model::ModelInfo;
use charter_engine::tokenizer::Tokenizer;

/// The constitution, an operator configuration if given, and the budget.
pub struct Layers {
    constitution: Constitution,
    operator: Option<OperatorConfig>,
    budget: Option<usize>,
}

impl Layers {
    /// Reads the built-in constitution and the operator file.
    pub fn new(operator: Option<&Path>, budget: Option<usize>) -> anyhow::Result<Self> {
        let constitution = Constitution::builtin().context("reading Charter's constitution")?;
        let operator = match operator {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Some(OperatorConfig::parse(&text, &constitution).with_context(|| format!("{} refused", path.display()))?)
            }
            None => None,
        };
        Ok(Layers { constitution, operator, budget })
    }

    /// The system block for a model, within its profile's cap unless a budget was given.
    pub fn compose(&self, tokenizer: &Tokenizer, info: &ModelInfo) -> anyhow::Result<Composed> {
        let (_, profile) = self.constitution.profile_for(info.name.as_deref().unwrap_or(""), &info.architecture);
        let budget = self.budget.unwrap_or(profile.system_cap);
        let count = |text: &str| tokenizer.encode(text, false).map(|ids| ids.len()).map_err(|e| e.to_string());
        Ok(compose(&self.constitution, budget, self.operator.as_ref(), None, &count)?)
    }

    /// Tokens kept free for the reply when older turns are dropped.
    pub fn reply_reserve(&self, info: &ModelInfo) -> usize {
        let (_, profile) = self.constitution.profile_for(info.name.as_deref().unwrap_or(""), &info.architecture);
        profile.reply_reserve.min(info.context_length / 4)
    }
}

/// Puts the system block in front of `messages`; a conversation that brings its own
/// system message is refused, since it would pose as a layer it is not.
pub fn with_system_block(block: &Composed, messages: Vec<Message>) -> anyhow::Result<Vec<Message>> {
    if messages.iter().any(|m| m.role == Role::System) {
        bail!("with the constitution, a system message is not taken from the conversation; put operator instructions in an --operator file");
    }
    let mut all = vec![Message::system(block.text.clone())];
    all.extend(messages);
    Ok(all)
}

/// Token labels for fine-tuning: a token's id where the loss applies (the assistant's
/// content and the end-of-turn token that closes it), −100 everywhere else.
pub fn labels(prompt: &Prompt, messages: &[Message], policy: &TurnPolicy, vocab: &dyn Vocabulary) -> anyhow::Result<Vec<i64>> {
    let mut labels = vec![-100i64; prompt.ids.len()];
    let end_of_turn = |id: u32| policy.end_of_turn == Some(id) || policy.stop_ids.contains(&id);
    for (index, message) in messages.iter().enumerate().filter(|(_, m)| m.role == Role::Assistant) {
        let positions: Vec<usize> = (0..prompt.ids.len()).filter(|&p| prompt.message_index[p] == Some(index)).collect();
        let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
            bail!("the template gives assistant message {index} no tokens of its own; its span cannot be found");
        };
        if prompt.origins[first] != TokenOrigin::Assistant || message.content.trim().is_empty() {
            bail!("assistant message {index} has no content to learn from");
        }
        for p in first..=last {
            labels[p] = i64::from(prompt.ids[p]);
        }
        // The end-of-turn token the template writes right after the content (whitespace
        // the template adds in between is not the model's to learn).
        let closing = (last + 1..prompt.ids.len())
            .take_while(|&p| prompt.origins[p] == TokenOrigin::Template)
            .find(|&p| end_of_turn(prompt.ids[p]) || vocab.is_control(prompt.ids[p]));
        match closing {
            Some(p) if end_of_turn(prompt.ids[p]) => labels[p] = i64::from(prompt.ids[p]),
            _ => bail!("the template does not close assistant message {index} with an end-of-turn token"),
        }
    }
    Ok(labels)
}
