//! House rules checked by a test: every Rust file opens with module docs, no test is
//! skipped or expects a panic, no trailing whitespace.

use std::path::{Path, PathBuf};

/// Checks every `.rs` file under `crates/`; returns how many were read.
pub fn check(root: &Path) -> anyhow::Result<usize> {
    let mut files = Vec::new();
    collect(&root.join("crates"), &mut files)?;
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        if !text.starts_with("//!") {
            problems.push(format!("{shown}: does not start with `//!` module docs"));
        }
        for (n, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                problems.push(format!("{shown}:{}: trailing whitespace", n + 1));
            }
            let code = line.trim_start();
            for banned in ["#[ignore", "#[should_panic"] {
                if code.starts_with(banned) {
                    problems.push(format!("{shown}:{}: {banned}] (assert the behaviour instead)", n + 1));
                }
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("tidy found {} problems:\n{}", problems.len(), problems.join("\n"));
    }
    Ok(files.len())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workspace_is_tidy() {
        let n = super::check(&super::super::workspace_root()).unwrap();
        assert!(n > 10);
    }

    #[test]
    fn tidy_catches_what_it_should() {
        let dir = std::env::temp_dir().join(format!("charter-tidy-{}", std::process::id()));
        let crates = dir.join("crates/x/src");
        std::fs::create_dir_all(&crates).unwrap();
        std::fs::write(crates.join("lib.rs"), "fn f() {} \n#[ignore]\n").unwrap();
        let err = super::check(&dir).unwrap_err().to_string();
        assert!(err.contains("module docs") && err.contains("trailing whitespace") && err.contains("#[ignore"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
