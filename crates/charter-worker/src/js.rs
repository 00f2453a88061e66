//! Small pieces of browser plumbing the other modules share.

use charter_protocol::{ErrorKind, WorkerError};
use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageChannel};

/// The worker's global scope.
pub fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Seconds on the worker's monotonic clock.
pub fn now() -> f64 {
    scope().performance().map_or_else(|| js_sys::Date::now(), |p| p.now()) / 1000.0
}

/// Lets the event loop run queued messages (a cancel) before the next token. A
/// MessageChannel round trip is not clamped the way nested timers are.
pub async fn yield_now() {
    let promise = Promise::new(&mut |resolve, _reject| {
        let Ok(channel) = MessageChannel::new() else {
            let _ = resolve.call0(&JsValue::NULL);
            return;
        };
        let on_message = Closure::once_into_js(move || {
            let _ = resolve.call0(&JsValue::NULL);
        });
        channel.port1().set_onmessage(Some(on_message.unchecked_ref()));
        let _ = channel.port2().post_message(&JsValue::NULL);
    });
    let _ = JsFuture::from(promise).await;
}

/// Waits `ms` milliseconds.
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// A JS exception as one line of text.
pub fn describe(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        let name = e.name().as_string().unwrap_or_default();
        let message = e.message().as_string().unwrap_or_default();
        return if name.is_empty() { message } else { format!("{name}: {message}") };
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Whether a JS exception is the browser saying storage is full.
pub fn is_quota_error(value: &JsValue) -> bool {
    value
        .dyn_ref::<js_sys::Error>()
        .and_then(|e| e.name().as_string())
        .is_some_and(|n| n == "QuotaExceededError")
}

/// The most memory the KV cache may take on this device: 64 MiB per GiB the browser
/// reports (`navigator.deviceMemory`, which it rounds and caps at 8, so at most 512 MiB),
/// 4 GiB's worth where it reports nothing. A tab shares the machine with everything else.
pub fn cache_budget_bytes() -> u64 {
    let reported = number(&scope().navigator(), "deviceMemory").filter(|g| g.is_finite() && *g > 0.0);
    let gib = reported.unwrap_or(4.0).clamp(0.25, 8.0);
    (gib * 64.0 * 1024.0 * 1024.0) as u64
}

/// Reads a numeric property, if present.
pub fn number(object: &JsValue, key: &str) -> Option<f64> {
    Reflect::get(object, &JsValue::from_str(key)).ok().and_then(|v| v.as_f64())
}

/// Awaits a promise, turning a rejection into an error of `kind`.
pub async fn settle(promise: Promise, kind: ErrorKind, what: &str) -> Result<JsValue, WorkerError> {
    JsFuture::from(promise).await.map_err(|e| {
        if is_quota_error(&e) {
            WorkerError::new(ErrorKind::Quota, format!("{what}: the browser's storage for this site is full ({})", describe(&e)))
        } else {
            WorkerError::new(kind, format!("{what}: {}", describe(&e)))
        }
    })
}

/// Reads a byte stream to its end straight into wasm memory, one chunk at a time, so
/// the whole body never exists as one JavaScript buffer beside the copy. `size` is
/// reserved up front when it is known.
pub async fn read_stream(stream: web_sys::ReadableStream, size: Option<usize>) -> Result<Vec<u8>, String> {
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut out = Vec::with_capacity(size.unwrap_or(0));
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| describe(&e))?;
        if Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok(out);
        }
        let bytes: js_sys::Uint8Array = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(|e| describe(&e))?.unchecked_into();
        let start = out.len();
        out.resize(start + bytes.length() as usize, 0);
        bytes.copy_to(&mut out[start..]);
    }
}
