//! Conversations in IndexedDB, one record per conversation, as JSON text. The browser
//! plumbing is a few lines of JavaScript; everything else stays in Rust.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::conversation::Conversation;

#[wasm_bindgen(inline_js = r#"
const DB = "charter", STORE = "conversations";
function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
function run(mode, action) {
  return open().then(db => new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = action(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(req.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
    tx.onabort = () => { db.close(); reject(tx.error); };
  }));
}
export function idb_put(key, json) { return run("readwrite", s => s.put(json, key)); }
export function idb_all() { return run("readonly", s => s.getAll()); }
export function idb_delete(key) { return run("readwrite", s => s.delete(key)); }
"#)]
extern "C" {
    fn idb_put(key: &str, json: &str) -> js_sys::Promise;
    fn idb_all() -> js_sys::Promise;
    fn idb_delete(key: &str) -> js_sys::Promise;
}

fn describe(e: JsValue) -> String {
    js_sys::Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

/// Saves a conversation.
pub async fn save(conversation: &Conversation) -> Result<(), String> {
    let json = serde_json::to_string(conversation).map_err(|e| e.to_string())?;
    JsFuture::from(idb_put(&conversation.id, &json)).await.map(|_| ()).map_err(describe)
}

/// Every saved conversation, newest first. Records that do not parse are skipped.
pub async fn load_all() -> Result<Vec<Conversation>, String> {
    let all = JsFuture::from(idb_all()).await.map_err(describe)?;
    let mut list: Vec<Conversation> = js_sys::Array::from(&all)
        .iter()
        .filter_map(|v| v.as_string())
        .filter_map(|s| serde_json::from_str(&s).ok())
        .collect();
    list.sort_by(|a, b| b.updated.total_cmp(&a.updated));
    Ok(list)
}

/// Deletes a conversation.
pub async fn delete(id: &str) -> Result<(), String> {
    JsFuture::from(idb_delete(id)).await.map(|_| ()).map_err(describe)
}
