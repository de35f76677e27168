//! `capwatch export grafana-dashboard`: a Grafana dashboard (JSON model, schema 39) with
//! the panes of the terminal dashboard, built from the dashboard's and the server's
//! Prometheus metrics. Threshold lines and colours come from the config.
//!
//! The data source is a dashboard variable (`datasource`, any Prometheus), so the file
//! imports through the UI and loads through file provisioning alike. The latest caption is
//! not a metric (captions would be unbounded label values); it stays in the JSONL file.

use serde_json::{Value, json};

use crate::config::Config;
use crate::dash::metrics as dash;
use crate::server::metrics as server;

mod panels;
use panels::{Panel, steps, target, value_map};

/// Stable uid, so re-importing replaces the dashboard instead of adding a copy.
pub const DASHBOARD_UID: &str = "capwatch-overview";

const DATASOURCE: &str = "${datasource}";
/// Dashboard and server are scraped as separate targets, so each has its own variable.
/// The dashboard's series of the chosen dashboards (`instance`) and watched servers (`target`).
const INSTANCE: &str = r#"instance=~"$instance",target=~"$target""#;
/// The dashboard's series that are not about one watched server (notifications).
const DASHBOARD: &str = r#"instance=~"$instance""#;
const SERVER_INSTANCE: &str = r#"instance=~"$server_instance""#;

/// The dashboard for `config`.
pub fn dashboard(config: &Config) -> Value {
    let t = &config.thresholds;
    let window = super::prometheus_rules::prom_duration(config.monitoring.window_s.0);
    let no_mappings = json!([]);
    let caption_bucket = format!(r#"{}_bucket{{probe="caption",{INSTANCE}}}"#, dash::PROBE_DURATION_SECONDS);
    let quantile =
        |q: f64| format!("histogram_quantile({q}, sum by (le) (rate({caption_bucket}[$__rate_interval]))) * 1000");
    let caption_probes = format!(r#"{}{{probe="caption",{INSTANCE}}}"#, dash::PROBES_TOTAL);
    let caption_failures = format!(r#"{}{{probe="caption",outcome!="success",{INSTANCE}}}"#, dash::PROBES_TOTAL);
    let quality = dash::CAPTION_QUALITY_RATIO;
    let server_requests = format!(r#"{}_total{{route="/caption",{SERVER_INSTANCE}}}"#, server::HTTP_REQUESTS);
    let status_map = value_map(&[(1, "HEALTHY", "green"), (0, "DOWN", "red")]);
    let severity_map = value_map(&[(0, "OK", "green"), (1, "WARNING", "yellow"), (2, "CRITICAL", "red")]);
    let panels = vec![
        Panel {
            kind: "stat",
            title: "Status",
            description: "Last health check (GET /health) as the dashboard saw it.",
            targets: vec![target(&format!("min({}{{{INSTANCE}}})", dash::SERVICE_HEALTHY), "")],
            unit: "none",
            thresholds: Some(json!([{"color": "red", "value": null}, {"color": "green", "value": 1}])),
            mappings: status_map,
            grid: (0, 0, 4, 4),
        },
        Panel {
            kind: "stat",
            title: "Worst alert",
            description: "The worst alert state across rules: OK, WARNING, CRITICAL.",
            targets: vec![target(&format!("max({}{{{INSTANCE}}})", dash::ALERT_SEVERITY), "")],
            unit: "none",
            thresholds: Some(steps(1.0, 2.0, false)),
            mappings: severity_map.clone(),
            grid: (4, 0, 4, 4),
        },
        Panel {
            kind: "stat",
            title: "P95 latency",
            description: "P95 of successful inference tests over the dashboard's window.",
            targets: vec![target(
                &format!("histogram_quantile(0.95, sum by (le) (rate({caption_bucket}[{window}]))) * 1000"),
                "",
            )],
            unit: "ms",
            thresholds: Some(steps(t.p95_latency_ms.warning, t.p95_latency_ms.critical, false)),
            mappings: no_mappings.clone(),
            grid: (8, 0, 4, 4),
        },
        Panel {
            kind: "stat",
            title: "Error rate",
            description: "Failed inference tests over the dashboard's window.",
            targets: vec![target(
                &format!("sum(rate({caption_failures}[{window}])) / sum(rate({caption_probes}[{window}])) * 100"),
                "",
            )],
            unit: "percent",
            thresholds: Some(steps(t.error_rate_percent.warning, t.error_rate_percent.critical, false)),
            mappings: no_mappings.clone(),
            grid: (12, 0, 4, 4),
        },
        Panel {
            kind: "stat",
            title: "Consecutive failures",
            description: "Inference tests failed in a row.",
            targets: vec![target(&format!("max({}{{{INSTANCE}}})", dash::CONSECUTIVE_FAILURES), "")],
            unit: "none",
            thresholds: Some(steps(t.consecutive_failures.warning, t.consecutive_failures.critical, false)),
            mappings: no_mappings.clone(),
            grid: (16, 0, 4, 4),
        },
        Panel {
            kind: "stat",
            title: "Restarts",
            description: "Server restarts by the supervisor over the selected range; CRASH LOOP once it gave up.",
            targets: vec![
                target(&format!("sum(increase({}{{{INSTANCE}}}[$__range]))", dash::SERVER_RESTARTS_TOTAL), "restarts"),
                target(&format!("max({}{{{INSTANCE}}})", dash::CRASH_LOOP), "crash loop"),
            ],
            unit: "none",
            thresholds: Some(json!([{"color": "green", "value": null}, {"color": "yellow", "value": 1}])),
            mappings: no_mappings.clone(),
            grid: (20, 0, 4, 4),
        },
        Panel {
            kind: "timeseries",
            title: "Latency (successful inference tests)",
            description: "P50/P95/P99 of the dashboard's probes, and P95 of /caption as the server measures it.",
            targets: vec![
                target(&quantile(0.5), "P50"),
                target(&quantile(0.95), "P95"),
                target(&quantile(0.99), "P99"),
                target(
                    &format!(
                        r#"histogram_quantile(0.95, sum by (le) (rate({}_seconds_bucket{{route="/caption",{SERVER_INSTANCE}}}[$__rate_interval]))) * 1000"#,
                        server::HTTP_REQUEST_DURATION
                    ),
                    "server P95",
                ),
            ],
            unit: "ms",
            thresholds: Some(steps(t.p95_latency_ms.warning, t.p95_latency_ms.critical, false)),
            mappings: no_mappings.clone(),
            grid: (0, 4, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Error rate",
            description: "Failed inference tests (dashboard) and 5xx answers to /caption (server).",
            targets: vec![
                target(
                    &format!(
                        "sum(rate({caption_failures}[$__rate_interval])) / sum(rate({caption_probes}[$__rate_interval])) * 100"
                    ),
                    "inference tests",
                ),
                target(
                    &format!(
                        r#"sum(rate({}_total{{route="/caption",status=~"5..",{SERVER_INSTANCE}}}[$__rate_interval])) / sum(rate({server_requests}[$__rate_interval])) * 100"#,
                        server::HTTP_REQUESTS
                    ),
                    "server 5xx",
                ),
            ],
            unit: "percent",
            thresholds: Some(steps(t.error_rate_percent.warning, t.error_rate_percent.critical, false)),
            mappings: no_mappings.clone(),
            grid: (12, 4, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Caption quality",
            description: "Mean share of expected keywords found in captions.",
            targets: vec![target(
                &format!(
                    "sum(rate({quality}_sum{{{INSTANCE}}}[$__rate_interval])) / sum(rate({quality}_count{{{INSTANCE}}}[$__rate_interval]))"
                ),
                "quality",
            )],
            unit: "percentunit",
            thresholds: Some(steps(t.quality_score.warning, t.quality_score.critical, true)),
            mappings: no_mappings.clone(),
            grid: (0, 12, 12, 8),
        },
        Panel {
            kind: "state-timeline",
            title: "Alerts",
            description: "Each rule's state over time, as the dashboard judged it.",
            targets: vec![target(&format!("max by (rule) ({}{{{INSTANCE}}})", dash::ALERT_SEVERITY), "{{rule}}")],
            unit: "none",
            thresholds: Some(steps(1.0, 2.0, false)),
            mappings: severity_map,
            grid: (12, 12, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Probes by outcome",
            description: "Health checks and inference tests per second, by outcome.",
            targets: vec![target(
                &format!("sum by (probe, outcome) (rate({}{{{INSTANCE}}}[$__rate_interval]))", dash::PROBES_TOTAL),
                "{{probe}} {{outcome}}",
            )],
            unit: "reqps",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (0, 20, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Server: inference stages (P95)",
            description: "Where a caption's time goes inside the server: queue, decode, preprocess, encoder, decoder.",
            targets: vec![target(
                &format!(
                    "histogram_quantile(0.95, sum by (stage, le) (rate({}_seconds_bucket{{{SERVER_INSTANCE}}}[$__rate_interval]))) * 1000",
                    server::INFERENCE_STAGE_DURATION
                ),
                "{{stage}}",
            )],
            unit: "ms",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (12, 20, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Server: queue and in-flight requests",
            description: "Caption requests waiting for a worker, and HTTP requests being served.",
            targets: vec![
                target(&format!("sum({}{{{SERVER_INSTANCE}}})", server::QUEUE_DEPTH), "queued"),
                target(&format!("sum({}{{{SERVER_INSTANCE}}})", server::REQUESTS_IN_FLIGHT), "in flight"),
            ],
            unit: "none",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (0, 28, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Alert notifications",
            description: "Notifications per sink: delivered, failed (after retries), dropped (queue full).",
            targets: vec![target(
                &format!(
                    "sum by (sink, outcome) (increase({}{{{DASHBOARD}}}[$__rate_interval]))",
                    dash::NOTIFICATIONS_TOTAL
                ),
                "{{sink}} {{outcome}}",
            )],
            unit: "none",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (12, 28, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "A/B: P95 by model",
            description: "With several model variants: P95 of the dashboard's tests of each variant by name, and the server's own total time per variant (routed and shadow requests).",
            targets: vec![
                target(
                    &format!(
                        "histogram_quantile(0.95, sum by (model, le) (rate({}_bucket{{{INSTANCE}}}[$__rate_interval]))) * 1000",
                        dash::VARIANT_PROBE_DURATION_SECONDS
                    ),
                    "{{model}} (probes)",
                ),
                target(
                    &format!(
                        r#"histogram_quantile(0.95, sum by (model, le) (rate({}_seconds_bucket{{stage="total",{SERVER_INSTANCE}}}[$__rate_interval]))) * 1000"#,
                        server::INFERENCE_STAGE_DURATION
                    ),
                    "{{model}} (server)",
                ),
            ],
            unit: "ms",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (0, 36, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "A/B: errors by model",
            description: "Share of caption requests each variant answered with a 5xx (server), and of the dashboard's tests of it that failed.",
            targets: vec![
                target(
                    &format!(
                        r#"sum by (model) (rate({requests}_total{{status=~"5..",{SERVER_INSTANCE}}}[$__rate_interval])) / sum by (model) (rate({requests}_total{{{SERVER_INSTANCE}}}[$__rate_interval])) * 100"#,
                        requests = server::CAPTION_REQUESTS
                    ),
                    "{{model}} (server)",
                ),
                target(
                    &format!(
                        r#"sum by (model) (rate({probes}{{outcome!="success",{INSTANCE}}}[$__rate_interval])) / sum by (model) (rate({probes}{{{INSTANCE}}}[$__rate_interval])) * 100"#,
                        probes = dash::VARIANT_PROBES_TOTAL
                    ),
                    "{{model}} (probes)",
                ),
            ],
            unit: "percent",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (12, 36, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "A/B: latency against the baseline",
            description: "Each variant's latency over its baseline's on the same images (Hodges-Lehmann; 0.7: 30 % faster), and 1 once it is significantly worse on errors or quality (the ab_worse rule).",
            targets: vec![
                target(
                    &format!("max by (model, baseline) ({}{{{INSTANCE}}})", dash::AB_LATENCY_RATIO),
                    "{{model}} / {{baseline}}",
                ),
                target(&format!("max by (model, baseline) ({}{{{INSTANCE}}})", dash::AB_WORSE), "{{model}} worse"),
            ],
            unit: "none",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (0, 44, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "A/B: shadow agreement",
            description: "Share of the shadow variant's copies whose caption equals the answer's, and copies dropped because its queue was full.",
            targets: vec![
                target(
                    &format!(
                        r#"sum by (model) (rate({shadow}_total{{outcome="agreed",{SERVER_INSTANCE}}}[$__rate_interval])) / sum by (model) (rate({shadow}_total{{outcome=~"agreed|differed",{SERVER_INSTANCE}}}[$__rate_interval])) * 100"#,
                        shadow = server::SHADOW_REQUESTS
                    ),
                    "{{model}} agrees %",
                ),
                target(
                    &format!(
                        r#"sum by (model) (increase({}_total{{outcome="dropped",{SERVER_INSTANCE}}}[$__rate_interval]))"#,
                        server::SHADOW_REQUESTS
                    ),
                    "{{model}} dropped",
                ),
            ],
            unit: "none",
            thresholds: None,
            mappings: no_mappings.clone(),
            grid: (12, 44, 12, 8),
        },
        Panel {
            kind: "timeseries",
            title: "Drift: share of features that differ",
            description: "Share of the server's drift features (image brightness, contrast, colour, size, format; caption length, words; the encoder embedding) whose live window differs from the reference; the drift rule's thresholds. `capwatch drift status` prints the table.",
            targets: vec![
                target(&format!("avg({}{{{SERVER_INSTANCE}}}) * 100", server::DRIFT_FEATURE_DRIFTED), "drifted %"),
                target(
                    &format!("max({}{{{SERVER_INSTANCE}}}) * 100", server::DRIFT_DETECTED),
                    "server verdict (100: drift)",
                ),
            ],
            unit: "percent",
            thresholds: Some(steps(t.drift_share.warning * 100.0, t.drift_share.critical * 100.0, false)),
            mappings: no_mappings,
            grid: (0, 52, 12, 8),
        },
        Panel {
            kind: "state-timeline",
            title: "Drift: features",
            description: "Each drift feature over time: the same as the reference, or drifted (its test: KS, z or chi-square p < 0.05, Jensen-Shannon ≥ 0.1, new words ≥ 5 %, MMD p < 0.05).",
            targets: vec![target(
                &format!("max by (feature) ({}{{{SERVER_INSTANCE}}})", server::DRIFT_FEATURE_DRIFTED),
                "{{feature}}",
            )],
            unit: "none",
            thresholds: None,
            mappings: value_map(&[(0, "same", "green"), (1, "drifted", "red")]),
            grid: (12, 52, 12, 8),
        },
    ];
    let panels: Vec<Value> = panels.into_iter().enumerate().map(|(index, panel)| panel.build(index + 1)).collect();
    json!({
        "uid": DASHBOARD_UID,
        "title": format!("capwatch · {}", config.alerts.service_name),
        "description": "Generated by `capwatch export grafana-dashboard`: the terminal dashboard's panes from Prometheus.",
        "tags": ["capwatch", "image-captioning"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "hide": 0,
                "refresh": 1,
            },
            label_variable("instance", "Instance", &format!("label_values({}, instance)", dash::INFO)),
            label_variable(
                "target",
                "Watched server",
                &format!("label_values({}{{instance=~\"$instance\"}}, target)", dash::SERVER_UP),
            ),
            label_variable("server_instance", "Server", &format!("label_values({}, instance)", server::MODEL_INFO)),
        ]},
        "panels": panels,
    })
}

/// A dashboard variable over a label's values (`query`: `label_values(…)`), any number of
/// them chosen, all by default.
fn label_variable(name: &str, label: &str, query: &str) -> Value {
    json!({
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": DATASOURCE},
        "query": {"query": query, "refId": name},
        "includeAll": true,
        "multi": true,
        "allValue": ".*",
        "refresh": 2,
        "hide": 0,
        "sort": 1,
    })
}
