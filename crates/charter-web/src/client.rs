//! The UI's end of the worker: starts it, sends requests, routes events, and starts a
//! new one when it dies. One worker per page; it lives in a thread-local because the
//! browser objects it holds are not `Send`.
//!
//! The worker comes in three builds ([`WorkerBuild`]): with threads on shared memory
//! (started where the page is cross-origin isolated and the browser has relaxed SIMD),
//! with relaxed SIMD's integer dot product on one thread, and with SIMD128 only. A
//! build that dies before it is ready, or is not ready within [`START_MS`] (a module
//! that fails to compile rejects a promise inside the worker, which no error event
//! reports), is not tried again: the page falls back to the next one, and tells it why
//! where that costs it threads.

use std::cell::{Cell, RefCell};

use charter_protocol::{decode, encode, Envelope, Event, Request};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, MessageEvent, Worker};

use crate::simd::{START_MS, WorkerBuild};

type Listener = Box<dyn Fn(u64, Event)>;
type DeathListener = Box<dyn Fn(String)>;

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    static LISTENER: RefCell<Option<Listener>> = const { RefCell::new(None) };
    static ON_DEATH: RefCell<Option<DeathListener>> = const { RefCell::new(None) };
    /// The build to start.
    static BUILD: Cell<WorkerBuild> = const { Cell::new(WorkerBuild::Simd128) };
    /// Why a single-thread build runs where the page could share memory, for it to say.
    static NOTE: RefCell<Option<String>> = const { RefCell::new(None) };
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
    BUILD.with(|b| b.set(WorkerBuild::best()));
    spawn()
}

fn spawn() -> Result<(), String> {
    READY.with(|r| r.set(false));
    let generation = SPAWNED.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    let build = BUILD.with(Cell::get);
    let worker = NOTE.with(|n| build.start(n.borrow().as_deref())).map_err(|e| format!("the inference worker could not start: {e:?}"))?;
    if build.fallback().is_some() {
        let watchdog = Closure::once_into_js(move || {
            if SPAWNED.with(Cell::get) == generation && !READY.with(Cell::get) {
                died(format!("the {} worker was not ready after {} s", build.name(), START_MS / 1000));
            }
        });
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(watchdog.unchecked_ref(), START_MS);
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
    let build = BUILD.with(Cell::get);
    if let (false, Some(next)) = (READY.with(Cell::get), build.fallback()) {
        web_sys::console::warn_1(&format!("the {} worker did not start ({reason}); using the {} build", build.name(), next.name()).into());
        if let Some(note) = build.note_after_failure(&reason) {
            NOTE.with(|n| *n.borrow_mut() = Some(note));
        }
        BUILD.with(|b| b.set(next));
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
