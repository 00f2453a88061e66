//! Charter's browser UI: a Leptos client-side app that never links the engine. It
//! starts the inference worker (`charter-worker`) and talks to it through
//! `charter-protocol`; it keeps conversations in IndexedDB and renders untrusted
//! model output as inert Markdown.
//!
//! The pure pieces ([`markdown`], [`format`], [`conversation`]) are plain Rust and are
//! tested natively; the views and browser glue compile only for wasm32.

#![deny(missing_docs)]

pub mod conversation;
mod embed;
pub mod format;
pub mod markdown;

#[cfg(target_arch = "wasm32")]
mod api_relay;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod egress;
#[cfg(target_arch = "wasm32")]
mod idb;
#[cfg(target_arch = "wasm32")]
mod layers;
#[cfg(target_arch = "wasm32")]
mod offline;
#[cfg(target_arch = "wasm32")]
mod operator;
#[cfg(target_arch = "wasm32")]
mod simd;
#[cfg(target_arch = "wasm32")]
mod state;

/// Mounts the app on the page, or explains why this browser cannot run it.
#[cfg(target_arch = "wasm32")]
pub fn run() {
    use leptos::prelude::*;
    console_error_panic_hook::set_once();
    embed::apply_look();
    if !simd::supported() {
        leptos::mount::mount_to_body(|| {
            view! {
                <div class="unsupported" data-testid="unsupported" role="alert">
                    <h1>"Charter cannot run in this browser"</h1>
                    <p>"Charter runs the model on your device with WebAssembly SIMD, which this browser does not support. A current Chrome, Edge, Firefox or Safari (16.4 or later) does."</p>
                </div>
            }
        });
        return;
    }
    leptos::mount::mount_to_body(app::App);
}
