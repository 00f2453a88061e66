//! The CPU kernels' threads in the browser: in the threaded build (`--features
//! threads`, shared memory), helpers are Web Workers started from this worker, each
//! instantiating the same module on the same memory and running a
//! `charter_threads::Helper` (`public/charter-helper.js`); the single-thread build has
//! none and says why.

use std::rc::Rc;

use charter_threads::Pool;
#[cfg(feature = "threads")]
use wasm_bindgen::prelude::*;

use crate::js::scope;

/// At most this many threads, however many cores the device reports: a small model's
/// products stop gaining well before, and each helper holds a thread's stack.
#[cfg(feature = "threads")]
const MOST: usize = 8;

/// The threads this worker runs the kernels on, and a sentence saying why that many.
#[derive(Default)]
pub struct Threads {
    /// The pool, in the threaded build with more than one core.
    pub pool: Option<Rc<Pool>>,
    /// Threads in use.
    pub count: usize,
    /// Why, for the backend chip.
    pub reason: String,
}

/// Cores the browser reports.
fn cores() -> usize {
    let n = scope().navigator().hardware_concurrency();
    if n.is_finite() && n >= 1.0 { n as usize } else { 1 }
}

/// What the page said when it started this build instead of the threaded one: the
/// worker's name, `one thread: <why>` (`charter_web::simd::WorkerBuild::start`).
fn page_says() -> Option<String> {
    scope().name().strip_prefix("one thread: ").map(str::to_owned)
}

/// The threads of this build.
pub fn start() -> Threads {
    let cores = cores();
    #[cfg(feature = "threads")]
    {
        if cores > 1 {
            let count = cores.min(MOST);
            match Pool::with_helpers(count, now_ms, spawn) {
                Ok(pool) => {
                    return Threads {
                        pool: Some(Rc::new(pool)),
                        count,
                        reason: format!("{count} threads (this device has {cores} cores and the page is cross-origin isolated)"),
                    };
                }
                Err(e) => {
                    return Threads { pool: None, count: 1, reason: format!("one thread: {e}") };
                }
            }
        }
    }
    let isolated = js_sys::Reflect::get(&scope(), &"crossOriginIsolated".into()).is_ok_and(|v| v.is_truthy());
    let reason = match page_says() {
        Some(why) => format!("one thread: {why}"),
        None if cores <= 1 => "one thread: this device reports one core".to_owned(),
        None if !isolated => {
            "one thread: the page is not cross-origin isolated (its server sends no COOP/COEP headers), so threads cannot share memory".to_owned()
        }
        None => "one thread: this is the single-thread build".to_owned(),
    };
    Threads { pool: None, count: 1, reason }
}

/// Milliseconds on the worker's clock, for the pool's governor.
#[cfg(feature = "threads")]
fn now_ms() -> f64 {
    crate::js::now() * 1e3
}

/// Starts one helper: a Web Worker that instantiates this module on this memory and
/// runs `helper` ([`charter_helper_run`]).
#[cfg(feature = "threads")]
fn spawn(helper: charter_threads::Helper) -> Result<(), String> {
    let worker = web_sys::Worker::new("./charter-helper.js").map_err(|e| crate::js::describe(&e))?;
    let ptr = Box::into_raw(Box::new(helper));
    let message = js_sys::Array::of3(&wasm_bindgen::module(), &wasm_bindgen::memory(), &JsValue::from(ptr as usize as u32));
    if let Err(e) = worker.post_message(&message) {
        // SAFETY: the pointer came from `Box::into_raw` above and was never handed out.
        drop(unsafe { Box::from_raw(ptr) });
        return Err(crate::js::describe(&e));
    }
    // The helper runs until the pool is dropped and then closes itself; nothing here
    // needs its handle.
    std::mem::forget(worker);
    Ok(())
}

/// A helper worker's entry point: serves the pool's jobs until the pool is dropped.
/// `helper` is what [`spawn`] posted.
#[cfg(feature = "threads")]
#[wasm_bindgen]
pub fn charter_helper_run(helper: u32) {
    // SAFETY: `helper` is the `Box::into_raw` of a `Helper` that `spawn` posted to
    // exactly one helper worker, which calls this once.
    let helper = unsafe { Box::from_raw(helper as usize as *mut charter_threads::Helper) };
    helper.run();
}
