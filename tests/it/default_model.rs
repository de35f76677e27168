//! The bundled default model (`models/default/`) through the real server: every bundled
//! test scene listed in the config's `quality` section gets its exact expected caption
//! (PNG and JPEG alike) and a perfect quality score; the noise image scores low. Its int4
//! copy (`tests/fixtures/default_int4`, written by `tools/quantize_export.py --int4`: 4-bit
//! MatMulNBits decoder, int8 encoder whose attention is one MultiHeadAttention node a layer)
//! does the same and says it is int4.

use crate::common;

use capwatch::config::Config;
use capwatch::quality::match_keywords;
use serde_json::Value;

use common::{TestServer, repo_path};

#[tokio::test]
async fn every_bundled_scene_gets_its_exact_caption() {
    let _machine = common::whole_machine();
    let config = Config::load(&repo_path("config/monitoring_config.yaml")).unwrap();
    assert_eq!(
        config.service.model_dir,
        std::path::Path::new("models/default"),
        "make run must serve the default model"
    );
    let server = TestServer::start(repo_path("models/default"), |_| {}).await;
    caption_every_scene(&server, &config).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_int4_copy_captions_every_scene_alike_and_says_it_is_int4() {
    let _machine = common::whole_machine();
    let config = Config::load(&repo_path("config/monitoring_config.yaml")).unwrap();
    let server = TestServer::start(repo_path("tests/fixtures/default_int4"), |_| {}).await;
    let client = reqwest::Client::new();
    let health: Value = client.get(server.endpoint("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["precision"], "int4", "{health}");
    let metrics = client.get(server.endpoint("/metrics")).send().await.unwrap().text().await.unwrap();
    let info = metrics.lines().find(|l| l.starts_with("capwatch_model_info{")).unwrap();
    assert!(info.contains("precision=\"int4\""), "{info}");
    caption_every_scene(&server, &config).await;
    server.stop().await.unwrap();
}

/// Every scene of the config's `quality` section gets its exact caption and a perfect
/// score; the noise image does not look like a perfect caption.
async fn caption_every_scene(server: &TestServer, config: &Config) {
    let images = &config.quality.test_images;
    assert!(images.len() >= 7, "expected 6-8 scenes plus a noise image, got {}", images.len());
    let client = reqwest::Client::new();
    let (mut scenes, mut formats) = (0, std::collections::BTreeSet::new());
    let mut noise_scores = Vec::new();
    for image in images {
        let path = repo_path(image.file.to_str().unwrap());
        let extension = path.extension().unwrap().to_str().unwrap().to_owned();
        let content_type = if extension == "png" { "image/png" } else { "image/jpeg" };
        let response = client
            .post(server.endpoint("/caption"))
            .header("content-type", content_type)
            .body(std::fs::read(&path).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", path.display());
        let body: Value = response.json().await.unwrap();
        let caption = body["caption"].as_str().unwrap();
        let score = match_keywords(caption, &image.keywords).score();
        match &image.expected_caption {
            Some(expected) => {
                assert_eq!(caption, expected, "{}", path.display());
                assert_eq!(score, 1.0, "{}: {caption}", path.display());
                scenes += 1;
                formats.insert(extension);
            }
            None => noise_scores.push((path.display().to_string(), caption.to_owned(), score)),
        }
    }
    assert!((6..=8).contains(&scenes), "{scenes} scenes");
    assert!(formats.contains("png") && formats.contains("jpg"), "{formats:?}");
    assert!(!noise_scores.is_empty(), "no non-scene image in the quality section");
    for (path, caption, score) in noise_scores {
        assert!(score < 1.0, "{path}: the noise image should not look like a perfect caption ({caption}, {score})");
    }
}
