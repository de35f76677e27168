//! `service:` — the settings only `capwatch serve` reads (bind address, model, limits) and
//! their defaults. Plain data: it must not read files, environment variables or start anything.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;

use super::nz;

/// `service:` — where and how `capwatch serve` runs the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free port).
    pub port: u16,
    /// Model directory (see DESIGN.md "Models" for the layouts).
    pub model_dir: PathBuf,
    /// Explicit path to `libonnxruntime.so`; `ORT_DYLIB_PATH` wins over it.
    pub onnxruntime_library: Option<PathBuf>,
    /// Worker threads, each running its own ONNX Runtime sessions (on one shared copy of the
    /// weights). Unset: chosen from the cores and the model (`engine::threads`).
    pub workers: Option<NonZeroUsize>,
    /// ONNX Runtime intra-op threads per worker. Unset: chosen likewise.
    pub intra_op_threads: Option<NonZeroUsize>,
    /// Requests a worker captions together as one batch (1 turns batching off).
    pub max_batch_size: NonZeroUsize,
    /// How long a worker holding a request waits for more to fill its batch (0: no added wait).
    pub batch_wait_ms: u64,
    /// Whether requests join a batch that is already decoding, at the next step boundary
    /// (where the model's decoder allows it); off: they wait for the next batch.
    pub join_running_batch: bool,
    /// Requests allowed to wait for a worker; beyond that the server answers 503.
    pub queue_capacity: NonZeroUsize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: NonZeroUsize,
    /// Largest accepted image, in pixels (width × height), checked before decoding.
    pub max_image_pixels: NonZeroUsize,
    /// Upper bound for a request's `max_new_tokens`.
    pub max_new_tokens_limit: NonZeroUsize,
    /// Upper bound for a request's `num_beams` (beam search costs that many decoder rows).
    pub max_num_beams: NonZeroUsize,
    /// Time a caption request may take in total (queue included) before 504.
    pub request_timeout_s: NonZeroUsize,
    /// Fault injection for rehearsing alerts (`POST /chaos` from loopback); `serve --chaos`.
    pub chaos: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            model_dir: PathBuf::from("models/default"),
            onnxruntime_library: None,
            workers: None,
            intra_op_threads: None,
            max_batch_size: nz(8),
            batch_wait_ms: 0,
            join_running_batch: true,
            queue_capacity: nz(64),
            max_body_bytes: nz(10 * 1024 * 1024),
            max_image_pixels: nz(40_000_000),
            max_new_tokens_limit: nz(128),
            max_num_beams: nz(8),
            request_timeout_s: nz(30),
            chaos: false,
        }
    }
}

impl ServiceConfig {
    /// The model's name as notifications and the UI show it: the model directory's name.
    pub fn model_name(&self) -> String {
        self.model_dir
            .file_name()
            .map_or_else(|| self.model_dir.display().to_string(), |name| name.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.service.port, 8000);
        assert_eq!(config.service.host, "127.0.0.1");
        assert_eq!(config.service.max_body_bytes.get(), 10 * 1024 * 1024);
        assert_eq!(config.service.queue_capacity.get(), 64);
        assert_eq!(config.service.workers, None);
        assert_eq!(config.service.max_batch_size.get(), 8);
        assert!(config.service.join_running_batch);
        assert_eq!(config.service.max_num_beams.get(), 8);
    }

    #[test]
    fn values_override_defaults() {
        let config = parse("service:\n  port: 9001\n  workers: 3\n  join_running_batch: false\n").unwrap();
        assert_eq!(config.service.port, 9001);
        assert!(!config.service.join_running_batch);
        assert_eq!(config.service.workers.map(std::num::NonZeroUsize::get), Some(3));
        assert_eq!(config.service.intra_op_threads, None);
    }
}
