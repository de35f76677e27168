//! Parity with HuggingFace transformers: the Rust engine must reproduce the token ids that
//! `generate()` (greedy) produced for the tiny random-weight fixtures built by
//! `tools/make_parity_fixtures.py`, for every supported layout (ViT-GPT2 merged, split and
//! cache-less decoders; BLIP with KV cache). Both with HF's own pixel values (model parity)
//! and with capwatch's decoding and preprocessing of the PNG files (end-to-end parity), and
//! the same ids when the images are captioned together as one batch; and beam search
//! against `generate(num_beams=N)` with its length penalty and early-stopping modes.

use crate::common;

use capwatch::engine::batch::DecodingBatch;
use capwatch::engine::captioner::BatchItem;
use capwatch::engine::preprocess::{DecodeLimits, decode_image, to_pixel_values};
use capwatch::engine::settings::{BeamSettings, EarlyStopping};
use capwatch::engine::{Captioner, ModelSpec};
use ndarray::Array4;
use serde_json::Value;

use common::fixture;

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

fn check_model(name: &str) {
    check_fixture(name, name);
}

/// The fixture directory `name` must give every token reference.json holds for `reference_name`.
fn check_fixture(name: &str, reference_name: &str) {
    let reference = reference();
    let model = &reference["models"][reference_name];
    assert!(model.is_object(), "reference.json has no model {reference_name}");
    let spec = ModelSpec::read(&fixture(name)).unwrap();
    assert_eq!(spec.generation.prompt_ids, vec![model["start_token_id"].as_i64().unwrap()], "{name}: start token");
    assert_eq!(spec.generation.stop_ids, vec![model["stop_token_id"].as_i64().unwrap()], "{name}: stop token");
    let max_new_tokens = match model["generate_kwargs"]["max_new_tokens"].as_u64() {
        Some(n) => n as usize,
        None => {
            // generate() was called without a length: the model's own default must be transformers'.
            let expected = model["expected_new_tokens"].as_u64().unwrap() as usize;
            assert_eq!(spec.generation.default_max_new_tokens, expected, "{name}: default number of new tokens");
            let lengths: Vec<usize> =
                model["cases"].as_array().unwrap().iter().map(|case| ids(&case["generated_ids"]).len()).collect();
            assert!(lengths.iter().all(|&n| n <= expected), "{name}: {lengths:?} beyond {expected}");
            if let Some(settings) = model["beam_settings"].as_object() {
                let beam = spec.generation.beam;
                assert_eq!(beam.num_beams as u64, settings["num_beams"].as_u64().unwrap(), "{name}: num_beams");
                assert_eq!(Some(beam.length_penalty), settings["length_penalty"].as_f64(), "{name}: length_penalty");
                assert_eq!(beam.early_stopping, early_stopping(&settings["early_stopping"]), "{name}: early_stopping");
            } else {
                assert!(lengths.contains(&expected), "{name}: no caption reaches the limit {expected}: {lengths:?}");
            }
            expected
        }
    };
    let mut captioner = Captioner::load(&spec, 1, None, None).unwrap();
    let cross_cache = model["layout"].as_str().unwrap().ends_with("+cross-cache");
    assert_eq!(captioner.spec().cross_attention_cache, cross_cache, "{name}: cross-attention cache as loaded");
    let limits = DecodeLimits { max_pixels: 10_000_000 };

    let cases = model["cases"].as_array().unwrap();
    assert!(cases.len() >= 3, "{name}: too few cases");
    for case in cases {
        let image_name = case["image"].as_str().unwrap();
        let expected_ids = ids(&case["generated_ids"]);
        let expected_text = case["text"].as_str().unwrap();

        // 1. HF's pixel values: the model and the generation loop alone.
        let shape: Vec<usize> =
            case["pixel_values_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let values: Vec<f32> =
            case["pixel_values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let hf_pixels = Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), values).unwrap();
        let generated = captioner.caption_pixels(hf_pixels.clone(), max_new_tokens).unwrap();
        assert_eq!(generated.token_ids, expected_ids, "{name}/{image_name}: token ids from HF pixel values");
        assert_eq!(generated.text, expected_text, "{name}/{image_name}: decoded text");

        // 2. capwatch's own decoding and preprocessing of the file.
        let bytes = std::fs::read(fixture(&format!("images/{image_name}"))).unwrap();
        let rgb = decode_image(&bytes, limits).unwrap();
        let ours = to_pixel_values(&rgb, &spec.image);
        assert_eq!(ours.shape(), hf_pixels.shape(), "{name}/{image_name}: pixel_values shape");
        let max_diff = ours.iter().zip(hf_pixels.iter()).map(|(a, b)| (a - b).abs()).fold(0.0_f32, f32::max);
        let one_level = spec.image.rescale_factor / spec.image.std.iter().copied().fold(f32::INFINITY, f32::min);
        if image_name.ends_with(".png") {
            // Lossless input: decoding and the Pillow-exact resize must give HF's pixels (up to
            // float rounding), and therefore HF's tokens.
            assert!(max_diff < 1e-5, "{name}/{image_name}: preprocessing differs from HF by {max_diff}");
            let from_file = captioner.caption_image(&rgb, max_new_tokens).unwrap();
            assert_eq!(from_file.token_ids, expected_ids, "{name}/{image_name}: token ids from the image file");
        } else {
            // JPEG decoders (zune-jpeg here, libjpeg-turbo in Pillow) may round the IDCT and
            // chroma upsampling differently by a level or two; random-weight fixtures are too
            // chaotic for token equality to survive that, so only the pixels are compared.
            assert!(
                max_diff <= 3.0 * one_level,
                "{name}/{image_name}: preprocessing differs from HF by {max_diff} (> three 8-bit levels)"
            );
        }
    }
    if spec.generation.beam.num_beams > 1 {
        // generate() without arguments searches beams here: the whole batch gets each alone's ids.
        let items = cases
            .iter()
            .map(|case| BatchItem {
                pixel_values: hf_pixels(case),
                max_new_tokens,
                num_beams: spec.generation.beam.num_beams,
            })
            .collect();
        let batched = captioner.caption_batch(items).unwrap();
        for (case, caption) in cases.iter().zip(batched) {
            assert_eq!(caption.token_ids, ids(&case["generated_ids"]), "{name}: {} in a batch", case["image"]);
        }
        return;
    }
    let forced_eos = model["rules"]["forced_eos_token_id"].as_i64();
    check_batched(name, &mut captioner, cases, max_new_tokens, forced_eos);
    check_joining(name, &mut captioner, cases, max_new_tokens, forced_eos);
    check_beams(name, &spec, model, max_new_tokens);
}

/// The fixture's new-token limit: generate()'s kwarg, else the model's own default.
fn fixture_limit(model: &Value) -> usize {
    model["generate_kwargs"]["max_new_tokens"].as_u64().or_else(|| model["expected_new_tokens"].as_u64()).unwrap()
        as usize
}

fn early_stopping(value: &Value) -> EarlyStopping {
    match value {
        Value::Bool(false) => EarlyStopping::Heuristic,
        Value::Bool(true) => EarlyStopping::Early,
        Value::String(text) if text == "never" => EarlyStopping::Never,
        other => panic!("early_stopping {other}"),
    }
}

/// Beam search against `generate(num_beams=N, length_penalty=.., early_stopping=..)`: every
/// reference in the cases' `beams`, each image alone, then all of them (with every image's
/// greedy caption too) as one batch, which must give each the ids it gets alone.
fn check_beams(name: &str, spec: &ModelSpec, model: &Value, max_new_tokens: usize) {
    assert_eq!(fixture_limit(model), max_new_tokens);
    let cases = model["cases"].as_array().unwrap();
    let mut references: Vec<(&Value, &Value)> = Vec::new();
    for case in cases {
        for reference in case["beams"].as_array().unwrap_or_else(|| panic!("{name}: a case has no beams")) {
            references.push((case, reference));
        }
    }
    let beam_counts: Vec<u64> = references.iter().map(|(_, r)| r["num_beams"].as_u64().unwrap()).collect();
    assert!(beam_counts.contains(&2) && beam_counts.contains(&4), "{name}: beams 2 and 4 expected: {beam_counts:?}");

    let mut settings: Vec<(f64, EarlyStopping)> = Vec::new();
    for (_, reference) in &references {
        let key = (reference["length_penalty"].as_f64().unwrap(), early_stopping(&reference["early_stopping"]));
        if !settings.contains(&key) {
            settings.push(key);
        }
    }
    for (length_penalty, early_stopping) in settings {
        let mut spec = spec.clone();
        spec.generation.beam = BeamSettings { num_beams: 1, length_penalty, early_stopping };
        let mut captioner = Captioner::load(&spec, 1, None, None).unwrap();
        let chosen: Vec<&(&Value, &Value)> = references
            .iter()
            .filter(|(_, r)| {
                r["length_penalty"].as_f64() == Some(length_penalty)
                    && self::early_stopping(&r["early_stopping"]) == early_stopping
            })
            .collect();
        let label = |case: &Value, r: &Value| {
            format!(
                "{name}/{}: num_beams {} length_penalty {length_penalty} early_stopping {}",
                case["image"].as_str().unwrap(),
                r["num_beams"],
                early_stopping.name()
            )
        };
        let item =
            |case: &Value, num_beams: usize| BatchItem { pixel_values: hf_pixels(case), max_new_tokens, num_beams };
        for (case, reference) in &chosen {
            let num_beams = reference["num_beams"].as_u64().unwrap() as usize;
            let alone = captioner.caption_batch(vec![item(case, num_beams)]).unwrap().remove(0);
            assert_eq!(alone.token_ids, ids(&reference["generated_ids"]), "{}", label(case, reference));
            assert_eq!(alone.text, reference["text"].as_str().unwrap(), "{}: text", label(case, reference));
        }
        // Together: beams of several sizes and greedy captions in one caption_batch.
        let mut items: Vec<BatchItem> = Vec::new();
        let mut expected: Vec<(Vec<i64>, String)> = Vec::new();
        for (case, reference) in &chosen {
            items.push(item(case, reference["num_beams"].as_u64().unwrap() as usize));
            expected.push((ids(&reference["generated_ids"]), label(case, reference)));
        }
        for case in cases {
            items.push(item(case, 1));
            expected.push((ids(&case["generated_ids"]), format!("{name}/{}: greedy beside beams", case["image"])));
        }
        let together = captioner.caption_batch(items).unwrap();
        for (caption, (ids, label)) in together.iter().zip(&expected) {
            assert_eq!(&caption.token_ids, ids, "{label}, in one batch");
        }
    }
}

/// The ids a caption gets with a lower limit than the fixture's: its ids cut at the limit,
/// the last one forced to the stop token where the model forces EOS at the last position.
fn ids_with_limit(case: &Value, limit: usize, forced_eos: Option<i64>) -> Vec<i64> {
    let mut ids = ids(&case["generated_ids"]);
    if ids.len() >= limit {
        ids.truncate(limit);
        if let (Some(eos), Some(last)) = (forced_eos, ids.last_mut()) {
            *last = eos;
        }
    }
    ids
}

fn hf_pixels(case: &Value) -> Array4<f32> {
    let shape: Vec<usize> =
        case["pixel_values_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let values: Vec<f32> =
        case["pixel_values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), values).unwrap()
}

/// A batch that images join while it decodes, and what each should get.
struct Joining<'a> {
    cases: &'a [Value],
    forced_eos: Option<i64>,
    batch: DecodingBatch<usize>,
    expected: Vec<Vec<i64>>,
    results: Vec<Option<Vec<i64>>>,
    largest_batch: usize,
}

impl Joining<'_> {
    /// Joins `(case, limit)` images; on refusal, the error and the refused rows.
    fn join(&mut self, captioner: &mut Captioner, picks: &[(usize, usize)]) -> Result<(), (String, Vec<usize>)> {
        let mut items = Vec::new();
        for &(case, limit) in picks {
            let case = &self.cases[case % self.cases.len()];
            let alone = ids_with_limit(case, limit, self.forced_eos);
            items.push((
                BatchItem { pixel_values: hf_pixels(case), max_new_tokens: limit, num_beams: 1 },
                self.expected.len(),
            ));
            self.expected.push(alone);
            self.results.push(None);
        }
        captioner.join(&mut self.batch, items).map_err(|(err, rows)| (err.to_string(), rows))
    }

    fn run(&mut self, captioner: &mut Captioner, steps: usize) {
        for _ in 0..steps {
            if self.batch.is_empty() {
                break;
            }
            for (row, generated) in captioner.step(&mut self.batch).unwrap() {
                self.largest_batch = self.largest_batch.max(generated.batch_size);
                self.results[row] = Some(generated.token_ids);
            }
        }
    }
}

/// Continuous batching: images join a batch that is already decoding (one, then two more
/// steps later, then the rest while others leave at their limits) and still get exactly the
/// ids each gets alone. Layouts whose decoder cannot pad rows refuse images mid-decode.
fn check_joining(
    name: &str,
    captioner: &mut Captioner,
    cases: &[Value],
    max_new_tokens: usize,
    forced_eos: Option<i64>,
) {
    // BLIP exports and the ViT-GPT2 cross-cache export pad rows; Optimum's exports do not.
    let layout = captioner.spec().layout;
    let can_pad = !matches!(layout, capwatch::engine::ModelLayout::VisionEncoderDecoder(_))
        || captioner.spec().cross_attention_cache;
    assert_eq!(captioner.joins_mid_decode(), can_pad, "{name}: whether images can join mid-decode");

    let mut test = Joining {
        cases,
        forced_eos,
        batch: DecodingBatch::default(),
        expected: vec![],
        results: vec![],
        largest_batch: 0,
    };
    // The longest caption first, so that it is still decoding when the others come.
    let longest = (0..cases.len()).max_by_key(|&case| ids(&cases[case]["generated_ids"]).len()).unwrap();
    assert!(ids(&cases[longest]["generated_ids"]).len() > 3, "{name}: every caption is too short to join");
    test.join(captioner, &[(longest, max_new_tokens)]).unwrap();
    test.run(captioner, 2);
    let second = test.join(captioner, &[(1, max_new_tokens), (2, 3)]);
    if !can_pad {
        let (err, rows) = second.expect_err("a decoder that cannot pad must refuse images mid-decode");
        assert!(err.contains("mid-decode"), "{name}: {err}");
        assert_eq!(rows, vec![1, 2]);
        return;
    }
    second.unwrap();
    test.run(captioner, 1);
    test.join(captioner, &[(3, max_new_tokens), (4, 1), (5, max_new_tokens)]).unwrap();
    test.run(captioner, 4);
    test.join(captioner, &[(6, max_new_tokens), (7, 2)]).unwrap();
    test.run(captioner, usize::MAX);
    assert!(test.batch.is_empty());
    for (row, (got, want)) in test.results.iter().zip(&test.expected).enumerate() {
        assert_eq!(got.as_ref(), Some(want), "{name}: row {row}, joined mid-decode");
    }
    assert!(test.largest_batch >= 3, "{name}: rows never decoded together (largest {})", test.largest_batch);

    // Two one-token captions leave empty slots beside a long one; a newcomer takes one of
    // them in place (the batch stays three rows wide) and still gets its own tokens.
    let first = test.expected.len();
    test.join(captioner, &[(longest, max_new_tokens), (0, 1), (1, 1)]).unwrap();
    test.run(captioner, 1);
    test.join(captioner, &[(2, max_new_tokens)]).unwrap();
    test.run(captioner, 1);
    assert_eq!(test.batch.width(), 3, "{name}: the newcomer should fill an empty slot in place");
    test.run(captioner, usize::MAX);
    for (row, (got, want)) in test.results.iter().zip(&test.expected).enumerate().skip(first) {
        assert_eq!(got.as_ref(), Some(want), "{name}: row {row}, joined into an empty slot");
    }
}

/// Eight images captioned as one batch (every case twice, half of them with shorter limits so
/// rows stop at different steps) get exactly the ids each gets alone.
fn check_batched(
    name: &str,
    captioner: &mut Captioner,
    cases: &[Value],
    max_new_tokens: usize,
    forced_eos: Option<i64>,
) {
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for (index, case) in cases.iter().cycle().take(8).enumerate() {
        let limit = if index % 2 == 1 { 1 + index / 2 } else { max_new_tokens };
        expected.push(ids_with_limit(case, limit, forced_eos));
        items.push(BatchItem { pixel_values: hf_pixels(case), max_new_tokens: limit, num_beams: 1 });
    }
    let batched = captioner.caption_batch(items).unwrap();
    assert_eq!(batched.len(), expected.len());
    for (row, (caption, expected)) in batched.iter().zip(&expected).enumerate() {
        assert_eq!(&caption.token_ids, expected, "{name}: row {row} of a batch of 8");
    }
}

#[test]
fn vit_gpt2_merged_decoder_matches_transformers() {
    check_model("vit_gpt2_merged");
}

#[test]
fn vit_gpt2_split_decoders_match_transformers() {
    check_model("vit_gpt2_split");
}

#[test]
fn vit_gpt2_without_cache_matches_transformers() {
    check_model("vit_gpt2_nocache");
}

#[test]
fn blip_matches_transformers() {
    check_model("blip");
}

/// The cross-attention cache layout (`tools/export_blip.py`'s default): the decoder reads the
/// keys/values the vision graph computed once per image, and the tokens stay transformers'.
#[test]
fn blip_with_cross_attention_cache_matches_transformers() {
    check_model("blip_cross");
}

/// The same exports with their encoders' self-attention fused into ONNX Runtime's
/// MultiHeadAttention (`tools/fuse_attention.py`, as `tools/quantize_export.py` applies it).
/// Every token stays transformers', alone, in batches, joining mid-decode and with beams.
#[test]
fn attention_fused_exports_match_transformers() {
    for file in ["blip_cross_fused/vision_model.onnx", "vit_gpt2_cross_fused/encoder_model.onnx"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let fused = bytes.windows(b"MultiHeadAttention".len()).any(|w| w == b"MultiHeadAttention");
        assert!(fused, "{file} has no MultiHeadAttention node: rebuild it with make fixtures");
    }
    check_fixture("blip_cross_fused", "blip_cross");
    check_fixture("vit_gpt2_cross_fused", "vit_gpt2_cross");
}

/// A BLIP checkpoint as current transformers saves it: `text_config` without the token ids
/// equal to `BlipTextConfig`'s defaults, a preprocessor config without the
/// `BlipImageProcessor` defaults (bicubic, CLIP mean/std), and no length setting, so every
/// caption runs to transformers' default of 20 new tokens.
#[test]
fn blip_saved_with_defaults_left_out_matches_transformers() {
    check_model("blip_defaults");
}

/// The same for ViT-GPT2 (GPT2Config's 50256 ids left out, ViTImageProcessor defaults).
#[test]
fn vit_gpt2_saved_with_defaults_left_out_matches_transformers() {
    check_model("vit_gpt2_defaults");
}

/// generation_config.json switches on transformers' logits processors (repetition penalty,
/// no-repeat 2-grams, bad words, min_new_tokens, forced EOS at the limit, suppressed tokens,
/// tokens suppressed at the start), each changing some caption: applied exactly, also in
/// batches and when joining mid-decode (forced EOS at each row's own limit).
#[test]
fn vit_gpt2_with_logits_rules_matches_transformers() {
    check_model("vit_gpt2_rules");
}

/// generation_config.json asks for beam search (num_beams, length_penalty, early_stopping), as
/// nlpconnect/vit-gpt2-image-captioning's does: captions without arguments are generate()'s.
#[test]
fn vit_gpt2_with_beam_settings_matches_transformers() {
    check_model("vit_gpt2_beam");
}

/// The beam references are not the greedy captions again (else beam search could be greedy
/// and pass): count those that differ over every fixture.
#[test]
fn beam_references_differ_from_greedy() {
    let reference = reference();
    let (mut differ, mut total) = (0, 0);
    for model in reference["models"].as_object().unwrap().values() {
        for case in model["cases"].as_array().unwrap() {
            for beam in case["beams"].as_array().into_iter().flatten() {
                total += 1;
                differ += usize::from(beam["generated_ids"] != case["generated_ids"]);
            }
        }
    }
    assert!(total >= 100 && differ * 4 >= total, "{differ} of {total} beam references differ from greedy");
}

#[test]
fn every_fixture_layout_is_detected() {
    use capwatch::engine::ModelLayout;
    use capwatch::engine::model_dir::DecoderLayout;
    let expect = [
        ("vit_gpt2_merged", ModelLayout::VisionEncoderDecoder(DecoderLayout::Merged)),
        ("vit_gpt2_split", ModelLayout::VisionEncoderDecoder(DecoderLayout::Split)),
        ("vit_gpt2_nocache", ModelLayout::VisionEncoderDecoder(DecoderLayout::NoCache)),
        ("blip", ModelLayout::Blip),
        ("blip_cross", ModelLayout::Blip),
        ("vit_gpt2_cross", ModelLayout::VisionEncoderDecoder(DecoderLayout::Merged)),
    ];
    for (name, layout) in expect {
        assert_eq!(ModelSpec::read(&fixture(name)).unwrap().layout, layout, "{name}");
    }
}

/// tools/export_vit_gpt2.py's layout: the ViT encoder also emits each GPT-2 layer's cross-attention
/// keys/values, and the merged decoder reads them (with attention_mask and position_ids) instead of
/// encoder_hidden_states; the tokens stay transformers'.
#[test]
fn vit_gpt2_with_cross_attention_cache_matches_transformers() {
    check_model("vit_gpt2_cross");
}
