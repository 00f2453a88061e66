//! The JS API's build step: `public/api/core.js` is the one implementation of
//! `LanguageModel`, and two files carry it: `charter-api.js` (an ES module for pages of
//! Charter's own origin) and `widget.js` (a classic script on any site, which speaks to
//! the widget's frame). Each template has one marker line where the core goes, and the
//! core one placeholder where the model catalog goes as JSON (the default model's size
//! and hash; a widget's host page could not fetch it from Charter's origin without
//! CORS). The build writes the results into `dist/`, with the types.

use std::path::Path;

use anyhow::{Context, bail};
use charter_core::catalog::Catalog;

/// The line in a template that the core replaces.
const MARKER: &str = "// @charter-api-core";

/// The catalog's place in the core.
const CATALOG: &str = "/* @charter-catalog */ { models: [] }";

/// The files built from a template around the core.
const CARRIERS: &[&str] = &["charter-api.js", "widget.js"];

/// Writes the API's files into `dist`.
pub fn write(dist: &Path, public: &Path) -> anyhow::Result<()> {
    let core = std::fs::read_to_string(public.join("api/core.js")).context("reading public/api/core.js")?;
    if core.matches(CATALOG).count() != 1 {
        bail!("public/api/core.js must hold `{CATALOG}` once: the build puts the catalog there");
    }
    let core = core.replacen(CATALOG, &catalog_json()?, 1);
    for name in CARRIERS {
        let template = std::fs::read_to_string(public.join(name)).with_context(|| format!("reading public/{name}"))?;
        let text = compose(&template, &core).with_context(|| format!("public/{name}"))?;
        std::fs::write(dist.join(name), text).with_context(|| format!("writing dist/{name}"))?;
    }
    std::fs::copy(public.join("charter-api.d.ts"), dist.join("charter-api.d.ts")).context("copying charter-api.d.ts")?;
    Ok(())
}

/// `template` with its marker line replaced by `core`.
fn compose(template: &str, core: &str) -> anyhow::Result<String> {
    let lines = template.lines().filter(|l| l.trim() == MARKER).count();
    if lines != 1 {
        bail!("has the line `{MARKER}` {lines} times; the build puts the API's core there, so it must be there once");
    }
    let mut out = String::with_capacity(template.len() + core.len());
    for line in template.split_inclusive('\n') {
        if line.trim() == MARKER {
            let indent = &line[..line.len() - line.trim_start().len()];
            for core_line in core.split_inclusive('\n') {
                if !core_line.trim().is_empty() {
                    out.push_str(indent);
                }
                out.push_str(core_line);
            }
            if !core.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// The catalog as the API reads it: what to fetch and how to check it, for each model.
/// Fields the catalog could not verify are left out, as the app leaves them out.
fn catalog_json() -> anyhow::Result<String> {
    let catalog = Catalog::builtin().context("models/catalog.toml")?;
    let models: Vec<serde_json::Value> = catalog
        .models
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "name": m.name,
                "file": m.file,
                "url": m.url,
                "default": m.default,
                "chat": m.chat,
                "context_length": m.context_length,
                "size": m.is_verified("size_bytes").then_some(m.size_bytes),
                "sha256": m.checked_sha256(),
            })
        })
        .collect();
    Ok(serde_json::to_string(&serde_json::json!({ "models": models }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_goes_where_the_marker_is_with_its_indent() {
        let out = compose("a\n  // @charter-api-core\nb\n", "x\n\ny\n").unwrap();
        assert_eq!(out, "a\n  x\n\n  y\nb\n");
    }

    #[test]
    fn a_template_without_one_marker_is_refused() {
        assert!(compose("a\nb\n", "x").is_err());
        assert!(compose("// @charter-api-core\n// @charter-api-core\n", "x").is_err());
    }

    #[test]
    fn the_catalog_names_the_default_model_with_its_hash() {
        let json: serde_json::Value = serde_json::from_str(&catalog_json().unwrap()).unwrap();
        let models = json["models"].as_array().unwrap();
        let default: Vec<_> = models.iter().filter(|m| m["default"] == true).collect();
        assert_eq!(default.len(), 1);
        assert!(default[0]["sha256"].as_str().is_some_and(|s| s.len() == 64));
        assert!(default[0]["size"].as_u64().is_some());
    }

    #[test]
    fn the_core_has_its_catalog_placeholder() {
        let public = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../public");
        let core = std::fs::read_to_string(public.join("api/core.js")).unwrap();
        assert_eq!(core.matches(CATALOG).count(), 1);
    }

    #[test]
    fn every_template_in_public_has_its_marker() {
        let public = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../public");
        for name in CARRIERS {
            let template = std::fs::read_to_string(public.join(name)).unwrap();
            compose(&template, "core").unwrap();
        }
    }
}
