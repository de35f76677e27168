//! The monitor in the cluster: a headless Service listing the ready server pods (one A
//! record each), a one-replica Deployment running `capwatch monitor --headless --discover
//! dns:<that Service>` with the same ConfigMap, and a Service and ServiceMonitor for the
//! monitor's own `/metrics`. Notification secrets come from a Secret the operator makes. DNS
//! discovery needs no Kubernetes API access: no ServiceAccount token, no RBAC.

use serde_json::json;

use super::*;
use crate::config::SinkTarget;

/// The monitor's `/metrics` port (the dashboard's `--metrics-listen`) and its name.
pub const MONITOR_METRICS_PORT: u16 = 9465;
pub const MONITOR_PORT_NAME: &str = "metrics";
/// The monitor's resources: measured at 50 discovered instances (docs/src/benchmarks.md, "The
/// monitor's own cost"), with room.
pub const MONITOR_CPU_REQUEST: &str = "100m";
pub const MONITOR_MEMORY_REQUEST: &str = "128Mi";
pub const MONITOR_MEMORY_LIMIT: &str = "256Mi";

/// The headless Service the monitor discovers the replicas through.
pub(super) fn replicas_name(target: &Target) -> String {
    format!("{}-replicas", target.name)
}

fn monitor_name(target: &Target) -> String {
    format!("{}-monitor", target.name)
}

/// The Secret holding the monitor's environment (notification URLs and tokens, an API key).
pub(super) fn monitor_secret(target: &Target) -> String {
    format!("{}-monitor", target.name)
}

/// The monitor's labels: not the server's `app.kubernetes.io/name`, so that no selector of
/// the servers (Deployment, Service, PodDisruptionBudget) ever picks a monitor pod.
fn monitor_labels(target: &Target) -> Value {
    json!({
        "app.kubernetes.io/name": "capwatch-monitor",
        "app.kubernetes.io/instance": target.name,
        "app.kubernetes.io/version": env!("CARGO_PKG_VERSION"),
        "app.kubernetes.io/component": "monitor",
    })
}

fn monitor_selector(target: &Target) -> Value {
    json!({"app.kubernetes.io/name": "capwatch-monitor", "app.kubernetes.io/instance": target.name})
}

fn monitor_metadata(target: &Target, name: &str) -> Value {
    let mut metadata = json!({"name": name, "labels": monitor_labels(target)});
    if let Some(namespace) = &target.namespace {
        metadata["namespace"] = json!(namespace);
    }
    metadata
}

/// The environment variables the monitor reads secrets from: each sink's, each probe header's,
/// and the API key its probes send when the servers demand one.
fn secret_variables(config: &Config) -> Vec<String> {
    let mut names = Vec::new();
    for sink in &config.alerts.sinks.0 {
        match &sink.target {
            SinkTarget::Slack { webhook_url_env } => names.push(webhook_url_env.clone()),
            SinkTarget::Telegram { bot_token_env, .. } => names.push(bot_token_env.clone()),
            SinkTarget::Webhook { url_env, bearer_token_env } => {
                names.push(url_env.clone());
                names.extend(bearer_token_env.clone());
            }
        }
    }
    names.extend(config.monitoring.service.headers.iter().map(|header| header.env.clone()));
    if config.service.auth.is_some() {
        names.push(crate::http_client::API_KEY_ENV.to_owned());
    }
    let mut unique: Vec<String> = Vec::new();
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    unique
}

pub(super) fn replicas_service(config: &Config, target: &Target) -> Manifest {
    let mut labels = target.labels();
    labels["app.kubernetes.io/component"] = json!("replicas");
    let mut metadata = target.metadata(&replicas_name(target));
    metadata["labels"] = labels;
    Manifest {
        file_name: "monitor-replicas-service.yaml",
        object: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "clusterIP": "None",
                "selector": target.selector(),
                "ports": [{"name": PORT_NAME, "port": config.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
            },
        }),
        header: vec![
            "Headless: no virtual IP; its DNS name answers one A record per ready server pod (a pod leaves the"
                .to_owned(),
            "answer when it stops being ready or starts terminating). The monitor discovers the replicas here."
                .to_owned(),
        ],
        notes: Vec::new(),
    }
}

pub(super) fn monitor_deployment(config: &Config, target: &Target) -> Manifest {
    let logs = logs_dir(config);
    let source = format!("dns:{}:{}", replicas_name(target), config.service.port);
    let env: Vec<Value> = secret_variables(config)
        .into_iter()
        .map(|name| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": monitor_secret(target), "key": name}}}))
        .collect();
    let secret_note = if env.is_empty() {
        vec!["No notification sink and no API key in the config: the monitor needs no Secret.".to_owned()]
    } else {
        let literals: Vec<String> =
            secret_variables(config).iter().map(|name| format!("--from-literal={name}=…")).collect();
        vec![
            format!(
                "Secrets (notification URLs and tokens, the API key the probes send) come from Secret {}:",
                monitor_secret(target)
            ),
            format!("kubectl create secret generic {} {}", monitor_secret(target), literals.join(" ")),
        ]
    };
    let get = json!({"path": "/metrics", "port": MONITOR_PORT_NAME, "scheme": "HTTP"});
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": monitor_metadata(target, &monitor_name(target)),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": monitor_selector(target)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": monitor_labels(target)},
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": whole_seconds(config.alerts.delivery.timeout_s.0) + DRAIN_MARGIN_S,
                    "securityContext": pod_security(),
                    "containers": [{
                        "name": "monitor",
                        "image": target.image,
                        "workingDir": WORKDIR,
                        "command": [BINARY],
                        "args": [
                            "monitor",
                            "--headless",
                            "--config", format!("{CONFIG_DIR}/{CONFIG_FILE}"),
                            "--discover", source,
                            "--metrics-listen", format!("0.0.0.0:{MONITOR_METRICS_PORT}"),
                        ],
                        "env": env,
                        "ports": [{"name": MONITOR_PORT_NAME, "containerPort": MONITOR_METRICS_PORT, "protocol": "TCP"}],
                        "resources": {
                            "requests": {"cpu": MONITOR_CPU_REQUEST, "memory": MONITOR_MEMORY_REQUEST},
                            "limits": {"memory": MONITOR_MEMORY_LIMIT},
                        },
                        "livenessProbe": {"httpGet": get, "periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3},
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
                            {"name": "logs", "mountPath": logs},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": target.config_map_name()}},
                        {"name": "logs", "emptyDir": {"sizeLimit": LOGS_SIZE_LIMIT}},
                    ],
                },
            },
        },
    });
    let mut args_note = vec![
        format!(
            "Watches every replica the headless Service {} lists, as the autoscaler adds and",
            replicas_name(target)
        ),
        "removes them: a replica that joins is probed within monitoring.discovery.refresh_s; one that leaves"
            .to_owned(),
        "is retired without an alert; one that fails while listed alerts. Same ConfigMap as the servers.".to_owned(),
    ];
    if config.service.tls.is_some() {
        args_note.push(
            "service.tls is set: set monitoring.discovery.scheme: https and monitoring.ca_file (a CA the servers' certificate chains to; pod IPs must be in it, or probes fail verification)."
                .to_owned(),
        );
    }
    Manifest {
        file_name: "monitor-deployment.yaml",
        object,
        header: vec![
            "The dashboard's headless monitor, where the replicas are. One replica and Recreate: two monitors"
                .to_owned(),
            "would page twice. DNS discovery needs no Kubernetes API access, so no ServiceAccount token and no RBAC."
                .to_owned(),
        ],
        notes: vec![
            ("args", args_note),
            ("env", secret_note),
            (
                "resources",
                vec![format!(
                    "Measured at 50 discovered replicas (docs/src/benchmarks.md): a few % of a core and tens of MiB; request {MONITOR_CPU_REQUEST}, {MONITOR_MEMORY_REQUEST}."
                )],
            ),
            (
                "volumes",
                vec![
                    format!("The logs directory ({logs}) is an emptyDir: the metrics JSONL and the notification spool"),
                    "survive a container restart (a notification the killed monitor had not delivered goes out when"
                        .to_owned(),
                    "it starts again), not a rescheduled pod.".to_owned(),
                ],
            ),
        ],
    }
}

pub(super) fn monitor_service(target: &Target) -> Manifest {
    Manifest {
        file_name: "monitor-service.yaml",
        object: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": monitor_metadata(target, &monitor_name(target)),
            "spec": {
                "type": "ClusterIP",
                "selector": monitor_selector(target),
                "ports": [{"name": MONITOR_PORT_NAME, "port": MONITOR_METRICS_PORT, "targetPort": MONITOR_PORT_NAME, "protocol": "TCP"}],
            },
        }),
        header: vec!["The monitor's own /metrics (capwatch_monitor_*), for its ServiceMonitor.".to_owned()],
        notes: Vec::new(),
    }
}

pub(super) fn monitor_service_monitor(target: &Target) -> Manifest {
    Manifest {
        file_name: "monitor-servicemonitor.yaml",
        object: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": monitor_metadata(target, &monitor_name(target)),
            "spec": {
                "selector": {"matchLabels": monitor_selector(target)},
                "endpoints": [{"port": MONITOR_PORT_NAME, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
            },
        }),
        header: vec![
            "Prometheus scrapes the monitor: per-replica probe results (label `target`), alert states and".to_owned(),
            "capwatch_monitor_instances, the fleet's size as discovery sees it.".to_owned(),
        ],
        notes: Vec::new(),
    }
}
