//! The HTTP API against a real server (127.0.0.1:0) and the real ONNX model: every
//! endpoint, every kind of bad input (each answered with the right 4xx JSON error while the
//! server keeps serving), the queue limit, metrics, and the OpenAPI document.

use crate::common;

use std::num::NonZeroUsize;

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use common::{TestServer, encode, fixture, png};

const MODEL: &str = "vit_gpt2_merged";

async fn server() -> TestServer {
    TestServer::start(fixture(MODEL), |_| {}).await
}

async fn post_raw(server: &TestServer, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.endpoint("/caption"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn post_file(server: &TestServer, bytes: Vec<u8>, file_name: &str) -> reqwest::Response {
    let form = Form::new().part("file", Part::bytes(bytes).file_name(file_name.to_owned()));
    reqwest::Client::new().post(server.endpoint("/caption")).multipart(form).send().await.unwrap()
}

/// Asserts a JSON error with the given status and `error_type`.
async fn assert_error(response: reqwest::Response, status: u16, error_type: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status for {error_type}");
    assert!(
        response.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
        "{error_type}: error must be JSON"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], error_type, "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty(), "{body}");
    body
}

async fn assert_caption(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    let timing = response.headers().get("server-timing").expect("Server-Timing header").to_str().unwrap().to_owned();
    for stage in ["queue", "decode", "preprocess", "encoder", "decoder", "total"] {
        assert!(timing.contains(&format!("{stage};dur=")), "{timing}");
    }
    let body: Value = response.json().await.unwrap();
    assert!(body["caption"].is_string(), "{body}");
    assert!(!body["model"].as_str().unwrap().is_empty(), "{body}");
    assert!(body["tokens"].as_u64().unwrap() >= 1);
    let t = &body["timings_ms"];
    let parts: f64 =
        ["queue", "decode", "preprocess", "encoder", "decoder"].iter().map(|k| t[k].as_f64().unwrap()).sum();
    let total = t["total"].as_f64().unwrap();
    assert!((parts - total).abs() < 0.01, "stages {parts} vs total {total}");
    body
}

fn reference_model() -> Value {
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap();
    reference["models"][MODEL].clone()
}

#[tokio::test]
async fn captions_multipart_and_raw_bodies_with_the_reference_text() {
    let server = server().await;
    let model = reference_model();
    let max_new_tokens = model["generate_kwargs"]["max_new_tokens"].as_u64().unwrap();
    let client = reqwest::Client::new();
    let mut compared = 0;
    for case in model["cases"].as_array().unwrap() {
        let image = case["image"].as_str().unwrap();
        // JPEG decoders differ by a level or two (see tests/it/parity.rs); compare lossless inputs.
        if !image.ends_with(".png") {
            continue;
        }
        let bytes = std::fs::read(fixture(&format!("images/{image}"))).unwrap();
        let form = Form::new()
            .part("file", Part::bytes(bytes.clone()).file_name(image.to_owned()))
            .text("max_new_tokens", max_new_tokens.to_string());
        let by_file =
            assert_caption(client.post(server.endpoint("/caption")).multipart(form).send().await.unwrap()).await;
        assert_eq!(by_file["model"], MODEL);
        assert_eq!(by_file["caption"], case["text"], "{image}");
        assert_eq!(
            by_file["tokens"].as_u64().unwrap() as usize,
            case["generated_ids"].as_array().unwrap().len(),
            "{image}"
        );
        let by_body = client
            .post(server.endpoint(&format!("/caption?max_new_tokens={max_new_tokens}")))
            .header("content-type", "image/png")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(assert_caption(by_body).await["caption"], case["text"], "{image}");
        compared += 1;
    }
    assert!(compared >= 3);
    let jpeg = std::fs::read(fixture("images/stripes_50x70.jpg")).unwrap();
    assert_caption(post_raw(&server, "image/jpeg", jpeg).await).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn max_new_tokens_is_honoured_and_validated() {
    let server = server().await;
    let client = reqwest::Client::new();
    // An image that never stops early (see reference.json), so the bound is what ends it.
    let model = reference_model();
    let long_case = model["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stopped_on_stop_token"] == false && c["image"].as_str().unwrap().ends_with(".png"))
        .unwrap();
    let image = std::fs::read(fixture(&format!("images/{}", long_case["image"].as_str().unwrap()))).unwrap();
    let response = client
        .post(server.endpoint("/caption?max_new_tokens=3"))
        .header("content-type", "image/png")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(assert_caption(response).await["tokens"], 3);
    let form = Form::new().part("file", Part::bytes(image.clone()).file_name("g.png")).text("max_new_tokens", "2");
    let response = client.post(server.endpoint("/caption")).multipart(form).send().await.unwrap();
    assert_eq!(assert_caption(response).await["tokens"], 2);
    for bad in ["0", "100000", "abc", "-1"] {
        let response = client
            .post(server.endpoint(&format!("/caption?max_new_tokens={bad}")))
            .header("content-type", "image/png")
            .body(image.clone())
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_parameter").await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_inputs_get_clear_errors_and_the_server_keeps_serving() {
    let server = TestServer::start(fixture(MODEL), |c| c.max_body_bytes = NonZeroUsize::new(256 * 1024).unwrap()).await;
    let good = png(40, 30);

    assert_error(post_raw(&server, "image/png", Vec::new()).await, 400, "empty_image").await;
    assert_error(
        post_raw(&server, "image/png", b"this is not an image at all".to_vec()).await,
        415,
        "unsupported_image_format",
    )
    .await;
    let jpeg = encode(
        &image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(64, 64, image::Rgb([200, 10, 10]))),
        image::ImageFormat::Jpeg,
    );
    assert_error(post_raw(&server, "image/jpeg", jpeg[..jpeg.len() / 2].to_vec()).await, 422, "invalid_image").await;
    let body =
        assert_error(post_raw(&server, "image/png", bomb_png(50_000, 50_000)).await, 422, "image_too_large").await;
    assert!(body["error"].as_str().unwrap().contains("50000x50000"), "{body}");
    let oversized = vec![0u8; 300 * 1024];
    assert_error(post_raw(&server, "image/png", oversized.clone()).await, 413, "payload_too_large").await;
    assert_error(post_file(&server, oversized, "big.png").await, 413, "payload_too_large").await;
    assert_error(post_raw(&server, "text/plain", good.clone()).await, 415, "unsupported_media_type").await;
    let no_type = reqwest::Client::new().post(server.endpoint("/caption")).body(good.clone()).send().await.unwrap();
    assert_error(no_type, 415, "unsupported_media_type").await;
    let form = Form::new().text("image", "nope");
    let response = reqwest::Client::new().post(server.endpoint("/caption")).multipart(form).send().await.unwrap();
    assert_error(response, 400, "missing_file").await;
    let broken = reqwest::Client::new()
        .post(server.endpoint("/caption"))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc")
        .send()
        .await
        .unwrap();
    assert!(broken.status() == 400 || broken.status() == 415 || broken.status() == 422, "{}", broken.status());
    let missing = reqwest::Client::new().get(server.endpoint("/nope")).send().await.unwrap();
    assert_error(missing, 404, "not_found").await;

    // Still serving, and still healthy.
    assert_caption(post_raw(&server, "image/png", good).await).await;
    let health = reqwest::Client::new().get(server.endpoint("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await.unwrap();
}

/// Requests that arrive together are captioned as one batch: each gets exactly the caption it
/// gets alone, a bad image in the burst gets its own 4xx, and the batch shows in the answers.
/// `num_beams` (query or multipart field) searches beams as `generate(num_beams=N)` does,
/// also while greedy requests and other beam searches run beside it; it is bounded by
/// `max_num_beams`.
#[tokio::test]
async fn beam_search_requests_get_transformers_captions() {
    let server = TestServer::start(fixture(MODEL), |c| {
        c.max_batch_size = NonZeroUsize::new(8).unwrap();
        c.batch_wait_ms = 200;
        c.max_num_beams = NonZeroUsize::new(4).unwrap();
    })
    .await;
    let model = reference_model();
    let max_new_tokens = model["generate_kwargs"]["max_new_tokens"].as_u64().unwrap();
    let client = reqwest::Client::new();
    // (image bytes, num_beams, expected text) for the lossless images' plain beam references.
    let mut requests = Vec::new();
    for case in model["cases"].as_array().unwrap() {
        let image = case["image"].as_str().unwrap();
        if !image.ends_with(".png") {
            continue;
        }
        let bytes = std::fs::read(fixture(&format!("images/{image}"))).unwrap();
        requests.push((bytes.clone(), 1, case["text"].as_str().unwrap().to_owned()));
        for beam in case["beams"].as_array().unwrap() {
            if beam["length_penalty"] == 1.0 && beam["early_stopping"] == false {
                let n = beam["num_beams"].as_u64().unwrap();
                requests.push((bytes.clone(), n, beam["text"].as_str().unwrap().to_owned()));
            }
        }
    }
    assert!(requests.iter().any(|(_, n, _)| *n == 4) && requests.iter().any(|(_, n, _)| *n == 2));
    let send = |bytes: Vec<u8>, num_beams: u64| {
        client
            .post(server.endpoint(&format!("/caption?max_new_tokens={max_new_tokens}&num_beams={num_beams}")))
            .header("content-type", "image/png")
            .body(bytes)
            .send()
    };
    for (bytes, num_beams, text) in &requests {
        let body = assert_caption(send(bytes.clone(), *num_beams).await.unwrap()).await;
        assert_eq!(body["caption"], text.as_str(), "num_beams {num_beams}");
        assert_eq!(body["num_beams"], *num_beams);
    }
    // All at once: greedy and beam requests share the workers.
    let burst: Vec<_> = requests.iter().map(|(bytes, n, _)| send(bytes.clone(), *n)).collect();
    for (response, (_, num_beams, text)) in futures::future::join_all(burst).await.into_iter().zip(&requests) {
        let body = assert_caption(response.unwrap()).await;
        assert_eq!(body["caption"], text.as_str(), "num_beams {num_beams} in a burst");
    }
    // The multipart field, and the bounds.
    let (bytes, _, _) = &requests[0];
    let form = Form::new().part("file", Part::bytes(bytes.clone()).file_name("a.png")).text("num_beams", "3");
    let body = assert_caption(client.post(server.endpoint("/caption")).multipart(form).send().await.unwrap()).await;
    assert_eq!(body["num_beams"], 3);
    for bad in ["0", "5", "x"] {
        let response = client
            .post(server.endpoint(&format!("/caption?num_beams={bad}")))
            .header("content-type", "image/png")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        let error = assert_error(response, 400, "invalid_parameter").await;
        if bad == "5" {
            assert!(error["error"].as_str().unwrap().contains("between 1 and 4"), "{error}");
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_share_a_batch_and_get_the_captions_they_get_alone() {
    let _machine = common::whole_machine();
    // Optimum's merged layout (batches fill when they start) and the cross-cache layouts
    // (requests also join batches that are decoding).
    for model in [MODEL, "vit_gpt2_cross", "blip_cross"] {
        burst_gets_the_captions_of_lone_requests(model).await;
    }
}

async fn burst_gets_the_captions_of_lone_requests(model: &str) {
    let server = TestServer::start(fixture(model), |c| {
        c.max_batch_size = NonZeroUsize::new(8).unwrap();
        c.batch_wait_ms = 300;
    })
    .await;
    let mut images: Vec<Vec<u8>> = ["shapes_64x48.png", "gray_72x40.png", "small_27x35.png", "stripes_50x70.jpg"]
        .iter()
        .map(|name| std::fs::read(fixture(&format!("images/{name}"))).unwrap())
        .collect();
    images.push(png(40, 30));
    images.push(png(90, 20));
    let client = reqwest::Client::new();
    let send = |body: Vec<u8>, max_new_tokens: Option<usize>| {
        let url = match max_new_tokens {
            Some(n) => server.endpoint(&format!("/caption?max_new_tokens={n}")),
            None => server.endpoint("/caption"),
        };
        client.post(url).header("content-type", "image/png").body(body).send()
    };
    let mut alone = Vec::new();
    for image in &images {
        let body = assert_caption(send(image.clone(), None).await.unwrap()).await;
        assert_eq!(body["model"], model);
        assert_eq!(body["batch_size"], 1, "a lone request is a batch of one: {body}");
        alone.push(body);
    }
    let short_alone = assert_caption(send(images[0].clone(), Some(1)).await.unwrap()).await;

    // The burst: every image, one with a limit of 1 token, and one broken image.
    let mut burst: Vec<_> = images.iter().map(|image| send(image.clone(), None)).collect();
    burst.push(send(images[0].clone(), Some(1)));
    burst.push(send(b"\x89PNG\r\n\x1a\n broken".to_vec(), None));
    let responses = futures::future::join_all(burst).await;
    let mut largest_batch = 0;
    for (index, response) in responses.into_iter().enumerate() {
        let response = response.unwrap();
        if index == images.len() + 1 {
            assert_error(response, 422, "invalid_image").await;
            continue;
        }
        let body = assert_caption(response).await;
        let expected = if index == images.len() { &short_alone } else { &alone[index] };
        assert_eq!(body["caption"], expected["caption"], "{model}: request {index}");
        assert_eq!(body["tokens"], expected["tokens"], "{model}: request {index}");
        largest_batch = largest_batch.max(body["batch_size"].as_u64().unwrap());
    }
    assert!(largest_batch >= 2, "{model}: the burst was never batched (largest batch {largest_batch})");
    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("capwatch_batch_size_bucket"), "{metrics}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unusual_but_valid_images_get_captions() {
    let server = server().await;
    let tiny = encode(
        &image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([9, 99, 199]))),
        image::ImageFormat::Png,
    );
    let gray = encode(
        &image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(50, 40, |x, _| image::Luma([(x * 5) as u8]))),
        image::ImageFormat::Png,
    );
    let alpha = encode(
        &image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(30, 30, |x, y| {
            image::Rgba([x as u8 * 8, y as u8 * 8, 90, (x * y) as u8])
        })),
        image::ImageFormat::Png,
    );
    let deep = encode(
        &image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(20, 24, |x, y| {
            image::Rgb([x as u16 * 3000, y as u16 * 2500, 40_000])
        })),
        image::ImageFormat::Png,
    );
    let gray_alpha16 = encode(
        &image::DynamicImage::ImageLumaA16(image::ImageBuffer::from_fn(16, 16, |x, _| {
            image::LumaA([x as u16 * 4000, 65535])
        })),
        image::ImageFormat::Png,
    );
    let cases = [
        ("1x1 png", "image/png", tiny),
        ("grayscale png", "image/png", gray),
        ("rgba png", "image/png", alpha),
        ("16-bit png", "image/png", deep),
        ("16-bit gray+alpha png", "image/png", gray_alpha16),
        ("cmyk jpeg", "image/jpeg", cmyk_jpeg()),
        ("animated gif", "image/gif", animated_gif()),
        (
            "webp",
            "image/webp",
            encode(
                &image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 20, image::Rgb([1, 2, 3]))),
                image::ImageFormat::WebP,
            ),
        ),
        (
            "bmp",
            "image/bmp",
            encode(
                &image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 20, image::Rgb([1, 2, 3]))),
                image::ImageFormat::Bmp,
            ),
        ),
    ];
    for (label, content_type, bytes) in cases {
        let response = post_raw(&server, content_type, bytes).await;
        assert_eq!(response.status(), 200, "{label}: {:?}", response.text().await);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn full_queue_answers_503_with_retry_after() {
    let _machine = common::whole_machine();
    // One worker, one waiting slot, and images that take a while to decode: most of a burst
    // of concurrent requests must be refused at once rather than queued without bound.
    let server = TestServer::start(fixture(MODEL), |c| {
        c.queue_capacity = NonZeroUsize::new(1).unwrap();
        c.max_body_bytes = NonZeroUsize::new(64 * 1024 * 1024).unwrap();
    })
    .await;
    let big = png(3000, 3000);
    let client = reqwest::Client::new();
    let requests = (0..12).map(|_| {
        let request = client.post(server.endpoint("/caption")).header("content-type", "image/png").body(big.clone());
        async move { request.send().await.unwrap() }
    });
    let responses = futures::future::join_all(requests).await;
    let mut served = 0;
    let mut refused = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => served += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                assert_error(response, 503, "overloaded").await;
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(served >= 1, "nothing was served");
    assert!(refused >= 1, "the queue never filled ({served} served)");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let server = server().await;
    let client = reqwest::Client::new();
    let health = client.get(server.endpoint("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model"], MODEL);
    assert_eq!(health["precision"], "fp32");
    assert_eq!(health["models"][0]["name"], MODEL);
    assert_eq!(health["models"][0]["ready"], true);
    assert_eq!(health["models"].as_array().unwrap().len(), 1);
    assert!(health.get("shadow").is_none(), "no shadow without one: {health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_s"].as_f64().unwrap() >= 0.0);
    let ready = client.get(server.endpoint("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    assert_caption(post_raw(&server, "image/png", png(32, 32)).await).await;
    assert_error(post_raw(&server, "image/png", Vec::new()).await, 400, "empty_image").await;
    let response = client.get(server.endpoint("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().contains("openmetrics-text"));
    let text = response.text().await.unwrap();
    for expected in [
        "capwatch_http_requests_total{route=\"/caption\",status=\"200\"} 1",
        "capwatch_http_requests_total{route=\"/caption\",status=\"400\"} 1",
        "capwatch_http_request_duration_seconds_bucket{le=",
        "capwatch_inference_stage_duration_seconds_count{model=\"vit_gpt2_merged\",stage=\"encoder\"} 1",
        "capwatch_inference_stage_duration_seconds_count{model=\"vit_gpt2_merged\",stage=\"total\"} 1",
        "capwatch_queue_depth{model=\"vit_gpt2_merged\"} 0",
        "capwatch_requests_in_flight 1",
        "capwatch_workers_alive{model=\"vit_gpt2_merged\"} 1",
        "capwatch_caption_requests_total{model=\"vit_gpt2_merged\",status=\"200\"} 1",
        "capwatch_caption_requests_total{model=\"vit_gpt2_merged\",status=\"400\"} 1",
        "capwatch_ready 1",
        "capwatch_model_info{model=\"vit_gpt2_merged\",layout=\"vision-encoder-decoder/merged\",precision=\"fp32\"",
        "capwatch_start_time_seconds ",
        "# EOF",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(text.contains("capwatch_generated_tokens_total{model=\"vit_gpt2_merged\"} "), "{text}");
    // Every sample line is `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line `{line}`");
        assert!(line.starts_with("capwatch_"), "unprefixed metric `{line}`");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn docs_page_is_self_contained() {
    let server = server().await;
    let response = reqwest::Client::new().get(server.endpoint("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the docs page must not load anything from the network"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn openapi_document_is_valid_and_matches_responses() {
    let server = server().await;
    let client = reqwest::Client::new();
    let document: Value = client.get(server.endpoint("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    for path in ["/caption", "/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        assert!(document["paths"][path].is_object(), "{path} is not documented");
    }
    // The parameters say what this server enforces: its variant names, its limits.
    let parameter = |name: &str| {
        document["paths"]["/caption"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    // One model: its variant is named after its directory.
    let name = std::path::Path::new(MODEL).file_name().unwrap().to_str().unwrap();
    assert_eq!(parameter("model")["enum"], serde_json::json!([name]));
    assert_eq!(parameter("X-Capwatch-Model")["enum"], serde_json::json!([name]));
    assert_eq!(parameter("max_new_tokens")["maximum"], 128);
    assert_eq!(parameter("num_beams")["maximum"], 8);
    // What the document rules out is refused; what it allows is answered.
    let named = format!("model={name}");
    for (query, status) in [("model=", 400), ("model=nope", 400), ("num_beams=9", 400), (named.as_str(), 200)] {
        let answer = client
            .post(format!("{}?{query}", server.endpoint("/caption")))
            .header("content-type", "image/png")
            .body(png(20, 20))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{query}: {}", answer.text().await.unwrap());
    }

    // The official validator (openapi-spec-validator, installed by `make setup`).
    let path = std::env::temp_dir().join(format!("capwatch-openapi-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&document).unwrap()).unwrap();
    let output =
        common::python().args(["-m", "openapi_spec_validator"]).arg(&path).output().expect("python3 must be installed");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "openapi-spec-validator rejected /openapi.json (run `make setup` if it is not installed):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Real responses validate against the documented schemas.
    let schema_for = |name: &str| {
        let mut root = document.clone();
        root["$ref"] = Value::String(format!("#/components/schemas/{name}"));
        jsonschema::validator_for(&root).unwrap()
    };
    let caption: Value = post_raw(&server, "image/png", png(20, 20)).await.json().await.unwrap();
    let health: Value = client.get(server.endpoint("/health")).send().await.unwrap().json().await.unwrap();
    let ready: Value = client.get(server.endpoint("/ready")).send().await.unwrap().json().await.unwrap();
    let error: Value = post_raw(&server, "image/png", Vec::new()).await.json().await.unwrap();
    for (name, instance) in
        [("CaptionResponse", caption), ("HealthResponse", health), ("ReadyResponse", ready), ("Error", error)]
    {
        let validator = schema_for(name);
        let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name} does not match its schema: {errors:?}\n{instance}");
    }
    server.stop().await.unwrap();
}

/// A tiny PNG whose header claims `width`×`height` pixels (a decompression bomb's shape:
/// valid chunks, a few bytes of compressed data, an enormous image once inflated).
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(bytes: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    }
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut bytes, b"IHDR", &header);
    // zlib stream of a few zero bytes.
    chunk(&mut bytes, b"IDAT", &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]);
    chunk(&mut bytes, b"IEND", &[]);
    bytes
}

fn cmyk_jpeg() -> Vec<u8> {
    let (width, height) = (24u16, 16u16);
    let pixels: Vec<u8> =
        (0..usize::from(width) * usize::from(height)).flat_map(|i| [(i % 255) as u8, 40, 200, 10]).collect();
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 90).encode(&pixels, width, height, jpeg_encoder::ColorType::Cmyk).unwrap();
    bytes
}

fn animated_gif() -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        encoder.set_repeat(image::codecs::gif::Repeat::Infinite).unwrap();
        let frames = (0..3)
            .map(|i| image::Frame::new(image::RgbaImage::from_pixel(20, 20, image::Rgba([i * 80, 100, 50, 255]))));
        encoder.encode_frames(frames).unwrap();
    }
    bytes
}
