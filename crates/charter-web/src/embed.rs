//! Charter inside another site's page, through the widget (`public/widget.js`): the app
//! runs in an iframe from its own origin, so the host page can neither read the
//! conversation nor reach the frame's storage. The host's choices arrive two ways: the
//! look in the frame's address (`embed=widget`, `theme`, `accent`, `no-egress`), and the
//! operator layer in one message the app asks its parent for when it starts
//! ([`hello`]); the first answer is taken, every later message ignored, and the layer
//! is checked against the constitution as any other.

#[cfg(target_arch = "wasm32")]
pub use browser::*;

/// Whether `text` is a `#rgb` or `#rrggbb` colour: the only form an accent may take.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub fn is_colour(text: &str) -> bool {
    text.strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(target_arch = "wasm32")]
mod browser {
    use js_sys::Reflect;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use web_sys::MessageEvent;

    use super::is_colour;

    thread_local! {
        /// Whether the widget's first answer came (every later one is ignored).
        static ANSWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// How long the app waits for the widget's configuration before it starts without one
    /// (the page was framed by something other than the widget).
    const HELLO_MS: i32 = 10_000;

    fn param(name: &str) -> Option<String> {
        let search = web_sys::window()?.location().search().ok()?;
        web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(name)
    }

    /// Whether this page runs as the widget's frame.
    pub fn is_widget() -> bool {
        param("embed").as_deref() == Some("widget")
    }

    /// Applies the host's theme (`light`, `dark`, or the system's) and accent colour.
    pub fn apply_look() {
        if !is_widget() {
            return;
        }
        let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) else {
            return;
        };
        if let Some(theme) = param("theme").filter(|t| t == "light" || t == "dark") {
            let _ = root.set_attribute("data-theme", &theme);
        }
        if let (Some(accent), Ok(root)) = (param("accent").filter(|a| is_colour(a)), root.dyn_into::<web_sys::HtmlElement>()) {
            let _ = root.style().set_property("--accent", &accent);
        }
    }

    /// Whether this browser refuses the page storage: what it does in another site's frame
    /// where third-party storage is blocked (Safari, Firefox's strict mode, Chrome's
    /// incognito windows), so no model, conversation or setting can be kept.
    pub async fn storage_blocked() -> bool {
        let Some(window) = web_sys::window() else { return false };
        if window.local_storage().is_err() {
            return true;
        }
        let Ok(caches) = window.caches() else { return true };
        wasm_bindgen_futures::JsFuture::from(caches.open("charter-probe")).await.is_err()
    }

    /// Asks the browser for this frame's storage (the Storage Access API), which it may
    /// grant after the user's click; the frame reloads to use it.
    pub fn request_storage_access() {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        let Ok(request) = Reflect::get(&document, &"requestStorageAccess".into()).and_then(|f| f.dyn_into::<js_sys::Function>()) else {
            return;
        };
        let Ok(promise) = request.call0(&document).and_then(|p| p.dyn_into::<js_sys::Promise>()) else {
            return;
        };
        wasm_bindgen_futures::spawn_local(async move {
            if wasm_bindgen_futures::JsFuture::from(promise).await.is_ok() {
                let _ = web_sys::window().map(|w| w.location().reload());
            }
        });
    }

    /// Charter's own address, to open it outside the host page.
    pub fn app_address() -> String {
        web_sys::window()
            .and_then(|w| w.location().href().ok())
            .and_then(|h| web_sys::Url::new_with_base("./", &h).ok())
            .map(|u| u.href())
            .unwrap_or_default()
    }

    /// What the widget sends: the persona and the operator configuration's text, or why it
    /// could not read it.
    pub struct Hello {
        /// The assistant's name, from `data-persona`.
        pub persona: Option<String>,
        /// The `operator.toml` the host named, as text.
        pub operator: Option<String>,
        /// Why the widget could not read it.
        pub problem: Option<String>,
        /// Whether that was the network (offline), not the file.
        pub unreachable: bool,
    }

    /// Asks the parent page for the widget's configuration and waits for the first answer.
    pub async fn hello() -> Option<Hello> {
        let window = web_sys::window()?;
        let parent = window.parent().ok().flatten()?;
        let answer = js_sys::Promise::new(&mut |resolve: js_sys::Function, _reject: js_sys::Function| {
            let parent = parent.clone();
            let resolve_none = resolve.clone();
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                // Only the parent's widget message counts; anything else is not the API.
                let from_parent = e.source().is_some_and(|s| JsValue::from(s) == JsValue::from(parent.clone()));
                let data = e.data();
                let kind = Reflect::get(&data, &"type".into()).ok().and_then(|t| t.as_string());
                if from_parent && kind.as_deref() == Some("charter-widget-hello") && !ANSWERED.with(|a| a.replace(true)) {
                    // The port that came with it carries the host's JS API.
                    if let Ok(port) = e.ports().get(0).dyn_into::<web_sys::MessagePort>() {
                        crate::api_relay::serve(port);
                    }
                    let _ = resolve.call1(&JsValue::NULL, &data);
                }
            });
            let _ = web_sys::window().map(|w| w.add_event_listener_with_callback("message", on_message.as_ref().unchecked_ref()));
            on_message.forget();
            let timeout = Closure::once_into_js(move || {
                let _ = resolve_none.call1(&JsValue::NULL, &JsValue::NULL);
            });
            let _ = web_sys::window().map(|w| w.set_timeout_with_callback_and_timeout_and_arguments_0(timeout.unchecked_ref(), HELLO_MS));
        });
        let ready = js_sys::Object::new();
        let _ = Reflect::set(&ready, &"type".into(), &"charter-widget-ready".into());
        // The request carries nothing private, so any parent origin may read it.
        parent.post_message(&ready, "*").ok()?;
        let data = wasm_bindgen_futures::JsFuture::from(answer).await.ok().filter(|d| !d.is_null())?;
        let text = |key: &str| Reflect::get(&data, &key.into()).ok().and_then(|v| v.as_string());
        let unreachable = Reflect::get(&data, &"unreachable".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
        Some(Hello {
            persona: text("persona"),
            operator: text("operator"),
            problem: text("problem"),
            unreachable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_colour;

    #[test]
    fn only_hex_colours_are_accents() {
        assert!(is_colour("#0a7") && is_colour("#2F5BD3"));
        for bad in ["", "#", "0a7", "#0a", "#0a7f", "red", "#12345g", "#123456; background:url(x)"] {
            assert!(!is_colour(bad), "{bad}");
        }
    }
}
