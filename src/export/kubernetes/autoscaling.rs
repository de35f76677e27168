//! The objects around the Deployment that scale, scrape and alert: the HorizontalPodAutoscaler
//! on `capwatch_requests_in_flight`, the prometheus-adapter rule that exposes it, the
//! ServiceMonitor and the PrometheusRule.

use serde_json::{Value, json};

use super::*;

pub(super) fn autoscaler(target: &Target, measured: &Measurement) -> Manifest {
    Manifest {
        file_name: "hpa.yaml",
        object: json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": target.metadata(&target.name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.name},
                "minReplicas": target.min_replicas,
                "maxReplicas": target.max_replicas,
                "metrics": [{
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": HPA_METRIC},
                        "target": {"type": "AverageValue", "averageValue": measured.workers.to_string()},
                    },
                }],
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": SCALE_DOWN_STABILIZATION_S,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                    },
                },
            },
        }),
        header: vec![
            format!("Scales on {HPA_METRIC}, the requests each pod is serving (its own /metrics, through"),
            "prometheus-adapter: prometheus-adapter.yaml). Concurrency is what a replica count divides".to_owned(),
            "(Little's law: in flight = rate x time), so the autoscaler's ratio lands on the right count, unlike"
                .to_owned(),
            format!("{}, which stays 0 until every worker's batch is full.", server::QUEUE_DEPTH),
        ],
        notes: vec![
            (
                "target",
                vec![
                    format!(
                        "{} = the pod's workers: one caption each at single-request latency; more in flight share",
                        measured.workers
                    ),
                    "decoding steps or wait, and latency grows, so the autoscaler adds pods. For a P95 target at a"
                        .to_owned(),
                    "given rate, `capwatch plan` says how many replicas that takes.".to_owned(),
                ],
            ),
            (
                "scaleDown",
                vec![format!(
                    "A new pod costs a model load: scale down only after {SCALE_DOWN_STABILIZATION_S} s of lower demand, one pod a minute."
                )],
            ),
        ],
    }
}

/// prometheus-adapter's `config.yaml` rule for [`HPA_METRIC`], as a value.
pub fn adapter_config() -> Value {
    json!({
        "rules": [{
            "seriesQuery": format!(r#"{HPA_METRIC}{{namespace!="",pod!=""}}"#),
            "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
            "name": {"matches": format!("^{HPA_METRIC}$"), "as": HPA_METRIC},
            "metricsQuery": format!(
                "clamp_min(max by (<<.GroupBy>>) (avg_over_time(<<.Series>>{{<<.LabelMatchers>>}}[{METRIC_AVERAGE_WINDOW}])) - 1, 0)"
            ),
        }],
    })
}

pub(super) fn adapter_rule(target: &Target) -> Result<Manifest, KubernetesError> {
    let rules = serde_yaml_ng::to_string(&adapter_config())?;
    let text = format!(
        "# {HPA_METRIC} per pod for the custom metrics API (capwatch export kubernetes).\n\
         # averaged over {METRIC_AVERAGE_WINDOW}; minus 1 because the gauge counts the scrape that reads it.\n{rules}"
    );
    Ok(Manifest {
        file_name: "prometheus-adapter.yaml",
        object: json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": target.metadata(&format!("{}-prometheus-adapter", target.name)),
            "data": {"config.yaml": text},
        }),
        header: vec![
            format!("prometheus-adapter's rule that serves {HPA_METRIC} (pods) to the custom metrics API"),
            "(custom.metrics.k8s.io), where the HorizontalPodAutoscaler reads it. The adapter reads one config:"
                .to_owned(),
            "point its --config at this ConfigMap's config.yaml in the adapter's namespace, or add the rule to"
                .to_owned(),
            "the adapter's own rules (Helm chart: rules.custom).".to_owned(),
        ],
        notes: Vec::new(),
    })
}

pub(super) fn service_monitor(config: &Config, target: &Target) -> Manifest {
    let mut endpoint = json!({"port": PORT_NAME, "path": "/metrics", "interval": SCRAPE_INTERVAL});
    let mut notes = Vec::new();
    if config.service.tls.is_some() {
        // Prometheus scrapes pod IPs, which a certificate rarely names: encrypted, not verified.
        endpoint["scheme"] = json!("https");
        endpoint["tlsConfig"] = json!({"insecureSkipVerify": true});
        notes.push((
            "endpoints",
            vec![
                "service.tls is set: scraped over HTTPS without verifying the certificate (pod IPs are rarely in it);"
                    .to_owned(),
                "to verify, set tlsConfig.ca and tlsConfig.serverName to the CA and a name the certificate holds."
                    .to_owned(),
            ],
        ));
    }
    Manifest {
        file_name: "servicemonitor.yaml",
        object: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": target.metadata(&target.name),
            "spec": {
                "selector": {"matchLabels": server_service_labels(target)},
                "endpoints": [endpoint],
            },
        }),
        header: vec![
            "Prometheus (prometheus-operator) scrapes every pod's /metrics through the Service; the series get"
                .to_owned(),
            "namespace and pod labels, which the adapter rule maps to the pods the autoscaler asks about.".to_owned(),
        ],
        notes,
    }
}

pub(super) fn prometheus_rule(config: &Config, target: &Target) -> Result<Manifest, KubernetesError> {
    let groups = serde_json::to_value(prometheus_rules::rules(config).groups)?;
    Ok(Manifest {
        file_name: "prometheusrule.yaml",
        object: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": target.metadata(&target.name),
            "spec": {"groups": groups},
        }),
        header: vec![
            "The groups of `capwatch export prometheus-rules` for this config: the server's own rules judge the"
                .to_owned(),
            "pods; the dashboard's fire only where a capwatch dashboard is scraped too. Your Prometheus's".to_owned(),
            "ruleSelector may require a label (e.g. release: <helm release>): add it to metadata.labels.".to_owned(),
        ],
        notes: Vec::new(),
    })
}

/// The labels that pick the main Service (not the headless one over the same pods).
fn server_service_labels(target: &Target) -> Value {
    let mut labels = target.selector();
    labels["app.kubernetes.io/component"] = json!(SERVER_COMPONENT);
    labels
}
