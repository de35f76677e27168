//! The Prometheus and Grafana exports: `promtool check rules` accepts the rules,
//! `promtool test rules` shows they fire at the configured thresholds (and not below the
//! minimum samples), every metric they and the Grafana dashboard query exists in the real
//! expositions, and a real Prometheus scraping a real dashboard loads the rules and fires
//! the same alert the dashboard fires. promtool and prometheus come from `make setup`
//! (Debian's package, unpacked into .ort/prometheus); `PROMTOOL`/`PROMETHEUS` override.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capwatch::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};
use capwatch::clock::Clock;
use capwatch::config::Config;
use capwatch::dash::effect::{Effect, MetricUpdate};
use capwatch::dash::event::Event;
use capwatch::dash::metrics::DashMetrics;
use capwatch::dash::prober::{CaptionResult, HealthBody, HealthCheck, InferenceProbe};
use capwatch::dash::state::{DashState, Stop};
use capwatch::dash::update::update;
use serde_json::Value;

use common::{KillOnDrop, TestServer, repo_path};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capwatch-prom-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn export(what: &str, config: &Path, output: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["export", what, "--config"])
        .arg(config)
        .arg("--output")
        .arg(output)
        .status()
        .unwrap();
    assert!(status.success(), "capwatch export {what} failed");
}

fn run_promtool(args: &[&str], dir: &Path) {
    let output =
        Command::new(common::prometheus_tool("promtool", "PROMTOOL")).args(args).current_dir(dir).output().unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// promtool unit tests of the dashboard rules at the shipped thresholds (P95 4000/8000 ms,
/// error rate 10/25 %, quality 0.75/0.5, health 1/3 failures, 5 samples, 5 m window).
/// Instance `a` probes once a minute; instance `quiet` has the same bad values but too few
/// probes in the window, so only `a` alerts.
const RULE_TESTS: &str = r#"
rule_files: [capwatch_rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Every probe takes between 4.0 and 5.0 s: P95 ≈ 4950 ms, over warning, under critical.
      - series: 'capwatch_monitor_probe_duration_seconds_bucket{job="capwatch",instance="a",probe="caption",le="4.0"}'
        values: '0+0x20'
      - series: 'capwatch_monitor_probe_duration_seconds_bucket{job="capwatch",instance="a",probe="caption",le="5.0"}'
        values: '0+1x20'
      - series: 'capwatch_monitor_probe_duration_seconds_bucket{job="capwatch",instance="a",probe="caption",le="+Inf"}'
        values: '0+1x20'
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="a",probe="caption",outcome="success"}'
        values: '0+1x20'
      # As many timeouts as successes: 50 % errors, over both levels.
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="a",probe="caption",outcome="timeout"}'
        values: '0+1x20'
      # Quality 0.6: warning (≤ 0.75), not critical (> 0.5).
      - series: 'capwatch_monitor_caption_quality_ratio_sum{job="capwatch",instance="a"}'
        values: '0+0.6x20'
      - series: 'capwatch_monitor_caption_quality_ratio_count{job="capwatch",instance="a"}'
        values: '0+1x20'
      - series: 'capwatch_monitor_consecutive_health_failures{job="capwatch",instance="a"}'
        values: '1x20'
      - series: 'capwatch_monitor_consecutive_failures{job="capwatch",instance="a"}'
        values: '5x20'
      - series: 'capwatch_monitor_crash_loop{job="capwatch",instance="a"}'
        values: '0x20'
      # The server could not start: start_failed is CRITICAL.
      - series: 'capwatch_monitor_alert_severity{job="capwatch",instance="a",rule="start_failed"}'
        values: '2x20'
      # The quiet instance: just as slow, failing and wrong, but 2.5 probes per 5 m.
      - series: 'capwatch_monitor_probe_duration_seconds_bucket{job="capwatch",instance="quiet",probe="caption",le="4.0"}'
        values: '0+0x20'
      - series: 'capwatch_monitor_probe_duration_seconds_bucket{job="capwatch",instance="quiet",probe="caption",le="+Inf"}'
        values: '0+0.25x20'
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="quiet",probe="caption",outcome="success"}'
        values: '0+0.25x20'
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="quiet",probe="caption",outcome="timeout"}'
        values: '0+0.25x20'
      - series: 'capwatch_monitor_caption_quality_ratio_sum{job="capwatch",instance="quiet"}'
        values: '0+0.1x20'
      - series: 'capwatch_monitor_caption_quality_ratio_count{job="capwatch",instance="quiet"}'
        values: '0+0.25x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: CapwatchP95LatencyHigh
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: p95_latency, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch caption P95 latency is high (warning)", description: "P95 of successful inference tests over 5m is 4950 ms (threshold 4000 ms) on a."}
      - eval_time: 10m
        alertname: CapwatchErrorRateHigh
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: error_rate, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch inference tests are failing (warning)", description: "50.0 % of inference tests failed over 5m (threshold 10 %) on a."}
          - exp_labels: {severity: critical, service: capwatch, rule: error_rate, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch inference tests are failing (critical)", description: "50.0 % of inference tests failed over 5m (threshold 25 %) on a."}
      - eval_time: 10m
        alertname: CapwatchCaptionQualityLow
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: quality_score, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch caption quality dropped (warning)", description: "Mean caption quality over 5m is 0.60 (threshold 0.75): captions miss expected keywords on a."}
      - eval_time: 10m
        alertname: CapwatchHealthCheckFailing
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: health_down, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch health checks fail (warning)", description: "1 health checks failed in a row (threshold 1) on a."}
      - eval_time: 10m
        alertname: CapwatchConsecutiveFailures
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: consecutive_failures, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch inference tests fail in a row (warning)", description: "5 inference tests failed in a row (threshold 3) on a."}
          - exp_labels: {severity: critical, service: capwatch, rule: consecutive_failures, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch inference tests fail in a row (critical)", description: "5 inference tests failed in a row (threshold 5) on a."}
      - eval_time: 10m
        alertname: CapwatchCrashLoop
        exp_alerts: []
      - eval_time: 10m
        alertname: CapwatchServerCannotStart
        exp_alerts:
          - exp_labels: {severity: critical, service: capwatch, rule: start_failed, job: capwatch, instance: a}
            exp_annotations: {summary: "capwatch cannot start the server", description: "The server exits with an error a restart cannot fix (model, ONNX Runtime, address or config) on a; the dashboard's log says which."}
      # The dead man's switch fires always, from the first evaluation.
      - eval_time: 0m
        alertname: CapwatchWatchdog
        exp_alerts:
          - exp_labels: {severity: none, service: capwatch, rule: watchdog}
            exp_annotations: {summary: "Always firing: proves that Prometheus and Alertmanager deliver alerts", description: "A dead man's switch: route it to a receiver that alarms when it stops arriving (see docs/src/prometheus.md, \"Watchdog\"); never silence it."}
      # Two minutes in, the window holds too few probes (min_samples 5): nothing fires yet.
      - eval_time: 2m
        alertname: CapwatchErrorRateHigh
        exp_alerts: []
  # Drift: the share of the server's drift features that differ (warning 25 %, critical 50 %),
  # held for rule_for_s (1m).
  - interval: 1m
    input_series:
      - series: 'capwatch_drift_feature_drifted{job="srv",instance="s",feature="brightness_mean",method="ks"}'
        values: '0 1 1 1 1 1 1'
      - series: 'capwatch_drift_feature_drifted{job="srv",instance="s",feature="hue",method="jensen_shannon"}'
        values: '0 0 0 0 1 1 1'
      - series: 'capwatch_drift_feature_drifted{job="srv",instance="s",feature="words",method="jensen_shannon"}'
        values: '0 0 0 0 0 0 0'
      - series: 'capwatch_drift_feature_drifted{job="srv",instance="s",feature="width",method="z"}'
        values: '0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 1m
        alertname: CapwatchDrift
        exp_alerts: []
      - eval_time: 3m
        alertname: CapwatchDrift
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: drift, job: srv, instance: s}
            exp_annotations: {summary: "capwatch server: requests or captions drift from the reference (warning)", description: "25 % of the drift features differ from the reference (threshold 25 %) on s; `capwatch drift status` says which."}
      - eval_time: 6m
        alertname: CapwatchDrift
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: drift, job: srv, instance: s}
            exp_annotations: {summary: "capwatch server: requests or captions drift from the reference (warning)", description: "50 % of the drift features differ from the reference (threshold 25 %) on s; `capwatch drift status` says which."}
          - exp_labels: {severity: critical, service: capwatch, rule: drift, job: srv, instance: s}
            exp_annotations: {summary: "capwatch server: requests or captions drift from the reference (critical)", description: "50 % of the drift features differ from the reference (threshold 50 %) on s; `capwatch drift status` says which."}
  # Hysteresis (10 %), as on the dashboard: a firing warning (threshold 3) holds while the
  # value stays inside the band (2.7 to 3), and a value in the band does not fire it anew.
  - interval: 1m
    input_series:
      - series: 'capwatch_monitor_consecutive_failures{job="capwatch",instance="h"}'
        values: '3 2.8 2.8 2.5 2.8 2.8'
    alert_rule_test:
      - eval_time: 2m
        alertname: CapwatchConsecutiveFailures
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: consecutive_failures, job: capwatch, instance: h}
            exp_annotations: {summary: "capwatch inference tests fail in a row (warning)", description: "2.8 inference tests failed in a row (threshold 3) on h."}
      - eval_time: 3m
        alertname: CapwatchConsecutiveFailures
        exp_alerts: []
      - eval_time: 5m
        alertname: CapwatchConsecutiveFailures
        exp_alerts: []
"#;

/// One dashboard (`instance="dash"`) watching two servers (`target` label): only the failing
/// one alerts, and the alert names it.
const TARGET_RULE_TESTS: &str = r#"
rule_files: [capwatch_rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="dash",target="gpu-1:8000",probe="caption",outcome="success"}'
        values: '0+1x20'
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="dash",target="gpu-1:8000",probe="caption",outcome="timeout"}'
        values: '0+1x20'
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="dash",target="gpu-2:8000",probe="caption",outcome="success"}'
        values: '0+2x20'
      - series: 'capwatch_monitor_probes_total{job="capwatch",instance="dash",target="gpu-2:8000",probe="caption",outcome="timeout"}'
        values: '0+0x20'
      - series: 'capwatch_monitor_consecutive_health_failures{job="capwatch",instance="dash",target="gpu-1:8000"}'
        values: '0x20'
      - series: 'capwatch_monitor_consecutive_health_failures{job="capwatch",instance="dash",target="gpu-2:8000"}'
        values: '3x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: CapwatchErrorRateHigh
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: error_rate, job: capwatch, instance: dash, target: "gpu-1:8000"}
            exp_annotations: {summary: "capwatch inference tests are failing (warning)", description: "50.0 % of inference tests failed over 5m (threshold 10 %) on dash."}
          - exp_labels: {severity: critical, service: capwatch, rule: error_rate, job: capwatch, instance: dash, target: "gpu-1:8000"}
            exp_annotations: {summary: "capwatch inference tests are failing (critical)", description: "50.0 % of inference tests failed over 5m (threshold 25 %) on dash."}
      - eval_time: 10m
        alertname: CapwatchHealthCheckFailing
        exp_alerts:
          - exp_labels: {severity: warning, service: capwatch, rule: health_down, job: capwatch, instance: dash, target: "gpu-2:8000"}
            exp_annotations: {summary: "capwatch health checks fail (warning)", description: "3 health checks failed in a row (threshold 1) on dash."}
          - exp_labels: {severity: critical, service: capwatch, rule: health_down, job: capwatch, instance: dash, target: "gpu-2:8000"}
            exp_annotations: {summary: "capwatch health checks fail (critical)", description: "3 health checks failed in a row (threshold 3) on dash."}
"#;

#[test]
fn exported_rules_pass_promtool_check_and_fire_at_the_configured_thresholds() {
    let dir = scratch("rules");
    let rules = dir.join("capwatch_rules.yml");
    export("prometheus-rules", &repo_path("config/monitoring_config.yaml"), &rules);
    run_promtool(&["check", "rules", "capwatch_rules.yml"], &dir);
    std::fs::write(dir.join("rules_test.yml"), RULE_TESTS).unwrap();
    run_promtool(&["test", "rules", "rules_test.yml"], &dir);
    std::fs::write(dir.join("target_rules_test.yml"), TARGET_RULE_TESTS).unwrap();
    run_promtool(&["test", "rules", "target_rules_test.yml"], &dir);

    // Structure: every rule has a severity label, a `for:`, and a description.
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&rules).unwrap()).unwrap();
    let groups = file["groups"].as_sequence().unwrap();
    assert_eq!(groups.len(), 3);
    for rule in groups.iter().flat_map(|g| g["rules"].as_sequence().unwrap()) {
        let severity = rule["labels"]["severity"].as_str().unwrap();
        let watchdog = rule["alert"].as_str() == Some("CapwatchWatchdog");
        assert!(["warning", "critical"].contains(&severity) || (watchdog && severity == "none"), "{rule:?}");
        assert!(rule["for"].as_str().is_some() && rule["annotations"]["description"].as_str().is_some());
    }

    // With `thresholds.for_s`, the threshold rules keep firing that long after they clear
    // (Prometheus's keep_firing_for), and promtool still accepts the file.
    let (held_dir, held_config) = common::monitor_config("rules-for-s", &[("  # for_s: 30", "  for_s: 30")]);
    export("prometheus-rules", &held_config, &dir.join("held_rules.yml"));
    run_promtool(&["check", "rules", "held_rules.yml"], &dir);
    let held: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("held_rules.yml")).unwrap()).unwrap();
    let first = &held["groups"][0]["rules"][0];
    assert_eq!(
        (first["alert"].as_str(), first["keep_firing_for"].as_str()),
        (Some("CapwatchP95LatencyHigh"), Some("30s"))
    );
    let _ = std::fs::remove_dir_all(held_dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Sample names an exposition offers (`_bucket`/`_sum`/`_count` included).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Metric names a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("capwatch_") {
        let name: String = rest[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

/// The dashboard's exposition after a probe, a health check and a cycle went through the
/// real `update`, plus one alert.
fn dashboard_exposition(config: &Config) -> String {
    let metrics = DashMetrics::new(config, &["slack".to_owned()], &["local".to_owned()]);
    let now = tokio::time::Instant::now();
    let mut state = DashState::new(config, true, Stop::default(), now);
    let probe = |variant: Option<&str>| {
        Event::Probe(InferenceProbe {
            variant: variant.map(|name| capwatch::dash::prober::VariantTag { name: name.to_owned(), round: 1 }),
            at: now,
            image: "a.png".to_owned(),
            latency: Duration::from_millis(20),
            result: Ok(CaptionResult {
                caption: "a red circle".to_owned(),
                model_time: Some(Duration::from_millis(10)),
                server_total: Some(Duration::from_millis(15)),
                server_queue: None,
                quality: capwatch::quality::match_keywords("a red circle", &["red".to_owned()]),
            }),
        })
    };
    // A server with two variants: the A/B series exist too.
    let health = r#"{"status": "healthy", "model": "a, b", "models": [{"name": "a"}, {"name": "b"}]}"#;
    let events = [
        probe(None),
        Event::Health(HealthCheck {
            at: now,
            latency: Duration::from_millis(2),
            result: Ok(HealthBody::read(true, health)),
        }),
        probe(Some("a")),
        probe(Some("b")),
        Event::CycleDone,
    ];
    for event in events {
        for effect in update(&mut state, event, Clock::read()) {
            if let Effect::Metric(metric) = effect {
                metrics.apply("local", &metric);
            }
        }
    }
    metrics.apply(
        "local",
        &MetricUpdate::Alert(AlertEvent {
            rule: RuleKind::P95Latency,
            severity: Severity::Warning,
            transition: AlertTransition::Fired,
            value: 1.0,
            threshold: 1.0,
            instance: None,
        }),
    );
    metrics.encode().unwrap()
}

#[tokio::test]
async fn rules_and_grafana_panels_query_only_metrics_that_exist() {
    let config = Config::load(&repo_path("config/monitoring_config.yaml")).unwrap();
    let mut available = sample_names(&dashboard_exposition(&config));
    // Two variants and a shadow, so that the per-model and shadow series exist.
    let server = TestServer::start(repo_path("models/default"), |config| {
        let variant = |name: &str| capwatch::config::ModelVariantConfig {
            name: capwatch::config::VariantName::try_from(name.to_owned()).unwrap(),
            dir: repo_path("models/default"),
            weight: None,
        };
        config.models = vec![variant("a"), variant("b")];
        let shadow = capwatch::config::VariantName::try_from("b".to_owned()).unwrap();
        config.shadow = Some(capwatch::config::ShadowConfig::new(shadow, capwatch::config::Share(1.0)));
    })
    .await;
    let client = reqwest::Client::new();
    let image = std::fs::read(repo_path("test_images/a_small_yellow_square.png")).unwrap();
    // Enough requests to freeze a drift reference, so that the drift series exist too.
    for _ in 0..capwatch::server::drift::MIN_REFERENCE {
        let caption = client
            .post(server.endpoint("/caption"))
            .header("content-type", "image/png")
            .body(image.clone())
            .send()
            .await;
        assert_eq!(caption.unwrap().status(), 200);
    }
    assert_eq!(client.post(server.endpoint("/drift/baseline")).send().await.unwrap().status(), 201);
    let mut server_metrics = String::new();
    for _ in 0..100 {
        server_metrics = client.get(server.endpoint("/metrics")).send().await.unwrap().text().await.unwrap();
        if server_metrics.contains("capwatch_shadow_requests_total{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both expositions pass the reference OpenMetrics parser.
    assert!(common::parse_openmetrics(&server_metrics).len() > 20);
    assert!(!common::parse_openmetrics(&dashboard_exposition(&config)).is_empty());
    available.extend(sample_names(&server_metrics));
    server.stop().await.unwrap();

    let rules = capwatch::export::prometheus_rules::rules(&config);
    let dashboard = capwatch::export::grafana::dashboard(&config);
    let mut queried = BTreeSet::new();
    for rule in rules.groups.iter().flat_map(|g| &g.rules) {
        queried.extend(metric_names(&rule.expr));
    }
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queried.extend(metric_names(query));
        }
    }
    let missing: Vec<_> = queried.difference(&available).collect();
    assert!(missing.is_empty(), "queried but never exposed: {missing:?}\navailable: {available:?}");
    assert!(queried.len() >= 15, "{queried:?}");
}

#[test]
fn grafana_dashboard_is_well_formed_and_carries_the_thresholds() {
    let dir = scratch("grafana");
    let file = dir.join("capwatch_dashboard.json");
    export("grafana-dashboard", &repo_path("config/monitoring_config.yaml"), &file);
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "capwatch-overview");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables: Vec<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(variables, ["datasource", "instance", "target", "server_instance"]);
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate id in {panel}");
        titles.insert(panel["title"].as_str().unwrap().to_owned());
        let grid = &panel["gridPos"];
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24, "{panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{panel}");
        let ref_ids: BTreeSet<_> = targets.iter().map(|t| t["refId"].as_str().unwrap()).collect();
        assert_eq!(ref_ids.len(), targets.len(), "refIds repeat in {panel}");
        assert!(["stat", "timeseries", "state-timeline"].contains(&panel["type"].as_str().unwrap()));
    }
    // The terminal dashboard's panes.
    for pane in [
        "Status",
        "Worst alert",
        "P95 latency",
        "Error rate",
        "Consecutive failures",
        "Restarts",
        "Caption quality",
        "Alerts",
    ] {
        assert!(titles.contains(pane), "no `{pane}` panel: {titles:?}");
    }
    // Threshold colours come from the config.
    let p95 = panels.iter().find(|p| p["title"] == "P95 latency").unwrap();
    let steps: Vec<f64> = p95["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect();
    assert_eq!(steps, [4000.0, 8000.0]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A port nothing listens on right now (Prometheus cannot report a port it picked itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test]
async fn a_real_prometheus_loads_the_rules_and_fires_what_the_dashboard_fires() {
    let _machine = common::whole_machine();
    // A P95 threshold of 1 ms: the dashboard alerts at once, and so must Prometheus.
    let (dir, config) = common::monitor_config(
        "prometheus-e2e",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.5"),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 3 "),
            ("p95_latency_ms: {warning: 4000, critical: 8000}", "p95_latency_ms: {warning: 1, critical: 100000}"),
            ("rule_for_s: 60", "rule_for_s: 1"),
        ],
    );
    let rules = dir.join("capwatch_rules.yml");
    export("prometheus-rules", &config, &rules);
    let (dashboard, mut lines, _) =
        common::spawn_capwatch(&["--headless", "--duration", "120s", "--metrics-listen", "127.0.0.1:0"], &config, &[]);
    let dashboard = KillOnDrop(dashboard);
    let line = lines.wait_for("📈 Dashboard metrics at http://");
    let target = line[line.find("http://").unwrap() + 7..].trim().trim_end_matches("/metrics").to_owned();

    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: capwatch-dashboard\n    static_configs: [{{targets: ['{target}']}}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let prometheus = KillOnDrop(
        Command::new(common::prometheus_tool("prometheus", "PROMETHEUS"))
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    lines.wait_for("🚨 ALERT: p95_latency");

    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let deadline = Instant::now() + Duration::from_secs(90);
    let firing = loop {
        assert!(Instant::now() < deadline, "Prometheus never fired CapwatchP95LatencyHigh");
        let alerts = get_json(&client, &format!("{api}/alerts")).await;
        let firing = alerts.as_ref().and_then(|a| {
            a["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|alert| alert["labels"]["alertname"] == "CapwatchP95LatencyHigh" && alert["state"] == "firing")
                .cloned()
        });
        if let Some(alert) = firing {
            break alert;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(firing["labels"]["severity"], "warning");
    assert_eq!(firing["labels"]["job"], "capwatch-dashboard");

    // Every rule loaded and evaluates without error; the scrape target is up.
    let groups = get_json(&client, &format!("{api}/rules")).await.unwrap();
    let rules: Vec<&Value> =
        groups["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(rules.len(), 22, "{groups}"); // ab_worse included (one severity), drift (two)
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let targets = get_json(&client, &format!("{api}/targets")).await.unwrap();
    assert_eq!(targets["data"]["activeTargets"][0]["health"], "up", "{targets}");
    drop(prometheus);
    drop(dashboard);
    let _ = std::fs::remove_dir_all(dir);
}
