//! The model's json files read as transformers reads them: every key capwatch uses falls
//! back to the default of the transformers class that owns it (`save_pretrained` leaves
//! out keys equal to those defaults), and the generation settings are taken from where
//! `generate()` takes them.
//!
//! Defaults are those of transformers 4.57.6 ([`TRANSFORMERS_VERSION`]), one table,
//! [`CLASS_DEFAULTS`]. Where generation settings come from:
//! - BLIP: `BlipForConditionalGeneration.generate()` runs `text_decoder.generate()`, whose
//!   generation config is made from `text_config` (`GenerationConfig.from_model_config`);
//!   `generation_config.json` is not read. It starts from `text_config.bos_token_id` and
//!   stops on `text_config.sep_token_id`.
//! - VisionEncoderDecoder: `generation_config.json` when there is one; otherwise the
//!   top-level `config.json`, with the decoder's values (class defaults included) for what
//!   it leaves at the generation defaults. Starts from `decoder_start_token_id`, else
//!   `bos_token_id`; stops on `eos_token_id`.
//!
//! Length (`GenerationMixin._prepare_generated_length`): `max_new_tokens` when set; else a
//! `max_length` of 20 (the library default, also when written explicitly) means 20 *new*
//! tokens, capped by the generating model's `max_position_embeddings` (BLIP's text config;
//! VisionEncoderDecoderConfig has none); any other `max_length` counts the prompt.
//!
//! The logits-processor settings (repetition penalty, n-gram and bad-word bans, minimum
//! lengths, forced and suppressed tokens) are applied ([`super::logits`]); every other
//! setting that changes greedy output (beams, sampling, …) is refused at load, naming it,
//! unless it has its no-op value: capwatch never silently decodes differently from `generate()`.

use serde_json::{Value, json};

use super::logits::LogitsRules;
use super::settings::{BeamSettings, EarlyStopping};

/// The transformers release the defaults below were read from.
pub const TRANSFORMERS_VERSION: &str = "4.57.6";

/// The transformers classes whose defaults capwatch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigClass {
    GenerationConfig,
    BlipTextConfig,
    Gpt2Config,
    VitConfig,
    /// Any other `PretrainedConfig` (e.g. a decoder of another type): only the base defaults.
    PretrainedConfig,
    VitImageProcessor,
    BlipImageProcessor,
}

impl ConfigClass {
    /// The class a decoder (or text) config's `model_type` stands for.
    pub fn of_model_type(model_type: &str) -> Self {
        match model_type {
            "gpt2" => Self::Gpt2Config,
            "blip_text_model" => Self::BlipTextConfig,
            "vit" => Self::VitConfig,
            _ => Self::PretrainedConfig,
        }
    }

    /// The image processor class a `preprocessor_config.json` names.
    pub fn of_image_processor(kind: &str) -> Self {
        if kind.starts_with("Blip") { Self::BlipImageProcessor } else { Self::VitImageProcessor }
    }
}

/// `(class, key, default)`: transformers 4.57.6. Keys a class does not list default to the
/// `PretrainedConfig` / `GenerationConfig` entries, and then to null.
pub fn class_default(class: ConfigClass, key: &str) -> Value {
    CLASS_DEFAULTS
        .iter()
        .find(|(c, k, _)| *c == class && *k == key)
        .or_else(|| {
            let base = match class {
                ConfigClass::VitImageProcessor | ConfigClass::BlipImageProcessor => None,
                _ => Some(ConfigClass::PretrainedConfig),
            };
            base.and_then(|base| CLASS_DEFAULTS.iter().find(|(c, k, _)| *c == base && *k == key))
        })
        .map_or(Value::Null, |(_, _, default)| default())
}

type DefaultFn = fn() -> Value;

/// The defaults table (see [`class_default`]).
pub const CLASS_DEFAULTS: &[(ConfigClass, &str, DefaultFn)] = &[
    // PretrainedConfig (configuration_utils.py): token ids unset, max_length 20.
    (ConfigClass::PretrainedConfig, "max_length", || json!(20)),
    // GenerationConfig (generation/configuration_utils.py): the no-op values.
    (ConfigClass::GenerationConfig, "max_length", || json!(20)),
    (ConfigClass::GenerationConfig, "min_length", || json!(0)),
    (ConfigClass::GenerationConfig, "num_beams", || json!(1)),
    (ConfigClass::GenerationConfig, "num_beam_groups", || json!(1)),
    (ConfigClass::GenerationConfig, "do_sample", || json!(false)),
    (ConfigClass::GenerationConfig, "penalty_alpha", || Value::Null),
    (ConfigClass::GenerationConfig, "repetition_penalty", || json!(1.0)),
    (ConfigClass::GenerationConfig, "encoder_repetition_penalty", || json!(1.0)),
    (ConfigClass::GenerationConfig, "no_repeat_ngram_size", || json!(0)),
    (ConfigClass::GenerationConfig, "encoder_no_repeat_ngram_size", || json!(0)),
    (ConfigClass::GenerationConfig, "diversity_penalty", || json!(0.0)),
    (ConfigClass::GenerationConfig, "length_penalty", || json!(1.0)),
    (ConfigClass::GenerationConfig, "early_stopping", || json!(false)),
    (ConfigClass::GenerationConfig, "temperature", || json!(1.0)),
    (ConfigClass::GenerationConfig, "top_k", || json!(50)),
    (ConfigClass::GenerationConfig, "top_p", || json!(1.0)),
    (ConfigClass::GenerationConfig, "typical_p", || json!(1.0)),
    (ConfigClass::GenerationConfig, "num_return_sequences", || json!(1)),
    // BlipTextConfig (models/blip/configuration_blip.py).
    (ConfigClass::BlipTextConfig, "bos_token_id", || json!(30522)),
    (ConfigClass::BlipTextConfig, "eos_token_id", || json!(2)),
    (ConfigClass::BlipTextConfig, "pad_token_id", || json!(0)),
    (ConfigClass::BlipTextConfig, "sep_token_id", || json!(102)),
    (ConfigClass::BlipTextConfig, "hidden_size", || json!(768)),
    (ConfigClass::BlipTextConfig, "num_attention_heads", || json!(8)),
    (ConfigClass::BlipTextConfig, "max_position_embeddings", || json!(512)),
    // GPT2Config (models/gpt2/configuration_gpt2.py).
    (ConfigClass::Gpt2Config, "bos_token_id", || json!(50256)),
    (ConfigClass::Gpt2Config, "eos_token_id", || json!(50256)),
    (ConfigClass::Gpt2Config, "n_embd", || json!(768)),
    (ConfigClass::Gpt2Config, "n_head", || json!(12)),
    (ConfigClass::Gpt2Config, "n_positions", || json!(1024)),
    // ViTConfig (models/vit/configuration_vit.py).
    (ConfigClass::VitConfig, "hidden_size", || json!(768)),
    (ConfigClass::VitConfig, "num_attention_heads", || json!(12)),
    // ViTImageProcessor (models/vit/image_processing_vit.py).
    (ConfigClass::VitImageProcessor, "size", || json!({"height": 224, "width": 224})),
    (ConfigClass::VitImageProcessor, "resample", || json!(2)),
    (ConfigClass::VitImageProcessor, "image_mean", || json!([0.5, 0.5, 0.5])),
    (ConfigClass::VitImageProcessor, "image_std", || json!([0.5, 0.5, 0.5])),
    // BlipImageProcessor (models/blip/image_processing_blip.py): bicubic, CLIP statistics.
    (ConfigClass::BlipImageProcessor, "size", || json!({"height": 384, "width": 384})),
    (ConfigClass::BlipImageProcessor, "resample", || json!(3)),
    (ConfigClass::BlipImageProcessor, "image_mean", || json!([0.48145466, 0.4578275, 0.40821073])),
    (ConfigClass::BlipImageProcessor, "image_std", || json!([0.26862954, 0.26130258, 0.27577711])),
    // Both image processors: do_resize, do_rescale, do_normalize true; rescale_factor 1/255.
    (ConfigClass::VitImageProcessor, "rescale_factor", || json!(1.0 / 255.0)),
    (ConfigClass::BlipImageProcessor, "rescale_factor", || json!(1.0 / 255.0)),
    (ConfigClass::VitImageProcessor, "do_resize", || json!(true)),
    (ConfigClass::BlipImageProcessor, "do_resize", || json!(true)),
    (ConfigClass::VitImageProcessor, "do_rescale", || json!(true)),
    (ConfigClass::BlipImageProcessor, "do_rescale", || json!(true)),
    (ConfigClass::VitImageProcessor, "do_normalize", || json!(true)),
    (ConfigClass::BlipImageProcessor, "do_normalize", || json!(true)),
];

/// One json object of a transformers class: its keys, then the class defaults.
#[derive(Debug, Clone, Copy)]
pub struct HfObject<'a> {
    pub json: &'a Value,
    pub class: ConfigClass,
}

impl<'a> HfObject<'a> {
    pub fn new(json: &'a Value, class: ConfigClass) -> Self {
        Self { json, class }
    }

    /// The key's value as transformers has it: the json's (non-null), else the class default.
    pub fn get(&self, key: &str) -> Value {
        match self.json.get(key) {
            Some(value) if !value.is_null() => value.clone(),
            _ => class_default(self.class, key),
        }
    }

    /// Whether the json itself sets the key.
    pub fn sets(&self, key: &str) -> bool {
        self.json.get(key).is_some_and(|value| !value.is_null())
    }
}

/// The settings that change `generate()`'s output and that capwatch does not apply: refused
/// unless they hold their no-op value. (Those it applies are read by
/// [`GenerationSource::logits_rules`] and [`GenerationSource::beam_settings`].)
const REFUSED_SETTINGS: &[&str] = &[
    "num_beam_groups",
    "do_sample",
    "penalty_alpha",
    "encoder_repetition_penalty",
    "encoder_no_repeat_ngram_size",
    "forced_decoder_ids",
    "sequence_bias",
    "exponential_decay_length_penalty",
    "diversity_penalty",
    "stop_strings",
    "guidance_scale",
    "constraints",
    "force_words_ids",
];

/// The generation parameters a model config may still carry (`_get_global_generation_defaults`).
const LEGACY_GENERATION_KEYS: &[&str] = &[
    "max_length",
    "min_length",
    "do_sample",
    "early_stopping",
    "num_beams",
    "num_beam_groups",
    "diversity_penalty",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "num_return_sequences",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
];

/// The effective generation config: a lookup of generation keys.
pub struct GenerationSource<'a> {
    lookup: Box<dyn Fn(&str) -> Value + 'a>,
    /// Where it was read from, for messages.
    pub origin: &'static str,
}

impl<'a> GenerationSource<'a> {
    /// BLIP: `text_config` as `BlipTextConfig`.
    pub fn blip(text_config: HfObject<'a>) -> Self {
        let lookup = move |key: &str| match text_config.get(key) {
            Value::Null => class_default(ConfigClass::GenerationConfig, key),
            value => value,
        };
        Self { lookup: Box::new(lookup), origin: "config.json text_config" }
    }

    /// VisionEncoderDecoder: `generation_config.json` if present, else `config.json` with
    /// the decoder's values for what the top level leaves at the generation defaults.
    pub fn vision_encoder_decoder(
        generation_config: Option<&'a Value>,
        config: &'a Value,
        decoder: HfObject<'a>,
    ) -> Self {
        // transformers' legacy rule (GenerationMixin._prepare_generation_config): a
        // generation_config.json made from the model config gives way to config.json when the
        // latter sets a generation parameter to a non-default value.
        let made_from_config =
            generation_config.is_some_and(|g| g.get("_from_model_config").and_then(Value::as_bool) == Some(true));
        let config_overrides = LEGACY_GENERATION_KEYS.iter().any(|key| {
            config.get(*key).is_some_and(|v| !v.is_null() && *v != class_default(ConfigClass::GenerationConfig, key))
        });
        let generation_config = if made_from_config && config_overrides { None } else { generation_config };
        if let Some(generation) = generation_config {
            let lookup = move |key: &str| match generation.get(key) {
                Some(value) if !value.is_null() => value.clone(),
                _ => class_default(ConfigClass::GenerationConfig, key),
            };
            return Self { lookup: Box::new(lookup), origin: "generation_config.json" };
        }
        let lookup = move |key: &str| {
            let default = class_default(ConfigClass::GenerationConfig, key);
            match config.get(key) {
                Some(value) if !value.is_null() && *value != default => value.clone(),
                _ => match decoder.get(key) {
                    Value::Null => default,
                    value => value,
                },
            }
        };
        Self { lookup: Box::new(lookup), origin: "config.json" }
    }

    pub fn get(&self, key: &str) -> Value {
        (self.lookup)(key)
    }

    /// The first greedy-affecting setting that is not at its no-op value, as `(key, value)`.
    pub fn unsupported_setting(&self) -> Option<(&'static str, Value)> {
        REFUSED_SETTINGS.iter().find_map(|&key| {
            let value = self.get(key);
            let no_op = match &value {
                Value::Null => true,
                Value::Array(items) => items.is_empty(),
                Value::Object(items) => items.is_empty(),
                _ => value == class_default(ConfigClass::GenerationConfig, key),
            };
            (!no_op).then_some((key, value))
        })
    }

    /// The logits processors these settings switch on (see [`LogitsRules`]); errors name the
    /// key whose value has the wrong type.
    pub fn logits_rules(&self, stop_ids: &[i64], prompt_len: usize) -> Result<LogitsRules, String> {
        let bad = |key: &str, wanted: &str| format!("{}: `{key}` must be {wanted}", self.origin);
        let count = |key: &str| -> Result<usize, String> {
            match self.get(key) {
                Value::Null => Ok(0),
                value => value.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| bad(key, "a count")),
            }
        };
        let id = |key: &str| -> Result<Option<i64>, String> {
            match self.get(key) {
                Value::Null => Ok(None),
                value => value.as_i64().map(Some).ok_or_else(|| bad(key, "a token id")),
            }
        };
        let ids = |key: &str| -> Result<Vec<i64>, String> {
            match self.get(key) {
                Value::Null => Ok(Vec::new()),
                Value::Number(n) => n.as_i64().map(|id| vec![id]).ok_or_else(|| bad(key, "token ids")),
                Value::Array(items) => {
                    items.iter().map(|v| v.as_i64().ok_or_else(|| bad(key, "a list of token ids"))).collect()
                }
                _ => Err(bad(key, "token ids")),
            }
        };
        let repetition_penalty = match self.get("repetition_penalty") {
            Value::Null => None,
            value => {
                let penalty = value
                    .as_f64()
                    .filter(|p| *p > 0.0)
                    .ok_or_else(|| bad("repetition_penalty", "a positive number"))?;
                #[allow(clippy::float_cmp)] // 1.0 exactly is transformers' "off"
                (penalty != 1.0).then_some(penalty as f32)
            }
        };
        let bad_words_ids = match self.get("bad_words_ids") {
            Value::Null => Vec::new(),
            Value::Array(words) => {
                let mut out = Vec::with_capacity(words.len());
                for word in words {
                    let word: Option<Vec<i64>> =
                        word.as_array().map(|ids| ids.iter().filter_map(Value::as_i64).collect());
                    match word {
                        Some(word) if !word.is_empty() => out.push(word),
                        _ => return Err(bad("bad_words_ids", "a list of non-empty lists of token ids")),
                    }
                }
                // transformers drops the entries that are a single stop token.
                out.retain(|word| !(word.len() == 1 && stop_ids.contains(&word[0])));
                out
            }
            _ => return Err(bad("bad_words_ids", "a list of lists of token ids")),
        };
        let min_new_tokens = count("min_new_tokens")?;
        // _prepare_generated_length: min_new_tokens sets min_length (prompt included).
        let min_length = if min_new_tokens > 0 { min_new_tokens + prompt_len } else { count("min_length")? };
        let forced_bos_token_id = id("forced_bos_token_id")?;
        let begin_index = if prompt_len > 1 || forced_bos_token_id.is_none() { prompt_len } else { prompt_len + 1 };
        Ok(LogitsRules {
            repetition_penalty,
            no_repeat_ngram_size: count("no_repeat_ngram_size")?,
            bad_words_ids,
            min_length,
            min_new_tokens,
            forced_bos_token_id,
            forced_eos_token_ids: ids("forced_eos_token_id")?,
            suppress_tokens: ids("suppress_tokens")?,
            begin_suppress_tokens: ids("begin_suppress_tokens")?,
            begin_index,
            stop_ids: stop_ids.to_vec(),
            prompt_len,
        })
    }

    /// `num_beams`, `length_penalty` and `early_stopping`; errors name the key.
    pub fn beam_settings(&self) -> Result<BeamSettings, String> {
        let bad = |key: &str, wanted: &str| format!("{}: `{key}` must be {wanted}", self.origin);
        let num_beams = match self.get("num_beams") {
            Value::Null => 1,
            value => value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("num_beams", "a positive integer"))?,
        };
        let length_penalty = match self.get("length_penalty") {
            Value::Null => 1.0,
            value => value.as_f64().ok_or_else(|| bad("length_penalty", "a number"))?,
        };
        let early_stopping = match self.get("early_stopping") {
            Value::Null | Value::Bool(false) => EarlyStopping::Heuristic,
            Value::Bool(true) => EarlyStopping::Early,
            Value::String(text) if text == "never" => EarlyStopping::Never,
            _ => return Err(bad("early_stopping", "true, false or \"never\"")),
        };
        Ok(BeamSettings { num_beams, length_penalty, early_stopping })
    }

    /// New tokens `generate()` allows when the request does not say (see the module docs);
    /// `position_cap`: the generating model's `max_position_embeddings`, if it has one.
    pub fn default_max_new_tokens(&self, prompt_len: usize, position_cap: Option<usize>) -> usize {
        if let Some(n) = self.get("max_new_tokens").as_u64() {
            return usize::try_from(n).unwrap_or(usize::MAX).max(1);
        }
        let max_length = self.get("max_length").as_u64().map_or(20, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let total = if max_length == 20 {
            let total = max_length + prompt_len;
            position_cap.map_or(total, |cap| total.min(cap))
        } else {
            max_length
        };
        total.saturating_sub(prompt_len).max(1)
    }
}

#[cfg(test)]
mod tests;
