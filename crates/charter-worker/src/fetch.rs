//! Downloads a model with progress, resuming with an HTTP Range request after a
//! dropped connection, verifying as it goes.

use charter_protocol::{ErrorKind, ModelRef, WorkerError};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ReadableStreamDefaultReader, RequestInit, Response};

use crate::js::{describe, now, scope, sleep};
use crate::verify::Download;

/// Attempts in a row without progress before giving up.
const MAX_ATTEMPTS: u32 = 6;

/// Fetches `model`, calling `progress(done, total)` now and then. Returns the verified
/// bytes and their SHA-256.
pub async fn download(model: &ModelRef, mut progress: impl FnMut(u64, Option<u64>)) -> Result<(Vec<u8>, String), WorkerError> {
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
