//! Charter's constitution: units with front matter (`unit`), a manifest of kinds and
//! per-model profiles (`manifest`), the operator's layer (`operator`) and the composer
//! that fits the most important parts into a model's budget (`compose`), and the marks
//! that say which unit wrote each token of the block (`marks`).
//!
//! The files in `constitution/` are checked by the build script and compiled in;
//! [`Constitution::builtin`] reads them back.

pub mod compose;
pub mod manifest;
pub mod marks;
pub mod operator;
pub mod unit;

use std::fmt;

pub use compose::{ComposeError, Composed, ComposedUnit, OPERATOR_UNIT, UnitSpan, compose};
pub use marks::mark_units;
pub use manifest::{Manifest, Profile};
pub use operator::{OperatorConfig, OperatorError, UserSettings, check_layers};
pub use unit::{AdjustableBy, Form, Kind, Tier, Unit};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/constitution.rs"));
}

/// A constitution file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstitutionError {
    /// The file.
    pub file: String,
    /// The line, 1-based.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConstitutionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ConstitutionError {}

/// The constitution: the manifest and its units in layout order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constitution {
    /// Kinds and profiles.
    pub manifest: Manifest,
    /// The units, ordered by kind (as the manifest orders kinds), then rank, then id.
    pub units: Vec<Unit>,
}

impl Constitution {
    /// The constitution compiled into Charter.
    pub fn builtin() -> Result<Self, ConstitutionError> {
        Self::from_sources(embedded::MANIFEST, embedded::UNITS)
    }

    /// Reads a manifest and unit files given as (file name, text).
    pub fn from_sources(manifest: &str, units: &[(&str, &str)]) -> Result<Self, ConstitutionError> {
        let manifest = manifest::parse_manifest(manifest)
            .map_err(|(line, message)| ConstitutionError { file: "manifest.toml".into(), line, message })?;
        let mut parsed = Vec::new();
        for (file, text) in units {
            let unit = unit::parse_unit(text)
                .map_err(|e| ConstitutionError { file: (*file).to_owned(), line: e.line, message: e.message })?;
            if file.strip_suffix(".md") != Some(unit.id.as_str()) {
                return Err(ConstitutionError {
                    file: (*file).to_owned(),
                    line: 2,
                    message: format!("the id {:?} must match the file name", unit.id),
                });
            }
            parsed.push(unit);
        }
        let kind_index = |k: Kind| manifest.kinds.iter().position(|x| *x == k).unwrap_or(usize::MAX);
        parsed.sort_by(|a, b| (kind_index(a.kind), a.rank, &a.id).cmp(&(kind_index(b.kind), b.rank, &b.id)));
        for pair in parsed.windows(2) {
            if pair[0].kind == pair[1].kind && pair[0].rank == pair[1].rank {
                return Err(ConstitutionError {
                    file: format!("{}.md", pair[1].id),
                    line: 2,
                    message: format!("rank {} of {:?} is taken by {}", pair[1].rank, pair[1].kind, pair[0].id),
                });
            }
        }
        Ok(Constitution { manifest, units: parsed })
    }

    /// A unit by id.
    pub fn unit(&self, id: &str) -> Option<&Unit> {
        self.units.iter().find(|u| u.id == id)
    }

    /// The profile for a model: the first profile whose name appears in the model's
    /// name or architecture (case-insensitive), else `default`.
    pub fn profile_for(&self, model_name: &str, architecture: &str) -> (&str, Profile) {
        let name = model_name.to_ascii_lowercase();
        let arch = architecture.to_ascii_lowercase();
        let found = self
            .manifest
            .profiles
            .iter()
            .filter(|(key, _)| key.as_str() != "default")
            .find(|(key, _)| name.contains(key.as_str()) || arch == **key);
        match found {
            Some((key, profile)) => (key.as_str(), *profile),
            None => ("default", self.manifest.profiles.get("default").copied().unwrap_or(Profile {
                context_length: 4096,
                system_cap: 384,
                reply_reserve: 1024,
            })),
        }
    }
}
