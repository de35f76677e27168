//! Mutation fuzzing, bounded in time: images, multipart bodies and config files, mangled by
//! bit flips, truncation, splices and huge dimensions in their headers, must never panic and
//! must always end in a documented error (or a valid result).
//!
//! proptest drives the mutations from a fixed seed per run (`PROPTEST_RNG_SEED` may change
//! it); a failure prints the shrunk case to reproduce.

use crate::common;

use std::path::Path;

use capwatch::config::{Config, ConfigError};
use capwatch::engine::EngineError;
use capwatch::engine::preprocess::{DecodeLimits, decode_image};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};

use common::{TestServer, fixture, repo_path};

/// How a seed input is mangled.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip these bits (positions taken modulo the length).
    FlipBits(Vec<usize>),
    /// Keep this share (per mille) of the bytes.
    Truncate(u16),
    /// This share of the first input, then the rest of a second one from the same share on.
    Splice { other: usize, at_per_mille: u16 },
    /// Overwrite 4 bytes at this position (modulo the length) with a huge big-endian number.
    Huge { at: usize, value: u32 },
}

fn mutation(seeds: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec(any::<usize>(), 1..8).prop_map(Mutation::FlipBits),
        (0u16..1000).prop_map(Mutation::Truncate),
        (0..seeds, 0u16..1000).prop_map(|(other, at_per_mille)| Mutation::Splice { other, at_per_mille }),
        (any::<usize>(), prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), Just(65_535), Just(0), 1u32..100_000])
            .prop_map(|(at, value)| Mutation::Huge { at, value }),
    ]
}

fn apply(input: &[u8], others: &[Vec<u8>], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            Mutation::FlipBits(bits) => {
                for bit in bits {
                    let bit = bit % (bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate(per_mille) => bytes.truncate(bytes.len() * usize::from(*per_mille) / 1000),
            Mutation::Splice { other, at_per_mille } => {
                let other = &others[other % others.len()];
                let at = |len: usize| len * usize::from(*at_per_mille) / 1000;
                bytes.truncate(at(bytes.len()));
                bytes.extend_from_slice(&other[at(other.len())..]);
            }
            Mutation::Huge { at, value } => {
                let at = at % bytes.len();
                for (i, byte) in value.to_be_bytes().iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *byte;
                    }
                }
            }
        }
    }
    bytes
}

/// Small valid images of every accepted format, plus a PNG whose header claims 60000² pixels
/// (its CRC fixed, so only the size check can refuse it).
fn seed_images() -> Vec<Vec<u8>> {
    let picture = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(23, 17, |x, y| {
        image::Rgb([(x * 11) as u8, (y * 15) as u8, ((x + y) * 5) as u8])
    }));
    let mut seeds: Vec<Vec<u8>> = [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
        image::ImageFormat::WebP,
    ]
    .into_iter()
    .map(|format| common::encode(&picture, format))
    .collect();
    let mut huge = seeds[0].clone();
    huge[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let crc = crc32fast::hash(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    seeds.push(huge);
    seeds
}

fn runner(cases: u32) -> TestRunner {
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

#[test]
fn mangled_images_decode_or_get_a_documented_error() {
    let seeds = seed_images();
    let limits = DecodeLimits { max_pixels: 4_000_000 };
    assert!(matches!(decode_image(&seeds[6], limits), Err(EngineError::ImageTooLarge { .. })));
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(seeds.len()), 1..4));
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<&str, usize>::new());
    runner(3000)
        .run(&strategy, |(seed, mutations)| {
            let bytes = apply(&seeds[seed], &seeds, &mutations);
            let outcome = match decode_image(&bytes, limits) {
                Ok(rgb) => {
                    prop_assert!(rgb.width() as usize * rgb.height() as usize <= limits.max_pixels);
                    "decoded"
                }
                Err(EngineError::EmptyImage) => "empty",
                Err(EngineError::UnsupportedImageFormat) => "unsupported",
                Err(EngineError::InvalidImage(_)) => "invalid",
                Err(EngineError::ImageTooLarge { .. }) => "too large",
                Err(other) => {
                    prop_assert!(false, "undocumented error {other:?}");
                    unreachable!()
                }
            };
            *seen.lock().unwrap().entry(outcome).or_default() += 1;
            Ok(())
        })
        .unwrap();
    // The mutations reached every outcome (else they would test less than they claim).
    let seen = seen.into_inner().unwrap();
    for outcome in ["decoded", "unsupported", "invalid", "too large"] {
        assert!(seen.get(outcome).is_some_and(|n| *n > 10), "{outcome}: {seen:?}");
    }
}

#[test]
fn mangled_config_files_load_or_name_a_line() {
    let shipped = std::fs::read(repo_path("config/monitoring_config.yaml")).unwrap();
    let seeds = vec![shipped.clone(), b"service:\n  port: 8000\nthresholds:\n  min_samples: 5\n".to_vec()];
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(seeds.len()), 1..4));
    let refused = std::sync::atomic::AtomicUsize::new(0);
    runner(3000)
        .run(&strategy, |(seed, mutations)| {
            let bytes = apply(&seeds[seed], &seeds, &mutations);
            let text = String::from_utf8_lossy(&bytes);
            match Config::parse(&text, Path::new("fuzzed.yaml")) {
                Ok(_) => {}
                Err(ConfigError::Invalid { line, message, .. }) => {
                    prop_assert!(line >= 1, "no line: {message}");
                    prop_assert!(!message.is_empty());
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(other) => prop_assert!(false, "undocumented error {other}"),
            }
            Ok(())
        })
        .unwrap();
    assert!(refused.into_inner() > 300, "the mutations rarely broke the file");
}

/// A valid multipart body with the image and a `max_new_tokens` field.
fn multipart_body(boundary: &str, image: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"max_new_tokens\"\r\n\r\n3\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn mangled_multipart_requests_get_a_json_4xx_or_a_caption() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(TestServer::start(fixture("vit_gpt2_merged"), |_| {}));
    let client = reqwest::Client::new();
    let boundary = "capwatchFuzzBoundary7";
    let image = std::fs::read(fixture("images/small_27x35.png")).unwrap();
    let seeds = vec![multipart_body(boundary, &image), multipart_body(boundary, b"not an image at all")];
    let documented = [
        "missing_file",
        "invalid_multipart",
        "invalid_parameter",
        "invalid_image",
        "unsupported_image_format",
        "empty_image",
        "image_too_large",
        "payload_too_large",
        "body_read_error",
    ];
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(seeds.len()), 1..3));
    let statuses = std::sync::Mutex::new(std::collections::BTreeSet::new());
    runner(400)
        .run(&strategy, |(seed, mutations)| {
            let body = apply(&seeds[seed], &seeds, &mutations);
            let (status, answer) = runtime.block_on(async {
                let response = client
                    .post(server.endpoint("/caption"))
                    .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.json::<serde_json::Value>().await.unwrap())
            });
            statuses.lock().unwrap().insert(status);
            if status == 200 {
                prop_assert!(answer["caption"].is_string(), "{answer}");
            } else {
                prop_assert!((400..500).contains(&status), "status {status}: {answer}");
                let kind = answer["error_type"].as_str().unwrap_or_default();
                prop_assert!(documented.contains(&kind), "status {status}, undocumented {answer}");
            }
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner().unwrap();
    assert!(statuses.contains(&200) && statuses.contains(&400) && statuses.len() >= 3, "{statuses:?}");
    // Still serving.
    let ok = runtime
        .block_on(client.post(server.endpoint("/caption")).header("content-type", "image/png").body(image).send());
    assert_eq!(ok.unwrap().status(), 200);
    runtime.block_on(server.stop()).unwrap();
}
