// One helper thread of Charter's threaded inference worker. The worker posts
// [module, memory, helper]: this file instantiates the same compiled module on the same
// shared memory and runs the helper, which serves the CPU kernels' matrix products until
// the worker's pool ends. CHARTER_HELPER tells the module's start function that this
// instance is not the worker itself.
self.CHARTER_HELPER = true;
importScripts('./charter-worker-threads.js');
self.onmessage = async (event) => {
  const [module, memory, helper] = event.data;
  self.onmessage = null;
  await wasm_bindgen({ module_or_path: module, memory });
  wasm_bindgen.charter_helper_run(helper);
  close();
};
