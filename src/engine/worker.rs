//! Worker threads that own the ONNX Runtime sessions, fed through a bounded queue; a worker
//! decodes up to `max_batch_size` captions together, taking waiting requests into its batch
//! at each step boundary where the model allows (continuous batching, [`DecodingBatch`]).
//!
//! Each worker loads its own [`Captioner`] (ONNX Runtime sessions are run from one thread
//! at a time) and warms it up before the engine reports ready; the workers' sessions share
//! one copy of the weights when there are several ([`SharedWeights`]). Requests go through a bounded MPMC queue with a one-shot reply each (TEI's
//! design); a full queue is refused at once with [`EngineError::Overloaded`] instead of
//! piling up memory. Closing the engine lets the workers drain what is queued, then exit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::batch::DecodingBatch;
use super::captioner::BatchItem;
use super::preprocess::{DecodeLimits, decode_image, to_pixel_values};
use super::shared_weights::SharedWeights;
use super::threads::{self, ThreadPlan};
use super::{Caption, Captioner, EngineError, ModelSpec, StageTimings};

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
    pub onnxruntime_library: Option<PathBuf>,
}

struct CaptionJob {
    image: Bytes,
    max_new_tokens: usize,
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

    /// Captions an encoded image (PNG, JPEG, ...). Refuses at once when the queue is full.
    pub async fn caption(&self, image: Bytes, max_new_tokens: Option<usize>) -> Result<Caption, EngineError> {
        let max_new_tokens = self.resolve_max_new_tokens(max_new_tokens)?;
        let Some(job_tx) = self.sender() else {
            return Err(EngineError::Unavailable);
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = CaptionJob { image, max_new_tokens, enqueued_at: Instant::now(), reply_tx };
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

/// What a worker keeps for each caption in its batch, to answer it.
struct Reply {
    reply_tx: oneshot::Sender<Result<Caption, EngineError>>,
    timings: StageTimings,
}

/// The worker loop: takes waiting requests into the decoding batch (at once when it is
/// empty; at each step boundary while it decodes, where the model allows), then runs one
/// step and answers the captions that finished.
fn serve_jobs(mut captioner: Captioner, job_rx: &Receiver<CaptionJob>, options: &EngineOptions) {
    let limits = DecodeLimits { max_pixels: options.max_image_pixels };
    let max_batch = options.max_batch_size.max(1);
    let joins_mid_decode = options.join_running_batch && captioner.joins_mid_decode();
    let mut batch: DecodingBatch<Reply> = DecodingBatch::default();
    loop {
        let jobs = if batch.is_empty() {
            match job_rx.recv() {
                Ok(first) => gather_batch(first, job_rx, options),
                // Closed and drained: the engine is shutting down.
                Err(_) => return,
            }
        } else if joins_mid_decode && batch.len() < max_batch {
            job_rx.try_iter().take(max_batch - batch.len()).collect()
        } else {
            Vec::new()
        };
        let prepared = prepare_jobs(&captioner, jobs, limits);
        if !prepared.is_empty()
            && let Err((err, replies)) = captioner.join(&mut batch, prepared)
        {
            tracing::error!(error = %err, images = replies.len(), "encoder failed");
            for reply in replies {
                // The requester may have timed out and dropped its receiver.
                let _ = reply.reply_tx.send(Err(EngineError::Inference(err.to_string())));
            }
        }
        // Captions nobody waits for any more stop using the batch.
        batch.retain(|reply| !reply.reply_tx.is_closed());
        if batch.is_empty() {
            continue;
        }
        match captioner.step(&mut batch) {
            Ok(finished) => {
                for (reply, generated) in finished {
                    let timings = StageTimings {
                        encoder: generated.timings.encoder,
                        decoder: generated.timings.decoder,
                        ..reply.timings
                    };
                    let caption = Caption {
                        text: generated.text,
                        token_ids: generated.token_ids,
                        timings,
                        batch_size: generated.batch_size,
                    };
                    // As above: a requester that gave up no longer wants the caption.
                    let _ = reply.reply_tx.send(Ok(caption));
                }
            }
            Err(err) => {
                let replies = batch.drain();
                tracing::error!(error = %err, batch = replies.len(), "inference failed");
                for reply in replies {
                    // As above.
                    let _ = reply.reply_tx.send(Err(EngineError::Inference(err.to_string())));
                }
            }
        }
    }
}

/// `first` and whatever else is queued (up to the batch size), waiting at most `batch_wait`.
fn gather_batch(first: CaptionJob, job_rx: &Receiver<CaptionJob>, options: &EngineOptions) -> Vec<CaptionJob> {
    let mut jobs = vec![first];
    let deadline = Instant::now() + options.batch_wait;
    while jobs.len() < options.max_batch_size.max(1) {
        let next =
            if options.batch_wait.is_zero() { job_rx.try_recv().ok() } else { job_rx.recv_deadline(deadline).ok() };
        match next {
            Some(job) => jobs.push(job),
            None => break,
        }
    }
    jobs
}

/// Decodes and preprocesses each job's image; bad images (and requesters that went away
/// while queued) are answered or skipped here.
fn prepare_jobs(captioner: &Captioner, jobs: Vec<CaptionJob>, limits: DecodeLimits) -> Vec<(BatchItem, Reply)> {
    let mut prepared = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.reply_tx.is_closed() {
            continue;
        }
        let queue = job.enqueued_at.elapsed();
        let started = Instant::now();
        match decode_image(&job.image, limits) {
            Ok(image) => {
                let decode = started.elapsed();
                let started = Instant::now();
                let pixel_values = to_pixel_values(&image, &captioner.spec().image);
                let timings = StageTimings { queue, decode, preprocess: started.elapsed(), ..StageTimings::default() };
                let item = BatchItem { pixel_values, max_new_tokens: job.max_new_tokens };
                prepared.push((item, Reply { reply_tx: job.reply_tx, timings }));
            }
            // The requester may have timed out and dropped its receiver; the answer is then unwanted.
            Err(err) => drop(job.reply_tx.send(Err(err))),
        }
    }
    prepared
}
