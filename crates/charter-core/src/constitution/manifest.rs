//! The constitution's manifest: the order of kinds and per-model profiles. Compiled into
//! the build script too, like `unit.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::unit::Kind;

/// Budgets for one family of models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// KV positions Charter allocates.
    pub context_length: usize,
    /// The most tokens the system block may take.
    pub system_cap: usize,
    /// Tokens kept free for the reply when older turns are dropped.
    pub reply_reserve: usize,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every kind, in the order units are laid out and weighed.
    pub kinds: Vec<Kind>,
    /// Profiles by name; `default` is required.
    pub profiles: BTreeMap<String, Profile>,
}

/// Parses and checks a manifest; the error is (line, message).
pub fn parse_manifest(text: &str) -> Result<Manifest, (usize, String)> {
    let manifest: Manifest = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| 1 + text[..s.start.min(text.len())].matches('\n').count());
        (line, e.message().to_owned())
    })?;
    let all = [
        Kind::PriorityOrder,
        Kind::HardLimit,
        Kind::Principals,
        Kind::UserProtection,
        Kind::DefaultBehaviour,
        Kind::Character,
        Kind::Style,
    ];
    for kind in all {
        let n = manifest.kinds.iter().filter(|k| **k == kind).count();
        if n != 1 {
            return Err((1, format!("`kinds` lists {kind:?} {n} times; every kind once")));
        }
    }
    if !manifest.profiles.contains_key("default") {
        return Err((1, "a `default` profile is required".to_owned()));
    }
    Ok(manifest)
}
