//! The offline app's build step: after Trunk has built `dist/`, the service worker
//! (`public/sw.js`) is written into it with the build's version and the list of files
//! that make up the app's shell, so the browser can keep exactly this build for
//! offline starts and notice when another one is deployed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// What the template says before `cargo xtask build-web` names the build.
const VERSION_LINE: &str = "const VERSION = 'unbuilt';";
const SHELL_LINE: &str = "const SHELL = [];";

/// Folders of `dist/` that are not the shell: the default model is stored by the app's
/// own model store, not the service worker's cache.
const NOT_SHELL: &[&str] = &["models"];

/// Writes `dist/sw.js` from `template`; returns the build's version.
pub fn write_service_worker(dist: &Path, template: &Path) -> anyhow::Result<String> {
    let source = std::fs::read_to_string(template).with_context(|| format!("reading {}", template.display()))?;
    let files = shell_files(dist)?;
    let version = version(dist, &files)?;
    let mut shell: Vec<String> = vec!["./".into()];
    shell.extend(files.iter().filter(|f| f.as_str() != "index.html").cloned());
    let text = render(&source, &version, &shell)?;
    std::fs::write(dist.join("sw.js"), text).context("writing dist/sw.js")?;
    Ok(version)
}

/// The template with its two build lines filled in.
fn render(source: &str, version: &str, shell: &[String]) -> anyhow::Result<String> {
    if !source.contains(VERSION_LINE) || !source.contains(SHELL_LINE) {
        bail!("public/sw.js no longer has the lines `{VERSION_LINE}` and `{SHELL_LINE}` that the build fills in");
    }
    let list = serde_json::to_string(shell)?;
    Ok(source.replacen(VERSION_LINE, &format!("const VERSION = '{version}';"), 1).replacen(SHELL_LINE, &format!("const SHELL = {list};"), 1))
}

/// The shell's files, as paths relative to `dist` with `/` separators, sorted.
fn shell_files(dist: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dist.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            let rel = path.strip_prefix(dist)?.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
            if path.is_dir() {
                if !NOT_SHELL.contains(&rel.as_str()) {
                    stack.push(path);
                }
            } else if rel != "sw.js" {
                out.push(rel);
            }
        }
    }
    out.sort();
    if !out.iter().any(|f| f == "index.html") {
        bail!("{} has no index.html: Trunk did not build the app", dist.display());
    }
    Ok(out)
}

/// A hash of the shell's names and bytes: the same build always gets the same version,
/// and any change to any file a new one.
fn version(dist: &Path, files: &[String]) -> anyhow::Result<String> {
    let mut hash = Sha256::new();
    for file in files {
        let bytes = std::fs::read(dist.join(file)).with_context(|| format!("reading {file}"))?;
        hash.update((file.len() as u64).to_le_bytes());
        hash.update(file.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("charter-pwa-{}-{}", std::process::id(), files.len()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn the_shell_is_every_file_but_the_models_and_the_worker_itself() {
        let dir = dist(&[("index.html", "<html>"), ("a.js", "1"), ("icons/i.png", "p"), ("models/m.gguf", "GGUF"), ("sw.js", "old")]);
        assert_eq!(shell_files(&dir).unwrap(), ["a.js", "icons/i.png", "index.html"]);
        let template = dir.with_extension("template.js");
        std::fs::write(&template, format!("// x\n{VERSION_LINE}\n{SHELL_LINE}\n")).unwrap();
        let v1 = write_service_worker(&dir, &template).unwrap();
        std::fs::remove_file(&template).unwrap();
        let written = std::fs::read_to_string(dir.join("sw.js")).unwrap();
        assert!(written.contains(&format!("const VERSION = '{v1}';")), "{written}");
        assert!(written.contains(r#"const SHELL = ["./","a.js","icons/i.png"];"#), "{written}");
        // The same bytes give the same version; one changed byte another.
        assert_eq!(version(&dir, &shell_files(&dir).unwrap()).unwrap(), version(&dir, &shell_files(&dir).unwrap()).unwrap());
        let before = version(&dir, &shell_files(&dir).unwrap()).unwrap();
        std::fs::write(dir.join("a.js"), "2").unwrap();
        assert_ne!(version(&dir, &shell_files(&dir).unwrap()).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_template_without_its_build_lines_is_an_error() {
        assert!(render("const VERSION = 'x';", "v", &[]).is_err());
    }

    #[test]
    fn the_manifest_names_icons_that_exist_with_their_sizes() {
        let public = crate::workspace_root().join("public");
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(public.join("manifest.webmanifest")).unwrap()).unwrap();
        for key in ["id", "name", "short_name", "description", "start_url", "scope", "display", "theme_color", "background_color"] {
            assert!(manifest[key].as_str().is_some_and(|v| !v.is_empty()), "the manifest has {key}");
        }
        assert_eq!(manifest["display"], "standalone");
        // Relative, so the app installs from any sub-path.
        assert_eq!(manifest["start_url"], "./");
        let icons = manifest["icons"].as_array().unwrap();
        let mut seen = Vec::new();
        for icon in icons {
            let src = icon["src"].as_str().unwrap();
            let bytes = std::fs::read(public.join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
            let sizes = icon["sizes"].as_str().unwrap();
            if icon["type"] == "image/png" {
                // A PNG's width and height are the first fields of its IHDR chunk.
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{src} is a PNG");
                let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
                let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
                assert_eq!(format!("{w}x{h}"), sizes, "{src}'s size");
            }
            seen.push((sizes.to_owned(), icon["purpose"].as_str().unwrap_or("any").to_owned()));
        }
        for want in [("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")] {
            assert!(seen.contains(&(want.0.into(), want.1.into())), "an icon {want:?}");
        }
    }
}
