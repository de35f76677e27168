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
//! Every other setting that changes greedy output is refused at load, naming it, unless it
//! has its no-op value: capwatch never silently decodes differently from `generate()`.

use serde_json::{Value, json};

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

/// The settings that change greedy output, checked to hold their no-op value.
const GREEDY_SETTINGS: &[&str] = &[
    "num_beams",
    "num_beam_groups",
    "do_sample",
    "penalty_alpha",
    "min_length",
    "min_new_tokens",
    "repetition_penalty",
    "encoder_repetition_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
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
        GREEDY_SETTINGS.iter().find_map(|&key| {
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
mod tests {
    use super::*;

    #[test]
    fn class_defaults_fall_back_to_the_base_class() {
        assert_eq!(class_default(ConfigClass::BlipTextConfig, "sep_token_id"), json!(102));
        assert_eq!(class_default(ConfigClass::Gpt2Config, "eos_token_id"), json!(50256));
        assert_eq!(class_default(ConfigClass::Gpt2Config, "max_length"), json!(20));
        assert_eq!(class_default(ConfigClass::VitConfig, "bos_token_id"), Value::Null);
        assert_eq!(class_default(ConfigClass::BlipImageProcessor, "resample"), json!(3));
        assert_eq!(class_default(ConfigClass::VitImageProcessor, "max_length"), Value::Null);
    }

    #[test]
    fn default_length_twenty_means_twenty_new_tokens() {
        let text = json!({});
        let blip = GenerationSource::blip(HfObject::new(&text, ConfigClass::BlipTextConfig));
        assert_eq!(blip.default_max_new_tokens(1, Some(512)), 20);
        assert_eq!(blip.default_max_new_tokens(1, Some(10)), 9, "capped by max_position_embeddings");
        let text = json!({"max_length": 16});
        let blip = GenerationSource::blip(HfObject::new(&text, ConfigClass::BlipTextConfig));
        assert_eq!(blip.default_max_new_tokens(1, Some(512)), 15, "another max_length counts the prompt");
        let text = json!({"max_length": 16, "max_new_tokens": 7});
        let blip = GenerationSource::blip(HfObject::new(&text, ConfigClass::BlipTextConfig));
        assert_eq!(blip.default_max_new_tokens(1, Some(512)), 7);
        let generation = json!({"max_length": 20});
        let decoder = json!({});
        let config = json!({});
        let ved = GenerationSource::vision_encoder_decoder(
            Some(&generation),
            &config,
            HfObject::new(&decoder, ConfigClass::Gpt2Config),
        );
        assert_eq!(ved.default_max_new_tokens(1, None), 20, "an explicit 20 is the default too");
    }

    #[test]
    fn vision_encoder_decoder_without_generation_config_reads_the_decoder() {
        let config = json!({"max_length": 20});
        let decoder = json!({"max_length": 5});
        let ved =
            GenerationSource::vision_encoder_decoder(None, &config, HfObject::new(&decoder, ConfigClass::Gpt2Config));
        assert_eq!(ved.default_max_new_tokens(1, None), 4);
        assert_eq!(ved.get("eos_token_id"), json!(50256), "GPT2Config's default");
        let generation = json!({"eos_token_id": 7});
        let ved = GenerationSource::vision_encoder_decoder(
            Some(&generation),
            &config,
            HfObject::new(&decoder, ConfigClass::Gpt2Config),
        );
        assert_eq!(ved.default_max_new_tokens(1, None), 20, "generation_config.json wins; the decoder is not read");
        // ... unless it was made from the model config and config.json changed a setting since.
        let made = json!({"_from_model_config": true, "eos_token_id": 7});
        let config = json!({"max_length": 5});
        let ved = GenerationSource::vision_encoder_decoder(
            Some(&made),
            &config,
            HfObject::new(&decoder, ConfigClass::Gpt2Config),
        );
        assert_eq!(ved.default_max_new_tokens(1, None), 4);
        let config = json!({"max_length": 20});
        let ved = GenerationSource::vision_encoder_decoder(
            Some(&made),
            &config,
            HfObject::new(&decoder, ConfigClass::Gpt2Config),
        );
        assert_eq!(ved.get("eos_token_id"), json!(7), "a default value in config.json changes nothing");
    }

    #[test]
    fn greedy_changing_settings_are_named() {
        let generation =
            json!({"num_beams": 1, "repetition_penalty": 1.0, "suppress_tokens": [], "length_penalty": 2.0});
        let config = json!({});
        let decoder = json!({});
        let source = GenerationSource::vision_encoder_decoder(
            Some(&generation),
            &config,
            HfObject::new(&decoder, ConfigClass::Gpt2Config),
        );
        assert_eq!(source.unsupported_setting(), None, "no-op values and beam-only settings pass");
        for (key, value) in [
            ("num_beams", json!(4)),
            ("do_sample", json!(true)),
            ("min_new_tokens", json!(3)),
            ("repetition_penalty", json!(1.2)),
            ("no_repeat_ngram_size", json!(3)),
            ("bad_words_ids", json!([[5]])),
            ("suppress_tokens", json!([1])),
            ("begin_suppress_tokens", json!([2])),
            ("forced_bos_token_id", json!(0)),
            ("forced_eos_token_id", json!(2)),
        ] {
            let generation = json!({ key: value });
            let source = GenerationSource::vision_encoder_decoder(
                Some(&generation),
                &config,
                HfObject::new(&decoder, ConfigClass::Gpt2Config),
            );
            assert_eq!(source.unsupported_setting(), Some((key, value)), "{key}");
        }
        let text = json!({"no_repeat_ngram_size": 2});
        let blip = GenerationSource::blip(HfObject::new(&text, ConfigClass::BlipTextConfig));
        assert_eq!(blip.unsupported_setting(), Some(("no_repeat_ngram_size", json!(2))));
    }
}
