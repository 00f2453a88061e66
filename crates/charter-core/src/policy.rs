//! The turn policy: what keeps the model writing the assistant's part and nothing else.
//!
//! A chat model predicts the whole transcript. Left alone it ends its reply with an
//! end-of-turn token and goes on to write the user's next message. The policy, derived
//! from the vocabulary and the template rather than from a list of model names, says
//!
//! * which tokens end the reply (every end-of-generation token of the vocabulary and
//!   the token the template writes after an assistant message),
//! * which tokens are masked out of sampling (every other control token, so the model
//!   can never open a turn), and
//! * which strings end the reply when the model spells a marker out in plain text.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::chat::Message;
use crate::template::{ChatTemplate, SegmentSource};
use crate::prompt::PromptError;
use crate::vocab::Vocabulary;

/// Stop tokens, masked tokens and stop strings for one model and template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnPolicy {
    /// Tokens that end the assistant's turn.
    pub stop_ids: BTreeSet<u32>,
    /// Tokens the model may never sample during the assistant's turn.
    pub masked_ids: BTreeSet<u32>,
    /// Texts that end the turn when they appear in the reply.
    pub stop_strings: Vec<String>,
    /// The token the template writes after an assistant message, if it writes one.
    pub end_of_turn: Option<u32>,
}

impl TurnPolicy {
    /// Derives the policy by rendering a probe conversation through the template.
    pub fn derive(template: &ChatTemplate, vocab: &dyn Vocabulary) -> Result<Self, PromptError> {
        let probe = [Message::user("a"), Message::assistant("b"), Message::user("c")];
        let segments = template.render_segments(&probe, true)?;
        let boundary = segments
            .iter()
            .position(|s| matches!(s.source, SegmentSource::Message { index: 1, .. }))
            .and_then(|i| segments.get(i + 1))
            .filter(|s| s.source == SegmentSource::Template)
            .map(|s| s.text.clone())
            .unwrap_or_default();
        let boundary_ids = vocab.encode(&boundary, true)?;
        let end_of_turn = boundary_ids.first().copied().filter(|&id| vocab.is_control(id));

        let mut stop_ids: BTreeSet<u32> = vocab.end_of_generation().into_iter().collect();
        stop_ids.extend(end_of_turn);

        let mut marker_ids = BTreeSet::new();
        for segment in segments.iter().filter(|s| s.source == SegmentSource::Template) {
            marker_ids.extend(vocab.encode(&segment.text, true)?.into_iter().filter(|&id| vocab.is_control(id)));
        }
        marker_ids.extend(stop_ids.iter().copied());
        if let Some(bos) = vocab.bos() {
            // BOS opens the file, not a turn; its text in a reply is harmless.
            if !stop_ids.contains(&bos) {
                marker_ids.remove(&bos);
            }
        }
        let mut stop_strings: Vec<String> = marker_ids
            .iter()
            .map(|&id| vocab.token_display(id))
            .filter(|t| !t.trim().is_empty())
            .collect();
        // A template without turn tokens marks turns with text ("\nUser: "): that text,
        // up to its first word, is the stop string.
        if !boundary_ids.iter().any(|&id| vocab.is_control(id)) {
            let header = boundary.trim_end();
            if !header.trim().is_empty() {
                stop_strings.push(header.to_owned());
            }
        }
        stop_strings.sort();
        stop_strings.dedup();

        let masked_ids = vocab.control_tokens().into_iter().filter(|id| !stop_ids.contains(id)).collect();
        Ok(TurnPolicy { stop_ids, masked_ids, stop_strings, end_of_turn })
    }

    /// A policy that lets the model write anything: the raw-transcript mode.
    pub fn raw() -> Self {
        TurnPolicy { stop_ids: BTreeSet::new(), masked_ids: BTreeSet::new(), stop_strings: Vec::new(), end_of_turn: None }
    }

    /// Adds caller-supplied stop strings.
    pub fn with_stop_strings(mut self, extra: impl IntoIterator<Item = String>) -> Self {
        self.stop_strings.extend(extra.into_iter().filter(|s| !s.is_empty()));
        self.stop_strings.sort();
        self.stop_strings.dedup();
        self
    }
}
