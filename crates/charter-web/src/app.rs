//! The views: header, conversation, input and the side panels. Every element a test
//! or an embedding page may need carries a stable `data-testid` (listed in
//! `web/README.md`).

use charter_core::Role;
use charter_protocol::{BackendKind, BackendPreference, Origin};
use leptos::ev;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::conversation::{export, import, ChatMessage};
use crate::format;
use crate::markdown;
use crate::layers::Start;
use crate::offline::{Availability, Offline};
use crate::operator::{OperatorPanel, Preferences};
use crate::state::{catalog, check_layers, model_url, AppState, Panel, SpeedTest, Status};

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    let state = AppState::new();
    provide_context(Offline::start());
    // The worker starts once the operator's layer is known, so its first load already
    // composes under it.
    spawn_local(async move {
        // Saved conversations are read only where the browser keeps storage for the page;
        // where it keeps none, one notice says so.
        if crate::embed::storage_blocked().await {
            state.storage_blocked.set(true);
        } else {
            state.restore();
        }
        match crate::layers::start().await {
            Start::Refused(reason) => return state.status.set(Status::Failed(reason)),
            Start::Deployed(config) | Start::Embedded(config) => {
                state.operator.set(Some(config));
                state.operator_deployed.set(true);
            }
            Start::Local(config) => state.operator.set(config),
        }
        let user = crate::layers::user_settings();
        if check_layers(state.operator.get_untracked().as_ref(), &user).is_ok() {
            state.user_settings.set(user);
        }
        let started = crate::client::start(move |id, event| state.on_event(id, event), move |reason| state.worker_died(reason));
        if let Err(e) = started {
            state.status.set(Status::Failed(e));
        }
    });
    request_persistence();
    let esc = window_event_listener(ev::keydown, move |e| {
        if e.key() == "Escape" {
            state.stop();
        }
    });
    on_cleanup(move || esc.remove());

    let on_drop = move |e: ev::DragEvent| {
        e.prevent_default();
        if let Some(file) = e.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            state.load_file(file);
        }
    };
    view! {
        <div class="app" on:dragover=move |e: ev::DragEvent| e.prevent_default() on:drop=on_drop>
            <Header state />
            <div class="body">
                <ChatList state />
                <main class="chat">
                    <UpdateReady />
                    <StorageBlocked state />
                    <Notice state />
                    <Messages state />
                    <Composer state />
                </main>
                <SidePanel state />
            </div>
        </div>
    }
}

fn request_persistence() {
    if let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) {
        if let Ok(promise) = storage.persist() {
            spawn_local(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            });
        }
    }
}

/// The backend's reason, and on the CPU the threads' (`2 threads (…)`, `one thread: …`).
fn with_threads(b: &charter_protocol::BackendReport) -> String {
    match b.chosen {
        BackendKind::WasmSimd if !b.threads_reason.is_empty() => format!("{} The CPU kernels run on {}.", b.reason, b.threads_reason),
        _ => b.reason.clone(),
    }
}

#[component]
fn Header(state: AppState) -> impl IntoView {
    let toggle = move |panel: Panel| {
        move |_| state.panel.update(|p| *p = if *p == panel { Panel::Closed } else { panel })
    };
    let status_text = move || match state.status.get() {
        Status::Starting => "Starting…".to_owned(),
        Status::Downloading(_, _, line) | Status::Loading(line) | Status::Ready(line) | Status::Failed(line) => line,
    };
    let backend_text = move || match state.backend.get() {
        None => "Detecting…".to_owned(),
        Some(b) => match b.chosen {
            BackendKind::WasmSimd => {
                let simd = if b.kernels == "wasm-relaxed-simd" { "relaxed SIMD" } else { "SIMD128" };
                match b.threads {
                    0 | 1 => format!("CPU · WebAssembly {simd}"),
                    n => format!("CPU · WebAssembly {simd} · {n} threads"),
                }
            }
            BackendKind::WebGpu => "GPU · WebGPU".to_owned(),
        },
    };
    let backend_reason = move || state.backend.get().map(|b| with_threads(&b)).unwrap_or_default();
    let meter = move || {
        let total = state.model.get().map_or(0, |m| m.context_length);
        format!("{} / {} tokens", state.context_used.get(), total)
    };
    let meter_value = move || {
        let total = state.model.get().map_or(0, |m| m.context_length).max(1);
        (state.context_used.get() as f64 / total as f64).min(1.0)
    };
    view! {
        <header class="header">
            <button class="icon only-narrow" data-testid="chats" aria-label="Conversations" on:click=toggle(Panel::Chats)>"☰"</button>
            <h1 class="brand">"Charter"</h1>
            <div class="status" role="status" aria-live="polite">
                <span data-testid="model-status" class=move || match state.status.get() {
                    Status::Ready(_) => "ready",
                    Status::Failed(_) => "failed",
                    _ => "busy",
                }>{status_text}</span>
                <Show when=move || matches!(state.status.get(), Status::Downloading(..))>
                    <progress
                        data-testid="download-progress"
                        max=move || match state.status.get() { Status::Downloading(_, Some(t), _) => t as f64, _ => 1.0 }
                        value=move || match state.status.get() { Status::Downloading(d, _, _) => d as f64, _ => 0.0 }
                    ></progress>
                </Show>
            </div>
            <span class="chip" data-testid="backend" title=backend_reason>{backend_text}</span>
            <Show when=move || state.page_sealed.get() && state.worker_sealed.get().is_some()>
                <span class="chip sealed" data-testid="egress-chip" title=move || format!("This page and its worker reach only {}: nothing in a reply can make the browser contact another site.", state.worker_sealed.get().unwrap_or_default())>"Off the network"</span>
            </Show>
            <span class="chip meter" data-testid="context-meter" title=move || match state.model.get() {
                Some(m) if !m.context_reason.is_empty() => format!("Tokens in the model's context window: {}", m.context_reason),
                _ => "Tokens in the model's context window".to_owned(),
            }>
                <meter min="0" max="1" value=meter_value></meter>
                {meter}
            </span>
            <nav class="actions">
                <button data-testid="new-chat" on:click=move |_| state.new_chat()>"New chat"</button>
                <button data-testid="models" aria-pressed=move || (state.panel.get() == Panel::Models).to_string() on:click=toggle(Panel::Models)>"Models"</button>
                <button data-testid="settings" aria-pressed=move || (state.panel.get() == Panel::Settings).to_string() on:click=toggle(Panel::Settings)>"Settings"</button>
                <button data-testid="constitution" aria-pressed=move || (state.panel.get() == Panel::Constitution).to_string() on:click=toggle(Panel::Constitution)>"Constitution"</button>
                <button data-testid="operator" aria-pressed=move || (state.panel.get() == Panel::Operator).to_string() on:click=toggle(Panel::Operator)>"Operator"</button>
                <button data-testid="under-the-hood" aria-pressed=move || (state.panel.get() == Panel::Hood).to_string() on:click=toggle(Panel::Hood)>"Under the hood"</button>
            </nav>
        </header>
    }
}

#[component]
fn Notice(state: AppState) -> impl IntoView {
    view! {
        <Show when=move || state.notice.get().is_some()>
            <div class="notice" role="alert" data-testid="notice">
                <span>{move || state.notice.get().unwrap_or_default()}</span>
                <button aria-label="Dismiss" on:click=move |_| state.notice.set(None)>"×"</button>
            </div>
        </Show>
    }
}

/// The browser keeps nothing for this page (in another site's frame, where third-party
/// storage is blocked): say what still works and the ways out.
#[component]
fn StorageBlocked(state: AppState) -> impl IntoView {
    view! {
        <Show when=move || state.storage_blocked.get()>
            <div class="notice" role="alert" data-testid="storage-blocked">
                <span>
                    "This browser keeps no storage for Charter inside another site's page, so no model can be kept here. "
                    "Open a .gguf file from your disk (Models), allow storage, or use Charter on its own site."
                </span>
                <span class="row">
                    <button data-testid="storage-access" on:click=move |_| crate::embed::request_storage_access()>"Allow storage"</button>
                    <a data-testid="open-charter" href=crate::embed::app_address() target="_blank" rel="noopener">"Open Charter"</a>
                </span>
            </div>
        </Show>
    }
}

/// A new build is stored: the user reloads into it when they choose.
#[component]
fn UpdateReady() -> impl IntoView {
    let offline = expect_context::<Offline>();
    view! {
        <Show when=move || offline.update_ready.get()>
            <div class="notice update" role="status" data-testid="update-ready">
                <span>"A new version of Charter is ready."</span>
                <button data-testid="update-reload" on:click=move |_| offline.accept_update()>"Reload"</button>
            </div>
        </Show>
    }
}

#[component]
fn ChatList(state: AppState) -> impl IntoView {
    let import_ref = NodeRef::<html::Input>::new();
    let do_export = move |_| {
        let text = export(&state.conversations.get_untracked());
        download_text("charter-conversations.json", &text, "application/json");
    };
    let do_import = move |e: ev::Event| {
        let Some(input) = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        input.set_value("");
        spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text()).await.ok().and_then(|t| t.as_string()).unwrap_or_default();
            match import(&text) {
                Ok(list) => {
                    let n = list.len();
                    for c in list {
                        let _ = crate::idb::save(&c).await;
                    }
                    state.notice.set(Some(format!("Imported {n} conversation(s).")));
                    state.restore();
                }
                Err(e) => state.notice.set(Some(e)),
            }
        });
    };
    view! {
        <aside class="chats" class:open=move || state.panel.get() == Panel::Chats data-testid="conversation-list">
            <ul>
                {move || state.conversations.get().into_iter().map(|c| {
                    let id = c.id.clone();
                    let id_open = c.id.clone();
                    let current = move || state.current.with(|cur| cur.id == id);
                    let delete_id = c.id.clone();
                    view! {
                        <li class:current=current>
                            <button class="title" data-testid="conversation" on:click=move |_| { state.open(&id_open); state.panel.set(Panel::Closed); }>{c.title.clone()}</button>
                            <button class="icon" aria-label="Delete conversation" on:click=move |_| state.delete_conversation(delete_id.clone())>"×"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <div class="row">
                <button data-testid="export" on:click=do_export>"Export"</button>
                <button data-testid="import" on:click=move |_| { if let Some(i) = import_ref.get() { i.click(); } }>"Import"</button>
                <input type="file" accept="application/json,.json" class="hidden" node_ref=import_ref data-testid="import-file" on:change=do_import />
            </div>
        </aside>
    }
}

/// Offers `text` as a file download.
pub(crate) fn download_text(name: &str, text: &str, mime: &str) {
    let parts = js_sys::Array::of1(&text.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options) else { return };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else { return };
    let document = web_sys::window().and_then(|w| w.document());
    if let Some(a) = document.and_then(|d| d.create_element("a").ok()).and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok()) {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

#[component]
fn Messages(state: AppState) -> impl IntoView {
    let list = NodeRef::<html::Div>::new();
    let stick = StoredValue::new(true);
    Effect::new(move |_| {
        state.streaming.track();
        state.current.track();
        if stick.get_value() {
            if let Some(el) = list.get() {
                el.set_scroll_top(el.scroll_height());
            }
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = list.get() {
            stick.set_value(el.scroll_top() + el.client_height() >= el.scroll_height() - 32);
        }
    };
    view! {
        <div class="messages" node_ref=list on:scroll=on_scroll on:click=copy_code data-testid="messages">
            <Show when=move || state.dropped.get() != 0>
                <p class="out-of-view" data-testid="out-of-view">
                    {move || format!("The {} oldest messages are out of the model's view: the conversation has outgrown its context window.", state.dropped.get())}
                </p>
            </Show>
            <Show when=move || state.current.with(|c| c.messages.is_empty()) && state.streaming.get().is_none()>
                <div class="empty" data-testid="empty-chat">
                    <p>"Ask anything. The model runs in this browser; nothing you type leaves this device."</p>
                </div>
            </Show>
            {move || {
                let messages = state.current.get().messages;
                let n = messages.len();
                messages.into_iter().enumerate().map(|(i, m)| message_view(state, m, i + 1 == n)).collect_view()
            }}
            <Show when=move || state.streaming.get().is_some()>
                <article class="message assistant streaming" data-testid="message-assistant" data-streaming="true" aria-busy="true">
                    <StreamingBody state />
                    <footer><span class="dots">"writing…"</span></footer>
                </article>
            </Show>
        </div>
    }
}

/// The reply being written, block by block: a block is rendered once it is settled
/// (a later one has begun), and only the last one again as tokens arrive, so a long
/// reply costs the page the same per token as a short one.
#[component]
fn StreamingBody(state: AppState) -> impl IntoView {
    let parts = Memo::new(move |_| {
        state.streaming.with(|s| {
            let text = s.as_deref().unwrap_or("");
            markdown::blocks(text).into_iter().map(|r| text[r].to_owned()).collect::<Vec<String>>()
        })
    });
    let settled = move || {
        let parts = parts.get();
        let n = parts.len().saturating_sub(1);
        parts.into_iter().take(n).enumerate().collect::<Vec<_>>()
    };
    let live = move || parts.with(|p| p.last().map(|t| markdown::render(t)).unwrap_or_default());
    view! {
        <div class="body">
            <For each=settled key=|(i, text)| (*i, text.clone()) children=|(_, text)| view! { <div class="block" inner_html=markdown::render(&text)></div> } />
            <div class="block" inner_html=live></div>
        </div>
    }
}

/// A code block's Copy button (markup the renderer adds): copies the code beside it.
fn copy_code(e: ev::MouseEvent) {
    let Some(button) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
    if !button.class_list().contains("copy-code") {
        return;
    }
    let code = button.closest("div.code").ok().flatten().and_then(|d| d.query_selector("pre").ok().flatten()).and_then(|pre| pre.text_content());
    if let (Some(code), Some(window)) = (code, web_sys::window()) {
        let _ = window.navigator().clipboard().write_text(&code);
        button.set_text_content(Some("Copied"));
    }
}

fn message_view(state: AppState, m: ChatMessage, last: bool) -> AnyView {
    let text = m.text.clone();
    let copy = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&text);
        }
    };
    match m.role {
        Role::Assistant => {
            let reason = m.stop_reason.clone().unwrap_or_default();
            let tps = m.tokens_per_second.map(|t| format!("{t:.1} tok/s")).unwrap_or_default();
            view! {
                <article class="message assistant" data-testid="message-assistant">
                    <div class="body" inner_html=markdown::render(&m.text)></div>
                    <footer>
                        <span class="stop" data-testid="stop-reason">{reason}</span>
                        <span data-testid="tokens-per-second">{tps}</span>
                        <button class="link" data-testid="copy-message" on:click=copy>"Copy"</button>
                        <Show when=move || last>
                            <button class="link" data-testid="regenerate" on:click=move |_| state.regenerate()>"Regenerate"</button>
                        </Show>
                    </footer>
                </article>
            }
            .into_any()
        }
        _ => view! {
            <article class="message user" data-testid="message-user">
                <div class="body" inner_html=markdown::render(&m.text)></div>
                <footer>
                    <button class="link" data-testid="copy-message" on:click=copy>"Copy"</button>
                    <Show when=move || last || state.current.with(|c| c.messages.iter().rposition(|x| x.role == Role::User) == Some(c.messages.len().saturating_sub(2)))>
                        <button class="link" data-testid="edit-last" on:click=move |_| state.edit_last()>"Edit"</button>
                    </Show>
                </footer>
            </article>
        }
        .into_any(),
    }
}

#[component]
fn Composer(state: AppState) -> impl IntoView {
    let busy = move || state.generating.get().is_some() || state.streaming.get().is_some();
    let ready = move || state.model.get().is_some() && !state.configuring.get();
    view! {
        <form class="composer" on:submit=move |e: ev::SubmitEvent| { e.prevent_default(); state.send_input(); }>
            <textarea
                data-testid="chat-input"
                aria-label="Message"
                rows="2"
                placeholder=move || if ready() { "Message Charter (Enter sends, Shift+Enter for a new line)" } else { "The model is not ready yet…" }
                prop:value=move || state.input.get()
                on:input=move |e| state.input.set(event_target_value(&e))
                on:keydown=move |e: ev::KeyboardEvent| {
                    if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                        e.prevent_default();
                        state.send_input();
                    }
                }
            ></textarea>
            <Show
                when=busy
                fallback=move || view! {
                    <button type="submit" data-testid="send-button" disabled=move || !ready()>"Send"</button>
                }
            >
                <button type="button" data-testid="stop-button" on:click=move |_| state.stop()>"Stop"</button>
            </Show>
        </form>
    }
}

#[component]
fn SidePanel(state: AppState) -> impl IntoView {
    view! {
        <Show when=move || matches!(state.panel.get(), Panel::Settings | Panel::Hood | Panel::Models | Panel::Constitution | Panel::Operator)>
            <aside class="panel">
                <button class="icon close" aria-label="Close panel" on:click=move |_| state.panel.set(Panel::Closed)>"×"</button>
                {move || match state.panel.get() {
                    Panel::Settings => view! { <Settings state /> }.into_any(),
                    Panel::Hood => view! { <Hood state /> }.into_any(),
                    Panel::Models => view! { <Models state /> }.into_any(),
                    Panel::Constitution => view! { <ConstitutionView state /> }.into_any(),
                    Panel::Operator => view! { <OperatorPanel state /> }.into_any(),
                    _ => ().into_any(),
                }}
            </aside>
        </Show>
    }
}

#[component]
fn Settings(state: AppState) -> impl IntoView {
    fn field<T: std::str::FromStr + ToString + Send + Sync + 'static>(
        state: AppState,
        label: &'static str,
        id: &'static str,
        step: &'static str,
        get: fn(&charter_core::GenerateOptions) -> T,
        set: fn(&mut charter_core::GenerateOptions, T),
    ) -> impl IntoView {
        view! {
            <label>
                <span>{label}</span>
                <input
                    type="number"
                    step=step
                    data-testid=id
                    prop:value=move || state.options.with(|o| get(o).to_string())
                    on:change=move |e| {
                        if let Ok(v) = event_target_value(&e).parse::<T>() {
                            state.options.update(|o| set(o, v));
                        }
                    }
                />
            </label>
        }
    }
    view! {
        <section data-testid="settings-panel">
            <h2>"Sampling"</h2>
            {field(state, "Temperature (0 = greedy)", "setting-temperature", "0.05", |o| o.sampling.temperature, |o, v: f32| o.sampling.temperature = v.clamp(0.0, 5.0))}
            {field(state, "Top-p", "setting-top-p", "0.05", |o| o.sampling.top_p, |o, v: f32| o.sampling.top_p = v.clamp(0.0, 1.0))}
            {field(state, "Top-k (0 = off)", "setting-top-k", "1", |o| o.sampling.top_k, |o, v: usize| o.sampling.top_k = v)}
            {field(state, "Repetition penalty", "setting-repetition-penalty", "0.05", |o| o.sampling.repetition_penalty, |o, v: f32| o.sampling.repetition_penalty = v.clamp(0.5, 3.0))}
            {field(state, "Max tokens", "setting-max-tokens", "1", |o| o.max_tokens, |o, v: usize| o.max_tokens = v.clamp(1, 8192))}
            {field(state, "Seed", "setting-seed", "1", |o| o.sampling.seed, |o, v: u64| o.sampling.seed = v)}
            <p class="hint">"The same seed, settings and conversation give the same reply."</p>
            <Preferences state />
            <h2>"Backend"</h2>
            <label>
                <span>"Run the model on"</span>
                <select
                    data-testid="setting-backend"
                    prop:value=move || match state.backend_choice.get() {
                        BackendPreference::Auto => "auto",
                        BackendPreference::Cpu => "cpu",
                        BackendPreference::Gpu => "gpu",
                    }
                    on:change=move |e| {
                        let choice = match event_target_value(&e).as_str() {
                            "cpu" => BackendPreference::Cpu,
                            "gpu" => BackendPreference::Gpu,
                            _ => BackendPreference::Auto,
                        };
                        state.choose_backend(choice);
                    }
                >
                    <option value="auto">"Automatic: the GPU when this device has one"</option>
                    <option value="cpu">"The CPU"</option>
                    <option value="gpu">"The GPU, even a software one"</option>
                </select>
            </label>
            <p data-testid="backend-reason">{move || state.backend.get().map(|b| with_threads(&b)).unwrap_or_default()}</p>
            <p data-testid="backend-kernels">{move || {
                let kernels = state.backend.get().map(|b| b.kernels).unwrap_or_default();
                match state.model.get() {
                    Some(m) => format!("Kernels: {kernels}. The loaded model runs on {}; the worker's memory is {:.0} MB.", m.engine, m.memory_bytes as f64 / 1e6),
                    None => format!("Kernels: {kernels}."),
                }
            }}</p>
            <p data-testid="context-window">{move || state.model.get().map(|m| format!("Context window: {}.", m.context_reason)).unwrap_or_default()}</p>
            <button
                data-testid="speed-test"
                disabled=move || state.model.get().is_none() || state.speed.get() == SpeedTest::Running
                on:click=move |_| state.speed_test()
            >
                "Measure this device's speed"
            </button>
            <p data-testid="speed-result" role="status">{move || match state.speed.get() {
                SpeedTest::NotRun => String::new(),
                SpeedTest::Running => "Measuring…".to_owned(),
                SpeedTest::Done(line) => line,
            }}</p>
            <OfflineReport />
            <Egress state />
        </section>
    }
}

/// The no-egress switch and what is in force.
#[component]
fn Egress(state: AppState) -> impl IntoView {
    let status = move || {
        match (state.no_egress.get(), state.page_sealed.get(), state.worker_sealed.get()) {
            (_, true, Some(origin)) => format!(
                "The network is off: this page and its worker reach only {origin}. A link in a reply opens only when you click it. Switching this off reloads the page."
            ),
            (_, true, None) => "The page is off the network; the worker is being sealed…".to_owned(),
            (true, false, _) => "The network goes off as soon as a model is loaded.".to_owned(),
            (false, _, _) => "Off: the page may reach other sites (downloads of models from Hugging Face).".to_owned(),
        }
    };
    view! {
        <label class="toggle">
            <input type="checkbox" data-testid="setting-no-egress"
                prop:checked=move || state.no_egress.get()
                on:change=move |e| state.choose_no_egress(event_target_checked(&e)) />
            <span>"Keep off the network once a model is loaded"</span>
        </label>
        <p data-testid="egress-status" data-sealed=move || (state.page_sealed.get() && state.worker_sealed.get().is_some()).to_string()>{status}</p>
    }
}

/// Whether the app starts without the network, and whether the page is cross-origin
/// isolated.
#[component]
fn OfflineReport() -> impl IntoView {
    let offline = expect_context::<Offline>();
    let (isolated, why) = offline.isolation.get_value();
    view! {
        <h2>"This app"</h2>
        <p data-testid="offline-status" data-ready=move || matches!(offline.availability.get(), Availability::Ready(_)).to_string()>{move || match offline.availability.get() {
            Availability::Preparing => "Offline use: storing this version of the app…".to_owned(),
            Availability::Ready(version) => format!("Offline use: ready. Version {version} of the app is stored in this browser and starts without the network; stored models load from here too."),
            Availability::Unavailable(why) => format!("Offline use: not available: {why}."),
        }}</p>
        <p data-testid="isolation" data-isolated=isolated.to_string()>{why}</p>
    }
}

#[component]
fn Hood(state: AppState) -> impl IntoView {
    let origin_class = |o: Origin, control: bool| match (o, control) {
        (_, true) => "tok control",
        (Origin::Template, _) => "tok template",
        (Origin::System, _) => "tok system",
        (Origin::User, _) => "tok user",
        (Origin::Assistant, _) => "tok assistant",
    };
    view! {
        <section data-testid="under-the-hood-panel">
            <h2>"The context window"</h2>
            <p class="legend">
                <span class="tok control">"control"</span><span class="tok template">"template"</span>
                <span class="tok system">"system"</span><span class="tok user">"user"</span>
                <span class="tok assistant">"assistant"</span><span class="tok stop">"stop token"</span>
            </p>
            <p>{move || format!("{} prompt tokens, {} reply tokens", state.context_tokens.get().len(), state.reply_tokens.get().len())}</p>
            <div class="tokens" data-testid="hood-tokens">
                {move || {
                    let mut previous: Option<String> = None;
                    let mut parity = false;
                    state.context_tokens.get().into_iter().map(|t| {
                        let starts_unit = t.unit.is_some() && t.unit != previous;
                        if starts_unit {
                            parity = !parity;
                        }
                        previous = t.unit.clone();
                        let class = match &t.unit {
                            Some(_) => format!("{} unit-{}", origin_class(t.origin, t.control), if parity { "a" } else { "b" }),
                            None => origin_class(t.origin, t.control).to_owned(),
                        };
                        let title = match &t.unit {
                            Some(u) => format!("id {} · {u}", t.id),
                            None => format!("id {}", t.id),
                        };
                        let label = starts_unit.then(|| view! {
                            <span class="unit-label" data-testid="hood-unit-label">{t.unit.clone().unwrap_or_default()}</span>
                        });
                        view! {
                            {label}
                            <span class=class title=title data-testid="hood-token" data-unit=t.unit.clone()>{t.text}</span>
                        }
                    }).collect_view()
                }}
                {move || {
                    let stop = state.last_stop.get().map(|s| s.id);
                    let tokens = state.reply_tokens.get();
                    let n = tokens.len();
                    tokens.into_iter().enumerate().map(|(i, t)| {
                        let is_stop = i + 1 == n && stop == Some(t.id);
                        let class = if is_stop { "tok stop" } else { origin_class(t.origin, t.control) };
                        view! {
                            <span class=class title=format!("id {}", t.id) data-testid=if is_stop { "hood-stop-token" } else { "hood-token" }>{t.text}</span>
                        }
                    }).collect_view()
                }}
            </div>
            <h3>"Charter's system block, unit by unit"</h3>
            <table class="small" data-testid="hood-units">
                <thead><tr><th>"unit"</th><th>"form"</th><th>"tokens"</th></tr></thead>
                <tbody>
                    {move || {
                        let tokens = state.context_tokens.get();
                        state.model.get().and_then(|m| m.system_block).map(|b| {
                            let mut rows: Vec<(String, String)> = b.units.iter().map(|u| (u.id.clone(), u.form.as_str().to_owned())).collect();
                            if b.operator_block {
                                rows.push((charter_core::constitution::OPERATOR_UNIT.to_owned(), "as written".to_owned()));
                            }
                            rows.into_iter().map(|(id, form)| {
                                let n = tokens.iter().filter(|t| t.unit.as_deref() == Some(id.as_str())).count();
                                view! { <tr data-testid="hood-unit-row" data-unit-id=id.clone()><td>{id.clone()}</td><td>{form}</td><td>{if tokens.is_empty() { "–".to_owned() } else { n.to_string() }}</td></tr> }
                            }).collect_view()
                        })
                    }}
                </tbody>
            </table>
            <h3>"Masked in every reply"</h3>
            <p class="tokens small" data-testid="hood-masked">
                {move || state.model.get().map(|m| m.masked_tokens.into_iter().map(|t| view! { <span class="tok control" title=format!("id {}", t.id)>{t.text}</span> }).collect_view())}
            </p>
            <p class="small">{move || state.model.get().map(|m| format!("Ends a reply: {}; stop strings: {:?}", m.stop_tokens.iter().map(|t| t.text.clone()).collect::<Vec<_>>().join(" "), m.stop_strings))}</p>
            <h3>"What the model expects the user to say"</h3>
            <label class="toggle">
                <input type="checkbox" data-testid="predict-user-toggle" prop:checked=move || state.predict_user.get() on:change=move |e| state.predict_user.set(event_target_checked(&e)) />
                " After each reply, show the model's guess at your next message (raw transcript mode; shown here only, never sent back to the model)"
            </label>
            <Show when=move || state.predicted.get().is_some()>
                <pre class="predicted" data-testid="predicted-user">{move || state.predicted.get().unwrap_or_default()}</pre>
            </Show>
        </section>
    }
}

#[component]
fn Models(state: AppState) -> impl IntoView {
    let on_file = move |e: ev::Event| {
        let Some(input) = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            state.load_file(file);
        }
        input.set_value("");
    };
    view! {
        <section data-testid="models-panel">
            <h2>"Models"</h2>
            <ul class="models">
                {catalog().into_iter().map(|m| {
                    let url = model_url(&m);
                    let url_stored = url.clone();
                    let stored = move || state.stored.get().iter().any(|s| s.url == url_stored);
                    let (m_dl, url_load, url_del) = (m.clone(), url.clone(), url.clone());
                    view! {
                        <li data-testid="catalog-model" data-model-id=m.id.clone()>
                            <strong>{m.name.clone()}</strong>
                            <span class="small">{format!(" {} · {} · {}", m.quantization, format::bytes(m.size_bytes), m.license)}</span>
                            <div class="row">
                                <Show when=stored.clone() fallback=move || { let m = m_dl.clone(); view! {
                                    <button data-testid="download-model" on:click=move |_| state.download(&m)>"Download"</button>
                                }}>
                                    <button data-testid="load-model" on:click={ let u = url_load.clone(); move |_| state.load_stored(u.clone()) }>"Load"</button>
                                    <button data-testid="delete-model" on:click={ let u = url_del.clone(); move |_| state.delete_stored(u.clone()) }>"Delete"</button>
                                </Show>
                            </div>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <h3>"Stored in this browser"</h3>
            <ul data-testid="stored-models">
                {move || state.stored.get().into_iter().map(|s| view! {
                    <li data-testid="stored-model">{format!("{} · {}", s.url.rsplit('/').next().unwrap_or(&s.url), format::bytes(s.size))}</li>
                }).collect_view()}
            </ul>
            <h3>"From your disk"</h3>
            <p class="small">"A .gguf file opened here (or dropped on the page) is read in this browser and never uploaded."</p>
            <input type="file" accept=".gguf" data-testid="model-file" on:change=on_file />
        </section>
    }
}

#[component]
fn ConstitutionView(state: AppState) -> impl IntoView {
    let constitution = charter_core::constitution::Constitution::builtin().ok();
    let units = constitution.map(|c| c.units).unwrap_or_default();
    let summary = move || match state.model.get().and_then(|m| m.system_block) {
        Some(b) => format!(
            "{} of {} tokens in the system block, {} units. {}",
            b.tokens,
            b.budget,
            b.units.len(),
            if b.restored {
                "The model's state after it was restored from this browser's storage."
            } else {
                "It was run through the model once, at load; the state after it is kept for the next load."
            }
        ),
        None => "Load a model to see what fits its budget.".to_owned(),
    };
    view! {
        <section data-testid="constitution-panel">
            <h2>"Charter's constitution"</h2>
            <p class="small">"Charter composes the most important parts of its constitution that fit the model's budget and puts them first in every conversation; the operator's instructions come after, then yours. Nothing you type can pose as either."</p>
            <p data-testid="constitution-budget">{summary}</p>
            <p class="small" data-testid="constitution-layers">{move || {
                let op = state.operator.get();
                let mut parts = Vec::new();
                match &op {
                    Some(o) => {
                        let source = match (state.operator_deployed.get(), crate::embed::is_widget()) {
                            (true, true) => "set by the page that embeds Charter",
                            (true, false) => "deployed with this site",
                            _ => "set on this device",
                        };
                        parts.push(format!("Operator settings {source}."));
                        if !o.disable.is_empty() {
                            parts.push(format!("Switched off by the operator: {}.", o.disable.join(", ")));
                        }
                    }
                    None => parts.push("No operator settings.".to_owned()),
                }
                let user = state.user_settings.get();
                if !user.disable.is_empty() {
                    parts.push(format!("Switched off by you: {}.", user.disable.join(", ")));
                }
                parts.join(" ")
            }}</p>
            <ul class="units">
                {units.into_iter().map(|u| {
                    let id = u.id.clone();
                    let included = Signal::derive(move || state.model.get().and_then(|m| m.system_block).and_then(|b| b.units.into_iter().find(|x| x.id == id)));
                    let text = u.forms.values().last().cloned().unwrap_or_default();
                    view! {
                        <li data-testid="constitution-unit" data-unit-id=u.id.clone() class:included=move || included.get().is_some()>
                            <strong>{u.id.clone()}</strong>
                            <span class="small">{format!(" · {:?} · {:?}", u.kind, u.tier).to_lowercase()}</span>
                            <span class="small" data-testid="unit-inclusion">{move || match included.get() {
                                Some(x) => format!(" · in the prompt: {} form, {} tokens", x.form.as_str(), x.tokens),
                                None => " · not in the prompt".to_owned(),
                            }}</span>
                            <p class="small">{text}</p>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}
