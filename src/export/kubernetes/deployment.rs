//! The Deployment: the pod that runs `capwatch serve`, its probes, drain, resources and
//! locked-down container, sized from what was measured.

use serde_json::json;

use super::*;

pub(super) fn deployment(config: &Config, target: &Target, measured: &Measurement, size: &Sizing) -> Manifest {
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
                        "env": api_keys_env(config, target),
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
                "env",
                if config.service.auth.is_some() {
                    vec![
                        format!(
                            "The API keys (service.auth) come from Secret {}, key `keys`, comma-separated;",
                            api_keys_secret(target)
                        ),
                        format!(
                            "create it first: kubectl create secret generic {} --from-literal=keys=KEY",
                            api_keys_secret(target)
                        ),
                    ]
                } else {
                    vec![
                        "No API keys (service.auth is not set): anyone who reaches the Service can caption.".to_owned(),
                    ]
                },
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

/// With `service.auth`, the keys' variable comes from a Secret (`<name>-api-keys`, key
/// `keys`) that the operator creates; no key is ever written into a manifest.
fn api_keys_env(config: &Config, target: &Target) -> Value {
    match &config.service.auth {
        Some(auth) => json!([{
            "name": auth.keys_env,
            "valueFrom": {"secretKeyRef": {"name": api_keys_secret(target), "key": "keys"}},
        }]),
        None => json!([]),
    }
}

/// The Secret that holds the API keys.
pub(super) fn api_keys_secret(target: &Target) -> String {
    format!("{}-api-keys", target.name)
}
