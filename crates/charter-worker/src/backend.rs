//! Which compute backend runs, and why, told to the user in one sentence.

use charter_protocol::{BackendKind, BackendReport};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Looks for a WebGPU adapter and chooses the backend. Charter's engine runs on the
/// CPU with WebAssembly SIMD; a WebGPU adapter is reported but not yet used. The page
/// starts the relaxed-SIMD build of this worker where the browser validates relaxed
/// SIMD, so the kernels in use are this build's best.
pub async fn detect() -> BackendReport {
    let adapter = webgpu_adapter().await;
    let (webgpu_adapter, webgpu_description) = match &adapter {
        Some(info) => (true, Some(info.clone())),
        None => (false, None),
    };
    let isa = charter_engine::Isa::best();
    let cpu = match isa {
        charter_engine::Isa::RelaxedSimd => "on the CPU with WebAssembly relaxed SIMD (this browser has its integer dot product)",
        _ => "on the CPU with WebAssembly SIMD128 (this browser has no relaxed SIMD)",
    };
    let reason = match &adapter {
        Some(info) => format!(
            "This browser offers a WebGPU adapter ({info}), but Charter's WebGPU backend is not built yet, so the model runs {cpu}."
        ),
        None => format!("This browser offers no WebGPU adapter, so the model runs {cpu}."),
    };
    BackendReport { chosen: BackendKind::WasmSimd, webgpu_adapter, webgpu_description, kernels: isa.name().to_owned(), reason }
}

async fn webgpu_adapter() -> Option<String> {
    let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let gpu = Reflect::get(&navigator, &JsValue::from_str("gpu")).ok().filter(|g| !g.is_undefined() && !g.is_null())?;
    let request: Function = Reflect::get(&gpu, &JsValue::from_str("requestAdapter")).ok()?.dyn_into().ok()?;
    let promise: Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok().filter(|a| !a.is_null() && !a.is_undefined())?;
    let info = Reflect::get(&adapter, &JsValue::from_str("info")).ok();
    let field = |key: &str| {
        info.as_ref()
            .and_then(|i| Reflect::get(i, &JsValue::from_str(key)).ok())
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    let parts: Vec<String> = ["vendor", "architecture", "description"].iter().filter_map(|k| field(k)).collect();
    Some(if parts.is_empty() { "unnamed adapter".to_owned() } else { parts.join(" ") })
}
