//! The app's state: signals the views read, and the handling of every worker event.

use std::cell::RefCell;
use std::collections::HashMap;

use charter_core::catalog::{Catalog, CatalogModel};
use charter_core::constitution::{Constitution, OperatorConfig, UserSettings};
use charter_core::{GenerateOptions, Role};
use charter_protocol::{
    BackendPreference, BackendReport, ContextToken, ErrorKind, Event, LoadedModel, ModelRef, ModelSource, Phase, Request, StoredModel,
    TokenText,
};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::client;
use crate::conversation::{ChatMessage, Conversation};
use crate::format::Rate;
use crate::idb;

/// What the model is doing, as the status line says it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// The worker is starting.
    Starting,
    /// A download is running: done, total, and the line to show.
    Downloading(u64, Option<u64>, String),
    /// Reading or building the model.
    Loading(String),
    /// Ready to chat.
    Ready(String),
    /// No model; the reason.
    Failed(String),
}

/// Which side panel is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// None.
    Closed,
    /// Sampling settings.
    Settings,
    /// The context window, token by token.
    Hood,
    /// Stored and available models.
    Models,
    /// The conversation list (on narrow screens).
    Chats,
    /// Charter's constitution and what of it is in the prompt.
    Constitution,
    /// The site operator's configuration.
    Operator,
}

/// The device speed test's state.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeedTest {
    /// Not run since the worker started.
    NotRun,
    /// Running.
    Running,
    /// Its figures, or why it failed.
    Done(String),
}

/// What a request was for, so its events go to the right place.
#[derive(Debug, Clone)]
enum Pending {
    Download { url: String, then_load: bool },
    Load,
    Generate,
    Predict,
    List { autostart: bool },
    Configure { operator: Option<OperatorConfig>, user: UserSettings },
    SpeedTest,
}

thread_local! {
    static PENDING: RefCell<HashMap<u64, Pending>> = RefCell::new(HashMap::new());
    static RATE: RefCell<Rate> = RefCell::new(Rate::default());
    /// The running prediction of the user's next message, and whether a reply waits
    /// for it to end (the worker runs one generation at a time).
    static PREDICTING: RefCell<(Option<u64>, bool)> = const { RefCell::new((None, false)) };
}

fn remember(id: u64, pending: Pending) {
    PENDING.with(|p| p.borrow_mut().insert(id, pending));
}

fn pending(id: u64) -> Option<Pending> {
    PENDING.with(|p| p.borrow().get(&id).cloned())
}

fn forget(id: u64) {
    PENDING.with(|p| p.borrow_mut().remove(&id));
}

/// Every signal of the app.
#[derive(Clone, Copy)]
pub struct AppState {
    /// Model status.
    pub status: RwSignal<Status>,
    /// Backend in use.
    pub backend: RwSignal<Option<BackendReport>>,
    /// The loaded model.
    pub model: RwSignal<Option<LoadedModel>>,
    /// Stored models.
    pub stored: RwSignal<Vec<StoredModel>>,
    /// Every conversation, newest first (the current one included).
    pub conversations: RwSignal<Vec<Conversation>>,
    /// The conversation on screen.
    pub current: RwSignal<Conversation>,
    /// The reply being streamed.
    pub streaming: RwSignal<Option<String>>,
    /// The id of the running generation.
    pub generating: RwSignal<Option<u64>>,
    /// KV positions in use.
    pub context_used: RwSignal<usize>,
    /// The last prompt, as tokens.
    pub context_tokens: RwSignal<Vec<ContextToken>>,
    /// The last reply's tokens, the stop token included.
    pub reply_tokens: RwSignal<Vec<ContextToken>>,
    /// The token that ended the last reply.
    pub last_stop: RwSignal<Option<TokenText>>,
    /// Whether to show the model's guess at the user's next message.
    pub predict_user: RwSignal<bool>,
    /// That guess.
    pub predicted: RwSignal<Option<String>>,
    /// Sampling settings.
    pub options: RwSignal<GenerateOptions>,
    /// A message for the user (errors, restarts).
    pub notice: RwSignal<Option<String>>,
    /// The text being typed.
    pub input: RwSignal<String>,
    /// The open panel.
    pub panel: RwSignal<Panel>,
    /// The loaded model's source, to reload after a worker restart.
    pub active: RwSignal<Option<ModelSource>>,
    /// How many of the oldest messages the last prompt left out.
    pub dropped: RwSignal<usize>,
    /// The operator's configuration in force (accepted by the worker).
    pub operator: RwSignal<Option<OperatorConfig>>,
    /// Whether that configuration was deployed with the site (and so cannot be changed
    /// from the page).
    pub operator_deployed: RwSignal<bool>,
    /// The user's settings in force.
    pub user_settings: RwSignal<UserSettings>,
    /// Whether a configuration is being checked and read into the model.
    pub configuring: RwSignal<bool>,
    /// The device speed test.
    pub speed: RwSignal<SpeedTest>,
    /// The outcome of the last configuration: `Ok` with what changed, `Err` with why it
    /// was refused.
    pub config_result: RwSignal<Option<Result<String, String>>>,
    /// The backend the user asks for (kept on the device), sent with every load.
    pub backend_choice: RwSignal<BackendPreference>,
    /// Whether the user asks to keep off the network once a model is loaded.
    pub no_egress: RwSignal<bool>,
    /// Whether the page took its no-egress policy (it lasts as long as the page).
    pub page_sealed: RwSignal<bool>,
    /// The origin the worker keeps to, once it confirmed its seal.
    pub worker_sealed: RwSignal<Option<String>>,
    /// The browser refuses this page storage (a blocked third-party frame).
    pub storage_blocked: RwSignal<bool>,
}

/// Where the backend preference is kept.
const BACKEND_KEY: &str = "charter-backend";

fn saved_backend() -> BackendPreference {
    let text = web_sys::window().and_then(|w| w.local_storage().ok().flatten()).and_then(|s| s.get_item(BACKEND_KEY).ok().flatten());
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Checks layers against the constitution compiled into the app.
pub fn check_layers(operator: Option<&OperatorConfig>, user: &UserSettings) -> Result<(), String> {
    let constitution = Constitution::builtin().map_err(|e| e.to_string())?;
    charter_core::constitution::check_layers(&constitution, operator, user).map_err(|e| e.to_string())
}

/// The catalog compiled into the app.
pub fn catalog() -> Vec<CatalogModel> {
    Catalog::builtin().map(|c| c.models).unwrap_or_default()
}

/// The URL a catalog model is fetched from: the default model from this app's own
/// `models/` folder (so a first visit needs no other site), the others from the hub.
pub fn model_url(model: &CatalogModel) -> String {
    let url = if model.default { format!("models/{}", model.file) } else { model.url.clone() };
    absolute(&url)
}

/// `url` resolved against the page.
pub fn absolute(url: &str) -> String {
    let base = web_sys::window().and_then(|w| w.location().href().ok()).unwrap_or_default();
    web_sys::Url::new_with_base(url, &base).map(|u| u.href()).unwrap_or_else(|_| url.to_owned())
}

/// What to ask the worker for a catalog model.
pub fn model_ref(model: &CatalogModel) -> ModelRef {
    ModelRef {
        id: model.id.clone(),
        name: model.name.clone(),
        url: model_url(model),
        size: model.is_verified("size_bytes").then_some(model.size_bytes),
        sha256: model.checked_sha256().map(str::to_owned),
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// A fresh conversation id.
pub fn new_id() -> String {
    format!("c{}-{:06}", now_ms() as u64, (js_sys::Math::random() * 1e6) as u64)
}

impl AppState {
    /// Signals with their starting values.
    pub fn new() -> Self {
        AppState {
            status: RwSignal::new(Status::Starting),
            backend: RwSignal::new(None),
            model: RwSignal::new(None),
            stored: RwSignal::new(Vec::new()),
            conversations: RwSignal::new(Vec::new()),
            current: RwSignal::new(Conversation::new(new_id(), now_ms())),
            streaming: RwSignal::new(None),
            generating: RwSignal::new(None),
            context_used: RwSignal::new(0),
            context_tokens: RwSignal::new(Vec::new()),
            reply_tokens: RwSignal::new(Vec::new()),
            last_stop: RwSignal::new(None),
            predict_user: RwSignal::new(false),
            predicted: RwSignal::new(None),
            options: RwSignal::new(GenerateOptions::default()),
            notice: RwSignal::new(None),
            input: RwSignal::new(String::new()),
            panel: RwSignal::new(Panel::Closed),
            active: RwSignal::new(None),
            dropped: RwSignal::new(0),
            operator: RwSignal::new(None),
            operator_deployed: RwSignal::new(false),
            user_settings: RwSignal::new(UserSettings::default()),
            configuring: RwSignal::new(false),
            speed: RwSignal::new(SpeedTest::NotRun),
            config_result: RwSignal::new(None),
            no_egress: RwSignal::new(crate::egress::wanted()),
            page_sealed: RwSignal::new(false),
            worker_sealed: RwSignal::new(None),
            storage_blocked: RwSignal::new(false),
            backend_choice: RwSignal::new(saved_backend()),
        }
    }

    /// Keeps the user's backend choice and reloads the model on it.
    pub fn choose_backend(self, choice: BackendPreference) {
        self.backend_choice.set(choice);
        if let (Some(storage), Ok(text)) =
            (web_sys::window().and_then(|w| w.local_storage().ok().flatten()), serde_json::to_string(&choice))
        {
            let _ = storage.set_item(BACKEND_KEY, &text);
        }
        if let Some(ModelSource::Stored { url }) = self.active.get_untracked() {
            if self.generating.get_untracked().is_none() {
                self.load_stored(url);
            }
        }
    }

    /// Keeps the page and the worker off the network from now on (for this page's life).
    fn seal(self) {
        if crate::egress::seal_page() {
            self.page_sealed.set(true);
        }
        client::send(Request::Seal);
    }

    /// The user's no-egress switch. On, it seals at once where a model is loaded; off, on
    /// a sealed page, it reloads the page, since a policy cannot be lifted.
    pub fn choose_no_egress(self, on: bool) {
        crate::egress::set_wanted(on);
        self.no_egress.set(on);
        if on && self.model.get_untracked().is_some() {
            self.seal();
        } else if !on && self.page_sealed.get_untracked() {
            if let Some(window) = web_sys::window() {
                let _ = window.location().reload();
            }
        }
    }

    /// Asks the worker to put new layers under the constitution. They are checked here
    /// first (so a refusal is immediate and names the unit) and again in the worker,
    /// which also counts the operator's text in the model's tokens; they take effect,
    /// and are saved, only once the worker accepts them.
    /// Times the loaded model on this device.
    pub fn speed_test(self) {
        let id = client::send(Request::Benchmark { plan: None });
        remember(id, Pending::SpeedTest);
        self.speed.set(SpeedTest::Running);
    }

    pub fn configure(self, operator: Option<OperatorConfig>, user: UserSettings) {
        let operator = operator.filter(|o| !o.is_empty());
        if let Err(e) = check_layers(operator.as_ref(), &user) {
            self.config_result.set(Some(Err(e)));
            return;
        }
        let id = client::send(Request::Configure { operator: operator.clone(), user: user.clone() });
        remember(id, Pending::Configure { operator, user });
        self.configuring.set(true);
        self.config_result.set(None);
    }

    fn configured(self, operator: Option<OperatorConfig>, user: UserSettings, block: Option<charter_protocol::SystemBlock>) {
        self.configuring.set(false);
        let changed = self.operator.get_untracked() != operator || self.user_settings.get_untracked() != user;
        if !self.operator_deployed.get_untracked() {
            crate::layers::save_local_operator(operator.as_ref());
        }
        crate::layers::save_user(&user);
        self.operator.set(operator);
        self.user_settings.set(user);
        let summary = match &block {
            Some(b) => format!("Applied: the system block is now {} tokens of {}.", b.tokens, b.budget),
            None => "Saved: it applies when a model is loaded.".to_owned(),
        };
        if let Some(block) = block {
            self.model.update(|m| {
                if let Some(m) = m {
                    m.system_block = Some(block);
                }
            });
        }
        if let Some(m) = self.model.get_untracked() {
            self.status.set(Status::Ready(format!("Ready: {}", m.name)));
        }
        if changed {
            self.config_result.set(Some(Ok(summary)));
        }
    }

    /// Reads saved conversations and opens the newest.
    pub fn restore(self) {
        spawn_local(async move {
            match idb::load_all().await {
                Ok(list) => {
                    if let Some(newest) = list.first() {
                        self.current.set(newest.clone());
                    }
                    self.conversations.set(list);
                }
                Err(e) => self.notice.set(Some(format!("Saved conversations could not be read: {e}"))),
            }
        });
    }

    /// Saves the current conversation and refreshes the list.
    pub fn persist(self) {
        let conversation = self.current.get_untracked();
        self.conversations.update(|list| {
            list.retain(|c| c.id != conversation.id);
            list.insert(0, conversation.clone());
        });
        spawn_local(async move {
            if let Err(e) = idb::save(&conversation).await {
                self.notice.set(Some(format!("This conversation could not be saved: {e}")));
            }
        });
    }

    /// Whether a reply is being written (or waits to be).
    pub fn busy(self) -> bool {
        self.generating.get_untracked().is_some() || self.streaming.get_untracked().is_some()
    }

    /// Sends what is typed.
    pub fn send_input(self) {
        let text = self.input.get_untracked();
        if text.trim().is_empty() || self.busy() || self.model.get_untracked().is_none() {
            return;
        }
        self.current.update(|c| {
            c.messages.push(ChatMessage::new(Role::User, text));
            c.retitle();
            c.updated = now_ms();
        });
        self.input.set(String::new());
        self.persist();
        self.generate();
    }

    /// Asks for the assistant's reply to the conversation as it stands.
    pub fn generate(self) {
        let waiting = PREDICTING.with(|p| {
            let mut p = p.borrow_mut();
            if let Some(id) = p.0 {
                client::send(Request::Cancel { target: id });
                p.1 = true;
                true
            } else {
                false
            }
        });
        self.streaming.set(Some(String::new()));
        if waiting {
            return;
        }
        let messages = self.current.with_untracked(|c| c.model_messages());
        let request = Request::Generate { messages, options: self.options.get_untracked(), predict_user: false };
        let id = client::send(request);
        remember(id, Pending::Generate);
        self.generating.set(Some(id));
        self.predicted.set(None);
        self.notice.set(None);
    }

    /// Stops the running reply.
    pub fn stop(self) {
        if let Some(id) = self.generating.get_untracked() {
            client::send(Request::Cancel { target: id });
        }
    }

    /// Writes the last reply again.
    pub fn regenerate(self) {
        if self.busy() || self.model.get_untracked().is_none() {
            return;
        }
        let mut popped = false;
        self.current.update(|c| {
            if c.messages.last().is_some_and(|m| m.role == Role::Assistant) {
                c.messages.pop();
                popped = true;
            }
        });
        if popped {
            self.generate();
        }
    }

    /// Puts the last user message back into the input and removes it (and its reply)
    /// from the conversation; sending it again reuses the KV cache up to that point.
    pub fn edit_last(self) {
        if self.busy() {
            return;
        }
        self.current.update(|c| {
            if let Some(i) = c.messages.iter().rposition(|m| m.role == Role::User) {
                let message = c.messages[i].text.clone();
                c.messages.truncate(i);
                self.input.set(message);
            }
        });
        self.persist();
    }

    /// Starts a new conversation.
    pub fn new_chat(self) {
        if self.generating.get_untracked().is_some() {
            self.stop();
        }
        if self.current.with_untracked(|c| c.messages.is_empty()) {
            return;
        }
        self.current.set(Conversation::new(new_id(), now_ms()));
        self.context_tokens.set(Vec::new());
        self.reply_tokens.set(Vec::new());
        self.predicted.set(None);
    }

    /// Opens a saved conversation.
    pub fn open(self, id: &str) {
        if self.busy() {
            return;
        }
        if let Some(c) = self.conversations.with_untracked(|l| l.iter().find(|c| c.id == id).cloned()) {
            self.current.set(c);
            self.context_tokens.set(Vec::new());
            self.reply_tokens.set(Vec::new());
        }
    }

    /// Deletes a saved conversation.
    pub fn delete_conversation(self, id: String) {
        self.conversations.update(|l| l.retain(|c| c.id != id));
        if self.current.with_untracked(|c| c.id == id) {
            self.current.set(Conversation::new(new_id(), now_ms()));
        }
        spawn_local(async move {
            let _ = idb::delete(&id).await;
        });
    }

    /// Downloads a catalog model, then loads it.
    pub fn download(self, model: &CatalogModel) {
        let model = model_ref(model);
        let url = model.url.clone();
        let id = client::send(Request::Download { model });
        remember(id, Pending::Download { url, then_load: true });
        RATE.with(|r| *r.borrow_mut() = Rate::default());
        self.status.set(Status::Downloading(0, None, "Starting the download…".into()));
    }

    /// Loads a stored model.
    pub fn load_stored(self, url: String) {
        let source = ModelSource::Stored { url };
        let id = client::send(Request::Load { source: source.clone(), context_length: None, backend: self.backend_choice.get_untracked() });
        remember(id, Pending::Load);
        self.active.set(Some(source));
        self.model.set(None);
        self.status.set(Status::Loading("Reading the model from storage…".into()));
    }

    /// Loads a model file from the user's disk; it never leaves the browser.
    pub fn load_file(self, file: web_sys::File) {
        let source = ModelSource::File { name: file.name() };
        let request = Request::Load { source: source.clone(), context_length: None, backend: self.backend_choice.get_untracked() };
        let id = client::send_with(request, Some(file.into()));
        remember(id, Pending::Load);
        self.active.set(Some(source));
        self.model.set(None);
        self.status.set(Status::Loading("Reading the file…".into()));
    }

    /// Deletes a stored model.
    pub fn delete_stored(self, url: String) {
        let id = client::send(Request::Delete { url });
        remember(id, Pending::List { autostart: false });
    }

    fn list(self, autostart: bool) {
        let id = client::send(Request::ListStored);
        remember(id, Pending::List { autostart });
    }

    /// The worker died: say so, keep the conversation, and let the new worker's
    /// `Ready` reload the model.
    pub fn worker_died(self, reason: String) {
        PENDING.with(|p| p.borrow_mut().clear());
        PREDICTING.with(|p| *p.borrow_mut() = (None, false));
        self.generating.set(None);
        self.streaming.set(None);
        self.configuring.set(false);
        self.speed.set(SpeedTest::NotRun);
        self.model.set(None);
        self.status.set(Status::Starting);
        self.notice.set(Some(format!(
            "The inference worker stopped ({reason}). Charter restarted it; your conversation is intact."
        )));
    }

    /// Handles one event from the worker.
    pub fn on_event(self, id: u64, event: Event) {
        let kind = pending(id);
        match event {
            Event::Ready { backend } => {
                self.backend.set(Some(backend));
                // A restarted worker is sealed again before anything else.
                self.worker_sealed.set(None);
                if self.page_sealed.get_untracked() {
                    client::send(Request::Seal);
                }
                // The layers go first: the load that follows composes under them.
                self.configure(self.operator.get_untracked(), self.user_settings.get_untracked());
                self.list(true);
            }
            Event::Backend { backend } => self.backend.set(Some(backend)),
            Event::Benchmarked { result, engine } => {
                forget(id);
                let prefill = result
                    .prefill
                    .iter()
                    .map(|p| format!("{} tokens at {:.0} tokens/s", p.tokens, p.tokens as f64 / p.seconds))
                    .collect::<Vec<_>>()
                    .join(", ");
                let launches = result
                    .dispatches_per_token
                    .map(|d| format!(" ({:.1} ms and {d:.0} GPU dispatches per token)", 1e3 / result.decode_tokens_per_s()))
                    .unwrap_or_default();
                self.speed.set(SpeedTest::Done(format!(
                    "On {engine}: reads a prompt of {prefill}; writes {:.1} tokens/s{launches}; answers a second turn of {} tokens after {:.2} s.",
                    result.decode_tokens_per_s(),
                    result.turn_tokens,
                    result.turn_seconds
                )));
            }
            Event::Sealed { origin } => self.worker_sealed.set(Some(origin)),
            // The UI asks for neither: they serve the JS API's own worker.
            Event::Measured { .. } | Event::ParsedOperator { .. } => forget(id),
            Event::Configured { system_block } => {
                forget(id);
                if let Some(Pending::Configure { operator, user }) = kind {
                    self.configured(operator, user, system_block);
                }
            }
            Event::Progress { phase, done, total } => self.progress(phase, done, total),
            Event::Stored { model } => {
                forget(id);
                self.list(false);
                if let Some(Pending::Download { then_load: true, url }) = kind {
                    let _ = model;
                    self.load_stored(url);
                }
            }
            Event::Loaded { mut model } => {
                forget(id);
                // A catalog model is named as the catalog names it, not by its file's
                // `general.name`.
                if let Some(ModelSource::Stored { url }) = self.active.get_untracked() {
                    if let Some(entry) = catalog().into_iter().find(|m| model_url(m) == url) {
                        model.name = entry.name;
                    }
                }
                self.status.set(Status::Ready(format!("Ready: {}", model.name)));
                self.model.set(Some(model));
                self.context_used.set(0);
                if self.no_egress.get_untracked() {
                    self.seal();
                }
            }
            Event::Context { tokens, dropped_messages } => {
                if matches!(kind, Some(Pending::Generate)) {
                    self.dropped.set(dropped_messages);
                    self.context_used.set(tokens.len());
                    self.context_tokens.set(tokens);
                    self.reply_tokens.set(Vec::new());
                    self.last_stop.set(None);
                }
            }
            Event::Token { text } => match kind {
                Some(Pending::Generate) => self.streaming.update(|s| s.get_or_insert_with(String::new).push_str(&text)),
                Some(Pending::Predict) => self.predicted.update(|s| s.get_or_insert_with(String::new).push_str(&text)),
                _ => {}
            },
            Event::Restarted { reason, model } => {
                // What streamed so far came from the failed device; the reply starts over.
                match kind {
                    Some(Pending::Generate) => self.streaming.set(Some(String::new())),
                    Some(Pending::Predict) => self.predicted.set(Some(String::new())),
                    _ => {}
                }
                // The model is the same one (named as before), on another backend.
                self.model.update(|m| match m {
                    Some(m) => {
                        m.engine = model.engine;
                        m.memory_bytes = model.memory_bytes;
                    }
                    None => *m = Some(model),
                });
                self.notice.set(Some(reason));
            }
            Event::Finished { reply } => {
                forget(id);
                if matches!(kind, Some(Pending::Predict)) {
                    self.prediction_ended();
                }
                if matches!(kind, Some(Pending::Generate)) {
                    let mut message = ChatMessage::new(Role::Assistant, reply.text.clone());
                    message.stop_reason = Some(reply.stop_reason.as_str().to_owned());
                    message.tokens_per_second = Some(reply.stats.decode_tokens_per_s());
                    message.n_tokens = Some(reply.stats.decode_tokens);
                    self.current.update(|c| {
                        c.messages.push(message);
                        c.updated = now_ms();
                    });
                    self.streaming.set(None);
                    self.generating.set(None);
                    self.context_used.set(reply.context_used);
                    self.reply_tokens.set(reply.tokens);
                    self.last_stop.set(reply.stop_token);
                    self.persist();
                    if self.predict_user.get_untracked() {
                        self.predict();
                    }
                }
            }
            Event::StoredList { models } => {
                forget(id);
                self.stored.set(models.clone());
                if let Some(Pending::List { autostart: true }) = kind {
                    self.autostart(&models);
                }
            }
            Event::Error { error } => {
                forget(id);
                match kind {
                    Some(Pending::Generate) => {
                        self.streaming.set(None);
                        self.generating.set(None);
                        self.notice.set(Some(error.message));
                    }
                    Some(Pending::Predict) => {
                        self.notice.set(Some(error.message));
                        self.prediction_ended();
                    }
                    Some(Pending::SpeedTest) => self.speed.set(SpeedTest::Done(format!("The speed test failed: {}", error.message))),
                    Some(Pending::Configure { .. }) => {
                        self.configuring.set(false);
                        self.config_result.set(Some(Err(error.message)));
                        if let Some(m) = self.model.get_untracked() {
                            self.status.set(Status::Ready(format!("Ready: {}", m.name)));
                        }
                    }
                    Some(Pending::Download { .. }) | Some(Pending::Load) => {
                        let advice = match error.kind {
                            ErrorKind::Quota => " Delete a stored model or free disk space, then try again.",
                            ErrorKind::Network => " The part already fetched is kept while this page is open; try again to resume.",
                            _ => "",
                        };
                        let line = format!("{}{advice}", error.message);
                        // A download that fails beside a loaded model leaves that model ready.
                        match (kind, self.model.get_untracked()) {
                            (Some(Pending::Download { .. }), Some(m)) => {
                                self.status.set(Status::Ready(format!("Ready: {}", m.name)));
                                self.notice.set(Some(line));
                            }
                            _ => self.status.set(Status::Failed(line)),
                        }
                        self.list(false);
                    }
                    // Where storage is refused the page says so once, not per request.
                    Some(Pending::List { .. }) if self.storage_blocked.get_untracked() => {}
                    _ => self.notice.set(Some(error.message)),
                }
            }
        }
    }

    fn progress(self, phase: Phase, done: u64, total: Option<u64>) {
        match phase {
            Phase::Downloading => {
                let line = RATE.with(|r| {
                    let mut rate = r.borrow_mut();
                    rate.record(now_ms() / 1000.0, done);
                    rate.describe(done, total)
                });
                self.status.set(Status::Downloading(done, total, format!("Downloading: {line}")));
            }
            Phase::Verifying => self.status.set(Status::Downloading(done, total, "Verifying…".into())),
            Phase::Storing => self.status.set(Status::Downloading(done, total, "Storing for offline use…".into())),
            Phase::Reading => self.status.set(Status::Loading("Reading the model…".into())),
            Phase::Compiling => {
                self.status.set(Status::Loading("Compiling the GPU's kernels and checking them against the CPU…".into()))
            }
            Phase::Loading => self.status.set(Status::Loading("Loading the model into memory…".into())),
            Phase::Preparing => self.status.set(Status::Loading(format!(
                "Reading Charter's constitution into the model ({} tokens)…",
                total.unwrap_or(0)
            ))),
        }
    }

    /// After the worker starts: reload the active model, or load the default one,
    /// downloading it first when it is not stored.
    fn autostart(self, stored: &[StoredModel]) {
        match self.active.get_untracked() {
            Some(ModelSource::Stored { url }) if stored.iter().any(|m| m.url == url) => return self.load_stored(url),
            Some(ModelSource::File { name }) => {
                self.status.set(Status::Failed(format!("Pick {name} again to reload it (files from your disk are not kept).")));
                return;
            }
            _ => {}
        }
        let catalog = catalog();
        let Some(default) = catalog.iter().find(|m| m.default) else {
            self.status.set(Status::Failed("The model catalog is empty.".into()));
            return;
        };
        let url = model_url(default);
        if stored.iter().any(|m| m.url == url) {
            self.load_stored(url);
        } else {
            self.download(default);
        }
    }

    fn predict(self) {
        let messages = self.current.with_untracked(|c| c.model_messages());
        let mut options = self.options.get_untracked();
        options.max_tokens = options.max_tokens.min(64);
        let id = client::send(Request::Generate { messages, options, predict_user: true });
        remember(id, Pending::Predict);
        PREDICTING.with(|p| p.borrow_mut().0 = Some(id));
        self.predicted.set(Some(String::new()));
    }

    fn prediction_ended(self) {
        let queued = PREDICTING.with(|p| std::mem::replace(&mut *p.borrow_mut(), (None, false)).1);
        if queued {
            self.generate();
        }
    }
}
