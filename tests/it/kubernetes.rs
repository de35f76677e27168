//! `capwatch export kubernetes`: the real binary loads the bundled model, measures it and
//! writes the objects; each is checked by an outside validator in strict mode —
//! `kubernetes-validate` against Kubernetes 1.37's schemas for the core objects,
//! prometheus-operator v0.80.1's CRD schemas for ServiceMonitor and PrometheusRule
//! (`tools/validate_crds.py`), `schemas/prometheus-adapter-config.schema.json` for the
//! adapter rule (`tools/validate_adapter_config.py`) — and each validator must reject a copy
//! with one misspelled field, so none passes vacuously. Then the numbers: probes from the
//! config, sizing from the measurement (and enough for a real server run with the
//! Deployment's own arguments), an HPA metric the server really exposes, and PrometheusRule
//! groups equal to `capwatch export prometheus-rules` (and accepted by `promtool`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use capwatch::config::Config;
use serde_json::Value;

use common::{KillOnDrop, Lines, capwatch_cli, python, repo_path};

const CONFIG: &str = "config/monitoring_config.yaml";

const FILES: [&str; 8] = [
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
    "hpa.yaml",
    "prometheus-adapter.yaml",
    "servicemonitor.yaml",
    "prometheusrule.yaml",
];

/// The monitor in the cluster: what discovers the replicas, the monitor, what scrapes it.
const MONITOR_FILES: [&str; 4] =
    ["monitor-replicas-service.yaml", "monitor-deployment.yaml", "monitor-service.yaml", "monitor-servicemonitor.yaml"];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capwatch-k8s-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `capwatch export kubernetes -o DIR ARGS` with the shipped config; its stderr.
async fn export(name: &str, extra: &[&str]) -> (PathBuf, String) {
    let dir = scratch(name);
    let mut args: Vec<String> = ["export", "kubernetes", "--config", CONFIG, "-o"].map(String::from).to_vec();
    args.push(dir.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let (code, stdout, stderr) = capwatch_cli(args).await;
    assert_eq!(code, Some(0), "export failed:\n{stderr}");
    assert!(stdout.is_empty(), "with -o nothing goes to stdout: {stdout}");
    for file in FILES.iter().chain(&MONITOR_FILES) {
        assert!(stderr.contains(&format!("wrote {}", dir.join(file).display())), "{file} not reported:\n{stderr}");
    }
    (dir, stderr)
}

fn read_yaml(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs a validator; its exit status and output.
fn run(mut command: Command) -> (bool, String) {
    let output = command.current_dir(repo_path("")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn kubernetes_validate(file: &Path) -> (bool, String) {
    let mut command = python();
    command.args(["-m", "kubernetes_validate", "--strict", "-k", "1.37.0"]).arg(file);
    run(command)
}

fn validate_crds(files: &[PathBuf]) -> (bool, String) {
    let mut command = python();
    command.arg("tools/validate_crds.py").args(files);
    run(command)
}

fn validate_adapter(file: &Path) -> (bool, String) {
    let mut command = python();
    command.arg("tools/validate_adapter_config.py").arg(file);
    run(command)
}

/// A copy of `file` with `from` (which must occur) replaced by `to`, in `dir`.
fn misspelled(file: &Path, dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "`{from}` is not in {}", file.display());
    std::fs::create_dir_all(dir).unwrap();
    let copy = dir.join(file.file_name().unwrap());
    std::fs::write(&copy, text.replacen(from, to, 1)).unwrap();
    copy
}

#[tokio::test]
async fn core_objects_pass_kubernetes_1_37_strict_and_a_misspelling_fails() {
    let (dir, _) = export("core", &[]).await;
    for file in ["configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml", "prometheus-adapter.yaml"]
    {
        let (ok, output) = kubernetes_validate(&dir.join(file));
        assert!(ok && output.contains("passed"), "{file}:\n{output}");
    }
    let bad = dir.join("bad");
    let cases = [
        ("deployment.yaml", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:"),
        ("deployment.yaml", "readOnlyRootFilesystem:", "readonlyRootFilesystem:"),
        ("hpa.yaml", "stabilizationWindowSeconds:", "stabilisationWindowSeconds:"),
        ("pdb.yaml", "maxUnavailable:", "maxUnavailble:"),
        ("service.yaml", "targetPort:", "targetport:"),
    ];
    for (file, from, to) in cases {
        let copy = misspelled(&dir.join(file), &bad, from, to);
        let (ok, output) = kubernetes_validate(&copy);
        let wrong = to.trim_end_matches(':');
        assert!(!ok && output.contains(wrong), "{file} with `{wrong}` must fail:\n{output}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// With `service.tls` and `service.auth.keys_file`, the Deployment mounts the TLS and API-keys
/// Secrets where the config names the files and probes over HTTPS; the ServiceMonitor scrapes
/// over HTTPS; both pass their strict validators, and a misspelled projected volume fails.
#[tokio::test]
async fn tls_and_a_keys_file_mount_their_secrets_and_still_pass_strict_validation() {
    let (config_dir, config) = common::monitor_config(
        "k8s-tls",
        &[
            (
                "  # auth: {keys_env: CAPWATCH_API_KEYS, protect_all: false}",
                "  auth: {keys_env: CAPWATCH_API_KEYS, keys_file: /etc/capwatch-tls/api-keys, protect_all: false}",
            ),
            (
                "  # tls: {cert: /etc/capwatch-tls/server.pem, key: /etc/capwatch-tls/server.key}",
                "  tls: {cert: /etc/capwatch-tls/server.pem, key: /etc/capwatch-tls/server.key}",
            ),
        ],
    );
    let dir = config_dir.join("out");
    let args = ["export", "kubernetes", "--config", &config.display().to_string(), "-o", &dir.display().to_string()];
    let (code, _, stderr) = capwatch_cli(args.map(String::from).to_vec()).await;
    assert_eq!(code, Some(0), "{stderr}");
    let deployment = read_yaml(&dir.join("deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert_eq!(container["env"], serde_json::json!([]));
    let text = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    assert!(text.contains("mountPath: /etc/capwatch-tls") && text.contains("projected:"), "{text}");
    let (ok, output) = kubernetes_validate(&dir.join("deployment.yaml"));
    assert!(ok && output.contains("passed"), "{output}");
    let (ok, output) = validate_crds(&[dir.join("servicemonitor.yaml")]);
    assert!(ok, "{output}");
    assert_eq!(read_yaml(&dir.join("servicemonitor.yaml"))["spec"]["endpoints"][0]["scheme"], "https");
    let copy = misspelled(&dir.join("deployment.yaml"), &dir.join("bad"), "projected:", "projectd:");
    let (ok, output) = kubernetes_validate(&copy);
    assert!(!ok && output.contains("projectd"), "a misspelled projected volume must fail:\n{output}");
    std::fs::remove_dir_all(config_dir).unwrap();
}

#[tokio::test]
async fn service_monitor_and_prometheus_rule_pass_the_operator_crds_and_a_misspelling_fails() {
    let (dir, _) = export("crds", &[]).await;
    let files = [dir.join("servicemonitor.yaml"), dir.join("prometheusrule.yaml")];
    let (ok, output) = validate_crds(&files);
    assert!(ok, "{output}");
    assert!(output.contains("OK") && output.contains("ServiceMonitor/capwatch"), "{output}");
    assert!(output.contains("PrometheusRule/capwatch"), "{output}");

    let bad = dir.join("bad");
    for (file, from, to) in
        [("servicemonitor.yaml", "interval:", "intervall:"), ("prometheusrule.yaml", "annotations:", "anotations:")]
    {
        let copy = misspelled(&dir.join(file), &bad, from, to);
        let (ok, output) = validate_crds(&[copy]);
        let wrong = to.trim_end_matches(':');
        assert!(!ok && output.contains(wrong), "{file} with `{wrong}` must fail:\n{output}");
    }
    // Nothing to check is a failure, not a pass.
    let (ok, output) = validate_crds(&[dir.join("service.yaml")]);
    assert!(!ok, "{output}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_adapter_rule_passes_its_strict_schema_and_a_misspelling_fails() {
    let (dir, _) = export("adapter", &[]).await;
    let file = dir.join("prometheus-adapter.yaml");
    let (ok, output) = validate_adapter(&file);
    assert!(ok && output.contains("OK"), "{output}");
    for (from, to) in [("metricsQuery:", "metricQuery:"), ("resource: pod", "resourse: pod")] {
        let copy = misspelled(&file, &dir.join("bad"), from, to);
        let (ok, output) = validate_adapter(&copy);
        let wrong = to.split(':').next().unwrap();
        assert!(!ok && output.contains(wrong), "`{wrong}` must fail:\n{output}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The Deployment's numbers against the config and the measurement it reports.
#[tokio::test]
async fn probes_drain_resources_and_security_follow_the_config_and_the_measurement() {
    let (dir, stderr) = export("semantics", &[]).await;
    let config = Config::load(&repo_path(CONFIG)).unwrap();
    let deployment = read_yaml(&dir.join("deployment.yaml"));
    let annotations = &deployment["metadata"]["annotations"];
    let load_s: f64 = annotations["capwatch/measured-load-seconds"].as_str().unwrap().parse().unwrap();
    let peak_rss_bytes: u64 = annotations["capwatch/measured-peak-rss-bytes"].as_str().unwrap().parse().unwrap();
    assert!(load_s > 0.0 && stderr.contains(&format!("warmed up in {load_s:.3} s")), "{load_s}\n{stderr}");
    // The process maps ONNX Runtime (~30 MB) and the model: a real reading, not a placeholder.
    assert!(peak_rss_bytes > 20 << 20, "{peak_rss_bytes}");

    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(deployment["spec"].get("replicas").is_none(), "the HPA owns the replica count");

    let liveness = &container["livenessProbe"];
    assert_eq!(liveness["httpGet"]["path"], "/health");
    assert_eq!(liveness["failureThreshold"], config.restart.health_failures.get());
    assert_eq!(liveness["periodSeconds"].as_f64().unwrap(), config.monitoring.health_interval_s.0.as_secs_f64().ceil());
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    let startup = &container["startupProbe"];
    assert_eq!(startup["httpGet"]["path"], "/ready");
    let budget_s = startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
    assert!(budget_s as f64 >= load_s * 3.0 && budget_s >= 30, "startup budget {budget_s} s for a {load_s} s load");

    let resources = &container["resources"];
    let mib = |quantity: &Value| quantity.as_str().unwrap().strip_suffix("Mi").unwrap().parse::<u64>().unwrap() << 20;
    let request = mib(&resources["requests"]["memory"]);
    let limit = mib(&resources["limits"]["memory"]);
    assert!(request as f64 >= peak_rss_bytes as f64 * 1.25 && limit as f64 >= peak_rss_bytes as f64 * 1.5);
    assert!(request < limit);
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
    let cores = flag("--workers").parse::<u64>().unwrap() * flag("--intra-op-threads").parse::<u64>().unwrap();
    assert_eq!(resources["requests"]["cpu"], cores.to_string());
    assert!(resources["limits"].get("cpu").is_none());

    assert_eq!(container["command"], serde_json::json!(["/usr/local/bin/capwatch"]));
    assert_eq!(args[0], "serve");
    assert_eq!(flag("--config"), "/etc/capwatch/monitoring_config.yaml");
    assert_eq!(flag("--host"), "0.0.0.0");
    assert_eq!(flag("--port"), config.service.port.to_string());
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["workingDir"], "/opt/capwatch");

    // Drain: the preStop sleep, then every request may run to its timeout.
    let pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap();
    assert!(pre_stop_s >= 1);
    let grace_s = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace_s > pre_stop_s + config.service.request_timeout_s.get() as u64, "{grace_s}");
    assert!(grace_s as f64 > pre_stop_s as f64 + config.restart.grace_s.0.as_secs_f64());

    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 10001);
    assert_eq!(security["runAsGroup"], 10001);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    // Writable places on a read-only root: the logs directory and /tmp, both emptyDir.
    let mounts = container["volumeMounts"].as_array().unwrap();
    let volume_of = |path: &str| {
        let mount = mounts.iter().find(|m| m["mountPath"] == path).unwrap_or_else(|| panic!("no mount at {path}"));
        pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap().clone()
    };
    assert!(volume_of("/opt/capwatch/logs").get("emptyDir").is_some());
    assert!(volume_of("/tmp").get("emptyDir").is_some());
    let config_volume = volume_of("/etc/capwatch");
    let config_map = read_yaml(&dir.join("configmap.yaml"));
    assert_eq!(config_volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert_eq!(
        config_map["data"]["monitoring_config.yaml"].as_str().unwrap(),
        std::fs::read_to_string(repo_path(CONFIG)).unwrap()
    );

    // Labels and selectors tie the objects together.
    for file in FILES {
        let object = read_yaml(&dir.join(file));
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "capwatch", "{file}");
        assert_eq!(labels["app.kubernetes.io/instance"], "capwatch", "{file}");
        assert_eq!(labels["app.kubernetes.io/version"], env!("CARGO_PKG_VERSION"), "{file}");
        assert!(object["metadata"].get("namespace").is_none(), "{file}");
    }
    let service = read_yaml(&dir.join("service.yaml"));
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value);
    }
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    let monitor = read_yaml(&dir.join("servicemonitor.yaml"));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][key], value);
    }
    let hpa = read_yaml(&dir.join("hpa.yaml"));
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"].as_u64().unwrap() > 0);
    assert_eq!(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"], flag("--workers"));
    let pdb = read_yaml(&dir.join("pdb.yaml"));
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The server started with the Deployment's own arguments (config, host and port made local)
/// exposes the HPA's metric, counting the scrape that reads it (the adapter subtracts it),
/// and stays within the memory limit after captioning.
#[tokio::test]
async fn a_server_run_with_the_deployment_arguments_exposes_the_hpa_metric_within_the_memory_limit() {
    let _machine = common::whole_machine();
    let (dir, _) = export("server", &["--name", "captions", "--namespace", "ml", "--min-replicas", "3"]).await;
    let deployment = read_yaml(&dir.join("deployment.yaml"));
    assert_eq!(deployment["metadata"]["namespace"], "ml");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> =
        container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
    let mut set = |flag: &str, value: &str| {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.to_owned();
    };
    set("--host", "127.0.0.1");
    set("--port", "0");
    let at = args.iter().position(|a| a == "--config").unwrap();
    args.drain(at..at + 2);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (child, _stdout, mut stderr) = common::spawn_capwatch(&arg_refs, &repo_path(CONFIG), &[]);
    let child = KillOnDrop(child);
    let url = server_url(&mut stderr);
    tokio::task::spawn_blocking({
        let url = url.clone();
        move || common::wait_ready(&url)
    })
    .await
    .unwrap();

    let client = reqwest::Client::new();
    let image = std::fs::read(repo_path("test_images/a_small_yellow_square.png")).unwrap();
    for _ in 0..4 {
        let response =
            client.post(format!("{url}/caption")).header("content-type", "image/png").body(image.clone()).send().await;
        assert_eq!(response.unwrap().status(), 200);
    }
    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();

    let hpa = read_yaml(&dir.join("hpa.yaml"));
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    let metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"].as_str().unwrap();
    let line = metrics.lines().find(|l| l.split_whitespace().next() == Some(metric));
    assert_eq!(line, Some(format!("{metric} 1").as_str()), "the scrape alone is in flight:\n{metrics}");
    assert!(metrics.contains(&format!("# TYPE {metric} gauge")), "{metrics}");

    // The adapter serves that metric under that name, from pod series.
    let adapter = read_yaml(&dir.join("prometheus-adapter.yaml"));
    assert_eq!(adapter["metadata"]["name"], "captions-prometheus-adapter");
    let rules: Value = serde_yaml_ng::from_str(adapter["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let rule = &rules["rules"][0];
    assert!(rule["seriesQuery"].as_str().unwrap().starts_with(&format!("{metric}{{")));
    assert_eq!(rule["name"]["as"], metric);
    assert_eq!(rule["resources"]["overrides"]["pod"]["resource"], "pod");

    let pid = child.0.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak = capwatch::export::measure::parse_proc_status(&status).unwrap().peak_rss_bytes;
    let limit = container["resources"]["limits"]["memory"].as_str().unwrap();
    let limit_bytes = limit.strip_suffix("Mi").unwrap().parse::<u64>().unwrap() << 20;
    assert!(peak <= limit_bytes, "the server peaked at {} MiB, over the {limit} limit", peak >> 20);
    drop(child);
    std::fs::remove_dir_all(dir).unwrap();
}

fn server_url(stderr: &mut Lines) -> String {
    common::loopback_url_in(&stderr.wait_for("http://127.0.0.1:")).unwrap()
}

#[tokio::test]
async fn prometheus_rule_groups_are_the_rules_export_and_promtool_accepts_them() {
    let (dir, _) = export("rules", &[]).await;
    let (code, rules_yaml, stderr) =
        capwatch_cli(["export", "prometheus-rules", "--config", CONFIG].map(String::from).to_vec()).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rules: Value = serde_yaml_ng::from_str(&rules_yaml).unwrap();
    let rule = read_yaml(&dir.join("prometheusrule.yaml"));
    assert_eq!(rule["spec"]["groups"], rules["groups"]);
    assert!(rule["spec"]["groups"].as_array().unwrap().len() >= 3);

    let promtool = common::prometheus_tool("promtool", "PROMTOOL");
    let spec = dir.join("spec_rules.yml");
    std::fs::write(&spec, serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    let (ok, output) = run({
        let mut command = Command::new(promtool);
        command.args(["check", "rules"]).arg(&spec);
        command
    });
    assert!(ok && output.contains("SUCCESS"), "{output}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn without_a_directory_every_object_goes_to_stdout_as_in_the_files() {
    let (dir, _) = export("stdout-files", &[]).await;
    let (code, stdout, stderr) =
        capwatch_cli(["export", "kubernetes", "--config", CONFIG].map(String::from).to_vec()).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Measured on this machine") && stderr.contains("Sizing: memory request"), "{stderr}");
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&stdout)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    assert_eq!(documents.len(), FILES.len() + MONITOR_FILES.len());
    for (document, file) in documents.iter().zip(FILES.iter().chain(&MONITOR_FILES)) {
        let mut from_file = read_yaml(&dir.join(file));
        let mut document = document.clone();
        // Each run measures anew: compare all but the measured numbers.
        if *file == "deployment.yaml" {
            for object in [&mut from_file, &mut document] {
                object["metadata"]["annotations"] = Value::Null;
                object["spec"]["template"]["spec"]["containers"][0]["resources"] = Value::Null;
                object["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["failureThreshold"] = Value::Null;
            }
        }
        assert_eq!(document, from_file, "{file}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_model_that_cannot_load_fails_as_serve_does_and_bad_flags_are_usage_errors() {
    let dir = scratch("bad-model");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, "service:\n  model_dir: /nonexistent/model\n").unwrap();
    let args = ["export", "kubernetes", "--config", config.to_str().unwrap()].map(String::from).to_vec();
    let (code, stdout, stderr) = capwatch_cli(args).await;
    assert_eq!(code, Some(i32::from(capwatch::exit_code::MODEL)), "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("cannot load model from /nonexistent/model"), "{stderr}");

    for bad in [&["--min-replicas", "0"][..], &["--min-replicas", "5", "--max-replicas", "4"], &["--name", "Cap_watch"]]
    {
        let mut args = ["export", "kubernetes", "--config", CONFIG].map(String::from).to_vec();
        args.extend(bad.iter().map(|s| s.to_string()));
        let (code, _, stderr) = capwatch_cli(args).await;
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("invalid --"), "{stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The monitor's objects pass the strict validators (a misspelling fails); the monitor
/// discovers the replicas through the headless Service over the server pods; no server
/// selector picks a monitor pod; the servers' ServiceMonitor scrapes the main Service only;
/// notification secrets come from a Secret, named in the manifest, never written into it.
#[tokio::test]
async fn the_monitor_runs_in_the_cluster_and_discovers_the_replicas_by_dns() {
    let (config_dir, config) = common::monitor_config(
        "k8s-monitor",
        &[("  sinks: []\n", "  sinks:\n    - kind: webhook\n      url_env: CAPWATCH_ALERT_WEBHOOK_URL\n")],
    );
    let dir = config_dir.join("out");
    let args = ["export", "kubernetes", "--config", &config.display().to_string(), "-o", &dir.display().to_string()];
    let (code, _, stderr) = capwatch_cli(args.map(String::from).to_vec()).await;
    assert_eq!(code, Some(0), "{stderr}");
    for file in ["monitor-replicas-service.yaml", "monitor-deployment.yaml", "monitor-service.yaml"] {
        let (ok, output) = kubernetes_validate(&dir.join(file));
        assert!(ok && output.contains("passed"), "{file}:\n{output}");
    }
    let (ok, output) = validate_crds(&[dir.join("monitor-servicemonitor.yaml")]);
    assert!(ok && output.contains("ServiceMonitor/capwatch-monitor"), "{output}");
    let copy = misspelled(&dir.join("monitor-replicas-service.yaml"), &dir.join("bad"), "clusterIP:", "clusterIp:");
    let (ok, output) = kubernetes_validate(&copy);
    assert!(!ok && output.contains("clusterIp"), "a misspelled headless Service must fail:\n{output}");
    let copy = misspelled(&dir.join("monitor-deployment.yaml"), &dir.join("bad"), "livenessProbe:", "livenesProbe:");
    let (ok, output) = kubernetes_validate(&copy);
    assert!(!ok && output.contains("livenesProbe"), "a misspelled monitor Deployment must fail:\n{output}");

    let headless = read_yaml(&dir.join("monitor-replicas-service.yaml"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let servers = read_yaml(&dir.join("deployment.yaml"));
    let server_pods = &servers["spec"]["template"]["metadata"]["labels"];
    for (key, value) in headless["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&server_pods[key], value, "the headless Service lists the server pods");
    }
    let monitor = read_yaml(&dir.join("monitor-deployment.yaml"));
    assert_eq!(monitor["spec"]["replicas"], 1);
    let pod = &monitor["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false, "DNS discovery needs no API access");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
    assert_eq!(args[..2], ["monitor", "--headless"]);
    // The headless Service's name and port (the test config's port is 0).
    assert_eq!(flag("--discover"), format!("dns:capwatch-replicas:{}", headless["spec"]["ports"][0]["port"]));
    assert_eq!(flag("--config"), "/etc/capwatch/monitoring_config.yaml");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], read_yaml(&dir.join("configmap.yaml"))["metadata"]["name"]);
    // The webhook URL comes from the Secret, by name; its value is nowhere in the manifests.
    let env = &container["env"][0];
    assert_eq!(env["name"], "CAPWATCH_ALERT_WEBHOOK_URL");
    assert_eq!(env["valueFrom"]["secretKeyRef"]["name"], "capwatch-monitor");
    let text = std::fs::read_to_string(dir.join("monitor-deployment.yaml")).unwrap();
    assert!(text.contains("kubectl create secret generic capwatch-monitor --from-literal=CAPWATCH_ALERT_WEBHOOK_URL="));
    // No selector of the servers picks the monitor pod.
    let monitor_pod = &monitor["spec"]["template"]["metadata"]["labels"];
    let picks = |selector: &Value| selector.as_object().unwrap().iter().all(|(k, v)| &monitor_pod[k] == v);
    assert!(!picks(&servers["spec"]["selector"]["matchLabels"]));
    assert!(!picks(&read_yaml(&dir.join("service.yaml"))["spec"]["selector"]));
    // The servers' ServiceMonitor picks the main Service, not the headless one; the monitor's
    // picks the monitor's Service, whose port serves --metrics-listen.
    let scraped = read_yaml(&dir.join("servicemonitor.yaml"))["spec"]["selector"]["matchLabels"].clone();
    let matches =
        |object: &Value| scraped.as_object().unwrap().iter().all(|(k, v)| &object["metadata"]["labels"][k] == v);
    assert!(matches(&read_yaml(&dir.join("service.yaml"))) && !matches(&headless));
    let monitor_service = read_yaml(&dir.join("monitor-service.yaml"));
    let own = read_yaml(&dir.join("monitor-servicemonitor.yaml"))["spec"]["selector"]["matchLabels"].clone();
    assert!(own.as_object().unwrap().iter().all(|(k, v)| &monitor_service["metadata"]["labels"][k] == v));
    assert_eq!(monitor_service["spec"]["ports"][0]["port"], 9465);
    assert_eq!(flag("--metrics-listen"), "0.0.0.0:9465");
    std::fs::remove_dir_all(config_dir).unwrap();
}
