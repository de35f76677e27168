//! `capwatch export kubernetes`: the objects that run `capwatch serve` on Kubernetes, built
//! from the config and from what loading the model here measured ([`super::measure`]):
//! ConfigMap (the config file as it is), Deployment (probes, drain, resources, a locked-down
//! container), Service, PodDisruptionBudget, HorizontalPodAutoscaler on the server's own
//! `capwatch_requests_in_flight`, the prometheus-adapter rule that exposes it to the custom
//! metrics API, ServiceMonitor, and PrometheusRule with the groups of
//! [`super::prometheus_rules`]. Generation only; `main.rs` measures and writes the files.
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

/// The binary inside the image.
pub const BINARY: &str = "/usr/local/bin/capwatch";
/// The image's working directory: the config's relative paths resolve against it.
pub const WORKDIR: &str = "/opt/capwatch";
/// Where the ConfigMap is mounted, and the file name of the config in it.
pub const CONFIG_DIR: &str = "/etc/capwatch";
pub const CONFIG_FILE: &str = "monitoring_config.yaml";
/// User and group of the image's `capwatch` account (not root, not a system id).
pub const USER_ID: u32 = 10001;
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

/// Bad flags for the objects.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("invalid {flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("cannot write the objects as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("cannot build the PrometheusRule: {0}")]
    Json(#[from] serde_json::Error),
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
        deployment(config, target, measured, &size),
        service(config, target),
        disruption_budget(target),
        autoscaler(target, measured),
        adapter_rule(target)?,
        service_monitor(target),
        prometheus_rule(config, target)?,
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

fn deployment(config: &Config, target: &Target, measured: &Measurement, size: &Sizing) -> Manifest {
    let port = config.service.port;
    let selector = target.selector();
    let logs = logs_dir(config);
    let mut metadata = target.metadata(&target.name);
    metadata["annotations"] = json!({
        "capwatch/measured-load-seconds": format!("{:.3}", measured.load.as_secs_f64()),
        "capwatch/measured-peak-rss-bytes": measured.peak_rss_bytes.to_string(),
        "capwatch/measured-threads": format!("{} workers x {} intra-op threads x {} model(s)", measured.workers, measured.intra_op_threads, measured.models),
    });
    let get = |path: &str| json!({"path": path, "port": PORT_NAME});
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": target.labels()},
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": size.termination_grace_s,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": USER_ID,
                        "runAsGroup": USER_ID,
                        "fsGroup": USER_ID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": selector},
                    }],
                    "containers": [{
                        "name": "capwatch",
                        "image": target.image,
                        "workingDir": WORKDIR,
                        "command": [BINARY],
                        "args": [
                            "serve",
                            "--config", format!("{CONFIG_DIR}/{CONFIG_FILE}"),
                            "--host", "0.0.0.0",
                            "--port", port.to_string(),
                            "--workers", measured.workers.to_string(),
                            "--intra-op-threads", measured.intra_op_threads.to_string(),
                            "--log-format", "json",
                        ],
                        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
                        "resources": {
                            "requests": {"cpu": size.cpu_cores.to_string(), "memory": format!("{}Mi", size.memory_request_mib)},
                            "limits": {"memory": format!("{}Mi", size.memory_limit_mib)},
                        },
                        "startupProbe": {
                            "httpGet": get("/ready"),
                            "periodSeconds": size.startup_period_s,
                            "failureThreshold": size.startup_failure_threshold,
                            "timeoutSeconds": 1,
                        },
                        "readinessProbe": {
                            "httpGet": get("/ready"),
                            "periodSeconds": READINESS_PERIOD_S,
                            "failureThreshold": READINESS_FAILURES,
                            "timeoutSeconds": 1,
                        },
                        "livenessProbe": {
                            "httpGet": get("/health"),
                            "periodSeconds": size.liveness_period_s,
                            "timeoutSeconds": size.liveness_timeout_s,
                            "failureThreshold": size.liveness_failure_threshold,
                        },
                        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_S}}},
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": USER_ID,
                            "runAsGroup": USER_ID,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "volumeMounts": [
                            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
                            {"name": "logs", "mountPath": logs},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": target.config_map_name()}},
                        {"name": "logs", "emptyDir": {"sizeLimit": LOGS_SIZE_LIMIT}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
                    ],
                },
            },
        },
    });
    let mib = |bytes: u64| bytes as f64 / MIB;
    let load_s = measured.load.as_secs_f64();
    Manifest {
        file_name: "deployment.yaml",
        object,
        header: vec![
            "capwatch serve. No spec.replicas: the HorizontalPodAutoscaler owns the count (a replicas field here"
                .to_owned(),
            "would reset it on every apply). Rolling updates add a pod before removing one (maxUnavailable 0)."
                .to_owned(),
            format!(
                "Sized from the model as `capwatch export kubernetes` loaded it on a {}-core machine: {} model(s),",
                measured.cores, measured.models
            ),
            format!(
                "load + warm-up {load_s:.2} s; RSS {:.1} MiB before loading, {:.1} MiB loaded, {:.1} MiB after {} captions,",
                mib(measured.rss_before_bytes),
                mib(measured.rss_loaded_bytes),
                mib(measured.rss_captioned_bytes),
                measured.captions
            ),
            format!(
                "peak {:.1} MiB; {} workers x {} ONNX Runtime threads.",
                mib(measured.peak_rss_bytes),
                measured.workers,
                measured.intra_op_threads
            ),
        ],
        notes: vec![
            (
                "args",
                vec![
                    "--host 0.0.0.0 overrides service.host (the kubelet and the Service reach the pod's IP)."
                        .to_owned(),
                    "--workers/--intra-op-threads pin the thread plan that was measured, so the pod neither".to_owned(),
                    "follows the node's core count (more workers, more memory than the limit below) nor".to_owned(),
                    "oversubscribes its CPU request.".to_owned(),
                ],
            ),
            (
                "resources",
                vec![
                    format!(
                        "memory: request = peak RSS {:.1} MiB x {MEMORY_REQUEST_FACTOR} (rounded up to Mi), limit = x {MEMORY_LIMIT_FACTOR}.",
                        mib(measured.peak_rss_bytes)
                    ),
                    format!(
                        "cpu: request = {} workers x {} threads x {} model(s) = {} cores. No CPU limit, like Triton's",
                        measured.workers, measured.intra_op_threads, measured.models, size.cpu_cores
                    ),
                    "Helm chart and TEI's deployments (they limit GPUs only): the threads are pinned above, so the"
                        .to_owned(),
                    "request is what the pod uses; a limit would only add CFS throttling (latency spikes) when HTTP"
                        .to_owned(),
                    "and image decoding briefly need more.".to_owned(),
                ],
            ),
            (
                "startupProbe",
                vec![format!(
                    "{} x {} s = {} s to become ready: max({STARTUP_MIN_BUDGET:?}, measured load {load_s:.2} s x {STARTUP_SAFETY_FACTOR}).",
                    size.startup_failure_threshold,
                    size.startup_period_s,
                    size.startup_budget_s()
                )],
            ),
            (
                "readinessProbe",
                vec!["/ready: the models are loaded and warmed up; out of the Service while not.".to_owned()],
            ),
            (
                "livenessProbe",
                vec![
                    format!(
                        "/health as the dashboard checks it: every monitoring.health_interval_s ({} s), restarted after",
                        size.liveness_period_s
                    ),
                    format!(
                        "restart.health_failures ({}) failures in a row; each waits monitoring.probe_timeout_s (at most the period).",
                        size.liveness_failure_threshold
                    ),
                ],
            ),
            (
                "lifecycle",
                vec![format!(
                    "preStop: {PRE_STOP_SLEEP_S} s of serving while endpoints and proxies drop the pod; then SIGTERM."
                )],
            ),
            (
                "terminationGracePeriodSeconds",
                vec![
                    format!(
                        "{} = preStop {PRE_STOP_SLEEP_S} s + drain {} s + margin {DRAIN_MARGIN_S} s. On SIGTERM the server stops accepting",
                        size.termination_grace_s, size.drain_s
                    ),
                    format!(
                        "and answers what it has: each /caption ends within service.request_timeout_s ({} s) or",
                        config.service.request_timeout_s
                    ),
                    format!(
                        "times out; restart.grace_s ({} s) is what the dashboard allows its own child; the",
                        config.restart.grace_s.0.as_secs_f64()
                    ),
                    "longer of the two is the drain. Work queued after that has no client waiting.".to_owned(),
                ],
            ),
            (
                "volumes",
                vec![format!("The root filesystem is read-only: the logs directory ({logs}) and /tmp are emptyDirs.")],
            ),
        ],
    }
}

fn service(config: &Config, target: &Target) -> Manifest {
    Manifest {
        file_name: "service.yaml",
        object: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": target.metadata(&target.name),
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

fn autoscaler(target: &Target, measured: &Measurement) -> Manifest {
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

fn adapter_rule(target: &Target) -> Result<Manifest, KubernetesError> {
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

fn service_monitor(target: &Target) -> Manifest {
    Manifest {
        file_name: "servicemonitor.yaml",
        object: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": target.metadata(&target.name),
            "spec": {
                "selector": {"matchLabels": target.selector()},
                "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
            },
        }),
        header: vec![
            "Prometheus (prometheus-operator) scrapes every pod's /metrics through the Service; the series get"
                .to_owned(),
            "namespace and pod labels, which the adapter rule maps to the pods the autoscaler asks about.".to_owned(),
        ],
        notes: Vec::new(),
    }
}

fn prometheus_rule(config: &Config, target: &Target) -> Result<Manifest, KubernetesError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measurement {
        Measurement {
            load: Duration::from_millis(420),
            rss_before_bytes: 10 * 1024 * 1024,
            rss_loaded_bytes: 40 * 1024 * 1024,
            rss_captioned_bytes: 45 * 1024 * 1024,
            peak_rss_bytes: 50 * 1024 * 1024,
            workers: 2,
            intra_op_threads: 1,
            models: 1,
            captions: 32,
            cores: 2,
        }
    }

    fn target() -> Target {
        Target {
            name: "capwatch".to_owned(),
            namespace: None,
            image: "capwatch:test".to_owned(),
            min_replicas: 2,
            max_replicas: 10,
        }
    }

    #[test]
    fn sizing_follows_the_measurement_and_the_config() {
        let mut config = Config::default();
        config.restart.health_failures = std::num::NonZeroUsize::new(4).unwrap();
        let size = sizing(&config, &measured());
        // 0.42 s × 3 is under the 30 s floor.
        assert_eq!((size.startup_period_s, size.startup_failure_threshold), (2, 15));
        assert_eq!((size.memory_request_mib, size.memory_limit_mib), (63, 75)); // 62.5 and 75 MiB rounded up
        assert_eq!(size.cpu_cores, 2);
        assert_eq!(size.liveness_failure_threshold, 4);
        assert_eq!(size.termination_grace_s, PRE_STOP_SLEEP_S + 30 + DRAIN_MARGIN_S);

        let slow = Measurement { load: Duration::from_secs_f64(41.5), ..measured() };
        let size = sizing(&config, &slow);
        assert_eq!(size.startup_budget_s(), 126); // 124.5 s → 125 s → 63 periods of 2 s
        assert!(size.startup_budget_s() as f64 >= 41.5 * STARTUP_SAFETY_FACTOR);
    }

    #[test]
    fn comments_land_above_their_keys_and_the_yaml_still_parses() {
        let config = Config::default();
        let all = manifests(&config, "service:\n  port: 8000\n", &target(), &measured()).unwrap();
        let names: Vec<&str> = all.iter().map(|m| m.file_name).collect();
        assert_eq!(
            names,
            [
                "configmap.yaml",
                "deployment.yaml",
                "service.yaml",
                "pdb.yaml",
                "hpa.yaml",
                "prometheus-adapter.yaml",
                "servicemonitor.yaml",
                "prometheusrule.yaml"
            ]
        );
        for manifest in &all {
            let yaml = manifest.to_yaml().unwrap();
            let parsed: Value = serde_yaml_ng::from_str(&yaml).unwrap();
            assert_eq!(parsed, manifest.object, "{}", manifest.file_name);
            for (key, _) in &manifest.notes {
                let at = yaml.lines().position(|l| l.trim_start_matches([' ', '-']).starts_with(&format!("{key}:")));
                let at = at.unwrap_or_else(|| panic!("{key} not in {}", manifest.file_name));
                assert!(yaml.lines().nth(at - 1).unwrap().trim_start().starts_with('#'), "{key}");
            }
        }
        let stream = multi_document(&all, "test.yaml").unwrap();
        let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&stream)
            .map(|document| serde::Deserialize::deserialize(document).unwrap())
            .collect();
        assert_eq!(documents.len(), 8);
    }

    #[test]
    fn names_and_replica_bounds_are_checked() {
        let bad = [
            Target { name: "Capwatch".to_owned(), ..target() },
            Target { name: "9lives".to_owned(), ..target() },
            Target { namespace: Some("a_b".to_owned()), ..target() },
            Target { min_replicas: 0, ..target() },
            Target { min_replicas: 5, max_replicas: 4, ..target() },
            Target { image: "two words".to_owned(), ..target() },
        ];
        for target in bad {
            assert!(target.check().is_err(), "{target:?}");
        }
        assert!(Target { namespace: Some("ml-serving".to_owned()), ..target() }.check().is_ok());
    }

    #[test]
    fn the_namespace_is_only_set_when_given() {
        let config = Config::default();
        let without = manifests(&config, "", &target(), &measured()).unwrap();
        assert!(without.iter().all(|m| m.object["metadata"].get("namespace").is_none()));
        let with = Target { namespace: Some("ml".to_owned()), ..target() };
        let with = manifests(&config, "", &with, &measured()).unwrap();
        assert!(with.iter().all(|m| m.object["metadata"]["namespace"] == "ml"));
    }

    #[test]
    fn relative_logs_resolve_under_the_working_directory() {
        let mut config = Config::default();
        config.logs.dir = "logs".into();
        assert_eq!(logs_dir(&config), "/opt/capwatch/logs");
        config.logs.dir = "/var/log/capwatch".into();
        assert_eq!(logs_dir(&config), "/var/log/capwatch");
    }
}
