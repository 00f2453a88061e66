// The bench's results as the README's table: `node readme.mjs [results.json]` rewrites
// the part of ../../README.md between `<!-- bench:begin -->` and `<!-- bench:end -->`;
// bench.mjs calls `writeReadme` at the end of every run, so the README shows the latest.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const README = path.join(here, '../../README.md');
const BEGIN = '<!-- bench:begin -->';
const END = '<!-- bench:end -->';
const ENGINES = [
  ['llama.cpp', 'llama.cpp native'], ['charter-native', 'Charter native'], ['charter-relaxed', 'Charter relaxed'],
  ['charter-simd128', 'Charter SIMD128'], ['wllama', 'wllama 3.13.0'], ['charter-webgpu', 'Charter WebGPU'],
];

const fmt = x => x == null || !isFinite(x) ? '–' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
const ratio = (row, a, b) => row[a] != null && row[b] ? `${fmt(row[a] / row[b])}×` : '–';
const median = xs => { const s = xs.filter(x => x != null && isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : null; };

// Markdown for one run's results (the object bench.mjs writes as JSON).
export function markdown(results) {
  const out = [];
  for (const m of results.models) {
    const engines = ENGINES.filter(([key]) => m.runs[key]?.length);
    out.push(`**${m.model}**: a ${m.plan.prompt_tokens}-token prompt, ${results.threads} thread, median of ${results.rounds} rounds.`, '');
    out.push(`| figure | ${engines.map(([, name]) => name).join(' | ')} | relaxed / llama.cpp | relaxed / wllama | native / llama.cpp |`);
    out.push(`| --- | ${engines.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`);
    for (const row of m.table) {
      out.push(`| ${row.figure} | ${engines.map(([key]) => fmt(row[key])).join(' | ')} | ${ratio(row, 'charter-relaxed', 'llama.cpp')} | ${ratio(row, 'charter-relaxed', 'wllama')} | ${ratio(row, 'charter-native', 'llama.cpp')} |`);
    }
    const worker = median((m.runs['charter-relaxed'] ?? []).map(r => r.worker_memory_bytes));
    if (worker) out.push('', `Charter's worker holds ${fmt(worker / 1e6)} MB of WebAssembly memory with this model loaded.`);
    out.push('');
  }
  out.push('Memory: native engines, the process\'s peak resident memory; browser engines, all Chromium processes\' peak over idle. For load, wllama and Charter read the model from the browser\'s storage.');
  return out.join('\n');
}

// Replaces the README's bench section with `results`.
export function writeReadme(results) {
  const text = fs.readFileSync(README, 'utf8');
  const [a, b] = [text.indexOf(BEGIN), text.indexOf(END)];
  if (a < 0 || b < a) throw new Error(`README.md has no ${BEGIN} … ${END} section`);
  fs.writeFileSync(README, `${text.slice(0, a + BEGIN.length)}\n${markdown(results)}\n${text.slice(b)}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeReadme(JSON.parse(fs.readFileSync(process.argv[2] || path.join(here, 'results.json'), 'utf8')));
  console.log(`README.md: bench table from ${process.argv[2] || 'results.json'}`);
}
