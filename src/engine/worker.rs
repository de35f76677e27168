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

/// What a worker keeps for each caption in its batch, to answer it.
struct Reply {
    reply_tx: oneshot::Sender<Result<Caption, EngineError>>,
    timings: StageTimings,
    num_beams: usize,
    image_profile: Option<Box<ImageProfile>>,
    pooled_embedding: Option<Vec<f32>>,
}

impl RowTag for Reply {
    /// Images profiled for drift also keep their pooled embedding.
    fn wants_embedding(&self) -> bool {
        self.image_profile.is_some()
    }

    fn embedded(&mut self, pooled: Vec<f32>) {
        self.pooled_embedding = Some(pooled);
    }
}

impl Reply {
    /// Sends the caption (a requester that gave up no longer wants it).
    fn answer(self, generated: Generated) {
        let timings =
            StageTimings { encoder: generated.timings.encoder, decoder: generated.timings.decoder, ..self.timings };
        let caption = Caption {
            text: generated.text,
            token_ids: generated.token_ids,
            timings,
            batch_size: generated.batch_size,
            num_beams: self.num_beams,
            image_profile: self.image_profile,
            pooled_embedding: self.pooled_embedding,
        };
        // The requester may have timed out and dropped its receiver.
        let _ = self.reply_tx.send(Ok(caption));
    }

    fn fail(self, err: &EngineError) {
        // As above: nobody may be waiting any more.
        let _ = self.reply_tx.send(Err(EngineError::Inference(err.to_string())));
    }
}

/// The worker loop. Greedy captions decode in a [`DecodingBatch`] that takes waiting requests
/// at once when it is empty and at each step boundary while it decodes, where the model
/// allows. Captions searched with beams decode in a [`BeamBatch`] that starts together and
/// runs to its end (requests for beams wait until it is empty, at most `max_batch_size` beams
/// in all, at least one image). Each turn of the loop runs one step of each batch that has
/// work, so neither kind holds up the other.
fn serve_jobs(mut captioner: Captioner, job_rx: &Receiver<CaptionJob>, options: &EngineOptions) {
    let limits = DecodeLimits { max_pixels: options.max_image_pixels };
    let max_batch = options.max_batch_size.max(1);
    let joins_mid_decode = options.join_running_batch && captioner.joins_mid_decode();
    let mut batch: DecodingBatch<Reply> = DecodingBatch::default();
    let mut beams: BeamBatch<Reply> = BeamBatch::default();
    let mut waiting_beams: Vec<(BatchItem, Reply)> = Vec::new();
    loop {
        let idle = batch.is_empty() && beams.is_empty() && waiting_beams.is_empty();
        let jobs = if idle {
            match job_rx.recv() {
                Ok(first) => gather_batch(first, job_rx, options),
                // Closed and drained: the engine is shutting down.
                Err(_) => return,
            }
        } else {
            let greedy_room = if batch.is_empty() {
                max_batch
            } else if joins_mid_decode {
                max_batch.saturating_sub(batch.len())
            } else {
                0
            };
            // Requests for beams taken now wait in this worker: take no more than one batch's worth.
            let room = greedy_room.min(max_batch.saturating_sub(waiting_beams.len()));
            job_rx.try_iter().take(room).collect()
        };
        let (beam_jobs, greedy_jobs): (Vec<_>, Vec<_>) =
            prepare_jobs(&captioner, jobs, limits).into_iter().partition(|(item, _)| item.num_beams > 1);
        waiting_beams.extend(beam_jobs);
        if !greedy_jobs.is_empty()
            && let Err((err, replies)) = captioner.join(&mut batch, greedy_jobs)
        {
            tracing::error!(error = %err, images = replies.len(), "encoder failed");
            replies.into_iter().for_each(|reply| reply.fail(&err));
        }
        if beams.is_empty() && !waiting_beams.is_empty() {
            let images = take_beam_batch(&mut waiting_beams, max_batch);
            if let Err((err, replies)) = captioner.start_beams(&mut beams, images) {
                tracing::error!(error = %err, images = replies.len(), "encoder failed");
                replies.into_iter().for_each(|reply| reply.fail(&err));
            }
        }
        // Captions nobody waits for any more stop using the batches.
        batch.retain(|reply| !reply.reply_tx.is_closed());
        waiting_beams.retain(|(_, reply)| !reply.reply_tx.is_closed());
        if let Err(err) = beams.retain(|reply| !reply.reply_tx.is_closed()) {
            fail_all(beams.drain(), &err, "beam search failed");
        }
        if !batch.is_empty() || !beams.is_empty() {
            options.step_delay.pause();
        }
        if !batch.is_empty() {
            match captioner.step(&mut batch) {
                Ok(finished) => finished.into_iter().for_each(|(reply, generated)| reply.answer(generated)),
                Err(err) => fail_all(batch.drain(), &err, "inference failed"),
            }
        }
        if !beams.is_empty() {
            match captioner.step_beams(&mut beams) {
                Ok(finished) => finished.into_iter().for_each(|(reply, generated)| reply.answer(generated)),
                Err(err) => fail_all(beams.drain(), &err, "beam search failed"),
            }
        }
    }
}

fn fail_all(replies: Vec<Reply>, err: &EngineError, what: &str) {
    tracing::error!(error = %err, batch = replies.len(), "{what}");
    replies.into_iter().for_each(|reply| reply.fail(err));
}

/// The first waiting images whose beams fit in `max_rows` decoder rows (at least one image).
fn take_beam_batch(waiting: &mut Vec<(BatchItem, Reply)>, max_rows: usize) -> Vec<(BatchItem, Reply)> {
    let mut rows = 0;
    let mut count = 0;
    for (item, _) in waiting.iter() {
        if count > 0 && rows + item.num_beams > max_rows {
            break;
        }
        rows += item.num_beams;
        count += 1;
    }
    waiting.drain(..count).collect()
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
                // Drift profiling reads a grid of the decoded pixels: part of preprocessing.
                let image_profile = Some(Box::new(ImageProfile::of(&image, &job.image[..job.image.len().min(16)])));
                let timings = StageTimings { queue, decode, preprocess: started.elapsed(), ..StageTimings::default() };
                let item = BatchItem { pixel_values, max_new_tokens: job.max_new_tokens, num_beams: job.num_beams };
                let reply = Reply {
                    reply_tx: job.reply_tx,
                    timings,
                    num_beams: job.num_beams,
                    image_profile,
                    pooled_embedding: None,
                };
                prepared.push((item, reply));
            }
            // The requester may have timed out and dropped its receiver; the answer is then unwanted.
            Err(err) => drop(job.reply_tx.send(Err(err))),
        }
    }
    prepared
}
