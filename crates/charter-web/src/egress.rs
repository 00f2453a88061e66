//! Keeping off the network: once a model is loaded, and where the user (or the
//! embedding widget) asks for it, the page takes a Content-Security-Policy that lets it
//! reach its own origin only, and the worker is sealed to the same (`Request::Seal`).
//! Markdown already turns images into links; the policy is what makes the claim hold
//! even if a renderer slipped, and what a visitor can check in the browser's tools.
//! A policy cannot be lifted from a running page, so switching it off reloads.

use wasm_bindgen::JsCast;

/// Where the preference is kept.
const KEY: &str = "charter-no-egress";

/// The page's policy once sealed: its own origin for everything it fetches, no frames,
/// no forms, no plugins; scripts and wasm only from the origin.
pub const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; media-src 'none'; font-src 'self'; \
     object-src 'none'; frame-src 'none'; worker-src 'self'; manifest-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; form-action 'none'; base-uri 'none'";

/// Whether the user asked to keep off the network: their setting, or `?no-egress` in the
/// page's address (how the widget asks for it).
pub fn wanted() -> bool {
    let Some(window) = web_sys::window() else { return false };
    let search = window.location().search().unwrap_or_default();
    let in_address = search.trim_start_matches('?').split('&').any(|p| p == "no-egress" || p == "no-egress=1");
    let stored = window.local_storage().ok().flatten().and_then(|s| s.get_item(KEY).ok().flatten());
    in_address || stored.as_deref() == Some("on")
}

/// Keeps the user's choice on the device.
pub fn set_wanted(on: bool) {
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = if on { storage.set_item(KEY, "on") } else { storage.remove_item(KEY) };
    }
}

/// Puts the policy on the page (once); true when it is in force.
pub fn seal_page() -> bool {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return false };
    if document.query_selector("meta[http-equiv=Content-Security-Policy]").ok().flatten().is_some() {
        return true;
    }
    let (Some(head), Ok(meta)) = (document.head(), document.create_element("meta")) else { return false };
    let Ok(meta) = meta.dyn_into::<web_sys::HtmlMetaElement>() else { return false };
    meta.set_http_equiv("Content-Security-Policy");
    meta.set_content(POLICY);
    head.append_child(&meta).is_ok()
}
