//! Captions decoding together in one worker (continuous batching): images join the running
//! batch at a step boundary, each row leaves at its stop token or limit, and every row's
//! tokens are the ones it gets alone.
//!
//! The batch keeps its rows' encoder outputs and self-attention cache as batched tensors.
//! Rows can join a batch that has already decoded only where the decoder pads rows
//! ([`super::decoder::StepDecoder::pads_rows`]); elsewhere a batch is filled when it starts
//! and a finished row's tensors are dropped before the next step. With a padding decoder a
//! finished row leaves an empty slot that the next joining image fills in place, so the
//! large per-image tensors (BLIP-base: 42 MB of cross-attention keys/values) are copied once
//! per image, not once per change of the batch; unused cache columns are dropped.

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
    prompt_len: usize,
    max_new_tokens: usize,
    encoder_time: Duration,
    joined_at: Instant,
    largest_batch: usize,
}

/// A row that joined since the last step: row `row` of the encoder outputs `joined[part]`.
struct Incoming<T> {
    row: Row<T>,
    part: usize,
    index: usize,
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

/// Where a row of the next batched tensors comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Row `0` of the current tensors.
    Held(usize),
    /// Row `index` of `joined[part]`.
    Joined { part: usize, index: usize },
}

/// Rows decoding together, with their batched tensors.
///
/// `slots` is aligned with the tensors' rows. Where the decoder pads rows, a finished row
/// leaves an empty slot behind (decoded as a masked one-token row whose output is ignored),
/// and a joining image takes an empty slot in place: only its own encoder outputs are
/// copied. The tensors are gathered afresh only when the batch must grow or when empty
/// slots outnumber the captions.
pub struct DecodingBatch<T> {
    slots: Vec<Option<Row<T>>>,
    incoming: Vec<Incoming<T>>,
    held: Option<EncoderOutputs>,
    cache: KvCache,
    joined: Vec<EncoderOutputs>,
    /// The prompt an empty slot is fed with.
    prompt: Vec<i64>,
    /// Rows that finished without a step (a limit of 0 tokens).
    finished_early: Vec<Finished<T>>,
}

impl<T> Default for DecodingBatch<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            incoming: Vec::new(),
            held: None,
            cache: KvCache::default(),
            joined: Vec::new(),
            prompt: Vec::new(),
            finished_early: Vec::new(),
        }
    }
}

impl<T> DecodingBatch<T> {
    /// Captions still generating.
    pub fn len(&self) -> usize {
        self.rows().count()
    }

    pub fn is_empty(&self) -> bool {
        !self.has_rows() && self.finished_early.is_empty()
    }

    fn has_rows(&self) -> bool {
        self.rows().next().is_some()
    }

    /// Whether some caption has already decoded (a joining one then needs a decoder that pads rows).
    pub fn has_decoded(&self) -> bool {
        self.rows().any(|row| row.tokens.len() > row.prompt_len)
    }

    /// Rows the decoder ran in the last step: captions and empty slots.
    pub fn width(&self) -> usize {
        self.slots.len()
    }

    fn rows(&self) -> impl Iterator<Item = &Row<T>> {
        self.slots.iter().flatten().chain(self.incoming.iter().map(|incoming| &incoming.row))
    }

    /// Adds images whose encoder outputs are `encoder` (one row each, in order).
    pub fn join(&mut self, encoder: EncoderOutputs, encoder_time: Duration, prompt_ids: &[i64], rows: Vec<(T, usize)>) {
        let part = self.joined.len();
        self.joined.push(encoder);
        self.prompt = prompt_ids.to_vec();
        let now = Instant::now();
        for (index, (tag, max_new_tokens)) in rows.into_iter().enumerate() {
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
            let row = Row {
                tag,
                tokens: prompt_ids.to_vec(),
                cached: 0,
                prompt_len: prompt_ids.len(),
                max_new_tokens,
                encoder_time,
                joined_at: now,
                largest_batch: 0,
            };
            self.incoming.push(Incoming { row, part, index });
        }
    }

    /// Drops the captions whose tag fails `keep` (their requesters went away).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|row| !keep(&row.tag)) {
                *slot = None;
            }
        }
        self.incoming.retain(|incoming| keep(&incoming.row.tag));
        self.forget_if_empty();
    }

    /// Empties the batch, giving back every caption's tag (to answer them with an error).
    pub fn drain(&mut self) -> Vec<T> {
        let early = self.finished_early.drain(..).map(|f| f.tag);
        let slots = self.slots.drain(..).flatten().map(|row| row.tag);
        let tags = early.chain(slots).chain(self.incoming.drain(..).map(|incoming| incoming.row.tag)).collect();
        self.forget_if_empty();
        tags
    }

    /// Runs one step with `step` (the decoder) and returns the rows it finished: those that
    /// produced a stop token or reached their limit. `pads_rows`: the decoder pads rows
    /// (finished rows may then leave empty slots).
    pub fn step(
        &mut self,
        stop_ids: &[i64],
        pads_rows: bool,
        step: impl FnOnce(&[StepRow<'_>], &EncoderOutputs, &mut KvCache) -> Result<Vec<i64>, EngineError>,
    ) -> Result<Vec<Finished<T>>, EngineError> {
        let mut finished = std::mem::take(&mut self.finished_early);
        if !self.has_rows() {
            self.forget_if_empty();
            return Ok(finished);
        }
        self.prepare(pads_rows)?;
        let Some(encoder) = self.held.as_ref() else {
            return Err(EngineError::Inference("the batch has rows but no encoder outputs".to_owned()));
        };
        let empty_slot = StepRow { tokens: &self.prompt, cached: 0, max_length: usize::MAX };
        let step_rows: Vec<StepRow<'_>> = self
            .slots
            .iter()
            .map(|slot| {
                slot.as_ref().map_or(empty_slot, |row| StepRow {
                    tokens: &row.tokens,
                    cached: row.cached,
                    max_length: row.prompt_len + row.max_new_tokens,
                })
            })
            .collect();
        let tokens = step(&step_rows, encoder, &mut self.cache)?;
        if tokens.len() != self.slots.len() {
            return Err(EngineError::Inference("the decoder returned a token count unlike the rows".to_owned()));
        }
        let batch = self.slots.len();
        let uses_cache = !self.cache.is_empty();
        for (slot, token) in self.slots.iter_mut().zip(tokens) {
            let Some(row) = slot.as_mut() else { continue };
            if uses_cache {
                row.cached = row.tokens.len();
            }
            row.tokens.push(token);
            row.largest_batch = row.largest_batch.max(batch);
            let generated = row.tokens.len() - row.prompt_len;
            if (stop_ids.contains(&token) || generated >= row.max_new_tokens)
                && let Some(row) = slot.take()
            {
                finished.push(Finished {
                    token_ids: row.tokens[row.prompt_len..].to_vec(),
                    encoder_time: row.encoder_time,
                    decoder_time: row.joined_at.elapsed(),
                    largest_batch: row.largest_batch,
                    tag: row.tag,
                });
            }
        }
        self.forget_if_empty();
        Ok(finished)
    }

    fn forget_if_empty(&mut self) {
        if !self.has_rows() {
            self.slots.clear();
            self.held = None;
            self.cache = KvCache::default();
            self.joined.clear();
        }
    }

    /// Makes the tensors match the rows before a step: joining rows take empty slots in place
    /// or the tensors are gathered afresh; unused cache columns are dropped.
    fn prepare(&mut self, pads_rows: bool) -> Result<(), EngineError> {
        let empty = self.slots.iter().filter(|slot| slot.is_none()).count();
        let live = self.slots.len() - empty;
        let fill_in_place =
            pads_rows && self.held.is_some() && !self.incoming.is_empty() && self.incoming.len() <= empty;
        if fill_in_place {
            self.fill_empty_slots()?;
        } else if self.held.is_none() && self.joined.len() == 1 && self.incoming_is_whole_part() {
            // A batch made only of images that were encoded together takes their outputs as they are.
            self.held = self.joined.pop();
            self.cache = KvCache::default();
            self.slots = self.incoming.drain(..).map(|incoming| Some(incoming.row)).collect();
        } else if !self.incoming.is_empty() || (empty > 0 && (!pads_rows || empty > live)) {
            self.regather()?;
        }
        self.joined.clear();
        if pads_rows {
            self.drop_unused_columns()?;
        }
        Ok(())
    }

    fn incoming_is_whole_part(&self) -> bool {
        let rows = self.joined.first().map_or(0, |outputs| batch_of(&outputs.hidden_states));
        self.slots.is_empty()
            && self.incoming.len() == rows
            && self.incoming.iter().enumerate().all(|(i, incoming)| incoming.part == 0 && incoming.index == i)
    }

    /// Copies each joining row's encoder outputs into an empty slot of the held tensors.
    fn fill_empty_slots(&mut self) -> Result<(), EngineError> {
        let Some(held) = self.held.as_mut() else { return Ok(()) };
        for incoming in self.incoming.drain(..) {
            let Some(slot) = self.slots.iter().position(Option::is_none) else {
                return Err(EngineError::Inference("no empty slot for a joining row".to_owned()));
            };
            let source = self
                .joined
                .get(incoming.part)
                .ok_or_else(|| EngineError::Inference("a joining row has lost its encoder outputs".to_owned()))?;
            copy_row(&mut held.hidden_states, slot, &source.hidden_states, incoming.index)?;
            for (name, target) in &mut held.cross {
                let (_, value) = source
                    .cross
                    .iter()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| EngineError::Inference(format!("a joining image has no `{name}`")))?;
                copy_row(target, slot, value, incoming.index)?;
            }
            // Its cache columns are the previous row's: all masked out as padding (cached 0).
            self.slots[slot] = Some(incoming.row);
        }
        Ok(())
    }

    /// Rebuilds the tensors with the captions only: staying rows, then joining rows.
    fn regather(&mut self) -> Result<(), EngineError> {
        let mut sources = Vec::with_capacity(self.len());
        let mut rows = Vec::with_capacity(self.len());
        for (index, slot) in self.slots.drain(..).enumerate() {
            if let Some(row) = slot {
                sources.push(Source::Held(index));
                rows.push(row);
            }
        }
        for incoming in self.incoming.drain(..) {
            sources.push(Source::Joined { part: incoming.part, index: incoming.index });
            rows.push(incoming.row);
        }
        let missing = || EngineError::Inference("a batch row has lost its encoder outputs".to_owned());
        let mut outputs: Vec<(&EncoderOutputs, usize)> = Vec::with_capacity(sources.len());
        for source in &sources {
            outputs.push(match *source {
                Source::Held(index) => (self.held.as_ref().ok_or_else(missing)?, index),
                Source::Joined { part, index } => (self.joined.get(part).ok_or_else(missing)?, index),
            });
        }
        let hidden_states = gather_rows(outputs.iter().map(|(outputs, row)| (&outputs.hidden_states, *row)))?;
        let mut cross = Vec::new();
        if let Some((first, _)) = outputs.first() {
            for (name, _) in &first.cross {
                let parts: Option<Vec<_>> = outputs
                    .iter()
                    .map(|(outputs, row)| outputs.cross.iter().find(|(n, _)| n == name).map(|(_, value)| (value, *row)))
                    .collect();
                let parts = parts.ok_or_else(|| EngineError::Inference(format!("an image has no `{name}`")))?;
                cross.push((name.clone(), gather_rows(parts.into_iter())?));
            }
        }
        // Cache: staying rows keep their last columns; joining rows are all padding.
        let columns = rows.iter().map(|row| row.cached).max().unwrap_or(0);
        let cache = if self.cache.is_empty() || columns == 0 {
            KvCache::default()
        } else {
            let held_rows: Vec<Option<usize>> = sources
                .iter()
                .map(|source| match source {
                    Source::Held(index) => Some(*index),
                    Source::Joined { .. } => None,
                })
                .collect();
            self.gather_cache(&held_rows, columns)?
        };
        self.held = Some(EncoderOutputs { hidden_states, cross });
        self.cache = cache;
        self.slots = rows.into_iter().map(Some).collect();
        Ok(())
    }

    /// Drops the leading cache columns that no caption uses any more.
    fn drop_unused_columns(&mut self) -> Result<(), EngineError> {
        let used = self.slots.iter().flatten().map(|row| row.cached).max().unwrap_or(0);
        if self.cache.is_empty() || used == 0 || used >= self.cache.columns {
            return Ok(());
        }
        let rows: Vec<Option<usize>> = (0..self.slots.len()).map(Some).collect();
        self.cache = self.gather_cache(&rows, used)?;
        Ok(())
    }

    fn gather_cache(&self, rows: &[Option<usize>], columns: usize) -> Result<KvCache, EngineError> {
        let tensors = self
            .cache
            .tensors
            .iter()
            .map(|(name, value)| Ok((name.clone(), gather_cache(value, rows, columns)?)))
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(KvCache { tensors, columns })
    }
}

/// Copies row `from` of `source` over row `to` of `target` (f32 tensors of one row shape).
fn copy_row(target: &mut DynValue, to: usize, source: &DynValue, from: usize) -> Result<(), EngineError> {
    let (source_shape, source_values) = source.try_extract_tensor::<f32>()?;
    let source_shape = source_shape.to_vec();
    let (target_shape, target_values) = target.try_extract_tensor_mut::<f32>()?;
    if source_shape.get(1..) != target_shape.get(1..) {
        return Err(EngineError::Inference(format!(
            "cannot copy a row of shape {source_shape:?} into {:?}",
            target_shape.to_vec()
        )));
    }
    let row_len: usize = source_shape.iter().skip(1).map(|&d| usize::try_from(d).unwrap_or(0)).product();
    let from = source_values.get(from * row_len..(from + 1) * row_len);
    let to = target_values.get_mut(to * row_len..(to + 1) * row_len);
    match (from, to) {
        (Some(from), Some(to)) => {
            to.copy_from_slice(from);
            Ok(())
        }
        _ => Err(EngineError::Inference("a row to copy is outside its tensor".to_owned())),
    }
}

/// The leading (batch) dimension of a tensor.
pub(super) fn batch_of(value: &DynValue) -> usize {
    value.shape().first().and_then(|&d| usize::try_from(d).ok()).unwrap_or(0)
}

/// A new tensor made of the given rows (batch index) of f32 tensors of one shape.
pub(super) fn gather_rows<'a>(parts: impl Iterator<Item = (&'a DynValue, usize)>) -> Result<DynValue, EngineError> {
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
pub(super) fn gather_cache(value: &DynValue, rows: &[Option<usize>], columns: usize) -> Result<DynValue, EngineError> {
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
