//! Beam search as transformers 4.57.6 runs it (`GenerationMixin._beam_search`, the
//! vectorized version): the same candidates, the same length penalty, the same three
//! `early_stopping` modes and the same `-1e9` float32 arithmetic, so that the caption is
//! token-identical to `generate(num_beams=N)`.
//!
//! [`BeamSearch`] is the pure per-image state (no ONNX Runtime); [`BeamBatch`] runs the
//! beams of one or more images as rows of one decoder batch, reordering their
//! self-attention cache after each step. Beam batches start together (all rows have the same
//! length, so every decoder layout can run them); images do not join one that is decoding.

use std::time::{Duration, Instant};

use super::EngineError;
use super::batch::{Finished, gather_cache, gather_rows};
use super::decoder::{EncoderOutputs, KvCache, StepRow};
use super::logits::LogitsRules;
use super::settings::{BeamSettings, EarlyStopping};

/// transformers' "very large negative value" for scores that must not be chosen.
const NEGATIVE_BIG: f32 = -1.0e9;

/// One of the `num_beams` best finished hypotheses (or an empty slot, `finished: false`).
#[derive(Debug, Clone)]
struct Hypothesis {
    tokens: Vec<i64>,
    score: f32,
    finished: bool,
}

/// A continuation: running beam `beam` followed by `token`.
struct Candidate {
    score: f32,
    beam: usize,
    tokens: Vec<i64>,
    /// It ends on a stop token or reaches `max_length`.
    hits_stop: bool,
}

/// The beam search of one image.
#[derive(Debug, Clone)]
pub struct BeamSearch {
    settings: BeamSettings,
    prompt_len: usize,
    max_length: usize,
    running: Vec<Vec<i64>>,
    running_scores: Vec<f32>,
    /// Best first.
    finished: Vec<Hypothesis>,
    /// transformers' `is_early_stop_heuristic_unsatisfied`.
    may_improve: bool,
    done: bool,
}

impl BeamSearch {
    /// A search from `prompt` up to `max_length` tokens in all (prompt included).
    pub fn new(prompt: &[i64], max_length: usize, settings: BeamSettings) -> Self {
        let beams = settings.num_beams.max(1);
        let mut running_scores = vec![NEGATIVE_BIG; beams];
        running_scores[0] = 0.0;
        Self {
            settings: BeamSettings { num_beams: beams, ..settings },
            prompt_len: prompt.len(),
            max_length,
            running: vec![prompt.to_vec(); beams],
            running_scores,
            finished: vec![Hypothesis { tokens: prompt.to_vec(), score: NEGATIVE_BIG, finished: false }; beams],
            may_improve: true,
            done: max_length <= prompt.len(),
        }
    }

    pub fn num_beams(&self) -> usize {
        self.settings.num_beams
    }

    /// The running beams' sequences (prompt included), in the order of their rows.
    pub fn running(&self) -> &[Vec<i64>] {
        &self.running
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The best finished hypothesis without the prompt (with its stop token, if it has one).
    pub fn best(&self) -> &[i64] {
        self.finished.first().map_or(&[], |best| &best.tokens[self.prompt_len.min(best.tokens.len())..])
    }

    /// One step: `log_probs` holds each running beam's processed next-token log-probabilities
    /// (`num_beams` rows of `vocab`). Returns, for each new running beam, the index of the
    /// beam it continues (to reorder the cache).
    pub fn advance(&mut self, log_probs: &[f32], vocab: usize, stop_ids: &[i64]) -> Vec<usize> {
        let beams = self.settings.num_beams;
        let cur_len = self.running[0].len();
        // Enough candidates that `beams` of them are not finished, whatever the stop tokens.
        let keep = (1 + stop_ids.len()).max(2) * beams;
        let top = top_k(
            log_probs
                .chunks_exact(vocab)
                .zip(&self.running_scores)
                .flat_map(|(row, &beam_score)| row.iter().map(move |&log_prob| log_prob + beam_score)),
            keep,
        );
        let candidates: Vec<Candidate> = top
            .into_iter()
            .map(|(score, index)| {
                let beam = index / vocab;
                let token = (index % vocab) as i64;
                let mut tokens = Vec::with_capacity(cur_len + 1);
                tokens.extend_from_slice(&self.running[beam]);
                tokens.push(token);
                let hits_stop = stop_ids.contains(&token) || tokens.len() >= self.max_length;
                Candidate { score, beam, tokens, hits_stop }
            })
            .collect();

        // The next running beams: the best candidates that did not stop.
        let running_scores: Vec<f32> =
            candidates.iter().map(|c| c.score + if c.hits_stop { NEGATIVE_BIG } else { 0.0 }).collect();
        let next = top_k(running_scores.iter().copied(), beams);
        let parents: Vec<usize> = next.iter().map(|&(_, k)| candidates[k].beam).collect();

        // The finished hypotheses: the best of those kept so far and the top `beams`
        // candidates that just stopped.
        let denominator = length_divisor(cur_len + 1 - self.prompt_len, self.settings.length_penalty);
        let all_finished = self.finished.iter().all(|h| h.finished);
        let mut merged: Vec<Hypothesis> = self.finished.clone();
        for (rank, candidate) in candidates.iter().enumerate() {
            let mut score = candidate.score / denominator;
            if all_finished && self.settings.early_stopping == EarlyStopping::Early {
                score += NEGATIVE_BIG;
            }
            if !self.may_improve {
                score += NEGATIVE_BIG;
            }
            let just_finished = candidate.hits_stop && rank < beams;
            if !just_finished {
                score += NEGATIVE_BIG;
            }
            merged.push(Hypothesis { tokens: candidate.tokens.clone(), score, finished: just_finished });
        }
        let best = top_k(merged.iter().map(|h| h.score), beams);
        self.finished = best.into_iter().map(|(_, index)| merged[index].clone()).collect();

        self.running = next.iter().map(|&(_, k)| candidates[k].tokens.clone()).collect();
        self.running_scores = next.iter().map(|&(score, _)| score).collect();

        // Whether to go on (`_check_early_stop_heuristic`, `_beam_search_has_unfinished_sequences`).
        let new_len = cur_len + 1;
        let hypothetical_len =
            if self.settings.early_stopping == EarlyStopping::Never && self.settings.length_penalty > 0.0 {
                self.max_length - self.prompt_len
            } else {
                new_len - self.prompt_len
            };
        let best_running = self.running_scores[0] / length_divisor(hypothetical_len, self.settings.length_penalty);
        let worst_finished = self.finished.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        let improvable =
            self.finished.iter().any(|h| best_running > if h.finished { worst_finished } else { NEGATIVE_BIG });
        self.may_improve &= improvable;
        let all_finished = self.finished.iter().all(|h| h.finished);
        self.done = !self.may_improve
            || (self.settings.early_stopping == EarlyStopping::Early && all_finished)
            || candidates.iter().all(|c| c.hits_stop);
        parents
    }
}

/// `length ** length_penalty` as the float32 divisor torch uses.
fn length_divisor(length: usize, length_penalty: f64) -> f32 {
    (length as f64).powf(length_penalty) as f32
}

/// The `k` largest values with their positions, largest first; ties keep the earlier
/// position first.
fn top_k(values: impl Iterator<Item = f32>, k: usize) -> Vec<(f32, usize)> {
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (index, value) in values.enumerate() {
        if top.len() == k && top.last().is_some_and(|&(last, _)| value <= last || value.is_nan()) {
            continue;
        }
        let at = top.partition_point(|&(kept, _)| kept >= value);
        top.insert(at, (value, index));
        top.truncate(k);
    }
    top
}

/// `log_softmax` of one row of logits, in place (max-shifted, the sum accumulated in f64).
pub fn log_softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let sum: f64 = scores.iter().map(|&s| f64::from(s - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    for score in scores.iter_mut() {
        *score = *score - max - log_sum;
    }
}

/// One image's beams in a [`BeamBatch`].
struct BeamImage<T> {
    tag: T,
    search: BeamSearch,
    encoder_time: Duration,
    started: Instant,
}

/// The beams of one or more images, decoded as the rows of one batch (each image's beams
/// side by side), until every image is done. Images finish independently; their rows then
/// leave the batch.
pub struct BeamBatch<T> {
    images: Vec<BeamImage<T>>,
    /// Encoder outputs, one row per beam.
    encoder: Option<EncoderOutputs>,
    cache: KvCache,
    largest_batch: usize,
    /// Images that finished without a step (a limit of 0 tokens).
    finished_early: Vec<Finished<T>>,
}

impl<T> Default for BeamBatch<T> {
    fn default() -> Self {
        Self {
            images: Vec::new(),
            encoder: None,
            cache: KvCache::default(),
            largest_batch: 0,
            finished_early: Vec::new(),
        }
    }
}

impl<T> BeamBatch<T> {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.finished_early.is_empty()
    }

    /// Starts the search of images whose encoder outputs are `encoder` (one row each, in
    /// order): `(tag, max_new_tokens, settings)`. Only an empty batch takes images.
    pub fn start(
        &mut self,
        encoder: EncoderOutputs,
        encoder_time: Duration,
        prompt_ids: &[i64],
        images: Vec<(T, usize, BeamSettings)>,
    ) -> Result<(), (EngineError, Vec<T>)> {
        if !self.images.is_empty() {
            let tags = images.into_iter().map(|(tag, ..)| tag).collect();
            return Err((EngineError::Inference("a beam batch takes images only before it starts".to_owned()), tags));
        }
        let now = Instant::now();
        let mut rows = Vec::new();
        for (index, (tag, max_new_tokens, settings)) in images.into_iter().enumerate() {
            if max_new_tokens == 0 {
                let finished = Finished {
                    tag,
                    token_ids: Vec::new(),
                    encoder_time,
                    decoder_time: Duration::ZERO,
                    largest_batch: 1,
                };
                self.finished_early.push(finished);
                continue;
            }
            let search = BeamSearch::new(prompt_ids, prompt_ids.len() + max_new_tokens, settings);
            rows.extend(std::iter::repeat_n(index, search.num_beams()));
            self.images.push(BeamImage { tag, search, encoder_time, started: now });
        }
        if self.images.is_empty() {
            return Ok(());
        }
        match expand_rows(&encoder, &rows) {
            Ok(expanded) => {
                self.encoder = Some(expanded);
                self.cache = KvCache::default();
                self.largest_batch = self.images.len();
                Ok(())
            }
            Err(err) => Err((err, self.images.drain(..).map(|image| image.tag).collect())),
        }
    }

    /// Drops the images whose tag fails `keep` (their requesters went away).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> Result<(), EngineError> {
        let mut rows = Vec::new();
        let mut first_row = 0;
        let mut kept = Vec::with_capacity(self.images.len());
        for image in self.images.drain(..) {
            let beams = image.search.num_beams();
            if keep(&image.tag) {
                rows.extend(first_row..first_row + beams);
                kept.push(image);
            }
            first_row += beams;
        }
        let changed = rows.len() != first_row;
        self.images = kept;
        if changed { self.keep_rows(&rows) } else { Ok(()) }
    }

    /// Empties the batch, giving back every image's tag (to answer them with an error).
    pub fn drain(&mut self) -> Vec<T> {
        let early = self.finished_early.drain(..).map(|f| f.tag);
        let tags = early.chain(self.images.drain(..).map(|image| image.tag)).collect();
        self.encoder = None;
        self.cache = KvCache::default();
        tags
    }

    /// One step for every beam: `step` runs the decoder and returns each row's logits over
    /// the vocabulary (`rows × vocab`, and `vocab`). Returns the images whose search ended.
    pub fn step(
        &mut self,
        stop_ids: &[i64],
        rules: &LogitsRules,
        step: impl FnOnce(&[StepRow<'_>], &EncoderOutputs, &mut KvCache) -> Result<(Vec<f32>, usize), EngineError>,
    ) -> Result<Vec<Finished<T>>, EngineError> {
        let mut finished = std::mem::take(&mut self.finished_early);
        if self.images.is_empty() {
            return Ok(finished);
        }
        let Some(encoder) = self.encoder.as_ref() else {
            return Err(EngineError::Inference("the beam batch has images but no encoder outputs".to_owned()));
        };
        let cached = if self.cache.is_empty() { 0 } else { self.cache.columns };
        let step_rows: Vec<StepRow<'_>> = self
            .images
            .iter()
            .flat_map(|image| {
                let max_length = image.search.max_length();
                image.search.running().iter().map(move |tokens| StepRow { tokens, cached, max_length })
            })
            .collect();
        let (mut logits, vocab) = step(&step_rows, encoder, &mut self.cache)?;
        if vocab == 0 || logits.len() != step_rows.len() * vocab {
            return Err(EngineError::Inference("the decoder returned logits unlike the beams".to_owned()));
        }
        drop(step_rows);

        let mut rows = Vec::with_capacity(logits.len() / vocab);
        let mut first_row = 0;
        let mut searching = Vec::with_capacity(self.images.len());
        for mut image in self.images.drain(..) {
            let beams = image.search.num_beams();
            let block = &mut logits[first_row * vocab..(first_row + beams) * vocab];
            for (scores, tokens) in block.chunks_exact_mut(vocab).zip(image.search.running()) {
                log_softmax(scores);
                if rules.is_active() {
                    rules.apply(scores, tokens, image.search.max_length());
                }
            }
            let parents = image.search.advance(block, vocab, stop_ids);
            if image.search.is_done() {
                finished.push(Finished {
                    token_ids: image.search.best().to_vec(),
                    encoder_time: image.encoder_time,
                    decoder_time: image.started.elapsed(),
                    largest_batch: self.largest_batch,
                    tag: image.tag,
                });
            } else {
                rows.extend(parents.into_iter().map(|parent| first_row + parent));
                searching.push(image);
            }
            first_row += beams;
        }
        self.images = searching;
        if self.images.is_empty() {
            self.encoder = None;
            self.cache = KvCache::default();
        } else {
            self.keep_rows(&rows)?;
        }
        Ok(finished)
    }

    /// Makes row `i` of the tensors what row `rows[i]` was: the cache always (the beams'
    /// order changes), the encoder outputs when rows left.
    fn keep_rows(&mut self, rows: &[usize]) -> Result<(), EngineError> {
        if rows.is_empty() {
            self.encoder = None;
            self.cache = KvCache::default();
            return Ok(());
        }
        let held = self.encoder.as_ref().map_or(0, |e| super::batch::batch_of(&e.hidden_states));
        if rows.len() != held
            && let Some(encoder) = self.encoder.as_ref()
        {
            self.encoder = Some(expand_rows(encoder, rows)?);
        }
        let identity = rows.len() == held && rows.iter().enumerate().all(|(i, &row)| i == row);
        if !self.cache.is_empty() && !identity {
            let sources: Vec<Option<usize>> = rows.iter().map(|&row| Some(row)).collect();
            let tensors = self
                .cache
                .tensors
                .iter()
                .map(|(name, value)| Ok((name.clone(), gather_cache(value, &sources, self.cache.columns)?)))
                .collect::<Result<Vec<_>, EngineError>>()?;
            self.cache.tensors = tensors;
        }
        Ok(())
    }
}

/// Encoder outputs made of the given rows of `encoder`, in order.
fn expand_rows(encoder: &EncoderOutputs, rows: &[usize]) -> Result<EncoderOutputs, EngineError> {
    let hidden_states = gather_rows(rows.iter().map(|&row| (&encoder.hidden_states, row)))?;
    let cross = encoder
        .cross
        .iter()
        .map(|(name, value)| Ok((name.clone(), gather_rows(rows.iter().map(|&row| (value, row)))?)))
        .collect::<Result<Vec<_>, EngineError>>()?;
    Ok(EncoderOutputs { hidden_states, cross })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_largest_first_and_earlier_on_ties() {
        let values = [0.5, 2.0, -1.0, 2.0, 1.0, f32::NEG_INFINITY];
        assert_eq!(top_k(values.into_iter(), 3), vec![(2.0, 1), (2.0, 3), (1.0, 4)]);
        assert_eq!(top_k(values.into_iter(), 10).len(), 6);
        assert!(top_k(values.into_iter(), 0).is_empty());
    }

    #[test]
    fn log_softmax_normalises() {
        let mut scores = vec![1.0, 2.0, 3.0, f32::NEG_INFINITY];
        log_softmax(&mut scores);
        let total: f32 = scores.iter().map(|s| s.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{scores:?}");
        assert!((scores[2] - (3.0 - (1f32.exp() + 2f32.exp() + 3f32.exp()).ln())).abs() < 1e-6);
        assert_eq!(scores[3], f32::NEG_INFINITY);
    }

    /// A fixed "model": the next-token log-probs depend only on the last token.
    fn table(last: i64) -> Vec<f32> {
        // vocab: 0 = stop, 1..=3 words.
        let probs: [f32; 4] = match last {
            9 => [0.05, 0.5, 0.4, 0.05], // after the start token
            1 => [0.1, 0.05, 0.05, 0.8],
            2 => [0.9, 0.04, 0.03, 0.03],
            _ => [0.6, 0.2, 0.1, 0.1],
        };
        probs.iter().map(|p| p.ln()).collect()
    }

    fn run(settings: BeamSettings, max_new_tokens: usize) -> (Vec<i64>, usize) {
        let mut search = BeamSearch::new(&[9], 1 + max_new_tokens, settings);
        let mut steps = 0;
        while !search.is_done() {
            let rows: Vec<f32> = search.running().iter().flat_map(|beam| table(*beam.last().unwrap())).collect();
            search.advance(&rows, 4, &[0]);
            steps += 1;
        }
        (search.best().to_vec(), steps)
    }

    #[test]
    fn beam_search_finds_the_sequence_greedy_misses() {
        // Greedy: 1 (0.5), then 3 (0.8), then stop (0.6): p = 0.24 over 3 tokens.
        // Beam: 2 (0.4), then stop (0.9): p = 0.36 over 2 tokens.
        let sum_only = BeamSettings { num_beams: 2, length_penalty: 0.0, early_stopping: EarlyStopping::Heuristic };
        assert_eq!(run(sum_only, 5).0, vec![2, 0], "the more likely sequence");
        // Per token (length_penalty 1): ln(0.24)/3 = -0.476 beats ln(0.36)/2 = -0.511.
        let per_token = BeamSettings { length_penalty: 1.0, ..sum_only };
        assert_eq!(run(per_token, 5).0, vec![1, 3, 0], "the better score per token");
    }

    #[test]
    fn length_penalty_and_early_stopping_change_the_search() {
        // A strongly positive length penalty favours the longer hypothesis.
        let long = BeamSettings { num_beams: 2, length_penalty: 4.0, early_stopping: EarlyStopping::Never };
        let (best, _) = run(long, 5);
        assert!(best.len() > 2, "{best:?}");
        // early_stopping true ends as soon as num_beams hypotheses are finished.
        let early = BeamSettings { num_beams: 2, length_penalty: 1.0, early_stopping: EarlyStopping::Early };
        let never = BeamSettings { early_stopping: EarlyStopping::Never, ..early };
        assert!(run(early, 8).1 <= run(never, 8).1);
        // The limit ends every search.
        let (best, steps) = run(BeamSettings { num_beams: 3, length_penalty: 4.0, ..BeamSettings::default() }, 2);
        assert!(best.len() <= 2 && steps <= 2, "{best:?} after {steps}");
    }
}
