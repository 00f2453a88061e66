//! Saved model states: the KV cache after Charter's system block, kept in Cache Storage
//! so a later load of the same model under the same block restores it in milliseconds
//! instead of running the block through the model again. An entry's key hashes the
//! build, the model and the exact prefix tokens, so a state is only ever restored into
//! the computation that made it; a miss or a failure just means prefilling again.

use charter_protocol::ErrorKind;
use js_sys::{Array, Promise, Uint8Array};
use sha2::{Digest, Sha256};
use wasm_bindgen::JsCast;
use web_sys::{Cache, Request, Response};

use crate::js::{scope, settle};

/// The cache's name; a new layout gets a new name.
const CACHE: &str = "charter-states-v1";

/// The build, so a state saved by other kernels is never restored into these.
const BUILD: &str = match option_env!("CHARTER_BUILD_ID") {
    Some(id) => id,
    None => env!("CARGO_PKG_VERSION"),
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn model_part(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes())[..8])
}

/// A stored model, as saved states are filed: its storage URL and its size.
pub type ModelKey = (String, usize);

/// The key of the state after `prefix` for `model`.
pub fn key(model: &ModelKey, prefix: &[u32]) -> String {
    let (url, size) = model;
    let mut h = Sha256::new();
    h.update(BUILD.as_bytes());
    h.update([0]);
    h.update(url.as_bytes());
    h.update((*size as u64).to_le_bytes());
    for id in prefix {
        h.update(id.to_le_bytes());
    }
    format!("charter-state/{}/{}", model_part(url), hex(&h.finalize()))
}

async fn open() -> Option<Cache> {
    let caches = scope().caches().ok()?;
    settle(caches.open(CACHE), ErrorKind::Internal, "opening state storage").await.ok().map(JsCast::unchecked_into)
}

/// A saved state, if there is one.
pub async fn get(key: &str) -> Option<Vec<u8>> {
    let cache = open().await?;
    let found = settle(cache.match_with_str(key), ErrorKind::Internal, "reading a saved state").await.ok()?;
    let response: Response = found.dyn_into().ok()?;
    let promise: Promise = response.array_buffer().ok()?;
    let buffer = settle(promise, ErrorKind::Internal, "reading a saved state").await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

/// Saves a state; a full quota or a missing Cache Storage only costs the next load a
/// prefill, so failures are dropped.
pub async fn put(key: &str, bytes: &[u8]) {
    let Some(cache) = open().await else { return };
    let body = Uint8Array::from(bytes);
    if let Ok(response) = Response::new_with_opt_buffer_source(Some(&body)) {
        let _ = settle(cache.put_with_str(key, &response), ErrorKind::Quota, "saving a state").await;
    }
}

/// Forgets every state of the model stored under `url` (when it is deleted).
pub async fn delete_for(url: &str) {
    let Some(cache) = open().await else { return };
    let Ok(keys) = settle(cache.keys(), ErrorKind::Internal, "listing saved states").await else { return };
    let marker = format!("/charter-state/{}/", model_part(url));
    for key in keys.unchecked_into::<Array>().iter() {
        let request: Request = key.unchecked_into();
        if request.url().contains(&marker) {
            let _ = settle(cache.delete_with_request(&request), ErrorKind::Internal, "deleting a saved state").await;
        }
    }
}
