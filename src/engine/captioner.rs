//! One loaded model: vision encoder + generation + tokenizer, for one image, a greedy
//! [`DecodingBatch`] that images join and leave step by step, or a [`BeamBatch`].
//!
//! A `Captioner` owns its ONNX Runtime sessions and is used from a single worker thread
//! (`Session::run` takes `&mut self`). It knows nothing about queues or HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array4, Axis};
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use super::batch::{DecodingBatch, Finished};
use super::beam::BeamBatch;
use super::decoder::{CROSS_PREFIX, EncoderOutputs, StepDecoder};
use super::model_dir::{DecoderLayout, ModelLayout, ModelSpec};
use super::preprocess::to_pixel_values;
use super::settings::BeamSettings;
use super::shared_weights::SharedWeights;
use super::{EngineError, StageTimings};

/// The text and ids of one generated caption, with the stages the captioner measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub text: String,
    /// Generated ids: without the prompt, with the stop token if one was produced.
    pub token_ids: Vec<i64>,
    /// `preprocess`, `encoder` and `decoder` are filled; the caller adds queue and decode.
    pub timings: StageTimings,
    /// The most captions decoded together while this one was.
    pub batch_size: usize,
}

/// What a caller tags each image of a batch with, to match the captions to their requests.
/// A tag may also ask for its image's pooled encoder embedding (the mean of the encoder's
/// output over positions, taken from the output the decoder needs anyway).
pub trait RowTag {
    /// Whether [`RowTag::embedded`] should be called.
    fn wants_embedding(&self) -> bool {
        false
    }
    /// Takes the image's pooled embedding (`hidden` values).
    fn embedded(&mut self, _pooled: Vec<f32>) {}
}

impl RowTag for usize {}

/// The mean over positions of each image's encoder output: `[batch, seq, hidden]` → `batch`
/// vectors of `hidden` values.
fn pooled_embeddings(encoder: &EncoderOutputs) -> Result<Vec<Vec<f32>>, EngineError> {
    let (shape, values) = encoder.hidden_states.try_extract_tensor::<f32>()?;
    let &[_, seq, hidden] = &shape[..] else {
        return Err(EngineError::Inference(format!("encoder output has shape {shape:?}, not [batch, seq, hidden]")));
    };
    Ok(mean_over_positions(values, usize::try_from(seq).unwrap_or(0), usize::try_from(hidden).unwrap_or(0)))
}

/// `values` as `[batch, seq, hidden]` (row-major) averaged over `seq`: one vector per image.
pub fn mean_over_positions(values: &[f32], seq: usize, hidden: usize) -> Vec<Vec<f32>> {
    if seq == 0 || hidden == 0 {
        return Vec::new();
    }
    values
        .chunks_exact(seq * hidden)
        .map(|image| {
            let mut sum = vec![0.0f32; hidden];
            for position in image.chunks_exact(hidden) {
                sum.iter_mut().zip(position).for_each(|(total, value)| *total += value);
            }
            sum.iter_mut().for_each(|total| *total /= seq as f32);
            sum
        })
        .collect()
}

/// Hands each tag that wants it its image's pooled embedding (none on a malformed output:
/// the caption matters more than its drift profile).
fn hand_out_embeddings<'a, T: RowTag + 'a>(encoder: &EncoderOutputs, tags: impl Iterator<Item = &'a mut T>) {
    let mut tags = tags.peekable();
    if !tags.peek().is_some_and(|tag| tag.wants_embedding()) {
        return;
    }
    match pooled_embeddings(encoder) {
        Ok(pooled) => tags.zip(pooled).filter(|(tag, _)| tag.wants_embedding()).for_each(|(tag, p)| tag.embedded(p)),
        Err(err) => tracing::warn!(error = %err, "no pooled embedding for drift"),
    }
}

/// One image of a batch: its preprocessed `[1, 3, H, W]` pixels, its token limit and its
/// number of beams (1: greedy).
pub struct BatchItem {
    pub pixel_values: Array4<f32>,
    pub max_new_tokens: usize,
    pub num_beams: usize,
}

/// A model ready to caption images.
pub struct Captioner {
    spec: ModelSpec,
    encoder: Session,
    encoder_input: String,
    encoder_output: String,
    decoder: StepDecoder,
    tokenizer: Tokenizer,
}

impl Captioner {
    /// Loads every session and the tokenizer of `spec`. Captioners loaded with the same
    /// `shared` weights use those buffers instead of each loading its own copy.
    pub fn load(
        spec: &ModelSpec,
        intra_op_threads: usize,
        onnxruntime_library: Option<&Path>,
        shared: Option<&SharedWeights>,
    ) -> Result<Self, EngineError> {
        let environment = super::runtime::environment(onnxruntime_library)?;
        let open = |path: &Path| -> Result<Session, EngineError> {
            let fail = |e: &dyn std::fmt::Display| EngineError::ModelLoad {
                path: path.display().to_string(),
                reason: e.to_string(),
            };
            let mut builder = Session::builder(&environment).map_err(|e| fail(&e))?;
            if let Some(shared) = shared {
                // Pre-packing would give each session a private copy of the shared matrices.
                builder = builder.with_prepacking(false).map_err(|e| fail(&e))?;
                for (name, value) in shared.for_file(path) {
                    builder = builder.with_initializer(name, Arc::clone(value)).map_err(|e| fail(&e))?;
                }
            }
            builder
                .with_intra_threads(intra_op_threads)
                .map_err(|e| fail(&e))?
                .with_inter_threads(1)
                .map_err(|e| fail(&e))?
                .commit_from_file(path)
                .map_err(|e| fail(&e))
        };
        let encoder = open(&spec.encoder_file)?;
        let encoder_input = pick_name(encoder.inputs().iter().map(|i| i.name()), "pixel_values", &spec.encoder_file)?;
        let encoder_output = pick_name(
            encoder.outputs().iter().map(|o| o.name()),
            match spec.layout {
                ModelLayout::Blip => "image_embeds",
                ModelLayout::VisionEncoderDecoder(_) => "last_hidden_state",
            },
            &spec.encoder_file,
        )?;
        let first = open(&spec.decoder_file)?;
        let with_past = spec.decoder_with_past_file.as_deref().map(open).transpose()?;
        let use_cache = !matches!(spec.layout, ModelLayout::VisionEncoderDecoder(DecoderLayout::NoCache));
        let positions_from_mask = spec.layout == ModelLayout::Blip;
        let decoder = StepDecoder::new(first, with_past, use_cache, spec.attention, positions_from_mask).map_err(
            |e| match e {
                EngineError::ModelLoad { reason, .. } => {
                    EngineError::ModelLoad { path: spec.decoder_file.display().to_string(), reason }
                }
                other => other,
            },
        )?;
        let tokenizer = Tokenizer::from_file(&spec.tokenizer_file).map_err(|e| EngineError::ModelLoad {
            path: spec.tokenizer_file.display().to_string(),
            reason: e.to_string(),
        })?;
        let cross_outputs = encoder.outputs().iter().filter(|o| o.name().starts_with(CROSS_PREFIX)).count();
        if decoder.reads_cross_cache() && cross_outputs == 0 {
            return Err(EngineError::ModelLoad {
                path: spec.encoder_file.display().to_string(),
                reason: format!("the decoder reads `{CROSS_PREFIX}.*`, which this encoder does not produce"),
            });
        }
        let pads_rows = decoder.pads_rows() && spec.generation.prompt_ids.len() == 1;
        let spec = ModelSpec { cross_attention_cache: decoder.reads_cross_cache(), pads_rows, ..spec.clone() };
        Ok(Self { spec, encoder, encoder_input, encoder_output, decoder, tokenizer })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Captions a decoded RGB image with the model's own number of beams.
    pub fn caption_image(&mut self, image: &image::RgbImage, max_new_tokens: usize) -> Result<Generated, EngineError> {
        let started = Instant::now();
        let pixel_values = to_pixel_values(image, &self.spec.image);
        let preprocess = started.elapsed();
        let mut generated = self.caption_pixels(pixel_values, max_new_tokens)?;
        generated.timings.preprocess = preprocess;
        Ok(generated)
    }

    /// Captions an already preprocessed `[1, 3, H, W]` tensor with the model's own number of
    /// beams (what `generate()` does without arguments).
    pub fn caption_pixels(
        &mut self,
        pixel_values: Array4<f32>,
        max_new_tokens: usize,
    ) -> Result<Generated, EngineError> {
        let num_beams = self.spec.generation.beam.num_beams;
        self.caption_batch(vec![BatchItem { pixel_values, max_new_tokens, num_beams }])?
            .pop()
            .ok_or_else(|| EngineError::Inference("the batch produced no caption".to_owned()))
    }

    /// Captions several preprocessed images together: one encoder run for the greedy ones and
    /// one for those searched with beams, then one decoder run per step for every image (or
    /// beam) still generating. Each image's tokens are the ones it gets alone.
    pub fn caption_batch(&mut self, items: Vec<BatchItem>) -> Result<Vec<Generated>, EngineError> {
        let count = items.len();
        let (beam_items, greedy_items): (Vec<_>, Vec<_>) =
            items.into_iter().enumerate().map(|(index, item)| (item, index)).partition(|(item, _)| item.num_beams > 1);
        let mut greedy = DecodingBatch::default();
        self.join(&mut greedy, greedy_items).map_err(|(err, _)| err)?;
        let mut beams = BeamBatch::default();
        self.start_beams(&mut beams, beam_items).map_err(|(err, _)| err)?;
        let mut captions: Vec<Option<Generated>> = vec![None; count];
        while !greedy.is_empty() || !beams.is_empty() {
            let mut finished = Vec::new();
            if !greedy.is_empty() {
                finished.extend(self.step(&mut greedy)?);
            }
            if !beams.is_empty() {
                finished.extend(self.step_beams(&mut beams)?);
            }
            for (index, generated) in finished {
                captions[index] = Some(generated);
            }
        }
        captions
            .into_iter()
            .map(|caption| caption.ok_or_else(|| EngineError::Inference("a batch row produced no caption".to_owned())))
            .collect()
    }

    /// Whether images can join a batch that has already decoded (else a batch takes images
    /// only before its first step).
    pub fn joins_mid_decode(&self) -> bool {
        self.spec.pads_rows
    }

    /// Runs the encoder once over `items` (greedy: `num_beams` 1) and adds them to `batch`. On
    /// error nothing is added and the items' tags come back with it.
    pub fn join<T: RowTag>(
        &mut self,
        batch: &mut DecodingBatch<T>,
        items: Vec<(BatchItem, T)>,
    ) -> Result<(), (EngineError, Vec<T>)> {
        if items.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let searches_beams = items.iter().any(|(item, _)| item.num_beams > 1);
        let (pixels, mut rows): (Vec<_>, Vec<_>) =
            items.into_iter().map(|(item, tag)| (item.pixel_values, (tag, item.max_new_tokens))).unzip();
        let refuse = |err: EngineError, rows: Vec<(T, usize)>| (err, rows.into_iter().map(|(tag, _)| tag).collect());
        if searches_beams {
            let err = EngineError::Inference("a greedy batch cannot search beams (start_beams does)".to_owned());
            return Err(refuse(err, rows));
        }
        if batch.has_decoded() && !self.joins_mid_decode() {
            let err = EngineError::Inference("this model's decoder cannot take images mid-decode".to_owned());
            return Err(refuse(err, rows));
        }
        match self.encode_images(&pixels) {
            Ok(outputs) => {
                hand_out_embeddings(&outputs, rows.iter_mut().map(|(tag, _)| tag));
                batch.join(outputs, started.elapsed(), &self.spec.generation.prompt_ids, rows);
                Ok(())
            }
            Err(err) => Err(refuse(err, rows)),
        }
    }

    /// Runs the encoder once over `items` and starts their beam search in `beams` (which must
    /// be empty). On error nothing is started and the items' tags come back with it.
    pub fn start_beams<T: RowTag>(
        &mut self,
        beams: &mut BeamBatch<T>,
        items: Vec<(BatchItem, T)>,
    ) -> Result<(), (EngineError, Vec<T>)> {
        if items.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let defaults = self.spec.generation.beam;
        let (pixels, mut images): (Vec<_>, Vec<_>) = items
            .into_iter()
            .map(|(item, tag)| {
                let settings = BeamSettings { num_beams: item.num_beams.max(1), ..defaults };
                (item.pixel_values, (tag, item.max_new_tokens, settings))
            })
            .unzip();
        match self.encode_images(&pixels) {
            Ok(outputs) => {
                hand_out_embeddings(&outputs, images.iter_mut().map(|(tag, ..)| tag));
                beams.start(outputs, started.elapsed(), &self.spec.generation.prompt_ids, images)
            }
            Err(err) => Err((err, images.into_iter().map(|(tag, ..)| tag).collect())),
        }
    }

    /// One decoding step for every row of `batch`; the rows it finished come back captioned.
    pub fn step<T>(&mut self, batch: &mut DecodingBatch<T>) -> Result<Vec<(T, Generated)>, EngineError> {
        let decoder = &mut self.decoder;
        let generation = &self.spec.generation;
        let finished = batch.step(&generation.stop_ids, self.spec.pads_rows, |rows, encoder, cache| {
            decoder.next_tokens(rows, encoder, cache, &generation.rules)
        })?;
        self.captioned(finished)
    }

    /// One decoding step for every beam of `beams`; the images whose search ended come back
    /// captioned with their best hypothesis.
    pub fn step_beams<T>(&mut self, beams: &mut BeamBatch<T>) -> Result<Vec<(T, Generated)>, EngineError> {
        let decoder = &mut self.decoder;
        let generation = &self.spec.generation;
        let finished = beams.step(&generation.stop_ids, &generation.rules, |rows, encoder, cache| {
            decoder.next_logits(rows, encoder, cache)
        })?;
        self.captioned(finished)
    }

    fn captioned<T>(&self, finished: Vec<Finished<T>>) -> Result<Vec<(T, Generated)>, EngineError> {
        finished
            .into_iter()
            .map(|row| {
                let token_ids = row.token_ids;
                let text = self.detokenize(&token_ids)?;
                let timings =
                    StageTimings { encoder: row.encoder_time, decoder: row.decoder_time, ..StageTimings::default() };
                Ok((row.tag, Generated { text, token_ids, timings, batch_size: row.largest_batch }))
            })
            .collect()
    }

    fn detokenize(&self, token_ids: &[i64]) -> Result<String, EngineError> {
        let stop_ids = &self.spec.generation.stop_ids;
        let text_ids: Vec<u32> =
            token_ids.iter().filter(|id| !stop_ids.contains(id)).filter_map(|id| u32::try_from(*id).ok()).collect();
        Ok(self
            .tokenizer
            .decode(&text_ids, true)
            .map_err(|e| EngineError::Inference(format!("tokenizer decode failed: {e}")))?
            .trim()
            .to_owned())
    }

    /// One encoder run over images of one size.
    fn encode_images(&mut self, pixels: &[Array4<f32>]) -> Result<EncoderOutputs, EngineError> {
        let views: Vec<_> = pixels.iter().map(|p| p.view()).collect();
        let pixel_values = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| EngineError::Inference(format!("cannot batch images of different sizes: {e}")))?;
        self.encode(pixel_values)
    }

    fn encode(&mut self, pixel_values: Array4<f32>) -> Result<EncoderOutputs, EngineError> {
        let input = Tensor::from_array(pixel_values)?;
        let mut outputs = self.encoder.run(vec![(self.encoder_input.as_str(), input)])?;
        let hidden_states = outputs
            .remove(&self.encoder_output)
            .ok_or_else(|| EngineError::Inference(format!("encoder produced no `{}`", self.encoder_output)))?;
        let cross_names: Vec<String> =
            outputs.keys().filter(|name| name.starts_with(CROSS_PREFIX)).map(str::to_owned).collect();
        let cross =
            cross_names.into_iter().filter_map(|name| outputs.remove(&name).map(|value| (name, value))).collect();
        Ok(EncoderOutputs { hidden_states, cross })
    }
}

/// `preferred` if the graph declares it, else the only name there is.
fn pick_name<'a>(
    mut names: impl Iterator<Item = &'a str> + Clone,
    preferred: &str,
    file: &Path,
) -> Result<String, EngineError> {
    if names.clone().any(|n| n == preferred) {
        return Ok(preferred.to_owned());
    }
    match (names.next(), names.next()) {
        (Some(only), None) => Ok(only.to_owned()),
        _ => Err(EngineError::ModelLoad {
            path: file.display().to_string(),
            reason: format!("expected a tensor named `{preferred}`"),
        }),
    }
}
