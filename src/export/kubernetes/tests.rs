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
            "prometheusrule.yaml",
            "monitor-replicas-service.yaml",
            "monitor-deployment.yaml",
            "monitor-service.yaml",
            "monitor-servicemonitor.yaml",
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
    assert_eq!(documents.len(), 12);
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

#[test]
fn api_keys_come_from_a_secret_and_never_from_the_manifests() {
    let mut config = Config::default();
    let plain = manifests(&config, "", &target(), &measured()).unwrap();
    let container = |all: &[Manifest]| all[1].object["spec"]["template"]["spec"]["containers"][0].clone();
    assert_eq!(container(&plain)["env"], serde_json::json!([]));
    config.service.auth = Some(crate::config::AuthConfig::default());
    let text = config.to_text().unwrap();
    let with = manifests(&config, &text, &target(), &measured()).unwrap();
    let env = &container(&with)["env"][0];
    assert_eq!(env["name"], "CAPWATCH_API_KEYS");
    assert_eq!(env["valueFrom"]["secretKeyRef"]["name"], format!("{}-api-keys", target().name));
    assert_eq!(env["valueFrom"]["secretKeyRef"]["key"], "keys");
    assert!(with.iter().all(|m| m.object.get("kind") != Some(&serde_json::json!("Secret"))), "the operator makes it");
}

#[test]
fn tls_files_and_a_keys_file_are_mounted_from_their_secrets_where_the_config_names_them() {
    let mut config = Config::default();
    config.service.tls = Some(crate::config::TlsConfig {
        cert: "/etc/capwatch-secrets/server.pem".into(),
        key: "/etc/capwatch-secrets/server.key".into(),
    });
    config.service.auth = Some(crate::config::AuthConfig {
        keys_file: Some("/etc/capwatch-secrets/api-keys".into()),
        ..crate::config::AuthConfig::default()
    });
    let all = manifests(&config, "", &target(), &measured()).unwrap();
    let pod = &all[1].object["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["env"], serde_json::json!([]), "the keys come as a file, not a variable");
    let mount = container["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "secrets-0").unwrap();
    assert_eq!((mount["mountPath"].as_str(), mount["readOnly"].as_bool()), (Some("/etc/capwatch-secrets"), Some(true)));
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "secrets-0").unwrap();
    let sources = volume["projected"]["sources"].as_array().unwrap();
    let item = |i: usize| (sources[i]["secret"]["name"].clone(), sources[i]["secret"]["items"][0].clone());
    assert_eq!(item(0).0, "capwatch-tls");
    assert_eq!(item(0).1, serde_json::json!({"key": "tls.crt", "path": "server.pem"}));
    assert_eq!(item(1).1, serde_json::json!({"key": "tls.key", "path": "server.key"}));
    assert_eq!(item(2).0, "capwatch-api-keys");
    assert_eq!(item(2).1, serde_json::json!({"key": "keys", "path": "api-keys"}));
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let monitor = all.iter().find(|m| m.file_name == "servicemonitor.yaml").unwrap();
    assert_eq!(monitor.object["spec"]["endpoints"][0]["scheme"], "https");
    let yaml = all[1].to_yaml().unwrap();
    assert!(yaml.contains("kubectl create secret tls capwatch-tls"), "{yaml}");

    // A file in a directory another volume owns cannot be mounted: a clear error naming the key.
    config.service.tls = Some(crate::config::TlsConfig {
        cert: "/etc/capwatch/tls/server.pem".into(),
        key: "/etc/capwatch/tls/server.key".into(),
    });
    let Err(err) = manifests(&config, "", &target(), &measured()) else { panic!("mounted inside the ConfigMap") };
    assert!(err.to_string().starts_with("service.tls.cert: /etc/capwatch/tls/server.pem cannot be mounted"), "{err}");
    config.service.tls = Some(crate::config::TlsConfig { cert: "server.pem".into(), key: "server.key".into() });
    let Err(err) = manifests(&config, "", &target(), &measured()) else { panic!("mounted over the working directory") };
    assert!(err.to_string().contains("/opt/capwatch/server.pem"), "{err}");
}
