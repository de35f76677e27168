//! One decoding step for the rows of a batch, for every supported decoder layout: the next
//! token of each row (greedy) or each row's logits (for beam search).
//!
//! The decoder is driven by the names its ONNX graph declares, not by hard-coded lists:
//! `input_ids`, `attention_mask`, `position_ids`, `encoder_hidden_states`,
//! `encoder_attention_mask`, `use_cache_branch` and `past_key_values.*` are fed as
//! HuggingFace does; `present.*` outputs become the next step's `past_key_values.*`.
//!
//! - Merged (Optimum) and BLIP graphs take past tensors on every step: zero-length
//!   `[B, H, 0, Dh]` tensors (and `use_cache_branch = false`) on the first step.
//! - Split layouts use `decoder_model.onnx` for the first step and
//!   `decoder_with_past_model.onnx` afterwards.
//! - Without cache the whole sequence is fed at every step.
//! - A decoder that declares `cross_key_values.*` inputs gets the cross-attention keys and
//!   values the encoder computed once per image (the cross-cache layouts of `tools/`),
//!   instead of `encoder_hidden_states`.
//! - Rows may hold different numbers of cached tokens (a row that joined a running batch)
//!   when the graph takes `attention_mask` and either `position_ids` or derives positions
//!   from the mask (capwatch's BLIP exports): the cache is left-padded, the padding masked
//!   out and each row given its own positions, as `generate()` does for a left-padded batch.

use std::borrow::Cow;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::EngineError;
use super::logits::LogitsRules;
use super::settings::AttentionShape;

const PAST_PREFIX: &str = "past_key_values";
const PRESENT_PREFIX: &str = "present";
/// Cross-attention keys/values computed once per image: encoder outputs, decoder inputs.
pub const CROSS_PREFIX: &str = "cross_key_values";

/// What the encoder gives the decoder for one image.
pub struct EncoderOutputs {
    /// The encoder's last hidden state (`[batch, enc_seq, hidden]`).
    pub hidden_states: DynValue,
    /// Per-layer cross-attention keys/values (`[batch, heads, enc_seq, head_dim]`), by name;
    /// empty unless the encoder graph emits them.
    pub cross: Vec<(String, DynValue)>,
}

/// A decoder session with its declared inputs (read once, not per step).
struct DecoderGraph {
    session: Session,
    inputs: Vec<(String, ValueType)>,
}

impl DecoderGraph {
    fn new(session: Session) -> Self {
        let inputs = session.inputs().iter().map(|i| (i.name().to_owned(), i.dtype().clone())).collect();
        Self { session, inputs }
    }
}

/// The self-attention cache of the rows decoding together: one `[batch, heads, columns,
/// head_dim]` tensor per `past_key_values.*` input. A row's cached tokens are its last
/// columns; the columns before them are padding (masked out).
#[derive(Default)]
pub struct KvCache {
    pub tensors: Vec<(String, DynValue)>,
    pub columns: usize,
}

impl KvCache {
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// One row of a step: its whole sequence so far, how many of its tokens the cache holds, and
/// the total length it may reach (for the logits rules).
#[derive(Debug, Clone, Copy)]
pub struct StepRow<'a> {
    pub tokens: &'a [i64],
    pub cached: usize,
    pub max_length: usize,
}

/// Step decoder over one or two ONNX sessions.
pub struct StepDecoder {
    first: DecoderGraph,
    with_past: Option<DecoderGraph>,
    use_cache: bool,
    attention: Option<AttentionShape>,
    /// Whether rows with different cached lengths can share a step (see the module docs).
    pads_rows: bool,
}

impl StepDecoder {
    /// `with_past` is the split layout's second graph; `use_cache` is false for cache-less
    /// exports; `positions_from_mask` says the graph derives position ids from
    /// `attention_mask` (capwatch's BLIP exports) when it has no `position_ids` input.
    pub fn new(
        first: Session,
        with_past: Option<Session>,
        use_cache: bool,
        attention: Option<AttentionShape>,
        positions_from_mask: bool,
    ) -> Result<Self, EngineError> {
        for session in std::iter::once(&first).chain(with_past.as_ref()) {
            if !session.outputs().iter().any(|o| o.name() == "logits") {
                return Err(EngineError::ModelLoad {
                    path: "decoder".to_owned(),
                    reason: "decoder graph has no `logits` output".to_owned(),
                });
            }
            for input in session.inputs() {
                if !is_known_input(input.name()) {
                    return Err(EngineError::ModelLoad {
                        path: "decoder".to_owned(),
                        reason: format!("decoder input `{}` is not supported", input.name()),
                    });
                }
            }
        }
        let first = DecoderGraph::new(first);
        let declares = |wanted: &str| first.inputs.iter().any(|(name, _)| name == wanted);
        let pads_rows = use_cache
            && with_past.is_none()
            && declares("attention_mask")
            && (declares("position_ids") || positions_from_mask);
        Ok(Self { first, with_past: with_past.map(DecoderGraph::new), use_cache, attention, pads_rows })
    }

    /// Whether rows holding different numbers of cached tokens can share a step, so that a
    /// caption can join a batch that is already decoding.
    pub fn pads_rows(&self) -> bool {
        self.pads_rows
    }

    /// Whether the decoder keeps a self-attention cache between steps.
    pub fn uses_cache(&self) -> bool {
        self.use_cache
    }

    /// Whether the decoder reads precomputed cross-attention keys/values.
    pub fn reads_cross_cache(&self) -> bool {
        self.first.inputs.iter().any(|(name, _)| name.starts_with(CROSS_PREFIX))
    }

    /// Runs one step over `rows` (one per row of `encoder`, in its order), feeding each
    /// row's tokens that `cache` does not hold yet (as many for every row), and returns each
    /// row's argmax token after `rules` (greedy decoding). `cache` then holds every fed token.
    pub fn next_tokens(
        &mut self,
        rows: &[StepRow<'_>],
        encoder: &EncoderOutputs,
        cache: &mut KvCache,
        rules: &LogitsRules,
    ) -> Result<Vec<i64>, EngineError> {
        self.step(rows, encoder, cache, |last_logits| {
            let active = rules.is_active();
            let mut scores = Vec::new();
            last_logits
                .zip(rows)
                .map(|(last, row)| {
                    if !active {
                        return argmax(last);
                    }
                    scores.clear();
                    scores.extend_from_slice(last);
                    rules.apply(&mut scores, row.tokens, row.max_length);
                    argmax(&scores)
                })
                .collect()
        })
    }

    /// Like [`Self::next_tokens`], but returns every row's raw next-token logits (`rows ×
    /// vocab`, row by row) and `vocab`, for a search that scores them itself.
    pub fn next_logits(
        &mut self,
        rows: &[StepRow<'_>],
        encoder: &EncoderOutputs,
        cache: &mut KvCache,
    ) -> Result<(Vec<f32>, usize), EngineError> {
        self.step(rows, encoder, cache, |last_logits| {
            let mut vocab = 0;
            let mut all = Vec::new();
            for last in last_logits {
                vocab = last.len();
                all.extend_from_slice(last);
            }
            (all, vocab)
        })
    }

    /// One decoder run; `read` gets each row's logits at its last position, in row order.
    fn step<R>(
        &mut self,
        rows: &[StepRow<'_>],
        encoder: &EncoderOutputs,
        cache: &mut KvCache,
        read: impl FnOnce(&mut dyn Iterator<Item = &[f32]>) -> R,
    ) -> Result<R, EngineError> {
        let encoder_hidden_states = &encoder.hidden_states;
        let batch = rows.len();
        let has_cache = self.use_cache && !cache.is_empty();
        let columns = if has_cache { cache.columns } else { 0 };
        let cached = |row: &StepRow<'_>| if has_cache { row.cached } else { 0 };
        let new_len = rows.first().map_or(0, |row| row.tokens.len().saturating_sub(cached(row)));
        if batch == 0 || new_len == 0 {
            return Err(EngineError::Inference("decoder called with no rows or nothing to feed".to_owned()));
        }
        if rows.iter().any(|row| cached(row) > columns || row.tokens.len() != cached(row) + new_len) {
            return Err(EngineError::Inference("decoder rows need different numbers of new tokens".to_owned()));
        }
        if !self.pads_rows && rows.iter().any(|row| cached(row) != columns) {
            return Err(EngineError::Inference("this decoder cannot pad rows of different lengths".to_owned()));
        }
        let graph = match (&mut self.with_past, has_cache) {
            (Some(with_past), true) => with_past,
            _ => &mut self.first,
        };
        let new_ids: Vec<i64> = rows.iter().flat_map(|row| row.tokens[cached(row)..].iter().copied()).collect();
        let encoder_seq = match encoder_hidden_states.dtype() {
            ValueType::Tensor { shape, .. } => usize::try_from(shape.get(1).copied().unwrap_or(0).max(0)).unwrap_or(0),
            _ => 0,
        };
        let positions: Vec<i64> =
            rows.iter().flat_map(|row| cached(row) as i64..(cached(row) + new_len) as i64).collect();
        // Left padding (zeros) for the cache columns a row does not use, then its tokens.
        let mask: Vec<i64> = rows
            .iter()
            .flat_map(|row| {
                let padding = columns - cached(row);
                (0..columns + new_len).map(move |column| i64::from(column >= padding))
            })
            .collect();

        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(graph.inputs.len());
        for (name, dtype) in &graph.inputs {
            let name = name.as_str();
            let element_type = dtype.tensor_type().unwrap_or(TensorElementType::Int64);
            let value: SessionInputValue<'_> = match name {
                "input_ids" | "decoder_input_ids" => int_tensor(element_type, [batch, new_len], new_ids.clone())?,
                "attention_mask" | "decoder_attention_mask" => {
                    int_tensor(element_type, [batch, columns + new_len], mask.clone())?
                }
                "position_ids" => int_tensor(element_type, [batch, new_len], positions.clone())?,
                "encoder_attention_mask" => {
                    int_tensor(element_type, [batch, encoder_seq], vec![1; batch * encoder_seq])?
                }
                "encoder_hidden_states" => SessionInputValue::from(encoder_hidden_states),
                cross_name if cross_name.starts_with(CROSS_PREFIX) => {
                    match encoder.cross.iter().find(|(n, _)| n == cross_name) {
                        Some((_, value)) => SessionInputValue::from(value),
                        None => {
                            return Err(EngineError::Inference(format!(
                                "the decoder reads `{cross_name}`, which the encoder does not produce"
                            )));
                        }
                    }
                }
                "use_cache_branch" => Tensor::from_array(([1usize], vec![has_cache]))?.into(),
                past_name if past_name.starts_with(PAST_PREFIX) => {
                    match cache.tensors.iter().find(|(n, _)| n == past_name) {
                        Some((_, value)) if has_cache => SessionInputValue::from(value),
                        _ => empty_past(dtype, self.attention, past_name, batch)?,
                    }
                }
                other => {
                    return Err(EngineError::Inference(format!("decoder input `{other}` is not supported")));
                }
            };
            inputs.push((Cow::Borrowed(name), value));
        }

        let mut outputs = graph.session.run(inputs)?;
        let result = {
            let (shape, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
            let vocab = usize::try_from(shape.last().copied().unwrap_or(0)).unwrap_or(0);
            if vocab == 0 || logits.len() < vocab * batch || logits.len() % batch != 0 {
                return Err(EngineError::Inference(format!("unexpected logits shape {shape:?}")));
            }
            // Each row's logits are [seq, vocab]; the next token comes from the last position.
            let mut last_logits =
                logits.chunks_exact(logits.len() / batch).map(|row_logits| &row_logits[row_logits.len() - vocab..]);
            read(&mut last_logits)
        };
        if self.use_cache {
            let present_names: Vec<String> =
                outputs.keys().filter(|k| k.starts_with(PRESENT_PREFIX)).map(str::to_owned).collect();
            let mut next_past = Vec::with_capacity(present_names.len());
            for name in present_names {
                if let Some(value) = outputs.remove(&name) {
                    next_past.push((format!("{PAST_PREFIX}{}", &name[PRESENT_PREFIX.len()..]), value));
                }
            }
            drop(outputs);
            cache.tensors = next_past;
            cache.columns = columns + new_len;
        }
        Ok(result)
    }
}

fn is_known_input(name: &str) -> bool {
    matches!(
        name,
        "input_ids"
            | "decoder_input_ids"
            | "attention_mask"
            | "decoder_attention_mask"
            | "position_ids"
            | "encoder_attention_mask"
            | "encoder_hidden_states"
            | "use_cache_branch"
    ) || name.starts_with(PAST_PREFIX)
        || name.starts_with(CROSS_PREFIX)
}

/// A `[batch, len]` integer tensor of the type the graph declares.
fn int_tensor(
    element_type: TensorElementType,
    shape: [usize; 2],
    values: Vec<i64>,
) -> Result<SessionInputValue<'static>, EngineError> {
    match element_type {
        TensorElementType::Int64 => Ok(Tensor::from_array((shape, values))?.into()),
        TensorElementType::Int32 => {
            let narrowed: Vec<i32> = values.into_iter().map(|v| i32::try_from(v).unwrap_or(i32::MAX)).collect();
            Ok(Tensor::from_array((shape, narrowed))?.into())
        }
        other => Err(EngineError::Inference(format!("integer input declared as {other:?}, expected int64 or int32"))),
    }
}

/// A zero-length `[batch, H, 0, Dh]` past tensor for the first step.
fn empty_past(
    dtype: &ValueType,
    attention: Option<AttentionShape>,
    name: &str,
    batch: usize,
) -> Result<SessionInputValue<'static>, EngineError> {
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(EngineError::Inference(format!("`{name}` is not a tensor input")));
    };
    if *ty != TensorElementType::Float32 {
        return Err(EngineError::Inference(format!("`{name}` is {ty:?}; only float32 caches are supported")));
    }
    let declared = |index: usize| shape.get(index).copied().filter(|d| *d > 0).and_then(|d| usize::try_from(d).ok());
    let heads = declared(1).or(attention.map(|a| a.num_heads));
    let head_dim = declared(3).or(attention.map(|a| a.head_dim));
    let (Some(heads), Some(head_dim)) = (heads, head_dim) else {
        return Err(EngineError::Inference(format!(
            "cannot size `{name}`: its shape {:?} is symbolic and config.json has no attention heads",
            &shape[..]
        )));
    };
    Ok(Tensor::from_array(([batch, heads, 0, head_dim], Vec::<f32>::new()))?.into())
}

/// Index of the largest value; the first one on ties, as `torch.argmax` does.
fn argmax(values: &[f32]) -> i64 {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best as i64
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[0.1, 0.9, 0.9, 0.2]), 1);
        assert_eq!(argmax(&[3.0]), 0);
        assert_eq!(argmax(&[-1.0, -0.5, -2.0]), 1);
    }
}
