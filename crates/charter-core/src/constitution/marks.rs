//! Which unit of the constitution each token of a prompt's system block came from, so
//! the under-the-hood view can mark them.

use super::Composed;
use crate::prompt::{Prompt, TokenOrigin};
use crate::vocab::Vocabulary;

/// For each token of `prompt`, the id of the unit of `block` that wrote it (or
/// [`super::compose::OPERATOR_UNIT`] for the operator's block); `None` for every token that is
/// not the system block's.
///
/// Tokens are placed by the bytes they decode to, counted from the start of the system
/// message, so the marks follow the tokenizer's own boundaries: a token that straddles
/// two units counts to the one it starts in.
pub fn mark_units(prompt: &Prompt, vocab: &dyn Vocabulary, block: &Composed) -> Vec<Option<String>> {
    let mut marks = Vec::with_capacity(prompt.ids.len());
    let mut run: Option<(Option<usize>, usize)> = None;
    for ((&id, &origin), &message) in prompt.ids.iter().zip(&prompt.origins).zip(&prompt.message_index) {
        if origin != TokenOrigin::System {
            run = None;
            marks.push(None);
            continue;
        }
        let offset = match run {
            Some((m, offset)) if m == message => offset,
            _ => 0,
        };
        marks.push(block.unit_at(offset).map(str::to_owned));
        run = Some((message, offset + vocab.token_bytes(id).len()));
    }
    marks
}
