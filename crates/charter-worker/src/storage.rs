//! Models kept for offline use in Cache Storage, under the URL they came from. An entry
//! is written only after its download was verified, in one `put`, so a half-finished
//! download is never taken for a whole one.

use charter_protocol::{ErrorKind, StoredModel, WorkerError};
use js_sys::{Array, Uint8Array};
use wasm_bindgen::JsCast;
use web_sys::{Cache, Headers, Request, Response, ResponseInit};

use crate::js::{number, scope, settle};

/// The cache's name; a new layout gets a new name.
const CACHE: &str = "charter-models-v1";
const SIZE_HEADER: &str = "x-charter-size";
const SHA_HEADER: &str = "x-charter-sha256";

async fn open() -> Result<Cache, WorkerError> {
    let caches = scope()
        .caches()
        .map_err(|_| WorkerError::new(ErrorKind::Quota, "this browser gives the page no Cache Storage (a private window?), so models cannot be kept"))?;
    let cache = settle(caches.open(CACHE), ErrorKind::Quota, "opening model storage").await?;
    Ok(cache.unchecked_into())
}

/// Bytes free for this site, when the browser says.
pub async fn free_bytes() -> Option<f64> {
    let estimate = settle(scope().navigator().storage().estimate().ok()?, ErrorKind::Internal, "estimate").await.ok()?;
    Some(number(&estimate, "quota")? - number(&estimate, "usage").unwrap_or(0.0))
}

/// Stores verified model bytes under `url`.
pub async fn put(url: &str, bytes: &[u8], sha256: &str) -> Result<StoredModel, WorkerError> {
    let cache = open().await?;
    let headers = Headers::new().map_err(|_| WorkerError::new(ErrorKind::Internal, "cannot build headers"))?;
    let _ = headers.set("content-type", "application/octet-stream");
    let _ = headers.set(SIZE_HEADER, &bytes.len().to_string());
    let _ = headers.set(SHA_HEADER, sha256);
    let init = ResponseInit::new();
    init.set_headers(&headers);
    let body = Uint8Array::from(bytes);
    let response = Response::new_with_opt_buffer_source_and_init(Some(&body), &init)
        .map_err(|e| WorkerError::new(ErrorKind::Internal, format!("cannot build the stored response: {}", crate::js::describe(&e))))?;
    settle(cache.put_with_str(url, &response), ErrorKind::Quota, "storing the model").await?;
    Ok(StoredModel { url: url.to_owned(), size: bytes.len() as u64, sha256: Some(sha256.to_owned()) })
}

/// The stored model's bytes, or `None` when it is not stored.
pub async fn get(url: &str) -> Result<Option<Vec<u8>>, WorkerError> {
    let cache = open().await?;
    let found = settle(cache.match_with_str(url), ErrorKind::Internal, "reading model storage").await?;
    let Ok(response) = found.dyn_into::<Response>() else { return Ok(None) };
    let size = response.headers().get(SIZE_HEADER).ok().flatten().and_then(|s| s.parse().ok());
    let body = response.body().ok_or_else(|| WorkerError::new(ErrorKind::Internal, "the stored model has no body"))?;
    let bytes = crate::js::read_stream(body, size)
        .await
        .map_err(|e| WorkerError::new(ErrorKind::Internal, format!("reading the stored model: {e}")))?;
    Ok(Some(bytes))
}

/// Every stored model.
pub async fn list() -> Result<Vec<StoredModel>, WorkerError> {
    let cache = open().await?;
    let keys: Array = settle(cache.keys(), ErrorKind::Internal, "listing model storage").await?.unchecked_into();
    let mut models = Vec::new();
    for key in keys.iter() {
        let request: Request = key.unchecked_into();
        let found = settle(cache.match_with_request(&request), ErrorKind::Internal, "listing model storage").await?;
        let Ok(response) = found.dyn_into::<Response>() else { continue };
        let header = |name| response.headers().get(name).ok().flatten();
        models.push(StoredModel {
            url: request.url(),
            size: header(SIZE_HEADER).and_then(|s| s.parse().ok()).unwrap_or(0),
            sha256: header(SHA_HEADER),
        });
    }
    Ok(models)
}

/// Deletes a stored model; deleting one that is not there is not an error.
pub async fn delete(url: &str) -> Result<(), WorkerError> {
    let cache = open().await?;
    settle(cache.delete_with_str(url), ErrorKind::Internal, "deleting the model").await?;
    Ok(())
}
