//! Whether this browser runs WebAssembly SIMD, asked before the worker (built with
//! `simd128`) is started, so a browser without it gets a message instead of a blank page;
//! and whether it runs relaxed SIMD, which decides which of the two worker builds starts
//! (a module with relaxed instructions does not even validate elsewhere).

/// A minimal module whose one function returns `i8x16.popcnt(i8x16.splat(0))`: it
/// validates only where SIMD is supported.
const SIMD_PROBE: [u8; 31] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, 0x0a, 0x01, 0x08, 0x00, // code: one body of 8 bytes, no locals
    0x41, 0x00, // i32.const 0
    0xfd, 0x0f, // i8x16.splat
    0xfd, 0x62, // i8x16.popcnt
    0x0b, // end
];

/// Whether WebAssembly SIMD is available.
pub fn supported() -> bool {
    let bytes = js_sys::Uint8Array::from(&SIMD_PROBE[..]);
    js_sys::WebAssembly::validate(&bytes).unwrap_or(false)
}

/// A minimal module whose one function returns
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` of three `i8x16.splat(0)`: it validates only
/// where relaxed SIMD is supported.
const RELAXED_PROBE: [u8; 40] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, 0x13, 0x01, 0x11, 0x00, // code: one body of 17 bytes, no locals
    0x41, 0x00, 0xfd, 0x0f, // i32.const 0, i8x16.splat
    0x41, 0x00, 0xfd, 0x0f, // the same
    0x41, 0x00, 0xfd, 0x0f, // the same
    0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s
    0x0b, // end
];

/// Whether WebAssembly relaxed SIMD is available.
pub fn relaxed_supported() -> bool {
    let bytes = js_sys::Uint8Array::from(&RELAXED_PROBE[..]);
    js_sys::WebAssembly::validate(&bytes).unwrap_or(false)
}

/// Whether this page can share memory with workers: it is cross-origin isolated (its
/// server, or the app's service worker, sends COOP and COEP) and has
/// `SharedArrayBuffer`.
pub fn threads_possible() -> bool {
    let global = js_sys::global();
    let has = |name: &str| js_sys::Reflect::get(&global, &name.into()).is_ok_and(|v| v.is_truthy());
    has("crossOriginIsolated") && has("SharedArrayBuffer")
}

/// The builds of the inference worker, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerBuild {
    /// Threads on shared memory, with relaxed SIMD.
    Threads,
    /// One thread, relaxed SIMD.
    Relaxed,
    /// One thread, SIMD128.
    Simd128,
}

impl WorkerBuild {
    /// The best build this browser and page can run.
    pub fn best() -> WorkerBuild {
        match (relaxed_supported(), threads_possible()) {
            (true, true) => WorkerBuild::Threads,
            (true, false) => WorkerBuild::Relaxed,
            (false, _) => WorkerBuild::Simd128,
        }
    }

    /// The build to start when this one did not: `None` after the last.
    pub fn fallback(self) -> Option<WorkerBuild> {
        match self {
            WorkerBuild::Threads => Some(WorkerBuild::Relaxed),
            WorkerBuild::Relaxed => Some(WorkerBuild::Simd128),
            WorkerBuild::Simd128 => None,
        }
    }

    /// Why a single-thread build runs, once this build did not start for `reason`: a
    /// note for the builds after it, where this one was the threaded build.
    pub fn note_after_failure(self, reason: &str) -> Option<String> {
        (self == WorkerBuild::Threads).then(|| format!("the threaded build did not start here ({reason})"))
    }

    /// What to call it in a message.
    pub fn name(self) -> &'static str {
        match self {
            WorkerBuild::Threads => "threaded",
            WorkerBuild::Relaxed => "relaxed-SIMD",
            WorkerBuild::Simd128 => "SIMD128",
        }
    }

    /// Starts it. `note` (why a single-thread build runs where the page could share
    /// memory) becomes the worker's name, which its backend report reads.
    pub fn start(self, note: Option<&str>) -> Result<web_sys::Worker, wasm_bindgen::JsValue> {
        let loader = match self {
            WorkerBuild::Threads => "./charter-worker-threads_loader.js",
            WorkerBuild::Relaxed => "./charter-worker-relaxed_loader.js",
            WorkerBuild::Simd128 => "./charter-worker_loader.js",
        };
        let note = note.map(str::to_owned).or_else(|| {
            (self == WorkerBuild::Simd128 && threads_possible()).then(|| "this browser has no relaxed SIMD, which the threaded build needs".to_owned())
        });
        let options = web_sys::WorkerOptions::new();
        if let Some(note) = note {
            options.set_name(&format!("{NOTE_PREFIX}{note}"));
        }
        web_sys::Worker::new_with_options(loader, &options)
    }
}

/// How long a build with a fallback may take to say it is ready before the page gives
/// up on it. Starting takes well under a second; only a build that cannot run takes
/// this (a module that fails to compile rejects a promise inside the worker, which no
/// error event reports).
pub const START_MS: i32 = 10_000;

/// What a worker's name starts with when it carries a note for its backend report.
pub const NOTE_PREFIX: &str = "one thread: ";
