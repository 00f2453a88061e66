//! Where the layers under the constitution come from when the page starts: in the
//! widget, the configuration the embedding page gives (`embed.rs`); else an
//! `operator.toml` deployed beside the app (a site owner's configuration, which the
//! page cannot change), else the one set on this device's operator page; and the
//! user's own settings. Local ones live in `localStorage`.

use charter_core::constitution::{Constitution, OperatorConfig, UserSettings};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCache, RequestInit, Response};

/// The file a site owner deploys beside `index.html`.
pub const DEPLOYED_FILE: &str = "operator.toml";

const LOCAL_OPERATOR: &str = "charter-operator";
const LAST_DEPLOYED: &str = "charter-operator-deployed";
const LAST_EMBEDDED: &str = "charter-operator-embedded";
const USER: &str = "charter-user";

/// The operator layer the page starts with.
pub enum Start {
    /// Deployed with the site: in force, not editable here.
    Deployed(OperatorConfig),
    /// Set on this device's operator page, or none.
    Local(Option<OperatorConfig>),
    /// Given by the page that embeds Charter (the widget): in force, not editable here.
    Embedded(OperatorConfig),
    /// The site deployed a configuration the constitution refuses: Charter does not run
    /// without the layer its operator meant to set.
    Refused(String),
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

fn get(key: &str) -> Option<String> {
    storage().and_then(|s| s.get_item(key).ok().flatten())
}

fn set(key: &str, value: Option<&str>) {
    if let Some(s) = storage() {
        let _ = match value {
            Some(v) => s.set_item(key, v),
            None => s.remove_item(key),
        };
    }
}

/// Finds the operator layer: the deployed file when the site has one (remembered, so
/// an offline start keeps it), else the local one.
pub async fn start() -> Start {
    let Ok(constitution) = Constitution::builtin() else { return Start::Local(None) };
    let parse = |text: &str| OperatorConfig::parse(text, &constitution);
    if crate::embed::is_widget()
        && let Some(hello) = crate::embed::hello().await
    {
        return embedded(hello, &constitution);
    }
    match fetch_deployed().await {
        Ok(Some(text)) => {
            set(LAST_DEPLOYED, Some(&text));
            match parse(&text) {
                Ok(config) => Start::Deployed(config),
                Err(e) => Start::Refused(format!("This site's {DEPLOYED_FILE} is refused: {e}")),
            }
        }
        Ok(None) => {
            set(LAST_DEPLOYED, None);
            Start::Local(local_operator(&constitution))
        }
        // Offline: the site's configuration from the last visit still holds.
        Err(()) => match get(LAST_DEPLOYED).map(|t| parse(&t)) {
            Some(Ok(config)) => Start::Deployed(config),
            Some(Err(e)) => Start::Refused(format!("This site's {DEPLOYED_FILE} is refused: {e}")),
            None => Start::Local(local_operator(&constitution)),
        },
    }
}

/// The widget's layer: its operator file with its persona, checked as the app checks a
/// deployed file (the persona goes through the same parser as the rest).
fn embedded(hello: crate::embed::Hello, constitution: &Constitution) -> Start {
    if let Some(problem) = hello.problem {
        // Offline: the layer the embedding page gave last time still holds.
        let last = get(LAST_EMBEDDED).and_then(|t| OperatorConfig::parse(&t, constitution).ok());
        return match last {
            Some(config) if hello.unreachable => Start::Embedded(config),
            _ => Start::Refused(format!("The page that embeds Charter could not give its operator configuration: {problem}")),
        };
    }
    let refused = |e: charter_core::constitution::OperatorError| Start::Refused(format!("The embedding page's operator configuration is refused: {e}"));
    let mut config = match hello.operator.as_deref().map(|t| OperatorConfig::parse(t, constitution)) {
        Some(Ok(config)) => config,
        Some(Err(e)) => return refused(e),
        None => OperatorConfig::default(),
    };
    if let Some(persona) = hello.persona.filter(|p| !p.trim().is_empty()) {
        config.persona = Some(persona);
    }
    let text = config.to_toml();
    match OperatorConfig::parse(&text, constitution) {
        Ok(config) => {
            set(LAST_EMBEDDED, Some(&text));
            Start::Embedded(config)
        }
        Err(e) => refused(e),
    }
}

/// `Ok(None)` when the site has no such file, `Err` when it could not be asked.
async fn fetch_deployed() -> Result<Option<String>, ()> {
    let window = web_sys::window().ok_or(())?;
    let init = RequestInit::new();
    init.set_cache(RequestCache::NoCache);
    let response = JsFuture::from(window.fetch_with_str_and_init(DEPLOYED_FILE, &init)).await.map_err(|_| ())?;
    let response: Response = response.dyn_into().map_err(|_| ())?;
    // Hosts that answer every path with the app's own page (single-page fallbacks) have
    // no operator file either.
    let html = response.headers().get("content-type").ok().flatten().is_some_and(|t| t.contains("html"));
    if response.status() == 404 || (response.ok() && html) {
        return Ok(None);
    }
    if !response.ok() {
        return Err(());
    }
    let text = JsFuture::from(response.text().map_err(|_| ())?).await.map_err(|_| ())?;
    Ok(text.as_string())
}

fn local_operator(constitution: &Constitution) -> Option<OperatorConfig> {
    get(LOCAL_OPERATOR).and_then(|t| OperatorConfig::parse(&t, constitution).ok())
}

/// The user's saved settings (dropped if they no longer pass).
pub fn user_settings() -> UserSettings {
    get(USER).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Saves the operator layer set on this device.
pub fn save_local_operator(config: Option<&OperatorConfig>) {
    set(LOCAL_OPERATOR, config.map(OperatorConfig::to_toml).as_deref());
}

/// Saves the user's settings.
pub fn save_user(user: &UserSettings) {
    set(USER, serde_json::to_string(user).ok().as_deref());
}
