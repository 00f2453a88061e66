//! The UI's end of the worker: starts it, sends requests, routes events, and starts a
//! new one when it dies. One worker per page; it lives in a thread-local because the
//! browser objects it holds are not `Send`.
//!
//! The worker comes in two builds: with relaxed SIMD's integer dot product (started
//! where the browser validates relaxed SIMD) and with SIMD128 only. A relaxed build that
//! dies before it is ready, or is not ready within [`RELAXED_START_MS`] (a module that
//! fails to compile rejects a promise inside the worker, which no error event reports),
//! is not tried again: the page falls back to the SIMD128 one.

use std::cell::{Cell, RefCell};

use charter_protocol::{decode, encode, Envelope, Event, Request};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker};

/// Where Trunk puts the loader of the SIMD128 build of the worker.
const WORKER_URL: &str = "./charter-worker_loader.js";
/// And of the relaxed-SIMD build.
const RELAXED_WORKER_URL: &str = "./charter-worker-relaxed_loader.js";
/// How long a relaxed-SIMD worker may take to say it is ready before the page gives up
/// on it. Starting takes well under a second; only a build that cannot run takes this.
const RELAXED_START_MS: i32 = 10_000;

type Listener = Box<dyn Fn(u64, Event)>;
type DeathListener = Box<dyn Fn(String)>;

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    static LISTENER: RefCell<Option<Listener>> = const { RefCell::new(None) };
    static ON_DEATH: RefCell<Option<DeathListener>> = const { RefCell::new(None) };
    /// Whether to start the relaxed-SIMD build.
    static RELAXED: Cell<bool> = const { Cell::new(false) };
    /// Whether the running worker has said it is ready.
    static READY: Cell<bool> = const { Cell::new(false) };
    /// Counts the workers started, so a timer knows whether its worker still runs.
    static SPAWNED: Cell<u64> = const { Cell::new(0) };
}

/// Starts the worker; `on_event` receives every event, `on_death` a description when
/// the worker dies (it is then restarted and sends a new `Ready`).
pub fn start(on_event: impl Fn(u64, Event) + 'static, on_death: impl Fn(String) + 'static) -> Result<(), String> {
    LISTENER.with(|l| *l.borrow_mut() = Some(Box::new(on_event)));
    ON_DEATH.with(|l| *l.borrow_mut() = Some(Box::new(on_death)));
    RELAXED.with(|r| r.set(crate::simd::relaxed_supported()));
    spawn()
}

fn spawn() -> Result<(), String> {
    READY.with(|r| r.set(false));
    let generation = SPAWNED.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    let relaxed = RELAXED.with(Cell::get);
    let url = if relaxed { RELAXED_WORKER_URL } else { WORKER_URL };
    let worker = Worker::new(url).map_err(|e| format!("the inference worker could not start: {e:?}"))?;
    if relaxed {
        let watchdog = Closure::once_into_js(move || {
            if SPAWNED.with(Cell::get) == generation && !READY.with(Cell::get) {
                died(format!("the relaxed-SIMD worker was not ready after {} s", RELAXED_START_MS / 1000));
            }
        });
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(watchdog.unchecked_ref(), RELAXED_START_MS);
        }
    }
    let on_message = Closure::<dyn Fn(MessageEvent)>::new(|message: MessageEvent| {
        let Some(text) = message.data().as_string() else { return };
        match decode::<Event>(&text) {
            Ok(Envelope { id, body, .. }) => LISTENER.with(|l| {
                if matches!(body, Event::Ready { .. }) {
                    READY.with(|r| r.set(true));
                }
                if let Some(listener) = l.borrow().as_ref() {
                    listener(id, body);
                }
            }),
            Err(e) => died(e.to_string()),
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let on_error = Closure::<dyn Fn(ErrorEvent)>::new(|event: ErrorEvent| {
        event.prevent_default();
        died(event.message());
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    WORKER.with(|w| *w.borrow_mut() = Some(worker));
    Ok(())
}

/// The worker crashed (a panic, out of memory): end it, tell the app, start a new one.
fn died(reason: String) {
    if let Some(old) = WORKER.with(|w| w.borrow_mut().take()) {
        old.terminate();
    }
    if !READY.with(Cell::get) && RELAXED.with(|r| r.replace(false)) {
        web_sys::console::warn_1(&format!("the relaxed-SIMD worker did not start ({reason}); using the SIMD128 build").into());
    }
    ON_DEATH.with(|l| {
        if let Some(listener) = l.borrow().as_ref() {
            listener(reason);
        }
    });
    if let Err(e) = spawn() {
        web_sys::console::error_1(&e.into());
    }
}

/// Sends a request; returns its id.
pub fn send(request: Request) -> u64 {
    send_with(request, None)
}

/// Sends a request with a browser object beside it (a `File`).
pub fn send_with(request: Request, attachment: Option<JsValue>) -> u64 {
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    let text = JsValue::from_str(&encode(&Envelope::new(id, request)));
    let message = match attachment {
        Some(a) => js_sys::Array::of2(&text, &a).into(),
        None => text,
    };
    WORKER.with(|w| {
        if let Some(worker) = w.borrow().as_ref() {
            let _ = worker.post_message(&message);
        }
    });
    id
}
