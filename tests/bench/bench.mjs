// Charter's bench. For each model, in one run and on the same token ids: native
// llama.cpp (llama-cpp-python, one thread), Charter's native CLI (`charter bench`),
// and in headless Chromium Charter's worker in each CPU build (relaxed SIMD and SIMD128),
// wllama, one thread each, and Charter's worker on the browser's WebGPU adapter
// (SwiftShader, software, where the machine has no GPU). Figures: prefill of fresh
// prompts of 42 and 300 tokens, decode of 128 greedy tokens (tokens/s, milliseconds per
// token, and on the GPU its dispatches per token), the second turn's time to first
// token, load from storage to ready, peak memory; then ratios against native llama.cpp
// and against wllama. The
// browser engines also run the app's chat flow (two turns through the worker's own
// prompt building, or wllama's chat completion), reported in the JSON.
//
// Each browser run gets a fresh browser over one profile folder (caches persist; memory
// is measured from a clean start). Round 0 of each engine is a warm-up (it downloads the
// model into that engine's cache) and is not reported.
//
// Environment (cargo xtask bench sets it): CHARTER_DIST (the built app), CHARTER_BIN
// (the release CLI), CHARTER_BENCH_PYTHON (a Python with llama-cpp-python),
// CHARTER_BENCH_MODELS (JSON: [{ "path", "plan", "system" }], `plan` a file from
// `charter bench --print-plan`), CHARTER_BENCH_ROUNDS (default 2), CHARTER_BENCH_OUT
// (JSON path), CHARTER_BENCH_ENGINES (browser engines to run), CHARTER_BENCH_README
// (set by xtask for a run over the test models). Such a run of every engine also
// rewrites the README's bench table (readme.mjs).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { writeReadme } from './readme.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.CHARTER_DIST || path.join(here, '../../dist');
const models = JSON.parse(process.env.CHARTER_BENCH_MODELS || '[]');
if (!models.length) throw new Error('CHARTER_BENCH_MODELS must list the models (cargo xtask bench sets it)');
const rounds = Number(process.env.CHARTER_BENCH_ROUNDS || 2);
const out = process.env.CHARTER_BENCH_OUT || path.join(here, 'results.json');
const BROWSER = (process.env.CHARTER_BENCH_ENGINES || 'charter-relaxed,charter-simd128,wllama,charter-webgpu').split(',');
const wllamaDir = path.join(here, 'node_modules/@wllama/wllama/esm');
const TURNS = [
  'Write a detailed story about a lighthouse keeper who finds a message in a bottle.',
  'Now tell me what happened next, in as much detail.',
];
const MAX_TOKENS = 128;
const NAMES = {
  'llama.cpp': 'llama.cpp native', 'charter-native': 'Charter native',
  'charter-relaxed': 'Charter relaxed SIMD', 'charter-simd128': 'Charter SIMD128', wllama: 'wllama 3.13.0',
  'charter-webgpu': 'Charter WebGPU',
};

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json' };
let served = null;
function serveFile(res, file, range) {
  if (!fs.existsSync(file) || fs.statSync(file).isDirectory()) { res.writeHead(404); return res.end(); }
  const len = fs.statSync(file).size;
  const m = /^bytes=(\d+)-(\d*)$/.exec(range || '');
  const headers = { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'accept-ranges': 'bytes' };
  if (m) {
    const start = Number(m[1]), end = m[2] ? Math.min(Number(m[2]), len - 1) : len - 1;
    res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${len}` });
    return fs.createReadStream(file, { start, end }).pipe(res);
  }
  res.writeHead(200, { ...headers, 'content-length': len });
  fs.createReadStream(file).pipe(res);
}
const server = http.createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  if (p.includes('..')) { res.writeHead(400); return res.end(); }
  if (p === '/bench.html') return serveFile(res, path.join(here, 'page.html'));
  if (p.startsWith('/wllama/')) return serveFile(res, path.join(wllamaDir, p.slice('/wllama/'.length)));
  // Each model under its own name, so the engines' caches keep them apart.
  if (p.startsWith('/models/') && served) return serveFile(res, served, req.headers.range);
  serveFile(res, path.join(dist, p), req.headers.range);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;

// Resident memory of every Chromium process, in bytes.
function chromiumRss() {
  try {
    const ps = execFileSync('ps', ['-C', 'chromium', '-o', 'rss='], { encoding: 'utf8' });
    return ps.split('\n').filter(Boolean).reduce((a, b) => a + Number(b) * 1024, 0);
  } catch { return 0; }
}

const profile = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'charter-bench-'));

async function browserRun(engine, modelUrl, system, plan) {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    // The WebGPU run gets the browser's adapter (SwiftShader where there is no GPU:
    // software, so its figures say nothing of a real GPU but its dispatches do).
    args: ['--no-sandbox', engine === 'charter-webgpu' ? '--enable-unsafe-webgpu' : '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await context.newPage();
    page.on('pageerror', e => console.error(`[${engine} page error] ${e.message}`));
    await page.goto(`${base}bench.html`);
    await page.waitForFunction(() => window.benchReady === true);
    const baseline = chromiumRss();
    let peak = baseline;
    const timer = setInterval(() => { peak = Math.max(peak, chromiumRss()); }, 50);
    const fn = engine === 'wllama' ? 'runWllama' : 'runCharter';
    const workerUrl = engine === 'charter-relaxed' ? '/charter-worker-relaxed_loader.js' : '/charter-worker_loader.js';
    const backend = engine === 'charter-webgpu' ? 'gpu' : 'cpu';
    const cfg = { modelUrl, turns: TURNS, maxTokens: MAX_TOKENS, system, workerUrl, plan, backend };
    const result = await page.evaluate(([fn, cfg]) => window[fn](cfg), [fn, cfg]);
    clearInterval(timer);
    result.peak_memory_bytes = peak - baseline;
    return result;
  } finally {
    await context.close();
  }
}

// Native engines print `{ engine, load_seconds, result, peak_rss_bytes }`.
function nativeRun(engine, modelPath, planPath) {
  const [cmd, args] = engine === 'llama.cpp'
    ? [process.env.CHARTER_BENCH_PYTHON, [path.join(here, 'native.py'), modelPath, planPath, '1']]
    : [process.env.CHARTER_BIN, ['bench', '--model', modelPath, '--plan', planPath, '--threads', '1', '--json']];
  const r = JSON.parse(execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  return { engine: r.engine, load_s: r.load_seconds, plan: r.result, peak_memory_bytes: r.peak_rss_bytes };
}

const median = xs => { const s = xs.filter(x => x != null && isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null; };
const fmt = x => x == null ? '-' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
const report = [];
for (const m of models) {
  const plan = JSON.parse(fs.readFileSync(m.plan, 'utf8'));
  served = m.path;
  const modelUrl = `/models/${path.basename(m.path)}`;
  const runs = {};
  for (const engine of ['llama.cpp', 'charter-native', ...BROWSER]) runs[engine] = [];
  for (let round = 0; round <= rounds; round++) {
    for (const engine of Object.keys(runs)) {
      const r = engine === 'llama.cpp' || engine === 'charter-native'
        ? nativeRun(engine, m.path, m.plan)
        : await browserRun(engine, modelUrl, m.system, plan);
      const decode = r.plan ? r.plan.decode_tokens / r.plan.decode_seconds : null;
      console.error(`${path.basename(m.path)} round ${round} ${engine}: load ${r.load_s.toFixed(2)} s, decode ${fmt(decode)} tok/s${round === 0 ? ' (warm-up)' : ''}`);
      if (round > 0) runs[engine].push(r);
    }
  }
  const prefill = n => r => { const p = r.plan?.prefill.find(p => p.tokens === n); return p ? p.tokens / p.seconds : null; };
  const FIGURES = [
    ...plan.prefill.map(n => [`prefill, fresh ${n}-token prompt (tok/s)`, prefill(n), 'higher']),
    [`decode, ${plan.decode} greedy tokens (tok/s)`, r => r.plan && r.plan.decode_tokens / r.plan.decode_seconds, 'higher'],
    ['decode, milliseconds per token', r => r.plan && 1e3 * r.plan.decode_seconds / r.plan.decode_tokens, 'lower'],
    ['decode, GPU dispatches per token', r => r.plan?.dispatches_per_token, 'lower'],
    [`second turn of ${plan.turn.length} tokens, first token (s)`, r => r.plan?.turn_seconds, 'lower'],
    ['load from storage to ready (s)', r => r.load_s, 'lower'],
    ['peak memory (MB)', r => r.peak_memory_bytes / 1e6, 'lower'],
  ];
  const engines = Object.keys(runs);
  const table = FIGURES.map(([figure, get, better]) => {
    const row = { figure, better };
    for (const e of engines) row[e] = median(runs[e].map(get));
    return row;
  });
  const ratio = (row, a, b) => row[a] != null && row[b] ? row[a] / row[b] : null;
  console.log(`\n${path.basename(m.path)}: the same ${plan.prompt.length}-token prompt for every engine, 1 thread each, median of ${rounds} rounds`);
  console.log(`${'figure'.padEnd(44)}${engines.map(e => NAMES[e].padStart(22)).join('')}${'relaxed/llama.cpp'.padStart(19)}${'relaxed/wllama'.padStart(16)}${'native/llama.cpp'.padStart(18)}`);
  for (const row of table) {
    console.log(`${row.figure.padEnd(44)}${engines.map(e => fmt(row[e]).padStart(22)).join('')}${fmt(ratio(row, 'charter-relaxed', 'llama.cpp')).padStart(19)}${fmt(ratio(row, 'charter-relaxed', 'wllama')).padStart(16)}${fmt(ratio(row, 'charter-native', 'llama.cpp')).padStart(18)}`);
  }
  console.log('Memory: native engines, the process\'s peak resident memory; browser engines, all Chromium processes\' peak over idle.');
  const worker = median(runs['charter-relaxed']?.map(r => r.worker_memory_bytes) ?? []);
  if (worker) console.log(`Charter's worker holds ${fmt(worker / 1e6)} MB of WebAssembly memory with the model loaded (the file is ${fmt(fs.statSync(m.path).size / 1e6)} MB).`);
  console.log(`Engines: ${engines.map(e => `${NAMES[e]}: ${runs[e][0]?.engine ?? e}`).join('; ')}.`);
  report.push({ model: path.basename(m.path), plan: { prompt_tokens: plan.prompt.length, prefill: plan.prefill, decode: plan.decode, turn_tokens: plan.turn.length }, table, runs });
}
server.close();
fs.rmSync(profile, { recursive: true, force: true });
const results = { threads: 1, rounds, turns: TURNS, max_tokens: MAX_TOKENS, models: report };
fs.writeFileSync(out, JSON.stringify(results, null, 2));
console.log(`\nJSON: ${out}`);
// The README shows the latest full run (every engine, the test models); a partial
// one leaves it alone.
if (BROWSER.length === 4 && process.env.CHARTER_BENCH_README === '1') {
  writeReadme(results);
  console.log('README.md: bench table updated');
}
