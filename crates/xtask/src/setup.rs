//! Installs what the web build and the browser tests need, each only when missing:
//! the wasm target, the pinned nightly toolchain with the standard library's source
//! (for the threaded worker), wasm-bindgen-cli at the version in Cargo.lock, Trunk, Chromium
//! with its driver, a Vulkan driver for the GPU kernels' tests (Mesa's software
//! lavapipe where the machine has none), and the end-to-end tests' npm packages.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{run, workspace_root};

/// Trunk's version, pinned (Trunk.toml says the same).
pub const TRUNK_VERSION: &str = "0.21.14";

/// Everything.
pub fn all() -> anyhow::Result<()> {
    wasm_target()?;
    web_tools()?;
    chromium()?;
    vulkan_driver()?;
    npm_in("tests/e2e")
}

/// Where Vulkan drivers register themselves.
const VULKAN_ICDS: &str = "/usr/share/vulkan/icd.d";

/// A Vulkan driver for wgpu: the machine's own, or Mesa's (lavapipe runs the GPU
/// kernels on the CPU, so their tests run on any machine).
pub fn vulkan_driver() -> anyhow::Result<()> {
    let registered = std::fs::read_dir(VULKAN_ICDS).map(|d| d.flatten().count() > 0).unwrap_or(false);
    if registered {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.arg("update");
    run(update).context("Mesa's Vulkan drivers come from Debian's packages; apt-get is needed (as root)")?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "--no-install-recommends", "mesa-vulkan-drivers"]);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

/// What `trunk build` and the threaded worker's build need.
pub fn web_tools() -> anyhow::Result<()> {
    wasm_bindgen()?;
    nightly()?;
    trunk()
}

/// The nightly toolchain the threaded worker is built with, pinned: shared memory in
/// wasm needs the standard library rebuilt with atomics (`-Z build-std`), which only
/// nightly offers. Its date is the one of the stable release the rest builds with.
pub const NIGHTLY: &str = "nightly-2026-05-20";

/// [`NIGHTLY`] with the wasm target and `rust-src`.
pub fn nightly() -> anyhow::Result<()> {
    let has = |args: &[&str], what: &str| {
        Command::new("rustup").args(args).output().is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(what))
    };
    if has(&["component", "list", "--installed", "--toolchain", NIGHTLY], "rust-src")
        && has(&["target", "list", "--installed", "--toolchain", NIGHTLY], "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    let mut c = Command::new("rustup");
    c.args(["toolchain", "install", NIGHTLY, "--profile", "minimal", "--component", "rust-src", "--target", "wasm32-unknown-unknown"]);
    run(c).context("installing the nightly toolchain for the threaded worker")
}

/// The wasm32 target.
pub fn wasm_target() -> anyhow::Result<()> {
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

fn version_of(program: &str) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The wasm-bindgen version Cargo.lock pins: the CLI must match it exactly.
pub fn locked_wasm_bindgen() -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_owned());
            }
        }
    }
    bail!("Cargo.lock has no wasm-bindgen")
}

fn wasm_bindgen() -> anyhow::Result<()> {
    let want = locked_wasm_bindgen()?;
    let have = version_of("wasm-bindgen").unwrap_or_default();
    if have.ends_with(&want) && version_of("wasm-bindgen-test-runner").is_some_and(|v| v.ends_with(&want)) {
        return Ok(());
    }
    // Not --locked: one of the CLI's locked dependencies is gone from the registry.
    let mut c = Command::new("cargo");
    c.args(["install", "wasm-bindgen-cli", "--version", &want, "--force"]);
    run(c)
}

fn trunk() -> anyhow::Result<()> {
    if version_of("trunk").is_some_and(|v| v.ends_with(TRUNK_VERSION)) {
        return Ok(());
    }
    let mut c = Command::new("cargo");
    c.args(["install", "trunk", "--version", TRUNK_VERSION, "--locked", "--force"]);
    run(c)
}

/// The Chromium the browser tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Its driver, for wasm-bindgen-test.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium and its driver, from Debian's packages.
pub fn chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.arg("update");
    run(update).context("Chromium comes from Debian's packages; apt-get is needed (as root)")?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

/// The npm packages of `folder` (a package.json with its lock file).
pub fn npm_in(folder: &str) -> anyhow::Result<()> {
    let dir = workspace_root().join(folder);
    if dir.join("node_modules/.package-lock.json").exists() {
        return Ok(());
    }
    let mut c = Command::new("npm");
    c.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
    run(c)
}

/// llama-cpp-python's version for the bench's native reference.
pub const LLAMA_CPP_PYTHON: &str = "0.3.36";

/// Compiler flags for the bench's llama.cpp beyond `-march=native`. On x86-64, without
/// AMX: ggml's AMX matrix kernels crash (SIGSEGV in `ggml_backend_amx_mul_mat`) on
/// machines whose processor has AMX but whose kernel or hypervisor does not hand its tile
/// state to the process; the reference is llama.cpp's AVX2/AVX-512 path, the one users'
/// machines take. GCC lets an explicit `-mno-…` win over `-march=native` in any order.
const LLAMA_CPP_CFLAGS: &str = if cfg!(target_arch = "x86_64") { "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" } else { "" };

/// A Python with llama-cpp-python, for the bench only (never the tests): a virtual
/// environment under the cache folder, made when missing. pip builds llama.cpp from
/// source for this processor, which takes about ten minutes on two cores. The folder is
/// named for the version and the build flags, so a change of either builds afresh.
pub fn bench_python() -> anyhow::Result<std::path::PathBuf> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_else(|| ".".into());
    let flavour = if LLAMA_CPP_CFLAGS.is_empty() { "native" } else { "native-noamx" };
    let venv = home.join(format!(".cache/charter/bench-venv-{LLAMA_CPP_PYTHON}-{flavour}"));
    let python = venv.join("bin/python");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import llama_cpp, numpy; assert llama_cpp.__version__ == '{LLAMA_CPP_PYTHON}'")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return Ok(python);
    }
    eprintln!("xtask: installing llama-cpp-python {LLAMA_CPP_PYTHON} for the bench (it builds llama.cpp: about ten minutes)");
    let mut c = Command::new("python3");
    c.args(["-m", "venv"]).arg(&venv);
    run(c).context("making the bench's Python environment")?;
    let mut c = Command::new(&python);
    // No wheel cache: a wheel pip built earlier may have been built with other flags.
    c.args(["-m", "pip", "install", "--quiet", "--no-cache-dir", &format!("llama-cpp-python=={LLAMA_CPP_PYTHON}"), "numpy"])
        .env("CMAKE_ARGS", "-DGGML_NATIVE=ON")
        .env("CFLAGS", LLAMA_CPP_CFLAGS)
        .env("CXXFLAGS", LLAMA_CPP_CFLAGS);
    run(c).context("installing llama-cpp-python")?;
    if !has(&python) {
        bail!("llama-cpp-python {LLAMA_CPP_PYTHON} did not install into {}", venv.display());
    }
    Ok(python)
}
