//! Finding and loading the ONNX Runtime shared library (the `ort` crate's `load-dynamic`).
//!
//! Search order: `ORT_DYLIB_PATH`, the config's `service.onnxruntime_library`, then
//! `.ort/libonnxruntime.so` in the working directory or above the executable (where
//! `tools/fetch_onnxruntime.py` puts it). The environment is created once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use super::EngineError;

/// File name of the library inside the fetch folder.
pub const LIBRARY_FILE: &str = "libonnxruntime.so";
/// Folder (relative to the repository root) where the setup script puts the library.
pub const FETCH_DIR: &str = ".ort";
/// What to run when the library is missing.
pub const SETUP_HINT: &str = "Run `make setup` (or `python3 tools/fetch_onnxruntime.py`) in the capwatch repository, or set ORT_DYLIB_PATH to libonnxruntime.so";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Where `tools/fetch_onnxruntime.py` may have put the library, in the order tried.
pub fn fetched_library_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(FETCH_DIR).join(LIBRARY_FILE));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/capwatch (or target/debug/deps/test-…): the repository root
        // is a few levels up.
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join(FETCH_DIR).join(LIBRARY_FILE));
        }
    }
    candidates
}

/// Picks the first existing candidate, or explains where it looked.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, EngineError> {
    // An explicit ORT_DYLIB_PATH or config entry that does not exist is an error of its own:
    // silently falling back would load a library the user did not ask for.
    let explicit = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| configured.map(Path::to_owned));
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EngineError::Runtime(format!("ONNX Runtime library {} does not exist. {SETUP_HINT}", path.display())))
        };
    }
    let candidates = fetched_library_candidates();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        EngineError::Runtime(format!("ONNX Runtime library not found (looked in: {}). {SETUP_HINT}", looked.join(", ")))
    })
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment(configured: Option<&Path>) -> Result<Environment, EngineError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = locate(configured).map_err(|e| e.to_string())?;
        let load_error =
            |e: &dyn std::fmt::Display| format!("cannot load ONNX Runtime from {}: {e}. {SETUP_HINT}", path.display());
        let builder = ort::init_from(&path).map_err(|e| load_error(&e))?;
        builder.with_name("capwatch").build().map_err(|e| load_error(&e))
    });
    match result {
        Ok(env) => Ok(env.clone()),
        Err(message) => Err(EngineError::Runtime(message.clone())),
    }
}
