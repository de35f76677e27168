//! The dashboard's own Prometheus metrics (`GET /metrics` on `prometheus.listen`): what the
//! prober measured and what the monitor decided (health, alerts, restarts, notifications).
//!
//! Names follow Prometheus conventions (`capwatch_monitor_` prefix, base units, `_total`
//! counters, low-cardinality labels) and are constants, because the exported alerting rules
//! and Grafana dashboard (`crate::export`) query them. The latency histogram's buckets
//! include the configured P95 thresholds, so `histogram_quantile` is exact at the lines the
//! rules draw. This module records what `update` says ([`MetricUpdate`]) and serves it;
//! it decides nothing and never reads the dashboard state.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::effect::{Gauges, MetricUpdate, ProbeKind};
use crate::alerts::{AlertEvent, RuleKind, Severity};
use crate::config::Config;
use crate::stats::comparison::Verdict;

/// Exposed series names (what PromQL sees).
pub const PROBE_DURATION_SECONDS: &str = "capwatch_monitor_probe_duration_seconds";
pub const PROBES_TOTAL: &str = "capwatch_monitor_probes_total";
pub const CAPTION_QUALITY_RATIO: &str = "capwatch_monitor_caption_quality_ratio";
pub const CONSECUTIVE_FAILURES: &str = "capwatch_monitor_consecutive_failures";
pub const CONSECUTIVE_HEALTH_FAILURES: &str = "capwatch_monitor_consecutive_health_failures";
pub const SERVICE_HEALTHY: &str = "capwatch_monitor_service_healthy";
pub const SERVER_UP: &str = "capwatch_monitor_server_up";
pub const ALERT_SEVERITY: &str = "capwatch_monitor_alert_severity";
pub const ALERT_EVENTS_TOTAL: &str = "capwatch_monitor_alert_events_total";
pub const SERVER_RESTARTS_TOTAL: &str = "capwatch_monitor_server_restarts_total";
pub const CRASH_LOOP: &str = "capwatch_monitor_crash_loop";
pub const TEST_CYCLES_TOTAL: &str = "capwatch_monitor_test_cycles_total";
pub const NOTIFICATIONS_TOTAL: &str = "capwatch_monitor_notifications_total";
pub const INFO: &str = "capwatch_monitor_info";
pub const VARIANT_PROBE_DURATION_SECONDS: &str = "capwatch_monitor_variant_probe_duration_seconds";
pub const VARIANT_PROBES_TOTAL: &str = "capwatch_monitor_variant_probes_total";
pub const VARIANT_CAPTION_QUALITY_RATIO: &str = "capwatch_monitor_variant_caption_quality_ratio";
pub const AB_LATENCY_RATIO: &str = "capwatch_monitor_ab_latency_ratio";
pub const AB_WORSE: &str = "capwatch_monitor_ab_worse";
pub const AB_PAIRS: &str = "capwatch_monitor_ab_pairs";
pub const INSTANCES: &str = "capwatch_monitor_instances";

/// `probe` label values.
pub const PROBE_CAPTION: &str = "caption";
pub const PROBE_HEALTH: &str = "health";

/// The watched instance a series is about (`local` for capwatch's own child; a URL's host and
/// port, or the configured name, for `monitor`). Not `instance`: Prometheus sets that one to
/// the scraped address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    target: String,
    probe: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeOutcomeLabels {
    target: String,
    probe: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    target: String,
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertEventLabels {
    target: String,
    rule: &'static str,
    severity: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcomeLabels {
    sink: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    target: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelOutcomeLabels {
    target: String,
    model: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    target: String,
    model: String,
    baseline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: &'static str,
    model: String,
    service: String,
}

/// Histogram buckets, shared by every series of a family.
#[derive(Clone)]
struct Buckets(Arc<[f64]>);

impl Buckets {
    /// `base` plus `extra`, sorted, without duplicates or non-positive values.
    fn new(base: &[f64], extra: &[f64]) -> Self {
        let mut buckets: Vec<f64> = base.iter().chain(extra).copied().filter(|b| b.is_finite() && *b > 0.0).collect();
        buckets.sort_by(f64::total_cmp);
        buckets.dedup();
        Self(buckets.into())
    }
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Latency buckets (seconds) before the configured thresholds are added.
const LATENCY_BUCKETS_S: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const QUALITY_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// All dashboard metrics and their registry.
pub struct DashMetrics {
    registry: Registry,
    probe_duration: Family<ProbeLabels, Histogram, Buckets>,
    probes: Family<ProbeOutcomeLabels, Counter>,
    caption_quality: Family<TargetLabels, Histogram, Buckets>,
    consecutive_failures: Family<TargetLabels, Gauge>,
    consecutive_health_failures: Family<TargetLabels, Gauge>,
    service_healthy: Family<TargetLabels, Gauge>,
    server_up: Family<TargetLabels, Gauge>,
    alert_severity: Family<RuleLabels, Gauge>,
    alert_events: Family<AlertEventLabels, Counter>,
    server_restarts: Family<TargetLabels, Counter>,
    crash_loop: Family<TargetLabels, Gauge>,
    test_cycles: Family<TargetLabels, Counter>,
    notifications: Family<SinkOutcomeLabels, Counter>,
    variant_probe_duration: Family<ModelLabels, Histogram, Buckets>,
    variant_probes: Family<ModelOutcomeLabels, Counter>,
    variant_quality: Family<ModelLabels, Histogram, Buckets>,
    ab_latency_ratio: Family<PairLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    ab_worse: Family<PairLabels, Gauge>,
    ab_pairs: Family<PairLabels, Gauge>,
    instances: Gauge,
}

/// Registration name: the exposed name without the suffix the encoder adds back.
fn base(name: &'static str, suffix: &str) -> &'static str {
    name.strip_suffix(suffix).unwrap_or(name)
}

impl DashMetrics {
    /// Registers every metric; `sinks` pre-creates the notification series at zero, `targets`
    /// (the watched instances' names) the per-instance ones.
    pub fn new(config: &Config, sinks: &[String], targets: &[String]) -> Self {
        let mut registry = Registry::default();
        let t = &config.thresholds;
        let latency_buckets =
            Buckets::new(&LATENCY_BUCKETS_S, &[t.p95_latency_ms.warning / 1000.0, t.p95_latency_ms.critical / 1000.0]);
        let probe_duration = Family::new_with_constructor(latency_buckets.clone());
        registry.register_with_unit(
            base(PROBE_DURATION_SECONDS, "_seconds"),
            "Round-trip time of successful probes as the dashboard measured it (caption: one inference test; health: GET /health)",
            Unit::Seconds,
            probe_duration.clone(),
        );
        let probes = Family::<ProbeOutcomeLabels, Counter>::default();
        registry.register(
            base(PROBES_TOTAL, "_total"),
            "Probes by kind and outcome (success, unhealthy, timeout, connection_refused, http_4xx, http_5xx, bad_body)",
            probes.clone(),
        );
        let quality = Buckets::new(&QUALITY_BUCKETS, &[t.quality_score.warning, t.quality_score.critical]);
        let caption_quality = Family::<TargetLabels, Histogram, Buckets>::new_with_constructor(quality.clone());
        registry.register(
            CAPTION_QUALITY_RATIO,
            "Caption quality score of successful inference tests: share of expected keywords found (0..1)",
            caption_quality.clone(),
        );
        let gauge = |registry: &mut Registry, name: &'static str, help: &str| {
            let gauge = Family::<TargetLabels, Gauge>::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let consecutive_failures =
            gauge(&mut registry, CONSECUTIVE_FAILURES, "Inference tests failed in a row (0 after a success)");
        let consecutive_health_failures =
            gauge(&mut registry, CONSECUTIVE_HEALTH_FAILURES, "Health checks failed in a row (0 after a healthy one)");
        let service_healthy = gauge(&mut registry, SERVICE_HEALTHY, "1 if the last health check answered healthy");
        let server_up =
            gauge(&mut registry, SERVER_UP, "1 while the server is running and ready (always 1 for monitor --url)");
        let alert_severity = Family::<RuleLabels, Gauge>::default();
        registry.register(ALERT_SEVERITY, "Alert state per rule: 0 OK, 1 WARNING, 2 CRITICAL", alert_severity.clone());
        let alert_events = Family::<AlertEventLabels, Counter>::default();
        registry.register(
            base(ALERT_EVENTS_TOTAL, "_total"),
            "Alert events, by rule, severity and reason (fired, escalated, deescalated, repeated, resolved)",
            alert_events.clone(),
        );
        let server_restarts = Family::<TargetLabels, Counter>::default();
        registry.register(
            base(SERVER_RESTARTS_TOTAL, "_total"),
            "Times the supervised server was started again",
            server_restarts.clone(),
        );
        let crash_loop =
            gauge(&mut registry, CRASH_LOOP, "1 once the supervisor stopped restarting a crash-looping server");
        let test_cycles = Family::<TargetLabels, Counter>::default();
        registry.register(base(TEST_CYCLES_TOTAL, "_total"), "Inference test cycles completed", test_cycles.clone());
        let notifications = Family::<SinkOutcomeLabels, Counter>::default();
        registry.register(
            base(NOTIFICATIONS_TOTAL, "_total"),
            "Alert notifications by sink and outcome (delivered, failed, dropped)",
            notifications.clone(),
        );
        let variant_probe_duration = Family::new_with_constructor(latency_buckets);
        registry.register_with_unit(
            base(VARIANT_PROBE_DURATION_SECONDS, "_seconds"),
            "Round-trip time of successful inference tests of one model variant asked for by name (A/B)",
            Unit::Seconds,
            variant_probe_duration.clone(),
        );
        let variant_probes = Family::<ModelOutcomeLabels, Counter>::default();
        registry.register(
            base(VARIANT_PROBES_TOTAL, "_total"),
            "Inference tests of one model variant asked for by name, by outcome (A/B)",
            variant_probes.clone(),
        );
        let variant_quality = Family::new_with_constructor(quality.clone());
        registry.register(
            VARIANT_CAPTION_QUALITY_RATIO,
            "Caption quality score of successful inference tests of one model variant (A/B)",
            variant_quality.clone(),
        );
        let ab_latency_ratio = Family::<PairLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            AB_LATENCY_RATIO,
            "A variant's latency over its baseline's on the same images (Hodges-Lehmann on log latency; 0.7: 30 % faster)",
            ab_latency_ratio.clone(),
        );
        let ab_worse = Family::<PairLabels, Gauge>::default();
        registry.register(
            AB_WORSE,
            "1 once a variant is significantly worse than its baseline on errors or caption quality (always-valid p < 0.05)",
            ab_worse.clone(),
        );
        let ab_pairs = Family::<PairLabels, Gauge>::default();
        registry.register(AB_PAIRS, "Image pairs a variant and its baseline both answered", ab_pairs.clone());
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(INFO, "The monitor's version, model and service name (always 1)", info.clone());
        info.get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION"),
            model: config.service.model_name(),
            service: config.alerts.service_name.clone(),
        })
        .set(1);
        let instances = Gauge::default();
        registry.register(
            INSTANCES,
            "Instances watched now: the static ones and those discovery lists",
            instances.clone(),
        );
        instances.set(i64::try_from(targets.len()).unwrap_or(i64::MAX));
        for sink in sinks {
            for outcome in ["delivered", "failed", "dropped"] {
                drop(notifications.get_or_create(&SinkOutcomeLabels { sink: sink.clone(), outcome }));
            }
        }
        let metrics = Self {
            registry,
            probe_duration,
            probes,
            caption_quality,
            consecutive_failures,
            consecutive_health_failures,
            service_healthy,
            server_up,
            alert_severity,
            alert_events,
            server_restarts,
            crash_loop,
            test_cycles,
            notifications,
            variant_probe_duration,
            variant_probes,
            variant_quality,
            ab_latency_ratio,
            ab_worse,
            ab_pairs,
            instances,
        };
        for target in targets {
            metrics.add_target(target);
        }
        metrics
    }

    /// Creates an instance's series at zero (at the start, or when it joins the fleet), so
    /// rates and panels have data at once.
    pub fn add_target(&self, target: &str) {
        let of = || TargetLabels { target: target.to_owned() };
        for rule in RuleKind::ALL {
            self.alert_severity.get_or_create(&RuleLabels { target: target.to_owned(), rule: rule.name() }).set(0);
        }
        for probe in [PROBE_CAPTION, PROBE_HEALTH] {
            drop(self.probe_duration.get_or_create(&ProbeLabels { target: target.to_owned(), probe }));
            drop(self.probes.get_or_create(&ProbeOutcomeLabels {
                target: target.to_owned(),
                probe,
                outcome: "success",
            }));
        }
        for family in self.target_gauges() {
            drop(family.get_or_create(&of()));
        }
        drop(self.caption_quality.get_or_create(&of()));
        drop(self.server_restarts.get_or_create(&of()));
        drop(self.test_cycles.get_or_create(&of()));
    }

    /// The per-instance gauges (what an instance that leaves takes with it).
    fn target_gauges(&self) -> [&Family<TargetLabels, Gauge>; 5] {
        [
            &self.consecutive_failures,
            &self.consecutive_health_failures,
            &self.service_healthy,
            &self.server_up,
            &self.crash_loop,
        ]
    }

    /// An instance left the fleet: its gauges go (a gauge of something gone would read as
    /// current); its counters and histograms stay, as totals of the session.
    fn remove_target(&self, target: &str) {
        let of = TargetLabels { target: target.to_owned() };
        for family in self.target_gauges() {
            family.remove(&of);
        }
        for rule in RuleKind::ALL {
            self.alert_severity.remove(&RuleLabels { target: target.to_owned(), rule: rule.name() });
        }
    }

    /// Records one update the dashboard decided about the instance named `target`.
    pub fn apply(&self, target: &str, update: &MetricUpdate) {
        let target = target.to_owned();
        let of = || TargetLabels { target: target.clone() };
        match update {
            MetricUpdate::Probe { probe, outcome, latency } => {
                let probe = match probe {
                    ProbeKind::Caption => PROBE_CAPTION,
                    ProbeKind::Health => PROBE_HEALTH,
                };
                // Like the dashboard's own percentiles, the histogram holds successful probes
                // only; failures (timeouts included) are counted by outcome instead.
                if *outcome == "success" {
                    self.probe_duration
                        .get_or_create(&ProbeLabels { target: target.clone(), probe })
                        .observe(latency.as_secs_f64());
                }
                self.probes.get_or_create(&ProbeOutcomeLabels { target, probe, outcome }).inc();
            }
            MetricUpdate::CaptionQuality(score) => self.caption_quality.get_or_create(&of()).observe(*score),
            MetricUpdate::Alert(alert) => self.observe_alert(target, alert),
            MetricUpdate::ServerRestart => {
                self.server_restarts.get_or_create(&of()).inc();
            }
            MetricUpdate::TestCycle => {
                self.test_cycles.get_or_create(&of()).inc();
            }
            MetricUpdate::Notification { sink, outcome } => {
                self.notifications.get_or_create(&SinkOutcomeLabels { sink: sink.clone(), outcome }).inc();
            }
            MetricUpdate::Gauges(gauges) => self.set_gauges(&target, gauges),
            MetricUpdate::Instances(count) => drop(self.instances.set(i64::try_from(*count).unwrap_or(i64::MAX))),
            MetricUpdate::TargetLeft => self.remove_target(&target),
            MetricUpdate::VariantProbe { model, outcome, latency, quality } => {
                let labels = ModelLabels { target: target.clone(), model: model.clone() };
                if *outcome == "success" {
                    self.variant_probe_duration.get_or_create(&labels).observe(latency.as_secs_f64());
                }
                if let Some(quality) = quality {
                    self.variant_quality.get_or_create(&labels).observe(*quality);
                }
                self.variant_probes.get_or_create(&ModelOutcomeLabels { target, model: model.clone(), outcome }).inc();
            }
            MetricUpdate::Ab(figures) => {
                let labels = PairLabels { target, model: figures.b.name.clone(), baseline: figures.a.name.clone() };
                if let Some(ratio) = &figures.latency_ratio {
                    self.ab_latency_ratio.get_or_create(&labels).set(ratio.value);
                }
                let worse = matches!(
                    &figures.verdict,
                    Verdict::MoreErrors { worse, .. } | Verdict::LowerQuality { worse, .. } if *worse == figures.b.name
                );
                self.ab_worse.get_or_create(&labels).set(i64::from(worse));
                self.ab_pairs.get_or_create(&labels).set(figures.pairs as i64);
            }
        }
    }

    fn observe_alert(&self, target: String, alert: &AlertEvent) {
        let reason = alert.transition.name();
        let severity = match alert.severity {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        };
        self.alert_events.get_or_create(&AlertEventLabels { target, rule: alert.rule.name(), severity, reason }).inc();
    }

    fn set_gauges(&self, target: &str, gauges: &Gauges) {
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let of = TargetLabels { target: target.to_owned() };
        self.consecutive_failures.get_or_create(&of).set(as_gauge(gauges.consecutive_failures));
        self.consecutive_health_failures.get_or_create(&of).set(as_gauge(gauges.consecutive_health_failures));
        self.service_healthy.get_or_create(&of).set(i64::from(gauges.service_healthy));
        self.server_up.get_or_create(&of).set(i64::from(gauges.server_up));
        self.crash_loop.get_or_create(&of).set(i64::from(gauges.crash_loop));
        for (rule, severity) in &gauges.alert_severity {
            let level = match severity {
                Severity::Ok => 0,
                Severity::Warning => 1,
                Severity::Critical => 2,
            };
            self.alert_severity.get_or_create(&RuleLabels { target: target.to_owned(), rule: rule.name() }).set(level);
        }
    }

    /// The exposition text (OpenMetrics).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Serves `GET /metrics` until the task is aborted.
pub async fn serve(metrics: Arc<DashMetrics>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let handler = move || {
        let metrics = Arc::clone(&metrics);
        async move {
            match metrics.encode() {
                Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, crate::server::metrics::CONTENT_TYPE)], text),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "cannot encode metrics".to_owned(),
                ),
            }
        }
    };
    let app = axum::Router::new().route("/metrics", get(handler));
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertTransition;

    #[test]
    fn latency_buckets_include_the_thresholds() {
        let buckets = Buckets::new(&LATENCY_BUCKETS_S, &[4.0, 8.0, 5.0]);
        assert!(buckets.0.contains(&4.0) && buckets.0.contains(&8.0));
        assert_eq!(buckets.0.iter().filter(|b| **b == 5.0).count(), 1);
        assert!(buckets.0.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn exposition_has_the_documented_names() {
        let metrics = DashMetrics::new(&Config::default(), &["slack".to_owned()], &["local".to_owned()]);
        metrics.apply(
            "local",
            &MetricUpdate::Alert(AlertEvent {
                rule: RuleKind::ErrorRate,
                severity: Severity::Warning,
                transition: AlertTransition::Fired,
                value: 0.2,
                threshold: 0.1,
                instance: None,
            }),
        );
        let text = metrics.encode().unwrap();
        for name in [
            PROBE_DURATION_SECONDS,
            PROBES_TOTAL,
            CAPTION_QUALITY_RATIO,
            CONSECUTIVE_FAILURES,
            CONSECUTIVE_HEALTH_FAILURES,
            SERVICE_HEALTHY,
            SERVER_UP,
            ALERT_SEVERITY,
            ALERT_EVENTS_TOTAL,
            SERVER_RESTARTS_TOTAL,
            CRASH_LOOP,
            TEST_CYCLES_TOTAL,
            NOTIFICATIONS_TOTAL,
            INFO,
        ] {
            assert!(text.lines().any(|line| line.starts_with(name)), "{name} missing from\n{text}");
        }
        assert!(text.contains(r#"capwatch_monitor_server_up{target="local"} 0"#), "{text}");
        assert!(
            text.contains(r#"capwatch_monitor_probe_duration_seconds_bucket{le="4.0",target="local",probe="caption"}"#),
            "{text}"
        );
        assert!(text.contains(r#"capwatch_monitor_notifications_total{sink="slack",outcome="failed"} 0"#), "{text}");
        assert!(
            text.contains(
                r#"capwatch_monitor_alert_events_total{target="local",rule="error_rate",severity="warning",reason="fired"} 1"#
            ),
            "{text}"
        );
    }
}
