//! The captioning engine: the only part of capwatch that imports `ort`.
//!
//! Layout:
//! - [`runtime`]: finds and loads the ONNX Runtime shared library once per process.
//! - [`settings`]: beam-search settings and attention geometry, shared by the stages below.
//! - [`model_dir`]: reads a model directory (config files) and detects its layout.
//! - [`preprocess`]: image bytes → normalized NCHW tensor, as the model's image processor does.
//! - [`resample`]: Pillow-exact resizing (HF processors resize with PIL).
//! - [`hf_config`]: transformers' class defaults and generation settings, as it reads them.
//! - [`logits`]: the logits processors those settings switch on.
//! - [`decoder`]: one decoding step for every supported decoder layout (KV cache or not).
//! - [`batch`]: greedy captions decoding together (continuous batching).
//! - [`beam`]: beam search, as transformers runs it, over a batch of beams.
//! - [`captioner`]: encoder + generation + tokenizer for one image or a batch.
//! - [`shared_weights`]: a model's weights read once and shared by the workers' sessions.
//! - [`threads`]: workers × ONNX Runtime threads when the config does not say.
//! - [`worker`]: worker threads owning the sessions, behind a bounded queue.
//!
//! Nothing here knows about HTTP; the server maps [`EngineError`] to status codes.

pub mod batch;
pub mod beam;
pub mod captioner;
pub mod decoder;
pub mod hf_config;
pub mod logits;
pub mod model_dir;
pub mod preprocess;
pub mod resample;
pub mod runtime;
pub mod settings;
pub mod shared_weights;
pub mod threads;
pub mod worker;

use std::time::Duration;

pub use captioner::Captioner;
pub use model_dir::{ModelLayout, ModelSpec};
pub use worker::{Engine, EngineOptions, StepDelay};

/// Everything that can go wrong between image bytes and a caption.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the image is empty")]
    EmptyImage,
    #[error("unsupported image format (supported: PNG, JPEG, GIF, WebP, BMP, TIFF)")]
    UnsupportedImageFormat,
    #[error("the image could not be decoded: {0}")]
    InvalidImage(String),
    #[error("the image is {width}x{height} pixels, more than the limit of {max_pixels} pixels")]
    ImageTooLarge { width: u32, height: u32, max_pixels: usize },
    #[error("max_new_tokens must be between 1 and {limit}, got {requested}")]
    InvalidMaxNewTokens { requested: usize, limit: usize },
    #[error("num_beams must be between 1 and {limit}, got {requested}")]
    InvalidNumBeams { requested: usize, limit: usize },
    #[error("the inference queue is full ({capacity} requests waiting); retry later")]
    Overloaded { capacity: usize },
    #[error("the engine is not running")]
    Unavailable,
    /// ONNX Runtime could not be found or loaded; the message says what to run.
    #[error("{0}")]
    Runtime(String),
    #[error("cannot load model from {path}: {reason}")]
    ModelLoad { path: String, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

impl EngineError {
    /// The exit code of a process that cannot go on after this error (`crate::exit_code`):
    /// a model or ONNX Runtime that cannot load is permanent, anything else may pass.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ModelLoad { .. } => crate::exit_code::MODEL,
            Self::Runtime(_) => crate::exit_code::RUNTIME,
            _ => crate::exit_code::FAILURE,
        }
    }
}

impl From<ort::Error> for EngineError {
    fn from(err: ort::Error) -> Self {
        Self::Inference(err.to_string())
    }
}

/// Time spent in each stage of one caption, measured on the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    /// Waiting in the queue for a worker.
    pub queue: Duration,
    /// Decoding the image file into pixels.
    pub decode: Duration,
    /// Resizing and normalizing pixels into the input tensor.
    pub preprocess: Duration,
    /// Running the vision encoder.
    pub encoder: Duration,
    /// Generation (all decoder steps) and detokenization.
    pub decoder: Duration,
}

impl StageTimings {
    /// Everything from entering the queue to the finished caption.
    pub fn total(&self) -> Duration {
        self.queue + self.decode + self.preprocess + self.encoder + self.decoder
    }

    /// Model time: what the network itself cost (encoder + decoder).
    pub fn model(&self) -> Duration {
        self.encoder + self.decoder
    }
}

/// A finished caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// The decoded text, special tokens removed, trimmed.
    pub text: String,
    /// Generated token ids (without the start token; with the stop token if one was produced).
    pub token_ids: Vec<i64>,
    pub timings: StageTimings,
    /// Images captioned together with this one (itself included).
    pub batch_size: usize,
    /// Beams searched (1: greedy).
    pub num_beams: usize,
    /// The image's drift profile (brightness, hue, size, format), read while it was decoded.
    pub image_profile: Option<Box<crate::drift::profile::ImageProfile>>,
    /// The image's encoder output averaged over positions (drift's embedding), when profiled.
    pub pooled_embedding: Option<Vec<f32>>,
}
