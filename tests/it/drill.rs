//! `capwatch drill` end to end, in its short form: a real chaos-enabled child server, the real
//! monitor, faults injected over HTTP, notifications to a local webhook receiver. One drill
//! where everything holds (errors, unready, crash) and one where a dead sink makes it fail.

use crate::common;

use std::process::Command;

use common::receiver::{Receiver, refused_url};

/// A drill config: small latency thresholds (so faults stay short), a webhook sink.
fn drill_config(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let sink = "  sinks:\n    - kind: webhook\n      name: hook\n      url_env: T_DRILL_HOOK\n";
    common::monitor_config(
        name,
        &[
            ("  sinks: []\n", sink),
            ("p95_latency_ms: {warning: 4000, critical: 8000}", "p95_latency_ms: {warning: 150, critical: 300}"),
            ("min_samples: 5 ", "min_samples: 3 "),
            ("max_attempts: 4 ", "max_attempts: 1 "),
        ],
    )
}

fn drill(config: &std::path::Path, faults: &str, hook: &str, report: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["drill", "--config", config.to_str().unwrap(), "--faults", faults, "--report"])
        .arg(report)
        .current_dir(common::repo_path(""))
        .env("T_DRILL_HOOK", hook)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[test]
fn a_short_drill_fires_repeats_resolves_restarts_and_notifies() {
    let _machine = common::whole_machine();
    let receiver = Receiver::start();
    let (dir, config) = drill_config("drill");
    let report = dir.join("drill.md");
    let (code, output) = drill(&config, "errors,unready,crash", &format!("{}/hook", receiver.url), &report);
    assert_eq!(code, Some(0), "{output}");
    let table = std::fs::read_to_string(&report).unwrap();
    assert!(output.contains(&table), "the report is printed too");
    let row = |fault: &str| table.lines().find(|line| line.starts_with(&format!("| {fault}"))).unwrap().to_owned();
    let errors = row("errors: HTTP 500");
    assert!(errors.contains("| error_rate CRITICAL |") && errors.contains("hook fired ✓ resolved ✓"), "{errors}");
    assert!(errors.ends_with("✅ held |") && !errors.contains("| no (") && errors.contains("| — |"), "{errors}");
    let unready = row("unready");
    assert!(unready.contains("| health_down CRITICAL |") && unready.contains("✅ held"), "{unready}");
    assert!(unready.contains("| n/a |"), "no repeat expected: the restart ends the fault\n{unready}");
    let crash = row("crash: exit 70");
    assert!(crash.contains("| — (restart) |") && crash.contains("✅ held"), "{crash}");
    assert!(table.contains("Every expectation held."), "{table}");

    // Every notification is marked as a drill; the sink heard error_rate and health_down fire and resolve.
    let bodies: Vec<_> = receiver.requests("/hook").into_iter().map(|r| r.body).collect();
    assert!(bodies.iter().all(|b| b["drill"] == true && b["message"].as_str().unwrap().starts_with("[DRILL]")));
    for rule in ["error_rate", "health_down"] {
        for state in ["firing", "resolved"] {
            assert!(bodies.iter().any(|b| b["rule"] == rule && b["state"] == state), "{rule} {state}: {bodies:#?}");
        }
    }
    // The drill's own metrics file records each fault's start and end.
    let records = common::read_records(&dir.join("logs/drill"));
    common::assert_schema(&records);
    let faults: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["type"] == "fault")
        .map(|r| (r["event"].as_str().unwrap().to_owned(), r["fault"]["kind"].as_str().unwrap().to_owned()))
        .collect();
    let ends = |kind: &str| faults.iter().filter(|(event, k)| k == kind && event == "ended").count();
    assert_eq!((ends("errors"), ends("unready"), ends("crash")), (1, 1, 1), "{faults:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_drill_with_a_dead_sink_fails_and_says_why() {
    let _machine = common::whole_machine();
    let (dir, config) = drill_config("drill-dead");
    let report = dir.join("drill.json");
    let (code, output) = drill(&config, "errors", &refused_url(), &report);
    assert_eq!(code, Some(1), "{output}");
    let errors = output.lines().find(|line| line.starts_with("| errors")).unwrap();
    assert!(errors.contains("| error_rate CRITICAL |") && errors.contains("❌ failed"), "{output}");
    assert!(output.contains("What did not hold:\n- errors: hook failed a notification"), "{output}");
    // The JSON report: the same verdict for machines.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let step = &json["steps"][0];
    assert_eq!((step["kind"].as_str(), step["expected_alert"].as_str()), (Some("errors"), Some("error_rate CRITICAL")));
    assert!(step["fired_after_s"].as_f64().unwrap() <= step["fire_within_s"].as_f64().unwrap());
    assert!(step["problems"][0].as_str().unwrap().starts_with("hook failed a notification"), "{json}");
    assert_eq!(step["notifications"][0]["failed"], true);
    let _ = std::fs::remove_dir_all(&dir);
}
