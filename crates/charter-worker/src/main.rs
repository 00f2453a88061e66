//! The inference worker's entry point. In a browser, Trunk's loader shim instantiates
//! this binary inside a dedicated Web Worker and `main` installs the message handler;
//! natively there is nothing to run.

fn main() {
    #[cfg(target_arch = "wasm32")]
    charter_worker::start();
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("charter-worker runs inside a browser's Web Worker; build it with Trunk (see README.md)");
}
