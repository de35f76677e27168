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
    let ved = GenerationSource::vision_encoder_decoder(None, &config, HfObject::new(&decoder, ConfigClass::Gpt2Config));
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
fn settings_capwatch_does_not_apply_are_named() {
    let generation = json!({"num_beams": 1, "do_sample": false, "length_penalty": 2.0, "repetition_penalty": 1.3});
    let config = json!({});
    let decoder = json!({});
    let gpt2 = HfObject::new(&decoder, ConfigClass::Gpt2Config);
    let source = GenerationSource::vision_encoder_decoder(Some(&generation), &config, gpt2);
    assert_eq!(source.unsupported_setting(), None, "no-op values, beam and applied settings pass");
    for (key, value) in
        [("num_beam_groups", json!(2)), ("do_sample", json!(true)), ("sequence_bias", json!([[[5], 1.0]]))]
    {
        let generation = json!({ key: value });
        let source = GenerationSource::vision_encoder_decoder(Some(&generation), &config, gpt2);
        assert_eq!(source.unsupported_setting(), Some((key, value)), "{key}");
    }
}

#[test]
fn logits_rules_are_read_as_transformers_sets_them_up() {
    let generation = json!({
        "repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "min_new_tokens": 3,
        "bad_words_ids": [[7], [2], [8, 9]], "forced_eos_token_id": 2, "suppress_tokens": [4],
        "begin_suppress_tokens": [5], "forced_bos_token_id": 6
    });
    let config = json!({});
    let decoder = json!({});
    let source = GenerationSource::vision_encoder_decoder(
        Some(&generation),
        &config,
        HfObject::new(&decoder, ConfigClass::Gpt2Config),
    );
    let rules = source.logits_rules(&[2], 1).unwrap();
    assert_eq!(rules.repetition_penalty, Some(1.5));
    assert_eq!(rules.no_repeat_ngram_size, 2);
    assert_eq!(rules.bad_words_ids, vec![vec![7], vec![8, 9]], "a lone stop token is not a bad word");
    assert_eq!((rules.min_new_tokens, rules.min_length), (3, 4));
    assert_eq!(rules.forced_eos_token_ids, vec![2]);
    assert_eq!(rules.begin_index, 2, "after a forced BOS");
    let off_json = json!({"repetition_penalty": 1.0});
    let off = GenerationSource::vision_encoder_decoder(
        Some(&off_json),
        &config,
        HfObject::new(&decoder, ConfigClass::Gpt2Config),
    );
    assert!(!off.logits_rules(&[2], 1).unwrap().is_active());
    let wrong_json = json!({"bad_words_ids": [3]});
    let wrong = GenerationSource::vision_encoder_decoder(
        Some(&wrong_json),
        &config,
        HfObject::new(&decoder, ConfigClass::Gpt2Config),
    );
    assert!(wrong.logits_rules(&[2], 1).unwrap_err().contains("`bad_words_ids`"));
}

#[test]
fn beam_settings_are_read_with_their_defaults() {
    let config = json!({});
    let decoder = json!({});
    let gpt2 = HfObject::new(&decoder, ConfigClass::Gpt2Config);
    let read =
        |generation: &Value| GenerationSource::vision_encoder_decoder(Some(generation), &config, gpt2).beam_settings();
    assert_eq!(read(&json!({})).unwrap(), BeamSettings::default());
    let settings = read(&json!({"num_beams": 4, "length_penalty": 0.6, "early_stopping": "never"})).unwrap();
    assert_eq!(settings, BeamSettings { num_beams: 4, length_penalty: 0.6, early_stopping: EarlyStopping::Never });
    assert_eq!(read(&json!({"early_stopping": true})).unwrap().early_stopping, EarlyStopping::Early);
    assert!(read(&json!({"num_beams": 0})).unwrap_err().contains("`num_beams`"));
    assert!(read(&json!({"early_stopping": "sometimes"})).unwrap_err().contains("`early_stopping`"));
    let text = json!({"num_beams": 3});
    let blip = GenerationSource::blip(HfObject::new(&text, ConfigClass::BlipTextConfig));
    assert_eq!(blip.beam_settings().unwrap().num_beams, 3, "BLIP reads text_config");
}
