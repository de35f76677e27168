//! Captions decoding together in one worker (continuous batching): images join the running
//! batch at a step boundary, each row leaves at its stop token or limit, and every row's
//! tokens are the ones it gets alone.
//!
//! The batch keeps its rows' encoder outputs and self-attention cache as batched tensors.
//! When rows join or leave, the tensors are gathered again, once, before the next step:
//! staying rows' slices are copied, joining rows bring their encoder outputs and an
//! all-padding cache, and cache columns that no row uses any more are dropped. Rows can
//! join a batch that has already decoded only where the decoder pads rows
//! ([`super::decoder::StepDecoder::pads_rows`]); elsewhere a batch is filled when it starts.

use std::time::{Duration, Instant};

use ort::value::{DynValue, Tensor};

use super::EngineError;
use super::decoder::{EncoderOutputs, KvCache, StepRow};

/// One caption in the batch; `T` is what the caller needs to answer it.
struct Row<T> {
    tag: T,
    /// Prompt and generated tokens.
    tokens: Vec<i64>,
    /// How many of `tokens` the cache holds.
    cached: usize,
    slot: Slot,
    prompt_len: usize,
    max_new_tokens: usize,
    encoder_time: Duration,
    joined_at: Instant,
    largest_batch: usize,
}

/// Where a row's encoder outputs and cache are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// Row `0` of the batched tensors.
    Held(usize),
    /// Row `row` of the encoder outputs of `joined[part]`; nothing cached yet.
    Joined { part: usize, row: usize },
}

/// A finished row: what it generated, with the batch facts its answer reports.
pub struct Finished<T> {
    pub tag: T,
    /// Generated ids, without the prompt, with the stop token if one was produced.
    pub token_ids: Vec<i64>,
    pub encoder_time: Duration,
    /// From joining the batch to the last token.
    pub decoder_time: Duration,
    /// The most rows decoded together while this one was in the batch.
    pub largest_batch: usize,
}

/// Rows decoding together, with their batched tensors.
pub struct DecodingBatch<T> {
    rows: Vec<Row<T>>,
    held: Option<EncoderOutputs>,
    cache: KvCache,
    joined: Vec<EncoderOutputs>,
    /// Rows that finished without a step (a limit of 0 tokens).
    finished_early: Vec<Finished<T>>,
}

impl<T> Default for DecodingBatch<T> {
    fn default() -> Self {
        Self { rows: Vec::new(), held: None, cache: KvCache::default(), joined: Vec::new(), finished_early: Vec::new() }
    }
}

impl<T> DecodingBatch<T> {
    /// Rows still generating.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.finished_early.is_empty()
    }

    /// Whether some row has already decoded (a joining row then needs a decoder that pads rows).
    pub fn has_decoded(&self) -> bool {
        self.rows.iter().any(|row| row.tokens.len() > row.prompt_len)
    }

    /// Adds images whose encoder outputs are `encoder` (one row each, in order).
    pub fn join(&mut self, encoder: EncoderOutputs, encoder_time: Duration, prompt_ids: &[i64], rows: Vec<(T, usize)>) {
        let part = self.joined.len();
        self.joined.push(encoder);
        let now = Instant::now();
        for (row, (tag, max_new_tokens)) in rows.into_iter().enumerate() {
            if max_new_tokens == 0 {
                self.finished_early.push(Finished {
                    tag,
                    token_ids: Vec::new(),
                    encoder_time,
                    decoder_time: Duration::ZERO,
                    largest_batch: 1,
                });
                continue;
            }
            self.rows.push(Row {
                tag,
                tokens: prompt_ids.to_vec(),
                cached: 0,
                slot: Slot::Joined { part, row },
                prompt_len: prompt_ids.len(),
                max_new_tokens,
                encoder_time,
                joined_at: now,
                largest_batch: 0,
            });
        }
    }

    /// Drops the rows whose tag fails `keep` (their requesters went away).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.rows.retain(|row| keep(&row.tag));
        self.forget_if_empty();
    }

    /// Empties the batch, giving back every row's tag (to answer them with an error).
    pub fn drain(&mut self) -> Vec<T> {
        let tags = self.finished_early.drain(..).map(|f| f.tag).chain(self.rows.drain(..).map(|row| row.tag)).collect();
        self.forget_if_empty();
        tags
    }

    /// Rows that finished without decoding.
    pub fn take_finished_early(&mut self) -> Vec<Finished<T>> {
        std::mem::take(&mut self.finished_early)
    }

    /// Runs one step with `step` (the decoder) and returns the rows it finished: those that
    /// produced a stop token or reached their limit.
    pub fn step(
        &mut self,
        stop_ids: &[i64],
        step: impl FnOnce(&[StepRow<'_>], &EncoderOutputs, &mut KvCache) -> Result<Vec<i64>, EngineError>,
    ) -> Result<Vec<Finished<T>>, EngineError> {
        let mut finished = self.take_finished_early();
        if self.rows.is_empty() {
            return Ok(finished);
        }
        self.regather()?;
        let Some(encoder) = self.held.as_ref() else {
            return Err(EngineError::Inference("the batch has rows but no encoder outputs".to_owned()));
        };
        let step_rows: Vec<StepRow<'_>> =
            self.rows.iter().map(|row| StepRow { tokens: &row.tokens, cached: row.cached }).collect();
        let tokens = step(&step_rows, encoder, &mut self.cache)?;
        if tokens.len() != self.rows.len() {
            return Err(EngineError::Inference("the decoder returned a token count unlike the rows".to_owned()));
        }
        let batch = self.rows.len();
        let uses_cache = !self.cache.is_empty();
        let mut kept = Vec::with_capacity(batch);
        for (index, (mut row, token)) in self.rows.drain(..).zip(tokens).enumerate() {
            if uses_cache {
                row.cached = row.tokens.len();
            }
            row.tokens.push(token);
            row.largest_batch = row.largest_batch.max(batch);
            let generated = row.tokens.len() - row.prompt_len;
            if stop_ids.contains(&token) || generated >= row.max_new_tokens {
                finished.push(Finished {
                    token_ids: row.tokens[row.prompt_len..].to_vec(),
                    encoder_time: row.encoder_time,
                    decoder_time: row.joined_at.elapsed(),
                    largest_batch: row.largest_batch,
                    tag: row.tag,
                });
            } else {
                row.slot = Slot::Held(index);
                kept.push(row);
            }
        }
        self.rows = kept;
        self.forget_if_empty();
        Ok(finished)
    }

    fn forget_if_empty(&mut self) {
        if self.rows.is_empty() {
            self.held = None;
            self.cache = KvCache::default();
            self.joined.clear();
        }
    }

    /// Rebuilds the batched tensors for the current rows, unless they already match.
    fn regather(&mut self) -> Result<(), EngineError> {
        let held_rows = self.held.as_ref().map_or(0, |held| batch_of(&held.hidden_states));
        let in_place = self.joined.is_empty()
            && held_rows == self.rows.len()
            && self.rows.iter().enumerate().all(|(index, row)| row.slot == Slot::Held(index));
        if in_place {
            return Ok(());
        }
        // A batch made only of rows that joined together takes their encoder outputs as they are.
        if self.held.is_none() && self.joined.len() == 1 {
            let all_in_order = self.rows.len() == batch_of(&self.joined[0].hidden_states)
                && self.rows.iter().enumerate().all(|(index, row)| row.slot == Slot::Joined { part: 0, row: index });
            if all_in_order {
                self.held = self.joined.pop();
                self.cache = KvCache::default();
                for (index, row) in self.rows.iter_mut().enumerate() {
                    row.slot = Slot::Held(index);
                }
                return Ok(());
            }
        }

        let missing = || EngineError::Inference("a batch row has lost its encoder outputs".to_owned());
        let mut sources: Vec<(&EncoderOutputs, usize)> = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            sources.push(match row.slot {
                Slot::Held(index) => (self.held.as_ref().ok_or_else(missing)?, index),
                Slot::Joined { part, row } => (self.joined.get(part).ok_or_else(missing)?, row),
            });
        }
        let hidden_states = gather_rows(sources.iter().map(|(outputs, row)| (&outputs.hidden_states, *row)))?;
        let mut cross = Vec::new();
        if let Some((first, _)) = sources.first() {
            for (name, _) in &first.cross {
                let parts = sources.iter().map(|(outputs, row)| {
                    outputs.cross.iter().find(|(n, _)| n == name).map(|(_, value)| (value, *row))
                });
                let parts: Option<Vec<_>> = parts.collect();
                let parts = parts.ok_or_else(|| EngineError::Inference(format!("an image has no `{name}`")))?;
                cross.push((name.clone(), gather_rows(parts.into_iter())?));
            }
        }

        // Cache: staying rows keep their last `columns` columns; joining rows are all padding.
        let columns = self.rows.iter().filter(|row| matches!(row.slot, Slot::Held(_))).map(|row| row.cached).max();
        let cache = match columns {
            Some(columns) if !self.cache.is_empty() => {
                let slots: Vec<Option<usize>> = self
                    .rows
                    .iter()
                    .map(|row| match row.slot {
                        Slot::Held(index) => Some(index),
                        Slot::Joined { .. } => None,
                    })
                    .collect();
                let tensors = self
                    .cache
                    .tensors
                    .iter()
                    .map(|(name, value)| Ok((name.clone(), gather_cache(value, &slots, columns)?)))
                    .collect::<Result<Vec<_>, EngineError>>()?;
                KvCache { tensors, columns }
            }
            _ => KvCache::default(),
        };

        self.held = Some(EncoderOutputs { hidden_states, cross });
        self.cache = cache;
        self.joined.clear();
        for (index, row) in self.rows.iter_mut().enumerate() {
            row.slot = Slot::Held(index);
        }
        Ok(())
    }
}

/// The leading (batch) dimension of a tensor.
fn batch_of(value: &DynValue) -> usize {
    value.shape().first().and_then(|&d| usize::try_from(d).ok()).unwrap_or(0)
}

/// A new tensor made of the given rows (batch index) of f32 tensors of one shape.
fn gather_rows<'a>(parts: impl Iterator<Item = (&'a DynValue, usize)>) -> Result<DynValue, EngineError> {
    let mut data = Vec::new();
    let mut shape: Option<Vec<usize>> = None;
    let mut rows = 0;
    for (value, row) in parts {
        let (value_shape, values) = value.try_extract_tensor::<f32>()?;
        let dims: Vec<usize> = value_shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        let row_len: usize = dims.iter().skip(1).product();
        match &shape {
            None => shape = Some(dims.clone()),
            Some(known) if known[1..] != dims[1..] => {
                return Err(EngineError::Inference(format!("cannot batch tensors of shapes {known:?} and {dims:?}")));
            }
            Some(_) => {}
        }
        let block = values
            .get(row * row_len..(row + 1) * row_len)
            .ok_or_else(|| EngineError::Inference(format!("row {row} is outside a tensor of shape {dims:?}")))?;
        data.extend_from_slice(block);
        rows += 1;
    }
    let mut shape = shape.ok_or_else(|| EngineError::Inference("nothing to batch".to_owned()))?;
    shape[0] = rows;
    Ok(Tensor::from_array((shape, data))?.into_dyn())
}

/// A `[rows, heads, columns, head_dim]` cache from a `[batch, heads, C, head_dim]` one: row
/// `Some(i)` keeps the last `columns` columns of row `i`, `None` is all padding (zeros).
fn gather_cache(value: &DynValue, rows: &[Option<usize>], columns: usize) -> Result<DynValue, EngineError> {
    let (shape, values) = value.try_extract_tensor::<f32>()?;
    let dims: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    let [batch, heads, held_columns, head_dim] = dims[..] else {
        return Err(EngineError::Inference(format!("a cache tensor of shape {dims:?} is not 4-dimensional")));
    };
    if columns > held_columns {
        return Err(EngineError::Inference(format!("cannot keep {columns} of {held_columns} cache columns")));
    }
    let mut data = Vec::with_capacity(rows.len() * heads * columns * head_dim);
    for row in rows {
        match *row {
            Some(row) if row < batch => {
                for head in 0..heads {
                    let start = ((row * heads + head) * held_columns + held_columns - columns) * head_dim;
                    data.extend_from_slice(&values[start..start + columns * head_dim]);
                }
            }
            Some(row) => return Err(EngineError::Inference(format!("row {row} is outside a cache of {batch}"))),
            None => data.resize(data.len() + heads * columns * head_dim, 0.0),
        }
    }
    Ok(Tensor::from_array((vec![rows.len(), heads, columns, head_dim], data))?.into_dyn())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tensor(shape: Vec<usize>, data: Vec<f32>) -> DynValue {
        crate::engine::runtime::environment(None).expect("the ONNX Runtime library (`make setup`)");
        Tensor::from_array((shape, data)).unwrap().into_dyn()
    }

    fn values(value: &DynValue) -> (Vec<i64>, Vec<f32>) {
        let (shape, data) = value.try_extract_tensor::<f32>().unwrap();
        (shape.to_vec(), data.to_vec())
    }

    #[test]
    fn gathered_rows_come_from_each_source_in_order() {
        let a = tensor(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = tensor(vec![1, 2], vec![5.0, 6.0]);
        let out = gather_rows([(&a, 1), (&b, 0), (&a, 0)].into_iter()).unwrap();
        assert_eq!(values(&out), (vec![3, 2], vec![3.0, 4.0, 5.0, 6.0, 1.0, 2.0]));
        let c = tensor(vec![1, 3], vec![0.0; 3]);
        assert!(gather_rows([(&a, 0), (&c, 0)].into_iter()).is_err());
        assert!(gather_rows([(&a, 2)].into_iter()).is_err());
    }

    #[test]
    fn gathered_cache_keeps_the_last_columns_and_pads_new_rows() {
        // [batch 2, heads 1, columns 3, head_dim 2]
        let cache = tensor(vec![2, 1, 3, 2], (0..12).map(|v| v as f32).collect());
        let out = gather_cache(&cache, &[Some(1), None, Some(0)], 2).unwrap();
        assert_eq!(
            values(&out),
            (vec![3, 1, 2, 2], vec![8.0, 9.0, 10.0, 11.0, 0.0, 0.0, 0.0, 0.0, 2.0, 3.0, 4.0, 5.0])
        );
        assert!(gather_cache(&cache, &[Some(0)], 4).is_err());
        assert!(gather_cache(&cache, &[Some(2)], 1).is_err());
    }
}
