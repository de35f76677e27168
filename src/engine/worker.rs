//! Worker threads that own the ONNX Runtime sessions, fed through a bounded queue; a worker
//! decodes up to `max_batch_size` captions together, taking waiting requests into its batch
//! at each step boundary where the model allows (continuous batching, [`DecodingBatch`]),
//! and searches the captions that ask for beams in a [`BeamBatch`] beside it.
//!
//! Each worker loads its own [`Captioner`] (ONNX Runtime sessions are run from one thread
//! at a time) and warms it up before the engine reports ready; the workers' sessions share
//! one copy of the weights when there are several ([`SharedWeights`]). Requests go through a bounded MPMC queue with a one-shot reply each (TEI's
//! design); a full queue is refused at once with [`EngineError::Overloaded`] instead of
//! piling up memory. Closing the engine lets the workers drain what is queued, then exit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::batch::DecodingBatch;
use super::beam::BeamBatch;
use super::captioner::{BatchItem, Generated, RowTag};
use super::preprocess::{DecodeLimits, decode_image, to_pixel_values};
use super::shared_weights::SharedWeights;
use super::threads::{self, ThreadPlan};
use super::{Caption, Captioner, EngineError, ModelSpec, StageTimings};
use crate::drift::profile::ImageProfile;

mod jobs;
use jobs::serve_jobs;

/// How the engine runs the model.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Worker threads; `None`: chosen from the cores and the model ([`super::threads`]).
    pub workers: Option<usize>,
    /// ONNX Runtime intra-op threads per worker; `None`: chosen likewise.
    pub intra_op_threads: Option<usize>,
    /// Requests a worker captions together (1: no batching).
    pub max_batch_size: usize,
    /// How long a worker that has a request waits for more to fill its batch (0: no wait).
    pub batch_wait: Duration,
    /// Whether requests join a batch that is decoding (where the model allows it).
    pub join_running_batch: bool,
    pub queue_capacity: usize,
    pub max_image_pixels: usize,
    pub max_new_tokens_limit: usize,
    /// The most beams a request may ask for.
    pub max_num_beams: usize,
    pub onnxruntime_library: Option<PathBuf>,
    /// Added before every decoding step (zero unless a `slow_decoder` fault is injected).
    pub step_delay: StepDelay,
}

/// A pause every worker takes before each decoding step, changed while the engine runs (the
/// server's `slow_decoder` fault); zero, and free, otherwise.
#[derive(Debug, Clone, Default)]
pub struct StepDelay(Arc<AtomicU64>);

impl StepDelay {
    pub fn set(&self, delay: Duration) {
        self.0.store(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    /// Sleeps for the delay, if there is one.
    fn pause(&self) {
        let delay = self.get();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
}

struct CaptionJob {
    image: Bytes,
    max_new_tokens: usize,
    num_beams: usize,
    enqueued_at: Instant,
    reply_tx: oneshot::Sender<Result<Caption, EngineError>>,
}

struct EngineInner {
    spec: ModelSpec,
    options: EngineOptions,
    threads: ThreadPlan,
    job_tx: Mutex<Option<Sender<CaptionJob>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    workers_alive: Arc<AtomicUsize>,
}

/// Handle to the running workers; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

/// Decrements the live-worker count when a worker thread ends, however it ends.
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// Starts the workers, loads the model in each and warms it up. Blocks until all are
    /// ready, or returns the first load error.
    pub fn start(spec: ModelSpec, options: EngineOptions) -> Result<Self, EngineError> {
        let (job_tx, job_rx) = crossbeam_channel::bounded::<CaptionJob>(options.queue_capacity);
        // Each worker reports the spec as its sessions describe it (cross-attention cache or not).
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<ModelSpec, EngineError>>();
        let workers_alive = Arc::new(AtomicUsize::new(0));
        let threads = threads::plan(
            threads::model_bytes(model_files(&spec)),
            threads::available_cores(),
            options.workers,
            options.intra_op_threads,
        );
        let shared_weights = share_weights(&spec, &options, threads.workers)?;
        let load_turn = Arc::new(Mutex::new(()));
        let mut workers = Vec::with_capacity(threads.workers);
        for index in 0..threads.workers {
            let (worker_spec, worker_options, job_rx, ready_tx, shared_weights) =
                (spec.clone(), options.clone(), job_rx.clone(), ready_tx.clone(), shared_weights.clone());
            let load_turn = Arc::clone(&load_turn);
            workers_alive.fetch_add(1, Ordering::SeqCst);
            let alive = AliveGuard(Arc::clone(&workers_alive));
            let handle = std::thread::Builder::new()
                .name(format!("capwatch-engine-{index}"))
                .spawn(move || {
                    let _alive = alive;
                    // Workers sharing weights load one at a time, each giving its load-time
                    // garbage back before the next starts, so the peak is one load, not N.
                    let turn = shared_weights.as_ref().map(|_| load_turn.lock());
                    let captioner = Captioner::load(
                        &worker_spec,
                        threads.intra_op_threads,
                        worker_options.onnxruntime_library.as_deref(),
                        shared_weights.as_ref(),
                    )
                    .and_then(|mut captioner| warm_up(&mut captioner).map(|()| captioner));
                    release_load_garbage();
                    drop(turn);
                    match captioner {
                        Ok(captioner) => {
                            // The starter waits on ready_rx until every worker reported; if it gave
                            // up (an earlier worker failed), there is nobody left to tell.
                            let _ = ready_tx.send(Ok(captioner.spec().clone()));
                            drop(ready_tx);
                            serve_jobs(captioner, &job_rx, &worker_options);
                        }
                        Err(err) => {
                            // Same as above: a closed channel means start() already returned.
                            let _ = ready_tx.send(Err(err));
                        }
                    }
                })
                .map_err(|e| EngineError::ModelLoad {
                    path: spec.dir.display().to_string(),
                    reason: format!("cannot start worker thread: {e}"),
                })?;
            workers.push(handle);
        }
        drop(ready_tx);
        drop(job_rx);
        let mut engine = Self {
            inner: Arc::new(EngineInner {
                spec,
                options,
                threads,
                job_tx: Mutex::new(Some(job_tx)),
                workers: Mutex::new(workers),
                workers_alive,
            }),
        };
        for _ in 0..engine.inner.threads.workers {
            match ready_rx.recv() {
                Ok(Ok(loaded)) => {
                    // Nothing else holds the engine yet: the workers only have the job queue.
                    if let Some(inner) = Arc::get_mut(&mut engine.inner) {
                        inner.spec = loaded;
                    }
                }
                Ok(Err(err)) => {
                    engine.close();
                    return Err(err);
                }
                Err(_) => {
                    engine.close();
                    return Err(EngineError::Unavailable);
                }
            }
        }
        release_load_garbage();
        Ok(engine)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.inner.spec
    }

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Workers × ONNX Runtime threads this engine runs with.
    pub fn threads(&self) -> ThreadPlan {
        self.inner.threads
    }

    /// Requests waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.sender().map_or(0, |tx| tx.len())
    }

    /// Worker threads still running.
    pub fn workers_alive(&self) -> usize {
        self.inner.workers_alive.load(Ordering::SeqCst)
    }

    fn sender(&self) -> Option<Sender<CaptionJob>> {
        self.inner.job_tx.lock().ok().and_then(|tx| tx.clone())
    }

    /// The number of new tokens a request gets, validated against the configured limit.
    pub fn resolve_max_new_tokens(&self, requested: Option<usize>) -> Result<usize, EngineError> {
        let limit = self.inner.options.max_new_tokens_limit;
        match requested {
            None => Ok(self.inner.spec.generation.default_max_new_tokens.min(limit)),
            Some(n) if (1..=limit).contains(&n) => Ok(n),
            Some(n) => Err(EngineError::InvalidMaxNewTokens { requested: n, limit }),
        }
    }

    /// The number of beams a request gets: the model's own (`num_beams` of its generation
    /// settings) unless it asks, up to the configured limit.
    pub fn resolve_num_beams(&self, requested: Option<usize>) -> Result<usize, EngineError> {
        let limit = self.inner.options.max_num_beams;
        match requested {
            None => Ok(self.inner.spec.generation.beam.num_beams),
            Some(n) if (1..=limit).contains(&n) => Ok(n),
            Some(n) => Err(EngineError::InvalidNumBeams { requested: n, limit }),
        }
    }

    /// Captions an encoded image (PNG, JPEG, ...). Refuses at once when the queue is full.
    pub async fn caption(
        &self,
        image: Bytes,
        max_new_tokens: Option<usize>,
        num_beams: Option<usize>,
    ) -> Result<Caption, EngineError> {
        let max_new_tokens = self.resolve_max_new_tokens(max_new_tokens)?;
        let num_beams = self.resolve_num_beams(num_beams)?;
        let Some(job_tx) = self.sender() else {
            return Err(EngineError::Unavailable);
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = CaptionJob { image, max_new_tokens, num_beams, enqueued_at: Instant::now(), reply_tx };
        match job_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(EngineError::Overloaded { capacity: self.inner.options.queue_capacity });
            }
            Err(TrySendError::Disconnected(_)) => return Err(EngineError::Unavailable),
        }
        reply_rx.await.map_err(|_| EngineError::Unavailable)?
    }

    /// Stops taking requests; workers finish what is queued, then exit.
    pub fn close(&self) {
        if let Ok(mut tx) = self.inner.job_tx.lock() {
            tx.take();
        }
    }

    /// Closes the engine and waits for every worker to finish (at most `timeout`).
    pub fn shutdown(&self, timeout: Duration) {
        self.close();
        let deadline = Instant::now() + timeout;
        let handles: Vec<JoinHandle<()>> =
            self.inner.workers.lock().map(|mut w| w.drain(..).collect()).unwrap_or_default();
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                // A worker that panicked already logged it; nothing else to do with the result.
                let _ = handle.join();
            }
        }
    }
}

/// Gives the memory freed after loading (ONNX Runtime's parse of each model file, made on
/// every worker thread's own malloc arena) back to the system, so that the resident size
/// is the model, not the model plus its load-time garbage once per worker.
fn release_load_garbage() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// With several workers, the model's weights are read once and shared by every worker's
/// sessions; one worker keeps ONNX Runtime's default (its own, pre-packed weights).
fn share_weights(
    spec: &ModelSpec,
    options: &EngineOptions,
    workers: usize,
) -> Result<Option<SharedWeights>, EngineError> {
    if workers < 2 {
        return Ok(None);
    }
    super::runtime::environment(options.onnxruntime_library.as_deref())?;
    let files: Vec<&Path> = model_files(spec).collect();
    let shared = SharedWeights::read(&files)?;
    tracing::info!(bytes = shared.total_bytes(), workers, "model weights shared by the workers");
    Ok(Some(shared))
}

/// The ONNX files of a model.
fn model_files(spec: &ModelSpec) -> impl Iterator<Item = &Path> {
    [Some(spec.encoder_file.as_path()), Some(spec.decoder_file.as_path()), spec.decoder_with_past_file.as_deref()]
        .into_iter()
        .flatten()
}

/// One caption on a synthetic gradient, so the first real request pays no warm-up.
fn warm_up(captioner: &mut Captioner) -> Result<(), EngineError> {
    let spec = &captioner.spec().image;
    let image = image::RgbImage::from_fn(spec.width, spec.height, |x, y| {
        image::Rgb([(x * 255 / spec.width.max(1)) as u8, (y * 255 / spec.height.max(1)) as u8, 128])
    });
    captioner.caption_image(&image, 2).map(|_| ())
}
