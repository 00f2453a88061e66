//! The operator's layer: a persona, a scope, switches for the units an operator may
//! adjust, what users may adjust, and free-text instructions. It is checked when it is
//! loaded: switching off a unit the operator may not touch, or giving users more than
//! the operator's own trust, is refused with a message that names the unit.

use serde::{Deserialize, Serialize};

use super::Constitution;

/// The longest free-text instructions accepted, in characters (the token cap is
/// enforced when the block is composed, with the model's tokenizer).
pub const MAX_INSTRUCTION_CHARS: usize = 2000;

/// The most tokens the operator's free text may take in the system block.
pub const MAX_INSTRUCTION_TOKENS: usize = 200;

/// What a site owner sets. Read from TOML or JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The name the assistant goes by on this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// What the assistant is for on this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Units switched off (each must be adjustable by the operator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// Units users may switch off (each must be adjustable by the operator and the user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users_may_adjust: Vec<String>,
    /// Free-text instructions, placed in one labelled block after the constitution.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instructions: String,
}

/// Why an operator configuration or a user's settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// The text does not parse.
    #[error("operator configuration: {0}")]
    Parse(String),
    /// A unit id the constitution does not have.
    #[error("{who} configuration names unit {id:?}, which the constitution does not have")]
    UnknownUnit {
        /// `operator` or `user`.
        who: &'static str,
        /// The id.
        id: String,
    },
    /// Switching off a unit this party may not switch off.
    #[error("{who} configuration may not switch off unit {id:?} (adjustable by: {adjustable_by})")]
    NotAdjustable {
        /// `operator` or `user`.
        who: &'static str,
        /// The unit.
        id: String,
        /// Who may.
        adjustable_by: String,
    },
    /// Giving users a switch the operator does not have itself, or one the constitution
    /// keeps from users.
    #[error("operator configuration may not let users adjust unit {id:?}: users may only get switches the operator has and the constitution allows users (adjustable by: {adjustable_by})")]
    BeyondOperatorTrust {
        /// The unit.
        id: String,
        /// Who may.
        adjustable_by: String,
    },
    /// The operator has not let users adjust this unit.
    #[error("user settings may not switch off unit {id:?}: this site's operator does not allow it")]
    NotAllowedByOperator {
        /// The unit.
        id: String,
    },
    /// Free text too long.
    #[error("operator instructions are {chars} characters; the limit is {MAX_INSTRUCTION_CHARS}")]
    TooLong {
        /// Its length.
        chars: usize,
    },
}

impl OperatorConfig {
    /// Reads a configuration (TOML, or JSON when it starts with `{`) and checks it.
    pub fn parse(text: &str, constitution: &Constitution) -> Result<Self, OperatorError> {
        let config: OperatorConfig = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| OperatorError::Parse(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| OperatorError::Parse(e.to_string()))?
        };
        config.validate(constitution)?;
        Ok(config)
    }

    /// The configuration as the TOML file a site owner deploys (the format `parse` reads).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Whether it sets nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == OperatorConfig::default()
    }

    /// The units an operator may switch off, in layout order.
    pub fn switchable(constitution: &Constitution) -> impl Iterator<Item = &super::Unit> {
        constitution.units.iter().filter(|u| u.adjustable_by.by_operator())
    }

    /// Checks every switch against what the constitution allows the operator.
    pub fn validate(&self, constitution: &Constitution) -> Result<(), OperatorError> {
        for id in &self.disable {
            let unit = constitution
                .unit(id)
                .ok_or_else(|| OperatorError::UnknownUnit { who: "operator", id: id.clone() })?;
            if !unit.adjustable_by.by_operator() {
                return Err(OperatorError::NotAdjustable {
                    who: "operator",
                    id: id.clone(),
                    adjustable_by: name(unit.adjustable_by),
                });
            }
        }
        for id in &self.users_may_adjust {
            let unit = constitution
                .unit(id)
                .ok_or_else(|| OperatorError::UnknownUnit { who: "operator", id: id.clone() })?;
            if unit.adjustable_by != super::AdjustableBy::OperatorAndUser {
                return Err(OperatorError::BeyondOperatorTrust { id: id.clone(), adjustable_by: name(unit.adjustable_by) });
            }
        }
        let chars = self.instructions.chars().count();
        if chars > MAX_INSTRUCTION_CHARS {
            return Err(OperatorError::TooLong { chars });
        }
        Ok(())
    }
}

fn name(a: super::AdjustableBy) -> String {
    match a {
        super::AdjustableBy::None => "none",
        super::AdjustableBy::Operator => "operator",
        super::AdjustableBy::User => "user",
        super::AdjustableBy::OperatorAndUser => "operator and user",
    }
    .to_owned()
}

/// Checks both layers under the constitution: the operator's configuration, then the
/// user's settings under it (the token cap on the operator's text is checked when a block
/// is composed with a model's tokenizer).
pub fn check_layers(
    constitution: &Constitution,
    operator: Option<&OperatorConfig>,
    user: &UserSettings,
) -> Result<(), OperatorError> {
    if let Some(op) = operator {
        op.validate(constitution)?;
    }
    user.validate(constitution, operator)
}

/// What a user sets: units switched off. Passes the same check, one level lower.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// Units switched off.
    #[serde(default)]
    pub disable: Vec<String>,
}

impl UserSettings {
    /// The units a user may switch off under `operator`, in layout order: those the
    /// constitution leaves to users and, where both may adjust a unit and an operator has
    /// set up the site, that the operator passed on.
    pub fn switchable<'a>(
        constitution: &'a Constitution,
        operator: Option<&'a OperatorConfig>,
    ) -> impl Iterator<Item = &'a super::Unit> {
        constitution.units.iter().filter(move |u| {
            let probe = UserSettings { disable: vec![u.id.clone()] };
            probe.validate(constitution, operator).is_ok()
        })
    }

    /// Checks each switch: the constitution must let users adjust the unit, and where an
    /// operator has set up the site, a unit both may adjust must be one the operator
    /// passed on to users.
    pub fn validate(&self, constitution: &Constitution, operator: Option<&OperatorConfig>) -> Result<(), OperatorError> {
        for id in &self.disable {
            let unit = constitution.unit(id).ok_or_else(|| OperatorError::UnknownUnit { who: "user", id: id.clone() })?;
            if !unit.adjustable_by.by_user() {
                return Err(OperatorError::NotAdjustable { who: "user", id: id.clone(), adjustable_by: name(unit.adjustable_by) });
            }
            if let Some(op) = operator {
                if unit.adjustable_by == super::AdjustableBy::OperatorAndUser && !op.users_may_adjust.contains(id) {
                    return Err(OperatorError::NotAllowedByOperator { id: id.clone() });
                }
            }
        }
        Ok(())
    }
}
