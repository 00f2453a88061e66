// Charter's JS API for pages of Charter's own origin, in the shape of the Prompt API:
//
//   import { LanguageModel } from './charter-api.js';
//   const session = await LanguageModel.create({ initialPrompts: [{ role: 'system', content: 'Be brief.' }] });
//   console.log(await session.prompt('What is the capital of France?'));
//
// The model runs in a worker of this module's own, on the user's machine; it is the
// app's model, from the same storage, so a model the app downloaded is `available` here.
// The operator layer is the site's `operator.toml` beside this file, unless a session
// gives its own (`operator`). Types: charter-api.d.ts. Built by `cargo xtask build-web`,
// which puts the API's core (public/api/core.js) in place of the marker line.

// @charter-api-core

const base = new URL('./', import.meta.url);

// i32x4.relaxed_dot_i8x16_i7x16_add_s over three zero vectors: validates only where
// relaxed SIMD runs, and so does the faster of the worker's two builds.
const RELAXED_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0,
  65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 147, 2, 11];

function relaxed() {
  try { return WebAssembly.validate(new Uint8Array(RELAXED_PROBE)); } catch { return false; }
}

// The worker, as the app starts it: the relaxed-SIMD build where it validates, the
// SIMD128 one where that build fails before it says it is ready.
function workerTransport({ message, death }) {
  let worker = null;
  let ready = false;
  const queued = [];
  const spawn = fast => {
    worker = new Worker(new URL(fast ? 'charter-worker-relaxed_loader.js' : 'charter-worker_loader.js', base));
    worker.__fast = fast;
    ready = false;
    worker.onmessage = e => {
      if (typeof e.data !== 'string') return;
      if (!ready && e.data.includes('"type":"ready"')) {
        ready = true;
        for (const text of queued.splice(0)) worker.postMessage(text);
      }
      message(e.data);
    };
    worker.onerror = e => {
      e.preventDefault();
      worker.terminate();
      if (fast && !ready) return spawn(false);
      death(e.message || 'the worker failed');
    };
  };
  spawn(relaxed());
  // A relaxed build that cannot compile fails inside the worker, where no error event
  // reports it: one that is not ready in 10 s gives way to the SIMD128 build.
  setTimeout(() => {
    if (!ready && worker.__fast) {
      worker.terminate();
      spawn(false);
    }
  }, 10_000);
  return {
    // Held until the worker is ready, so a build that fails to start loses nothing.
    post: text => (ready ? worker.postMessage(text) : queued.push(text)),
    close: () => worker.terminate(),
  };
}

async function siteOperator() {
  const response = await fetch(new URL('operator.toml', base), { cache: 'no-cache' }).catch(() => null);
  return response?.ok ? { text: await response.text() } : null;
}

export const LanguageModel = charterLanguageModel({ base, connect: workerTransport, defaultOperator: siteOperator });
export default LanguageModel;
