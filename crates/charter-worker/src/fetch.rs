//! Downloads a model with progress, resuming with an HTTP Range request after a
//! dropped connection, verifying as it goes. This is the only place the worker reaches
//! the network, so it is also where a sealed worker ([`seal`]) keeps to its own origin.

use charter_protocol::{ErrorKind, ModelRef, WorkerError};
use std::cell::Cell;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ReadableStreamDefaultReader, RequestInit, RequestMode, Response};

use crate::js::{describe, now, scope, sleep};
use crate::verify::Download;

/// Attempts in a row without progress before giving up.
const MAX_ATTEMPTS: u32 = 6;

thread_local! {
    /// Whether the worker keeps to its own origin.
    static SEALED: Cell<bool> = const { Cell::new(false) };
}

/// From now on, fetch only from the worker's own origin (for as long as the worker
/// lives); returns that origin.
pub fn seal() -> String {
    SEALED.with(|s| s.set(true));
    scope().location().origin()
}

/// Refuses a URL of another origin once the worker is sealed.
pub fn check_sealed(url: &str) -> Result<(), WorkerError> {
    if !SEALED.with(Cell::get) {
        return Ok(());
    }
    let own = scope().location().origin();
    let theirs = web_sys::Url::new_with_base(url, &scope().location().href()).map(|u| u.origin()).unwrap_or_default();
    if theirs == own {
        return Ok(());
    }
    Err(WorkerError::new(
        ErrorKind::Sealed,
        format!("this page keeps off the network once a model is loaded, so it cannot download from {theirs}; switch off \"Keep off the network\" in Settings (the page reloads) to download it"),
    ))
}

/// Fetches `model`, calling `progress(done, total)` now and then. Returns the verified
/// bytes and their SHA-256.
pub async fn download(model: &ModelRef, mut progress: impl FnMut(u64, Option<u64>)) -> Result<(Vec<u8>, String), WorkerError> {
    check_sealed(&model.url)?;
    let mut download = Download::new(model.size, model.sha256.clone());
    let mut total = model.size;
    let mut failures = 0;
    let mut last_report = 0.0;
    loop {
        match attempt(model, &mut download, &mut total, &mut progress, &mut last_report).await {
            Ok(()) => break,
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Dropped(reason)) => {
                failures += 1;
                if failures >= MAX_ATTEMPTS {
                    return Err(WorkerError::new(
                        ErrorKind::Network,
                        format!("the download of {} stopped at {} bytes and did not resume after {MAX_ATTEMPTS} tries ({reason}); try again when the connection is back", model.name, download.received()),
                    ));
                }
                sleep(250 * (1 << failures.min(4))).await;
            }
            Err(Attempt::Progressed) => failures = 0,
        }
    }
    progress(download.received(), total);
    download.finish()
}

enum Attempt {
    /// Retry after a pause.
    Dropped(String),
    /// Retry at once: the connection dropped after making progress.
    Progressed,
    Fatal(WorkerError),
}

async fn attempt(
    model: &ModelRef,
    download: &mut Download,
    total: &mut Option<u64>,
    progress: &mut impl FnMut(u64, Option<u64>),
    last_report: &mut f64,
) -> Result<(), Attempt> {
    let init = RequestInit::new();
    if SEALED.with(Cell::get) {
        // The browser's own check too: a same-origin URL that redirects elsewhere fails.
        init.set_mode(RequestMode::SameOrigin);
    }
    let resume_from = download.received();
    if resume_from > 0 {
        let headers = web_sys::Headers::new().map_err(|e| Attempt::Dropped(describe(&e)))?;
        let _ = headers.set("range", &format!("bytes={resume_from}-"));
        init.set_headers(&headers);
    }
    let response: Response = match wasm_bindgen_futures::JsFuture::from(scope().fetch_with_str_and_init(&model.url, &init)).await {
        Ok(r) => r.unchecked_into(),
        Err(e) => return Err(Attempt::Dropped(describe(&e))),
    };
    match response.status() {
        206 if resume_from > 0 => {}
        200 => {
            download.restart();
            if let Some(len) = response.headers().get("content-length").ok().flatten().and_then(|s| s.parse().ok()) {
                total.get_or_insert(len);
            }
        }
        status if status >= 500 => return Err(Attempt::Dropped(format!("the server answered {status}"))),
        status => {
            return Err(Attempt::Fatal(WorkerError::new(
                ErrorKind::Http,
                format!("the server answered {status} {} for {}", response.status_text(), model.url),
            )));
        }
    }
    let Some(body) = response.body() else {
        return Err(Attempt::Dropped("the response has no body".into()));
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut progressed = false;
    loop {
        let chunk = match wasm_bindgen_futures::JsFuture::from(reader.read()).await {
            Ok(c) => c,
            Err(e) => {
                return Err(if progressed { Attempt::Progressed } else { Attempt::Dropped(describe(&e)) });
            }
        };
        let done = Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true);
        if done {
            break;
        }
        let value = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(|e| Attempt::Dropped(describe(&e)))?;
        let bytes: Uint8Array = value.unchecked_into();
        download.push(&bytes.to_vec()).map_err(Attempt::Fatal)?;
        progressed = true;
        let t = now();
        if t - *last_report > 0.1 {
            *last_report = t;
            progress(download.received(), *total);
        }
    }
    // A body that ends early without an error is a dropped connection too.
    if total.is_some_and(|t| download.received() < t) {
        return Err(if progressed { Attempt::Progressed } else { Attempt::Dropped("the connection closed early".into()) });
    }
    Ok(())
}
