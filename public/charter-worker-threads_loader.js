// Starts the threaded build of Charter's inference worker (shared memory, atomics and
// relaxed SIMD; built by `cargo xtask build-web`). The page starts this file where it is
// cross-origin isolated; the module creates its shared memory, and its helper workers
// (charter-helper.js) instantiate the same module on that memory.
importScripts('./charter-worker-threads.js');
wasm_bindgen({ module_or_path: './charter-worker-threads_bg.wasm' });
