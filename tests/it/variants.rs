//! Several model variants in one server: explicit choice, sticky and weighted
//! routing, shadow copies, per-model metrics and faults, on real HTTP with the bundled model.

use crate::common;

use std::time::Duration;

use capwatch::config::{ModelVariantConfig, ServiceConfig, ShadowConfig, Share, VariantName};
use common::{TestServer, png, repo_path};
use serde_json::{Value, json};

fn variant(name: &str, weight: Option<u32>) -> ModelVariantConfig {
    ModelVariantConfig {
        name: VariantName::try_from(name.to_owned()).unwrap(),
        dir: repo_path("models/default"),
        weight,
    }
}

async fn two_variants(tweak: impl FnOnce(&mut ServiceConfig)) -> TestServer {
    TestServer::start(repo_path("models/default"), |config| {
        config.models = vec![variant("a", None), variant("b", None)];
        tweak(config);
    })
    .await
}

async fn caption(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let request = reqwest::Client::new()
        .post(format!("{}/caption{query}", server.url))
        .header("content-type", "image/png")
        .body(png(24, 24));
    headers.iter().fold(request, |request, (name, value)| request.header(*name, *value)).send().await.unwrap()
}

async fn answered_by(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> String {
    let response = caption(server, query, headers).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["model"].as_str().unwrap().to_owned()
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    reqwest::get(server.endpoint(path)).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn requests_choose_a_variant_by_name_key_or_weight() {
    let server = two_variants(|_| {}).await;
    assert_eq!(answered_by(&server, "?model=b", &[]).await, "b");
    assert_eq!(answered_by(&server, "", &[("x-capwatch-model", "a")]).await, "a");
    assert_eq!(answered_by(&server, "?model=b", &[("x-capwatch-model", "a")]).await, "b", "the query wins");

    let unknown = caption(&server, "?model=c", &[]).await;
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error_type"], "unknown_model");
    assert!(body["error"].as_str().unwrap().contains("a, b"), "{body}");

    let sticky = answered_by(&server, "", &[("x-capwatch-key", "user-7")]).await;
    for _ in 0..5 {
        assert_eq!(answered_by(&server, "", &[("x-capwatch-key", "user-7")]).await, sticky);
    }
    // Equal weights: 30 routed requests all on one variant would happen once in 2^29.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        seen.insert(answered_by(&server, "", &[]).await);
    }
    assert_eq!(seen.len(), 2, "both variants get routed traffic: {seen:?}");

    let health = get_json(&server, "/health").await;
    assert_eq!(health["model"], "a, b");
    let models = health["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert!(models.iter().all(|m| m["ready"] == true && m["weight"] == 1), "{health}");

    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    for expected in [
        "capwatch_caption_requests_total{model=\"a\",status=\"200\"}",
        "capwatch_caption_requests_total{model=\"b\",status=\"200\"}",
        "capwatch_inference_stage_duration_seconds_count{model=\"b\",stage=\"total\"}",
        "capwatch_generated_tokens_total{model=\"a\"}",
        "capwatch_workers_alive{model=\"b\"} 1",
        "capwatch_model_info{model=\"a\",",
        "capwatch_model_info{model=\"b\",",
    ] {
        assert!(metrics.contains(expected), "missing `{expected}` in:\n{metrics}");
    }
    // An unknown name is nobody's request.
    assert!(!metrics.contains("model=\"c\""), "{metrics}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_shadow_gets_copies_of_routed_requests_and_reports_agreement() {
    let server = two_variants(|config| {
        config.shadow = Some(ShadowConfig::new(VariantName::try_from("b".to_owned()).unwrap(), Share(1.0)));
    })
    .await;
    // The shadow's weight defaults to 0: routed requests all go to a, and each is copied to b.
    for _ in 0..6 {
        assert_eq!(answered_by(&server, "", &[]).await, "a");
    }
    // Named requests are their own experiment: no copy.
    assert_eq!(answered_by(&server, "?model=a", &[]).await, "a");
    let mut shadow = Value::Null;
    for _ in 0..100 {
        shadow = get_json(&server, "/health").await["shadow"].clone();
        if shadow["agreed"].as_u64().unwrap_or(0) + shadow["differed"].as_u64().unwrap_or(0) >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same model on both sides: every copy agrees.
    assert_eq!(shadow["model"], "b");
    // The multi-model health answer matches the published schema.
    let mut document = get_json(&server, "/openapi.json").await;
    document["$ref"] = Value::String("#/components/schemas/HealthResponse".to_owned());
    let validator = jsonschema::validator_for(&document).unwrap();
    let health = get_json(&server, "/health").await;
    let errors: Vec<String> = validator.iter_errors(&health).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{health}");
    assert_eq!((shadow["agreed"].as_u64(), shadow["differed"].as_u64()), (Some(6), Some(0)), "{shadow}");
    assert_eq!(shadow["agreement"], 1.0);
    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("capwatch_shadow_requests_total{model=\"b\",outcome=\"agreed\"} 6"), "{metrics}");
    assert!(
        metrics.contains("capwatch_inference_stage_duration_seconds_count{model=\"b\",stage=\"total\"} 6"),
        "the shadow's own captions are timed under its name:\n{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_shadow_queue_drops_copies_and_never_fails_an_answer() {
    let server = two_variants(|config| {
        let mut shadow = ShadowConfig::new(VariantName::try_from("b".to_owned()).unwrap(), Share(1.0));
        shadow.queue_capacity = std::num::NonZeroUsize::MIN;
        config.shadow = Some(shadow);
    })
    .await;
    let answers =
        futures::future::join_all((0..16).map(|_| async { caption(&server, "", &[]).await.status().as_u16() })).await;
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");
    let mut shadow = Value::Null;
    for _ in 0..100 {
        shadow = get_json(&server, "/health").await["shadow"].clone();
        let counted: u64 =
            ["agreed", "differed", "failed", "dropped"].iter().map(|k| shadow[k].as_u64().unwrap_or(0)).sum();
        if counted == 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = shadow["dropped"].as_u64().unwrap();
    assert!(dropped >= 1, "16 answers at once and room for one copy: some are dropped: {shadow}");
    assert_eq!(shadow["agreed"].as_u64().unwrap() + dropped, 16, "{shadow}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_fault_can_target_one_variant() {
    let server = two_variants(|config| config.chaos = true).await;
    let client = reqwest::Client::new();
    let fault = json!({"kind": "errors", "model": "b", "status": 503});
    let injected = client.post(server.endpoint("/chaos")).json(&fault).send().await.unwrap();
    assert_eq!(injected.status(), 201);
    assert_eq!(caption(&server, "?model=a", &[]).await.status(), 200);
    assert_eq!(caption(&server, "?model=b", &[]).await.status(), 503);
    let faults = get_json(&server, "/chaos").await;
    assert_eq!((faults["faults"][0]["model"].as_str(), faults["faults"][0]["hits"].as_u64()), (Some("b"), Some(1)));
    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("capwatch_caption_requests_total{model=\"b\",status=\"503\"} 1"), "{metrics}");

    let unknown = client.post(server.endpoint("/chaos")).json(&json!({"kind": "errors", "model": "z"})).send().await;
    let unknown = unknown.unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error_type"], "unknown_model");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn variants_that_do_not_fit_together_stop_the_server_with_the_key() {
    let mut config = ServiceConfig { port: 0, ..ServiceConfig::default() };
    config.models = vec![variant("a", Some(0)), variant("b", Some(0))];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = capwatch::server::run(config, listener, std::future::pending()).await.unwrap_err().to_string();
    assert!(error.contains("service.models") && error.contains("every weight is 0"), "{error}");
}
