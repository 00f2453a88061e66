// Charter's embeddable widget: one script tag on any page adds a launcher button and a
// chat panel, with the conversation in an iframe from Charter's own origin.
//
//   <script src="https://CHARTER_HOST/widget.js" data-persona="Ada"
//           data-operator-config="/charter-operator.toml" data-position="bottom-right"
//           data-theme="auto"></script>
//
// Attributes (all optional): data-persona (the assistant's name, set in the operator
// layer), data-operator-config (the URL of an operator.toml, read by this script on the
// host page and validated inside the frame exactly as the app validates one),
// data-position (bottom-right | bottom-left), data-theme (auto | light | dark),
// data-accent (a #rgb or #rrggbb colour), data-no-egress ("off" lets the frame reach
// other sites after the model loads; on by default). `window.Charter.widget.configure(
// { operator, persona })` sets the operator layer from a script instead.
//
// `window.Charter.LanguageModel` is Charter's JS API in the shape of the Prompt API
// (types: charter-api.d.ts beside this file). Its sessions run in a worker of the frame's
// own, apart from the panel's conversation, over the MessageChannel the frame receives
// with its configuration; the frame passes on only the requests the API makes.
//
// The frame is another origin: this page's scripts cannot read its document or storage.
// When the app in it starts it asks its parent for the configuration, takes the first
// answer (with a MessageChannel port for what follows) and ignores every other message;
// the configuration is an operator layer, checked against the constitution, so nothing
// the host sends can change the constitution itself. Host CSS cannot
// reach the launcher or the panel (they live in a shadow root and carry their own
// inline styles) nor anything inside the frame.
(() => {
  const script = document.currentScript;
  if (!script || window.Charter?.widget) return;
  const data = script.dataset;
  const app = new URL('./', script.src);
  const position = data.position === 'bottom-left' ? 'left' : 'right';
  const theme = ['light', 'dark'].includes(data.theme) ? data.theme : 'auto';
  const accent = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(data.accent || '') ? data.accent : '#2f5bd3';

  const frameUrl = new URL('index.html', app);
  frameUrl.searchParams.set('embed', 'widget');
  frameUrl.searchParams.set('theme', theme);
  frameUrl.searchParams.set('accent', accent);
  if (data.noEgress !== 'off') frameUrl.searchParams.set('no-egress', '1');

  // The shadow host's own styles are inline and important, so no rule of the host page
  // can hide or move it.
  const host = document.createElement('div');
  host.setAttribute('data-charter-widget', '');
  host.setAttribute('style', [
    'all: initial', 'display: block', 'position: fixed', 'z-index: 2147483647', 'bottom: 16px',
    `${position}: 16px`, 'visibility: visible', 'opacity: 1', 'transform: none', 'filter: none', 'clip-path: none',
  ].map(d => `${d} !important`).join('; '));
  const root = host.attachShadow({ mode: 'open' });
  root.innerHTML = `
    <style>
      :host { all: initial; }
      * { box-sizing: border-box; }
      button { font: 600 15px/1 system-ui, sans-serif; cursor: pointer; border: 0; }
      button:focus-visible { outline: 3px solid ${accent}; outline-offset: 2px; }
      .launcher { display: block; width: 56px; height: 56px; border-radius: 50%; background: ${accent}; color: #fff;
        box-shadow: 0 4px 16px rgb(0 0 0 / .25); margin-${position}: auto; }
      .panel { display: none; flex-direction: column; position: absolute; bottom: 68px; ${position}: 0;
        width: min(400px, calc(100vw - 16px)); height: min(640px, calc(100vh - 100px)); border-radius: 14px; overflow: hidden;
        background: ${theme === 'dark' ? '#161618' : '#fbfbfa'}; box-shadow: 0 8px 32px rgb(0 0 0 / .3); }
      .panel.open { display: flex; }
      .bar { display: flex; justify-content: space-between; align-items: center; padding: 6px 8px 6px 12px;
        background: ${accent}; color: #fff; font: 600 14px/1.2 system-ui, sans-serif; }
      .close { background: transparent; color: #fff; width: 32px; height: 32px; border-radius: 6px; font-size: 20px; }
      iframe { display: block; flex: 1; width: 100%; border: 0; opacity: 1; visibility: visible; }
      @media (max-width: 480px) {
        .panel { position: fixed; ${position}: 8px; bottom: 80px; width: calc(100vw - 16px); height: calc(100vh - 96px); }
      }
    </style>
    <div class="panel" id="panel" role="dialog" aria-label="Charter" data-testid="charter-widget-panel">
      <div class="bar"><span>Charter</span>
        <button class="close" type="button" aria-label="Close Charter" data-testid="charter-widget-close">×</button></div>
    </div>
    <button class="launcher" type="button" aria-label="Open Charter" aria-expanded="false" aria-controls="panel"
      data-testid="charter-widget-launcher">AI</button>`;
  const panel = root.getElementById('panel');
  const launcher = root.querySelector('.launcher');
  const close = root.querySelector('.close');
  let frame = null;

  // Set by `Charter.widget.configure`; takes the place of the tag's attributes.
  let configured = null;

  async function operatorText() {
    if (configured) {
      const { operator } = configured;
      return operator == null ? null : typeof operator === 'string' ? operator : JSON.stringify(operator);
    }
    if (!data.operatorConfig) return null;
    const response = await fetch(new URL(data.operatorConfig, location.href), { cache: 'no-cache' });
    if (!response.ok) throw new Error(`the operator configuration ${data.operatorConfig} answered ${response.status}`);
    return response.text();
  }

  const persona = () => (configured ? configured.persona : data.persona) || null;

  function createFrame() {
    frame = document.createElement('iframe');
    frame.title = 'Charter';
    frame.allow = 'clipboard-write';
    frame.src = frameUrl.href;
    panel.append(frame);
  }

  // Each time the app in the frame starts (a reload inside it included) it asks for its
  // configuration; it takes the first answer and ignores every later message.
  window.addEventListener('message', async event => {
    if (!frame || event.source !== frame.contentWindow || event.origin !== app.origin) return;
    if (event.data?.type !== 'charter-widget-ready') return;
    let operator = null;
    let problem = null;
    let unreachable = false;
    try {
      operator = await operatorText();
    } catch (e) {
      problem = String(e.message || e);
      // A fetch that rejects is the network, not the file: the frame keeps the last one.
      unreachable = e instanceof TypeError;
    }
    const channel = new MessageChannel();
    api.bind(channel.port1);
    frame.contentWindow.postMessage({ type: 'charter-widget-hello', persona: persona(), operator, problem, unreachable },
      app.origin, [channel.port2]);
  });

  // The API's end of the channel: requests wait for the frame's first hello; a frame that
  // starts again (a reload inside it) gets a new channel, and what the old one carried fails.
  const api = {
    port: null,
    handlers: null,
    queued: [],
    bind(port) {
      const had = this.port;
      this.port = port;
      port.onmessage = e => typeof e.data === 'string' && this.handlers?.message(e.data);
      if (had) {
        had.close();
        this.handlers?.death('the Charter frame started again');
        this.handlers = null;
      }
      for (const text of this.queued.splice(0)) port.postMessage(text);
    },
    connect(handlers) {
      this.handlers = handlers;
      if (!frame) createFrame();
      return {
        post: text => (api.port ? api.port.postMessage(text) : api.queued.push(text)),
        close: () => {},
      };
    },
  };

  // @charter-api-core

  const LanguageModel = charterLanguageModel({
    base: app,
    connect: handlers => api.connect(handlers),
    defaultOperator: async () => ({ text: await operatorText(), persona: persona() }),
  });

  function open() {
    if (!frame) createFrame();
    panel.classList.add('open');
    launcher.setAttribute('aria-expanded', 'true');
    launcher.setAttribute('aria-label', 'Close Charter');
    frame.focus();
  }

  function hide() {
    panel.classList.remove('open');
    launcher.setAttribute('aria-expanded', 'false');
    launcher.setAttribute('aria-label', 'Open Charter');
    launcher.focus();
  }

  // The operator layer from a script instead of the tag: `{ operator, persona }`, where
  // `operator` is an operator.toml's text, JSON, or its fields. The frame takes one
  // configuration when it starts, so a running frame starts again to take this one; the
  // conversation in the panel is kept in the frame's storage and comes back.
  function configure({ operator = null, persona: name = null } = {}) {
    if (operator != null && typeof operator !== 'string' && typeof operator !== 'object') {
      throw new TypeError('operator must be TOML or JSON text, or an object of its fields');
    }
    configured = { operator, persona: name == null ? null : String(name) };
    if (frame) {
      frame.remove();
      frame = null;
      if (panel.classList.contains('open')) createFrame();
    }
  }

  launcher.addEventListener('click', () => (panel.classList.contains('open') ? hide() : open()));
  close.addEventListener('click', hide);
  root.addEventListener('keydown', e => { if (e.key === 'Escape' && panel.classList.contains('open')) hide(); });
  document.body.append(host);
  window.Charter = Object.assign(window.Charter || {}, { widget: { open, close: hide, configure }, LanguageModel });
})();
