//! Charter's pure core: chat, chat templates, prompts as token segments, the turn
//! policy that keeps the model inside the assistant's turn, sampling, stop strings and
//! the generation loop.
//!
//! This crate has no ML and no web dependencies and does no I/O. It drives any model
//! through [`LanguageModel`] and reads any vocabulary through [`Vocabulary`];
//! `charter-engine` supplies both. Clocks and cancellation come from the caller through
//! [`GenerateHooks`], so the same loop runs in the native CLI and in a browser worker.
//!
//! The pieces, in the order a reply passes through them:
//!
//! * [`template::ChatTemplate`] renders [`Message`]s and cuts the result into the
//!   template's text and the messages' text;
//! * [`prompt::build_prompt`] tokenizes the template's text with special parsing on and
//!   message text with it off, so typed look-alikes of turn markers stay text;
//! * [`policy::TurnPolicy`] names the tokens that end the turn, the tokens masked out
//!   and the stop strings, derived from the vocabulary and the template;
//! * [`Session::generate`] prefills what the KV cache lacks and samples until a stop.

#![deny(missing_docs)]

pub mod bench;
pub mod catalog;
pub mod chat;
pub mod constitution;
pub mod generate;
pub mod history;
pub mod policy;
pub mod prompt;
pub mod reuse;
pub mod sampling;
pub mod stop;
pub mod template;
pub mod utf8;
pub mod vocab;
pub mod window;

pub use chat::{Message, Role};
pub use generate::{
    GenerateError, GenerateHooks, GenerateOptions, Generation, GenerationStats, LanguageModel, ModelError, NoHooks, Reply,
    Session, StopReason,
};
pub use policy::TurnPolicy;
pub use prompt::{Prompt, PromptError, TokenOrigin, build_prompt};
pub use sampling::{Candidate, Sampler, SamplingParams, Shortlist};
pub use template::{ChatTemplate, TemplateError, TemplateSource, TemplateTokens};
pub use vocab::{VocabError, Vocabulary};
