//! The two pages where the layers under the constitution are set: the operator page (what
//! a site owner configures, as the `operator.toml` they deploy) and the user's
//! preferences in Settings. Both offer only the switches the constitution allows that
//! party, check every change before it is sent, and show the worker's refusal if the
//! model's tokenizer finds the operator's text over its cap.

use charter_core::constitution::operator::MAX_INSTRUCTION_CHARS;
use charter_core::constitution::{AdjustableBy, Constitution, OperatorConfig, Unit, UserSettings};
use leptos::prelude::*;

use crate::layers::DEPLOYED_FILE;
use crate::state::{check_layers, AppState};

fn constitution() -> Option<Constitution> {
    Constitution::builtin().ok()
}

fn describe(unit: &Unit) -> String {
    unit.text(unit.shortest()).unwrap_or_default().to_owned()
}

/// The user's settings kept to what `operator` passes on.
fn user_under(operator: Option<&OperatorConfig>, user: &UserSettings) -> UserSettings {
    let Some(c) = constitution() else { return UserSettings::default() };
    let allowed: Vec<String> = UserSettings::switchable(&c, operator).map(|u| u.id.clone()).collect();
    UserSettings { disable: user.disable.iter().filter(|id| allowed.contains(id)).cloned().collect() }
}

fn toggle(list: &mut Vec<String>, id: &str, present: bool) {
    list.retain(|x| x != id);
    if present {
        list.push(id.to_owned());
    }
}

/// The operator page.
#[component]
pub fn OperatorPanel(state: AppState) -> impl IntoView {
    let switchable: Vec<Unit> = constitution().map(|c| OperatorConfig::switchable(&c).cloned().collect()).unwrap_or_default();
    let draft = RwSignal::new(state.operator.get_untracked().unwrap_or_default());
    let toml_text = RwSignal::new(draft.get_untracked().to_toml());
    let parse_error = RwSignal::new(None::<String>);
    // A form edit rewrites the TOML view; a TOML edit that parses rewrites the form.
    let edit = move |f: &dyn Fn(&mut OperatorConfig)| {
        draft.update(|d| f(d));
        toml_text.set(draft.get_untracked().to_toml());
        parse_error.set(None);
    };
    let on_toml = move |text: String| {
        toml_text.set(text.clone());
        match constitution().map(|c| OperatorConfig::parse(&text, &c)) {
            Some(Ok(config)) => {
                draft.set(config);
                parse_error.set(None);
            }
            Some(Err(e)) => parse_error.set(Some(e.to_string())),
            None => {}
        }
    };
    let problem = move || {
        parse_error.get().or_else(|| check_layers(Some(&draft.get()), &UserSettings::default()).err())
    };
    let locked = move || state.operator_deployed.get();
    let apply = move |_| {
        let config = draft.get_untracked();
        let user = user_under(Some(&config), &state.user_settings.get_untracked());
        state.configure(Some(config), user);
    };
    let clear = move |_| {
        edit(&|d| *d = OperatorConfig::default());
        let user = user_under(None, &state.user_settings.get_untracked());
        state.configure(None, user);
    };
    let download = move |_| crate::app::download_text(DEPLOYED_FILE, &draft.get_untracked().to_toml(), "application/toml");
    let chars = move || draft.with(|d| d.instructions.chars().count());
    let over = move || chars() > MAX_INSTRUCTION_CHARS;
    view! {
        <section data-testid="operator-panel">
            <h2>"Operator settings"</h2>
            <Show
                when=locked
                fallback=|| view! {
                    <p class="small">{format!("What a site owner sets when they put Charter on their site. Applied here, it shapes this browser's assistant; deployed as {DEPLOYED_FILE} beside index.html, it holds for every visitor and cannot be changed from the page. It ranks below Charter's constitution and can only narrow it.")}</p>
                }
            >
                <p class="small locked" data-testid="operator-locked">{if crate::embed::is_widget() {
                    "The page that embeds Charter set these; they cannot be changed from here.".to_owned()
                } else {
                    format!("This site's operator set these in {DEPLOYED_FILE}; they cannot be changed from this page.")
                }}</p>
            </Show>
            <fieldset disabled=locked>
                <label>
                    <span>"Persona (the name the assistant goes by)"</span>
                    <input data-testid="operator-persona" maxlength="60"
                        prop:value=move || draft.with(|d| d.persona.clone().unwrap_or_default())
                        on:input=move |e| { let v = event_target_value(&e); edit(&|d| d.persona = Some(v.clone()).filter(|v| !v.trim().is_empty())) } />
                </label>
                <label>
                    <span>"Scope (what the assistant is for on this site)"</span>
                    <textarea data-testid="operator-scope" rows="2"
                        prop:value=move || draft.with(|d| d.scope.clone().unwrap_or_default())
                        on:input=move |e| { let v = event_target_value(&e); edit(&|d| d.scope = Some(v.clone()).filter(|v| !v.trim().is_empty())) }></textarea>
                </label>
                <h3>"Defaults this site may switch off"</h3>
                <ul class="units">
                    {switchable.into_iter().map(|u| {
                        let (id, id2, id3, id4) = (u.id.clone(), u.id.clone(), u.id.clone(), u.id.clone());
                        let both = u.adjustable_by == AdjustableBy::OperatorAndUser;
                        view! {
                            <li>
                                <label class="toggle">
                                    <input type="checkbox" data-testid="operator-unit" data-unit-id=u.id.clone()
                                        prop:checked=move || draft.with(|d| !d.disable.contains(&id))
                                        on:change=move |e| { let on = event_target_checked(&e); edit(&|d| toggle(&mut d.disable, &id2, !on)) } />
                                    <strong>{u.id.clone()}</strong>
                                </label>
                                <p class="small">{describe(&u)}</p>
                                <Show when=move || both>
                                    <label class="toggle small">
                                        <input type="checkbox" data-testid="operator-users-may" data-unit-id=id4.clone()
                                            prop:checked={ let id = id3.clone(); move || draft.with(|d| d.users_may_adjust.contains(&id)) }
                                            on:change={ let id = id3.clone(); move |e| { let on = event_target_checked(&e); edit(&|d| toggle(&mut d.users_may_adjust, &id, on)) } } />
                                        " Users may switch it off"
                                    </label>
                                </Show>
                            </li>
                        }
                    }).collect_view()}
                </ul>
                <label>
                    <span>"Instructions (placed after the constitution, labelled as the operator's)"</span>
                    <textarea data-testid="operator-instructions" rows="4"
                        prop:value=move || draft.with(|d| d.instructions.clone())
                        on:input=move |e| { let v = event_target_value(&e); edit(&|d| d.instructions = v.clone()) }></textarea>
                </label>
                <p class="small" data-testid="operator-instructions-count" class:over=over>
                    {move || format!("{} / {MAX_INSTRUCTION_CHARS} characters (and at most 200 of the model's tokens)", chars())}
                </p>
                <details>
                    <summary>{format!("As {DEPLOYED_FILE}")}</summary>
                    <textarea data-testid="operator-toml" rows="8" spellcheck="false"
                        prop:value=move || toml_text.get()
                        on:input=move |e| on_toml(event_target_value(&e))></textarea>
                </details>
                <div class="row">
                    <button data-testid="operator-apply" on:click=apply disabled=move || problem().is_some() || state.configuring.get()>"Apply"</button>
                    <button data-testid="operator-clear" on:click=clear disabled=move || state.configuring.get()>"Remove operator settings"</button>
                    <button data-testid="operator-download" on:click=download disabled=move || problem().is_some()>{format!("Download {DEPLOYED_FILE}")}</button>
                </div>
            </fieldset>
            <Outcome state problem=Signal::derive(problem) />
        </section>
    }
}

/// The refusal or the confirmation of the last change.
#[component]
fn Outcome(state: AppState, #[prop(into)] problem: Signal<Option<String>>) -> impl IntoView {
    let error = move || problem.get().or_else(|| state.config_result.get().and_then(|r| r.err()));
    let done = move || state.config_result.get().and_then(|r| r.ok());
    view! {
        <Show when=move || state.configuring.get()>
            <p class="small" data-testid="config-pending">"Reading the new system block into the model…"</p>
        </Show>
        <Show when=move || error().is_some()>
            <p class="error" role="alert" data-testid="config-error">{move || error().unwrap_or_default()}</p>
        </Show>
        <Show when=move || done().is_some() && !state.configuring.get()>
            <p class="small" data-testid="config-applied">{move || done().unwrap_or_default()}</p>
        </Show>
    }
}

/// The user's preferences: the units this site leaves to them.
#[component]
pub fn Preferences(state: AppState) -> impl IntoView {
    let units = move || {
        let operator = state.operator.get();
        constitution()
            .map(|c| UserSettings::switchable(&c, operator.as_ref()).map(|u| (u.id.clone(), describe(u))).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    view! {
        <section data-testid="preferences">
            <h2>"The assistant"</h2>
            <p class="small">"Charter's constitution leaves a few of its defaults to you (where this site's operator allows it). Its limits and your protections stay whatever you choose."</p>
            <Show when=move || units().is_empty()>
                <p class="small" data-testid="preferences-none">"This site's operator has not left any of these to you."</p>
            </Show>
            {move || units().into_iter().map(|(id, text)| {
                let (id2, id3) = (id.clone(), id.clone());
                view! {
                    <label class="toggle">
                        <input type="checkbox" data-testid="user-unit" data-unit-id=id.clone()
                            disabled=move || state.configuring.get()
                            prop:checked=move || state.user_settings.with(|u| !u.disable.contains(&id2))
                            on:change=move |e| {
                                let on = event_target_checked(&e);
                                let mut user = state.user_settings.get_untracked();
                                toggle(&mut user.disable, &id3, !on);
                                state.configure(state.operator.get_untracked(), user);
                            } />
                        <strong>{id.clone()}</strong>
                        <span class="small">{format!(" {text}")}</span>
                    </label>
                }
            }).collect_view()}
            <Outcome state problem=Signal::derive(|| None::<String>) />
        </section>
    }
}
