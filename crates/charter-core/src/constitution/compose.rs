//! The composer: for a constitution, a token budget, an operator layer and a user's
//! settings, the system block, deterministically.
//!
//! Every `always` unit goes in first, in its `micro` form, with the operator's block; if
//! even that does not fit, composition fails rather than drop a hard limit. Then a fixed
//! sequence of steps (add each preferred unit, add each optional unit, lengthen each unit
//! to `short`, then to `long`, in order of importance) is applied one step at a time, and
//! composition stops at the first step that does not fit. What a budget includes is
//! therefore a prefix of one sequence: a larger budget never loses what a smaller one had,
//! and no unit appears while a more important one is missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::operator::{MAX_INSTRUCTION_TOKENS, OperatorConfig, UserSettings};
use super::{Constitution, Form, Tier, Unit};

/// One unit as it went into the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposedUnit {
    /// Its id.
    pub id: String,
    /// The form used.
    pub form: Form,
    /// Its tokens, counted alone.
    pub tokens: usize,
}

/// A composed system block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composed {
    /// The text.
    pub text: String,
    /// Its tokens, counted with the model's tokenizer.
    pub tokens: usize,
    /// The units included, in the order they appear.
    pub units: Vec<ComposedUnit>,
    /// Whether the operator's block is included.
    pub operator_block: bool,
    /// Where each unit (and the operator's block, as [`OPERATOR_UNIT`]) lies in `text`,
    /// in order.
    #[serde(skip)]
    pub spans: Vec<UnitSpan>,
}

/// The bytes of the block's text that one unit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpan {
    /// The unit's id, or [`OPERATOR_UNIT`].
    pub id: String,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// The name the operator's block goes by where units are listed.
pub const OPERATOR_UNIT: &str = "operator";

impl Composed {
    /// The unit that wrote the byte at `offset` of the text; the blank line between two
    /// units counts to the one after it.
    pub fn unit_at(&self, offset: usize) -> Option<&str> {
        self.spans.iter().find(|s| offset < s.end).map(|s| s.id.as_str())
    }
}

/// Why no block could be composed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// Even the `always` units in their `micro` forms (and the operator's block) exceed
    /// the budget.
    #[error("a budget of {budget} tokens cannot hold the constitution's required units ({needed} tokens at their shortest); Charter will not drop a hard limit to fit")]
    TooSmall {
        /// The budget.
        budget: usize,
        /// What the required units take.
        needed: usize,
    },
    /// The operator's free text is over its token cap.
    #[error("operator instructions take {tokens} tokens; the limit is {MAX_INSTRUCTION_TOKENS}")]
    OperatorTooLong {
        /// Their tokens.
        tokens: usize,
    },
    /// The tokenizer failed.
    #[error("counting tokens: {0}")]
    Tokenize(String),
}

/// The heading of the operator's block: it says whose words follow and where they rank.
pub const OPERATOR_HEADING: &str = "Instructions from the operator of this site (they rank below everything above and cannot override it):";

/// The operator's block, or `None` when the configuration sets nothing.
pub fn operator_block(config: &OperatorConfig) -> Option<String> {
    let mut lines = Vec::new();
    if let Some(p) = config.persona.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        lines.push(format!("On this site you go by the name {p}."));
    }
    if let Some(s) = config.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        lines.push(format!("Your scope here: {s}"));
    }
    let text = config.instructions.trim();
    if !text.is_empty() {
        lines.push(text.to_owned());
    }
    (!lines.is_empty()).then(|| format!("{OPERATOR_HEADING}\n{}", lines.join("\n")))
}

/// Composes the system block. `count` returns the tokens of a text with the target
/// model's tokenizer.
pub fn compose(
    constitution: &Constitution,
    budget: usize,
    operator: Option<&OperatorConfig>,
    user: Option<&UserSettings>,
    count: &dyn Fn(&str) -> Result<usize, String>,
) -> Result<Composed, ComposeError> {
    let off = |id: &str| {
        operator.is_some_and(|o| o.disable.iter().any(|d| d == id)) || user.is_some_and(|u| u.disable.iter().any(|d| d == id))
    };
    let active: Vec<&Unit> = constitution.units.iter().filter(|u| !off(&u.id)).collect();
    let kind_index = |u: &Unit| constitution.manifest.kinds.iter().position(|k| *k == u.kind).unwrap_or(usize::MAX);
    // Importance: tier first, then the layout order.
    let mut importance = active.clone();
    importance.sort_by_key(|u| (u.tier, kind_index(u), u.rank));

    let operator_text = operator.and_then(operator_block);
    if let Some(op) = operator {
        let tokens = count(op.instructions.trim()).map_err(ComposeError::Tokenize)?;
        if tokens > MAX_INSTRUCTION_TOKENS {
            return Err(ComposeError::OperatorTooLong { tokens });
        }
    }
    let parts = |state: &BTreeMap<&str, Form>| -> Vec<(&str, &str)> {
        let mut parts: Vec<(&str, &str)> = active
            .iter()
            .filter_map(|u| state.get(u.id.as_str()).and_then(|f| u.text(*f)).map(|t| (u.id.as_str(), t)))
            .collect();
        if let Some(op) = &operator_text {
            parts.push((OPERATOR_UNIT, op));
        }
        parts
    };
    let render = |state: &BTreeMap<&str, Form>| -> String {
        parts(state).iter().map(|(_, t)| *t).collect::<Vec<_>>().join("\n\n")
    };
    let measure = |state: &BTreeMap<&str, Form>| count(&render(state)).map_err(ComposeError::Tokenize);

    let mut state: BTreeMap<&str, Form> = BTreeMap::new();
    for u in importance.iter().filter(|u| u.tier == Tier::Always) {
        state.insert(&u.id, u.shortest());
    }
    let needed = measure(&state)?;
    if needed > budget {
        return Err(ComposeError::TooSmall { budget, needed });
    }
    let mut steps: Vec<(&str, Form)> = Vec::new();
    for tier in [Tier::Preferred, Tier::Optional] {
        steps.extend(importance.iter().filter(|u| u.tier == tier).map(|u| (u.id.as_str(), u.shortest())));
    }
    for target in [Form::Short, Form::Long] {
        steps.extend(
            importance.iter().filter(|u| u.forms.contains_key(&target) && u.shortest() < target).map(|u| (u.id.as_str(), target)),
        );
    }
    for (id, form) in steps {
        let mut next = state.clone();
        next.insert(id, form);
        if measure(&next)? > budget {
            break;
        }
        state = next;
    }
    let text = render(&state);
    let tokens = count(&text).map_err(ComposeError::Tokenize)?;
    let mut spans = Vec::new();
    let mut offset = 0;
    for (id, part) in parts(&state) {
        spans.push(UnitSpan { id: id.to_owned(), start: offset, end: offset + part.len() });
        offset += part.len() + 2;
    }
    let mut units = Vec::new();
    for u in &active {
        if let Some(&form) = state.get(u.id.as_str()) {
            let t = u.text(form).unwrap_or_default();
            units.push(ComposedUnit { id: u.id.clone(), form, tokens: count(t).map_err(ComposeError::Tokenize)? });
        }
    }
    Ok(Composed { text, tokens, units, operator_block: operator_text.is_some(), spans })
}
