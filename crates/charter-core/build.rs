//! Checks Charter's constitution when the crate is built and compiles it in: a
//! malformed unit fails the build with its file and line.

use std::fmt::Write as _;
use std::path::Path;

#[allow(dead_code)]
#[path = "src/constitution/unit.rs"]
mod unit;

#[allow(dead_code)]
#[path = "src/constitution/manifest.rs"]
mod manifest;

fn main() {
    // The package folder of this run, not of the build that compiled this script: cargo
    // reuses builds across checkouts that share a target folder.
    let package = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from);
    let root = package.join("../../constitution");
    println!("cargo::rerun-if-changed={}", root.display());
    let manifest_path = root.join("manifest.toml");
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
    if let Err((line, message)) = manifest::parse_manifest(&manifest_text) {
        panic!("{}:{line}: {message}", manifest_path.display());
    }
    let mut files: Vec<_> = std::fs::read_dir(root.join("units"))
        .unwrap_or_else(|e| panic!("{}: {e}", root.join("units").display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut out = String::new();
    writeln!(out, "pub(crate) const MANIFEST: &str = include_str!({:?});", manifest_path.display().to_string()).ok();
    writeln!(out, "pub(crate) const UNITS: &[(&str, &str)] = &[").ok();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = unit::parse_unit(&text) {
            panic!("{}:{}: {}", path.display(), e.line, e.message);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string()).ok();
    }
    writeln!(out, "];").ok();
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("constitution.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
