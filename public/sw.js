// Charter's service worker. It keeps the app's shell (the page, both worker builds, the
// stylesheet, the manifest and icons) in a cache named for the build, so the app starts
// with no network. A new build installs beside the running one and waits until the page
// asks it to take over (the page's "A new version is ready — Reload"); the old shell is
// removed once it has. Models and saved model states are not kept here: the inference
// worker stores them in Cache Storage of its own (charter-models-v1, charter-states-v1),
// which this worker neither serves nor deletes.
//
// Where the server sends no Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy
// headers, the shell is served with them, so the app is cross-origin isolated from its
// second start on even on a host that cannot set headers.
//
// `cargo xtask build-web` writes the next two lines: the build's version (a hash of the
// shell's bytes) and the shell's files, relative to this file. As they stand here the
// worker caches nothing and serves nothing.
const VERSION = 'unbuilt';
const SHELL = [];

const scope = new URL('./', self.location.href);
// Cache names are per origin; the scope's path keeps two deployments on one origin
// (under different sub-paths) out of each other's caches.
const PREFIX = `charter-shell:${scope.pathname}:`;
const CACHE = PREFIX + VERSION;
const shell = new Set(SHELL.map(file => new URL(file, scope).href));

self.addEventListener('install', event => {
  // Past the HTTP cache: a shell half from the old build and half from the new would not
  // start (the page checks its scripts' integrity).
  event.waitUntil(caches.open(CACHE).then(cache => cache.addAll([...shell].map(url => new Request(url, { cache: 'reload' })))));
});

self.addEventListener('activate', event => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('message', event => {
  const message = event.data;
  if (message === 'charter-activate') self.skipWaiting();
  else if (message === 'charter-version' && event.ports[0]) event.ports[0].postMessage(VERSION);
});

self.addEventListener('fetch', event => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== scope.origin) return;
  url.search = '';
  url.hash = '';
  // Every navigation to the app (`./`, `./index.html`, with any query) is its page.
  const key = request.mode === 'navigate' && url.href === new URL('index.html', scope).href ? scope.href : url.href;
  if (!shell.has(key)) return;
  event.respondWith(fromShell(request, key));
});

async function fromShell(request, key) {
  const cached = await caches.match(key, { cacheName: CACHE });
  return isolated(cached || await fetch(request));
}

function isolated(response) {
  if (response.type !== 'basic' && response.type !== 'default') return response;
  if (response.headers.has('cross-origin-embedder-policy')) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}
