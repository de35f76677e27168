//! `capwatch monitor` watching several instances on one dashboard, end to end: two real
//! servers, one address where nothing listens and one that accepts connections and never
//! answers, from `monitoring.targets`. Each is probed on its own (the dead and the hung one
//! stall nobody); alerts, JSONL records, notifications and the
//! dashboard's metrics name the instance; the summary and `capwatch report` break down by
//! instance.

use crate::common;

use std::process::Command;

use common::receiver::{Receiver, refused_url};
use common::repo_path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dashboard_watches_several_instances_and_names_each_in_every_output() {
    let _machine = common::whole_machine();
    let alpha = common::TestServer::start(repo_path("models/default"), |_| {}).await;
    let beta = common::TestServer::start(repo_path("models/default"), |_| {}).await;
    let gone = refused_url().trim_end_matches("/hook").to_owned();
    // The kernel queues connections to a listener nobody accepts from: requests hang.
    let hung_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!("http://{}", hung_listener.local_addr().unwrap());
    let receiver = Receiver::start();
    let targets = format!(
        "  targets:\n    - {{url: \"{}\", name: alpha}}\n    - {{url: \"{}\", name: beta}}\n    - {{url: \"{gone}\", name: gone}}\n    - {{url: \"{hung}\", name: hung}}\n",
        alpha.url, beta.url
    );
    let replacements = [
        ("  targets: []\n", targets.as_str()),
        ("  sinks: []\n", "  sinks:\n    - kind: webhook\n      url_env: T_HOOK_URL\n"),
        ("health_interval_s: 30", "health_interval_s: 0.3"),
        ("inference_interval_s: 10", "inference_interval_s: 0.3"),
        ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ("probe_timeout_s: 30", "probe_timeout_s: 2"),
    ];
    let (dir, config) = common::monitor_config("instances", &replacements);
    let env = [("T_HOOK_URL".to_owned(), format!("{}/hook", receiver.url))];
    let args = ["monitor", "--headless", "--cycles", "6", "--metrics-listen", "127.0.0.1:0"];
    let (mut monitor, mut lines, _errors) = common::spawn_capwatch(&args, &config, &env);
    let metrics_line = lines.wait_for("📈 Dashboard metrics at ");
    lines.wait_for("🛰 Watching 4 instances: alpha");
    let metrics_url = metrics_line[metrics_line.find("http://").unwrap()..].trim().to_owned();
    // The dead instance's alert names it; the live ones go on testing meanwhile.
    lines.wait_for_all(&["[gone] 🚨🚨 CRITICAL ALERT: health_down", "[alpha] ✅ Test 2/2", "[beta] ✅ Test 2/2"]);
    let exposition = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    let status = tokio::task::spawn_blocking(move || monitor.wait().unwrap()).await.unwrap();
    let stdout = lines.rest().join("\n");
    // A critical alert (the dead instance's): exit 2.
    assert_eq!(status.code(), Some(2), "{stdout}");

    // Metrics: one series per instance, by `target`.
    let samples = common::parse_openmetrics(&exposition);
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
            .map(|(_, _, value)| *value)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{exposition}"))
    };
    let health_down = |target| value("capwatch_monitor_alert_severity", &[("target", target), ("rule", "health_down")]);
    assert_eq!((health_down("gone"), health_down("alpha"), health_down("beta")), (2.0, 0.0, 0.0));
    assert_eq!(value("capwatch_monitor_service_healthy", &[("target", "alpha")]), 1.0);
    assert!(value("capwatch_monitor_consecutive_health_failures", &[("target", "gone")]) >= 3.0);
    let caption_successes = |target| {
        value("capwatch_monitor_probes_total", &[("target", target), ("probe", "caption"), ("outcome", "success")])
    };
    assert!(caption_successes("alpha") >= 2.0 && caption_successes("beta") >= 2.0, "{exposition}");

    // Records: every one names its instance; cycles for all three; alerts only for `gone`.
    let logs = dir.join("logs");
    let records = common::read_records(&logs);
    common::assert_schema(&records);
    let of =
        |kind: &str, instance: &str| records.iter().filter(|r| r["type"] == kind && r["instance"] == instance).count();
    let names = ["alpha", "beta", "gone", "hung"];
    assert!(records.iter().all(|r| names.contains(&r["instance"].as_str().unwrap_or("-"))));
    for instance in names {
        assert!(of("cycle", instance) >= 6, "{instance}: {} cycles", of("cycle", instance));
    }
    assert!(
        of("alert", "gone") >= 2 && of("alert", "hung") >= 2 && of("alert", "alpha") == 0 && of("alert", "beta") == 0
    );
    // The hung instance's probes wait out their timeout; the others' cycles do not wait for them.
    let cycle_at = |instance: &str, n: u64| {
        records
            .iter()
            .find(|r| r["type"] == "cycle" && r["instance"] == instance && r["cycle"] == n)
            .map(|r| r["uptime_s"].as_f64().unwrap())
            .unwrap()
    };
    assert!(cycle_at("alpha", 6) < cycle_at("hung", 3), "{} vs {}", cycle_at("alpha", 6), cycle_at("hung", 3));
    // Its health and inference loops run apart, so which of their alerts comes first is open.
    assert!(records.iter().any(|r| r["type"] == "alert" && r["instance"] == "gone" && r["rule"] == "health_down"));

    // Notifications: each says which instance it is about.
    let mut notified = Vec::new();
    for _ in 0..50 {
        notified = receiver.requests("/hook");
        if !notified.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!notified.is_empty(), "no notification arrived");
    for request in &notified {
        let instance = request.body["instance"].as_str().unwrap();
        assert!(["gone", "hung"].contains(&instance), "{}", request.body);
        assert!(request.body["message"].as_str().unwrap().starts_with(&format!("[{instance}] ")), "{}", request.body);
    }

    // The summary breaks down by instance; the session's status is the worst one's.
    let summary = common::session_summary(&logs);
    let instances = summary["instances"].as_array().unwrap();
    let names: Vec<&str> = instances.iter().map(|i| i["instance"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta", "gone", "hung"]);
    let field = |name: &str, key: &str| instances.iter().find(|i| i["instance"] == name).unwrap()[key].clone();
    assert_eq!((field("alpha", "last_status"), field("gone", "last_status")), ("healthy".into(), "down".into()));
    assert_eq!(field("gone", "successes"), 0);
    assert_eq!(summary["last_status"], "down");
    let tests: u64 = instances.iter().map(|i| i["tests"].as_u64().unwrap()).sum();
    assert_eq!(summary["tests"].as_u64().unwrap(), tests);
    assert!(stdout.contains("## By instance"), "{stdout}");

    // `capwatch report` rebuilds the same breakdown from the records.
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["report"])
        .arg(logs.join("service_metrics.jsonl"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("## By instance"), "{report}");
    for name in ["| alpha | healthy |", "| beta | healthy |", "| gone | down |", "| hung | down |"] {
        assert!(report.contains(name), "{name} missing from\n{report}");
    }
    // The live summary is the same fold over the same records: the same text.
    let markdown = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().contains("session_summary_") && path.extension().unwrap() == "md")
        .unwrap();
    assert_eq!(report, std::fs::read_to_string(markdown).unwrap());

    // Both servers were only watched, and still serve.
    for server in [alpha, beta] {
        assert_eq!(reqwest::get(server.endpoint("/health")).await.unwrap().status(), 200);
        server.stop().await.unwrap();
    }
    drop(hung_listener);
    let _ = std::fs::remove_dir_all(dir);
}

/// Bad target lists get a clear message and exit 2 before anything starts.
#[test]
fn bad_targets_are_refused_with_the_reason() {
    let cases: [(&[&str], &str); 3] = [
        (&["--url", "not a url"], "bad URL \"not a url\""),
        (&["--url", "ftp://127.0.0.1:21"], "expected http://HOST:PORT"),
        (&["--url", "http://127.0.0.1:9", "--url", "http://127.0.0.1:9/"], "http://127.0.0.1:9 is listed twice"),
    ];
    for (urls, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
            .arg("monitor")
            .args(urls)
            .args(["--headless", "--config"])
            .arg(repo_path("config/monitoring_config.yaml"))
            .current_dir(repo_path(""))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{urls:?}: {stderr}");
        assert!(stderr.contains(expected), "{urls:?}: {stderr}");
    }
}
