//! Which compute backend runs, and why, told to the user in one sentence.

use charter_protocol::{BackendKind, BackendPreference, BackendReport};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// Looks for a WebGPU adapter and chooses the backend: the GPU where the browser offers
/// a hardware adapter that opens, the CPU otherwise (a software adapter such as
/// SwiftShader is far slower than the CPU kernels). The page starts the relaxed-SIMD
/// build of this worker where the browser validates relaxed SIMD, so the CPU kernels in
/// use are this build's best.
pub async fn detect(threads: &crate::threads::Threads) -> BackendReport {
    let adapter = webgpu_adapter().await;
    let (webgpu_adapter, webgpu_description) = match &adapter {
        Some(info) => (true, Some(info.name.clone())),
        None => (false, None),
    };
    let isa = charter_engine::Isa::best();
    let cpu = match isa {
        charter_engine::Isa::RelaxedSimd => "on the CPU with WebAssembly relaxed SIMD (this browser has its integer dot product)",
        _ => "on the CPU with WebAssembly SIMD128 (this browser has no relaxed SIMD)",
    };
    let cpu_report = |reason: String| BackendReport {
        chosen: BackendKind::WasmSimd,
        webgpu_adapter,
        webgpu_description: webgpu_description.clone(),
        kernels: isa.name().to_owned(),
        reason,
        threads: threads.count as u32,
        threads_reason: threads.reason.clone(),
    };
    let Some(info) = adapter else {
        return cpu_report(format!("This browser offers no WebGPU adapter, so the model runs {cpu}."));
    };
    if info.fallback {
        return cpu_report(format!(
            "This browser offers a WebGPU adapter ({}), but it is a software renderer, slower than Charter's CPU kernels, so the model runs {cpu}.",
            info.name
        ));
    }
    match charter_gpu::Gpu::new(charter_gpu::GpuOptions::default()).await {
        Ok(_) => BackendReport {
            chosen: BackendKind::WebGpu,
            webgpu_adapter,
            webgpu_description,
            kernels: "webgpu".to_owned(),
            reason: format!("This browser offers a WebGPU adapter ({}), so the model runs on the GPU with Charter's WGSL kernels.", info.name),
            threads: threads.count as u32,
            threads_reason: threads.reason.clone(),
        },
        Err(e) => cpu_report(format!("This browser offers a WebGPU adapter ({}), but it did not open ({e}), so the model runs {cpu}.", info.name)),
    }
}

/// The report for a load under the user's preference, and whether to open the GPU.
pub fn for_preference(detected: &BackendReport, preference: BackendPreference) -> (BackendReport, bool) {
    let mut report = detected.clone();
    match preference {
        BackendPreference::Auto => {
            let gpu = report.chosen == BackendKind::WebGpu;
            (report, gpu)
        }
        BackendPreference::Cpu => {
            if report.chosen == BackendKind::WebGpu {
                fall_back(&mut report, "Settings ask for the CPU");
            }
            (report, false)
        }
        BackendPreference::Gpu if !report.webgpu_adapter => {
            report.reason = format!("{} Settings ask for the GPU, but there is none.", report.reason);
            (report, false)
        }
        BackendPreference::Gpu => {
            if report.chosen != BackendKind::WebGpu {
                let adapter = report.webgpu_description.clone().unwrap_or_else(|| "unnamed adapter".into());
                report.chosen = BackendKind::WebGpu;
                report.kernels = "webgpu".to_owned();
                report.reason = format!("Settings ask for the GPU, so the model runs on this browser's WebGPU adapter ({adapter}) with Charter's WGSL kernels.");
            }
            (report, true)
        }
    }
}

/// The report once the GPU chosen at start has given way to the CPU, for `why`.
pub fn fall_back(report: &mut BackendReport, why: &str) {
    let isa = charter_engine::Isa::best();
    report.chosen = BackendKind::WasmSimd;
    report.kernels = isa.name().to_owned();
    report.reason = format!("{} But the model runs on the CPU: {why}.", report.reason);
}

/// What the page's WebGPU adapter says of itself.
struct AdapterInfo {
    name: String,
    /// A software adapter (`isFallbackAdapter`).
    fallback: bool,
}

async fn webgpu_adapter() -> Option<AdapterInfo> {
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
    let name = if parts.is_empty() { "unnamed adapter".to_owned() } else { parts.join(" ") };
    // Where the spec keeps it now, and where older browsers did.
    let flag = |on: &JsValue| Reflect::get(on, &JsValue::from_str("isFallbackAdapter")).ok().and_then(|v| v.as_bool());
    let fallback = info.as_ref().and_then(flag).or_else(|| flag(&adapter)).unwrap_or(false)
        || name.to_lowercase().contains("swiftshader");
    Some(AdapterInfo { name, fallback })
}
