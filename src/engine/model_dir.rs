//! Reading a model directory: which layout it is, which files to load, and the settings
//! (image preprocessing, start/stop tokens, length) taken from the model's own json files.
//!
//! Two families are supported (DESIGN.md, "Models"):
//! - `model_type: vision-encoder-decoder` as exported by HuggingFace Optimum
//!   (`encoder_model.onnx` + a merged, split or cache-less decoder);
//! - `model_type: blip` as written by `tools/export_blip.py` (`vision_model.onnx` +
//!   `text_decoder.onnx`, see `tools/BLIP_LAYOUT.md`).
//!
//! This module only reads files; it never creates ONNX Runtime sessions.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::EngineError;
use super::hf_config::{ConfigClass, GenerationSource, HfObject, class_default};
use super::logits::LogitsRules;
use super::preprocess::ImageProcessorSpec;
use super::settings::{AttentionShape, BeamSettings};

/// Which decoder files a vision-encoder-decoder export has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderLayout {
    /// `decoder_model_merged.onnx`: one graph, `use_cache_branch` picks first step or cached step.
    Merged,
    /// `decoder_model.onnx` for the first step, `decoder_with_past_model.onnx` afterwards.
    Split,
    /// `decoder_model.onnx` alone: the whole sequence is fed at every step.
    NoCache,
}

/// The model family and its decoder layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelLayout {
    VisionEncoderDecoder(DecoderLayout),
    /// BLIP as exported by `tools/export_blip.py` (single decoder graph with KV cache).
    Blip,
}

impl ModelLayout {
    /// Short stable name, used in `/health`, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::VisionEncoderDecoder(DecoderLayout::Merged) => "vision-encoder-decoder/merged",
            Self::VisionEncoderDecoder(DecoderLayout::Split) => "vision-encoder-decoder/split",
            Self::VisionEncoderDecoder(DecoderLayout::NoCache) => "vision-encoder-decoder/no-cache",
            Self::Blip => "blip",
        }
    }
}

/// Start/stop tokens, default length, logits rules and beam settings for generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSpec {
    /// Token ids the decoder starts from (`decoder_start_token_id`, or BLIP's `bos_token_id`).
    pub prompt_ids: Vec<i64>,
    /// Generation stops after producing any of these.
    pub stop_ids: Vec<i64>,
    /// Tokens generated at most when the request does not say.
    pub default_max_new_tokens: usize,
    /// The logits processors the model's generation settings switch on.
    pub rules: LogitsRules,
    /// `num_beams` (the default when a request does not say), `length_penalty`, `early_stopping`.
    pub beam: BeamSettings,
}

/// Everything needed to load and run one model directory.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub dir: PathBuf,
    /// Display name: the directory name.
    pub name: String,
    pub layout: ModelLayout,
    pub encoder_file: PathBuf,
    /// Decoder for the first step (and every step without cache).
    pub decoder_file: PathBuf,
    /// Decoder for cached steps, when it is a separate file (split layout).
    pub decoder_with_past_file: Option<PathBuf>,
    pub tokenizer_file: PathBuf,
    pub image: ImageProcessorSpec,
    pub generation: GenerationSpec,
    pub attention: Option<AttentionShape>,
    /// The decoder reads cross-attention keys/values that the encoder computed once per image
    /// (`cross_key_values.*`), instead of recomputing them from the encoder states each step.
    /// Learned from the graphs when the model loads.
    pub cross_attention_cache: bool,
    /// Whether the decoder pads rows, so that captions can join a batch that is decoding
    /// (known once the sessions are loaded).
    pub pads_rows: bool,
    /// Weight precision, `fp32` unless the exporter's `capwatch_export.json` says otherwise
    /// (`int8`: dynamically quantized weights; `int4`: 4-bit blockwise decoder weights
    /// (MatMulNBits) with an int8 encoder).
    pub precision: String,
}

/// What `tools/`'s exporters record about a directory they wrote.
const EXPORT_RECORD: &str = "capwatch_export.json";

/// The weight precision an exporter recorded (`fp32` when there is no record).
fn export_precision(dir: &Path) -> Result<String, String> {
    let path = dir.join(EXPORT_RECORD);
    if !path.is_file() {
        return Ok("fp32".to_owned());
    }
    let record = read_json(&path)?;
    match record.get("precision").and_then(Value::as_str) {
        Some(precision @ ("fp32" | "int8" | "int4")) => Ok(precision.to_owned()),
        other => Err(format!("{EXPORT_RECORD}: precision {other:?} is not fp32, int8 or int4")),
    }
}

impl ModelSpec {
    /// The layout as `/health` and `capwatch_model_info` name it: `blip`, `blip+cross-cache`, …
    pub fn layout_name(&self) -> String {
        if self.cross_attention_cache {
            format!("{}+cross-cache", self.layout.name())
        } else {
            self.layout.name().to_owned()
        }
    }

    /// Reads `dir` and detects its layout; errors name the missing file or key.
    pub fn read(dir: &Path) -> Result<Self, EngineError> {
        let fail = |reason: String| EngineError::ModelLoad { path: dir.display().to_string(), reason };
        if !dir.is_dir() {
            return Err(fail("no such directory".to_owned()));
        }
        let config = read_json(&dir.join("config.json")).map_err(&fail)?;
        let generation_config = match dir.join("generation_config.json") {
            path if path.is_file() => Some(read_json(&path).map_err(&fail)?),
            _ => None,
        };
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or_default();
        let preprocessor = read_json(&dir.join("preprocessor_config.json")).map_err(&fail)?;
        let preprocessor = with_image_processor_defaults(&preprocessor, model_type);
        let image =
            ImageProcessorSpec::from_json(&preprocessor).map_err(|e| fail(format!("preprocessor_config.json: {e}")))?;
        let tokenizer_file = require_file(dir, "tokenizer.json").map_err(&fail)?;
        let precision = export_precision(dir).map_err(&fail)?;
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());

        match model_type {
            "vision-encoder-decoder" => {
                let encoder_file = require_file(dir, "encoder_model.onnx").map_err(&fail)?;
                let (layout, decoder_file, decoder_with_past_file) = detect_decoder_files(dir).map_err(&fail)?;
                let decoder_json = config.get("decoder").unwrap_or(&Value::Null);
                let decoder_type = decoder_json.get("model_type").and_then(Value::as_str).unwrap_or_default();
                let decoder_config = HfObject::new(decoder_json, ConfigClass::of_model_type(decoder_type));
                let generation = vision_encoder_decoder_generation(&config, decoder_config, generation_config.as_ref())
                    .map_err(&fail)?;
                Ok(Self {
                    dir: dir.to_owned(),
                    name,
                    layout: ModelLayout::VisionEncoderDecoder(layout),
                    encoder_file,
                    decoder_file,
                    decoder_with_past_file,
                    tokenizer_file,
                    image,
                    generation,
                    attention: attention_shape(decoder_config),
                    cross_attention_cache: false,
                    pads_rows: false,
                    precision: precision.clone(),
                })
            }
            "blip" => {
                let encoder_file = require_file(dir, "vision_model.onnx").map_err(&fail)?;
                let decoder_file = require_file(dir, "text_decoder.onnx").map_err(&fail)?;
                let text_config =
                    HfObject::new(config.get("text_config").unwrap_or(&Value::Null), ConfigClass::BlipTextConfig);
                let generation = blip_generation(text_config).map_err(&fail)?;
                Ok(Self {
                    dir: dir.to_owned(),
                    name,
                    layout: ModelLayout::Blip,
                    encoder_file,
                    decoder_file,
                    decoder_with_past_file: None,
                    tokenizer_file,
                    image,
                    generation,
                    attention: attention_shape(text_config),
                    cross_attention_cache: false,
                    pads_rows: false,
                    precision: precision.clone(),
                })
            }
            other => Err(fail(format!(
                "config.json has model_type `{other}`; supported: `vision-encoder-decoder` (Optimum export) and `blip` (tools/export_blip.py)"
            ))),
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", file_name(path)))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn require_file(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if path.is_file() { Ok(path) } else { Err(format!("missing {name}")) }
}

fn detect_decoder_files(dir: &Path) -> Result<(DecoderLayout, PathBuf, Option<PathBuf>), String> {
    let merged = dir.join("decoder_model_merged.onnx");
    let plain = dir.join("decoder_model.onnx");
    let with_past = dir.join("decoder_with_past_model.onnx");
    if merged.is_file() {
        Ok((DecoderLayout::Merged, merged, None))
    } else if plain.is_file() && with_past.is_file() {
        Ok((DecoderLayout::Split, plain, Some(with_past)))
    } else if plain.is_file() {
        Ok((DecoderLayout::NoCache, plain, None))
    } else {
        Err("missing decoder: expected decoder_model_merged.onnx, or decoder_model.onnx (+ decoder_with_past_model.onnx)".to_owned())
    }
}

/// An integer token id, or the first of a list (HF allows both for `eos_token_id`).
fn token_ids(value: Option<&Value>) -> Vec<i64> {
    match value {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

/// Refuses a setting that would make `generate()` decode differently from capwatch.
fn refuse_unsupported(source: &GenerationSource<'_>) -> Result<(), String> {
    match source.unsupported_setting() {
        None => Ok(()),
        Some((key, value)) => Err(format!(
            "{} sets `{key}: {value}`, which changes what transformers' generate() produces; capwatch \
             does not apply it and does not serve a model whose captions would differ \
             (set it to its default to serve the captions generate() gives without it)",
            source.origin
        )),
    }
}

fn vision_encoder_decoder_generation(
    config: &Value,
    decoder: HfObject<'_>,
    generation_config: Option<&Value>,
) -> Result<GenerationSpec, String> {
    let source = GenerationSource::vision_encoder_decoder(generation_config, config, decoder);
    refuse_unsupported(&source)?;
    let start = token_ids(Some(&source.get("decoder_start_token_id")));
    let start = if start.is_empty() { token_ids(Some(&source.get("bos_token_id"))) } else { start };
    let Some(&start) = start.first() else {
        return Err(format!("no decoder_start_token_id or bos_token_id in {}", source.origin));
    };
    let stop_ids = token_ids(Some(&source.get("eos_token_id")));
    if stop_ids.is_empty() {
        return Err(format!("no eos_token_id in {}", source.origin));
    }
    let rules = source.logits_rules(&stop_ids, 1)?;
    Ok(GenerationSpec {
        prompt_ids: vec![start],
        stop_ids,
        default_max_new_tokens: source.default_max_new_tokens(1, None),
        rules,
        beam: source.beam_settings()?,
    })
}

/// HF's BLIP `generate()` starts from `text_config.bos_token_id` and stops on
/// `text_config.sep_token_id`, whatever `eos_token_id` says (DESIGN.md, known traps); its
/// generation settings come from `text_config` alone.
fn blip_generation(text_config: HfObject<'_>) -> Result<GenerationSpec, String> {
    let source = GenerationSource::blip(text_config);
    refuse_unsupported(&source)?;
    let (Some(bos), Some(sep)) = (text_config.get("bos_token_id").as_i64(), text_config.get("sep_token_id").as_i64())
    else {
        return Err("config.json text_config: bos_token_id and sep_token_id must be integers".to_owned());
    };
    let position_cap = text_config.get("max_position_embeddings").as_u64().and_then(|n| usize::try_from(n).ok());
    Ok(GenerationSpec {
        prompt_ids: vec![bos],
        stop_ids: vec![sep],
        default_max_new_tokens: source.default_max_new_tokens(1, position_cap),
        rules: source.logits_rules(&[sep], 1)?,
        beam: source.beam_settings()?,
    })
}

/// `preprocessor_config.json` with the keys `save_pretrained` may leave out filled in from its
/// image processor class (`image_processor_type`, else the model's family).
fn with_image_processor_defaults(preprocessor: &Value, model_type: &str) -> Value {
    let kind = preprocessor
        .get("image_processor_type")
        .or_else(|| preprocessor.get("feature_extractor_type"))
        .and_then(Value::as_str)
        .unwrap_or(if model_type == "blip" { "BlipImageProcessor" } else { "ViTImageProcessor" });
    let class = ConfigClass::of_image_processor(kind);
    let mut filled = preprocessor.clone();
    if let Value::Object(map) = &mut filled {
        for key in
            ["size", "resample", "image_mean", "image_std", "rescale_factor", "do_resize", "do_rescale", "do_normalize"]
        {
            if map.get(key).is_none_or(Value::is_null) {
                map.insert(key.to_owned(), class_default(class, key));
            }
        }
    }
    filled
}

fn attention_shape(config: HfObject<'_>) -> Option<AttentionShape> {
    let get = |keys: &[&str]| keys.iter().find_map(|k| config.get(k).as_u64());
    let heads = usize::try_from(get(&["n_head", "num_attention_heads"])?).ok()?;
    let hidden = usize::try_from(get(&["n_embd", "hidden_size", "d_model"])?).ok()?;
    (heads > 0 && hidden % heads == 0).then_some(AttentionShape { num_heads: heads, head_dim: hidden / heads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gpt2(json: &Value) -> HfObject<'_> {
        HfObject::new(json, ConfigClass::Gpt2Config)
    }

    #[test]
    fn vision_encoder_decoder_reads_start_stop_and_length() {
        let config = json!({"decoder": {"n_head": 12, "n_embd": 768}});
        let generation = json!({"decoder_start_token_id": 50256, "eos_token_id": 50256, "max_length": 16});
        let spec = vision_encoder_decoder_generation(&config, gpt2(&config["decoder"]), Some(&generation)).unwrap();
        assert_eq!(spec.prompt_ids, vec![50256]);
        assert_eq!(spec.stop_ids, vec![50256]);
        assert_eq!(spec.default_max_new_tokens, 15);
        assert_eq!(attention_shape(gpt2(&config["decoder"])), Some(AttentionShape { num_heads: 12, head_dim: 64 }));
        // GPT2Config's own defaults when save_pretrained left them out.
        assert_eq!(attention_shape(gpt2(&json!({}))), Some(AttentionShape { num_heads: 12, head_dim: 64 }));
    }

    #[test]
    fn max_new_tokens_wins_over_max_length() {
        let generation =
            json!({"decoder_start_token_id": 1, "eos_token_id": [2, 3], "max_length": 16, "max_new_tokens": 7});
        let spec = vision_encoder_decoder_generation(&Value::Null, gpt2(&Value::Null), Some(&generation)).unwrap();
        assert_eq!(spec.stop_ids, vec![2, 3]);
        assert_eq!(spec.default_max_new_tokens, 7);
    }

    #[test]
    fn start_falls_back_to_bos_and_ids_to_the_decoder_class() {
        // generation_config.json without decoder_start_token_id: generate() starts from bos.
        let generation = json!({"bos_token_id": 5, "eos_token_id": 6});
        let spec = vision_encoder_decoder_generation(&json!({}), gpt2(&json!({})), Some(&generation)).unwrap();
        assert_eq!((spec.prompt_ids, spec.stop_ids, spec.default_max_new_tokens), (vec![5], vec![6], 20));
        // No generation_config.json: config.json, then GPT2Config's 50256 for what is left out.
        let spec = vision_encoder_decoder_generation(&json!({}), gpt2(&json!({})), None).unwrap();
        assert_eq!((spec.prompt_ids, spec.stop_ids), (vec![50256], vec![50256]));
        let err = vision_encoder_decoder_generation(&json!({}), gpt2(&json!({})), Some(&json!({}))).unwrap_err();
        assert!(err.contains("no decoder_start_token_id or bos_token_id in generation_config.json"), "{err}");
    }

    #[test]
    fn blip_uses_sep_not_eos_and_reads_text_config_only() {
        let text_config = json!({"bos_token_id": 30522, "sep_token_id": 102, "eos_token_id": 2});
        let spec = blip_generation(HfObject::new(&text_config, ConfigClass::BlipTextConfig)).unwrap();
        assert_eq!(spec.prompt_ids, vec![30522]);
        assert_eq!(spec.stop_ids, vec![102]);
        assert_eq!(spec.default_max_new_tokens, 20, "max_length 20 means 20 new tokens");
        // save_pretrained leaves out ids equal to BlipTextConfig's defaults.
        let spec = blip_generation(HfObject::new(&json!({}), ConfigClass::BlipTextConfig)).unwrap();
        assert_eq!((spec.prompt_ids, spec.stop_ids), (vec![30522], vec![102]));
        let text_config = json!({"max_position_embeddings": 12});
        let spec = blip_generation(HfObject::new(&text_config, ConfigClass::BlipTextConfig)).unwrap();
        assert_eq!(spec.default_max_new_tokens, 11, "capped by max_position_embeddings");
        let text_config = json!({"num_beams": 3, "length_penalty": 0.5});
        let spec = blip_generation(HfObject::new(&text_config, ConfigClass::BlipTextConfig)).unwrap();
        assert_eq!((spec.beam.num_beams, spec.beam.length_penalty), (3, 0.5), "beam settings from text_config");
        let text_config = json!({"num_beam_groups": 3});
        let err = blip_generation(HfObject::new(&text_config, ConfigClass::BlipTextConfig)).unwrap_err();
        assert!(err.contains("config.json text_config sets `num_beam_groups: 3`"), "{err}");
        let text_config = json!({"repetition_penalty": 1.5, "bad_words_ids": [[102], [7]]});
        let spec = blip_generation(HfObject::new(&text_config, ConfigClass::BlipTextConfig)).unwrap();
        assert_eq!(
            (spec.rules.repetition_penalty, spec.rules.bad_words_ids),
            (Some(1.5), vec![vec![7]]),
            "sep stops BLIP"
        );
    }

    #[test]
    fn image_processor_defaults_follow_its_class() {
        let blip = with_image_processor_defaults(&json!({"image_processor_type": "BlipImageProcessor"}), "blip");
        let spec = ImageProcessorSpec::from_json(&blip).unwrap();
        assert_eq!((spec.width, spec.height), (384, 384));
        assert!((spec.mean[0] - 0.481_454_66).abs() < 1e-6 && (spec.std[2] - 0.275_777_1).abs() < 1e-6);
        assert_eq!(blip["resample"], json!(3));
        let vit = with_image_processor_defaults(&json!({"size": 32}), "vision-encoder-decoder");
        let spec = ImageProcessorSpec::from_json(&vit).unwrap();
        assert_eq!((spec.width, spec.height, spec.mean), (32, 32, [0.5; 3]));
        assert_eq!(vit["resample"], json!(2));
    }

    #[test]
    fn precision_comes_from_the_exporters_record() {
        let dir = std::env::temp_dir().join(format!("capwatch-precision-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(export_precision(&dir).unwrap(), "fp32", "no record: fp32");
        std::fs::write(dir.join(EXPORT_RECORD), r#"{"precision": "int8"}"#).unwrap();
        assert_eq!(export_precision(&dir).unwrap(), "int8");
        std::fs::write(dir.join(EXPORT_RECORD), r#"{"precision": "int4"}"#).unwrap();
        assert_eq!(export_precision(&dir).unwrap(), "int4");
        std::fs::write(dir.join(EXPORT_RECORD), r#"{"precision": "int2"}"#).unwrap();
        assert!(export_precision(&dir).unwrap_err().contains("is not fp32, int8 or int4"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = ModelSpec::read(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }
}
