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
mod threads;
#[cfg(target_arch = "wasm32")]
mod storage;

#[cfg(target_arch = "wasm32")]
pub use runtime::start;
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use threads::charter_helper_run;

/// Whether this instance of the module runs in one of the threaded build's helper
/// workers (which set `CHARTER_HELPER` before instantiating it), not as the worker.
#[cfg(target_arch = "wasm32")]
pub fn is_helper() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"CHARTER_HELPER".into()).is_ok_and(|v| v.is_truthy())
}

#[cfg(all(test, target_arch = "wasm32"))]
mod glue_tests;
