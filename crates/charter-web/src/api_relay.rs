//! The widget's JS API, on the frame's side: `window.Charter.LanguageModel` on the host
//! page speaks the worker protocol over the MessagePort that came with the widget's
//! configuration ([`crate::embed::hello`]), and this relay passes its requests to a
//! worker of their own, never to the panel's: the host's sessions set their own layers,
//! and the panel's conversation stays out of the host's reach. The models are the
//! frame's, from its storage.
//!
//! Only what the API needs goes through: downloads of a model the catalog names or from
//! the frame's own origin, loads from storage, replies (never in raw-transcript mode, and
//! never the model's guess at the user's next words), cancels, layers, counts and speed
//! tests. The relay seals its worker once a model is loaded when the frame keeps off the
//! network, and, when the worker dies, starts another and says so on the port.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use charter_protocol::{decode, encode, Envelope, ErrorKind, Event, ModelSource, Request, WorkerError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, MessagePort, Worker};

use crate::simd::{START_MS, WorkerBuild};

/// The id of the relay's own seal request, far above any id the API uses.
const SEAL_ID: u64 = (1 << 53) - 1;

struct Relay {
    port: MessagePort,
    worker: RefCell<Option<Worker>>,
    /// Whether to seal the worker once a model is loaded.
    keep_off_network: bool,
    sealed: Cell<bool>,
    /// Whether the running worker said it is ready (a build that fails before then
    /// gives way to the next, `WorkerBuild::fallback`).
    ready: Cell<bool>,
    /// Requests that came before it was: a worker reads none until its module has
    /// started, and a message it gets earlier is lost.
    queued: RefCell<Vec<String>>,
    build: Cell<WorkerBuild>,
    /// Why a single-thread build runs where threads could (for its backend report).
    note: RefCell<Option<String>>,
    /// Workers started, so a start's watchdog knows whether its worker still runs.
    spawned: Cell<u64>,
}

/// Serves the API on `port` for as long as the frame lives.
pub fn serve(port: MessagePort) {
    let relay = Rc::new(Relay {
        port,
        worker: RefCell::new(None),
        keep_off_network: crate::egress::wanted(),
        sealed: Cell::new(false),
        ready: Cell::new(false),
        queued: RefCell::new(Vec::new()),
        build: Cell::new(WorkerBuild::best()),
        note: RefCell::new(None),
        spawned: Cell::new(0),
    });
    let handler = relay.clone();
    let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |e: MessageEvent| handler.request(e.data().as_string()));
    relay.port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
}

impl Relay {
    fn reply(&self, id: u64, event: Event) {
        let _ = self.port.post_message(&JsValue::from_str(&encode(&Envelope::new(id, event))));
    }

    fn refuse(&self, id: u64, kind: ErrorKind, message: impl Into<String>) {
        self.reply(id, Event::Error { error: WorkerError::new(kind, message) });
    }

    fn request(self: &Rc<Self>, text: Option<String>) {
        let Some(text) = text else { return self.refuse(0, ErrorKind::Protocol, "a message that is not protocol text") };
        let envelope = match decode::<Request>(&text) {
            Ok(envelope) => envelope,
            Err(e) => return self.refuse(0, ErrorKind::Protocol, e.to_string()),
        };
        if let Err(why) = allowed(&envelope.body) {
            return self.refuse(envelope.id, ErrorKind::Protocol, why);
        }
        self.forward(&text);
    }

    fn forward(self: &Rc<Self>, text: &str) {
        if self.worker.borrow().is_none() {
            self.spawn();
        }
        if !self.ready.get() {
            return self.queued.borrow_mut().push(text.to_owned());
        }
        if let Some(worker) = self.worker.borrow().as_ref() {
            let _ = worker.post_message(&JsValue::from_str(text));
        }
    }

    /// A worker that is not ready yet failed: the next build starts and reads what was
    /// queued. False where there is no next build (or it was ready: a crash).
    fn start_next(self: &Rc<Self>, reason: &str) -> bool {
        let build = self.build.get();
        let (false, Some(next)) = (self.ready.get(), build.fallback()) else { return false };
        if let Some(old) = self.worker.take() {
            old.terminate();
        }
        if let Some(note) = build.note_after_failure(reason) {
            self.note.replace(Some(note));
        }
        self.build.set(next);
        self.spawn();
        true
    }

    fn spawn(self: &Rc<Self>) {
        self.ready.set(false);
        self.spawned.set(self.spawned.get() + 1);
        if let Some(window) = web_sys::window().filter(|_| self.build.get().fallback().is_some()) {
            let (relay, generation) = (self.clone(), self.spawned.get());
            let watchdog = Closure::once_into_js(move || {
                if relay.spawned.get() == generation && !relay.ready.get() {
                    relay.start_next(&format!("not ready after {} s", START_MS / 1000));
                }
            });
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(watchdog.unchecked_ref(), START_MS);
        }
        let worker = match self.build.get().start(self.note.borrow().as_deref()) {
            Ok(worker) => worker,
            Err(e) => return self.refuse(0, ErrorKind::Internal, format!("the API's worker could not start: {e:?}")),
        };
        let relay = self.clone();
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else { return };
            let Ok(Envelope { id, body, .. }) = decode::<Event>(&text) else { return };
            match &body {
                Event::Ready { .. } => {
                    relay.ready.set(true);
                    if let Some(worker) = relay.worker.borrow().as_ref() {
                        for text in relay.queued.take() {
                            let _ = worker.post_message(&JsValue::from_str(&text));
                        }
                    }
                }
                Event::Sealed { .. } if id == SEAL_ID => return,
                Event::Loaded { .. } if relay.keep_off_network && !relay.sealed.get() => {
                    relay.sealed.set(true);
                    if let Some(worker) = relay.worker.borrow().as_ref() {
                        let _ = worker.post_message(&JsValue::from_str(&encode(&Envelope::new(SEAL_ID, Request::Seal))));
                    }
                }
                _ => {}
            }
            let _ = relay.port.post_message(&JsValue::from_str(&text));
        });
        let relay = self.clone();
        let on_error = Closure::<dyn Fn(ErrorEvent)>::new(move |e: ErrorEvent| {
            e.prevent_default();
            relay.sealed.set(false);
            if relay.start_next(&e.message()) {
                return;
            }
            if let Some(old) = relay.worker.take() {
                old.terminate();
            }
            relay.queued.take();
            // The API's requests to the old worker fail with this; the next ones start a new one.
            relay.refuse(0, ErrorKind::Internal, format!("the API's worker failed ({}); a new one starts", e.message()));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_message.forget();
        on_error.forget();
        self.worker.replace(Some(worker));
    }
}

/// Whether the host page may send `request` through the widget.
fn allowed(request: &Request) -> Result<(), String> {
    let refused = |what: &str| Err(format!("the widget's API does not offer {what}"));
    match request {
        Request::Download { model } if !fetchable(&model.url) => {
            Err(format!("the widget's API downloads only the models in Charter's catalog, not {}", model.url))
        }
        Request::Load { source: ModelSource::File { .. }, .. } => refused("loading a local file"),
        Request::Generate { predict_user: true, .. } => refused("the model's guess at the user's next words"),
        Request::Generate { options, .. } if options.raw => refused("raw-transcript mode"),
        Request::Seal => refused("sealing: the frame seals its worker itself"),
        Request::Delete { .. } => refused("deleting stored models"),
        _ => Ok(()),
    }
}

/// A model the catalog names, or one from the frame's own origin.
fn fetchable(url: &str) -> bool {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    let same_origin = web_sys::Url::new(url).is_ok_and(|u| u.origin() == origin);
    same_origin || crate::state::catalog().iter().any(|m| m.url == url)
}
