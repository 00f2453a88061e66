//! What the core needs to know about a model's vocabulary.

/// A tokenizer failure, carried as text across the crate boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct VocabError(pub String);

/// A model's vocabulary, as `charter-engine` builds it from a GGUF file.
pub trait Vocabulary {
    /// Number of token ids.
    fn n_vocab(&self) -> usize;

    /// Tokenizes `text`. With `parse_special`, control-token text becomes control
    /// tokens; without it, it stays plain text.
    fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, VocabError>;

    /// The bytes a token contributes to text (a control token: its own text).
    fn token_bytes(&self, id: u32) -> &[u8];

    /// Whether a token is a control token (turn markers, BOS, EOS, padding).
    fn is_control(&self, id: u32) -> bool;

    /// Every control token.
    fn control_tokens(&self) -> Vec<u32>;

    /// The BOS token, if any.
    fn bos(&self) -> Option<u32>;

    /// The declared EOS token, if any.
    fn eos(&self) -> Option<u32>;

    /// Whether prompts start with BOS.
    fn adds_bos(&self) -> bool;

    /// Every token that ends generation for this vocabulary (EOS and its kin).
    fn end_of_generation(&self) -> Vec<u32>;

    /// A token's text for display, lossily decoded.
    fn token_display(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }
}
