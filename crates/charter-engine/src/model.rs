//! A loaded model: the tokenizer, the chat template, the turn policy and the decoder,
//! built from one GGUF buffer.

use std::collections::BTreeMap;
use std::sync::Arc;

use charter_core::template::{CHATML_TEMPLATE, GEMMA_TEMPLATE, PLAIN_TEMPLATE};
use charter_core::{Candidate, ChatTemplate, LanguageModel, ModelError, Shortlist, TemplateSource, TemplateTokens, TurnPolicy};
use serde::Serialize;

use crate::architecture::{ConfigError, DecoderConfig};
use crate::backend::Backend;
#[cfg(feature = "candle")]
use crate::candle::CandleBackend;
use crate::cpu::CpuBackend;
use crate::decoder::{Decoder, DecoderError};
use crate::gguf::{Gguf, GgufError};
use crate::tokenizer::{Tokenizer, TokenizerError};
use charter_kernels::Isa;

/// Which backend runs a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// Charter's CPU kernels on the fastest instruction set here.
    #[default]
    Cpu,
    /// Charter's CPU kernels on one instruction set (for tests and benchmarks).
    CpuOn(Isa),
    /// The candle reference backend.
    #[cfg(feature = "candle")]
    Candle,
    /// Charter's WGSL kernels on the platform's first GPU adapter.
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    Gpu,
}

/// A loaded decoder on whichever backend was chosen.
#[derive(Debug)]
pub enum ModelDecoder {
    /// On Charter's CPU kernels.
    Cpu(Decoder<CpuBackend>),
    /// On candle.
    #[cfg(feature = "candle")]
    Candle(Decoder<CandleBackend>),
    /// On the GPU.
    #[cfg(feature = "gpu")]
    Gpu(Decoder<crate::gpu::GpuBackend>),
}

macro_rules! each {
    ($self:expr, $d:ident => $e:expr) => {
        match $self {
            ModelDecoder::Cpu($d) => $e,
            #[cfg(feature = "candle")]
            ModelDecoder::Candle($d) => $e,
            #[cfg(feature = "gpu")]
            ModelDecoder::Gpu($d) => $e,
        }
    };
}

impl ModelDecoder {
    /// What runs the model, for reports (`"cpu (avx2)"`, `"candle"`).
    pub fn describe(&self) -> String {
        each!(self, d => d.describe())
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        each!(self, d => d.config())
    }

    /// Positions the KV cache holds.
    pub fn capacity(&self) -> usize {
        each!(self, d => d.capacity())
    }

    /// Positions filled.
    pub fn n_cached(&self) -> usize {
        each!(self, d => d.n_cached())
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        each!(self, d => d.truncate(len));
    }

    /// See [`Decoder::shift`].
    pub fn shift(&mut self, from: usize, to: usize) -> Result<(), DecoderError> {
        each!(self, d => d.shift(from, to))
    }

    /// See [`Decoder::save_state`].
    pub fn save_state(&self, len: usize) -> Result<Vec<u8>, DecoderError> {
        each!(self, d => d.save_state(len))
    }

    /// See [`Decoder::restore_state`].
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<usize, DecoderError> {
        each!(self, d => d.restore_state(bytes))
    }

    /// See [`Decoder::forward`].
    pub fn forward(&mut self, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>, DecoderError> {
        each!(self, d => d.forward(tokens, all_logits))
    }

    /// See [`Decoder::forward_into`].
    pub fn forward_into(&mut self, tokens: &[u32], all_logits: bool, logits: &mut Vec<f32>) -> Result<(), DecoderError> {
        each!(self, d => d.forward_into(tokens, all_logits, logits))
    }

    /// See [`Decoder::forward_async`].
    pub async fn forward_async(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<(), DecoderError> {
        each!(self, d => d.forward_async(tokens, logits).await)
    }

    /// See [`Decoder::forward_shortlist_async`].
    pub async fn forward_shortlist_async(
        &mut self,
        tokens: &[u32],
        list: &Shortlist,
        out: &mut Vec<Candidate>,
    ) -> Result<(), DecoderError> {
        each!(self, d => d.forward_shortlist_async(tokens, list, out).await)
    }

    /// See [`Decoder::dispatches`].
    pub fn dispatches(&self) -> Option<u64> {
        each!(self, d => d.dispatches())
    }

    /// See [`Decoder::submissions`].
    pub fn submissions(&self) -> Option<u64> {
        each!(self, d => d.submissions())
    }

    /// See [`Decoder::shortlist_limit`].
    pub fn shortlist_limit(&self) -> usize {
        each!(self, d => d.shortlist_limit())
    }

    /// See [`Decoder::save_state_async`].
    pub async fn save_state_async(&self, len: usize) -> Result<Vec<u8>, DecoderError> {
        each!(self, d => d.save_state_async(len).await)
    }

    /// Whether it runs on the GPU.
    pub fn is_gpu(&self) -> bool {
        #[cfg(feature = "gpu")]
        if matches!(self, ModelDecoder::Gpu(_)) {
            return true;
        }
        false
    }
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Not a valid GGUF file.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A valid file Charter cannot run, or contradictory metadata.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The vocabulary could not be built.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The weights do not match the metadata.
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    /// The chat template is broken.
    #[error(transparent)]
    Template(#[from] charter_core::TemplateError),
    /// The turn policy could not be derived from the template.
    #[error(transparent)]
    Prompt(#[from] charter_core::PromptError),
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// KV cache positions; by default the training context, at most 4096 (the app and
    /// the CLI choose with `charter_core::window` and pass it here).
    pub context_length: Option<usize>,
    /// The backend.
    pub backend: BackendChoice,
    /// The threads Charter's CPU kernels share matrix products among (none: the
    /// caller's alone). Other backends ignore it.
    pub threads: Option<std::rc::Rc<charter_threads::Pool>>,
}

/// What a model is, for `charter inspect` and the UI.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `general.name`, if present.
    pub name: Option<String>,
    /// `general.architecture`.
    pub architecture: String,
    /// Number of weights.
    pub n_params: u64,
    /// Tensors per storage type.
    pub quantization: BTreeMap<String, usize>,
    /// Training context length.
    pub train_context: usize,
    /// KV cache positions allocated.
    pub context_length: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Residual width.
    pub n_embd: usize,
    /// Where the chat template came from.
    pub template_source: TemplateSource,
    /// The chat template.
    pub template: String,
    /// BOS, if any.
    pub bos: Option<u32>,
    /// EOS, if any.
    pub eos: Option<u32>,
}

/// Everything needed to chat with one model.
pub struct Model {
    /// Facts about the model.
    pub info: ModelInfo,
    /// Its vocabulary.
    pub tokenizer: Tokenizer,
    /// Its chat template (its own, or Charter's built-in one for its turn format).
    pub template: ChatTemplate,
    /// What ends and what may not appear in the assistant's turn.
    pub policy: TurnPolicy,
    /// The weights and KV cache.
    pub decoder: ModelDecoder,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("info", &self.info).finish_non_exhaustive()
    }
}

/// Default KV capacity cap: enough for long chats, small enough for a browser tab.
const DEFAULT_CONTEXT: usize = 4096;

impl Model {
    /// Validates and loads a GGUF model held in memory (copied once into a buffer the
    /// model keeps; [`Model::load_owned`] takes a buffer without copying).
    pub fn load(bytes: &[u8], options: &LoadOptions) -> Result<Model, LoadError> {
        Model::load_owned(bytes.to_vec(), options)
    }

    /// Validates and loads a GGUF model, keeping `bytes`: Charter's CPU backend reads
    /// the weights where they lie in it.
    pub fn load_owned(mut bytes: Vec<u8>, options: &LoadOptions) -> Result<Model, LoadError> {
        let Parsed { header, tokenizer, config, template, policy, info } = parse(&bytes, options)?;
        let capacity = info.context_length;
        let isa = match options.backend {
            BackendChoice::Cpu => Some(Isa::best()),
            BackendChoice::CpuOn(isa) if Isa::available().contains(&isa) => Some(isa),
            BackendChoice::CpuOn(isa) => {
                return Err(LoadError::Decoder(DecoderError::Unsupported(format!("{} kernels on this machine", isa.name()))));
            }
            #[cfg(feature = "candle")]
            BackendChoice::Candle => None,
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            BackendChoice::Gpu => {
                let backend = crate::gpu::GpuBackend::new(charter_gpu::GpuOptions::default()).map_err(DecoderError::Backend)?;
                let gguf = header.attach(&bytes)?;
                let decoder = ModelDecoder::Gpu(Decoder::load(backend, &gguf, config, capacity)?);
                return Ok(Model { info, tokenizer, template, policy, decoder });
            }
        };
        // Charter's kernels read the weights where they lie, in the layout they read fastest.
        if isa.is_some() {
            crate::cpu::tile_matrices(&mut bytes, &header);
        }
        let bytes = Arc::new(bytes);
        let gguf = header.attach(&bytes)?;
        let decoder = match isa {
            Some(isa) => {
                let mut backend = CpuBackend::with_isa(isa, Some(bytes.clone()));
                if let Some(threads) = &options.threads {
                    backend = backend.with_threads(threads.clone());
                }
                ModelDecoder::Cpu(Decoder::load(backend, &gguf, config, capacity)?)
            }
            #[cfg(feature = "candle")]
            None => ModelDecoder::Candle(Decoder::load(CandleBackend, &gguf, config, capacity)?),
            #[cfg(not(feature = "candle"))]
            None => unreachable!("without candle every CPU backend is Charter's"),
        };
        Ok(Model { info, tokenizer, template, policy, decoder })
    }

    /// Validates a GGUF model and loads it onto an open GPU device (`options.backend` is
    /// not consulted). The weights are uploaded; `bytes` is only read, so a caller can
    /// still load them on the CPU if the device fails.
    #[cfg(feature = "gpu")]
    pub fn load_on_gpu(bytes: &[u8], options: &LoadOptions, gpu: charter_gpu::Gpu) -> Result<Model, LoadError> {
        let Parsed { header, tokenizer, config, template, policy, info } = parse(bytes, options)?;
        let capacity = info.context_length;
        let gguf = header.attach(bytes)?;
        let decoder = ModelDecoder::Gpu(Decoder::load(crate::gpu::GpuBackend::on(gpu), &gguf, config, capacity)?);
        Ok(Model { info, tokenizer, template, policy, decoder })
    }
}

/// What Charter needs to choose a model's window before it loads the model
/// (`charter_core::window`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFacts {
    /// `general.name`, if present.
    pub name: Option<String>,
    /// `general.architecture`.
    pub architecture: String,
    /// The context the model was trained for.
    pub train_context: usize,
    /// Bytes of KV cache per position: keys and values in f16, every layer.
    pub kv_bytes_per_token: u64,
}

impl Model {
    /// Reads a GGUF's header only, for [`WindowFacts`].
    pub fn window_facts(bytes: &[u8]) -> Result<WindowFacts, LoadError> {
        let gguf = Gguf::parse(bytes)?;
        // The vocabulary's size does not enter the window.
        let config = DecoderConfig::from_gguf(&gguf, 0)?;
        Ok(WindowFacts {
            name: gguf.opt_str("general.name")?.map(str::to_owned),
            architecture: config.architecture.name().to_owned(),
            train_context: config.train_context,
            kv_bytes_per_token: (config.n_layers * config.n_kv_heads * config.head_dim * 2 * 2) as u64,
        })
    }
}

/// Everything of a model but its decoder.
struct Parsed {
    header: crate::gguf::GgufHeader,
    tokenizer: Tokenizer,
    config: DecoderConfig,
    template: ChatTemplate,
    policy: TurnPolicy,
    info: ModelInfo,
}

fn parse(bytes: &[u8], options: &LoadOptions) -> Result<Parsed, LoadError> {
    let gguf = Gguf::parse(bytes)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let config = DecoderConfig::from_gguf(&gguf, tokenizer.n_vocab())?;
    let capacity = options.context_length.unwrap_or(config.train_context.min(DEFAULT_CONTEXT)).clamp(16, 1 << 20);
    let template = choose_template(&gguf, &tokenizer)?;
    let policy = TurnPolicy::derive(&template, &tokenizer)?;
    let mut quantization = BTreeMap::new();
    for t in &gguf.tensors {
        *quantization.entry(t.ty.name().to_owned()).or_insert(0) += 1;
    }
    let info = ModelInfo {
        name: gguf.opt_str("general.name")?.map(str::to_owned),
        architecture: config.architecture.name().to_owned(),
        n_params: gguf.tensors.iter().map(|t| t.n_elements()).sum(),
        quantization,
        train_context: config.train_context,
        context_length: capacity,
        n_vocab: tokenizer.n_vocab(),
        n_layers: config.n_layers,
        n_embd: config.n_embd,
        template_source: template.source(),
        template: template.text().to_owned(),
        bos: tokenizer.bos,
        eos: tokenizer.eos,
    };
    Ok(Parsed { header: gguf.detach(bytes), tokenizer, config, template, policy, info })
}

fn choose_template(gguf: &Gguf<'_>, tokenizer: &Tokenizer) -> Result<ChatTemplate, LoadError> {
    let text_of = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or_default().to_owned();
    let tokens = TemplateTokens { bos: text_of(tokenizer.bos), eos: text_of(tokenizer.eos) };
    if let Some(text) = gguf.opt_str("tokenizer.chat_template")? {
        return Ok(ChatTemplate::new(text, TemplateSource::Model, tokens)?);
    }
    let (text, source) = if tokenizer.token_id("<start_of_turn>").is_some() {
        (GEMMA_TEMPLATE, TemplateSource::BuiltinGemma)
    } else if tokenizer.token_id("<|im_start|>").is_some() {
        (CHATML_TEMPLATE, TemplateSource::BuiltinChatMl)
    } else {
        (PLAIN_TEMPLATE, TemplateSource::BuiltinPlain)
    };
    Ok(ChatTemplate::new(text, source, tokens)?)
}

impl LanguageModel for ModelDecoder {
    fn n_vocab(&self) -> usize {
        self.config().n_vocab
    }

    fn capacity(&self) -> usize {
        ModelDecoder::capacity(self)
    }

    fn n_cached(&self) -> usize {
        ModelDecoder::n_cached(self)
    }

    fn truncate(&mut self, len: usize) {
        ModelDecoder::truncate(self, len);
    }

    fn remove(&mut self, from: usize, to: usize) -> Result<(), ModelError> {
        Ok(ModelDecoder::shift(self, from, to)?)
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        Ok(ModelDecoder::forward(self, tokens, false)?)
    }

    fn forward_into(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<(), ModelError> {
        Ok(ModelDecoder::forward_into(self, tokens, false, logits)?)
    }

    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let n_vocab = self.config().n_vocab;
        let flat = ModelDecoder::forward(self, tokens, true)?;
        Ok(flat.chunks(n_vocab).map(<[f32]>::to_vec).collect())
    }

    async fn forward_into_async(&mut self, tokens: &[u32], logits: &mut Vec<f32>) -> Result<(), ModelError> {
        Ok(ModelDecoder::forward_async(self, tokens, logits).await?)
    }

    fn dispatches(&self) -> Option<u64> {
        ModelDecoder::dispatches(self)
    }

    fn shortlist_limit(&self) -> usize {
        ModelDecoder::shortlist_limit(self)
    }

    async fn forward_shortlist_async(
        &mut self,
        tokens: &[u32],
        list: &Shortlist,
        out: &mut Vec<Candidate>,
    ) -> Result<(), ModelError> {
        Ok(ModelDecoder::forward_shortlist_async(self, tokens, list, out).await?)
    }
}

impl<B: Backend> LanguageModel for Decoder<B> {
    fn n_vocab(&self) -> usize {
        self.config().n_vocab
    }

    fn capacity(&self) -> usize {
        Decoder::capacity(self)
    }

    fn n_cached(&self) -> usize {
        Decoder::n_cached(self)
    }

    fn truncate(&mut self, len: usize) {
        Decoder::truncate(self, len);
    }

    fn remove(&mut self, from: usize, to: usize) -> Result<(), ModelError> {
        Ok(Decoder::shift(self, from, to)?)
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        Ok(Decoder::forward(self, tokens, false)?)
    }

    fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let n_vocab = self.config().n_vocab;
        let flat = Decoder::forward(self, tokens, true)?;
        Ok(flat.chunks(n_vocab).map(<[f32]>::to_vec).collect())
    }
}

impl charter_core::Vocabulary for Tokenizer {
    fn n_vocab(&self) -> usize {
        Tokenizer::n_vocab(self)
    }

    fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, charter_core::VocabError> {
        Tokenizer::encode(self, text, parse_special).map_err(|e| charter_core::VocabError(e.to_string()))
    }

    fn token_bytes(&self, id: u32) -> &[u8] {
        Tokenizer::token_bytes(self, id).unwrap_or_default()
    }

    fn is_control(&self, id: u32) -> bool {
        self.token_kind(id) == Some(crate::tokenizer::TokenKind::Control)
    }

    fn control_tokens(&self) -> Vec<u32> {
        (0..Tokenizer::n_vocab(self) as u32).filter(|&id| charter_core::Vocabulary::is_control(self, id)).collect()
    }

    fn bos(&self) -> Option<u32> {
        self.bos
    }

    fn eos(&self) -> Option<u32> {
        self.eos
    }

    fn adds_bos(&self) -> bool {
        self.add_bos
    }

    fn end_of_generation(&self) -> Vec<u32> {
        self.end_of_generation.clone()
    }
}
