//! The installable, offline app from the page's side: registers the service worker
//! (`public/sw.js`, written into `dist/` by `cargo xtask build-web`), says when a new
//! build is ready and switches to it only when the user asks, and reports whether the
//! page is cross-origin isolated. The service worker keeps the app's shell; models stay
//! in the worker's own model store.

use js_sys::{Function, Reflect};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageChannel, MessageEvent, RegistrationOptions, ServiceWorker, ServiceWorkerContainer, ServiceWorkerRegistration, ServiceWorkerState,
    ServiceWorkerUpdateViaCache,
};

/// How often an open app asks the server for a new build (the browser also asks on
/// every start).
const UPDATE_CHECK_MS: i32 = 60 * 60 * 1000;

/// Whether the app can start without the network.
#[derive(Clone, Debug, PartialEq)]
pub enum Availability {
    /// Registering, or the first build still being stored.
    Preparing,
    /// This build is stored and serves the page; the version names it.
    Ready(String),
    /// Offline starts are not available, and why.
    Unavailable(String),
}

/// The offline app's signals.
#[derive(Clone, Copy)]
pub struct Offline {
    /// Whether the app starts offline.
    pub availability: RwSignal<Availability>,
    /// A new build is stored and waits for the user to reload into it.
    pub update_ready: RwSignal<bool>,
    /// Whether the page is cross-origin isolated, and why or why not; fixed at start.
    pub isolation: StoredValue<(bool, String)>,
    /// The registration, once it exists.
    registration: StoredValue<Option<ServiceWorkerRegistration>, LocalStorage>,
    /// Set when the user accepted the update: the next change of controller reloads.
    accepted: StoredValue<bool>,
}

impl Offline {
    /// Registers the service worker and follows it.
    pub fn start() -> Self {
        let offline = Offline {
            availability: RwSignal::new(Availability::Preparing),
            update_ready: RwSignal::new(false),
            isolation: StoredValue::new(isolation()),
            registration: StoredValue::new_local(None),
            accepted: StoredValue::new(false),
        };
        spawn_local(async move {
            if let Err(reason) = offline.register().await {
                offline.availability.set(Availability::Unavailable(reason));
            }
        });
        offline
    }

    /// Switches to the waiting build: it takes over, and the page reloads under it.
    pub fn accept_update(&self) {
        let waiting = self.registration.with_value(|r| r.as_ref().and_then(ServiceWorkerRegistration::waiting));
        if let Some(worker) = waiting {
            self.accepted.set_value(true);
            let _ = worker.post_message(&JsValue::from_str("charter-activate"));
        }
    }

    async fn register(self) -> Result<(), String> {
        let window = web_sys::window().ok_or("no window")?;
        let navigator = window.navigator();
        // `navigator.serviceWorker` is missing outside secure contexts (http:// other than
        // loopback) and in some private modes.
        let present = Reflect::has(&navigator, &"serviceWorker".into()).unwrap_or(false);
        if !present || !window.is_secure_context() {
            return Err("this page is not a secure context (it needs https:// or a loopback address), so the browser offers no service worker".into());
        }
        let container: ServiceWorkerContainer = navigator.service_worker();
        let options = RegistrationOptions::new();
        options.set_scope("./");
        options.set_update_via_cache(ServiceWorkerUpdateViaCache::None);
        let registration: ServiceWorkerRegistration = JsFuture::from(container.register_with_options("sw.js", &options))
            .await
            .map_err(|e| format!("the service worker could not be registered ({}); a build made without `cargo xtask build-web` has none", describe(&e)))?
            .unchecked_into();
        self.registration.set_value(Some(registration.clone()));

        let on_controller = Closure::<dyn FnMut()>::new(move || {
            if self.accepted.get_value() {
                let _ = web_sys::window().map(|w| w.location().reload());
            } else {
                spawn_local(self.ask_version());
            }
        });
        container.set_oncontrollerchange(Some(on_controller.as_ref().unchecked_ref()));
        on_controller.forget();

        let reg = registration.clone();
        let on_update = Closure::<dyn FnMut()>::new(move || {
            if let Some(installing) = reg.installing() {
                self.follow(installing);
            }
        });
        registration.set_onupdatefound(Some(on_update.as_ref().unchecked_ref()));
        on_update.forget();
        if let Some(installing) = registration.installing() {
            self.follow(installing);
        }
        self.note_waiting();

        let reg = registration.clone();
        let check = Closure::<dyn FnMut()>::new(move || {
            if let Ok(promise) = reg.update() {
                spawn_local(async move {
                    let _ = JsFuture::from(promise).await;
                });
            }
        });
        let _ = window.set_interval_with_callback_and_timeout_and_arguments_0(check.as_ref().unchecked_ref(), UPDATE_CHECK_MS);
        check.forget();

        self.ask_version().await;
        Ok(())
    }

    /// Watches a build being installed: the first one makes the app ready offline, a
    /// later one (while a build serves the page) waits for the user.
    fn follow(self, worker: ServiceWorker) {
        let seen = worker.clone();
        let on_state = Closure::<dyn FnMut()>::new(move || match seen.state() {
            ServiceWorkerState::Installed => self.note_waiting(),
            ServiceWorkerState::Redundant if self.availability.get_untracked() == Availability::Preparing => self
                .availability
                .set(Availability::Unavailable("the app's files could not be stored for offline use (the network failed, or the browser's storage is full)".into())),
            _ => {}
        });
        worker.set_onstatechange(Some(on_state.as_ref().unchecked_ref()));
        on_state.forget();
    }

    fn note_waiting(&self) {
        let controlled = web_sys::window().is_some_and(|w| w.navigator().service_worker().controller().is_some());
        let waiting = self.registration.with_value(|r| r.as_ref().is_some_and(|r| r.waiting().is_some()));
        if waiting && controlled {
            self.update_ready.set(true);
        }
    }

    /// Asks the build that serves the page for its version.
    async fn ask_version(self) {
        let Some(controller) = web_sys::window().and_then(|w| w.navigator().service_worker().controller()) else { return };
        let Ok(channel) = MessageChannel::new() else { return };
        let reply = js_sys::Promise::new(&mut |resolve: Function, _reject: Function| {
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let _ = resolve.call1(&JsValue::NULL, &e.data());
            });
            channel.port1().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            on_message.forget();
        });
        let ports = js_sys::Array::of1(&channel.port2());
        if controller.post_message_with_transferable(&JsValue::from_str("charter-version"), &ports).is_err() {
            return;
        }
        if let Some(version) = JsFuture::from(reply).await.ok().and_then(|v| v.as_string()) {
            self.availability.set(Availability::Ready(version));
        }
    }
}

/// Whether the page is cross-origin isolated (what shared memory, and so threads, need),
/// and in words why or why not. Read before the service worker registers: whether it
/// served this page is part of the answer.
fn isolation() -> (bool, String) {
    let Some(window) = web_sys::window() else { return (false, String::new()) };
    let isolated = Reflect::get(&window, &"crossOriginIsolated".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
    let controlled = Reflect::has(&window.navigator(), &"serviceWorker".into()).unwrap_or(false) && window.navigator().service_worker().controller().is_some();
    let text = if isolated {
        "This page is cross-origin isolated: the worker may share memory between threads.".to_owned()
    } else if controlled {
        "This page is not cross-origin isolated, though the offline worker serves it: the site's own Cross-Origin-Embedder-Policy header turns it off.".to_owned()
    } else {
        "This page is not cross-origin isolated: the server sends no Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp headers. The offline worker adds them from the next start.".to_owned()
    };
    (isolated, text)
}

fn describe(error: &JsValue) -> String {
    Reflect::get(error, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{error:?}"))
}
