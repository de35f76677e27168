//! `capwatch export kubernetes`: the objects that run `capwatch serve` on Kubernetes, built
//! from the config and from what loading the model here measured ([`super::measure`]):
//! ConfigMap (the config file as it is), Deployment (probes, drain, resources, a locked-down
//! container), Service, PodDisruptionBudget, HorizontalPodAutoscaler on the server's own
//! `capwatch_requests_in_flight`, the prometheus-adapter rule that exposes it to the custom
//! metrics API, ServiceMonitor, and PrometheusRule with the groups of
//! [`super::prometheus_rules`]; and the monitor that watches the replicas from inside the cluster
//! ([`monitor`]: headless Service, Deployment, its Service and ServiceMonitor). Generation only;
//! the command measures and writes the files. [`deployment`] builds the Deployment,
//! [`autoscaling`] the autoscaler and what scrapes and alerts on the server.
//!
//! Layout of the container (the project's Dockerfile follows it): the binary at [`BINARY`],
//! working directory [`WORKDIR`] holding `models/default/` and `test_images/` (so the
//! config's relative paths resolve as in the repository), ONNX Runtime found through
//! `ORT_DYLIB_PATH` set in the image, user and group [`USER_ID`], a read-only root
//! filesystem with emptyDirs for the logs directory and `/tmp`.

use std::time::Duration;

use serde_json::{Value, json};

use super::measure::Measurement;
use super::prometheus_rules;
use crate::config::Config;
use crate::server::metrics as server;

mod autoscaling;
mod deployment;
mod monitor;

pub use autoscaling::adapter_config;
use autoscaling::{adapter_rule, autoscaler, prometheus_rule, service_monitor};
use deployment::deployment;
pub use monitor::{MONITOR_METRICS_PORT, MONITOR_PORT_NAME};
use monitor::{monitor_deployment, monitor_service, monitor_service_monitor, replicas_service};

/// The binary inside the image.
pub const BINARY: &str = "/usr/local/bin/capwatch";
/// The image's working directory: the config's relative paths resolve against it.
pub const WORKDIR: &str = "/opt/capwatch";
/// Where the ConfigMap is mounted, and the file name of the config in it.
pub const CONFIG_DIR: &str = "/etc/capwatch";
pub const CONFIG_FILE: &str = "monitoring_config.yaml";
/// User and group of the image's `capwatch` account (not root, not a system id).
pub const USER_ID: u32 = 10001;
/// The main Service's `app.kubernetes.io/component`: its ServiceMonitor selects it by this,
/// so the headless Service over the same pods (the monitor's discovery) is not scraped twice.
pub const SERVER_COMPONENT: &str = "server";
/// The container port's name: the Service, the probes and the ServiceMonitor refer to it.
pub const PORT_NAME: &str = "http";

/// The startup probe allows the measured load time × this: the pod may load on slower or
/// busier cores than the machine that measured, and a pod killed while still loading never
/// becomes ready at all (a crash loop), so generous beats tight.
pub const STARTUP_SAFETY_FACTOR: f64 = 3.0;
/// ... and never less than this, for a model that loads in a blink (image pull and process
/// start are not in the measurement).
pub const STARTUP_MIN_BUDGET: Duration = Duration::from_secs(30);
/// The startup probe's period: short, so a ready pod takes traffic soon after loading.
pub const STARTUP_PERIOD_S: u64 = 2;
/// Memory request = measured peak RSS × this: the scheduler reserves what the pod really
/// uses, plus room for what one warm-up cannot show (allocator fragmentation over hours,
/// other batch mixes, the drift window filling up, more connections).
pub const MEMORY_REQUEST_FACTOR: f64 = 1.25;
/// Memory limit = measured peak RSS × this: past it something leaks, and an OOM kill and
/// restart is better than taking the node's memory from its neighbours.
pub const MEMORY_LIMIT_FACTOR: f64 = 1.5;
/// The preStop sleep: the pod keeps serving while the endpoints controller, kube-proxy and
/// ingress controllers learn it is terminating (a few seconds), so no new request is sent to
/// a server that has stopped accepting.
pub const PRE_STOP_SLEEP_S: u64 = 5;
/// Slack after the drain before SIGKILL: the engine stopping, logs flushed, process exit.
pub const DRAIN_MARGIN_S: u64 = 5;
/// Readiness: `/ready` every this often, unready after this many failures in a row.
pub const READINESS_PERIOD_S: u64 = 5;
pub const READINESS_FAILURES: u64 = 2;
/// How often Prometheus scrapes the server (the HPA's metric is as fresh as this).
pub const SCRAPE_INTERVAL: &str = "15s";
/// The window the adapter averages the gauge over: four scrapes, so one scrape that lands
/// in a burst does not scale by itself.
pub const METRIC_AVERAGE_WINDOW: &str = "1m";
/// How long the autoscaler waits for a lower replica count to hold before scaling down: a
/// new pod costs a model load, so a lull shorter than this does not remove one.
pub const SCALE_DOWN_STABILIZATION_S: u64 = 300;
/// The HPA's metric: requests the server is serving (`/metrics`, one series per pod).
pub const HPA_METRIC: &str = server::REQUESTS_IN_FLIGHT;
/// emptyDir size limits: the logs directory (drift reference, anything the config writes
/// under it) and `/tmp`.
pub const LOGS_SIZE_LIMIT: &str = "256Mi";
pub const TMP_SIZE_LIMIT: &str = "64Mi";

const MIB: f64 = 1024.0 * 1024.0;

/// The pod's security context: non-root as the image's user, its group owning the volumes.
fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// A container's security context: read-only root, no privilege escalation, no capability.
fn container_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Bad flags for the objects.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("invalid {flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("cannot write the objects as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("cannot build the PrometheusRule: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "{key}: {path} cannot be mounted from a Secret: {reason}; put the file in a directory of its own (e.g. /etc/capwatch-secrets/)"
    )]
    SecretPath { key: &'static str, path: String, reason: &'static str },
}

/// Where and under which names the objects go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Object names and `app.kubernetes.io/instance`.
    pub name: String,
    pub namespace: Option<String>,
    pub image: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

impl Target {
    /// Checks the names (DNS labels, as Services need) and the replica bounds.
    pub fn check(&self) -> Result<(), KubernetesError> {
        // The longest derived name is `<name>-prometheus-adapter`; a Service name is a DNS label.
        dns_label(&self.name, 63).map_err(|message| KubernetesError::Flag { flag: "--name", message })?;
        if let Some(namespace) = &self.namespace {
            dns_label(namespace, 63).map_err(|message| KubernetesError::Flag { flag: "--namespace", message })?;
        }
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(KubernetesError::Flag {
                flag: "--image",
                message: format!("`{}` is not an image", self.image),
            });
        }
        if self.min_replicas == 0 || self.max_replicas < self.min_replicas {
            return Err(KubernetesError::Flag {
                flag: "--min-replicas/--max-replicas",
                message: format!("need 1 ≤ min ≤ max, got min {} and max {}", self.min_replicas, self.max_replicas),
            });
        }
        Ok(())
    }

    /// The labels every object carries.
    fn labels(&self) -> Value {
        json!({
            "app.kubernetes.io/name": "capwatch",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// The labels that pick this instance's pods (no version: a selector cannot change).
    fn selector(&self) -> Value {
        json!({"app.kubernetes.io/name": "capwatch", "app.kubernetes.io/instance": self.name})
    }

    fn metadata(&self, name: &str) -> Value {
        let mut metadata = json!({"name": name, "labels": self.labels()});
        if let Some(namespace) = &self.namespace {
            metadata["namespace"] = json!(namespace);
        }
        metadata
    }

    fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }
}

/// A lowercase RFC 1123 label starting with a letter (what a Service name must be).
fn dns_label(text: &str, max_len: usize) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= max_len
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && !text.ends_with('-')
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a DNS label (lowercase letters, digits and '-', starting with a letter, at most {max_len})"
        ))
    }
}

/// The numbers of the Deployment, from the config and the measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub startup_period_s: u64,
    pub startup_failure_threshold: u64,
    pub memory_request_mib: u64,
    pub memory_limit_mib: u64,
    /// CPU request, whole cores: the threads the engine runs.
    pub cpu_cores: usize,
    /// How long a stopping server may take to answer what it has (`service.request_timeout_s`,
    /// or `restart.grace_s` if longer).
    pub drain_s: u64,
    pub termination_grace_s: u64,
    pub liveness_period_s: u64,
    pub liveness_timeout_s: u64,
    pub liveness_failure_threshold: u64,
}

impl Sizing {
    /// How long the startup probe waits for `/ready`.
    pub fn startup_budget_s(&self) -> u64 {
        self.startup_period_s * self.startup_failure_threshold
    }
}

/// `Sizing: memory request …`: what the export prints of it.
impl std::fmt::Display for Sizing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sizing: memory request {}Mi (peak x {MEMORY_REQUEST_FACTOR}), limit {}Mi (x {MEMORY_LIMIT_FACTOR}); CPU \
             request {} (no limit); startup probe {} x {} s = {} s; termination grace {} s",
            self.memory_request_mib,
            self.memory_limit_mib,
            self.cpu_cores,
            self.startup_failure_threshold,
            self.startup_period_s,
            self.startup_budget_s(),
            self.termination_grace_s
        )
    }
}

/// Whole seconds, rounded up, at least 1 (what probe fields take).
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}

/// `bytes × factor` in MiB, rounded up.
fn mebibytes(bytes: u64, factor: f64) -> u64 {
    (bytes as f64 * factor / MIB).ceil() as u64
}

pub fn sizing(config: &Config, measured: &Measurement) -> Sizing {
    let budget = STARTUP_MIN_BUDGET.max(measured.load.mul_f64(STARTUP_SAFETY_FACTOR));
    let drain_s = (config.service.request_timeout_s.get() as u64).max(whole_seconds(config.restart.grace_s.0));
    let health_interval = config.monitoring.health_interval_s.0;
    Sizing {
        startup_period_s: STARTUP_PERIOD_S,
        startup_failure_threshold: whole_seconds(budget).div_ceil(STARTUP_PERIOD_S),
        memory_request_mib: mebibytes(measured.peak_rss_bytes, MEMORY_REQUEST_FACTOR),
        memory_limit_mib: mebibytes(measured.peak_rss_bytes, MEMORY_LIMIT_FACTOR),
        cpu_cores: measured.cpu_cores(),
        drain_s,
        termination_grace_s: PRE_STOP_SLEEP_S + drain_s + DRAIN_MARGIN_S,
        liveness_period_s: whole_seconds(health_interval),
        liveness_timeout_s: whole_seconds(config.monitoring.probe_timeout_s.0.min(health_interval)),
        liveness_failure_threshold: config.restart.health_failures.get() as u64,
    }
}

/// One object and the comments printed with it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its file under `-o DIR`.
    pub file_name: &'static str,
    pub object: Value,
    /// Comment lines above the object.
    header: Vec<String>,
    /// Comment lines above the first line holding `key:` (keys unique in the object).
    notes: Vec<(&'static str, Vec<String>)>,
}

impl Manifest {
    /// The object as YAML, with its comments.
    pub fn to_yaml(&self) -> Result<String, KubernetesError> {
        let mut out = String::new();
        for line in &self.header {
            out.push_str(&comment("", line));
        }
        let yaml = serde_yaml_ng::to_string(&self.object)?;
        let mut pending: Vec<&(&str, Vec<String>)> = self.notes.iter().collect();
        for line in yaml.lines() {
            let content = line.trim_start_matches([' ', '-']);
            if let Some(index) = pending.iter().position(|(key, _)| content.starts_with(&format!("{key}:"))) {
                let indent = &line[..line.len() - line.trim_start().len()];
                for note in &pending.remove(index).1 {
                    out.push_str(&comment(indent, note));
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(out)
    }

    /// The object as the file `-o DIR` writes: a line saying where it came from, then the YAML.
    pub fn file_text(&self, source: &str) -> Result<String, KubernetesError> {
        let header = format!(
            "# Generated by `capwatch export kubernetes` (capwatch {}) from {source}.\n",
            env!("CARGO_PKG_VERSION")
        );
        Ok(header + &self.to_yaml()?)
    }

    /// `kind/name`, as kubectl names objects.
    pub fn title(&self) -> String {
        format!(
            "{}/{}",
            self.object["kind"].as_str().unwrap_or_default(),
            self.object["metadata"]["name"].as_str().unwrap_or_default()
        )
    }
}

fn comment(indent: &str, text: &str) -> String {
    if text.is_empty() { format!("{indent}#\n") } else { format!("{indent}# {text}\n") }
}

/// Every object in one multi-document YAML stream.
pub fn multi_document(manifests: &[Manifest], source: &str) -> Result<String, KubernetesError> {
    let mut out = format!(
        "# Kubernetes objects generated by `capwatch export kubernetes` (capwatch {}) from {source};\n\
         # regenerate after changing the config or the model. Apply: kubectl apply -f FILE\n",
        env!("CARGO_PKG_VERSION")
    );
    for manifest in manifests {
        out.push_str("---\n");
        out.push_str(&manifest.to_yaml()?);
    }
    Ok(out)
}

/// The path of the config's logs directory inside the container.
fn logs_dir(config: &Config) -> String {
    let dir = &config.logs.dir;
    if dir.is_absolute() {
        dir.display().to_string()
    } else {
        format!("{WORKDIR}/{}", dir.display().to_string().trim_start_matches("./").trim_end_matches('/'))
    }
}

/// Every object, in the order they are best applied (config before the pods that mount it).
pub fn manifests(
    config: &Config,
    config_text: &str,
    target: &Target,
    measured: &Measurement,
) -> Result<Vec<Manifest>, KubernetesError> {
    target.check()?;
    let size = sizing(config, measured);
    Ok(vec![
        config_map(config_text, target),
        deployment(config, target, measured, &size)?,
        service(config, target),
        disruption_budget(target),
        autoscaler(target, measured),
        adapter_rule(target)?,
        service_monitor(config, target),
        prometheus_rule(config, target)?,
        replicas_service(config, target),
        monitor_deployment(config, target),
        monitor_service(target),
        monitor_service_monitor(target),
    ])
}

fn config_map(config_text: &str, target: &Target) -> Manifest {
    Manifest {
        file_name: "configmap.yaml",
        object: json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": target.metadata(&target.config_map_name()),
            "data": {CONFIG_FILE: config_text},
        }),
        header: vec![
            format!("The config file as it is, mounted read-only at {CONFIG_DIR}/{CONFIG_FILE}. service.host and"),
            "service.port are overridden by the Deployment's --host/--port; relative paths (model_dir, logs.dir)"
                .to_owned(),
            format!("resolve against the image's working directory, {WORKDIR}."),
        ],
        notes: Vec::new(),
    }
}

fn service(config: &Config, target: &Target) -> Manifest {
    let mut metadata = target.metadata(&target.name);
    metadata["labels"]["app.kubernetes.io/component"] = json!(SERVER_COMPONENT);
    Manifest {
        file_name: "service.yaml",
        object: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "type": "ClusterIP",
                "selector": target.selector(),
                "ports": [{"name": PORT_NAME, "port": config.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
            },
        }),
        header: vec![
            "The API (/caption, /health, /ready, /docs) and /metrics inside the cluster, on port `http`.".to_owned(),
            format!("A dashboard can watch it: capwatch monitor --url http://{}:{}", target.name, config.service.port),
        ],
        notes: Vec::new(),
    }
}

fn disruption_budget(target: &Target) -> Manifest {
    Manifest {
        file_name: "pdb.yaml",
        object: json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": target.metadata(&target.name),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": target.selector()},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }),
        header: vec![
            "Node drains take one pod at a time (maxUnavailable works at any replica count the autoscaler".to_owned(),
            "picks); pods that are not ready may always be evicted, so a sick pod never blocks a drain.".to_owned(),
        ],
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
