//! `capwatch export prometheus-rules`: Prometheus alerting rules equivalent to the
//! configured thresholds, for teams whose paging goes through Prometheus + Alertmanager.
//!
//! Group `capwatch-dashboard` judges the dashboard's own metrics exactly as the dashboard
//! does (same window, same minimum samples; P95 over successful probes); group
//! `capwatch-server` judges the server's `/metrics` directly, for servers no dashboard
//! watches. Warning and critical are two rules with one alert name and a `severity` label,
//! so an Alertmanager inhibit rule can mute the warning while the critical fires.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::alerts::{self, Direction, RuleKind};
use crate::config::Config;
use crate::dash::metrics as dash;
use crate::server::metrics as server;

/// A rules file (`groups:`), as `promtool check rules` reads it.
#[derive(Debug, Serialize)]
pub struct RulesFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<AlertingRule>,
}

#[derive(Debug, Serialize)]
pub struct AlertingRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_duration: String,
    /// How long an alert keeps firing after its condition cleared (Prometheus 2.42+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A Prometheus duration: `5m`, `90s`, `1500ms`.
pub fn prom_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        "0s".to_owned()
    } else if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// Both severities of one condition; `compare` is `>=` or `<=`.
struct Condition<'a> {
    alert: &'a str,
    rule: &'a str,
    /// The value, with `{cmp}` and `{threshold}` left for each severity.
    expr: String,
    warning: f64,
    critical: f64,
    for_duration: String,
    summary: &'a str,
    /// Says what the value is; `{{ $value }}` is filled in by Prometheus.
    description: String,
}

/// A condition with one severity.
struct OneRule<'a> {
    alert: &'a str,
    rule: &'a str,
    expr: String,
    for_duration: &'a str,
    severity: &'a str,
    summary: &'a str,
    description: &'a str,
}

struct RuleBuilder<'a> {
    service: &'a str,
    /// `thresholds.hysteresis_percent` as a fraction.
    hysteresis: f64,
    /// `keep_firing_for:` of the threshold rules (`thresholds.for_s`), if set.
    keep_firing_for: Option<String>,
}

impl RuleBuilder<'_> {
    /// The warning and critical rules of `condition`. With hysteresis, a firing alert keeps
    /// firing until the value is clear of its threshold by the band, as on the dashboard:
    /// `(value >= T) or (value >= T×(1−h) and on (job, instance, target) ALERTS{…firing})`.
    fn both(&self, condition: &Condition<'_>, direction: Direction) -> [AlertingRule; 2] {
        [("warning", condition.warning), ("critical", condition.critical)].map(|(severity, threshold)| {
            let at = |threshold: f64| condition.expr.replace("{threshold}", &threshold.to_string());
            let held = round(match direction {
                Direction::Above => threshold - threshold.abs() * self.hysteresis,
                Direction::Below => threshold + threshold.abs() * self.hysteresis,
            });
            let expr = if held == threshold {
                at(threshold)
            } else {
                let firing =
                    format!(r#"ALERTS{{alertname="{}",severity="{severity}",alertstate="firing"}}"#, condition.alert);
                format!("({}) or ({} and on ({BY}) {firing})", at(threshold), at(held))
            };
            let mut rule = self.single(&OneRule {
                alert: condition.alert,
                rule: condition.rule,
                expr,
                for_duration: &condition.for_duration,
                severity,
                summary: &format!("{} ({severity})", condition.summary),
                description: &condition.description.replace("{threshold}", &threshold.to_string()),
            });
            rule.keep_firing_for.clone_from(&self.keep_firing_for);
            rule
        })
    }

    fn single(&self, rule: &OneRule<'_>) -> AlertingRule {
        AlertingRule {
            alert: rule.alert.to_owned(),
            expr: rule.expr.clone(),
            for_duration: rule.for_duration.to_owned(),
            keep_firing_for: None,
            labels: BTreeMap::from([
                ("severity".to_owned(), rule.severity.to_owned()),
                ("service".to_owned(), self.service.to_owned()),
                ("rule".to_owned(), rule.rule.to_owned()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_owned(), rule.summary.to_owned()),
                ("description".to_owned(), rule.description.to_owned()),
            ]),
        }
    }
}

/// A rule's error-rate fraction as the percentage the expressions compare against
/// (rounded to nine decimals, so 0.07 reads 7, not 7.000000000000001).
fn percent(fraction: f64) -> f64 {
    round(fraction * 100.0)
}

/// Rounded to nine decimals, so thresholds read as written.
fn round(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

/// Labels that keep one capwatch instance apart from another in every aggregation: the
/// scraped process (`job`, `instance`) and, for a dashboard that watches several servers,
/// the watched one (`target`; absent on a server's own series, which changes nothing there).
const BY: &str = "job, instance, target";

/// The rules for `config`.
pub fn rules(config: &Config) -> RulesFile {
    let t = &config.thresholds;
    let window = prom_duration(config.monitoring.window_s.0);
    let for_duration = prom_duration(config.prometheus.rule_for_s.0);
    let min = t.min_samples;
    let b = RuleBuilder {
        service: &config.alerts.service_name,
        hysteresis: t.hysteresis_percent / 100.0,
        keep_firing_for: t.for_s.map(|s| prom_duration(s.0)),
    };
    let caption_success = format!(r#"{}{{probe="caption",outcome="success"}}"#, dash::PROBES_TOTAL);
    let caption_all = format!(r#"{}{{probe="caption"}}"#, dash::PROBES_TOTAL);
    let enough = |series: &str| format!("and on ({BY}) sum by ({BY}) (increase({series}[{window}])) >= {min}");

    let quality = dash::CAPTION_QUALITY_RATIO;
    let rules = alerts::rules(config);
    let mut dashboard = Vec::new();
    for rule in &rules {
        let condition = match rule.kind {
            RuleKind::P95Latency => Condition {
                alert: "CapwatchP95LatencyHigh",
                rule: "p95_latency",
                expr: format!(
                    r#"histogram_quantile(0.95, sum by ({BY}, le) (rate({}_bucket{{probe="caption"}}[{window}]))) * 1000 >= {{threshold}} {}"#,
                    dash::PROBE_DURATION_SECONDS,
                    enough(&caption_success)
                ),
                warning: rule.warning,
                critical: rule.critical,
                for_duration: for_duration.clone(),
                summary: "capwatch caption P95 latency is high",
                description: format!(
                    "P95 of successful inference tests over {window} is {{{{ $value | printf \"%.0f\" }}}} ms (threshold {{threshold}} ms) on {{{{ $labels.instance }}}}."
                ),
            },
            RuleKind::ErrorRate => Condition {
                alert: "CapwatchErrorRateHigh",
                rule: "error_rate",
                expr: format!(
                    r#"sum by ({BY}) (rate({}{{probe="caption",outcome!="success"}}[{window}])) / sum by ({BY}) (rate({caption_all}[{window}])) * 100 >= {{threshold}} {}"#,
                    dash::PROBES_TOTAL,
                    enough(&caption_all)
                ),
                warning: percent(rule.warning),
                critical: percent(rule.critical),
                for_duration: for_duration.clone(),
                summary: "capwatch inference tests are failing",
                description: format!(
                    "{{{{ $value | printf \"%.1f\" }}}} % of inference tests failed over {window} (threshold {{threshold}} %) on {{{{ $labels.instance }}}}."
                ),
            },
            RuleKind::ConsecutiveFailures => Condition {
                alert: "CapwatchConsecutiveFailures",
                rule: "consecutive_failures",
                expr: format!("{} >= {{threshold}}", dash::CONSECUTIVE_FAILURES),
                warning: rule.warning,
                critical: rule.critical,
                for_duration: "0s".to_owned(),
                summary: "capwatch inference tests fail in a row",
                description:
                    "{{ $value }} inference tests failed in a row (threshold {threshold}) on {{ $labels.instance }}."
                        .to_owned(),
            },
            RuleKind::QualityScore => Condition {
                alert: "CapwatchCaptionQualityLow",
                rule: "quality_score",
                expr: format!(
                    "sum by ({BY}) (rate({quality}_sum[{window}])) / sum by ({BY}) (rate({quality}_count[{window}])) <= {{threshold}} {}",
                    enough(&format!("{quality}_count"))
                ),
                warning: rule.warning,
                critical: rule.critical,
                for_duration: for_duration.clone(),
                summary: "capwatch caption quality dropped",
                description: format!(
                    "Mean caption quality over {window} is {{{{ $value | printf \"%.2f\" }}}} (threshold {{threshold}}): captions miss expected keywords on {{{{ $labels.instance }}}}."
                ),
            },
            RuleKind::HealthDown => Condition {
                alert: "CapwatchHealthCheckFailing",
                rule: "health_down",
                expr: format!("{} >= {{threshold}}", dash::CONSECUTIVE_HEALTH_FAILURES),
                warning: rule.warning,
                critical: rule.critical,
                for_duration: "0s".to_owned(),
                summary: "capwatch health checks fail",
                description:
                    "{{ $value }} health checks failed in a row (threshold {threshold}) on {{ $labels.instance }}."
                        .to_owned(),
            },
            // Raised by the supervisor, not by thresholds: one rule each, below.
            RuleKind::CrashLoop | RuleKind::StartFailed => continue,
            // Exported from the server's own drift series (below), not from the dashboard's.
            RuleKind::Drift => continue,
            // One severity, as configured (`thresholds.ab_worse`).
            RuleKind::AbWorse => {
                dashboard.push(b.single(&OneRule {
                    alert: "CapwatchVariantWorse",
                    rule: "ab_worse",
                    expr: format!("max by ({BY}, model, baseline) ({}) >= 1", dash::AB_WORSE),
                    for_duration: "0s",
                    severity: if rule.critical.is_finite() { "critical" } else { "warning" },
                    summary: "a model variant is significantly worse than its baseline",
                    description: "Variant {{ $labels.model }} fails more often or writes poorer captions than {{ $labels.baseline }} (A/B, always-valid p < 0.05) on {{ $labels.instance }}.",
                }));
                continue;
            }
        };
        dashboard.extend(b.both(&condition, rule.direction));
    }
    dashboard.push(b.single(&OneRule {
        alert: "CapwatchCrashLoop",
        rule: "crash_loop",
        expr: format!("{} == 1", dash::CRASH_LOOP),
        for_duration: "0s",
        severity: "critical",
        summary: "capwatch stopped restarting a crash-looping server",
        description: "The server restarted too often; automatic restarts are off until someone intervenes on {{ $labels.instance }}.",
    }));
    dashboard.push(b.single(&OneRule {
        alert: "CapwatchServerCannotStart",
        rule: "start_failed",
        expr: format!(r#"{}{{rule="start_failed"}} == 2"#, dash::ALERT_SEVERITY),
        for_duration: "0s",
        severity: "critical",
        summary: "capwatch cannot start the server",
        description: "The server exits with an error a restart cannot fix (model, ONNX Runtime, address or config) on {{ $labels.instance }}; the dashboard's log says which.",
    }));
    dashboard.push(b.single(&OneRule {
        alert: "CapwatchNotificationsFailing",
        rule: "notifications",
        expr: format!( r#"sum by ({BY}, sink) (increase({}{{outcome!="delivered"}}[{window}])) > 0"#, dash::NOTIFICATIONS_TOTAL ),
        for_duration: "0s",
        severity: "warning",
        summary: "capwatch cannot deliver alert notifications",
        description: "Notifications to sink {{ $labels.sink }} failed or were dropped in the last window on {{ $labels.instance }}.",
    }));

    let requests = format!("{}_total", server::HTTP_REQUESTS);
    let caption_route = r#"route="/caption""#;
    let mut served = Vec::new();
    for rule in &rules {
        let condition = match rule.kind {
            RuleKind::P95Latency => Condition {
                alert: "CapwatchServerP95LatencyHigh",
                rule: "p95_latency",
                expr: format!(
                    "histogram_quantile(0.95, sum by ({BY}, le) (rate({}_seconds_bucket{{{caption_route}}}[{window}]))) * 1000 >= {{threshold}} and on ({BY}) sum by ({BY}) (increase({requests}{{{caption_route}}}[{window}])) >= {min}",
                    server::HTTP_REQUEST_DURATION
                ),
                warning: rule.warning,
                critical: rule.critical,
                for_duration: for_duration.clone(),
                summary: "capwatch server: /caption P95 latency is high",
                description: format!(
                    "P95 of /caption requests over {window}, as the server measures them, is {{{{ $value | printf \"%.0f\" }}}} ms (threshold {{threshold}} ms) on {{{{ $labels.instance }}}}."
                ),
            },
            RuleKind::ErrorRate => Condition {
                alert: "CapwatchServerErrorRateHigh",
                rule: "error_rate",
                expr: format!(
                    r#"sum by ({BY}) (rate({requests}{{{caption_route},status=~"5.."}}[{window}])) / sum by ({BY}) (rate({requests}{{{caption_route}}}[{window}])) * 100 >= {{threshold}} and on ({BY}) sum by ({BY}) (increase({requests}{{{caption_route}}}[{window}])) >= {min}"#
                ),
                warning: percent(rule.warning),
                critical: percent(rule.critical),
                for_duration: for_duration.clone(),
                summary: "capwatch server: /caption answers 5xx",
                description: format!(
                    "{{{{ $value | printf \"%.1f\" }}}} % of /caption requests got a 5xx over {window} (threshold {{threshold}} %) on {{{{ $labels.instance }}}}."
                ),
            },
            RuleKind::Drift => Condition {
                alert: "CapwatchDrift",
                rule: "drift",
                expr: format!("avg by ({BY}) ({}) * 100 >= {{threshold}}", server::DRIFT_FEATURE_DRIFTED),
                warning: percent(rule.warning),
                critical: percent(rule.critical),
                for_duration: for_duration.clone(),
                summary: "capwatch server: requests or captions drift from the reference",
                description: "{{ $value | printf \"%.0f\" }} % of the drift features differ from the reference (threshold {threshold} %) on {{ $labels.instance }}; `capwatch drift status` says which.".to_owned(),
            },
            _ => continue,
        };
        served.extend(b.both(&condition, rule.direction));
    }
    served.push(b.single(&OneRule {
        alert: "CapwatchServerNotReady",
        rule: "health_down",
        expr: format!("{} == 0", server::READY),
        for_duration: &for_duration,
        severity: "critical",
        summary: "capwatch server is not ready",
        description: "The model is not loaded or warmed up on {{ $labels.instance }}.",
    }));

    let watchdog = b.single(&OneRule {
        alert: "CapwatchWatchdog",
        rule: "watchdog",
        expr: "vector(1)".to_owned(),
        for_duration: "0s",
        severity: "none",
        summary: "Always firing: proves that Prometheus and Alertmanager deliver alerts",
        description: "A dead man's switch: route it to a receiver that alarms when it stops arriving \
                      (see docs/src/prometheus.md, \"Watchdog\"); never silence it.",
    });

    RulesFile {
        groups: vec![
            RuleGroup { name: "capwatch-dashboard".to_owned(), rules: dashboard },
            RuleGroup { name: "capwatch-server".to_owned(), rules: served },
            RuleGroup { name: "capwatch-meta".to_owned(), rules: vec![watchdog] },
        ],
    }
}

/// The rules file as YAML, with a header saying where it came from.
pub fn render(config: &Config, source: &str) -> Result<String, serde_yaml_ng::Error> {
    let yaml = serde_yaml_ng::to_string(&rules(config))?;
    Ok(format!(
        "# Prometheus alerting rules generated by `capwatch export prometheus-rules` (capwatch {}) from {source}.\n\
         # Thresholds, window and min_samples are the config's; regenerate after changing them.\n\
         # Check: promtool check rules FILE. Load: rule_files: [FILE] in prometheus.yml.\n{yaml}",
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_prometheus() {
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn thresholds_come_from_the_config() {
        let mut config = Config::default();
        config.thresholds.p95_latency_ms.warning = 1234.0;
        config.thresholds.min_samples = 7;
        let file = rules(&config);
        let p95: Vec<_> = file.groups[0].rules.iter().filter(|r| r.alert == "CapwatchP95LatencyHigh").collect();
        assert_eq!(p95.len(), 2);
        assert_eq!(p95[0].labels["severity"], "warning");
        assert!(p95[0].expr.contains("* 1000 >= 1234 and on"), "{}", p95[0].expr);
        assert!(p95[0].expr.contains("[5m])) >= 7"), "{}", p95[0].expr);
        assert!(p95[1].expr.contains(">= 8000 "), "{}", p95[1].expr);
        assert!(p95[0].annotations["description"].contains("(threshold 1234 ms)"));
        assert!(p95[0].annotations["description"].contains("{{ $value | printf \"%.0f\" }}"));
    }

    #[test]
    fn the_watchdog_always_fires_with_severity_none() {
        let file = rules(&Config::default());
        let meta = file.groups.iter().find(|g| g.name == "capwatch-meta").unwrap();
        assert_eq!(meta.rules.len(), 1);
        let watchdog = &meta.rules[0];
        assert_eq!((watchdog.alert.as_str(), watchdog.expr.as_str()), ("CapwatchWatchdog", "vector(1)"));
        assert_eq!(watchdog.labels["severity"], "none");
    }
}
