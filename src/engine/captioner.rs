//! One loaded model: vision encoder + greedy generation + tokenizer, for one image or a
//! [`DecodingBatch`] that images join and leave step by step.
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

use super::batch::DecodingBatch;
use super::decoder::{CROSS_PREFIX, EncoderOutputs, StepDecoder};
use super::model_dir::{DecoderLayout, ModelLayout, ModelSpec};
use super::preprocess::to_pixel_values;
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

/// One image of a batch: its preprocessed `[1, 3, H, W]` pixels and its token limit.
pub struct BatchItem {
    pub pixel_values: Array4<f32>,
    pub max_new_tokens: usize,
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

    /// Captions a decoded RGB image.
    pub fn caption_image(&mut self, image: &image::RgbImage, max_new_tokens: usize) -> Result<Generated, EngineError> {
        let started = Instant::now();
        let pixel_values = to_pixel_values(image, &self.spec.image);
        let preprocess = started.elapsed();
        let mut generated = self.caption_pixels(pixel_values, max_new_tokens)?;
        generated.timings.preprocess = preprocess;
        Ok(generated)
    }

    /// Captions an already preprocessed `[1, 3, H, W]` tensor.
    pub fn caption_pixels(
        &mut self,
        pixel_values: Array4<f32>,
        max_new_tokens: usize,
    ) -> Result<Generated, EngineError> {
        self.caption_batch(vec![BatchItem { pixel_values, max_new_tokens }])?
            .pop()
            .ok_or_else(|| EngineError::Inference("the batch produced no caption".to_owned()))
    }

    /// Captions several preprocessed images together: one encoder run for all of them, then
    /// one decoder run per step for every image still generating. Each image's tokens are
    /// the ones it gets alone.
    pub fn caption_batch(&mut self, items: Vec<BatchItem>) -> Result<Vec<Generated>, EngineError> {
        let count = items.len();
        let mut batch = DecodingBatch::default();
        self.join(&mut batch, items.into_iter().enumerate().map(|(index, item)| (item, index)).collect())
            .map_err(|(err, _)| err)?;
        let mut captions: Vec<Option<Generated>> = vec![None; count];
        while !batch.is_empty() {
            for (index, generated) in self.step(&mut batch)? {
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

    /// Runs the encoder once over `items` and adds them to `batch`. On error nothing is added
    /// and the items' tags come back with it.
    pub fn join<T>(
        &mut self,
        batch: &mut DecodingBatch<T>,
        items: Vec<(BatchItem, T)>,
    ) -> Result<(), (EngineError, Vec<T>)> {
        if items.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (pixels, rows): (Vec<_>, Vec<_>) =
            items.into_iter().map(|(item, tag)| (item.pixel_values, (tag, item.max_new_tokens))).unzip();
        let refuse = |err: EngineError, rows: Vec<(T, usize)>| (err, rows.into_iter().map(|(tag, _)| tag).collect());
        if batch.has_decoded() && !self.joins_mid_decode() {
            let err = EngineError::Inference("this model's decoder cannot take images mid-decode".to_owned());
            return Err(refuse(err, rows));
        }
        let views: Vec<_> = pixels.iter().map(|p| p.view()).collect();
        let pixel_values = match ndarray::concatenate(Axis(0), &views) {
            Ok(pixel_values) => pixel_values,
            Err(e) => {
                return Err(refuse(
                    EngineError::Inference(format!("cannot batch images of different sizes: {e}")),
                    rows,
                ));
            }
        };
        match self.encode(pixel_values) {
            Ok(outputs) => {
                batch.join(outputs, started.elapsed(), &self.spec.generation.prompt_ids, rows);
                Ok(())
            }
            Err(err) => Err(refuse(err, rows)),
        }
    }

    /// One decoding step for every row of `batch`; the rows it finished come back captioned.
    pub fn step<T>(&mut self, batch: &mut DecodingBatch<T>) -> Result<Vec<(T, Generated)>, EngineError> {
        let decoder = &mut self.decoder;
        let generation = &self.spec.generation;
        let finished = batch.step(&generation.stop_ids, self.spec.pads_rows, |rows, encoder, cache| {
            decoder.next_tokens(rows, encoder, cache, &generation.rules)
        })?;
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
