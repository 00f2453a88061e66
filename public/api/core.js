// The core of Charter's JS API: `LanguageModel` in the shape of the Prompt API, over
// Charter's worker protocol. `cargo xtask build-web` puts this text into
// `charter-api.js` (same-origin pages: its own worker) and `widget.js` (any site: the
// worker of the widget's frame, over a MessageChannel), which differ only in how they
// connect and where the default operator layer comes from.
//
// A session is a list of messages kept here; every prompt sends the whole list and the
// worker reuses what its KV cache already holds, so a clone shares the prefix already
// read. One worker serves every session, one request at a time; each session's layers
// (its operator configuration, with the system text of its initial prompts as that
// layer's instructions) are set before its request runs, under the constitution, which
// nothing here can reach.
function charterLanguageModel({ base, connect, defaultOperator }) {
  const PROTOCOL = 7;
  // Events after which a request has its answer.
  const FINAL = new Set(['stored', 'loaded', 'finished', 'configured', 'sealed', 'stored_list', 'measured',
    'parsed_operator', 'benchmarked']);
  const ERROR_NAMES = {
    network: 'NetworkError', http: 'NetworkError', sealed: 'NetworkError', integrity: 'DataError',
    quota: 'QuotaExceededError', bad_model: 'NotSupportedError', no_model: 'InvalidStateError',
    busy: 'InvalidStateError', protocol: 'InvalidStateError', prompt: 'OperationError', internal: 'OperationError',
  };
  // Charter's model catalog (models/catalog.toml), written in by the build.
  const CATALOG = /* @charter-catalog */ { models: [] };
  const DEFAULTS = { topK: 40, maxTopK: 1000, temperature: 0, maxTemperature: 2 };

  const quotaError = (message, requested, quota) =>
    Object.assign(new DOMException(message, 'QuotaExceededError'), { requested, quota });

  function workerError(error) {
    // A refused configuration is input of the wrong shape, named by the unit it touches.
    if (error.kind === 'config') return new TypeError(error.message);
    return new DOMException(error.message, ERROR_NAMES[error.kind] || 'OperationError');
  }

  // --- Input, checked and converted as the Prompt API specifies. ---

  function textOf(content, where) {
    if (typeof content === 'string') return content;
    if (content == null || typeof content !== 'object' || typeof content[Symbol.iterator] !== 'function') {
      throw new TypeError(`${where}: content must be a string or a list of { type, value } parts`);
    }
    let text = '';
    for (const part of content) {
      if (part == null || typeof part !== 'object') throw new TypeError(`${where}: a content part must be an object`);
      if (part.type === 'image' || part.type === 'audio') {
        throw new DOMException(`Charter's models read text only, not ${part.type}`, 'NotSupportedError');
      }
      if (part.type !== 'text') throw new TypeError(`${where}: a part's type must be "text", "image" or "audio"`);
      if (typeof part.value !== 'string') throw new TypeError(`${where}: a text part's value must be a string`);
      text += part.value;
    }
    return text;
  }

  // A prompt: a string (one user message) or a list of messages. Anything else is
  // turned into a string, as WebIDL does with a value that is not a sequence.
  function messagesOf(input, where) {
    if (typeof input === 'string') return [{ role: 'user', content: input }];
    if (input == null || typeof input !== 'object' || typeof input[Symbol.iterator] !== 'function') {
      return [{ role: 'user', content: String(input) }];
    }
    const out = [];
    for (const message of input) {
      if (message == null || typeof message !== 'object') throw new TypeError(`${where}: a message must be an object`);
      const { role } = message;
      if (!['system', 'user', 'assistant'].includes(role)) {
        throw new TypeError(`${where}: a message's role must be "system", "user" or "assistant", not ${JSON.stringify(role)}`);
      }
      if (message.prefix) {
        if (role !== 'assistant') throw new TypeError(`${where}: only an assistant message can be a prefix`);
        throw new DOMException('Charter writes each reply from its start: a prefix to continue is not supported', 'NotSupportedError');
      }
      out.push({ role, content: textOf(message.content, where) });
    }
    return out;
  }

  function promptMessages(input, where) {
    const messages = messagesOf(input, where);
    if (messages.some(m => m.role === 'system')) {
      throw new DOMException(`${where}: system text belongs in initialPrompts, first`, 'NotSupportedError');
    }
    return messages;
  }

  // Charter's models take and give English text only.
  function supported(options = {}) {
    const ok = list => list == null || [...list].every(e => (e.type ?? 'text') === 'text' &&
      (e.languages == null || [...e.languages].every(l => /^en(-|$)/i.test(String(l)))));
    return ok(options.expectedInputs) && ok(options.expectedOutputs);
  }

  function simd() {
    // i8x16.popcnt(i8x16.splat(0)): validates only where WebAssembly SIMD runs.
    const probe = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11];
    try { return WebAssembly.validate(new Uint8Array(probe)); } catch { return false; }
  }

  // Rejects with the signal's reason once it aborts.
  const aborted = signal => new Promise((_, reject) => {
    if (!signal) return;
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  const race = (signal, promise) => (signal ? Promise.race([promise, aborted(signal)]) : promise);

  // --- The worker: requests, one at a time, and what it holds. ---

  class Host {
    constructor() {
      this.transport = null;
      this.pending = new Map();
      this.nextId = 1;
      this.queue = Promise.resolve();
      this.forget();
      this.downloads = new Map();
    }

    // What a fresh worker holds: nothing.
    forget() {
      this.loaded = null;
      this.layers = undefined;
      this.block = null;
    }

    // Tokens of Charter's system block as it stands in the worker.
    get systemTokens() {
      return this.block?.tokens ?? 0;
    }

    start() {
      if (this.transport) return;
      this.transport = connect({
        message: text => this.receive(text),
        death: why => {
          this.transport = null;
          this.lost(why);
        },
      });
    }

    receive(text) {
      let envelope;
      try { envelope = JSON.parse(text); } catch { return; }
      if (envelope.v !== PROTOCOL) {
        this.transport?.close();
        this.transport = null;
        return this.lost(`Charter's worker speaks protocol ${envelope.v} and this page ${PROTOCOL}: they come from different builds; reload the page`);
      }
      const { id, body } = envelope;
      // Unasked: Ready, a changed backend, or (from the widget's frame) word that the
      // worker was lost and a new one started.
      if (id === 0) {
        if (body.type === 'error') this.lost(body.error.message);
        return;
      }
      const request = this.pending.get(id);
      if (!request) return;
      if (body.type === 'error') {
        this.pending.delete(id);
        return request.reject(workerError(body.error));
      }
      request.onEvent?.(body);
      if (FINAL.has(body.type)) {
        this.pending.delete(id);
        request.resolve(body);
      }
    }

    // The worker is gone: what was asked of it fails, and what it held is forgotten.
    lost(why) {
      const error = new DOMException(`Charter's worker stopped: ${why}`, 'OperationError');
      for (const request of this.pending.values()) request.reject(error);
      this.pending.clear();
      this.forget();
    }

    // Sends one request; `done` settles with its final event.
    send(body, onEvent) {
      this.start();
      const id = this.nextId++;
      const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, onEvent }));
      this.transport.post(JSON.stringify({ v: PROTOCOL, id, body }));
      return { id, done };
    }

    call(body, onEvent) {
      return this.send(body, onEvent).done;
    }

    // Runs `job` after every job queued before it, whatever became of them.
    exclusive(job) {
      const run = this.queue.then(() => job());
      this.queue = run.catch(() => {});
      return run;
    }

    // The model a `model` option names: a catalog id, or { url, name, size, sha256 };
    // by default the catalog's default model, served beside the app.
    async modelRef(option) {
      if (option != null && typeof option === 'object') {
        if (typeof option.url !== 'string') throw new TypeError('model: give a catalog id or { url }');
        const url = new URL(option.url, base).href;
        return { id: url, name: String(option.name ?? url), url, size: option.size ?? null, sha256: option.sha256 ?? null };
      }
      const models = CATALOG.models;
      const model = option == null ? models.find(m => m.default) : models.find(m => m.id === option);
      if (!model) throw new DOMException(`Charter's catalog has no model ${JSON.stringify(option)}`, 'NotSupportedError');
      const url = model.default ? new URL(`models/${model.file}`, base).href : model.url;
      return { id: model.id, name: model.name, url, size: model.size ?? null, sha256: model.sha256 ?? null };
    }

    async isStored(url) {
      const { models } = await this.call({ type: 'list_stored' });
      return models.some(m => m.url === url);
    }

    // The layers a session runs under, set when another session's are in force.
    async useLayers(layers) {
      const key = JSON.stringify(layers);
      if (this.layers === key) return;
      const { system_block } = await this.call({ type: 'configure', operator: layers.operator, user: layers.user });
      this.layers = key;
      if (system_block) this.block = system_block;
    }

    // The model a session runs on, downloaded and loaded when it is not the one loaded.
    async useModel(spec, progress) {
      const key = JSON.stringify([spec.ref.url, spec.backend, spec.contextLength]);
      if (this.loaded?.key === key) return this.loaded.model;
      if (!(await this.isStored(spec.ref.url))) {
        const onEvent = e => {
          if (e.type === 'progress' && e.phase === 'downloading' && e.total) progress?.(Math.min(e.done / e.total, 0.999));
        };
        const download = this.call({ type: 'download', model: spec.ref }, onEvent);
        this.downloads.set(spec.ref.url, download);
        try { await download; } finally { this.downloads.delete(spec.ref.url); }
      }
      const { model } = await this.call({
        type: 'load', source: { kind: 'stored', url: spec.ref.url }, context_length: spec.contextLength, backend: spec.backend,
      });
      this.loaded = { key, model };
      this.block = model.system_block;
      return model;
    }

    async measure(messages, input) {
      return this.call({ type: 'measure', messages, input });
    }
  }

  const host = new Host();

  // --- Sessions. ---

  const BACKENDS = ['auto', 'cpu', 'gpu'];

  function checkOptions(options) {
    if (options == null || typeof options !== 'object') throw new TypeError('options must be an object');
    if ((options.topK === undefined) !== (options.temperature === undefined)) {
      throw new DOMException('give both topK and temperature, or neither', 'NotSupportedError');
    }
    if (options.backend !== undefined && !BACKENDS.includes(options.backend)) {
      throw new TypeError(`backend must be one of ${BACKENDS.join(', ')}`);
    }
    for (const name of ['seed', 'maxTokens', 'contextLength', 'topK']) {
      const v = options[name];
      if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new TypeError(`${name} must be a whole number, not ${v}`);
    }
  }

  /** A reply's stats from the worker, in the API's spelling. */
  function statsOf(s = {}, memory = 0) {
    return Object.freeze({
      workerMemoryBytes: memory ?? 0,
      promptTokens: s.prompt_tokens ?? 0,
      reusedTokens: s.reused_tokens ?? 0,
      shiftedTokens: s.shifted_tokens ?? 0,
      prefillTokens: s.prefill_tokens ?? 0,
      prefillSeconds: s.prefill_seconds ?? 0,
      decodeTokens: s.decode_tokens ?? 0,
      decodeSeconds: s.decode_seconds ?? 0,
      firstTokenSeconds: s.first_token_seconds ?? 0,
    });
  }

  function samplingOf(options) {
    const temperature = options.temperature === undefined ? DEFAULTS.temperature
      : Math.min(Math.max(Number(options.temperature) || 0, 0), DEFAULTS.maxTemperature);
    const topK = options.topK === undefined ? DEFAULTS.topK : Math.min(Math.max(options.topK, 1), DEFAULTS.maxTopK);
    const s = options.sampling ?? {};
    const sampling = { temperature, top_k: topK, seed: options.seed ?? 0 };
    if (s.topP !== undefined) sampling.top_p = Number(s.topP);
    if (s.minP !== undefined) sampling.min_p = Number(s.minP);
    if (s.repetitionPenalty !== undefined) sampling.repetition_penalty = Number(s.repetitionPenalty);
    if (s.repeatLastN !== undefined) sampling.repeat_last_n = Number(s.repeatLastN);
    return { sampling, max_tokens: options.maxTokens ?? 512, raw: false, temperature, topK };
  }

  // The operator layer: the `operator` option (TOML or JSON text, or an object in the
  // same fields), else the site's own (`defaultOperator`), with the system text of the
  // initial prompts appended to its instructions.
  async function operatorOf(options, system) {
    let text = null;
    let persona = null;
    if (options.operator != null) {
      text = typeof options.operator === 'string' ? options.operator : JSON.stringify(options.operator);
    } else {
      const site = await defaultOperator();
      text = site?.text ?? null;
      persona = site?.persona ?? null;
    }
    let config = null;
    if (text != null) ({ config } = await host.call({ type: 'parse_operator', text }));
    if (persona) config = { ...(config ?? {}), persona };
    if (system) config = { ...(config ?? {}), instructions: [config?.instructions, system].filter(Boolean).join('\n\n') };
    return config;
  }

  class LanguageModel extends EventTarget {
    #spec; #options; #layers; #history; #usage = 0; #window = 0; #destroyed = false; #stop = null; #stats = null;
    #ending = new AbortController();
    #engine = '';
    #block = null;

    constructor(secret, state) {
      super();
      if (secret !== CREATE) throw new TypeError('use LanguageModel.create()');
      Object.assign(this, { oncontextoverflow: null });
      this.#spec = state.spec;
      this.#options = state.options;
      this.#layers = state.layers;
      this.#history = state.history;
      this.#usage = state.usage;
      this.#window = state.window;
      this.#engine = state.engine;
      this.#block = state.block;
    }

    static async availability(options = {}) {
      checkOptions(options);
      if (!supported(options) || !simd() || typeof Worker === 'undefined') return 'unavailable';
      const ref = await host.modelRef(options.model);
      if (host.downloads.has(ref.url)) return 'downloading';
      return (await host.isStored(ref.url)) ? 'available' : 'downloadable';
    }

    static async params() {
      const { topK, maxTopK, temperature, maxTemperature } = DEFAULTS;
      return { defaultTopK: topK, maxTopK, defaultTemperature: temperature, maxTemperature };
    }

    static async create(options = {}) {
      checkOptions(options);
      if (!supported(options)) throw new DOMException('Charter reads and writes English text only', 'NotSupportedError');
      const { signal } = options;
      if (signal?.aborted) throw signal.reason;
      if (!simd()) throw new DOMException('this browser does not run WebAssembly SIMD, which Charter needs', 'NotSupportedError');
      const initial = options.initialPrompts === undefined ? [] : messagesOf(options.initialPrompts, 'initialPrompts');
      if (initial.slice(1).some(m => m.role === 'system')) {
        throw new TypeError('initialPrompts: a system message may only come first');
      }
      const system = initial[0]?.role === 'system' ? initial[0].content : '';
      const history = initial.filter(m => m.role !== 'system');
      const monitor = new EventTarget();
      if (typeof options.monitor === 'function') options.monitor(monitor);
      const progress = loaded => monitor.dispatchEvent(new ProgressEvent('downloadprogress', { loaded, total: 1, lengthComputable: true }));
      const spec = {
        ref: await race(signal, host.modelRef(options.model)),
        backend: options.backend ?? 'auto',
        contextLength: options.contextLength ?? null,
      };
      const layers = { operator: await race(signal, operatorOf(options, system)), user: { disable: [] } };
      const job = host.exclusive(async () => {
        progress(0);
        await host.useLayers(layers);
        const model = await host.useModel(spec, progress);
        await host.useLayers(layers);
        const measured = await host.measure(history, history.length);
        if (measured.total > measured.limit) {
          throw quotaError(`the initial prompts take ${measured.total} tokens; the model's window holds ${measured.limit}`, measured.total, measured.limit);
        }
        progress(1);
        return { model, usage: host.systemTokens + measured.input, block: describeBlock(host.block) };
      });
      const { model, usage, block } = await race(signal, job);
      return new LanguageModel(CREATE, {
        spec, options, layers, history, usage, window: model.context_length, engine: model.engine, block,
      });
    }

    get contextUsage() { return this.#usage; }
    get contextWindow() { return this.#window; }
    get topK() { return samplingOf(this.#options).topK; }
    get temperature() { return samplingOf(this.#options).temperature; }
    /** Charter: why the last reply ended (`end_of_turn`, `stop_string`, `length`, `cancelled`, `context_full`). */
    get lastStopReason() { return this.#stop; }
    /**
     * Charter: the last reply's counts and timings: prompt tokens, how many were found in the
     * cache (`reusedTokens`; `shiftedTokens` of them kept by a context shift after older
     * messages left the window), how many were read, and the seconds to the first token.
     */
    get lastStats() { return this.#stats; }
    /** Charter: what runs the model (`cpu (wasm-relaxed-simd)`, `webgpu (…)`). */
    get engine() { return this.#engine; }
    /** Charter: the system block this session runs under: the constitution's units, then the operator's block. */
    get systemBlock() { return this.#block; }

    #alive(signal) {
      if (this.#destroyed) throw new DOMException('this session was destroyed', 'InvalidStateError');
      if (signal?.aborted) throw signal.reason;
    }

    // Runs a request of this session: its layers and model first, the caller's signal and
    // `destroy` both able to end it.
    async #run(signal, job) {
      this.#alive(signal);
      const ending = this.#ending.signal;
      const stop = () => { throw signal?.aborted ? signal.reason : new DOMException('this session was destroyed', 'AbortError'); };
      return host.exclusive(async () => {
        if (signal?.aborted || ending.aborted) stop();
        await host.useLayers(this.#layers);
        await host.useModel(this.#spec);
        if (signal?.aborted || ending.aborted) stop();
        return job(ending, stop);
      });
    }

    async #quota(messages, count) {
      const measured = await host.measure(messages, count);
      const room = measured.limit - host.systemTokens;
      if (measured.input > room) {
        throw quotaError(`the input takes ${measured.input} tokens; the session has room for ${room}`, measured.input, room);
      }
      return measured;
    }

    // Writes a reply to `input`; `onText` receives each piece as it streams.
    async #reply(input, options, onText) {
      const { signal } = options;
      const added = promptMessages(input, 'prompt');
      return this.#run(signal, async (ending, stop) => {
        const messages = [...this.#history, ...added];
        await this.#quota(messages, added.length);
        const generation = samplingOf({ ...this.#options, ...pick(options, ['seed']) });
        let dropped = 0;
        let text = '';
        const request = host.send({
          type: 'generate', messages, predict_user: false,
          options: { sampling: generation.sampling, max_tokens: generation.max_tokens, raw: false },
        }, event => {
          if (event.type === 'context') dropped = event.dropped_messages;
          if (event.type === 'token') { text += event.text; onText?.(event.text); }
          if (event.type === 'restarted') { text = ''; onText?.(null); }
        });
        const cancel = () => host.transport?.post(JSON.stringify({ v: PROTOCOL, id: host.nextId++, body: { type: 'cancel', target: request.id } }));
        signal?.addEventListener('abort', cancel, { once: true });
        ending.addEventListener('abort', cancel, { once: true });
        let reply;
        try {
          ({ reply } = await request.done);
        } finally {
          signal?.removeEventListener('abort', cancel);
          ending.removeEventListener('abort', cancel);
        }
        // An aborted prompt leaves the session as it was: neither it nor its reply stays.
        if (signal?.aborted || ending.aborted) stop();
        this.#stop = reply.stop_reason;
        this.#stats = statsOf(reply.stats, reply.memory_bytes);
        this.#history = [...messages.slice(dropped), { role: 'assistant', content: reply.text }];
        this.#usage = reply.context_used;
        if (dropped > 0) this.#overflowed();
        return reply.text || text;
      });
    }

    #overflowed() {
      const event = new Event('contextoverflow');
      this.dispatchEvent(event);
      if (typeof this.oncontextoverflow === 'function') this.oncontextoverflow.call(this, event);
    }

    prompt(input, options = {}) {
      return this.#reply(input, options);
    }

    promptStreaming(input, options = {}) {
      const inner = new AbortController();
      const signal = options.signal ? AbortSignal.any([options.signal, inner.signal]) : inner.signal;
      return new ReadableStream({
        start: controller => {
          this.#reply(input, { ...options, signal }, piece => {
            if (piece === null) {
              // The GPU failed and the reply started over on the CPU: what was streamed is void.
              inner.abort(new DOMException('the GPU failed while writing; ask again', 'OperationError'));
            } else if (piece) {
              controller.enqueue(piece);
            }
          }).then(() => controller.close(), e => controller.error(e));
        },
        cancel: reason => inner.abort(reason ?? new DOMException('the stream was cancelled', 'AbortError')),
      });
    }

    async append(input, options = {}) {
      const added = promptMessages(input, 'append');
      return this.#run(options.signal, async () => {
        const messages = [...this.#history, ...added];
        const measured = await this.#quota(messages, added.length);
        this.#history = messages;
        this.#usage += measured.input;
        // The oldest turns leave the window with the next reply.
        if (measured.total > measured.limit) this.#overflowed();
      });
    }

    async measureContextUsage(input, options = {}) {
      const added = promptMessages(input, 'measureContextUsage');
      return this.#run(options.signal, async () => (await host.measure([...this.#history, ...added], added.length)).input);
    }

    async clone(options = {}) {
      this.#alive(options.signal);
      return new LanguageModel(CREATE, {
        spec: this.#spec, options: this.#options, layers: this.#layers, history: [...this.#history],
        usage: this.#usage, window: this.#window, engine: this.#engine, block: this.#block,
      });
    }

    destroy() {
      this.#destroyed = true;
      this.#ending.abort(new DOMException('this session was destroyed', 'AbortError'));
    }
  }

  const CREATE = Symbol('create');

  // What a page may see of the system block: what is in it, not its text.
  function describeBlock(block) {
    if (!block) return null;
    return Object.freeze({
      tokens: block.tokens,
      budget: block.budget,
      units: Object.freeze(block.units.map(u => u.id)),
      operatorBlock: block.operator_block,
    });
  }
  const pick = (o, names) => Object.fromEntries(names.filter(n => o[n] !== undefined).map(n => [n, o[n]]));

  return LanguageModel;
}
