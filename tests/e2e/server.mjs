// The end-to-end tests' web server: the built app from CHARTER_DIST, and the test
// model under models/, with faults the tests switch on (a dropped connection, a
// corrupted file, a missing file, a slow link, no network at all) and a log of
// requests. The app is served under `base` (a sub-path, as a static host may), with the
// cross-origin isolation headers unless `isolate` is false.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.webmanifest': 'application/manifest+json',
};
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

export function parseRange(header, len) {
  const m = /^bytes=(\d*)-(\d*)$/.exec((header || '').trim());
  if (!m) return null;
  let start, end;
  if (m[1] === '') { start = Math.max(0, len - Number(m[2])); end = len - 1; }
  else { start = Number(m[1]); end = m[2] === '' ? len - 1 : Math.min(Number(m[2]), len - 1); }
  return start <= end && end < len ? [start, end] : null;
}

export async function startServer({ dist, model, base = '/', isolate = true }) {
  const modelName = path.basename(model);
  const modelBytes = fs.readFileSync(model);
  const state = {
    faults: {},          // { dropAfter, corrupt, notFound, bytesPerSecond }
    modelRequests: [],   // { range } per request to /models/
    operatorToml: null,  // a site owner's operator.toml, served when set
    operatorType: null,  // its content type, when not application/toml
    broken: new Set(),   // app files served damaged (a module that does not compile)
    dist,                // the folder the app is served from (a test may deploy another build)
    requests: [],        // the path of every request
    pages: {},           // extra pages of the app's origin, by path under `base`: their HTML
  };
  const app = isolate ? ISOLATION : {};
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    state.requests.push(url.pathname);
    if (state.faults.offline) { res.socket.destroy(); return; }
    if (!url.pathname.startsWith(base)) { res.writeHead(404); return res.end('not found'); }
    const local = '/' + url.pathname.slice(base.length);
    if (local.startsWith('/models/')) {
      state.modelRequests.push({ path: url.pathname, range: req.headers.range || null });
      const f = state.faults;
      if (f.notFound || path.basename(local) !== modelName) { res.writeHead(404); return res.end('not found'); }
      let bytes = modelBytes;
      if (f.corrupt) { bytes = Buffer.from(modelBytes); bytes[bytes.length >> 1] ^= 0xff; }
      const len = bytes.length;
      let start = 0, end = len - 1, status = 200;
      if (req.headers.range) {
        const r = parseRange(req.headers.range, len);
        if (!r) { res.writeHead(416, { 'content-range': `bytes */${len}` }); return res.end(); }
        [start, end] = r; status = 206;
      }
      const headers = { 'content-type': 'application/octet-stream', 'content-length': end - start + 1, 'accept-ranges': 'bytes' };
      if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${len}`;
      res.writeHead(status, headers);
      const drop = f.dropAfter && state.modelRequests.length === 1 ? f.dropAfter : null;
      const chunk = 1 << 20;
      for (let at = start; at <= end; at += chunk) {
        const piece = bytes.subarray(at, Math.min(at + chunk, end + 1));
        if (drop !== null && at - start + piece.length > drop) { res.socket.destroy(); return; }
        if (!res.write(piece)) await new Promise(r => res.once('drain', r));
        if (f.bytesPerSecond) await new Promise(r => setTimeout(r, (piece.length / f.bytesPerSecond) * 1000));
      }
      return res.end();
    }
    if (state.pages[local] != null) {
      res.writeHead(200, { 'content-type': TYPES['.html'], 'cache-control': 'no-cache', ...app });
      return res.end(state.pages[local]);
    }
    if (local === '/operator.toml' && state.operatorToml != null) {
      res.writeHead(200, { 'content-type': state.operatorType || 'application/toml', 'cache-control': 'no-cache', ...app });
      return res.end(state.operatorToml);
    }
    if (state.broken.has(local)) {
      res.writeHead(200, { 'content-type': TYPES[path.extname(local)] || 'application/octet-stream', 'cache-control': 'no-cache', ...app });
      return res.end(Buffer.from('\0asm\x01\0\0\0 this is not a module'));
    }
    const root = state.dist;
    let file = path.join(root, path.normalize(decodeURIComponent(local)).replace(/^(\.\.[/\\])+/, ''));
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!file.startsWith(root) || !fs.existsSync(file)) { res.writeHead(404); return res.end('not found'); }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache', ...app });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}${base}`, state, modelName, close: () => new Promise(r => { server.closeAllConnections(); server.close(r); }) };
}
