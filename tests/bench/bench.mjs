// Charter's bench instrument. In one headless Chromium run it alternates Charter's
// worker and wllama on the same GGUF, the same chat and one thread each, and reports
// load time from the browser's cache, prefill and decode speed, time to first token,
// the same for a second turn (KV reuse), and peak memory, with the ratio
// Charter/wllama for each figure. Round 0 of each engine is a warm-up (it downloads
// the model into that engine's cache) and is not reported.
//
// Environment: CHARTER_DIST (the built app), CHARTER_BENCH_MODEL (a GGUF),
// CHARTER_BENCH_ROUNDS (default 2), CHARTER_BENCH_OUT (JSON path), CHARTER_BENCH_SYSTEM
// (the system block Charter's worker composes for this model, from `charter compose`,
// given to wllama as its system message so both run the same prompt).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.CHARTER_DIST || path.join(here, '../../dist');
const model = process.env.CHARTER_BENCH_MODEL;
if (!model) throw new Error('CHARTER_BENCH_MODEL must name a GGUF (cargo xtask bench sets it)');
const rounds = Number(process.env.CHARTER_BENCH_ROUNDS || 2);
const system = process.env.CHARTER_BENCH_SYSTEM || '';
const out = process.env.CHARTER_BENCH_OUT || path.join(here, 'results.json');
const wllamaDir = path.join(here, 'node_modules/@wllama/wllama/esm');
const TURNS = [
  'Write a detailed story about a lighthouse keeper who finds a message in a bottle.',
  'Now tell me what happened next, in as much detail.',
];
const MAX_TOKENS = 128;

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json' };
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
  if (p === '/models/bench.gguf') return serveFile(res, model, req.headers.range);
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

// One browser per run, over one profile folder so both engines' caches persist:
// memory is then measured from a clean start each time.
const profile = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'charter-bench-'));

async function runOnce(engine) {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await context.newPage();
    page.on('pageerror', e => console.error(`[${engine} page error] ${e.message}`));
    await page.goto(`${base}bench.html`);
    await page.waitForFunction(() => window.benchReady === true);
    const baseline = chromiumRss();
    let peak = baseline;
    const timer = setInterval(() => { peak = Math.max(peak, chromiumRss()); }, 50);
    const fn = engine.startsWith('charter') ? 'runCharter' : 'runWllama';
    const workerUrl = engine === 'charter-relaxed' ? '/charter-worker-relaxed_loader.js' : '/charter-worker_loader.js';
    const result = await page.evaluate(([fn, cfg]) => window[fn](cfg), [fn, { modelUrl: '/models/bench.gguf', turns: TURNS, maxTokens: MAX_TOKENS, system, workerUrl }]);
    clearInterval(timer);
    result.peak_memory_mb = (peak - baseline) / 1e6;
    return result;
  } finally {
    await context.close();
  }
}

const ENGINES = (process.env.CHARTER_BENCH_ENGINES || 'charter,charter-relaxed,wllama').split(',');
const runs = Object.fromEntries(ENGINES.map(e => [e, []]));
for (let round = 0; round <= rounds; round++) {
  for (const engine of ENGINES) {
    const r = await runOnce(engine);
    console.error(`round ${round} ${engine}: load ${r.load_s.toFixed(2)} s, decode ${r.turns[0].decode_tps.toFixed(1)} tok/s${round === 0 ? ' (warm-up)' : ''}`);
    if (round > 0) runs[engine].push(r);
  }
}
server.close();
fs.rmSync(profile, { recursive: true, force: true });

const median = xs => { const s = [...xs].filter(x => x != null && isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null; };
const FIGURES = [
  ['load from cache (s)', r => r.load_s, 'lower'],
  ['load + first reply, end to end (s)', r => r.load_s + r.turns[0].total_s, 'lower'],
  ['turn 1 prefill (tok/s)', r => r.turns[0].prefill_tps, 'higher'],
  ['turn 1 decode (tok/s)', r => r.turns[0].decode_tps, 'higher'],
  ['turn 1 time to first token (s)', r => r.turns[0].ttft_s, 'lower'],
  ['turn 2 prefill (tok/s)', r => r.turns[1].prefill_tps, 'higher'],
  ['turn 2 decode (tok/s)', r => r.turns[1].decode_tps, 'higher'],
  ['turn 2 time to first token (s)', r => r.turns[1].ttft_s, 'lower'],
  ['turn 2 prompt tokens reused', r => r.turns[1].reused_tokens, 'higher'],
  ['peak memory, browser RSS over idle (MB)', r => r.peak_memory_mb, 'lower'],
];
const table = FIGURES.map(([name, get, better]) => {
  const row = { figure: name, better };
  for (const e of ENGINES) row[e] = median(runs[e].map(get));
  return row;
});
const fmt = x => x == null ? '-' : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2);
console.log(`\n${ENGINES.join(' vs ')} on ${path.basename(model)}, 1 thread each, ${MAX_TOKENS} greedy tokens, median of ${rounds} rounds`);
console.log(`${'figure'.padEnd(40)} ${ENGINES.map(e => e.padStart(16)).join(' ')}  (better)`);
for (const row of table) console.log(`${row.figure.padEnd(40)} ${ENGINES.map(e => fmt(row[e]).padStart(16)).join(' ')}  ${row.better}`);
const tokens = e => runs[e][0]?.turns.map(t => `${t.prompt_tokens} prompt / ${t.decode_tokens} generated`).join(', ');
console.log("Charter puts its model in the state after the system block while loading (prefilled at the first load, restored from the browser's storage after that), so its first turn reuses it; wllama prefills the block in the first turn.");
console.log(`tokens per turn: ${ENGINES.map(e => `${e} ${tokens(e)}`).join('; ')}`);
fs.writeFileSync(out, JSON.stringify({ model: path.basename(model), threads: 1, max_tokens: MAX_TOKENS, rounds, turns: TURNS, table, runs }, null, 2));
console.log(`JSON: ${out}`);
