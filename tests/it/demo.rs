//! `capwatch demo --headless --quick` end to end: the bundled model served as two variants by a
//! real child process, the real monitor, faults over HTTP, real scenes sent as caption
//! requests; each scene's events are found in the session's metrics file, in order.

use crate::common;

use std::process::Command;

#[test]
fn the_headless_demo_plays_every_scene_and_its_metrics_file_shows_each() {
    // Not a whole-machine test: its thresholds (200 and 500 ms) sit far from the bundled model's
    // time, and it held with both cores kept busy.
    let (dir, config) = common::monitor_config("demo", &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["demo", "--headless", "--quick", "--config", config.to_str().unwrap()])
        .current_dir(common::repo_path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{text}");
    let logs = dir.join("logs/demo");
    assert!(stdout.trim_end().ends_with(&format!("Its files are in {}.", logs.display())), "{text}");
    for scene in ["A latency spike", "Failing requests", "A crash", "A bad canary", "Drift", "The end"] {
        assert!(text.contains(&format!("· {scene} — look at")), "scene {scene} announced\n{text}");
    }
    assert!(text.contains("Summary written to") && text.contains("Report with charts:"), "{text}");

    let records = common::read_records(&logs);
    common::assert_schema(&records);
    let alerts: Vec<(String, String, String)> = records
        .iter()
        .filter(|r| r["type"] == "alert")
        .map(|r| {
            let field = |name: &str| r[name].as_str().unwrap().to_owned();
            (field("rule"), field("transition"), field("severity"))
        })
        .collect();
    // Where each expected transition first appears, in the order the scenes play them.
    let position = |rule: &str, transition: &str, severity: Option<&str>| {
        alerts
            .iter()
            .position(|(r, t, s)| r == rule && t == transition && severity.is_none_or(|severity| s == severity))
            .unwrap_or_else(|| panic!("no {rule} {transition} {severity:?} in {alerts:#?}"))
    };
    let story = [
        position("p95_latency", "fired", Some("warning")),
        position("p95_latency", "escalated", Some("critical")),
        position("p95_latency", "deescalated", Some("warning")),
        position("p95_latency", "resolved", None),
        position("error_rate", "fired", None),
        position("error_rate", "resolved", None),
        position("ab_worse", "fired", None),
        position("drift", "fired", None),
    ];
    assert!(story.windows(2).all(|pair| pair[0] < pair[1]), "{story:?}\n{alerts:#?}");

    // The crash: the child exited unexpectedly and was started again.
    let server = |kind: &str| records.iter().filter(|r| r["type"] == "server" && r["event"]["kind"] == kind).count();
    assert!(server("exited") >= 1 && server("spawned") >= 2, "{records:#?}");
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "server" && r["event"]["kind"] == "exited" && r["event"]["expected"] == false)
    );
    // The A/B verdict: the canary writes poorer captions.
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "ab" && r["verdict"]["kind"] == "lower_quality" && r["verdict"]["worse"] == "canary"),
        "no A/B verdict against the canary"
    );
    // Drift: a reading of the dark window found it.
    assert!(records.iter().any(|r| r["type"] == "drift" && r["detected"] == true));
    // Every fault the scenes injected has its record.
    let faults: Vec<&str> = records
        .iter()
        .filter(|r| r["type"] == "fault" && r["event"] == "started")
        .map(|r| r["fault"]["kind"].as_str().unwrap())
        .collect();
    for kind in ["latency", "errors", "crash", "garbage"] {
        assert!(faults.contains(&kind), "{kind} in {faults:?}");
    }
    // The HTML report charts the two variants beside the window charts and the alert timeline.
    let page = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|x| x == "html"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .expect("an HTML report");
    assert_eq!(page.matches("<svg").count(), 6, "latency, errors, quality, two A/B charts, the alert timeline");
    for legend in ["A/B: P95 per variant", "base P95", "canary P95", "base quality", "canary quality"] {
        assert!(page.contains(legend), "{legend} in the report");
    }
    let summary = common::session_summary(&logs);
    assert!(summary["alerts_critical"].as_u64().unwrap() >= 1, "{summary:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
