//! `capwatch monitor --url` against captioning services that are not capwatch: small
//! in-test HTTP servers in the shapes of the presets (the original FastAPI design, a
//! Hugging Face inference server with a bearer token), and the wrong preset for each, which
//! must end in one clear error rather than an alert storm.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Multipart, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use common::repo_path;

const CAPTION: &str = "a small yellow square";
const TOKEN: &str = "hf_test_token_4711";

/// Serves `app` on 127.0.0.1:0 for the rest of the test; returns its URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The original Python design: `{"status", "uptime_s"}` health, multipart `file` captions.
async fn fastapi_shape() -> String {
    async fn caption(headers: HeaderMap, request: Request) -> Response {
        use axum::extract::FromRequest;
        let multipart = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"multipart/"));
        if !multipart {
            return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"detail": "file: field required"})))
                .into_response();
        }
        let mut form = Multipart::from_request(request, &()).await.unwrap();
        while let Some(field) = form.next_field().await.unwrap() {
            if field.name() == Some("file") && !field.bytes().await.unwrap().is_empty() {
                return axum::Json(json!({"caption": CAPTION, "inference_time_ms": 12.5})).into_response();
            }
        }
        (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"detail": "file: field required"}))).into_response()
    }
    let app = Router::new()
        .route("/health", get(|| async { axum::Json(json!({"status": "healthy", "uptime_s": 12.0})) }))
        .route("/caption", post(caption));
    serve(app).await
}

/// A Hugging Face inference server: plain-text health, raw image to `POST /`, answer
/// `[{"generated_text"}]`, and a bearer token required.
async fn hf_shape() -> String {
    async fn predict(headers: HeaderMap, body: axum::body::Bytes) -> Response {
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
            return (StatusCode::UNAUTHORIZED, "bad token").into_response();
        }
        if body.is_empty() {
            return (StatusCode::BAD_REQUEST, "no image").into_response();
        }
        axum::Json(json!([{"generated_text": CAPTION}])).into_response()
    }
    let app = Router::new().route("/health", get(|| async { "OK" })).route("/", post(predict));
    serve(app).await
}

/// A config in a scratch directory: one test image, fast probing, and `service` as the
/// `monitoring.service` section (YAML lines, already indented).
fn config(name: &str, service: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("capwatch-foreign-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "monitoring:\n  health_interval_s: 0.3\n  inference_interval_s: 0.3\n  tests_per_cycle: 2\n{service}\
         quality:\n  test_images:\n    - file: test_images/a_small_yellow_square.png\n      keywords: [small, yellow, square]\n\
         logs:\n  dir: {}\n",
        dir.join("logs").display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `capwatch monitor --url URL --headless --cycles 2 ARGS`, run off the async runtime.
async fn monitor(
    url: &str,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capwatch"));
    command.args(["monitor", "--url", url, "--headless", "--cycles", "2", "--config"]).arg(config).args(args);
    command.envs(env.iter().copied()).current_dir(repo_path(""));
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr), started.elapsed())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_the_original_fastapi_design_with_its_preset() {
    let url = fastapi_shape().await;
    let (dir, config) = config("fastapi", "");
    let (code, stdout, stderr, _) = monitor(&url, &config, &["--service-preset", "fastapi"], &[]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("✅ Test 2/2: ") && stdout.contains(&format!("\"{CAPTION}\" quality 1.00")), "{stdout}");
    assert!(!stdout.contains("Health check failed") && !stdout.contains("ALERT"), "{stdout}");
    assert_eq!(common::session_summary(&dir.join("logs"))["last_status"], "healthy");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_a_hugging_face_server_with_a_token_from_the_environment() {
    let url = hf_shape().await;
    let service = "  service:\n    preset: hf-inference\n    headers:\n      - name: Authorization\n        env: T_HF_TOKEN\n        prefix: \"Bearer \"\n";
    let (dir, config) = config("hf", service);
    let (code, stdout, stderr, _) = monitor(&url, &config, &[], &[("T_HF_TOKEN", TOKEN)]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("\"{CAPTION}\" quality 1.00")), "{stdout}");
    // The token is in no output and no file the monitor wrote.
    let mut written = stdout.clone() + &stderr;
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        written.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(!written.contains(TOKEN));

    // Without the variable: a config error naming the key, before anything runs.
    let (code, _, stderr, _) = monitor(&url, &config, &[], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("monitoring.service.headers[0].env: environment variable T_HF_TOKEN is not set"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_preset_is_one_clear_error_not_an_alert_storm() {
    let fastapi = fastapi_shape().await;
    let hf = hf_shape().await;
    let token = [("T_HF_TOKEN", TOKEN)];
    let headers = "    headers:\n      - name: Authorization\n        env: T_HF_TOKEN\n        prefix: \"Bearer \"\n";
    let cases = [
        // capwatch's raw body to a server that wants a multipart form: 422.
        (fastapi.clone(), String::new(), vec![], "`capwatch` shape: the caption request was answered with HTTP 422"),
        // The right endpoint, an answer of another shape: no caption where the preset looks.
        (
            hf.clone(),
            format!("  service:\n    caption_path: /\n{headers}"),
            vec![],
            "`capwatch + overrides` shape: no caption (a string) at /caption in [{\"generated_text\"",
        ),
        // A path the server does not have.
        (
            hf,
            format!("  service:\n    preset: fastapi\n{headers}"),
            vec![],
            "`fastapi` shape: the caption request was answered with HTTP 404",
        ),
    ];
    for (index, (url, service, args, expected)) in cases.into_iter().enumerate() {
        let args: Vec<&str> = args;
        let (dir, config) = config(&format!("wrong-{index}"), &service);
        let (code, stdout, stderr, took) = monitor(&url, &config, &args, &token).await;
        assert_eq!(code, Some(2), "case {index}: {stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!("error: ⛔ The service does not answer in the {expected}")),
            "case {index}: {stderr}"
        );
        assert_eq!(stdout.matches("⛔ The service does not answer").count(), 1, "case {index}: {stdout}");
        assert!(!stdout.contains("ALERT"), "case {index}: an alert storm:\n{stdout}");
        assert!(took < Duration::from_secs(30), "case {index}: took {took:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
