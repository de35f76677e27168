//! API keys (`service.auth`) end to end: the real `capwatch serve` with keys from its
//! environment refuses protected routes without one (401, JSON, `WWW-Authenticate`), keeps
//! the open ones open, counts refusals in `/metrics` and never writes a key anywhere; the
//! dashboard probes the child it launched with a key, and `monitor --url` sends the one in
//! `CAPWATCH_API_KEY`.

use crate::common;

use std::process::Command;

use common::repo_path;

const KEYS_ENV: &str = "CAPWATCH_TEST_KEYS";
const OLD_KEY: &str = "old-key-7f3a9c";
const NEW_KEY: &str = "new-key-2b8e41";

/// A scratch folder with the shipped config, API keys on, fast probing.
fn config(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let auth = format!("port: 0\n  auth: {{keys_env: {KEYS_ENV}}}");
    common::monitor_config(
        &format!("auth-{name}"),
        &[
            ("port: 0", auth.as_str()),
            ("health_interval_s: 30", "health_interval_s: 0.3"),
            ("inference_interval_s: 10", "inference_interval_s: 0.3"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ],
    )
}

fn assert_no_key(what: &str, text: &str) {
    for key in [OLD_KEY, NEW_KEY] {
        assert!(!text.contains(key), "{what} shows an API key:\n{text}");
    }
}

#[tokio::test]
async fn protected_routes_need_a_key_open_routes_do_not_and_no_key_is_ever_written() {
    let (_dir, server_config) = config("serve");
    let keys = format!("{OLD_KEY}, {NEW_KEY}");
    let (_server, url, lines) = common::spawn_server_with(
        &repo_path("models/default"),
        &["--chaos", "--config", server_config.to_str().unwrap()],
        &[(KEYS_ENV, keys.as_str())],
    );
    let ready_url = url.clone();
    tokio::task::spawn_blocking(move || common::wait_ready(&ready_url)).await.unwrap();
    let client = reqwest::Client::new();
    let image = std::fs::read(repo_path("test_images/a_small_yellow_square.png")).unwrap();
    let caption = |key: Option<&str>| {
        let request = client.post(format!("{url}/caption")).header("content-type", "image/png").body(image.clone());
        match key {
            Some(key) => request.header("authorization", format!("Bearer {key}")),
            None => request,
        }
        .send()
    };

    // No key, a wrong key: 401 with the JSON error shape and a Bearer challenge.
    for (key, reason) in [(None, "needs an API key"), (Some("wrong"), "not one of the server's keys")] {
        let answer = caption(key).await.unwrap();
        assert_eq!(answer.status(), 401);
        let challenge = answer.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error_type"], "unauthorized", "{body}");
        assert!(body["error"].as_str().unwrap().contains(reason), "{body}");
    }
    // Either key while both are listed (rotation), in any case of the scheme.
    for key in [OLD_KEY, NEW_KEY] {
        let answer = caption(Some(key)).await.unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    let lower = client
        .post(format!("{url}/caption"))
        .header("content-type", "image/png")
        .header("authorization", format!("bearer {NEW_KEY}"))
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);

    // The admin routes are protected too; the probes' and scrapers' routes stay open.
    for path in ["/drift", "/chaos"] {
        assert_eq!(client.get(format!("{url}{path}")).send().await.unwrap().status(), 401, "{path}");
        let with_key = client.get(format!("{url}{path}")).bearer_auth(OLD_KEY).send().await.unwrap();
        assert_eq!(with_key.status(), 200, "{path}");
    }
    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(client.get(format!("{url}{path}")).send().await.unwrap().status(), 200, "{path}");
    }
    // The OpenAPI document says so.
    let document: serde_json::Value =
        client.get(format!("{url}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    assert_eq!(document["paths"]["/caption"]["post"]["security"][0]["bearerAuth"], serde_json::json!([]));
    assert!(document["paths"]["/caption"]["post"]["responses"]["401"].is_object());
    assert!(document["paths"]["/health"]["get"]["security"].is_null());

    let exposition = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = common::parse_openmetrics(&exposition);
    let rejected = |reason: &str| {
        samples
            .iter()
            .find(|(name, labels, _)| name == "capwatch_auth_rejected_total" && labels["reason"] == reason)
            .map(|(_, _, value)| *value)
    };
    assert_eq!((rejected("missing"), rejected("invalid")), (Some(3.0), Some(1.0)), "{exposition}");
    assert_no_key("/metrics", &exposition);

    // `monitor --url` sends the key in CAPWATCH_API_KEY; without it every test fails.
    let (monitor_dir, monitor_config) = config("monitor");
    let monitor = |key: Option<&'static str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_capwatch"));
        command
            .args(["monitor", "--url", &url, "--headless", "--cycles", "1", "--config"])
            .arg(&monitor_config)
            .current_dir(repo_path(""))
            .env_remove("CAPWATCH_API_KEY");
        if let Some(key) = key {
            command.env("CAPWATCH_API_KEY", key);
        }
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let with_key = monitor(Some(NEW_KEY)).await.unwrap();
    let stdout = String::from_utf8_lossy(&with_key.stdout).into_owned();
    assert_eq!(with_key.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("✅ Test 2/2:"), "{stdout}");
    assert_no_key("the monitor's output", &stdout);
    let without = monitor(None).await.unwrap();
    let stdout = String::from_utf8_lossy(&without.stdout).into_owned();
    assert!(stdout.contains("❌ Test 1/2: HTTP 401"), "{stdout}");
    for entry in std::fs::read_dir(monitor_dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        assert_no_key(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
    }

    // Nothing the server logged holds a key.
    let logged: Vec<String> = lines.try_iter().collect();
    assert_no_key("the server's log", &logged.join("\n"));
}

#[test]
fn a_server_whose_key_variable_is_empty_does_not_start_and_says_which_variable() {
    let (_dir, config) = config("no-keys");
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(repo_path(""))
        .env_remove(KEYS_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(KEYS_ENV) && stderr.contains("holds no key"), "{stderr}");
}

#[test]
fn the_dashboard_probes_the_server_it_launched_with_a_key() {
    let _machine = common::whole_machine();
    let (dir, config) = config("dashboard");
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["--headless", "--cycles", "1", "--chaos", "--config"])
        .arg(&config)
        .current_dir(repo_path(""))
        .env(KEYS_ENV, NEW_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("✅ Test 2/2:") && !stdout.contains("401"), "{stdout}");
    assert_no_key("the dashboard's output", &stdout);
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        assert_no_key(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
    }
}
