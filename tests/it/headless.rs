//! `capwatch --headless` end to end: the real binary launches the real server as a child,
//! probes it with the bundled test images, prints the original's lines, writes the JSON
//! Lines metrics file and the session summary, stops the child, and exits 0 / 1 / 2 by the
//! worst alert.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use common::repo_path;

/// Runs `capwatch --headless --cycles 2` with fast intervals and `thresholds` for P95.
fn run(name: &str, thresholds: &str) -> (i32, String, PathBuf) {
    let (dir, config) = common::monitor_config(&format!("headless-{name}"), &fast(thresholds));
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["--headless", "--cycles", "2", "--config"])
        .arg(config)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.code().is_some(), "killed: {output:?}");
    (output.status.code().unwrap(), stdout, dir.join("logs"))
}

/// Fast probing, three tests per cycle, and the given P95 thresholds.
fn fast(thresholds: &str) -> [(&str, &str); 4] {
    [
        ("health_interval_s: 30", "health_interval_s: 0.3"),
        ("inference_interval_s: 10", "inference_interval_s: 0.3"),
        ("tests_per_cycle: 5 ", "tests_per_cycle: 3 "),
        ("p95_latency_ms: {warning: 4000, critical: 8000}", thresholds),
    ]
}

#[test]
fn a_healthy_session_exits_zero_with_metrics_and_summary() {
    let _machine = common::whole_machine();
    let (code, stdout, logs) = run("ok", "p95_latency_ms: {warning: 4000, critical: 8000}");
    assert_eq!(code, 0, "{stdout}");
    for expected in [
        "🚀 Server started, PID",
        "🟢 Server ready",
        "✅ Test 1/3:",
        "✅ Test 3/3:",
        "📈 P95 response time:",
        "[OK]",
        "# capwatch session summary",
        "| test cycles | 2 |",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}` in:\n{stdout}");
    }
    assert!(!stdout.contains("❌"), "{stdout}");

    let metrics = std::fs::read_to_string(logs.join("service_metrics.jsonl")).unwrap();
    let records: Vec<Value> =
        metrics.lines().map(|l| serde_json::from_str(l).expect("every line is whole JSON")).collect();
    let cycles: Vec<&Value> = records.iter().filter(|r| r["type"] == "cycle").collect();
    assert_eq!(cycles.len(), 2);
    assert_eq!(cycles[1]["window"]["probes"], 6);
    assert_eq!(cycles[1]["window"]["error_rate"], 0.0);
    assert!(cycles[1]["window"]["latency_ms"]["p95"].as_f64().unwrap() > 0.0);
    assert_eq!(cycles[1]["window"]["quality_mean"], 1.0);
    assert!(cycles[1]["latest"]["caption"].is_string());
    let server_events: Vec<&str> =
        records.iter().filter(|r| r["type"] == "server").map(|r| r["event"]["kind"].as_str().unwrap()).collect();
    assert_eq!(server_events, ["spawned", "exited"], "{server_events:?}");
    let exited = records.iter().find(|r| r["event"]["kind"] == "exited").unwrap();
    assert_eq!(exited["event"]["expected"], true);
    assert_eq!(exited["event"]["code"], 0, "the child must stop gracefully");

    // The structured log: JSON lines from the monitor and from the child server.
    let log_file = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("service_monitoring.log"))
        .expect("no service_monitoring.log*");
    let log_lines: Vec<Value> = std::fs::read_to_string(&log_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert!(log_lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.contains("Server ready"))));
    assert!(
        log_lines
            .iter()
            .any(|l| l["target"] == "capwatch::child" && l["child"].as_str().is_some_and(|c| c.contains("listening")))
    );

    // `capwatch report` rebuilds the same figures from the metrics file.
    let (ok, report) = common::capwatch_report(&logs);
    assert!(ok, "{report}");
    for expected in [
        "| test cycles | 2 |",
        "| tests | 6 |",
        "| success rate | 100.0 % |",
        "| last status | healthy |",
        "| alerts fired | 0 warning, 0 critical |",
    ] {
        assert!(report.contains(expected), "missing `{expected}` in:\n{report}");
    }

    let summaries: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("session_summary_"))
        .collect();
    // The summary (JSON, Markdown) and the report with charts (HTML).
    assert_eq!(summaries.len(), 3, "{summaries:?}");
    assert!(summaries.iter().any(|p| p.extension().unwrap() == "html"), "{summaries:?}");
    let json = summaries.iter().find(|p| p.extension().unwrap() == "json").unwrap();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(summary["cycles"], 2);
    assert_eq!(summary["tests"], 6);
    assert_eq!(summary["success_rate"], 1.0);
    assert_eq!(summary["last_status"], "healthy");
    assert_eq!((summary["alerts_warning"].as_u64(), summary["alerts_critical"].as_u64()), (Some(0), Some(0)));
    // The live summary and `report` of the session's records are one fold: the same text.
    let markdown = summaries.iter().find(|p| p.extension().unwrap() == "md").unwrap();
    assert_eq!(report, std::fs::read_to_string(markdown).unwrap());
}

#[test]
fn exit_code_reflects_the_worst_alert() {
    let _machine = common::whole_machine();
    let (code, stdout, logs) = run("warning", "p95_latency_ms: {warning: 0.001, critical: 100000}");
    let metrics = std::fs::read_to_string(logs.join("service_metrics.jsonl")).unwrap();
    let records: Vec<Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    common::assert_schema(&records);
    assert!(records.iter().any(|r| r["type"] == "alert" && r["rule"] == "p95_latency" && r["severity"] == "warning"));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("🚨 ALERT: p95_latency ="), "{stdout}");
    let (code, stdout, _) = run("critical", "p95_latency_ms: {warning: 0.001, critical: 0.002}");
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("🚨🚨 CRITICAL ALERT: p95_latency ="), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_watches_a_server_that_is_already_running() {
    let _machine = common::whole_machine();
    let server = common::TestServer::start(repo_path("models/default"), |_| {}).await;
    let (_dir, config) = common::monitor_config("monitor", &fast("p95_latency_ms: {warning: 4000, critical: 8000}"));
    let url = server.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_capwatch"))
            .args(["monitor", "--url", &url, "--headless", "--cycles", "2", "--config"])
            .arg(config)
            .current_dir(repo_path(""))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("✅ Test 3/3:") && stdout.contains("| test cycles | 2 |"), "{stdout}");
    assert!(!stdout.contains("Server started"), "monitor must not launch a server:\n{stdout}");
    // The server is untouched and still serving.
    let health = reqwest::get(format!("{}/health", server.url)).await.unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await.unwrap();
}

/// `monitor` reads its config like every other subcommand: without a config file at the
/// default path it runs on the defaults (which list no test images) instead of failing to
/// read the file.
#[test]
fn monitor_without_a_config_file_uses_the_defaults_like_the_dashboard() {
    let dir = std::env::temp_dir().join(format!("capwatch-no-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for args in [&["monitor", "--url", "http://127.0.0.1:9", "--headless"][..], &["--headless"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_capwatch")).args(args).current_dir(&dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("the config's quality section lists no test images"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service where every test fails has no latency: every output says so instead of
/// printing a P95 of 0 — the log lines, the summary (Markdown and JSON), the metrics file
/// and `capwatch report`.
#[test]
fn a_session_without_a_successful_test_prints_no_latency_number() {
    let (dir, config) =
        common::monitor_config("headless-unmeasured", &fast("p95_latency_ms: {warning: 4000, critical: 8000}"));
    let nobody = common::receiver::refused_url().replace("/hook", "");
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["monitor", "--url", &nobody, "--headless", "--cycles", "2", "--config"])
        .arg(config)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(2), "every test failed: critical\n{stdout}");
    assert!(stdout.contains("📈 P95 response time: — (no successful test in the window)"), "{stdout}");
    assert!(stdout.contains("🎯 Quality score: — (no successful test in the window)"), "{stdout}");
    assert!(stdout.contains("| mean P95 | — (no successful test) |"), "{stdout}");
    assert!(stdout.contains("| final P95 | — (no successful test) |"), "{stdout}");
    assert!(!stdout.contains(" 0.00 ms"), "a latency that was never measured was printed:\n{stdout}");

    let logs = dir.join("logs");
    let records = common::read_records(&logs);
    common::assert_schema(&records);
    let cycles: Vec<&Value> = records.iter().filter(|r| r["type"] == "cycle").collect();
    assert_eq!(cycles.len(), 2);
    for cycle in cycles {
        assert_eq!(cycle["window"]["successes"], 0);
        assert!(cycle["window"]["latency_ms"].is_null(), "{cycle}");
        assert!(cycle["session"]["latency_ms"].is_null(), "{cycle}");
    }
    let summary = common::session_summary(&logs);
    assert!(summary["mean_p95_ms"].is_null() && summary["final_p95_ms"].is_null(), "{summary}");

    let (ok, report) = common::capwatch_report(&logs);
    assert!(ok, "{report}");
    assert!(report.contains("| mean P95 | — (no successful test) |"), "{report}");
    assert!(!report.contains(" 0.00 ms"), "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}
