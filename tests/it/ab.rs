//! A/B end to end: the real dashboard, headless, against a real server with two
//! model variants: it finds the variants, tests each by name on the same images, reaches a
//! verdict when one is slower (a latency fault on that variant only), writes `ab` records
//! that match the schema, and the summary and `capwatch report` carry the A/B section.

use crate::common;

use std::process::Command;

use capwatch::config::{ModelVariantConfig, VariantName};
use serde_json::{Value, json};

use common::repo_path;

fn fast() -> [(&'static str, &'static str); 3] {
    [
        ("health_interval_s: 30", "health_interval_s: 0.3"),
        ("inference_interval_s: 10", "inference_interval_s: 0.2"),
        ("tests_per_cycle: 5 ", "tests_per_cycle: 3 "),
    ]
}

fn records(logs: &std::path::Path) -> Vec<Value> {
    let records = common::read_records(logs);
    common::assert_schema(&records);
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_compares_two_variants_and_calls_the_slow_one() {
    let _machine = common::whole_machine();
    let variant = |name: &str| ModelVariantConfig {
        name: VariantName::try_from(name.to_owned()).unwrap(),
        dir: repo_path("models/default"),
        weight: None,
    };
    let server = common::TestServer::start(repo_path("models/default"), |config| {
        config.models = vec![variant("a"), variant("b")];
        config.chaos = true;
    })
    .await;
    let fault = json!({"kind": "latency", "model": "b", "latency_ms": 80, "duration_s": 300});
    let injected = reqwest::Client::new().post(server.endpoint("/chaos")).json(&fault).send().await.unwrap();
    assert_eq!(injected.status(), 201);

    let (dir, config) = common::monitor_config("ab-monitor", &fast());
    let url = server.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_capwatch"))
            .args(["monitor", "--url", &url, "--headless", "--cycles", "10", "--config"])
            .arg(config)
            .current_dir(repo_path(""))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "⚖ A/B: the server has 2 model variants",
        "✅ Test 1/3 [a]:",
        "✅ Test 1/3 [b]:",
        "⚖ A/B verdict: a is",
        "## A/B comparison",
        "- **b vs a**:",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }

    let logs = dir.join("logs");
    let records = records(&logs);
    let ab: Vec<&Value> = records.iter().filter(|r| r["type"] == "ab").collect();
    assert!(!ab.is_empty(), "no ab records");
    let last = ab.last().unwrap();
    assert_eq!((last["a"]["name"].as_str(), last["b"]["name"].as_str()), (Some("a"), Some("b")));
    assert_eq!(last["verdict"]["kind"], "faster", "{last}");
    assert_eq!(last["verdict"]["faster"], "a", "{last}");
    assert!(last["latency_ratio"]["value"].as_f64().unwrap() > 1.5, "b carries 80 ms more: {last}");
    assert_eq!(last["agreement"], 1.0, "the same model writes the same captions");
    assert!(last["pairs"].as_u64().unwrap() >= 20, "{last}");

    // `capwatch report` rebuilds the same section from the file.
    let (ok, text) = common::capwatch_report(&logs);
    assert!(ok, "{text}");
    assert!(text.contains("## A/B comparison") && text.contains("Verdict: a is"), "{text}");
    server.stop().await.unwrap();
}

#[test]
fn the_dashboard_serves_variants_given_as_flags_and_compares_them() {
    let _machine = common::whole_machine();
    let (dir, config) = common::monitor_config("ab-supervised", &fast());
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["--headless", "--cycles", "3", "--model", "base=models/default", "--model", "canary=models/default"])
        .args(["--split", "base=9,canary=1", "--config"])
        .arg(config)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("baseline base, compared: canary"), "{stdout}");
    let records = records(&dir.join("logs"));
    let last = records.iter().rev().find(|r| r["type"] == "ab").expect("an ab record");
    assert_eq!((last["a"]["name"].as_str(), last["b"]["name"].as_str()), (Some("base"), Some("canary")));
    assert!(last["pairs"].as_u64().unwrap() >= 3, "{last}");
    let summary = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json") && p.to_string_lossy().contains("session_summary"))
        .expect("a session summary");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    assert_eq!(summary["ab"][0]["b"]["name"], "canary", "{summary}");
}
