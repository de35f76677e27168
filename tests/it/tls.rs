//! HTTPS (`service.tls`) end to end with a CA made here (rcgen): the real `capwatch serve`
//! answers over TLS to a client that trusts the CA and to no other; `monitor`, `plan` and
//! `drift` reach it with `--ca-file`; the dashboard probes an HTTPS child of its own, trusting
//! its self-signed certificate without being told.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo_path;

/// PEM files: (CA certificate, server certificate for 127.0.0.1 signed by it, its key).
fn ca_signed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let common::pki::TestPki { ca, cert, key } = common::pki::ca_signed_localhost();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A config with `service.tls` on the files `make` writes (into `pki/` beside the config),
/// fast probing.
fn tls_config(name: &str, make: impl FnOnce(&Path) -> (PathBuf, PathBuf)) -> (PathBuf, PathBuf) {
    let made = std::env::temp_dir().join(format!("capwatch-tls-{name}-made-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&made);
    std::fs::create_dir_all(&made).unwrap();
    let (cert, key) = make(&made);
    // Where `monitor_config` puts its folder.
    let dir = std::env::temp_dir().join(format!("capwatch-tls-{name}-{}", std::process::id()));
    let in_pki = |path: &Path| dir.join("pki").join(path.file_name().unwrap());
    let tls = format!("port: 0\n  tls: {{cert: {}, key: {}}}", in_pki(&cert).display(), in_pki(&key).display());
    let (config_dir, config) = common::monitor_config(
        &format!("tls-{name}"),
        &[
            ("port: 0", tls.as_str()),
            ("health_interval_s: 30", "health_interval_s: 0.3"),
            ("inference_interval_s: 10", "inference_interval_s: 0.3"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ],
    );
    assert_eq!(config_dir, dir);
    std::fs::rename(&made, dir.join("pki")).unwrap();
    (config_dir, config)
}

fn client(ca: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn an_https_server_answers_clients_that_trust_its_ca_and_the_commands_reach_it() {
    let (dir, config) = tls_config("serve", |dir| {
        let (_, cert, key) = ca_signed(dir);
        (cert, key)
    });
    let ca = dir.join("pki/ca.pem");
    let (_server, url, _lines) =
        common::spawn_server(&repo_path("models/default"), &["--config", config.to_str().unwrap()]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusting = client(Some(&ca));
    let mut ready = false;
    for _ in 0..600 {
        if trusting.get(format!("{url}/ready")).send().await.is_ok_and(|answer| answer.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "{url} never became ready over TLS");
    let image = std::fs::read(repo_path("test_images/a_small_yellow_square.png")).unwrap();
    let answer =
        trusting.post(format!("{url}/caption")).header("content-type", "image/png").body(image).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let caption: serde_json::Value = answer.json().await.unwrap();
    assert!(caption["caption"].as_str().is_some_and(|c| !c.is_empty()), "{caption}");

    // A client that does not trust the CA cannot talk to it; plain HTTP on the port gets nowhere.
    let untrusting = client(None).get(format!("{url}/health")).send().await;
    assert!(untrusting.is_err(), "a client without the CA was answered");
    let plain = client(None).get(url.replace("https://", "http://") + "/health").send().await;
    assert!(plain.is_err() || plain.is_ok_and(|answer| answer.status() != 200), "plain HTTP was served");

    let ca_arg = ca.display().to_string();
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(["--ca-file".to_owned(), ca_arg.clone()]);
        common::capwatch_cli(all)
    };
    // The monitor, with the CA file.
    let config_arg = config.display().to_string();
    let (code, stdout, stderr) =
        run(&["monitor", "--url", &url, "--headless", "--cycles", "1", "--config", &config_arg]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("✅ Test 2/2:"), "{stdout}");
    // `plan` reads its /metrics (the captions above were measured).
    let (code, stdout, stderr) = run(&["plan", "--url", &url, "--rate", "1", "--p95-ms", "10000"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("replicas"), "{stdout}");
    // `drift traffic` sends scenes and reads /drift; `drift status` has no reference yet (2).
    let (code, stdout, stderr) =
        run(&["drift", "traffic", "--url", &url, "--requests", "4", "--check-every", "0"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (code, stdout, stderr) = run(&["drift", "status", "--url", &url]).await;
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    // Without the CA file the same command names the failure.
    let (code, _, stderr) =
        common::capwatch_cli(vec!["drift".into(), "status".into(), "--url".into(), url.clone()]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_dashboard_probes_its_https_child_trusting_the_certificate_it_serves() {
    let _machine = common::whole_machine();
    let (dir, config) = tls_config("dashboard", |dir| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
        let paths = (dir.join("self.pem"), dir.join("self.key"));
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    });
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["--headless", "--cycles", "1", "--config"])
        .arg(&config)
        .current_dir(repo_path(""))
        .env_remove("CAPWATCH_CA_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("✅ Test 2/2:"), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs capwatch with `args` and `--config CONFIG` from the repository root: exit code, stderr.
fn run_with_config(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_missing_certificate_or_ca_file_stops_with_the_file_named() {
    let (dir, config) = tls_config("missing", |dir| (dir.join("absent.pem"), dir.join("absent.key")));
    let (code, stderr) = run_with_config(&["serve"], &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("service.tls") && stderr.contains("absent.pem"), "{stderr}");

    let monitor =
        ["monitor", "--url", "https://127.0.0.1:1", "--headless", "--cycles", "1", "--ca-file", "/nonexistent/ca.pem"];
    let (code, stderr) = run_with_config(&monitor, &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/ca.pem"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
