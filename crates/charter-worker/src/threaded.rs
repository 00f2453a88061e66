//! The inference worker built with threads (`--features threads`: shared memory,
//! atomics, relaxed SIMD; built by `cargo xtask build-web` with a pinned nightly, see
//! web/README.md). The page starts it where it is cross-origin isolated. Its helper
//! workers instantiate the same module and must not start a second worker loop.

fn main() {
    #[cfg(target_arch = "wasm32")]
    if !charter_worker::is_helper() {
        charter_worker::start();
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("charter-worker-threads runs inside a browser's Web Worker; build it with `cargo xtask build-web`");
}
