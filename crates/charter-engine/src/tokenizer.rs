//! The tokenizer a GGUF file carries, rebuilt from its metadata.
//!
//! A GGUF file holds its vocabulary under `tokenizer.ggml.*`, so Charter needs no
//! separate `tokenizer.json`. Two families exist, and both are built to match
//! llama.cpp token for token:
//!
//! * `gpt2`: byte-level BPE with explicit merges and a pre-tokenizer regex chosen by
//!   `tokenizer.ggml.pre` (SmolLM2, Llama 3, Qwen), built as a `tokenizers::Tokenizer`.
//! * `llama`: SentencePiece-style vocabulary with scores and byte fallback (Gemma,
//!   Llama 2). llama.cpp merges the adjacent pair whose concatenation is the
//!   highest-scoring vocabulary entry; `spm.rs` does the same over the vocabulary table
//!   itself (a `tokenizers` BPE needs every split of every token as a merge: about 70 MB
//!   for Gemma's 262k tokens).
//!
//! Token kinds follow llama.cpp. `USER_DEFINED` tokens (Gemma's newline and space runs,
//! HTML tags) are split out of any text. `CONTROL` tokens (turn markers, BOS, EOS)
//! become tokens only when the caller asks for special parsing, which Charter does for
//! the template's own text and never for what a user or the model wrote.

use std::collections::HashMap;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::gguf::{Gguf, Value};

mod spm;

/// Why a GGUF file's tokenizer cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// Metadata is missing or malformed.
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
    /// A tokenizer family or pre-tokenizer Charter does not implement.
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    /// The `tokenizers` library refused the vocabulary.
    #[error("tokenizer: {0}")]
    Library(String),
}

/// What a token is, as llama.cpp classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Ordinary text.
    Normal,
    /// The unknown token.
    Unknown,
    /// A control token: turn markers, BOS, EOS, padding.
    Control,
    /// A token always split out of text (Gemma's whitespace runs and HTML tags).
    UserDefined,
    /// Reserved and never used.
    Unused,
    /// A raw byte, `<0xNN>`.
    Byte,
}

impl TokenKind {
    fn from_gguf(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Which of the two vocabulary families the file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabFamily {
    /// Byte-level BPE (`tokenizer.ggml.model = gpt2`).
    ByteLevelBpe,
    /// SentencePiece-style (`tokenizer.ggml.model = llama`).
    SentencePiece,
}

/// What turns plain text into ids.
enum Inner {
    /// Byte-level BPE, by the `tokenizers` library.
    Bpe(Box<tokenizers::Tokenizer>),
    /// SentencePiece merging, Charter's own (see `spm.rs`).
    Spm(spm::Spm),
}

/// A model's tokenizer and vocabulary table.
pub struct Tokenizer {
    inner: Inner,
    family: VocabFamily,
    texts: Vec<String>,
    kinds: Vec<TokenKind>,
    /// The bytes each token stands for in running text (control tokens: their text).
    bytes: Vec<Vec<u8>>,
    /// Control tokens by text, longest first, for special parsing.
    control: Vec<(String, u32)>,
    /// Bytes that start some control token; a cheap filter for the scan above.
    control_first_bytes: [bool; 256],
    /// Special token ids named by the metadata.
    pub bos: Option<u32>,
    /// The declared end-of-sequence token.
    pub eos: Option<u32>,
    /// Whether prompts start with BOS.
    pub add_bos: bool,
    /// Every token that ends generation in llama.cpp for this vocabulary, sorted.
    pub end_of_generation: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("family", &self.family)
            .field("n_vocab", &self.texts.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(gguf: &Gguf<'_>) -> Result<Self, TokenizerError> {
        let meta = |e: crate::gguf::GgufError| TokenizerError::Metadata(e.to_string());
        let model = gguf.str("tokenizer.ggml.model").map_err(meta)?;
        let texts = string_array(gguf, "tokenizer.ggml.tokens")?;
        let n_vocab = texts.len();
        if n_vocab == 0 {
            return Err(TokenizerError::Metadata("the vocabulary is empty".into()));
        }
        let mut kinds: Vec<TokenKind> = match gguf.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let kinds = int_array(v, "tokenizer.ggml.token_type")?;
                if kinds.len() != n_vocab {
                    return Err(TokenizerError::Metadata(format!(
                        "{} token types for {n_vocab} tokens",
                        kinds.len()
                    )));
                }
                kinds.into_iter().map(TokenKind::from_gguf).collect()
            }
            None => vec![TokenKind::Normal; n_vocab],
        };
        let token_id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match gguf.opt_u64(key).map_err(meta)? {
                Some(id) if id < n_vocab as u64 => Ok(Some(id as u32)),
                Some(id) => Err(TokenizerError::Metadata(format!("{key} is {id}, outside the vocabulary"))),
                None => Ok(None),
            }
        };
        let bos = token_id("tokenizer.ggml.bos_token_id")?;
        let eos = token_id("tokenizer.ggml.eos_token_id")?;
        let end_of_generation = end_of_generation(&texts, &mut kinds, eos);

        let (family, inner, add_bos_default) = match model {
            "gpt2" => {
                let pre = gguf.opt_str("tokenizer.ggml.pre").map_err(meta)?.unwrap_or("default");
                (VocabFamily::ByteLevelBpe, Inner::Bpe(Box::new(byte_level_bpe(gguf, &texts, pre)?)), false)
            }
            "llama" => {
                let scores = match gguf.get("tokenizer.ggml.scores") {
                    Some(v) => float_array(v, "tokenizer.ggml.scores")?,
                    None => vec![0.0; n_vocab],
                };
                if scores.len() != n_vocab {
                    return Err(TokenizerError::Metadata(format!(
                        "{} scores for {n_vocab} tokens",
                        scores.len()
                    )));
                }
                let add_space_prefix =
                    gguf.opt_bool("tokenizer.ggml.add_space_prefix").map_err(meta)?.unwrap_or(true);
                (VocabFamily::SentencePiece, Inner::Spm(spm::Spm::new(&texts, &kinds, scores, add_space_prefix)), true)
            }
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.model {other:?} (Charter reads \"gpt2\" and \"llama\")"
                )));
            }
        };
        let add_bos = gguf.opt_bool("tokenizer.ggml.add_bos_token").map_err(meta)?.unwrap_or(add_bos_default);

        let bytes = texts.iter().zip(&kinds).map(|(t, k)| token_bytes(family, t, *k)).collect();
        let mut control: Vec<(String, u32)> = texts
            .iter()
            .zip(&kinds)
            .enumerate()
            .filter(|(_, (t, k))| **k == TokenKind::Control && !t.is_empty())
            .map(|(id, (t, _))| (t.clone(), id as u32))
            .collect();
        control.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let mut control_first_bytes = [false; 256];
        for (t, _) in &control {
            control_first_bytes[usize::from(t.as_bytes()[0])] = true;
        }
        let mut tokenizer = Tokenizer {
            inner,
            family,
            texts,
            kinds,
            bytes,
            control,
            control_first_bytes,
            bos,
            eos,
            add_bos,
            end_of_generation,
        };
        tokenizer.add_user_defined()?;
        Ok(tokenizer)
    }

    fn add_user_defined(&mut self) -> Result<(), TokenizerError> {
        // Added before any special handling so that they are split out of every text, as
        // llama.cpp does whatever the special-parsing flag says. They match the raw text,
        // before the space-to-`▁` normalization. (The SentencePiece path splits them out
        // itself.)
        let Inner::Bpe(inner) = &mut self.inner else { return Ok(()) };
        let user_defined: Vec<AddedToken> = self
            .texts
            .iter()
            .zip(&self.kinds)
            .filter(|(t, k)| **k == TokenKind::UserDefined && !t.is_empty())
            .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        if !user_defined.is_empty() {
            inner.add_tokens(user_defined).map_err(|e| TokenizerError::Library(e.to_string()))?;
        }
        Ok(())
    }

    /// Which vocabulary family the model uses.
    pub fn family(&self) -> VocabFamily {
        self.family
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }

    /// The vocabulary text of a token (`Ġworld`, `▁world`, `<0x0A>`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The kind of a token.
    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    /// The id of a token by its exact vocabulary text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.texts.iter().position(|t| t == text).map(|i| i as u32)
    }

    /// The bytes a token contributes to running text. Control tokens contribute their
    /// text; callers decide whether to show it.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Tokenizes `text`. With `parse_special`, text equal to a control token becomes
    /// that token; without it, control-token look-alikes are plain text.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        if !parse_special {
            return self.encode_plain(text);
        }
        let mut ids = Vec::new();
        let mut plain_start = 0;
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            let candidate = self.control_first_bytes[usize::from(rest.as_bytes()[0])];
            let found = if candidate {
                self.control.iter().find(|(t, _)| rest.starts_with(t.as_str()))
            } else {
                None
            };
            if let Some((t, id)) = found {
                ids.extend(self.encode_plain(&text[plain_start..pos])?);
                ids.push(*id);
                pos += t.len();
                plain_start = pos;
            } else {
                pos += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        ids.extend(self.encode_plain(&text[plain_start..])?);
        Ok(ids)
    }

    fn encode_plain(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        match &self.inner {
            Inner::Bpe(inner) => {
                let encoding = inner.encode(text, false).map_err(|e| TokenizerError::Library(e.to_string()))?;
                Ok(encoding.get_ids().to_vec())
            }
            Inner::Spm(spm) => {
                let mut ids = Vec::new();
                spm.encode(&self.texts, &self.kinds, text, &mut ids);
                Ok(ids)
            }
        }
    }

    /// Decodes ids to text. Control tokens are rendered as their text only when
    /// `render_control` is set; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], render_control: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let shown = render_control || self.token_kind(id) != Some(TokenKind::Control);
            if let (true, Some(b)) = (shown, self.token_bytes(id)) {
                bytes.extend_from_slice(b);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Texts that end a turn in some model family; llama.cpp treats them as control
/// tokens whatever type the file gives them, and so does Charter.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "</s>",
];

/// Fill-in-the-middle repository and file separators, which end generation in chat.
const FIM_SEPARATOR_TEXTS: &[&str] =
    &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", "<|fim_pad|>"];

/// The end-of-generation set, marking the look-alike texts as control tokens.
fn end_of_generation(texts: &[String], kinds: &mut [TokenKind], eos: Option<u32>) -> Vec<u32> {
    let mut set: Vec<u32> = eos.into_iter().collect();
    for (id, text) in texts.iter().enumerate() {
        let is_end = END_OF_GENERATION_TEXTS.contains(&text.as_str());
        if is_end {
            kinds[id] = TokenKind::Control;
        }
        if is_end || (FIM_SEPARATOR_TEXTS.contains(&text.as_str()) && kinds[id] == TokenKind::Control) {
            set.push(id as u32);
        }
    }
    set.sort_unstable();
    set.dedup();
    set
}

fn string_array(gguf: &Gguf<'_>, key: &str) -> Result<Vec<String>, TokenizerError> {
    let arr = gguf
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| TokenizerError::Metadata(format!("missing array {key}")))?;
    arr.iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| TokenizerError::Metadata(format!("{key} holds something other than strings")))
}

fn int_array(v: &Value, key: &str) -> Result<Vec<i64>, TokenizerError> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| TokenizerError::Metadata(format!("{key} is not an array of integers")))
}

fn float_array(v: &Value, key: &str) -> Result<Vec<f32>, TokenizerError> {
    v.as_array()
        .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect::<Option<Vec<_>>>())
        .ok_or_else(|| TokenizerError::Metadata(format!("{key} is not an array of numbers")))
}

/// The GPT-2 split, used alone by `gpt2` and after digit splitting by `smollm`.
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer regexes for `tokenizer.ggml.pre`, applied in order as llama.cpp does.
fn pre_tokenizer_regexes(pre: &str) -> Option<&'static [&'static str]> {
    Some(match pre {
        "default" | "gpt2" | "gpt-2" => &[GPT2_REGEX],
        "smollm" => &[r"\p{N}", GPT2_REGEX],
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => &[LLAMA3_REGEX],
        "qwen2" | "deepseek-r1-qwen" | "qwen35" => &[QWEN2_REGEX],
        _ => return None,
    })
}

fn byte_level_bpe(gguf: &Gguf<'_>, texts: &[String], pre: &str) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let regexes = pre_tokenizer_regexes(pre).ok_or_else(|| {
        TokenizerError::Unsupported(format!(
            "pre-tokenizer {pre:?} (Charter knows gpt2, smollm, llama-bpe and qwen2)"
        ))
    })?;
    let merges = string_array(gguf, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
            None => Err(TokenizerError::Metadata(format!("merge {m:?} has no space"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab = vocab_map(texts);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        // Llama 3 takes a whole pre-token that is in the vocabulary as is.
        .ignore_merges(matches!(pre, "llama3" | "llama-v3" | "llama-bpe"))
        .build()
        .map_err(|e| TokenizerError::Library(e.to_string()))?;
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in regexes {
        let split = Split::new(SplitPattern::Regex((*re).to_owned()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| TokenizerError::Library(e.to_string()))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
    Ok(tokenizer)
}

/// Text to id; where a text repeats, its first id wins, as in llama.cpp.
fn vocab_map(texts: &[String]) -> Vocab {
    let mut vocab = Vocab::with_capacity(texts.len());
    for (id, t) in texts.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(id as u32);
    }
    vocab
}

fn token_bytes(family: VocabFamily, text: &str, kind: TokenKind) -> Vec<u8> {
    match (family, kind) {
        (_, TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown | TokenKind::Unused) => {
            text.as_bytes().to_vec()
        }
        (VocabFamily::ByteLevelBpe, _) => {
            let table = unicode_to_byte();
            text.chars()
                .flat_map(|c| match table.get(&c) {
                    Some(&b) => vec![b],
                    None => c.to_string().into_bytes(),
                })
                .collect()
        }
        (VocabFamily::SentencePiece, TokenKind::Byte) => parse_byte_token(text)
            .map(|b| vec![b])
            .unwrap_or_else(|| text.as_bytes().to_vec()),
        (VocabFamily::SentencePiece, TokenKind::Normal) => text.replace('▁', " ").into_bytes(),
    }
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's reversible map from bytes to printable characters, inverted.
fn unicode_to_byte() -> &'static HashMap<char, u8> {
    static TABLE: std::sync::OnceLock<HashMap<char, u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut printable: Vec<u8> = (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut chars: Vec<char> = printable.iter().map(|&b| char::from(b)).collect();
        let mut n = 0u32;
        for b in 0..=255u8 {
            if !printable.contains(&b) {
                printable.push(b);
                chars.push(char::from_u32(256 + n).unwrap_or('\u{FFFD}'));
                n += 1;
            }
        }
        chars.into_iter().zip(printable).collect()
    })
}
