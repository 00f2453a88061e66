//! Charter's inference engine: GGUF models from bytes, their tokenizers, and the
//! transformer forward pass.
//!
//! This crate knows about model files and tensors. It does not know about chat,
//! constitutions, sampling or stopping: those live in `charter-core`, which drives a
//! loaded model through `charter_core::LanguageModel` and reads its vocabulary through
//! `charter_core::Vocabulary`. Nor does it know about the browser: the worker glue hands
//! it a byte buffer and gets logits back.
//!
//! * [`gguf`] parses and validates the file without trusting any count or offset;
//! * [`tokenizer`] rebuilds the model's tokenizer from the file's metadata;
//! * [`architecture`] reads the metadata into one typed decoder configuration;
//! * [`decoder`] runs the transformer over a [`backend::Backend`], with a preallocated
//!   KV cache; [`cpu`] is Charter's CPU backend (on `charter-kernels`), [`candle`] the
//!   reference backend on candle (feature `candle`, on by default; the browser worker
//!   builds without it), [`gpu`] the WGSL backend on `charter-gpu` (feature `gpu`);
//! * [`model`] puts them together: [`Model::load`].

pub mod architecture;
pub mod backend;
#[cfg(feature = "candle")]
pub mod candle;
pub mod cpu;
pub mod decoder;
pub mod gguf;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod model;
pub mod tokenizer;

pub use charter_kernels::Isa;
pub use model::{BackendChoice, LoadError, LoadOptions, Model, ModelDecoder, ModelInfo, WindowFacts};
