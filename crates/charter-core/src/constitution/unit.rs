//! One unit of the constitution: TOML front matter between `+++` lines, then its length
//! forms as `## micro`, `## short` and `## long` sections.
//!
//! This file is also compiled into the crate's build script, which checks every unit
//! when Charter is built, so it depends on nothing but `serde` and `toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a unit is about; the manifest orders the kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The order of priorities.
    PriorityOrder,
    /// Lines no one can unlock.
    HardLimit,
    /// Who gives instructions, and with what trust.
    Principals,
    /// What users keep whatever the operator says.
    UserProtection,
    /// Defaults operators (or users) may switch.
    DefaultBehaviour,
    /// The assistant's character.
    Character,
    /// How it writes.
    Style,
}

/// How much a unit must be included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Always, at least in its `micro` form.
    Always,
    /// Before any optional unit.
    Preferred,
    /// When there is room.
    Optional,
}

/// Who may switch a unit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustableBy {
    /// No one.
    None,
    /// The operator.
    Operator,
    /// The user.
    User,
    /// The operator and the user.
    OperatorAndUser,
}

impl AdjustableBy {
    /// Whether an operator may switch the unit off.
    pub fn by_operator(self) -> bool {
        matches!(self, AdjustableBy::Operator | AdjustableBy::OperatorAndUser)
    }

    /// Whether a user may switch the unit off.
    pub fn by_user(self) -> bool {
        matches!(self, AdjustableBy::User | AdjustableBy::OperatorAndUser)
    }
}

/// A length form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// One sentence.
    Micro,
    /// A few sentences.
    Short,
    /// A paragraph.
    Long,
}

impl Form {
    /// Every form, shortest first.
    pub const ALL: [Form; 3] = [Form::Micro, Form::Short, Form::Long];

    /// The section name.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Micro => "micro",
            Form::Short => "short",
            Form::Long => "long",
        }
    }
}

/// One unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// Stable id (the file name without `.md`).
    pub id: String,
    /// What it is about.
    pub kind: Kind,
    /// Order within its kind.
    pub rank: u32,
    /// How much it must be included.
    pub tier: Tier,
    /// Who may switch it off.
    pub adjustable_by: AdjustableBy,
    /// Its text in each form it has.
    pub forms: BTreeMap<Form, String>,
}

impl Unit {
    /// The text of `form`, if the unit has it.
    pub fn text(&self, form: Form) -> Option<&str> {
        self.forms.get(&form).map(String::as_str)
    }

    /// Its shortest form.
    pub fn shortest(&self) -> Form {
        self.forms.keys().next().copied().unwrap_or(Form::Micro)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    id: String,
    kind: Kind,
    rank: u32,
    tier: Tier,
    adjustable_by: AdjustableBy,
}

/// A malformed unit: the line (1-based, in the file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> FormatError {
    FormatError { line, message: message.into() }
}

/// Parses a unit file.
pub fn parse_unit(text: &str) -> Result<Unit, FormatError> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.first().map(|l| l.trim_end()) != Some("+++") {
        return Err(error(1, "a unit starts with a `+++` line opening its front matter"));
    }
    let close = lines
        .iter()
        .skip(1)
        .position(|l| l.trim_end() == "+++")
        .map(|i| i + 1)
        .ok_or_else(|| error(1, "the front matter has no closing `+++` line"))?;
    let front = lines[1..close].join("\n");
    let meta: FrontMatter = toml::from_str(&front).map_err(|e| {
        let at = e.span().map_or(0, |s| front[..s.start.min(front.len())].matches('\n').count());
        error(2 + at, format!("front matter: {}", e.message()))
    })?;
    if meta.id.is_empty() || !meta.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(error(2, format!("id {:?} must be lowercase letters, digits and dashes", meta.id)));
    }
    let mut forms: BTreeMap<Form, String> = BTreeMap::new();
    let mut current: Option<(Form, usize, Vec<&str>)> = None;
    let finish = |current: Option<(Form, usize, Vec<&str>)>, forms: &mut BTreeMap<Form, String>| {
        if let Some((form, line, body)) = current {
            let text = body.join("\n").trim().to_owned();
            if text.is_empty() {
                return Err(error(line, format!("the `{}` form is empty", form.as_str())));
            }
            if forms.insert(form, text).is_some() {
                return Err(error(line, format!("the `{}` form appears twice", form.as_str())));
            }
        }
        Ok(())
    };
    for (i, line) in lines.iter().enumerate().skip(close + 1) {
        let number = i + 1;
        if let Some(name) = line.strip_prefix("## ") {
            let form = match name.trim() {
                "micro" => Form::Micro,
                "short" => Form::Short,
                "long" => Form::Long,
                other => return Err(error(number, format!("unknown section `{other}`: expected micro, short or long"))),
            };
            finish(current.take(), &mut forms)?;
            current = Some((form, number, Vec::new()));
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push(line);
        } else if !line.trim().is_empty() {
            return Err(error(number, "text before the first `## micro`, `## short` or `## long` section"));
        }
    }
    finish(current.take(), &mut forms)?;
    if forms.is_empty() {
        return Err(error(close + 1, "a unit needs at least one form"));
    }
    if meta.tier == Tier::Always && !forms.contains_key(&Form::Micro) {
        return Err(error(close + 1, "an `always` unit needs a `micro` form"));
    }
    if meta.kind == Kind::HardLimit && (meta.tier != Tier::Always || meta.adjustable_by != AdjustableBy::None) {
        return Err(error(2, "a hard limit is `always` and adjustable by `none`"));
    }
    if meta.kind == Kind::UserProtection && meta.adjustable_by.by_operator() {
        return Err(error(2, "a user protection cannot be adjustable by the operator"));
    }
    Ok(Unit { id: meta.id, kind: meta.kind, rank: meta.rank, tier: meta.tier, adjustable_by: meta.adjustable_by, forms })
}
