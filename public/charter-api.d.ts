// Types of Charter's JS API: `LanguageModel` from `charter-api.js` (pages of Charter's
// own origin) and `window.Charter.LanguageModel` (pages that embed the widget). The shape
// is the Prompt API's; what Charter adds is marked "Charter".

export type Availability = 'unavailable' | 'downloadable' | 'downloading' | 'available';

export type LanguageModelMessageRole = 'system' | 'user' | 'assistant';

/** Charter's models read text; `image` and `audio` parts are refused with `NotSupportedError`. */
export interface LanguageModelMessageContent {
  type: 'text' | 'image' | 'audio';
  value: string;
}

export interface LanguageModelMessage {
  role: LanguageModelMessageRole;
  content: string | LanguageModelMessageContent[];
  /** Refused with `NotSupportedError`: Charter writes each reply from its start. */
  prefix?: boolean;
}

/** A string is one user message. */
export type LanguageModelPrompt = string | LanguageModelMessage[];

export interface LanguageModelExpected {
  type: 'text' | 'image' | 'audio';
  /** Charter's models read and write English (`en`, `en-GB`, …). */
  languages?: string[];
}

/** The operator layer, in the fields of an `operator.toml`. */
export interface CharterOperatorConfig {
  persona?: string;
  scope?: string;
  disable?: string[];
  users_may_adjust?: string[];
  instructions?: string;
}

/** Charter: sampling beyond the Prompt API's `topK` and `temperature`. */
export interface CharterSampling {
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  repeatLastN?: number;
}

export interface CreateMonitor extends EventTarget {
  addEventListener(type: 'downloadprogress', listener: (event: ProgressEvent) => void): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void;
}

export interface LanguageModelCreateCoreOptions {
  /** With `temperature`, or neither (`NotSupportedError` otherwise). Default 40. */
  topK?: number;
  /** 0 picks the most likely token (Charter's default, so replies repeat run to run). */
  temperature?: number;
  expectedInputs?: LanguageModelExpected[];
  expectedOutputs?: LanguageModelExpected[];
  /** Charter: a catalog id, or a GGUF by address; by default the catalog's default model. */
  model?: string | { url: string; name?: string; size?: number; sha256?: string };
}

export interface LanguageModelCreateOptions extends LanguageModelCreateCoreOptions {
  signal?: AbortSignal;
  /** Receives the create monitor: `downloadprogress` events with `loaded` from 0 to 1. */
  monitor?: (monitor: CreateMonitor) => void;
  /** A leading system message goes into the operator layer's instructions, under Charter's constitution. */
  initialPrompts?: LanguageModelMessage[];
  /** Charter: the seed of the sampler; the same seed and settings give the same reply on the same backend. */
  seed?: number;
  /** Charter: more sampling settings. */
  sampling?: CharterSampling;
  /** Charter: the most tokens a reply may take (default 512). */
  maxTokens?: number;
  /** Charter: the operator layer (TOML or JSON text, or its fields); by default the site's own. */
  operator?: string | CharterOperatorConfig;
  /** Charter: where the model runs: the GPU where there is a hardware one (`auto`), or as asked. */
  backend?: 'auto' | 'cpu' | 'gpu';
  /** Charter: the window in tokens; by default the model's own, up to Charter's limit. */
  contextLength?: number;
}

export interface LanguageModelPromptOptions {
  signal?: AbortSignal;
  /** Charter: this reply's seed. */
  seed?: number;
}

export interface LanguageModelAppendOptions {
  signal?: AbortSignal;
}

export interface LanguageModelParams {
  readonly defaultTopK: number;
  readonly maxTopK: number;
  readonly defaultTemperature: number;
  readonly maxTemperature: number;
}

/** Charter: why a reply ended. */
export type StopReason = 'end_of_turn' | 'stop_string' | 'length' | 'cancelled' | 'context_full';

export declare class LanguageModel extends EventTarget {
  private constructor();
  static availability(options?: LanguageModelCreateCoreOptions): Promise<Availability>;
  static create(options?: LanguageModelCreateOptions): Promise<LanguageModel>;
  static params(): Promise<LanguageModelParams>;

  /** Rejects with the signal's reason when aborted; the input and its reply then leave the session. */
  prompt(input: LanguageModelPrompt, options?: LanguageModelPromptOptions): Promise<string>;
  /** A stream of text pieces, each new since the one before. */
  promptStreaming(input: LanguageModelPrompt, options?: LanguageModelPromptOptions): ReadableStream<string>;
  append(input: LanguageModelPrompt, options?: LanguageModelAppendOptions): Promise<void>;
  /** The tokens `input` would add to this session. */
  measureContextUsage(input: LanguageModelPrompt, options?: LanguageModelPromptOptions): Promise<number>;

  /** Tokens of the window in use: Charter's system block, the conversation, the last reply. */
  readonly contextUsage: number;
  readonly contextWindow: number;
  oncontextoverflow: ((this: LanguageModel, event: Event) => void) | null;
  readonly topK: number;
  readonly temperature: number;
  /** Charter: why the last reply ended; null before the first. */
  readonly lastStopReason: StopReason | null;
  /**
   * Charter: the last reply's counts and timings; null before the first. `reusedTokens` of
   * the prompt were found in the model's cache, `shiftedTokens` of them kept by a context
   * shift (older messages left the window and the rest moved down instead of being read again).
   */
  readonly lastStats: {
    promptTokens: number; reusedTokens: number; shiftedTokens: number; prefillTokens: number;
    prefillSeconds: number; decodeTokens: number; decodeSeconds: number; firstTokenSeconds: number;
    /** The worker's WebAssembly memory after the reply. */
    workerMemoryBytes: number;
  } | null;
  /** Charter: what runs the model, as `cpu (wasm-relaxed-simd)`. */
  readonly engine: string;
  /** Charter: the system block the session runs under: the constitution's units in order, then the operator's block. */
  readonly systemBlock: { tokens: number; budget: number; units: readonly string[]; operatorBlock: boolean } | null;

  /** An independent session with this one's conversation (the prefix already read is reused). */
  clone(options?: { signal?: AbortSignal }): Promise<LanguageModel>;
  /** Ends the session: a reply in progress rejects with `AbortError`, later calls with `InvalidStateError`. */
  destroy(): void;
}

declare global {
  interface Window {
    /** Present on a page that embeds Charter's widget. */
    Charter?: {
      widget: { open(): void; close(): void };
      LanguageModel: typeof LanguageModel;
    };
  }
}
