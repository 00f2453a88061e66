//! Times a model's prefill and decode on this machine: `cargo run --release -p
//! charter-engine --example speed -- MODEL.gguf [cpu|scalar|candle]`. It builds for WASI
//! too, to time the wasm kernels outside a browser. A measuring tool, not a test.

use std::time::Instant;

use charter_core::{LanguageModel, sampling};
use charter_engine::{BackendChoice, Isa, LoadOptions, Model};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: speed MODEL.gguf [cpu|scalar|candle]");
    let backend = match args.next().as_deref() {
        Some("scalar") => BackendChoice::CpuOn(Isa::Scalar),
        #[cfg(feature = "candle")]
        Some("candle") => BackendChoice::Candle,
        _ => BackendChoice::Cpu,
    };
    let bytes = std::fs::read(&path).expect("reading the model");
    let t = Instant::now();
    let mut model = Model::load_owned(bytes, &LoadOptions { context_length: Some(2048), backend, ..Default::default() }).expect("loading");
    println!("{}: loaded in {:.2} s on {}", path, t.elapsed().as_secs_f64(), model.decoder.describe());
    let text = "Write a detailed story about a lighthouse keeper who finds a message in a bottle. ".repeat(40);
    let ids = model.tokenizer.encode(&text, false).expect("tokenizing");
    let d = &mut model.decoder;
    for n in [42, 300] {
        let best = (0..2)
            .map(|_| {
                d.truncate(0);
                let t = Instant::now();
                LanguageModel::forward(d, &ids[..n]).expect("prefill");
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!("prefill {n}: {:.1} tok/s", n as f64 / best);
    }
    d.truncate(0);
    let mut logits = LanguageModel::forward(d, &ids[..42]).expect("prefill");
    let t = Instant::now();
    for _ in 0..128 {
        let next = sampling::argmax(&logits);
        logits = LanguageModel::forward(d, &[next]).expect("decode");
    }
    println!("decode 128: {:.1} tok/s", 128.0 / t.elapsed().as_secs_f64());
}
