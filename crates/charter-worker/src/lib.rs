//! Charter's inference worker: the engine inside a dedicated Web Worker, speaking
//! `charter-protocol` to the UI.
//!
//! It owns everything heavy so the page never blocks: downloading models (resumable,
//! verified before they are stored), Cache Storage, loading the GGUF, and generation.
//! Generation runs as a [`charter_core::Generation`] stepped one token at a time, and
//! the worker yields to its event loop between steps so a cancel request is read
//! within a token.
//!
//! The browser glue (`runtime`, `fetch`, `storage`, `backend`) compiles only for
//! wasm32; what decides things ([`engine`], [`verify`]) is plain Rust and is tested
//! natively too. This crate is not the UI (`charter-web`) and has no DOM.

#![deny(missing_docs)]

pub mod engine;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod backend;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod runtime;
#[cfg(target_arch = "wasm32")]
mod state_store;
#[cfg(target_arch = "wasm32")]
mod storage;

#[cfg(target_arch = "wasm32")]
pub use runtime::start;

#[cfg(all(test, target_arch = "wasm32"))]
mod glue_tests;
