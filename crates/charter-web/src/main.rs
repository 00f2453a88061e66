//! The browser app's entry point; Trunk builds it from `web/index.html`.

fn main() {
    #[cfg(target_arch = "wasm32")]
    charter_web::run();
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("charter-web is a browser app; `cargo xtask serve` builds and serves it (see README.md)");
}
