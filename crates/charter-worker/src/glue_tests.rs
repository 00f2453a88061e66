//! The worker's browser glue, tested inside a real dedicated worker in headless
//! Chromium (wasm-bindgen-test): Cache Storage round trips, the free-space estimate,
//! the yield that lets a cancel in, backend detection, and the seal that keeps the
//! worker to its own origin.

use wasm_bindgen_test::*;

use crate::{backend, fetch, js, storage};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn stored_models_round_trip_and_delete() {
    let url = "https://example.invalid/models/glue-test.gguf";
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let stored = storage::put(url, &bytes, "abc").await.expect("stored");
    assert_eq!(stored.size, 100_000);
    assert_eq!(storage::get(url).await.expect("read").expect("present"), bytes);
    let listed = storage::list().await.expect("listed");
    let entry = listed.iter().find(|m| m.url == url).expect("listed entry");
    assert_eq!(entry.size, 100_000);
    assert_eq!(entry.sha256.as_deref(), Some("abc"));
    storage::delete(url).await.expect("deleted");
    assert!(storage::get(url).await.expect("read").is_none());
    assert!(!storage::list().await.expect("listed").iter().any(|m| m.url == url));
    storage::delete(url).await.expect("deleting twice is fine");
}

#[wasm_bindgen_test]
async fn the_browser_reports_free_space() {
    let free = storage::free_bytes().await.expect("an estimate");
    assert!(free > 0.0);
}

#[wasm_bindgen_test]
async fn yielding_lets_queued_tasks_run() {
    use std::cell::Cell;
    use std::rc::Rc;
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    wasm_bindgen_futures::spawn_local(async move { flag.set(true) });
    assert!(!ran.get());
    js::yield_now().await;
    assert!(ran.get(), "a task queued before the yield ran during it");
    let t0 = js::now();
    js::sleep(20).await;
    assert!(js::now() - t0 >= 0.015);
}

#[wasm_bindgen_test]
async fn the_backend_report_explains_itself() {
    let report = backend::detect(&crate::threads::start()).await;
    assert_eq!(report.chosen, charter_protocol::BackendKind::WasmSimd);
    assert!(report.reason.contains("WebAssembly SIMD"), "{}", report.reason);
    assert_eq!(report.webgpu_adapter, report.webgpu_description.is_some());
}

#[wasm_bindgen_test]
async fn a_sealed_worker_refuses_other_origins_before_it_fetches() {
    let other = charter_protocol::ModelRef {
        id: "m".into(),
        name: "M".into(),
        url: "https://huggingface.co/m.gguf".into(),
        size: None,
        sha256: None,
    };
    assert!(fetch::check_sealed(&other.url).is_ok(), "an unsealed worker may fetch anywhere");
    let origin = fetch::seal();
    assert_eq!(origin, js::scope().location().origin());
    let error = fetch::download(&other, |_, _| panic!("no progress: nothing was fetched")).await.expect_err("refused");
    assert_eq!(error.kind, charter_protocol::ErrorKind::Sealed);
    assert!(error.message.contains("https://huggingface.co"), "{}", error.message);
    assert!(fetch::check_sealed("models/m.gguf").is_ok(), "its own origin stays reachable");
    assert!(fetch::check_sealed(&format!("{origin}/models/m.gguf")).is_ok());
}
