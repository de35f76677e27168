//! The Deployment: the pod that runs `capwatch serve`, its probes, drain, resources and
//! locked-down container, sized from what was measured.

use serde_json::json;

use super::*;

pub(super) fn deployment(
    config: &Config,
    target: &Target,
    measured: &Measurement,
    size: &Sizing,
) -> Result<Manifest, KubernetesError> {
    let port = config.service.port;
    let (secret_volumes, secret_mounts) = secret_volumes(config, target)?;
    let selector = target.selector();
    let logs = logs_dir(config);
    let mut metadata = target.metadata(&target.name);
    metadata["annotations"] = json!({
        "capwatch/measured-load-seconds": format!("{:.3}", measured.load.as_secs_f64()),
        "capwatch/measured-peak-rss-bytes": measured.peak_rss_bytes.to_string(),
        "capwatch/measured-threads": format!("{} workers x {} intra-op threads x {} model(s)", measured.workers, measured.intra_op_threads, measured.models),
    });
    // With service.tls the kubelet probes over HTTPS (it does not verify the certificate).
    let scheme = if config.service.tls.is_some() { "HTTPS" } else { "HTTP" };
    let get = |path: &str| json!({"path": path, "port": PORT_NAME, "scheme": scheme});
    let mut volume_mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "logs", "mountPath": logs}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    volume_mounts.extend(secret_mounts);
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": target.config_map_name()}}),
        json!({"name": "logs", "emptyDir": {"sizeLimit": LOGS_SIZE_LIMIT}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}),
    ];
    volumes.extend(secret_volumes);
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
                    "securityContext": pod_security(),
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
                        "securityContext": container_security(),
                        "volumeMounts": volume_mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    });
    let mib = |bytes: u64| bytes as f64 / MIB;
    let load_s = measured.load.as_secs_f64();
    Ok(Manifest {
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
                if config.service.auth.as_ref().is_some_and(|auth| auth.keys_file.is_some()) {
                    vec![
                        format!(
                            "The API keys (service.auth.keys_file) are a file from Secret {}, key `keys` (see volumes);",
                            api_keys_secret(target)
                        ),
                        format!(
                            "create it first: kubectl create secret generic {} --from-literal=keys=KEY. Updating the",
                            api_keys_secret(target)
                        ),
                        "Secret rotates the keys without a restart (the server re-reads the file when it changes).".to_owned(),
                    ]
                } else if config.service.auth.is_some() {
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
                std::iter::once(format!(
                    "The root filesystem is read-only: the logs directory ({logs}) and /tmp are emptyDirs."
                ))
                .chain(config.service.tls.as_ref().map(|_| {
                    format!(
                        "service.tls: certificate and key from Secret {0} (type kubernetes.io/tls), mounted where the config names them; create it first: kubectl create secret tls {0} --cert=CERT --key=KEY. The probes use HTTPS; a renewed certificate takes effect when the pods restart.",
                        tls_secret(target)
                    )
                }))
                .collect(),
            ),
        ],
    })
}

/// With `service.auth`, the keys' variable comes from a Secret (`<name>-api-keys`, key
/// `keys`) that the operator creates; no key is ever written into a manifest.
fn api_keys_env(config: &Config, target: &Target) -> Value {
    match &config.service.auth {
        // The keys come as a file mounted from the same Secret (see `secret_volumes`).
        Some(auth) if auth.keys_file.is_some() => json!([]),
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

/// The Secret that holds the certificate and key of `service.tls` (type kubernetes.io/tls).
pub(super) fn tls_secret(target: &Target) -> String {
    format!("{}-tls", target.name)
}

/// A file the config names that a Secret provides: `service.tls.cert`/`key` from the TLS
/// Secret, `service.auth.keys_file` from the API-keys Secret (mounted files follow a rotated
/// Secret, and the server re-reads the keys file when it changes).
struct SecretFile {
    config_key: &'static str,
    secret: String,
    key: &'static str,
    /// Where the config says the file is, inside the container.
    path: String,
}

/// One projected volume per directory the config's secret files are in, and its mount.
fn secret_volumes(config: &Config, target: &Target) -> Result<(Vec<Value>, Vec<Value>), KubernetesError> {
    let in_container = |path: &std::path::Path| {
        if path.is_absolute() {
            path.display().to_string()
        } else {
            format!("{WORKDIR}/{}", path.display().to_string().trim_start_matches("./"))
        }
    };
    let mut files = Vec::new();
    if let Some(tls) = &config.service.tls {
        let secret = tls_secret(target);
        files.push(SecretFile {
            config_key: "service.tls.cert",
            secret: secret.clone(),
            key: "tls.crt",
            path: in_container(&tls.cert),
        });
        files.push(SecretFile { config_key: "service.tls.key", secret, key: "tls.key", path: in_container(&tls.key) });
    }
    if let Some(keys_file) = config.service.auth.as_ref().and_then(|auth| auth.keys_file.as_ref()) {
        let path = in_container(keys_file);
        files.push(SecretFile {
            config_key: "service.auth.keys_file",
            secret: api_keys_secret(target),
            key: "keys",
            path,
        });
    }
    let logs = logs_dir(config);
    let mut directories: Vec<(String, Vec<Value>)> = Vec::new();
    for file in files {
        let (dir, name) = file.path.rsplit_once('/').unwrap_or(("", file.path.as_str()));
        let refuse = |reason| KubernetesError::SecretPath { key: file.config_key, path: file.path.clone(), reason };
        if dir.is_empty() || name.is_empty() {
            return Err(refuse("it names no file in a directory"));
        }
        let taken = [WORKDIR, "/etc", "/usr", "/usr/local/bin"];
        if taken.contains(&dir) {
            return Err(refuse("a Secret mounted on its directory would hide what the pod needs there"));
        }
        let inside = |volume: &str| dir == volume || dir.starts_with(&format!("{volume}/"));
        if [CONFIG_DIR, "/tmp", logs.as_str()].into_iter().any(inside) {
            return Err(refuse("its directory is inside another volume of the pod (the config, logs or /tmp)"));
        }
        let source = json!({"secret": {"name": file.secret, "items": [{"key": file.key, "path": name}]}});
        match directories.iter_mut().find(|(known, _)| known == dir) {
            Some((_, sources)) => sources.push(source),
            None => directories.push((dir.to_owned(), vec![source])),
        }
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (index, (dir, sources)) in directories.into_iter().enumerate() {
        let name = format!("secrets-{index}");
        volumes.push(json!({"name": name, "projected": {"sources": sources}}));
        mounts.push(json!({"name": name, "mountPath": dir, "readOnly": true}));
    }
    Ok((volumes, mounts))
}
