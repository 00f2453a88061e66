//! Shared helpers for the engine's tests on the real test models.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where `cargo xtask fetch-models` keeps the test models.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHARTER_MODELS_DIR") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/charter/models")
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

pub fn model_bytes(file: &str) -> Vec<u8> {
    let path = models_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("cannot read test model {} ({e}); run `cargo xtask fetch-models` first", path.display())
    })
}

/// The root of the checkout under test: from `cargo test`'s environment, not baked in
/// at compile time, since cargo reuses test builds across checkouts that share a target
/// folder.
pub fn checkout() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference data from llama.cpp, beside the checkout.
pub fn oracle_rows(file: &str) -> Vec<serde_json::Value> {
    let dir = std::env::var_os("CHARTER_ORACLE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkout().join("tests/oracle"));
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {} ({e})", path.display()));
    text.lines().map(|l| serde_json::from_str(l).expect("oracle row is JSON")).collect()
}

/// A JSON array of ids, or a JSON string holding one (some oracle fields are stored so).
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    match v {
        serde_json::Value::String(s) => ids(&serde_json::from_str(s).expect("ids string is JSON")),
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_u64().expect("id") as u32).collect(),
        other => panic!("not ids: {other}"),
    }
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::String(s) => floats(&serde_json::from_str(s).expect("floats string is JSON")),
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_f64().expect("float") as f32).collect(),
        other => panic!("not floats: {other}"),
    }
}

pub fn load(file: &str) -> charter_engine::Model {
    charter_engine::Model::load(&model_bytes(file), &charter_engine::LoadOptions { context_length: Some(1024), ..Default::default() })
        .unwrap_or_else(|e| panic!("loading {file}: {e}"))
}
