// Charter's end-to-end tests: the built app (CHARTER_DIST) in headless Chromium on the
// real SmolLM2 model (CHARTER_TEST_MODEL) served from loopback. Each test gets a fresh
// browser context (empty storage) unless it says otherwise. Screenshots of the main
// states go to artifacts/ (not committed).
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.CHARTER_DIST || path.join(here, '../../dist');
const model = process.env.CHARTER_TEST_MODEL;
if (!model) throw new Error('CHARTER_TEST_MODEL must name the SmolLM2 GGUF (cargo xtask test sets it)');
const artifacts = path.join(here, 'artifacts');
fs.mkdirSync(artifacts, { recursive: true });
const only = process.argv[2] ? new RegExp(process.argv[2]) : null;

const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const READY = 180_000;
// The GPU path on a software adapter (SwiftShader) checks, uploads and compiles slowly.
const GPU_READY = 600_000;

function assert(cond, message) { if (!cond) throw new Error(`assertion failed: ${message}`); }

async function launch({ webgpu = false } = {}) {
  const args = [...FLAGS, webgpu ? '--enable-unsafe-webgpu' : '--disable-gpu'];
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
}

async function open(context, server) {
  const page = await context.newPage();
  page.on('pageerror', e => console.log(`  [page error] ${e.message}`));
  // A site without an operator.toml answers 404, as it should; that is not worth a line.
  page.on('console', m => {
    if (m.type() === 'error' && !(m.location().url || '').endsWith('/operator.toml')) console.log(`  [console] ${m.text()}`);
  });
  await page.goto(server.url);
  return page;
}

async function waitReady(page) {
  await page.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: READY });
}

async function setMaxTokens(page, n) {
  await page.getByTestId('settings').click();
  await page.getByTestId('setting-max-tokens').fill(String(n));
  await page.getByTestId('setting-max-tokens').press('Tab');
  await page.getByTestId('settings').click();
}

async function ask(page, text) {
  const before = await page.getByTestId('message-assistant').count();
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-input').press('Enter');
  const reply = page.getByTestId('message-assistant').nth(before);
  await reply.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: READY });
  return reply;
}

const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `${name}.png`) });

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

// One context shared by the first tests: a first visit, then reloads and a second visit.
let shared = null;

test('first visit shows download progress, then streams a reply', async ({ browser, server }) => {
  shared = await browser.newContext();
  server.state.faults = { bytesPerSecond: 40e6 };
  const page = await open(shared, server);
  await page.getByTestId('empty-chat').waitFor();
  await page.getByTestId('download-progress').waitFor({ timeout: 30_000 });
  // Bytes of total, percent, speed and time left.
  await page.getByTestId('model-status').filter({ hasText: /Downloading: .* of 98.4 MB \(\d+%\), .*\/s, .* left/ }).waitFor({ timeout: 30_000 });
  await shot(page, 'downloading');
  await waitReady(page);
  server.state.faults = {};
  await shot(page, 'empty-chat');
  await setMaxTokens(page, 40);
  await page.getByTestId('chat-input').fill('What is the capital of France?');
  await page.getByTestId('send-button').click();
  // Streaming: the reply grows in place before it has a stop reason.
  const streaming = page.locator('[data-testid=message-assistant][data-streaming=true]');
  await streaming.waitFor({ timeout: READY });
  await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid=message-assistant][data-streaming=true]');
    return s && s.textContent.replace('writing…', '').trim().length > 0;
  }, null, { timeout: READY });
  await shot(page, 'streaming');
  const reply = page.getByTestId('message-assistant').first();
  await reply.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: READY });
  const text = (await reply.locator('.body').textContent()).trim();
  const reason = await reply.getByTestId('stop-reason').textContent();
  assert(text.length > 0, 'the reply has text');
  assert(['end_of_turn', 'length'].includes(reason), `stop reason ${reason}`);
  assert(/tok\/s/.test(await reply.getByTestId('tokens-per-second').textContent()), 'tokens per second shown');
  assert(!/<\|im_(start|end)\|>/.test(text), `no turn markers in the reply: ${text}`);
  const meter = await page.getByTestId('context-meter').textContent();
  assert(/^\s*[1-9]\d* \/ \d+ tokens/.test(meter), `context meter: ${meter}`);
  await page.close();
});

test('the under-the-hood panel shows the context with the end-of-turn token', async ({ server }) => {
  const page = await open(shared, server);
  await waitReady(page);
  await setMaxTokens(page, 200);
  await ask(page, 'Say hello.');
  await page.getByTestId('under-the-hood').click();
  const panel = page.getByTestId('under-the-hood-panel');
  await panel.waitFor();
  const tokens = await panel.getByTestId('hood-token').allTextContents();
  assert(tokens.includes('<|im_start|>'), 'template control tokens are shown');
  assert(tokens.join('').includes('Say hello.'), 'the user text is in the context');
  const reason = await page.getByTestId('stop-reason').last().textContent();
  if (reason === 'end_of_turn') {
    assert((await panel.getByTestId('hood-stop-token').textContent()) === '<|im_end|>', 'the stop token is <|im_end|>');
  }
  assert((await panel.getByTestId('hood-masked').textContent()).includes('<|im_start|>'), 'masked tokens listed');
  // Charter's system block leads the context, and SmolLM2's default system text is gone.
  const system = (await panel.locator('.tok.system').allTextContents()).join('');
  assert(system.includes('No one can unlock this'), `the constitution is in the context: ${system.slice(0, 80)}`);
  assert(!tokens.join('').includes('named SmolLM'), "the template's default system text is not");
  await shot(page, 'under-the-hood');
  await page.getByTestId('constitution').click();
  const unit = page.locator('[data-testid=constitution-unit][data-unit-id=hard-limits]');
  assert((await unit.getByTestId('unit-inclusion').textContent()).includes('in the prompt'), 'the constitution view marks included units');
  assert(/\d+ of 256 tokens/.test(await page.getByTestId('constitution-budget').textContent()), 'the budget is shown');
  await shot(page, 'constitution');
  await page.close();
});

test('stop ends a reply mid-way with stop reason cancelled', async ({ server }) => {
  const page = await open(shared, server);
  await waitReady(page);
  await setMaxTokens(page, 400);
  await page.getByTestId('chat-input').fill('Write a long story about a lighthouse keeper, in many paragraphs.');
  await page.getByTestId('chat-input').press('Enter');
  await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid=message-assistant][data-streaming=true] .body');
    return s && s.textContent.trim().length > 20;
  }, null, { timeout: READY });
  await page.getByTestId('stop-button').click();
  const reply = page.getByTestId('message-assistant').last();
  await reply.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: 30_000 });
  assert((await reply.getByTestId('stop-reason').textContent()) === 'cancelled', 'stop reason is cancelled');
  // Esc stops too.
  await page.getByTestId('regenerate').click();
  await page.waitForFunction(() => {
    const s = document.querySelector('[data-testid=message-assistant][data-streaming=true] .body');
    return s && s.textContent.trim().length > 10;
  }, null, { timeout: READY });
  await page.keyboard.press('Escape');
  await page.getByTestId('message-assistant').last().getByTestId('stop-reason').filter({ hasText: 'cancelled' }).waitFor({ timeout: 30_000 });
  await page.close();
});

test('a reload keeps the conversation; a second visit loads the model from storage', async ({ server }) => {
  const page = await open(shared, server);
  await waitReady(page);
  const users = await page.getByTestId('message-user').count();
  assert(users >= 1, 'the conversation is back');
  const before = server.state.modelRequests.length;
  await page.reload();
  await waitReady(page);
  assert((await page.getByTestId('message-user').count()) === users, 'same messages after reload');
  const second = await open(shared, server);
  await waitReady(second);
  assert(server.state.modelRequests.length === before, `no request to /models/ (saw ${server.state.modelRequests.length - before})`);
  // The state after the system block was saved at the first load and is restored now.
  await second.getByTestId('constitution').click();
  const budget = await second.getByTestId('constitution-budget').textContent();
  assert(/restored from this browser's storage/.test(budget), `the system block's state is restored, not recomputed: ${budget}`);
  await page.getByTestId('settings').click();
  await shot(page, 'settings');
  await page.close();
  await second.close();
});

test('the XSS payloads stay inert', async ({ server }) => {
  const page = await open(shared, server);
  await waitReady(page);
  await page.getByTestId('new-chat').click();
  const payloads = [
    '<script>window.__xss = 1</script>',
    '<img src=x onerror="window.__xss = 2">',
    '[click me](javascript:window.__xss=3)',
  ];
  await setMaxTokens(page, 4);
  for (const p of payloads) await ask(page, p);
  // The same payloads as an assistant's messages, through import.
  const file = path.join(artifacts, 'xss-import.json');
  fs.writeFileSync(file, JSON.stringify({ format: 'charter-conversations', version: 1, conversations: [{
    id: 'xss', title: 'xss', updated: Date.now() + 1e6,
    messages: [{ role: 'user', text: 'hi' }, ...payloads.map(text => ({ role: 'assistant', text, stop_reason: 'end_of_turn' }))],
  }] }));
  await page.getByTestId('import-file').setInputFiles(file);
  await page.getByTestId('conversation').filter({ hasText: 'xss' }).first().click();
  await page.getByTestId('message-assistant').nth(2).waitFor();
  const links = page.locator('[data-testid=messages] a');
  for (let i = 0; i < await links.count(); i++) {
    const href = await links.nth(i).getAttribute('href');
    assert(!/^\s*javascript:/i.test(href || ''), `link href ${href}`);
    await links.nth(i).click();
  }
  const live = await page.evaluate(() => document.querySelectorAll(
    '[data-testid=messages] script, [data-testid=messages] img, [data-testid=messages] iframe, [data-testid=messages] [onerror]').length);
  assert(live === 0, `no live markup in messages (${live} elements)`);
  const html = await page.getByTestId('messages').innerHTML();
  assert(html.includes('&lt;script&gt;'), 'the payload is shown as text');
  assert(await page.evaluate(() => window.__xss === undefined), 'no payload ran');
  await page.close();
});

// Another site, on another loopback address: every request to it is logged.
async function otherOrigin() {
  const requests = [];
  const server = http.createServer((req, res) => { requests.push(req.url); res.writeHead(200, { 'access-control-allow-origin': '*' }); res.end('x'); });
  await new Promise(r => server.listen(0, '127.0.0.2', r));
  return { url: `http://127.0.0.2:${server.address().port}/`, requests, close: () => new Promise(r => { server.closeAllConnections(); server.close(r); }) };
}

test('kept off the network, nothing in a reply or in the page reaches another origin', async ({ browser, server }) => {
  const other = await otherOrigin();
  const context = await browser.newContext();
  const own = new URL(server.url).origin;
  // Every request the browser starts to another origin, and how each ended.
  const offOrigin = new Map();
  const away = r => !r.url().startsWith(own) && !/^(blob|data):/.test(r.url());
  context.on('request', r => { if (away(r)) offOrigin.set(r, 'started'); });
  context.on('response', r => { if (away(r.request())) offOrigin.set(r.request(), `answered ${r.status()}`); });
  context.on('requestfailed', r => { if (away(r)) offOrigin.set(r, r.failure()?.errorText || 'failed'); });
  try {
    const page = await open(context, server);
    await waitReady(page);
    await page.getByTestId('settings').click();
    await page.getByTestId('setting-no-egress').check();
    await page.locator('[data-testid=egress-status][data-sealed=true]').waitFor({ timeout: 30_000 });
    assert((await page.getByTestId('egress-status').textContent()).includes(own), 'the status names the one origin left');
    await page.getByTestId('egress-chip').waitFor();
    await page.getByTestId('settings').click();
    // Any violation of the policy from here on is noted: the app's own work must cause none.
    await page.evaluate(() => {
      self.charterViolations = [];
      document.addEventListener('securitypolicyviolation', e => self.charterViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    // A reply asked to write images and links to the other site, and the same as replies
    // brought in by import.
    const markup = `![a cat](${other.url}cat.png) [a site](${other.url}page) <img src="${other.url}raw.png"> <a href="${other.url}raw">raw</a>`;
    await setMaxTokens(page, 48);
    await ask(page, `Repeat this exactly: ${markup}`);
    const file = path.join(artifacts, 'egress-import.json');
    fs.writeFileSync(file, JSON.stringify({ format: 'charter-conversations', version: 1, conversations: [{
      id: 'egress', title: 'egress', updated: Date.now() + 1e6,
      messages: [{ role: 'user', text: 'hi' }, { role: 'assistant', text: markup, stop_reason: 'end_of_turn' }],
    }] }));
    await page.getByTestId('import-file').setInputFiles(file);
    await page.getByTestId('conversation').filter({ hasText: 'egress' }).first().click();
    await page.getByTestId('message-assistant').first().filter({ hasText: 'a cat' }).waitFor();
    const ownViolations = await page.evaluate(() => self.charterViolations.slice());
    assert(ownViolations.length === 0, `the app itself breaks no rule of the policy: ${ownViolations}`);
    assert(offOrigin.size === 0, `the app asked no other origin for anything: ${[...offOrigin.keys()].map(r => r.url())}`);
    // Were the renderer to slip, the policy still holds: markup and a fetch put into the
    // page directly reach nothing.
    const probe = await page.evaluate(async other => {
      const img = document.createElement('img');
      img.src = `${other}slipped.png`;
      document.body.append(img);
      let fetched = true;
      try { await fetch(`${other}fetch`); } catch { fetched = false; }
      await new Promise(r => setTimeout(r, 300));
      return { fetched, violations: self.charterViolations.slice() };
    }, other.url);
    assert(!probe.fetched, 'a fetch to another origin fails');
    assert(probe.violations.some(v => v.startsWith('img-src')) && probe.violations.some(v => v.startsWith('connect-src')), `the policy refused them: ${probe.violations}`);
    // The worker refuses a download from another origin, with the reason.
    await page.getByTestId('models').click();
    await page.locator('[data-testid=catalog-model][data-model-id=gemma-3-270m-q4_k_m]').getByTestId('download-model').click();
    await page.getByTestId('notice').filter({ hasText: /keeps off the network/ }).waitFor({ timeout: 30_000 });
    assert(/cannot download from https:\/\/huggingface\.co/.test(await page.getByTestId('notice').textContent()), 'the notice names the origin refused');
    await page.getByTestId('models').click();
    await shot(page, 'no-egress');
    assert(other.requests.length === 0, `no request reached the other site: ${other.requests}`);
    const outcomes = [...offOrigin].map(([r, outcome]) => `${r.url()}: ${outcome}`);
    assert(outcomes.every(o => /: (csp|net::ERR_BLOCKED_BY_CSP)$/.test(o)), `every attempt on another origin was blocked by the policy: ${outcomes}`);
  } finally {
    await context.close();
    await other.close();
  }
});

test('a long reply streams block by block with no main-thread task over 50 ms, and code blocks copy', async ({ browser, server }) => {
  const context = await browser.newContext();
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  try {
    const page = await open(context, server);
    await waitReady(page);
    await setMaxTokens(page, 320);
    await page.evaluate(() => {
      self.charterLongTasks = [];
      new PerformanceObserver(list => { for (const e of list.getEntries()) self.charterLongTasks.push(Math.round(e.duration)); }).observe({ type: 'longtask' });
    });
    await page.getByTestId('chat-input').fill('Write a long story about a lighthouse keeper, in many paragraphs.');
    await page.getByTestId('chat-input').press('Enter');
    // Once a block is settled its element stays as it is while later ones are written.
    const blocks = page.locator('[data-streaming=true] .body > .block');
    await page.waitForFunction(() => document.querySelectorAll('[data-streaming=true] .body > .block').length >= 3, null, { timeout: READY });
    const marked = await blocks.first().evaluate(el => { el.dataset.mark = 'kept'; return el.textContent; });
    await page.waitForFunction(n => document.querySelectorAll('[data-streaming=true] .body > .block').length > n, await blocks.count(), { timeout: READY });
    assert(await page.locator('[data-streaming=true] .body > .block[data-mark=kept]').count() === 1, 'a settled block is not rendered again');
    assert(await page.locator('[data-streaming=true] .body > .block[data-mark=kept]').textContent() === marked, 'and keeps its text');
    const reply = page.getByTestId('message-assistant').last();
    await reply.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: READY });
    const words = (await reply.locator('.body').textContent()).split(/\s+/).length;
    const long = await page.evaluate(() => self.charterLongTasks.slice());
    console.log(`  ${words} words, long tasks ${JSON.stringify(long)}`);
    assert(words > 100, `a long reply (${words} words)`);
    assert(long.every(ms => ms <= 50), `no main-thread task over 50 ms while a ${words}-word reply streamed: ${long}`);
    // A code block's Copy button copies the code, not the button's own text.
    const file = path.join(artifacts, 'code-import.json');
    fs.writeFileSync(file, JSON.stringify({ format: 'charter-conversations', version: 1, conversations: [{
      id: 'code', title: 'code', updated: Date.now() + 1e6,
      messages: [{ role: 'user', text: 'code?' }, { role: 'assistant', text: 'Here:\n\n```rust\nfn main() {}\n```', stop_reason: 'end_of_turn' }],
    }] }));
    await page.getByTestId('import-file').setInputFiles(file);
    await page.getByTestId('conversation').filter({ hasText: 'code' }).first().click();
    await page.getByTestId('copy-code').click();
    await page.getByTestId('copy-code').filter({ hasText: 'Copied' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert(copied === 'fn main() {}\n', `the code was copied: ${JSON.stringify(copied)}`);
  } finally {
    await context.close();
  }
});

test('a crashed worker is restarted and the conversation is intact', async ({ browser, server }) => {
  const context = await browser.newContext();
  const page = await open(context, server);
  const workers = [];
  page.on('worker', w => workers.push(w));
  await waitReady(page);
  await setMaxTokens(page, 6);
  await ask(page, 'Hello there.');
  const before = await page.getByTestId('message-user').count();
  // An uncaught error inside the worker, as a panic or running out of memory raises.
  await workers[0].evaluate(() => setTimeout(() => { throw new Error('simulated crash'); }, 0));
  await page.getByTestId('notice').filter({ hasText: 'restarted' }).waitFor({ timeout: 30_000 });
  await waitReady(page);
  assert(workers.length >= 2, 'a new worker was started');
  assert((await page.getByTestId('message-user').count()) === before, 'the conversation is intact');
  const reply = await ask(page, 'Still there?');
  assert((await reply.getByTestId('stop-reason').textContent()).length > 0, 'the new worker answers');
  await context.close();
});

test('a dropped download resumes with a Range request', async ({ browser, server }) => {
  const context = await browser.newContext();
  server.state.modelRequests = [];
  server.state.faults = { dropAfter: 30 << 20 };
  const page = await open(context, server);
  await waitReady(page);
  const ranges = server.state.modelRequests.map(r => r.range);
  assert(ranges[0] === null, 'the first request asks for the whole file');
  assert(ranges.slice(1).some(r => /^bytes=\d+-$/.test(r || '') && Number(r.slice(6, -1)) > 0), `a later request resumes: ${JSON.stringify(ranges)}`);
  await context.close();
});

test('a corrupted download is rejected and not stored', async ({ browser, server }) => {
  const context = await browser.newContext();
  server.state.faults = { corrupt: true };
  const page = await open(context, server);
  await page.getByTestId('model-status').filter({ hasText: 'SHA-256' }).waitFor({ timeout: READY });
  const stored = await page.evaluate(async () => (await (await caches.open('charter-models-v1')).keys()).length);
  assert(stored === 0, `nothing stored (found ${stored})`);
  assert((await page.getByTestId('send-button').isDisabled()), 'no chatting without a model');
  await context.close();
});

test('a local file loads through the file input', async ({ browser, server }) => {
  const context = await browser.newContext();
  server.state.faults = { notFound: true };
  const page = await open(context, server);
  await page.getByTestId('model-status').filter({ hasText: '404' }).waitFor({ timeout: 60_000 });
  await page.getByTestId('models').click();
  await shot(page, 'models');
  const before = server.state.modelRequests.length;
  await page.getByTestId('model-file').setInputFiles(model);
  await waitReady(page);
  assert(server.state.modelRequests.length === before, 'the file was not fetched from the server');
  await setMaxTokens(page, 8);
  const reply = await ask(page, 'Hi!');
  assert((await reply.getByTestId('stop-reason').textContent()).length > 0, 'a reply from the local model');
  await context.close();
});

test('dark theme and 360 px wide', async ({ server }) => {
  const page = await open(shared, server);
  await page.emulateMedia({ colorScheme: 'dark' });
  await waitReady(page);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert(bg !== 'rgb(251, 251, 250)', `dark background (${bg})`);
  await shot(page, 'dark-theme');
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert(overflow <= 0, `no horizontal scroll at 360 px (${overflow} px)`);
  assert(await page.getByTestId('chat-input').isVisible(), 'the input is visible at 360 px');
  await shot(page, 'narrow-360');
  await page.close();
});

test('the operator page refuses what it may not set, applies what it may, and the hood marks every unit', async ({ browser, server }) => {
  // A host that answers every path with the app's page has no operator file.
  server.state.operatorToml = '<!doctype html><title>Charter</title>';
  server.state.operatorType = 'text/html; charset=utf-8';
  const context = await browser.newContext();
  const page = await open(context, server);
  await waitReady(page);
  server.state.operatorToml = server.state.operatorType = null;
  await setMaxTokens(page, 6);
  await ask(page, 'Hi');
  await page.getByTestId('under-the-hood').click();
  const hood = page.getByTestId('under-the-hood-panel');
  const labels = await hood.getByTestId('hood-unit-label').allTextContents();
  for (const id of ['priorities', 'hard-limits', 'not-human', 'emergency']) assert(labels.includes(id), `the hood labels unit ${id}: ${labels}`);
  assert(new Set(labels).size === labels.length, `each unit is labelled once: ${labels}`);
  const unmarked = await hood.getByTestId('hood-tokens').locator('.tok.system:not([data-unit])').count();
  assert(unmarked === 0, `${unmarked} system tokens carry no unit`);
  const row = hood.locator('[data-testid=hood-unit-row][data-unit-id=hard-limits] td').nth(2);
  assert(Number(await row.textContent()) > 0, 'the unit table counts the tokens of each unit');
  await shot(page, 'under-the-hood-units');

  await page.getByTestId('operator').click();
  const panel = page.getByTestId('operator-panel');
  await panel.locator('summary').click();
  const toml = panel.getByTestId('operator-toml');
  await toml.fill('disable = ["hard-limits"]');
  let error = await panel.getByTestId('config-error').textContent();
  assert(/may not switch off unit "hard-limits"/.test(error), `a hard limit cannot be switched off: ${error}`);
  assert(await panel.getByTestId('operator-apply').isDisabled(), 'apply is refused while the configuration is');
  await toml.fill('users_may_adjust = ["balanced-views"]');
  error = await panel.getByTestId('config-error').textContent();
  assert(/may not let users adjust unit "balanced-views"/.test(error), `users get no more than the operator's trust: ${error}`);
  await toml.fill('disable = ["not-human"]');
  assert(/"not-human"/.test(await panel.getByTestId('config-error').textContent()), 'a user protection cannot be switched off');

  await panel.getByTestId('operator-persona').fill('Crumb');
  await panel.getByTestId('operator-scope').fill('Questions about bread and baking.');
  await panel.locator('[data-testid=operator-unit][data-unit-id=balanced-views]').uncheck();
  assert(await panel.getByTestId('config-error').count() === 0, 'the edited form is valid');
  assert(/persona = "Crumb"/.test(await toml.inputValue()), 'the TOML view follows the form');
  await panel.getByTestId('operator-apply').click();
  await panel.getByTestId('config-applied').waitFor({ timeout: READY });
  await waitReady(page);
  await shot(page, 'operator');

  await page.getByTestId('constitution').click();
  const layers = await page.getByTestId('constitution-layers').textContent();
  assert(/Switched off by the operator: balanced-views/.test(layers), layers);
  const dropped = page.locator('[data-testid=constitution-unit][data-unit-id=balanced-views]');
  assert((await dropped.getByTestId('unit-inclusion').textContent()).includes('not in the prompt'), 'the switched-off unit left the prompt');
  await ask(page, 'Hi');
  await page.getByTestId('under-the-hood').click();
  const operatorTokens = (await hood.locator('.tok.system[data-unit=operator]').allTextContents()).join('');
  assert(operatorTokens.includes('Crumb') && operatorTokens.includes('bread'), `the operator's block is marked as such: ${operatorTokens}`);
  const after = await hood.getByTestId('hood-unit-label').allTextContents();
  assert(after[after.length - 1] === 'operator' && !after.includes('balanced-views'), `the operator's block comes last: ${after}`);

  // Under an operator who passed nothing on, the user has no switches.
  await page.getByTestId('settings').click();
  await page.getByTestId('preferences-none').waitFor();
  await page.reload();
  await waitReady(page);
  await page.getByTestId('operator').click();
  assert(await page.getByTestId('operator-persona').inputValue() === 'Crumb', 'the operator settings survive a reload');
  await context.close();
});

test("a site's operator.toml holds for the visitor and cannot be changed from the page", async ({ browser, server }) => {
  server.state.operatorToml = 'disable = ["emergency"]\n';
  let context = await browser.newContext();
  let page = await open(context, server);
  const refused = page.getByTestId('model-status').filter({ hasText: 'refused' });
  await refused.waitFor({ timeout: 30_000 });
  assert(/"emergency"/.test(await refused.textContent()), 'a deployed configuration that breaks a protection stops Charter, naming the unit');
  await context.close();

  server.state.operatorToml = 'persona = "Crumb"\nscope = "bread"\nusers_may_adjust = ["casual-language"]\n';
  context = await browser.newContext();
  try {
    page = await open(context, server);
    await waitReady(page);
    await page.getByTestId('operator').click();
    await page.getByTestId('operator-locked').waitFor();
    assert(await page.getByTestId('operator-persona').isDisabled(), 'the deployed settings cannot be edited');
    assert(await page.getByTestId('operator-persona').inputValue() === 'Crumb', 'they are shown');
    await page.getByTestId('settings').click();
    const mine = await page.getByTestId('user-unit').evaluateAll(els => els.map(e => e.dataset.unitId));
    assert(mine.length === 1 && mine[0] === 'casual-language', `the user gets exactly what the operator passed on: ${mine}`);
    await page.locator('[data-testid=user-unit][data-unit-id=casual-language]').uncheck();
    await page.getByTestId('config-applied').waitFor({ timeout: READY });
    await page.getByTestId('constitution').click();
    const unit = page.locator('[data-testid=constitution-unit][data-unit-id=casual-language]');
    assert((await unit.getByTestId('unit-inclusion').textContent()).includes('not in the prompt'), "the user's switch took the unit out");
    assert(/Switched off by you: casual-language/.test(await page.getByTestId('constitution-layers').textContent()), 'and says so');
  } finally {
    server.state.operatorToml = null;
    await context.close();
  }
});

test('the page names the kernel build it runs, and the speed test reports figures', async ({ browser, server }) => {
  const context = await browser.newContext();
  try {
    const page = await open(context, server);
    await waitReady(page);
    // This Chromium has relaxed SIMD and the page is cross-origin isolated, so the page
    // starts the threaded build of the worker, on a thread per core.
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const threads = Math.min(cores, 8);
    const header = await page.getByTestId('backend').textContent();
    const kernelsLine = threads > 1 ? `cpu (wasm-relaxed-simd, ${threads} threads)` : 'cpu (wasm-relaxed-simd)';
    assert(/relaxed SIMD/.test(header) && (threads === 1 || header.includes(`· ${threads} threads`)), `the header names the build and its threads: ${header}`);
    await page.getByTestId('settings').click();
    const kernels = await page.getByTestId('backend-kernels').textContent();
    assert(kernels.includes(kernelsLine), `Settings names the kernels (${kernelsLine}): ${kernels}`);
    const why = await page.getByTestId('backend-reason').textContent();
    assert(threads === 1 || why.includes(`The CPU kernels run on ${threads} threads (this device has ${cores} cores and the page is cross-origin isolated).`), `and why that many threads: ${why}`);
    assert(/memory is \d+ MB/.test(kernels), `Settings gives the worker's memory: ${kernels}`);
    // SmolLM2 gets the 8,192 tokens it was trained for (its profile allows them, and their cache fits).
    const window = await page.getByTestId('context-window').textContent();
    assert(/^Context window: 8,192 tokens: the window the model was trained for \(\d+ MB of cache\)\.$/.test(window), `the window and why: ${window}`);
    assert(/\/ 8192 tokens/.test(await page.getByTestId('context-meter').textContent()), 'the meter counts against it');
    // The test server sends the isolation headers, as `cargo xtask serve` does.
    assert(await page.getByTestId('isolation').getAttribute('data-isolated') === 'true', 'the page reports that it is cross-origin isolated');
    assert(/is cross-origin isolated/.test(await page.getByTestId('isolation').textContent()), 'in words');
    await page.getByTestId('speed-test').click();
    await page.waitForFunction(() => /tokens\/s/.test(document.querySelector('[data-testid=speed-result]')?.textContent ?? ''), null, { timeout: READY });
    const figures = await page.getByTestId('speed-result').textContent();
    assert(/42 tokens at \d+ tokens\/s, 300 tokens at \d+ tokens\/s/.test(figures), `prefill figures: ${figures}`);
    assert(/writes [\d.]+ tokens\/s/.test(figures) && /second turn of \d+ tokens after [\d.]+ s/.test(figures), `decode and second turn: ${figures}`);
    await shot(page, 'speed-test');
    // The model is back in its state after the system block: a reply still works.
    await page.getByTestId('settings').click();
    await setMaxTokens(page, 8);
    const reply = await ask(page, 'Name a colour.');
    assert((await reply.locator('.body').textContent()).trim().length > 0, 'a reply after the speed test');
  } finally {
    await context.close();
  }
});

test('a worker build that fails to start gives way to the next: threads, relaxed SIMD, SIMD128', async ({ browser, server }) => {
  server.state.broken.add('/charter-worker-threads_bg.wasm');
  server.state.broken.add('/charter-worker-relaxed_bg.wasm');
  const context = await browser.newContext();
  try {
    const page = await open(context, server);
    await waitReady(page);
    const header = await page.getByTestId('backend').textContent();
    assert(/SIMD128/.test(header) && !/threads/.test(header), `the header names the SIMD128 build: ${header}`);
    await page.getByTestId('settings').click();
    const kernels = await page.getByTestId('backend-kernels').textContent();
    assert(/wasm-simd128/.test(kernels), `Settings names the SIMD128 kernels: ${kernels}`);
    const why = await page.getByTestId('backend-reason').textContent();
    assert(/The CPU kernels run on one thread: the threaded build did not start here \(/.test(why), `and why one thread: ${why}`);
    await page.getByTestId('settings').click();
    await setMaxTokens(page, 8);
    const reply = await ask(page, 'Name a colour.');
    assert((await reply.locator('.body').textContent()).trim().length > 0, 'a reply on the SIMD128 build');
  } finally {
    server.state.broken.clear();
    await context.close();
  }
});

// The chat on the threaded build (the test server isolates the page) and on the
// single-thread one (a server without the isolation headers): the page says which runs
// and why, and greedy replies are the same text, since threads change no bit.
test('threads where the page is cross-origin isolated, one thread where not, the same greedy replies', async ({ browser, server }) => {
  const plain = await startServer({ dist, model, isolate: false });
  const replies = {};
  try {
    for (const [name, where] of [['isolated', server], ['not isolated', plain]]) {
      const context = await browser.newContext();
      try {
        const page = await open(context, where);
        await waitReady(page);
        const cores = await page.evaluate(() => navigator.hardwareConcurrency);
        const header = await page.getByTestId('backend').textContent();
        await page.getByTestId('settings').click();
        const why = await page.getByTestId('backend-reason').textContent();
        await page.getByTestId('settings').click();
        if (name === 'isolated' && cores > 1) {
          assert(/· \d+ threads/.test(header), `${name}: the header counts the threads: ${header}`);
        } else if (name === 'not isolated') {
          assert(!/threads/.test(header), `${name}: one thread: ${header}`);
          assert(why.includes('The CPU kernels run on one thread: the page is not cross-origin isolated'), `${name}: and why: ${why}`);
        }
        await setMaxTokens(page, 24);
        replies[name] = [];
        for (const question of ['What is the capital of France?', 'Name three colours.']) {
          const reply = await ask(page, question);
          replies[name].push((await reply.locator('.body').textContent()).trim());
        }
      } finally {
        await context.close();
      }
    }
    assert(replies['isolated'].every(r => r.length > 0), 'replies on threads');
    assert(JSON.stringify(replies['isolated']) === JSON.stringify(replies['not isolated']), `the same greedy replies: ${JSON.stringify(replies)}`);
  } finally {
    await plain.close();
  }
});

async function chatOnce(webgpu) {
  const browser = await launch({ webgpu });
  const server = await startServer({ dist, model });
  try {
    const context = await browser.newContext();
    const page = await open(context, server);
    await waitReady(page);
    const backend = await page.getByTestId('backend').getAttribute('title');
    if (webgpu) {
      // SwiftShader is a software renderer: on its own the app keeps to the CPU and says why.
      assert(/offers a WebGPU adapter/.test(backend) && /software renderer/.test(backend), `software adapter reported: ${backend}`);
      assert(/CPU/.test(await page.getByTestId('backend').textContent()), 'the CPU runs the model');
    } else {
      assert(/no WebGPU adapter/.test(backend), `no adapter reported: ${backend}`);
    }
    await setMaxTokens(page, webgpu ? 6 : 12);
    const reply = await ask(page, 'Name a colour.');
    const cpuText = (await reply.locator('.body').textContent()).trim();
    assert(cpuText.length > 0, 'a reply');
    if (!webgpu) return;
    // The GPU asked for in Settings: the model reloads onto WebGPU, the header says so,
    // and the greedy reply to the same conversation is the CPU's. The worker's devices
    // are noted as they open, so a later step can lose one.
    const worker = page.workers()[0];
    assert(worker, 'the inference worker is running');
    await worker.evaluate(() => {
      const open = GPUAdapter.prototype.requestDevice;
      self.charterTestDevices = [];
      GPUAdapter.prototype.requestDevice = async function (...args) {
        const device = await open.apply(this, args);
        self.charterTestDevices.push(device);
        return device;
      };
    });
    await page.getByTestId('settings').click();
    await page.getByTestId('setting-backend').selectOption('gpu');
    await page.getByTestId('backend').filter({ hasText: 'GPU · WebGPU' }).waitFor({ timeout: GPU_READY });
    await page.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: GPU_READY });
    const kernels = await page.getByTestId('backend-kernels').textContent();
    assert(/webgpu/.test(kernels) && /runs on gpu \(/.test(kernels), `Settings names the GPU: ${kernels}`);
    const reason = await page.getByTestId('backend').getAttribute('title');
    assert(/Settings ask for the GPU/.test(reason), `the reason names the setting: ${reason}`);
    await page.getByTestId('settings').click();
    await shot(page, 'webgpu');
    await page.getByTestId('new-chat').click();
    const before = await page.getByTestId('message-assistant').count();
    await page.getByTestId('chat-input').fill('Name a colour.');
    await page.getByTestId('chat-input').press('Enter');
    const gpuReply = page.getByTestId('message-assistant').nth(before);
    await gpuReply.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: GPU_READY });
    const gpuText = (await gpuReply.locator('.body').textContent()).trim();
    assert(gpuText === cpuText, `the GPU's greedy reply ${JSON.stringify(gpuText)} is the CPU's ${JSON.stringify(cpuText)}`);

    // The GPU lost in the middle of a reply: the model moves to the CPU, the reply starts
    // over there and completes (the same greedy reply), and the header and a notice say why.
    await page.getByTestId('new-chat').click();
    const lossAt = await page.getByTestId('message-assistant').count();
    await page.getByTestId('chat-input').fill('Name a colour.');
    await page.getByTestId('chat-input').press('Enter');
    await page.locator('[data-streaming="true"] .body').filter({ hasText: /\S/ }).waitFor({ timeout: GPU_READY });
    const lost = await worker.evaluate(() => {
      for (const device of self.charterTestDevices) device.destroy();
      return self.charterTestDevices.length;
    });
    assert(lost > 0, 'a device to lose');
    const restarted = page.getByTestId('message-assistant').nth(lossAt);
    await restarted.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: GPU_READY });
    const afterLoss = (await restarted.locator('.body').textContent()).trim();
    assert(afterLoss === cpuText, `the reply after the loss ${JSON.stringify(afterLoss)} is the CPU's ${JSON.stringify(cpuText)}`);
    const notice = await page.getByTestId('notice').textContent();
    assert(/GPU failed while writing/.test(notice) && /moved the model to the CPU/.test(notice), `a notice says why: ${notice}`);
    assert(/CPU/.test(await page.getByTestId('backend').textContent()), 'the header names the CPU');
    const why = await page.getByTestId('backend').getAttribute('title');
    assert(/GPU failed during a reply/.test(why), `the backend's reason names the loss: ${why}`);
    await shot(page, 'gpu-lost');

    // The GPU lost while the page is idle: the next system block (a persona set on the
    // operator page) is read on the CPU instead, a notice says so, and replies go on.
    await page.getByTestId('settings').click();
    await page.getByTestId('setting-backend').selectOption('cpu');
    await page.getByTestId('backend').filter({ hasText: 'CPU' }).waitFor({ timeout: GPU_READY });
    await page.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: GPU_READY });
    await page.getByTestId('setting-backend').selectOption('gpu');
    await page.getByTestId('backend').filter({ hasText: 'GPU · WebGPU' }).waitFor({ timeout: GPU_READY });
    await page.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: GPU_READY });
    await page.getByTestId('settings').click();
    await worker.evaluate(() => {
      for (const device of self.charterTestDevices) device.destroy();
    });
    await page.getByTestId('operator').click();
    const panel = page.getByTestId('operator-panel');
    await panel.getByTestId('operator-persona').fill('Crumb');
    await panel.getByTestId('operator-apply').click();
    await panel.getByTestId('config-applied').waitFor({ timeout: GPU_READY });
    await page.getByTestId('notice').filter({ hasText: /moved the model to the CPU/ }).waitFor({ timeout: GPU_READY });
    assert(/CPU/.test(await page.getByTestId('backend').textContent()), 'the header names the CPU after an idle loss');
    const idleWhy = await page.getByTestId('backend').getAttribute('title');
    assert(/the GPU failed \(preparing the system block/.test(idleWhy), `the backend's reason names the idle loss: ${idleWhy}`);
    await page.getByTestId('operator').click();
    await page.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: GPU_READY });
    const afterIdle = await ask(page, 'Name a colour.');
    assert((await afterIdle.locator('.body').textContent()).trim().length > 0, 'a reply on the CPU after the idle loss');
  } finally {
    await browser.close();
    await server.close();
  }
}

// A site that embeds the widget, on another loopback address than the app's, with CSS
// that hides every element of its own and every iframe.
// The JS API's calls, run inside a page: `where` is `module` (a page of the app's origin
// importing charter-api.js) or `widget` (a host page, through window.Charter). Returns
// what the assertions need.
async function apiCalls(page, where) {
  return page.evaluate(async where => {
    const LM = where === 'module' ? (await import('./charter-api.js')).LanguageModel : window.Charter.LanguageModel;
    const name = async p => { try { await p; return 'resolved'; } catch (e) { return e.name; } };
    const read = async stream => {
      const chunks = [];
      const reader = stream.getReader();
      for (;;) { const { done, value } = await reader.read(); if (done) return chunks; chunks.push(value); }
    };
    const out = { errors: {} };
    out.before = await LM.availability();
    out.unavailable = await LM.availability({ expectedInputs: [{ type: 'image' }] });
    const progress = [];
    const s = await LM.create({
      initialPrompts: [{ role: 'system', content: 'Answer in one short sentence.' }], maxTokens: 12,
      monitor(m) { m.addEventListener('downloadprogress', e => progress.push(e.loaded)); },
    });
    Object.assign(out, { progress, after: await LM.availability(), window: s.contextWindow, usage0: s.contextUsage, engine: s.engine,
      block: s.systemBlock });
    out.reply = await s.prompt('What is the capital of France?');
    Object.assign(out, { stop: s.lastStopReason, usage1: s.contextUsage });
    const chunks = await read(s.promptStreaming([{ role: 'user', content: [{ type: 'text', value: 'And of Italy?' }] }]));
    Object.assign(out, { chunks: chunks.length, streamed: chunks.join(''), usage2: s.contextUsage });
    // Aborted once the reply has started: the prompt and its reply leave the session.
    const abort = new AbortController();
    let pieces = 0;
    const stream = s.promptStreaming('Tell me a long story about a dragon.', { signal: abort.signal });
    const reader = stream.getReader();
    out.abort = await (async () => {
      try {
        for (;;) { const { done } = await reader.read(); if (done) return 'finished'; if (++pieces === 2) abort.abort(); }
      } catch (e) { return e.name; }
    })();
    out.usage3 = s.contextUsage;
    out.measure = await s.measureContextUsage('How many legs has a spider?');
    out.usage4 = s.contextUsage;
    // A clone goes on alone.
    const k = await s.clone();
    await k.prompt('Thank you!');
    Object.assign(out, { cloneUsage: k.contextUsage, originalUsage: s.contextUsage });
    await s.append('My name is Ada.');
    out.usage5 = s.contextUsage;
    // The same seed, the same reply.
    const seeded = async () => {
      const x = await LM.create({ temperature: 1, topK: 40, seed: 42, maxTokens: 10 });
      out.plainBlock = x.systemBlock;
      const r = await x.prompt('Say a word.');
      x.destroy();
      return r;
    };
    out.seedA = await seeded();
    out.seedB = await seeded();
    out.errors.system = await name(s.prompt([{ role: 'system', content: 'x' }]));
    out.errors.order = await name(LM.create({ initialPrompts: [{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }] }));
    out.errors.image = await name(s.prompt([{ role: 'user', content: [{ type: 'image', value: 'x' }] }]));
    out.errors.role = await name(s.prompt([{ role: 'robot', content: 'x' }]));
    out.errors.half = await name(LM.create({ topK: 3 }));
    out.errors.quota = await name(s.prompt('word '.repeat(12000)));
    try { await LM.create({ operator: 'disable = ["hard-limits"]\n' }); out.refusal = 'accepted'; } catch (e) { out.refusal = `${e.name}: ${e.message}`; }
    // A window of 1,024 tokens overflows within a few long turns.
    const small = await LM.create({ contextLength: 1024, maxTokens: 8 });
    let overflows = 0;
    small.oncontextoverflow = () => overflows++;
    for (let i = 0; i < 5 && !overflows; i++) await small.prompt(`Remember item ${i}: ${'apple banana cherry '.repeat(60)}`);
    Object.assign(out, { overflows, smallWindow: small.contextWindow, smallUsage: small.contextUsage });
    s.destroy();
    out.destroyed = await name(s.prompt('hi'));
    return out;
  }, where);
}

function checkApi(r, { fresh }) {
  const json = JSON.stringify(r);
  if (fresh) {
    assert(r.before === 'downloadable', `before a download the model is downloadable: ${r.before}`);
    assert(r.progress[0] === 0 && r.progress.at(-1) === 1 && r.progress.length > 2, `download progress from 0 to 1: ${r.progress}`);
  } else {
    assert(r.before === 'available', `a stored model is available: ${r.before}`);
    assert(r.progress[0] === 0 && r.progress.at(-1) === 1, `progress 0 and 1: ${r.progress}`);
  }
  assert(r.after === 'available' && r.unavailable === 'unavailable', `availability: ${r.after}, images ${r.unavailable}`);
  assert(r.reply.length > 0 && ['end_of_turn', 'length', 'stop_string'].includes(r.stop), `a reply with its stop reason: ${json}`);
  assert(/cpu \(wasm/.test(r.engine) && r.window >= 2048, `engine and window: ${r.engine}, ${r.window}`);
  assert(0 < r.usage0 && r.usage0 < r.usage1 && r.usage1 < r.usage2 && r.usage2 < r.window, `usage grows: ${json}`);
  assert(r.chunks >= 1 && r.streamed.length > 0, `a streamed reply: ${r.chunks} chunks`);
  assert(r.abort === 'AbortError' && r.usage3 === r.usage2, `an aborted prompt leaves no trace: ${r.abort}, ${r.usage3} vs ${r.usage2}`);
  assert(r.measure > 5 && r.measure < 40 && r.usage4 === r.usage2, `measureContextUsage: ${r.measure}`);
  assert(r.cloneUsage > r.originalUsage && r.originalUsage === r.usage2, `a clone is independent: ${r.cloneUsage} vs ${r.originalUsage}`);
  assert(r.usage5 > r.usage2, `append adds to the session: ${r.usage5}`);
  // The system text of the initial prompts is the operator's block, after the
  // constitution's units (the worker lets no page speak as the system).
  assert(r.block.operatorBlock && r.block.units.includes('hard-limits') && r.block.tokens <= r.block.budget, `the block: ${JSON.stringify(r.block)}`);
  if (fresh) assert(r.plainBlock.operatorBlock === false, `without a system prompt or an operator.toml, no operator block: ${JSON.stringify(r.plainBlock)}`);
  assert(r.seedA.length > 0 && r.seedA === r.seedB, `the same seed, the same reply: ${JSON.stringify([r.seedA, r.seedB])}`);
  const e = r.errors;
  assert(e.system === 'NotSupportedError' && e.image === 'NotSupportedError' && e.half === 'NotSupportedError', `NotSupportedError: ${JSON.stringify(e)}`);
  assert(e.order === 'TypeError' && e.role === 'TypeError', `TypeError: ${JSON.stringify(e)}`);
  assert(e.quota === 'QuotaExceededError', `QuotaExceededError: ${e.quota}`);
  assert(/^TypeError: .*"hard-limits"/.test(r.refusal), `a refused layer names the unit: ${r.refusal}`);
  assert(r.overflows === 1 && r.smallWindow === 1024 && r.smallUsage < 1024, `contextoverflow in a small window: ${json}`);
  assert(r.destroyed === 'InvalidStateError', `a destroyed session refuses: ${r.destroyed}`);
}

// A page of the app's origin, blank but for its title, for calls to charter-api.js.
async function sameOriginPage(browser, server, name, title) {
  server.state.pages[`/${name}`] = `<!doctype html><meta charset="utf-8"><title>${title}</title>`;
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', e => console.log(`  [page error] ${e.message}`));
  await page.goto(`${server.url}${name}`);
  return { context, page };
}

test('the JS API: charter-api.js in the shape of the Prompt API', async ({ browser, server }) => {
  const { context, page } = await sameOriginPage(browser, server, 'api.html', 'A page of the same origin');
  checkApi(await apiCalls(page, 'module'), { fresh: true });
  await context.close();
});

// A conversation longer than its window, through the JS API: when the oldest messages
// leave the window, the rest of the history moves down in the model's cache (a context
// shift) instead of being read again, the drop goes down to half the room so the next
// turns reuse the cache as it stands, and replies keep coming. Timings are printed for
// the record (the bench owns speed); the counts are asserted.
test('a conversation longer than its window shifts the cache instead of reading it again', async ({ browser, server }) => {
  const { context, page } = await sameOriginPage(browser, server, 'long.html', 'A long conversation');
  const turns = await page.evaluate(async () => {
    const { LanguageModel } = await import('./charter-api.js');
    const s = await LanguageModel.create({ contextLength: 2048, maxTokens: 4 });
    let overflows = 0;
    s.addEventListener('contextoverflow', () => overflows++);
    const topics = ['rivers', 'bread', 'bridges', 'owls', 'clocks', 'tides', 'maps', 'bees', 'kites', 'salt', 'glass', 'ferns', 'wool', 'moths'];
    const out = [];
    for (const [i, topic] of topics.entries()) {
      const before = overflows;
      const t0 = performance.now();
      const reply = await s.prompt(`Note ${i} is about ${topic}. ` + `Here is a line about ${topic}, number ${i}, to keep in mind. `.repeat(8));
      out.push({ i, ms: performance.now() - t0, overflow: overflows > before, reply, usage: s.contextUsage, ...s.lastStats });
    }
    return out;
  });
  for (const t of turns) {
    console.log(`  turn ${t.i}: ${t.ms.toFixed(0)} ms, first token ${t.firstTokenSeconds.toFixed(2)} s; prompt ${t.promptTokens}, read ${t.prefillTokens}, reused ${t.reusedTokens} (${t.shiftedTokens} shifted)${t.overflow ? ', overflow' : ''}; usage ${t.usage}`);
  }
  const overflowed = turns.filter(t => t.overflow);
  assert(overflowed.length >= 2, `several overflows in ${turns.length} turns: ${overflowed.map(t => t.i)}`);
  assert(!turns[0].overflow && !turns[1].overflow, 'the first turns fit');
  const normal = turns.slice(1).filter(t => !t.overflow).map(t => t.prefillTokens).sort((a, b) => a - b);
  const typical = normal[Math.floor(normal.length / 2)];
  for (const t of overflowed) {
    assert(t.shiftedTokens > 100, `turn ${t.i}: the kept history is shifted, not read: ${JSON.stringify(t)}`);
    assert(t.prefillTokens <= typical + 16, `turn ${t.i} reads ${t.prefillTokens} tokens, a normal turn ${typical}`);
  }
  for (const t of turns.slice(1)) {
    if (!t.overflow) assert(t.shiftedTokens === 0 && t.prefillTokens <= typical + 16, `turn ${t.i} after an overflow reuses the cache as it stands: ${JSON.stringify(t)}`);
    assert(t.reply.trim().length > 0, `turn ${t.i} has a reply`);
  }
  // The drop goes down to half the room: not an overflow on every turn after the first.
  const gaps = overflowed.slice(1).map((t, k) => t.i - overflowed[k].i);
  assert(gaps.every(g => g >= 2), `overflows at turns ${overflowed.map(t => t.i)}`);
  const ttft = t => t.firstTokenSeconds;
  const normalTtft = turns.slice(1).filter(t => !t.overflow).map(ttft).sort((a, b) => a - b);
  const median = normalTtft[Math.floor(normalTtft.length / 2)];
  console.log(`  first token: normal turns ${median.toFixed(2)} s (median), overflow turns ${overflowed.map(t => ttft(t).toFixed(2)).join(', ')} s: ${overflowed.map(t => (ttft(t) / median).toFixed(2)).join(', ')}×`);
  await context.close();
});

// A soak: 300 short turns in one conversation, through the JS API, in a window that
// overflows every few turns. Every turn gets its reply, no overflow reads the history
// again, and neither the worker's WebAssembly memory nor the page's JS heap (measured
// after a collection) grows once the conversation has filled its window.
test('a soak of 300 turns with many overflows keeps replying in bounded memory', async ({ browser, server }) => {
  const { context, page } = await sameOriginPage(browser, server, 'soak.html', 'A soak');
  const cdp = await context.newCDPSession(page);
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    return (await cdp.send('Runtime.getHeapUsage')).usedSize;
  };
  await page.evaluate(async () => {
    const { LanguageModel } = await import('./charter-api.js');
    window.soak = { session: await LanguageModel.create({ contextLength: 1024, maxTokens: 3 }), overflows: 0, turns: [] };
    window.soak.session.addEventListener('contextoverflow', () => window.soak.overflows++);
  });
  const TURNS = 300, BATCH = 25;
  const heaps = [];
  const t0 = Date.now();
  const turns = [];
  for (let from = 0; from < TURNS; from += BATCH) {
    // Each batch's records come back here, so the page holds none of them.
    turns.push(...await page.evaluate(async ([from, n]) => {
      const words = ['amber', 'birch', 'cedar', 'dune', 'ember', 'fjord', 'grove', 'heath', 'inlet', 'juniper', 'kelp'];
      const { session } = window.soak;
      const turns = [];
      for (let i = from; i < from + n; i++) {
        const before = window.soak.overflows;
        const t = performance.now();
        const reply = await session.prompt(`Turn ${i}: remember the word ${words[i % words.length]}. Reply with one word.`);
        const s = session.lastStats;
        turns.push({ i, ms: performance.now() - t, reply, stop: session.lastStopReason, overflow: window.soak.overflows > before,
          read: s.prefillTokens, shifted: s.shiftedTokens, memory: s.workerMemoryBytes, usage: session.contextUsage });
      }
      return turns;
    }, [from, BATCH]));
    heaps.push(await heap());
  }
  const seconds = (Date.now() - t0) / 1000;
  const overflowed = turns.filter(t => t.overflow);
  const first = overflowed[0];
  assert(turns.length === TURNS, `${turns.length} turns`);
  assert(overflowed.length >= 10, `many overflows: ${overflowed.length}`);
  const normal = turns.filter(t => !t.overflow && t.i > 0).map(t => t.read);
  const most = Math.max(...normal);
  for (const t of overflowed) {
    assert(t.shifted > 0 && t.read <= most + 8, `turn ${t.i} overflows without reading the history again: ${JSON.stringify(t)}`);
  }
  const empty = turns.filter(t => t.reply.trim() === '' && t.stop !== 'end_of_turn');
  assert(empty.length === 0, `every turn has a reply or ends its turn: ${JSON.stringify(empty.slice(0, 3))}`);
  assert(turns.every(t => t.usage < 1024), 'the conversation stays inside its window');
  // Memory: the worker's stops growing once the window has filled.
  const grown = turns.filter(t => t.i > first.i && t.memory > first.memory);
  const memoryMiB = m => (m / 1048576).toFixed(1);
  console.log(`  ${TURNS} turns in ${seconds.toFixed(0)} s, ${overflowed.length} overflows (first at turn ${first.i}); worker memory ${memoryMiB(first.memory)} MiB at the first overflow, ${memoryMiB(turns.at(-1).memory)} MiB at the end`);
  assert(grown.length === 0, `the worker's memory grew after the first overflow: ${grown.slice(0, 3).map(t => `${t.i}: ${t.memory}`)}`);
  // The page's heap, after a collection, every 25 turns: bounded once the window filled.
  const firstBatch = Math.floor(first.i / BATCH) + 1;
  const settled = heaps[Math.min(firstBatch, heaps.length - 1)];
  console.log(`  page heap after collection, every ${BATCH} turns (KiB): ${heaps.map(h => (h / 1024).toFixed(0)).join(' ')}`);
  assert(Math.max(...heaps.slice(firstBatch)) <= settled * 1.25 + 512 * 1024, `the page's heap keeps growing: ${heaps}`);
  // Over the last 150 turns, less than a kept turn's messages would add (about 250 bytes a
  // turn): what remains is the engine's own compiled code, not the conversation.
  const half = heaps.length / 2;
  assert(heaps.at(-1) - heaps[half] <= 24 * 1024, `the page's heap grows by ${heaps.at(-1) - heaps[half]} bytes over the last ${TURNS / 2} turns`);
  // Time per turn, for the record: the mean over each run of turns between overflows.
  const runs = [];
  let run = [];
  for (const t of turns) {
    if (t.overflow && run.length) { runs.push(run); run = []; }
    run.push(t.ms);
  }
  runs.push(run);
  const mean = xs => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`  ms per turn, overflow turn then the rest, per window: ${runs.slice(1, 8).map(r => `${r[0].toFixed(0)}/${mean(r.slice(1)).toFixed(0)}`).join(' ')} … ${runs.slice(-2).map(r => `${r[0].toFixed(0)}/${mean(r.slice(1)).toFixed(0)}`).join(' ')}`);
  await context.close();
});

async function hostSite(appUrl, operator) {
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/charter-operator.toml')) {
      res.writeHead(200, { 'content-type': 'application/toml' });
      return res.end(operator);
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"><title>A host</title>
<style>body * { display: none !important; } iframe { opacity: 0 !important; }</style></head>
<body><h1>The host's own page</h1>
<script src="${appUrl}widget.js" data-persona="Ada" data-operator-config="/charter-operator.toml" data-position="bottom-right" data-theme="dark"></script>
</body></html>`);
  });
  await new Promise(r => server.listen(0, '127.0.0.2', r));
  return { url: `http://127.0.0.2:${server.address().port}/`, close: () => new Promise(r => { server.closeAllConnections(); server.close(r); }) };
}

// The widget on another site: one script tag, a launcher, a panel that host scripts and
// host CSS cannot reach, the host's operator layer checked as the app checks one.
async function widget() {
  const server = await startServer({ dist, model });
  const host = await hostSite(server.url, 'scope = "questions about bread"\n');
  const refusing = await hostSite(server.url, 'disable = ["emergency"]\n');
  // A browser profile as a regular window has it, where a frame from another site gets
  // storage of its own (partitioned by the embedding site); this Chromium's default,
  // like a private window, blocks third-party storage, which the last part tests.
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'charter-profile-'));
  fs.mkdirSync(path.join(profile, 'Default'));
  fs.writeFileSync(path.join(profile, 'Default', 'Preferences'), JSON.stringify({ profile: { cookie_controls_mode: 0, block_third_party_cookies: false } }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: [...FLAGS, '--disable-gpu'], viewport: { width: 360, height: 740 },
  });
  const browser = await launch();
  try {
    const page = await context.newPage();
    page.on('pageerror', e => console.log(`  [host page error] ${e.message}`));
    await page.goto(host.url);
    const launcher = page.getByTestId('charter-widget-launcher');
    await launcher.waitFor();
    // By keyboard: the launcher opens the panel.
    await launcher.focus();
    await page.keyboard.press('Enter');
    const panel = page.getByTestId('charter-widget-panel');
    await panel.waitFor();
    assert(await launcher.getAttribute('aria-expanded') === 'true', 'the launcher says the panel is open');
    const frame = page.frameLocator('iframe[title=Charter]');
    await frame.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: READY });
    const box = await panel.boundingBox();
    assert(box.x >= 0 && box.x + box.width <= 360 && box.width >= 300, `the panel fits a 360 px phone: ${JSON.stringify(box)}`);
    // Host CSS hides none of it: the frame is opaque and its input visible.
    const opacity = await page.evaluate(() => getComputedStyle(document.querySelector('[data-charter-widget]').shadowRoot.querySelector('iframe')).opacity);
    assert(opacity === '1', `the host's iframe rule does not reach the panel (opacity ${opacity})`);
    assert(await frame.getByTestId('chat-input').isVisible(), "the panel's content is visible");
    assert(await frame.locator('html').getAttribute('data-theme') === 'dark', 'the theme came through its attribute');
    // The host's layer is in force, with the persona, and locked.
    await frame.getByTestId('operator').click();
    await frame.getByTestId('operator-locked').waitFor();
    assert(await frame.getByTestId('operator-persona').inputValue() === 'Ada', 'the persona from data-persona');
    assert(await frame.getByTestId('operator-scope').inputValue() === 'questions about bread', 'the scope from the operator file');
    const closePanel = () => frame.getByRole('button', { name: 'Close panel' }).click();
    await closePanel();
    // A chat.
    await frame.getByTestId('settings').click();
    await frame.getByTestId('setting-max-tokens').fill('8');
    await frame.getByTestId('setting-max-tokens').press('Tab');
    await frame.locator('[data-testid=egress-status][data-sealed=true]').waitFor({ timeout: 30_000 });
    await closePanel();
    await frame.getByTestId('chat-input').fill('Name a colour.');
    await frame.getByTestId('chat-input').press('Enter');
    const reply = frame.getByTestId('message-assistant').first();
    await reply.getByTestId('stop-reason').filter({ hasText: /\w/ }).waitFor({ timeout: READY });
    assert((await reply.locator('.body').textContent()).trim().length > 0, 'a reply in the widget');
    await shot(page, 'widget');
    // The JS API through the widget's channel, in a worker of the frame's own.
    checkApi(await apiCalls(page, 'widget'), { fresh: false });
    assert(await frame.getByTestId('message-assistant').count() === 1, "the API's sessions are not the panel's conversation");
    // The host's scripts cannot read the frame, and a message that is not the widget's
    // first answer changes nothing.
    const reach = await page.evaluate(() => {
      const iframe = document.querySelector('[data-charter-widget]').shadowRoot.querySelector('iframe');
      let storage = 'unreadable';
      try { storage = String(iframe.contentWindow.localStorage.length); } catch { /* cross-origin */ }
      iframe.contentWindow.postMessage({ type: 'charter-widget-hello', persona: 'Mallory', operator: 'disable = ["hard-limits"]\n' }, '*');
      iframe.contentWindow.postMessage('anything', '*');
      return { document: iframe.contentDocument, storage };
    });
    assert(reach.document === null && reach.storage === 'unreadable', `the host cannot read the frame: ${JSON.stringify(reach)}`);
    await page.waitForTimeout(500);
    await frame.getByTestId('operator').click();
    assert(await frame.getByTestId('operator-persona').inputValue() === 'Ada', "a later message did not change the operator's layer");
    assert(await frame.getByTestId('model-status').filter({ hasText: 'Ready' }).count() === 1, 'and the app runs on');
    await closePanel();
    // By keyboard: the close button closes the panel and gives focus back to the launcher.
    await page.getByTestId('charter-widget-close').focus();
    await page.keyboard.press('Enter');
    await panel.waitFor({ state: 'hidden' });
    assert(await page.evaluate(() => document.querySelector('[data-charter-widget]').shadowRoot.activeElement?.dataset.testid) === 'charter-widget-launcher', 'focus is back on the launcher');
    // Offline once the model is stored: the frame starts again from its service worker.
    await launcher.click();
    await page.waitForFunction(() => navigator.onLine !== undefined);
    const frameHandle = page.frames().find(f => f.url().includes('embed=widget'));
    await frameHandle.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    await context.setOffline(true);
    server.state.faults = { offline: true };
    await frameHandle.evaluate(() => location.reload());
    await frame.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: READY });
    server.state.faults = {};
    await context.setOffline(false);

    // A host whose configuration switches off a protection gets the reason in the panel.
    const other = await context.newPage();
    await other.goto(refusing.url);
    await other.getByTestId('charter-widget-launcher').click();
    const refused = other.frameLocator('iframe[title=Charter]').getByTestId('model-status').filter({ hasText: 'refused' });
    await refused.waitFor({ timeout: 60_000 });
    assert(/"emergency"/.test(await refused.textContent()), `the refusal names the unit: ${await refused.textContent()}`);
    // The layer from a script instead of the tag: the running frame starts again under it.
    const otherFrame = other.frameLocator('iframe[title=Charter]');
    await other.evaluate(() => window.Charter.widget.configure({ operator: 'scope = "questions about cake"\n', persona: 'Bo' }));
    await otherFrame.getByTestId('model-status').filter({ hasText: 'Ready' }).waitFor({ timeout: READY });
    await otherFrame.getByTestId('operator').click();
    assert(await otherFrame.getByTestId('operator-persona').inputValue() === 'Bo', 'the persona from configure()');
    assert(await otherFrame.getByTestId('operator-scope').inputValue() === 'questions about cake', 'the scope from configure()');
    await other.evaluate(() => window.Charter.widget.configure({ operator: { disable: ['hard-limits'] } }));
    const refusedByScript = otherFrame.getByTestId('model-status').filter({ hasText: 'refused' });
    await refusedByScript.waitFor({ timeout: 60_000 });
    assert(/"hard-limits"/.test(await refusedByScript.textContent()), `a layer from a script is checked as one from the tag: ${await refusedByScript.textContent()}`);

    // Where the browser blocks third-party storage the panel says what still works.
    const blocked = await (await browser.newContext({ viewport: { width: 360, height: 740 } })).newPage();
    await blocked.goto(host.url);
    await blocked.getByTestId('charter-widget-launcher').click();
    const notice = blocked.frameLocator('iframe[title=Charter]').getByTestId('storage-blocked');
    await notice.waitFor({ timeout: 60_000 });
    assert(/no storage for Charter inside another site's page/.test(await notice.textContent()), 'the reason');
    const open = blocked.frameLocator('iframe[title=Charter]').getByTestId('open-charter');
    assert(await open.getAttribute('href') === server.url, `a way to Charter's own site: ${await open.getAttribute('href')}`);
    await shot(blocked, 'widget-storage-blocked');
  } finally {
    await context.close();
    await browser.close();
    await server.close();
    await host.close();
    await refusing.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// A copy of the build with a change, as a new deployment would be: a marker in the page
// and a new version in the service worker (the build names each version by its files).
function nextBuild(from) {
  const to = fs.mkdtempSync(path.join(os.tmpdir(), 'charter-next-build-'));
  fs.cpSync(from, to, { recursive: true, filter: p => path.relative(from, p).split(path.sep)[0] !== 'models' });
  const page = path.join(to, 'index.html');
  fs.writeFileSync(page, fs.readFileSync(page, 'utf8').replace('<head>', '<head><meta name="charter-test-build" content="next">'));
  const sw = path.join(to, 'sw.js');
  const text = fs.readFileSync(sw, 'utf8');
  const version = /const VERSION = '([^']+)';/.exec(text);
  assert(version && version[1] !== 'unbuilt', 'the build wrote its version into sw.js');
  fs.writeFileSync(sw, text.replace(version[0], `const VERSION = 'next-${version[1]}';`));
  return { dir: to, version: `next-${version[1]}`, previous: version[1] };
}

// The installable app under a sub-path of a host that sends no isolation headers: it
// installs, starts and answers with the network cut, becomes cross-origin isolated
// through its service worker, and takes a new build only when the user asks.
async function offlineApp() {
  const browser = await launch();
  const server = await startServer({ dist, model, base: '/apps/charter/', isolate: false });
  let next = null;
  try {
    const context = await browser.newContext();
    const page = await open(context, server);
    await waitReady(page);
    // What an installability audit reads: a manifest with its icons, a worker in control.
    const manifest = await page.evaluate(async () => {
      const href = new URL(document.querySelector('link[rel=manifest]').getAttribute('href'), location.href);
      const m = await (await fetch(href)).json();
      const icons = [];
      for (const icon of m.icons) {
        const response = await fetch(new URL(icon.src, href));
        const bitmap = response.ok && icon.type === 'image/png' ? await createImageBitmap(await response.blob()) : null;
        icons.push({ src: icon.src, ok: response.ok, sizes: icon.sizes, size: bitmap && `${bitmap.width}x${bitmap.height}`, purpose: icon.purpose || 'any' });
      }
      return { m, icons, start: new URL(m.start_url, href).href, scope: new URL(m.scope, href).href };
    });
    assert(manifest.m.display === 'standalone' && manifest.m.name === 'Charter' && manifest.m.short_name, 'the manifest names the app');
    assert(manifest.start === server.url && manifest.scope === server.url, `start_url and scope are the sub-path: ${manifest.start}, ${manifest.scope}`);
    for (const icon of manifest.icons) assert(icon.ok && (icon.size === null || icon.size === icon.sizes), `icon ${icon.src}: ${JSON.stringify(icon)}`);
    for (const [sizes, purpose] of [['192x192', 'any'], ['512x512', 'any'], ['512x512', 'maskable']]) {
      assert(manifest.icons.some(i => i.size === sizes && i.purpose === purpose), `a ${purpose} icon of ${sizes}`);
    }
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    const scope = await page.evaluate(async () => (await navigator.serviceWorker.getRegistration()).scope);
    assert(scope === server.url, `the service worker's scope is the sub-path: ${scope}`);
    await setMaxTokens(page, 8);
    await page.getByTestId('settings').click();
    await page.locator('[data-testid=offline-status][data-ready=true]').waitFor({ timeout: 60_000 });
    const status = await page.getByTestId('offline-status').textContent();
    assert(/Offline use: ready/.test(status), `offline status: ${status}`);
    const before = await page.getByTestId('isolation').getAttribute('data-isolated');
    assert(before === 'false', 'a first visit to a host without the headers is not isolated');
    assert(/sends no Cross-Origin-Opener-Policy/.test(await page.getByTestId('isolation').textContent()), 'and the page says why');
    await page.getByTestId('settings').click();

    // The network cut: the page comes from the service worker, the model from storage.
    await context.setOffline(true);
    server.state.faults = { offline: true };
    await page.reload();
    await waitReady(page);
    const reply = await ask(page, 'Name a colour.');
    assert((await reply.locator('.body').textContent()).trim().length > 0, 'a reply with the network cut');
    await page.getByTestId('settings').click();
    assert(await page.getByTestId('isolation').getAttribute('data-isolated') === 'true', 'served by the worker, the page is cross-origin isolated');
    assert(await page.evaluate(() => self.crossOriginIsolated), 'crossOriginIsolated');
    await shot(page, 'offline');
    await page.getByTestId('settings').click();

    // A new build on the server: offered, and taken only when the user asks.
    next = nextBuild(dist);
    await context.setOffline(false);
    server.state.faults = {};
    server.state.dist = next.dir;
    await page.reload();
    await page.getByTestId('update-ready').waitFor({ timeout: 60_000 });
    assert(await page.locator('meta[name=charter-test-build]').count() === 0, 'the old build still runs until the user reloads');
    await shot(page, 'update-ready');
    await page.getByTestId('update-reload').click();
    await page.locator('meta[name=charter-test-build]').waitFor({ state: 'attached', timeout: 60_000 });
    await waitReady(page);
    await page.getByTestId('settings').click();
    await page.getByTestId('offline-status').filter({ hasText: next.version }).waitFor({ timeout: 30_000 });
    const shells = await page.evaluate(async () => (await caches.keys()).filter(k => k.startsWith('charter-shell:')));
    assert(shells.length === 1 && shells[0].endsWith(next.version), `only the new shell is kept: ${shells}`);
    assert(await page.getByTestId('update-ready').count() === 0, 'no update is offered once it is taken');
  } finally {
    await browser.close();
    await server.close();
    if (next) fs.rmSync(next.dir, { recursive: true, force: true });
  }
}

async function main() {
  let failed = 0;
  let passed = 0;
  const started = Date.now();
  const runOne = async (name, fn) => {
    if (only && !only.test(name)) return;
    const t = Date.now();
    try {
      await fn();
      passed++;
      console.log(`ok   ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}\n     ${e.stack || e}`);
    }
  };
  const browser = await launch();
  const server = await startServer({ dist, model });
  for (const { name, fn } of tests) {
    // Each test starts from a server without faults; one that wants some sets them.
    Object.assign(server.state, { faults: {}, operatorToml: null, operatorType: null, pages: {} });
    await runOne(name, () => fn({ browser, server }));
  }
  await browser.close();
  await server.close();
  await runOne('the app installs under a sub-path, answers offline, is isolated by its service worker and updates when asked', offlineApp);
  await runOne('the widget on another site: a chat in a panel host scripts and host CSS cannot reach, the JS API through its channel, offline, keyboard, a layer from the tag or a script', widget);
  await runOne('chat with WebGPU off (no adapter)', () => chatOnce(false));
  await runOne('chat with --enable-unsafe-webgpu: the CPU on its own, the GPU when Settings ask, the CPU again when the GPU is lost', () => chatOnce(true));
  console.log(`screenshots in ${artifacts}; ${((Date.now() - started) / 1000).toFixed(0)} s`);
  // The last line, in a form any reader of a CI log can count.
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
