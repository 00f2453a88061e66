//! The inference worker built with relaxed SIMD (`--features relaxed-simd`): the same
//! entry point as `main.rs`, a separate binary because a module with relaxed
//! instructions does not validate in a browser without them.

fn main() {
    #[cfg(target_arch = "wasm32")]
    charter_worker::start();
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("charter-worker-relaxed runs inside a browser's Web Worker; build it with Trunk (see README.md)");
}
