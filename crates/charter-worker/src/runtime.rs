//! The worker's message loop: reads requests, runs them, posts events.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use charter_core::GenerateHooks;
use charter_protocol::{
    decode, encode, BackendPreference, BackendReport, Envelope, ErrorKind, Event, ModelRef, ModelSource, Phase, Request, WorkerError,
};
use js_sys::Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Blob, MessageEvent};

use crate::engine::{Engine, Layers};
use crate::js::{now, scope, yield_now};
use crate::{backend, fetch, state_store, storage};

/// Everything the worker remembers between messages.
#[derive(Default)]
struct State {
    /// The loaded model; taken out while a generation runs.
    engine: RefCell<Option<Engine>>,
    /// The id of the running generation.
    generating: Cell<Option<u64>>,
    /// The id a cancel named.
    cancelled: Cell<Option<u64>>,
    /// Whether a load (or a new system block's prefill) is under way.
    loading: Cell<bool>,
    /// The operator's and the user's layers in force.
    layers: RefCell<Layers>,
    /// What the loaded model's saved states are filed under (stored models only).
    state_model: RefCell<Option<state_store::ModelKey>>,
    /// The backend chosen at start, and why.
    backend: RefCell<Option<BackendReport>>,
    /// The backend the page was last told of.
    shown_backend: RefCell<Option<BackendReport>>,
    /// Where the loaded model's bytes can be read again, and the context it was loaded
    /// with: the GPU keeps no copy, and a lost GPU hands the model back to the CPU.
    reload: RefCell<Option<(Reload, Option<usize>)>>,
    /// The CPU kernels' threads, started once with the worker.
    threads: crate::threads::Threads,
}

/// Where a loaded model's bytes come from.
#[derive(Clone)]
enum Reload {
    /// A model in storage.
    Stored(String),
    /// A file the user picked (the browser keeps it on disk; this is a handle).
    File(String, Blob),
}

/// Why a generation stopped short.
enum Failure {
    /// The GPU running the model failed (lost, or its work came to nothing).
    Device(String),
    /// Anything else: the request fails with this.
    Worker(WorkerError),
}

impl From<WorkerError> for Failure {
    fn from(e: WorkerError) -> Failure {
        Failure::Worker(e)
    }
}

fn post(id: u64, event: Event) {
    let _ = scope().post_message(&JsValue::from_str(&encode(&Envelope::new(id, event))));
}

fn post_error(id: u64, error: WorkerError) {
    post(id, Event::Error { error });
}

/// Installs the message handler and announces the worker.
pub fn start() {
    console_error_panic_hook::set_once();
    let state = Rc::new(State { threads: crate::threads::start(), ..State::default() });
    let handler_state = state.clone();
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
        let (text, attachment) = match message.data().dyn_into::<Array>() {
            Ok(parts) => (parts.get(0).as_string(), Some(parts.get(1))),
            Err(data) => (data.as_string(), None),
        };
        let envelope = match text.as_deref().map(decode::<Request>) {
            Some(Ok(envelope)) => envelope,
            Some(Err(e)) => return post_error(0, WorkerError::new(ErrorKind::Protocol, e.to_string())),
            None => return post_error(0, WorkerError::new(ErrorKind::Protocol, "a message that is not protocol text")),
        };
        let state = handler_state.clone();
        wasm_bindgen_futures::spawn_local(handle(state, envelope.id, envelope.body, attachment));
    });
    scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    handler.forget();
    wasm_bindgen_futures::spawn_local(async move {
        let report = backend::detect(&state.threads).await;
        state.backend.replace(Some(report.clone()));
        state.shown_backend.replace(Some(report.clone()));
        post(0, Event::Ready { backend: report });
    });
}

async fn handle(state: Rc<State>, id: u64, request: Request, attachment: Option<JsValue>) {
    let result = match request {
        Request::Cancel { target } => {
            if state.generating.get() == Some(target) {
                state.cancelled.set(Some(target));
            }
            Ok(())
        }
        Request::Download { model } => download(id, &model).await,
        Request::Load { source, context_length, backend } => load(&state, id, source, context_length, backend, attachment).await,
        Request::Generate { messages, options, predict_user } => {
            generate(&state, id, &messages, &options, predict_user).await
        }
        Request::Configure { operator, user } => configure(&state, id, Layers { operator, user }).await,
        Request::Benchmark { plan } => benchmark(&state, id, plan).await,
        Request::ListStored => storage::list().await.map(|models| post(id, Event::StoredList { models })),
        Request::Seal => {
            post(id, Event::Sealed { origin: fetch::seal() });
            Ok(())
        }
        Request::Measure { messages, input } => measure(&state, id, &messages, input),
        Request::ParseOperator { text } => parse_operator(id, &text),
        Request::Delete { url } => async {
            storage::delete(&url).await?;
            state_store::delete_for(&url).await;
            post(id, Event::StoredList { models: storage::list().await? });
            Ok(())
        }
        .await,
    };
    if let Err(error) = result {
        post_error(id, error);
    }
}

fn measure(state: &State, id: u64, messages: &[charter_core::Message], input: usize) -> Result<(), WorkerError> {
    // A running reply has the engine out; counting waits for no one, so it says so.
    let engine = state.engine.borrow();
    let Some(engine) = engine.as_ref() else {
        let why = if state.generating.get().is_some() { "a reply is being written" } else { "no model is loaded yet" };
        return Err(WorkerError::new(if state.generating.get().is_some() { ErrorKind::Busy } else { ErrorKind::NoModel }, why));
    };
    let (total, input, limit) = engine.measure(messages, input)?;
    post(id, Event::Measured { total, input, limit });
    Ok(())
}

fn parse_operator(id: u64, text: &str) -> Result<(), WorkerError> {
    let constitution = charter_core::constitution::Constitution::builtin()
        .map_err(|e| WorkerError::new(ErrorKind::Internal, format!("Charter's constitution: {e}")))?;
    let config = charter_core::constitution::OperatorConfig::parse(text, &constitution)
        .map_err(|e| WorkerError::new(ErrorKind::Config, e.to_string()))?;
    post(id, Event::ParsedOperator { config });
    Ok(())
}

async fn download(id: u64, model: &ModelRef) -> Result<(), WorkerError> {
    fetch::check_sealed(&model.url)?;
    if let (Some(size), Some(free)) = (model.size, storage::free_bytes().await) {
        if (size as f64) > free {
            return Err(WorkerError::new(
                ErrorKind::Quota,
                format!(
                    "{} needs {} MB but the browser allows this site only {} MB more; free space or delete a stored model",
                    model.name,
                    size / 1_000_000,
                    (free / 1e6) as u64
                ),
            ));
        }
    }
    let (bytes, sha256) = fetch::download(model, |done, total| {
        post(id, Event::Progress { phase: Phase::Downloading, done, total });
    })
    .await?;
    post(id, Event::Progress { phase: Phase::Storing, done: bytes.len() as u64, total: Some(bytes.len() as u64) });
    let stored = storage::put(&model.url, &bytes, &sha256).await?;
    post(id, Event::Stored { model: stored });
    Ok(())
}

async fn load(
    state: &State,
    id: u64,
    source: ModelSource,
    context_length: Option<usize>,
    backend: BackendPreference,
    attachment: Option<JsValue>,
) -> Result<(), WorkerError> {
    if state.generating.get().is_some() || state.loading.get() {
        return Err(WorkerError::new(ErrorKind::Busy, "the worker is busy; stop the reply first"));
    }
    state.loading.set(true);
    let result = load_inner(state, id, source, context_length, backend, attachment).await;
    state.loading.set(false);
    result
}

async fn load_inner(
    state: &State,
    id: u64,
    source: ModelSource,
    context_length: Option<usize>,
    preference: BackendPreference,
    attachment: Option<JsValue>,
) -> Result<(), WorkerError> {
    post(id, Event::Progress { phase: Phase::Reading, done: 0, total: None });
    let reload = match &source {
        ModelSource::Stored { url } => Reload::Stored(url.clone()),
        ModelSource::File { name } => Reload::File(
            name.clone(),
            attachment
                .and_then(|a| a.dyn_into().ok())
                .ok_or_else(|| WorkerError::new(ErrorKind::Protocol, format!("the file {name} did not reach the worker")))?,
        ),
    };
    let bytes = read(&reload).await?;
    post(id, Event::Progress { phase: Phase::Loading, done: bytes.len() as u64, total: Some(bytes.len() as u64) });
    // Let the progress event go out before the long synchronous build.
    yield_now().await;
    let started = now();
    // Free the previous model first: two models at once may not fit in a tab.
    state.engine.replace(None);
    let layers = state.layers.borrow().clone();
    // Only a stored model has a name that pins its bytes; a picked file prefills.
    let state_model = match &source {
        ModelSource::Stored { url } => Some((url.clone(), bytes.len())),
        ModelSource::File { .. } => None,
    };
    // On the CPU the engine keeps the bytes (its kernels read the weights where they lie);
    // on the GPU they are uploaded and released.
    let detected = state.backend.borrow().clone();
    let Some(detected) = detected else {
        return Err(WorkerError::new(ErrorKind::Busy, "the worker is still looking for a GPU; try again in a moment"));
    };
    let (mut report, want_gpu) = backend::for_preference(&detected, preference);
    let gpu = if want_gpu {
        match charter_gpu::Gpu::new(charter_gpu::GpuOptions::default()).await {
            Ok(gpu) => Some(gpu),
            Err(e) => {
                backend::fall_back(&mut report, &format!("the GPU did not open ({e})"));
                None
            }
        }
    } else {
        None
    };
    if gpu.is_some() {
        // The device check compiles every kernel the model's formats need, before the
        // first token can wait on one.
        post(id, Event::Progress { phase: Phase::Compiling, done: 0, total: None });
        yield_now().await;
    }
    let (mut engine, fell_back) = Engine::load(bytes, context_length, &layers, gpu, state.threads.pool.clone(), crate::js::cache_budget_bytes()).await?;
    if let Some(why) = fell_back {
        backend::fall_back(&mut report, &why);
    }
    // Where the backend is shown, say what runs this model.
    if state.shown_backend.borrow().as_ref() != Some(&report) {
        state.shown_backend.replace(Some(report.clone()));
        post(0, Event::Backend { backend: report });
    }
    state.state_model.replace(state_model);
    state.reload.replace(Some((reload, context_length)));
    let restored = prepare_anywhere(state, id, &mut engine, &layers, true).await?;
    let mut model = engine.describe(now() - started);
    if let Some(block) = &mut model.system_block {
        block.restored = restored;
    }
    state.engine.replace(Some(engine));
    post(id, Event::Loaded { model });
    Ok(())
}

/// The bytes of a model, from storage or from the file the user picked.
async fn read(reload: &Reload) -> Result<Vec<u8>, WorkerError> {
    match reload {
        Reload::Stored(url) => storage::get(url)
            .await?
            .ok_or_else(|| WorkerError::new(ErrorKind::NoModel, format!("{url} is not in storage; download it first"))),
        Reload::File(name, blob) => crate::js::read_stream(blob.stream(), Some(blob.size() as usize))
            .await
            .map_err(|e| WorkerError::new(ErrorKind::BadModel, format!("reading {name}: {e}"))),
    }
}

/// Puts the model into its state after the shared prefix: restored from storage when
/// this build saved it for this model and prefix before, else prefilled (and saved),
/// with the page told of the prefill when `report`. Returns whether it was restored.
async fn prepare(
    id: u64,
    engine: &mut Engine,
    state_model: Option<&state_store::ModelKey>,
    report: bool,
) -> Result<bool, WorkerError> {
    let prefix = engine.shared_prefix();
    let key = state_model.map(|m| state_store::key(m, &prefix));
    if let Some(key) = &key {
        if let Some(bytes) = state_store::get(key).await {
            if engine.restore_state(&prefix, &bytes) {
                return Ok(true);
            }
        }
    }
    if report {
        post(id, Event::Progress { phase: Phase::Preparing, done: 0, total: Some(prefix.len() as u64) });
    }
    yield_now().await;
    engine.warm().await?;
    if let (Some(key), Some((url, _))) = (&key, state_model) {
        if let Ok(bytes) = engine.save_state().await {
            // One state per model: storage stays bounded whatever the configurations.
            state_store::delete_for(url).await;
            state_store::put(key, &bytes).await;
        }
    }
    Ok(false)
}

/// [`prepare`]; where the GPU fails at it (lost while the page was idle, out of memory),
/// the model moves to the CPU under `layers` and is prepared there, so a model that
/// loaded stays usable. Returns whether the state was restored.
async fn prepare_anywhere(state: &State, id: u64, engine: &mut Engine, layers: &Layers, report: bool) -> Result<bool, WorkerError> {
    let state_model = state.state_model.borrow().clone();
    match prepare(id, engine, state_model.as_ref(), report).await {
        Err(e) if engine.session.model().is_gpu() => {
            let started = now();
            let why = e.message;
            *engine = reload_on_cpu(state, id, layers, &format!("the GPU failed ({why})")).await?;
            let reason = format!("The GPU failed ({why}); Charter moved the model to the CPU.");
            post(id, Event::Restarted { reason, model: engine.describe(now() - started) });
            Ok(false)
        }
        other => other,
    }
}

/// Checks new layers, and with a model loaded composes its block under them and reads
/// it into the model; a refusal leaves the layers in force as they were.
async fn configure(state: &State, id: u64, layers: Layers) -> Result<(), WorkerError> {
    layers.validate()?;
    if state.generating.get().is_some() || state.loading.get() {
        return Err(WorkerError::new(ErrorKind::Busy, "the worker is busy; try again when the reply or the load has finished"));
    }
    let Some(mut engine) = state.engine.borrow_mut().take() else {
        state.layers.replace(layers);
        post(id, Event::Configured { system_block: None });
        return Ok(());
    };
    state.loading.set(true);
    let result = reconfigure(state, id, &mut engine, &layers).await;
    state.engine.replace(Some(engine));
    state.loading.set(false);
    let block = result?;
    state.layers.replace(layers);
    post(id, Event::Configured { system_block: Some(block) });
    Ok(())
}

async fn reconfigure(state: &State, id: u64, engine: &mut Engine, layers: &Layers) -> Result<charter_protocol::SystemBlock, WorkerError> {
    let previous = engine.system.0.clone();
    engine.configure(layers)?;
    match prepare_anywhere(state, id, engine, layers, true).await {
        Ok(restored) => Ok(charter_protocol::SystemBlock { restored, ..engine.system_block() }),
        Err(e) => {
            engine.system.0 = previous;
            Err(e)
        }
    }
}

/// Times the loaded model, then puts it back in its state after the system block.
async fn benchmark(state: &State, id: u64, plan: Option<charter_core::bench::BenchPlan>) -> Result<(), WorkerError> {
    if state.generating.get().is_some() || state.loading.get() {
        return Err(WorkerError::new(ErrorKind::Busy, "the worker is busy; try again when the reply or the load has finished"));
    }
    let Some(mut engine) = state.engine.borrow_mut().take() else {
        return Err(WorkerError::new(ErrorKind::NoModel, "load a model before timing it"));
    };
    state.loading.set(true);
    // Let the UI show that the test runs before the worker is busy for seconds.
    yield_now().await;
    let plan = match plan {
        Some(plan) => Ok(plan),
        None => charter_core::bench::BenchPlan::chat(&engine.template, &engine.tokenizer, &engine.system.0.text),
    };
    // On the GPU the worker awaits each step's readback, as a reply does.
    let measured = match plan {
        Ok(plan) => engine.session.measure_async(&plan, &mut now).await,
        Err(e) => Err(e),
    };
    let layers = state.layers.borrow().clone();
    let prepared = prepare_anywhere(state, id, &mut engine, &layers, true).await;
    let described = engine.session.model().describe();
    state.engine.replace(Some(engine));
    state.loading.set(false);
    prepared?;
    let result = measured.map_err(|e| WorkerError::new(ErrorKind::Internal, e.to_string()))?;
    post(id, Event::Benchmarked { result, engine: described });
    Ok(())
}

struct Hooks<'a> {
    id: u64,
    state: &'a State,
}

impl GenerateHooks for Hooks<'_> {
    fn on_text(&mut self, text: &str) {
        post(self.id, Event::Token { text: text.to_owned() });
    }

    fn is_cancelled(&mut self) -> bool {
        self.state.cancelled.get() == Some(self.id)
    }

    fn now(&mut self) -> f64 {
        now()
    }
}

async fn generate(
    state: &State,
    id: u64,
    messages: &[charter_core::Message],
    options: &charter_core::GenerateOptions,
    predict_user: bool,
) -> Result<(), WorkerError> {
    if state.generating.get().is_some() || state.loading.get() {
        return Err(WorkerError::new(ErrorKind::Busy, "a reply is already being written; stop it first"));
    }
    let Some(mut engine) = state.engine.borrow_mut().take() else {
        return Err(WorkerError::new(ErrorKind::NoModel, "no model is loaded yet"));
    };
    state.generating.set(Some(id));
    state.cancelled.set(None);
    let result = match run(state, id, &mut engine, messages, options, predict_user).await {
        Err(Failure::Device(why)) => match to_cpu(state, id, &mut engine, &why).await {
            Ok(()) => run(state, id, &mut engine, messages, options, predict_user).await,
            Err(e) => Err(Failure::Worker(e)),
        },
        other => other,
    };
    let result = result.map_err(|f| match f {
        Failure::Device(why) => WorkerError::new(ErrorKind::Internal, format!("the model's device failed: {why}")),
        Failure::Worker(e) => e,
    });
    state.generating.set(None);
    state.cancelled.set(None);
    state.engine.replace(Some(engine));
    result
}

/// Moves a model whose GPU failed during a reply onto the CPU ([`reload_on_cpu`]) and
/// tells the page that the reply in progress starts over ([`Event::Restarted`]). On
/// failure the old engine stays, and the request fails.
async fn to_cpu(state: &State, id: u64, engine: &mut Engine, why: &str) -> Result<(), WorkerError> {
    let started = now();
    let layers = state.layers.borrow().clone();
    *engine = reload_on_cpu(state, id, &layers, &format!("the GPU failed during a reply ({why}), so the reply started over there")).await?;
    post(
        id,
        Event::Restarted {
            reason: format!("The GPU failed while writing ({why}); Charter moved the model to the CPU and the reply started over."),
            model: engine.describe(now() - started),
        },
    );
    Ok(())
}

/// The loaded model read again and loaded on the CPU under `layers`, in its state after
/// the shared prefix, with the page told that the backend changed because `reason`
/// ([`Event::Backend`]). The caller puts it in place of the GPU's engine, whose buffers
/// go with it.
async fn reload_on_cpu(state: &State, id: u64, layers: &Layers, reason: &str) -> Result<Engine, WorkerError> {
    let Some((reload, context_length)) = state.reload.borrow().clone() else {
        return Err(WorkerError::new(ErrorKind::Internal, format!("{reason}, and the model cannot be read again")));
    };
    let bytes = read(&reload).await?;
    let (mut cpu, _) = Engine::load(bytes, context_length, layers, None, state.threads.pool.clone(), crate::js::cache_budget_bytes()).await?;
    let state_model = state.state_model.borrow().clone();
    prepare(id, &mut cpu, state_model.as_ref(), false).await?;
    let mut report = state.shown_backend.borrow().clone().or_else(|| state.backend.borrow().clone());
    if let Some(report) = &mut report {
        backend::fall_back(report, reason);
        state.shown_backend.replace(Some(report.clone()));
        post(0, Event::Backend { backend: report.clone() });
    }
    Ok(cpu)
}

async fn run(
    state: &State,
    id: u64,
    engine: &mut Engine,
    messages: &[charter_core::Message],
    options: &charter_core::GenerateOptions,
    predict_user: bool,
) -> Result<(), Failure> {
    let (prompt, dropped_messages) = engine.prompt(messages, predict_user)?;
    post(id, Event::Context { tokens: engine.context_tokens(&prompt), dropped_messages });
    if dropped_messages > 0 {
        // The oldest messages left the window: move the rest down rather than read it again.
        engine.session.shift_for(&prompt.ids);
    }
    let mut options = options.clone();
    options.raw = predict_user;
    let mut hooks = Hooks { id, state };
    let on_gpu = engine.session.model().is_gpu();
    // A model that fails on the GPU goes to the CPU; on the CPU a failure is the answer.
    let failed = |e: charter_core::GenerateError| match e {
        charter_core::GenerateError::PromptTooLong { n_prompt, capacity } => Failure::Worker(WorkerError::new(
            ErrorKind::Prompt,
            format!("the conversation ({n_prompt} tokens) no longer fits the model's context of {capacity}; start a new chat"),
        )),
        charter_core::GenerateError::Model(e) if on_gpu => Failure::Device(e.to_string()),
        other => Failure::Worker(WorkerError::new(ErrorKind::Internal, other.to_string())),
    };
    let Engine { tokenizer, policy, session, .. } = engine;
    let reply = {
        let mut generation = session.start_async(&prompt.ids, tokenizer, policy, &options, &mut hooks).await.map_err(failed)?;
        let mut last_yield = now();
        loop {
            if let Some(reply) = generation.step_async(&mut hooks).await.map_err(failed)? {
                break reply;
            }
            if now() - last_yield > 0.02 {
                yield_now().await;
                last_yield = now();
            }
        }
    };
    post(id, Event::Finished { reply: engine.finished(reply) });
    Ok(())
}
