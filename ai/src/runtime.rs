//! The ONNX Runtime library: found (configured, beside the binary, in the system, or in the
//! development set-up's Python environment), loaded once per process, and asked which
//! execution providers it was built with. Which one a model actually runs on is decided per
//! session by trying them, best first (see the session module).

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Execution providers tried for a session, best first; the CPU one always works.
pub const PROVIDERS: [&str; 3] = ["TensorRT", "CUDA", "CPU"];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderReport {
    pub name: String,
    /// The library was built with it (a session may still fail to use it).
    pub compiled_in: bool,
}

/// What was found at start, as `GET /api/ai` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuntimeReport {
    /// The library loaded, or `None` when none was found or it would not load.
    pub library: Option<String>,
    /// Its version, from its file name.
    pub version: Option<String>,
    /// Why inference is unavailable, when it is.
    pub error: Option<String>,
    pub providers: Vec<ProviderReport>,
    /// Threads each session uses.
    pub intra_threads: usize,
}

/// A loaded runtime: sessions are made in its environment.
pub struct Runtime {
    pub(crate) env: ort::environment::Environment,
    pub report: RuntimeReport,
}

/// Where the library may be, in order: `configured` (a file), `ORT_DYLIB_PATH`, beside the
/// binary (`../lib`), the system's library directories, and a source checkout's
/// `target/pyenv` (the `onnxruntime` wheel the set-up installs) beside `target/<profile>/`.
pub fn candidates(configured: &Path) -> Vec<PathBuf> {
    if !configured.as_os_str().is_empty() {
        return vec![configured.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("../lib")))
    {
        dirs.push(d);
    }
    dirs.extend(
        [
            "/usr/lib",
            "/usr/local/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
        ]
        .map(PathBuf::from),
    );
    // A source checkout: the binary is target/<profile>/livepeer-edge, the set-up's Python
    // environment target/pyenv.
    let pyenv = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("../pyenv/lib")));
    if let Some(libs) = pyenv.and_then(|p| std::fs::read_dir(p).ok()) {
        for python in libs.flatten() {
            dirs.push(python.path().join("site-packages/onnxruntime/capi"));
        }
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        // The versioned file (libonnxruntime.so.1.32.0) over its links.
        found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        out.extend(found.into_iter().take(1));
    }
    out
}

fn version_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("libonnxruntime.so.").map(String::from)
}

/// Threads a session uses when not configured: all cores but one, left to the media engine.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1).max(1))
        .unwrap_or(1)
}

impl Runtime {
    /// Loads the first library of [`candidates`] that loads. `Err` carries the report saying
    /// why none did (inference is then unavailable; the node runs on without it).
    pub fn load(configured: &Path, intra_threads: usize) -> Result<Runtime, RuntimeReport> {
        let threads = if intra_threads == 0 {
            default_threads()
        } else {
            intra_threads
        };
        let mut report = RuntimeReport {
            library: None,
            version: None,
            error: None,
            providers: Vec::new(),
            intra_threads: threads,
        };
        let paths = candidates(configured);
        if paths.is_empty() {
            report.error = Some(
                "no ONNX Runtime library found (set ai.onnxruntime_path to libonnxruntime.so)"
                    .into(),
            );
            return Err(report);
        }
        let mut errors = Vec::new();
        for path in paths {
            if !path.is_file() {
                errors.push(format!("{}: no such file", path.display()));
                continue;
            }
            // A library that fails to load leaves nothing behind; the next one is tried.
            let env = ort::init_from(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    b.with_name("livepeer-edge")
                        .with_telemetry(false)
                        .build()
                        .map_err(|e| e.to_string())
                });
            match env {
                Ok(env) => {
                    report.library = Some(path.display().to_string());
                    report.version = version_of(&path);
                    report.providers = providers();
                    return Ok(Runtime { env, report });
                }
                Err(e) => errors.push(format!("{}: {e}", path.display())),
            }
        }
        report.error = Some(format!(
            "ONNX Runtime would not load: {}",
            errors.join("; ")
        ));
        Err(report)
    }
}

/// [`PROVIDERS`], each with whether the library was built with it.
fn providers() -> Vec<ProviderReport> {
    use ort::ep::ExecutionProvider;
    PROVIDERS
        .iter()
        .map(|&name| {
            let compiled_in = match name {
                "TensorRT" => ort::ep::TensorRT::is_available(),
                "CUDA" => ort::ep::CUDA::is_available(),
                _ => Ok(true),
            };
            ProviderReport {
                name: name.into(),
                compiled_in: compiled_in.unwrap_or(false),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_path_is_the_only_candidate() {
        assert_eq!(
            candidates(Path::new("/opt/ort/libonnxruntime.so")),
            vec![PathBuf::from("/opt/ort/libonnxruntime.so")]
        );
        assert_eq!(
            version_of(Path::new("/x/libonnxruntime.so.1.32.0")).as_deref(),
            Some("1.32.0")
        );
        assert_eq!(version_of(Path::new("/x/libonnxruntime.so")), None);
        assert!(default_threads() >= 1);
    }
}
