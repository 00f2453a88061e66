//! The one message protocol between Charter's UI and its inference worker.
//!
//! The UI sends [`Request`]s, each in an [`Envelope`] with an id; the worker answers
//! with [`Event`]s carrying the id of the request they belong to (id 0 for events no
//! request asked for, such as the first [`Event::Ready`]). Both sides encode envelopes
//! as JSON text with [`encode`] and read them with [`decode`], which refuses an envelope
//! of another [`PROTOCOL_VERSION`]: a UI and a worker from different builds (a stale
//! cached worker script) fail loudly instead of misreading each other.
//!
//! This crate is data only: no browser, no model. The worker glue lives in
//! `charter-worker`, the UI in `charter-web`.

#![deny(missing_docs)]

use charter_core::bench::{BenchPlan, BenchResult};
use charter_core::constitution::{OperatorConfig, UserSettings};
use charter_core::{GenerateOptions, GenerationStats, Message, StopReason};
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 7;

/// A message with its request id and the protocol version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub v: u32,
    /// The request this belongs to.
    pub id: u64,
    /// The message.
    pub body: T,
}

impl<T> Envelope<T> {
    /// An envelope of this build's version.
    pub fn new(id: u64, body: T) -> Self {
        Envelope { v: PROTOCOL_VERSION, id, body }
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The text is not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The sender speaks another version.
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}: the page and its worker come from different builds; reload the page")]
    Version {
        /// The sender's version.
        got: u32,
    },
}

/// Encodes an envelope as JSON text.
pub fn encode<T: Serialize>(envelope: &Envelope<T>) -> String {
    // Serializing these types cannot fail: every map key is a string.
    serde_json::to_string(envelope).unwrap_or_else(|e| format!("{{\"v\":0,\"error\":\"{e}\"}}"))
}

/// Decodes JSON text into an envelope of this version.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<Envelope<T>, ProtocolError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let version: VersionOnly = serde_json::from_str(text)?;
    if version.v != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: version.v });
    }
    Ok(serde_json::from_str(text)?)
}

/// What the UI asks of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Downloads a model into storage, verified, resuming after dropped connections.
    /// Answered by [`Event::Progress`]es, then [`Event::Stored`].
    Download {
        /// What to fetch.
        model: ModelRef,
    },
    /// Loads a model into memory. Answered by [`Event::Progress`], then [`Event::Loaded`].
    /// For [`ModelSource::File`] the file itself travels beside the envelope.
    Load {
        /// Where the bytes are.
        source: ModelSource,
        /// KV positions; the engine's default when absent.
        context_length: Option<usize>,
        /// Which backend the user wants; the worker's choice when `Auto`.
        #[serde(default)]
        backend: BackendPreference,
    },
    /// Writes the assistant's next message. Answered by [`Event::Context`], a stream of
    /// [`Event::Token`]s and [`Event::Finished`].
    Generate {
        /// The conversation so far, ending with the user's message (or, for
        /// `predict_user`, with the assistant's).
        messages: Vec<Message>,
        /// Sampling and limits.
        options: GenerateOptions,
        /// Raw-transcript mode: continue the transcript past the assistant's turn to see
        /// what the model expects the user to say. Shown apart, never fed back.
        predict_user: bool,
    },
    /// Ends the generation started by request `target` (as if it stopped by itself,
    /// with stop reason `cancelled`).
    Cancel {
        /// The id of the [`Request::Generate`].
        target: u64,
    },
    /// Sets the layers under Charter's constitution: the site operator's configuration
    /// and the user's settings. Both are checked against the constitution (and, with a
    /// model loaded, composed with its tokenizer) before they replace the ones in force;
    /// a refused configuration leaves the old one in place. Answered by
    /// [`Event::Configured`] (after [`Event::Progress`] while the new block is read into
    /// the model) or an [`ErrorKind::Config`] error naming what was refused.
    Configure {
        /// The operator's configuration; `None` where no one has set one.
        operator: Option<OperatorConfig>,
        /// The user's settings.
        user: UserSettings,
    },
    /// Times the loaded model on this device (`charter_core::bench`): fresh prefills,
    /// greedy decoding and a second turn. `plan` gives the tokens (for comparisons with
    /// other engines); without one the worker uses a text of its own. Answered by
    /// [`Event::Benchmarked`]; afterwards the model is back in its state after Charter's
    /// system block.
    Benchmark {
        /// The tokens and lengths to time.
        plan: Option<BenchPlan>,
    },
    /// Lists stored models. Answered by [`Event::StoredList`].
    ListStored,
    /// From now on, reach nothing beyond the worker's own origin: a download from another
    /// one is refused with an [`ErrorKind::Sealed`] error. Sent when the page keeps off
    /// the network once a model is loaded; it lasts as long as the worker. Answered by
    /// [`Event::Sealed`].
    Seal,
    /// Counts the tokens a conversation takes in the loaded model's window, without
    /// running the model: the whole prompt as [`Request::Generate`] would build it (before
    /// any old message is left out), and what its last `input` messages add. Answered by
    /// [`Event::Measured`].
    Measure {
        /// The conversation, ending with the input being measured.
        messages: Vec<Message>,
        /// How many of the last messages are the input.
        input: usize,
    },
    /// Reads an operator configuration from its TOML text and checks it against the
    /// constitution, as the app does with a deployed `operator.toml`. Answered by
    /// [`Event::ParsedOperator`] or an [`ErrorKind::Config`] error naming what was refused.
    ParseOperator {
        /// The file's text.
        text: String,
    },
    /// Deletes a stored model. Answered by [`Event::StoredList`].
    Delete {
        /// The stored model's key.
        url: String,
    },
}

/// A model to download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Catalog id.
    pub id: String,
    /// Name to show.
    pub name: String,
    /// Where to fetch it; also its key in storage.
    pub url: String,
    /// Expected size in bytes, when known.
    pub size: Option<u64>,
    /// Expected lowercase hex SHA-256, when known.
    pub sha256: Option<String>,
}

/// Where a model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A model in storage, by its key.
    Stored {
        /// The key (its download URL).
        url: String,
    },
    /// A file the user picked; it is read in the worker and never uploaded.
    File {
        /// Its name.
        name: String,
    },
}

/// What the worker tells the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker is up; sent once, unasked, with id 0.
    Ready {
        /// Which backend runs and why.
        backend: BackendReport,
    },
    /// The backend changed since [`Event::Ready`] (the GPU gave way to the CPU at a
    /// load); sent unasked, with id 0.
    Backend {
        /// Which backend runs now and why.
        backend: BackendReport,
    },
    /// Progress of a download or a load.
    Progress {
        /// What is in progress.
        phase: Phase,
        /// Bytes done.
        done: u64,
        /// Bytes in all, when known.
        total: Option<u64>,
    },
    /// A download finished, verified and stored.
    Stored {
        /// The stored model.
        model: StoredModel,
    },
    /// A model is loaded and ready to chat.
    Loaded {
        /// What it is.
        model: LoadedModel,
    },
    /// The prompt of a generation, token by token, as the model sees it.
    Context {
        /// The tokens.
        tokens: Vec<ContextToken>,
        /// How many of the oldest messages were left out to fit the window.
        #[serde(default)]
        dropped_messages: usize,
    },
    /// Streamed reply text.
    Token {
        /// Text safe to show (never a held-back prefix of a stop string).
        text: String,
    },
    /// The device running the model failed during a request (the GPU was lost): the
    /// model now runs on the CPU. A reply in progress starts over there, from the same
    /// prompt, and text streamed before this event is void; a load, a new system block
    /// or a speed test goes on there. The new backend comes as [`Event::Backend`]
    /// before this event, and the request's own events go on under the same id.
    Restarted {
        /// Why, in a sentence for the user.
        reason: String,
        /// The model as it runs now.
        model: LoadedModel,
    },
    /// A generation ended.
    Finished {
        /// How.
        reply: FinishedReply,
    },
    /// A [`Request::Benchmark`]'s figures.
    Benchmarked {
        /// The figures.
        result: BenchResult,
        /// What ran the model (`"cpu (wasm-relaxed-simd)"`).
        engine: String,
    },
    /// A [`Request::Configure`] took effect.
    Configured {
        /// The loaded model's new system block; `None` when no model is loaded yet (the
        /// configuration then applies from the next load).
        system_block: Option<SystemBlock>,
    },
    /// A [`Request::Seal`] took effect: the worker fetches from its own origin only.
    Sealed {
        /// That origin.
        origin: String,
    },
    /// A [`Request::Measure`]'s counts.
    Measured {
        /// Tokens of the whole prompt: Charter's system block, every message, and the
        /// opening of the assistant's turn.
        total: usize,
        /// Tokens the input messages add to the conversation before them.
        input: usize,
        /// The most tokens a prompt may take and leave the room a reply needs; a longer
        /// conversation loses its oldest messages.
        limit: usize,
    },
    /// A [`Request::ParseOperator`]'s configuration, checked.
    ParsedOperator {
        /// The configuration.
        config: OperatorConfig,
    },
    /// The stored models.
    StoredList {
        /// One per model.
        models: Vec<StoredModel>,
    },
    /// A request failed; the worker goes on.
    Error {
        /// What went wrong.
        error: WorkerError,
    },
}

/// What is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Fetching over the network.
    Downloading,
    /// Checking size and SHA-256.
    Verifying,
    /// Writing to storage.
    Storing,
    /// Reading from storage or a local file.
    Reading,
    /// Compiling the GPU's kernels for the model's weight formats and checking their
    /// products against the CPU's, before the weights go onto the GPU.
    Compiling,
    /// Building the model in memory.
    Loading,
    /// Running Charter's system block through the model once, so every conversation
    /// starts from its cached state.
    Preparing,
}

/// The compute backends Charter knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// WebAssembly with 128-bit SIMD on the CPU.
    WasmSimd,
    /// WebGPU compute shaders.
    WebGpu,
}

/// The backend a user asks for in Settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendPreference {
    /// The GPU where the browser has a hardware adapter that opens, else the CPU.
    #[default]
    Auto,
    /// The CPU kernels, whatever the browser offers.
    Cpu,
    /// The GPU wherever an adapter opens, a software one included.
    Gpu,
}

/// Which backend runs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendReport {
    /// The backend in use.
    pub chosen: BackendKind,
    /// Whether the browser offers a WebGPU adapter.
    pub webgpu_adapter: bool,
    /// The adapter's description, when there is one.
    pub webgpu_description: Option<String>,
    /// The CPU kernels this worker build runs (`wasm-relaxed-simd` or `wasm-simd128`).
    pub kernels: String,
    /// One sentence for the user on why `chosen` was chosen.
    pub reason: String,
    /// Threads the CPU kernels run on (1 in the single-thread build).
    #[serde(default = "one")]
    pub threads: u32,
    /// Why that many, for the user ("2 threads (…)", "one thread: the page is not
    /// cross-origin isolated …").
    #[serde(default)]
    pub threads_reason: String,
}

fn one() -> u32 {
    1
}

/// A model in storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredModel {
    /// Its key (the URL it came from).
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// Its SHA-256, when it was verified against one.
    pub sha256: Option<String>,
}

/// A loaded model, as the UI needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    /// Name to show.
    pub name: String,
    /// `general.architecture`.
    pub architecture: String,
    /// KV positions.
    pub context_length: usize,
    /// Why the window is that long, in a sentence (`charter_core::window`).
    #[serde(default)]
    pub context_reason: String,
    /// Whether the chat template is the file's own or Charter's built-in one.
    pub template_source: String,
    /// Tokens that end the assistant's turn.
    pub stop_tokens: Vec<TokenText>,
    /// Control tokens masked out of every reply.
    pub masked_tokens: Vec<TokenText>,
    /// Stop strings (turn markers written as text).
    pub stop_strings: Vec<String>,
    /// Seconds the load took.
    pub load_seconds: f64,
    /// Charter's system block for this model, composed from the constitution.
    pub system_block: Option<SystemBlock>,
    /// What runs the model (`"cpu (wasm-relaxed-simd)"`).
    pub engine: String,
    /// The worker's WebAssembly memory after the load, in bytes (the model file, the
    /// KV cache and the working buffers).
    pub memory_bytes: u64,
}

/// The system block the worker puts in front of every conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemBlock {
    /// Its tokens.
    pub tokens: usize,
    /// The budget it was composed for.
    pub budget: usize,
    /// The units included, with their forms and tokens.
    pub units: Vec<charter_core::constitution::ComposedUnit>,
    /// Whether the operator's block follows the units.
    pub operator_block: bool,
    /// Whether the model's state after the block was restored from this browser's
    /// storage rather than computed by running the block through the model.
    #[serde(default)]
    pub restored: bool,
}

/// A token id with its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenText {
    /// The id.
    pub id: u32,
    /// Its text (lossy for byte tokens).
    pub text: String,
}

/// Who put a token into the context window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The chat template's own text: turn markers, role names.
    Template,
    /// A system message (Charter's constitution, the operator).
    System,
    /// The user.
    User,
    /// The assistant.
    Assistant,
}

/// One token of the context window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextToken {
    /// Its id.
    pub id: u32,
    /// Its text.
    pub text: String,
    /// Who wrote it.
    pub origin: Origin,
    /// Whether it is a control token.
    pub control: bool,
    /// For a token of Charter's system block, the constitution unit that wrote it (or
    /// `operator` for the operator's block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedReply {
    /// The whole reply text, as streamed.
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// The token that ended it, when one did.
    pub stop_token: Option<TokenText>,
    /// The stop string that ended it, when one did.
    pub stop_string: Option<String>,
    /// The generated tokens (the stop token included), for the under-the-hood view.
    pub tokens: Vec<ContextToken>,
    /// KV positions in use after the reply.
    pub context_used: usize,
    /// Timings.
    pub stats: GenerationStats,
    /// The worker's WebAssembly memory after the reply, in bytes (0 where unknown): it
    /// grows to what the longest conversation needs and then stays.
    #[serde(default)]
    pub memory_bytes: u64,
}

/// The kinds of failure, so the UI can word them and decide what to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The network failed and retries did not help.
    Network,
    /// The server answered with an error status.
    Http,
    /// The bytes do not match the expected size or SHA-256.
    Integrity,
    /// Storage is full or refused.
    Quota,
    /// The file is not a model Charter can run.
    BadModel,
    /// No model is loaded.
    NoModel,
    /// The worker is busy with another generation.
    Busy,
    /// The conversation does not fit or cannot be rendered.
    Prompt,
    /// An operator configuration or user settings were refused.
    Config,
    /// A message could not be read.
    Protocol,
    /// The worker is sealed ([`Request::Seal`]) and the request needs another origin.
    Sealed,
    /// Anything else.
    Internal,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// A sentence for the user.
    pub message: String,
}

impl WorkerError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WorkerError { kind, message: message.into() }
    }
}
