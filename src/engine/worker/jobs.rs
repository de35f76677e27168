//! What one worker thread does with its queue: takes a job, gathers what else is waiting
//! into a batch (greedy rows, beam groups), decodes it step by step with new jobs joining at
//! step boundaries, and answers each caption on its one-shot channel.

use super::*;

/// What a worker keeps for each caption in its batch, to answer it.
pub(super) struct Reply {
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
pub(super) fn serve_jobs(mut captioner: Captioner, job_rx: &Receiver<CaptionJob>, options: &EngineOptions) {
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

pub(super) fn fail_all(replies: Vec<Reply>, err: &EngineError, what: &str) {
    tracing::error!(error = %err, batch = replies.len(), "{what}");
    replies.into_iter().for_each(|reply| reply.fail(err));
}

/// The first waiting images whose beams fit in `max_rows` decoder rows (at least one image).
pub(super) fn take_beam_batch(waiting: &mut Vec<(BatchItem, Reply)>, max_rows: usize) -> Vec<(BatchItem, Reply)> {
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
pub(super) fn gather_batch(
    first: CaptionJob,
    job_rx: &Receiver<CaptionJob>,
    options: &EngineOptions,
) -> Vec<CaptionJob> {
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
pub(super) fn prepare_jobs(
    captioner: &Captioner,
    jobs: Vec<CaptionJob>,
    limits: DecodeLimits,
) -> Vec<(BatchItem, Reply)> {
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
