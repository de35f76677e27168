//! What the dashboard checks before it launches (or relaunches) `capwatch serve`: every model
//! directory (one per variant) has a known layout, the ONNX Runtime library is there, the port is free. Each
//! failure is told in the words `capwatch serve` itself would use, with the exit code it
//! would exit with, so the supervisor reports it once and does not retry.

use std::path::PathBuf;

use crate::config::ServiceConfig;
use crate::engine::ModelSpec;
use crate::exit_code;

/// The checks for one server configuration.
#[derive(Debug, Clone)]
pub struct Preflight {
    model_dirs: Vec<PathBuf>,
    onnxruntime_library: Option<PathBuf>,
    host: String,
    port: u16,
}

/// A check that failed: what `capwatch serve` would print, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightFailure {
    pub code: i32,
    pub reason: String,
}

impl Preflight {
    pub fn new(service: &ServiceConfig) -> Self {
        Self {
            // The config was checked when it was loaded; on a mismatch, check the one directory.
            model_dirs: service.variants().map_or_else(
                |_| vec![service.model_dir.clone()],
                |variants| variants.into_iter().map(|v| v.dir).collect(),
            ),
            onnxruntime_library: service.onnxruntime_library.clone(),
            host: service.host.clone(),
            port: service.port,
        }
    }

    /// Runs every check (reads a few small files, binds and releases the port).
    pub fn check(&self) -> Result<(), PreflightFailure> {
        let fail = |code: u8, reason: String| PreflightFailure { code: i32::from(code), reason };
        for dir in &self.model_dirs {
            ModelSpec::read(dir).map_err(|err| fail(exit_code::MODEL, err.to_string()))?;
        }
        crate::engine::runtime::locate(self.onnxruntime_library.as_deref())
            .map_err(|err| fail(exit_code::RUNTIME, err.to_string()))?;
        if self.port != 0 {
            let address = format!("{}:{}", self.host, self.port);
            // Dropped at once: the child binds it a moment later.
            std::net::TcpListener::bind(&address)
                .map_err(|err| fail(exit_code::ADDRESS, format!("cannot listen on {address}: {err}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_and_a_taken_port_are_told_as_serve_tells_them() {
        let mut service = ServiceConfig { model_dir: PathBuf::from("/nonexistent"), ..ServiceConfig::default() };
        let failure = Preflight::new(&service).check().unwrap_err();
        assert_eq!(failure.code, 3);
        assert_eq!(failure.reason, "cannot load model from /nonexistent: no such directory");

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        service.model_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default"));
        service.host = "127.0.0.1".to_owned();
        service.port = taken.local_addr().unwrap().port();
        let failure = Preflight::new(&service).check().unwrap_err();
        // The ONNX Runtime check comes first when the library is missing on this machine.
        if failure.code == 5 {
            assert!(
                failure.reason.starts_with(&format!("cannot listen on 127.0.0.1:{}: ", service.port)),
                "{failure:?}"
            );
        } else {
            assert_eq!(failure.code, 4, "{failure:?}");
        }
    }

    #[test]
    fn every_variant_directory_is_checked() {
        let variant = |name: &str, dir: &str| crate::config::ModelVariantConfig {
            name: crate::config::VariantName::try_from(name.to_owned()).unwrap(),
            dir: PathBuf::from(dir),
            weight: None,
        };
        let good = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default");
        let service = ServiceConfig {
            models: vec![variant("a", good), variant("b", "/nonexistent-b")],
            port: 0,
            ..ServiceConfig::default()
        };
        let failure = Preflight::new(&service).check().unwrap_err();
        assert_eq!(
            (failure.code, failure.reason.as_str()),
            (3, "cannot load model from /nonexistent-b: no such directory")
        );
    }
}
