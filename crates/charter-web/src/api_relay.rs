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

/// The id of the relay's own seal request, far above any id the API uses.
const SEAL_ID: u64 = (1 << 53) - 1;

struct Relay {
    port: MessagePort,
    worker: RefCell<Option<Worker>>,
    /// Whether to seal the worker once a model is loaded.
    keep_off_network: bool,
    sealed: Cell<bool>,
    /// Whether the running worker said it is ready (a relaxed build that fails before
    /// then gives way to the SIMD128 one).
    ready: Cell<bool>,
    /// Requests that came before it was: a worker reads none until its module has
    /// started, and a message it gets earlier is lost.
    queued: RefCell<Vec<String>>,
    relaxed: Cell<bool>,
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
        relaxed: Cell::new(crate::simd::relaxed_supported()),
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

    fn spawn(self: &Rc<Self>) {
        self.ready.set(false);
        let url = if self.relaxed.get() { "./charter-worker-relaxed_loader.js" } else { "./charter-worker_loader.js" };
        let worker = match Worker::new(url) {
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
            if let Some(old) = relay.worker.take() {
                old.terminate();
            }
            relay.sealed.set(false);
            if relay.relaxed.get() && !relay.ready.get() {
                // The relaxed build cannot run here; the SIMD128 one reads what was queued.
                relay.relaxed.set(false);
                return relay.spawn();
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
