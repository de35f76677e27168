//! Alert notifications against a local receiver standing in for Slack, Telegram and a
//! webhook: what each API gets (method, path, JSON body, where the token goes), the alert
//! state machine's fire / repeat / resolve, per-sink minimum severity, retries on 500, slow
//! and refused sinks, full queues, `capwatch alert-test`, and secrets kept out of every file.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use capwatch::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};
use capwatch::clock::Clock;
use capwatch::config::Config;
use capwatch::notify::{DeliveryOutcome, DeliveryReport, FailureKind, Notifier, Sink};
use nix::sys::signal::Signal;
use serde_json::Value;

use common::receiver::{Receiver, refused_url};
use common::repo_path;

const SLACK_SECRET: &str = "SECRETSLACK42";
const TELEGRAM_TOKEN: &str = "123456:SECRETTG42";
const HOOK_SECRET: &str = "SECRETHOOK42";
const BEARER: &str = "SECRETBEARER42";
const SECRETS: [&str; 4] = [SLACK_SECRET, "SECRETTG42", HOOK_SECRET, BEARER];

/// Environment for the sinks below, pointing at `receiver`.
fn sink_env(receiver: &Receiver) -> Vec<(String, String)> {
    let url = &receiver.url;
    [
        ("T_SLACK_URL", format!("{url}/slack/T000/B000/{SLACK_SECRET}")),
        ("T_TG_TOKEN", TELEGRAM_TOKEN.to_owned()),
        ("T_HOOK_URL", format!("{url}/hook?key={HOOK_SECRET}")),
        ("T_HOOK_TOKEN", BEARER.to_owned()),
        ("T_PAGER_URL", format!("{url}/pager")),
        ("T_FLAKY_URL", format!("{url}/fail")),
        ("T_SLOW_URL", format!("{url}/slow")),
        ("T_DEAD_URL", refused_url()),
        ("T_REJECT_URL", format!("{url}/reject")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn sinks_yaml(receiver: &Receiver, names: &[&str]) -> String {
    let all = [
        ("slack", "    - kind: slack\n      webhook_url_env: T_SLACK_URL\n".to_owned()),
        (
            "telegram",
            format!(
                "    - kind: telegram\n      bot_token_env: T_TG_TOKEN\n      chat_id: \"-100123\"\n      api_url: {}\n",
                receiver.url
            ),
        ),
        (
            "webhook",
            "    - kind: webhook\n      url_env: T_HOOK_URL\n      bearer_token_env: T_HOOK_TOKEN\n".to_owned(),
        ),
        (
            "pager",
            "    - kind: webhook\n      name: pager\n      url_env: T_PAGER_URL\n      min_severity: critical\n"
                .to_owned(),
        ),
        ("flaky", "    - kind: webhook\n      name: flaky\n      url_env: T_FLAKY_URL\n".to_owned()),
        ("slow", "    - kind: webhook\n      name: slow\n      url_env: T_SLOW_URL\n".to_owned()),
        ("dead", "    - kind: webhook\n      name: dead\n      url_env: T_DEAD_URL\n".to_owned()),
        ("rejected", "    - kind: webhook\n      name: rejected\n      url_env: T_REJECT_URL\n".to_owned()),
    ];
    let mut yaml = "  sinks:\n".to_owned();
    for name in names {
        yaml.push_str(&all.iter().find(|(n, _)| n == name).unwrap().1);
    }
    yaml
}

const FAST_DELIVERY: [(&str, &str); 4] = [
    ("timeout_s: 5 ", "timeout_s: 0.5 "),
    ("max_attempts: 4 ", "max_attempts: 3 "),
    (
        "initial_backoff_s: 1     # doubling ...\n    max_backoff_s: 30",
        "initial_backoff_s: 0.05\n    max_backoff_s: 0.2",
    ),
    ("queue_capacity: 32", "queue_capacity: 8"),
];

/// The config's sinks with their secrets taken from [`sink_env`].
fn resolve(config: &Config, receiver: &Receiver) -> Vec<Sink> {
    let env = sink_env(receiver);
    Sink::resolve_all(&config.alerts.sinks.0, &|var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()))
        .unwrap()
}

/// Runs `capwatch alert-test --config CONFIG` with `env` and no other `T_*` sink variable;
/// exit code, stdout, stderr.
fn alert_test(config: &Path, env: &[(String, String)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capwatch"));
    for var in ["T_SLACK_URL", "T_TG_TOKEN", "T_HOOK_URL", "T_HOOK_TOKEN", "T_TLS_URL"] {
        command.env_remove(var);
    }
    let output = command.args(["alert-test", "--config"]).arg(config).envs(env.iter().cloned()).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

fn assert_no_secrets(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} contains the secret {secret}:\n{text}");
    }
}

/// The transitions a chat message announces, read from its text.
fn chat_transition(text: &str) -> &'static str {
    if text.starts_with("✅ RESOLVED") {
        "resolved"
    } else if text.starts_with("🔁 STILL") {
        "repeated"
    } else if text.starts_with("🚨") {
        "fired"
    } else {
        panic!("unexpected message {text}")
    }
}

#[test]
fn alert_test_reports_what_each_sink_answered() {
    let receiver = Receiver::start();
    let sinks = sinks_yaml(&receiver, &["slack", "telegram", "webhook", "flaky", "dead", "rejected"]);
    let mut replacements = vec![("  sinks: []\n", sinks.as_str())];
    replacements.extend(FAST_DELIVERY);
    let (dir, config) = common::monitor_config("alert-test", &replacements);
    let (code, stdout, stderr) = alert_test(&config, &sink_env(&receiver));
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("✅ slack (slack): delivered, HTTP 200"), "{stdout}");
    assert!(stdout.contains("✅ telegram (telegram): delivered, HTTP 200"), "{stdout}");
    assert!(stdout.contains("✅ webhook (webhook): delivered, HTTP 200"), "{stdout}");
    assert!(
        stdout.contains(
            "❌ flaky (webhook): failed after 3 attempt(s): HTTP 500 Internal Server Error: upstream exploded"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("❌ dead (webhook): failed after 3 attempt(s):"), "{stdout}");
    assert!(
        stdout.contains("❌ rejected (webhook): failed after 1 attempt(s): HTTP 404 Not Found: no_service"),
        "{stdout}"
    );
    assert!(stdout.contains("3 of 6 sink(s) failed."), "{stdout}");
    assert_no_secrets("alert-test output", &format!("{stdout}{stderr}"));

    // Slack: the token is the webhook URL's path; the body is {text, attachments}.
    let slack = receiver.requests("/slack/");
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].method, "POST");
    assert_eq!(slack[0].path, format!("/slack/T000/B000/{SLACK_SECRET}"));
    assert_eq!(slack[0].content_type.as_deref(), Some("application/json"));
    assert!(slack[0].body["text"].as_str().unwrap().starts_with("🧪 TEST · capwatch"), "{:?}", slack[0].body);
    assert!(slack[0].body["attachments"][0]["color"].is_string());
    // Telegram: the token is in the path (/bot<token>/sendMessage); chat_id and text in the body.
    let telegram = receiver.requests("/bot");
    assert_eq!(telegram.len(), 1);
    assert_eq!(telegram[0].method, "POST");
    assert_eq!(telegram[0].path, format!("/bot{TELEGRAM_TOKEN}/sendMessage"));
    assert_eq!(telegram[0].body["chat_id"], "-100123");
    assert!(telegram[0].body["text"].as_str().unwrap().contains("alert delivery works"));
    assert_eq!(telegram[0].body["link_preview_options"]["is_disabled"], true);
    // Webhook: the documented payload; the bearer token in Authorization; the URL's query kept.
    let hook = receiver.requests("/hook");
    assert_eq!(hook.len(), 1);
    assert_eq!(hook[0].authorization.as_deref(), Some(format!("Bearer {BEARER}").as_str()));
    assert_eq!(hook[0].query.as_deref(), Some(format!("key={HOOK_SECRET}").as_str()));
    let body = &hook[0].body;
    for field in ["rule", "severity", "state", "value", "threshold", "service", "model", "timestamp", "resolved"] {
        assert!(body.get(field).is_some(), "payload lacks `{field}`: {body}");
    }
    assert_eq!((body["state"].as_str(), body["rule"].as_str()), (Some("test"), Some("alert_test")));
    assert_eq!(body["model"], "default");
    // Retries: 500 three times (max_attempts), 404 once (not worth retrying).
    assert_eq!(receiver.requests("/fail").len(), 3);
    assert_eq!(receiver.requests("/reject").len(), 1);

    // Only healthy sinks: exit 0.
    let sinks = sinks_yaml(&receiver, &["slack", "webhook"]);
    let (_, config) = common::monitor_config("alert-test-ok", &[("  sinks: []\n", sinks.as_str())]);
    let (code, stdout, _) = alert_test(&config, &sink_env(&receiver));
    assert_eq!(code, Some(0), "{stdout}");

    // A secret's variable missing: exit 2, naming the key and the variable.
    let (code, _, stderr) = alert_test(&config, &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("alerts.sinks[0].webhook_url_env: environment variable T_SLACK_URL is not set"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn alert(rule: RuleKind, severity: Severity, transition: AlertTransition) -> AlertEvent {
    AlertEvent { rule, severity, transition, value: 1.0, threshold: 1.0, instance: None }
}

async fn next_report(reports_rx: &mut tokio::sync::mpsc::Receiver<DeliveryReport>) -> DeliveryReport {
    tokio::time::timeout(Duration::from_secs(20), reports_rx.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn minimum_severity_and_resolved_follow_what_each_sink_was_told() {
    let receiver = Receiver::start();
    let yaml = format!("alerts:\n{}", sinks_yaml(&receiver, &["webhook", "pager"]));
    let config = Config::parse(&yaml, Path::new("t.yaml")).unwrap();
    let sinks = resolve(&config, &receiver);
    let (reports_tx, mut reports_rx) = tokio::sync::mpsc::channel(64);
    let mut notifier = Notifier::start(sinks, &config.alerts, "default", None, reports_tx).unwrap();

    use AlertTransition::{Deescalated, Escalated, Fired, Repeated, Resolved};
    // The dashboard's clock readings: each sink hears a rule at most once per 300 s cooldown.
    let start = Clock::read();
    let at = |seconds: u64| start.later(Duration::from_secs(seconds));
    // Quality only ever reaches warning: the critical-only pager hears nothing, not even "resolved".
    notifier.notify(&alert(RuleKind::QualityScore, Severity::Warning, Fired), &at(0));
    notifier.notify(&alert(RuleKind::QualityScore, Severity::Ok, Resolved), &at(0));
    // Latency flaps between warning and critical: the webhook heard "warning" and is not told
    // again within the cooldown; the pager hears critical, the fall to warning as a resolve,
    // and the next escalation as news.
    notifier.notify(&alert(RuleKind::P95Latency, Severity::Warning, Fired), &at(0));
    notifier.notify(&alert(RuleKind::P95Latency, Severity::Critical, Escalated), &at(3));
    notifier.notify(&alert(RuleKind::P95Latency, Severity::Warning, Deescalated), &at(6));
    notifier.notify(&alert(RuleKind::P95Latency, Severity::Critical, Escalated), &at(9));
    // After the cooldown both hear the repeat, then the resolve.
    notifier.notify(&alert(RuleKind::P95Latency, Severity::Critical, Repeated), &at(309));
    notifier.notify(&alert(RuleKind::P95Latency, Severity::Ok, Resolved), &at(310));
    let mut reports = Vec::new();
    for _ in 0..(5 + 5) {
        reports.push(next_report(&mut reports_rx).await);
    }
    assert!(
        reports.iter().all(|r| matches!(r.outcome, DeliveryOutcome::Delivered { attempts: 1, status: 200, .. })),
        "{reports:#?}"
    );
    let seen = |prefix: &str| -> Vec<(String, String, String)> {
        receiver
            .requests(prefix)
            .iter()
            .map(|r| {
                let b = &r.body;
                (
                    b["rule"].as_str().unwrap().to_owned(),
                    b["severity"].as_str().unwrap().to_owned(),
                    b["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let owned = |list: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        list.iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned())).collect()
    };
    assert_eq!(
        seen("/hook"),
        owned(&[
            ("quality_score", "warning", "fired"),
            ("quality_score", "ok", "resolved"),
            ("p95_latency", "warning", "fired"),
            ("p95_latency", "critical", "repeated"),
            ("p95_latency", "ok", "resolved"),
        ])
    );
    assert_eq!(
        seen("/pager"),
        owned(&[
            ("p95_latency", "critical", "escalated"),
            ("p95_latency", "warning", "deescalated"),
            ("p95_latency", "critical", "escalated"),
            ("p95_latency", "critical", "repeated"),
            ("p95_latency", "ok", "resolved"),
        ])
    );
    let states: Vec<String> =
        receiver.requests("/pager").iter().map(|r| r.body["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        states,
        ["firing", "resolved", "firing", "firing", "resolved"],
        "a de-escalation resolves for a critical-only sink"
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_slow_sink_fills_its_queue_and_drops_without_delaying_the_others() {
    let _machine = common::whole_machine();
    let receiver = Receiver::start();
    let yaml = format!(
        "alerts:\n{}  delivery:\n    timeout_s: 1\n    max_attempts: 1\n    queue_capacity: 2\n",
        sinks_yaml(&receiver, &["slow", "webhook"])
    );
    let config = Config::parse(&yaml, Path::new("t.yaml")).unwrap();
    let sinks = resolve(&config, &receiver);
    let (reports_tx, mut reports_rx) = tokio::sync::mpsc::channel(64);
    let mut notifier = Notifier::start(sinks, &config.alerts, "default", None, reports_tx).unwrap();
    let fire = |rule| alert(rule, Severity::Warning, AlertTransition::Fired);
    // The slow sink takes the first and hangs on it (1 s); two more fill its queue of 2; the
    // fourth is dropped. The pauses only let the fast sink empty its own queue meanwhile.
    notifier.notify(&fire(RuleKind::P95Latency), &Clock::read());
    tokio::time::sleep(Duration::from_millis(200)).await;
    notifier.notify(&fire(RuleKind::ErrorRate), &Clock::read());
    notifier.notify(&fire(RuleKind::QualityScore), &Clock::read());
    tokio::time::sleep(Duration::from_millis(200)).await;
    notifier.notify(&fire(RuleKind::ConsecutiveFailures), &Clock::read());
    let mut reports = Vec::new();
    for _ in 0..8 {
        reports.push(next_report(&mut reports_rx).await);
    }
    let of = |sink: &str| reports.iter().filter(|r| r.sink == sink).map(|r| r.outcome.label()).collect::<Vec<_>>();
    assert_eq!(of("webhook"), ["delivered"; 4], "{reports:#?}");
    let slow: Vec<_> =
        reports.iter().filter(|r| r.sink == "slow").map(|r| (r.rule.as_str(), r.outcome.label())).collect();
    assert_eq!(
        slow,
        [
            ("consecutive_failures", "dropped"),
            ("p95_latency", "failed"),
            ("error_rate", "failed"),
            ("quality_score", "failed"),
        ],
        "{reports:#?}"
    );
    let failed = reports.iter().find(|r| r.sink == "slow" && r.outcome.label() == "failed").unwrap();
    assert!(
        matches!(&failed.outcome, DeliveryOutcome::Failed { error, failure: FailureKind::Timeout, .. } if error == "no answer within 1.0 s"),
        "{failed:?}"
    );
    // The fast sink was not held up behind the slow one: all four went out before the slow
    // sink's first attempt timed out.
    let first_slow_failure = reports.iter().position(|r| r.sink == "slow" && r.outcome.label() == "failed").unwrap();
    let last_webhook = reports.iter().rposition(|r| r.sink == "webhook").unwrap();
    assert!(last_webhook < first_slow_failure, "{reports:#?}");
    notifier.shutdown(Duration::from_secs(1)).await;
}

fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v)).map(|(_, _, value)| *value)
}

#[test]
fn notifications_follow_fire_repeat_resolve_and_a_dead_sink_costs_nothing_else() {
    let _machine = common::whole_machine();
    let receiver = Receiver::start();
    let (server, url, _server_log) = common::spawn_server(&repo_path("models/default"), &[]);
    common::wait_ready(&url);
    let server_pid = server.0.id();

    // Only health checks can alert here (the other rules' thresholds are out of reach), and
    // the health rule stays at warning: one episode, one severity.
    let sinks = sinks_yaml(&receiver, &["slack", "telegram", "webhook", "pager", "flaky", "dead"]);
    let mut replacements = vec![
        ("  sinks: []\n", sinks.as_str()),
        ("health_interval_s: 30", "health_interval_s: 0.2"),
        ("inference_interval_s: 10", "inference_interval_s: 0.5"),
        ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ("probe_timeout_s: 30", "probe_timeout_s: 0.4"),
        ("error_rate_percent: {warning: 10, critical: 25}", "error_rate_percent: {warning: 101, critical: 102}"),
        ("consecutive_failures: {warning: 3, critical: 5}", "consecutive_failures: {warning: 1000, critical: 2000}"),
        ("health_failures: 3 ", "health_failures: 1000 "),
        ("cooldown_s: 300 ", "cooldown_s: 1.5 "),
    ];
    replacements.extend(FAST_DELIVERY);
    let (dir, config) = common::monitor_config("notify-e2e", &replacements);
    let monitor_args = ["monitor", "--url", &url, "--headless", "--duration", "90s", "--metrics-listen", "127.0.0.1:0"];
    let (mut monitor, mut lines, mut errors) = common::spawn_capwatch(&monitor_args, &config, &sink_env(&receiver));
    let metrics_line = lines.wait_for("📈 Dashboard metrics at ");
    let metrics_url = metrics_line[metrics_line.find("http://").unwrap()..].trim().to_owned();
    lines.wait_for("📊 Cycle 1 summary");

    // The server hangs: health checks time out, the alert fires, then repeats after the cooldown.
    common::signal(server_pid, Signal::SIGSTOP);
    lines.wait_for("🚨 ALERT: health_down");
    lines.wait_for("🚨 ALERT: health_down");
    common::signal(server_pid, Signal::SIGCONT);
    lines.wait_for("✅ RESOLVED: health_down");
    // Every sink has answered for the resolved alert (or given up on it), in any order.
    lines.wait_for_all(&[
        "📨 Notified slack (health_down resolved)",
        "📨 Notified telegram (health_down resolved)",
        "📨 Notified webhook (health_down resolved)",
        "📭 Notification failed: flaky (health_down resolved) after 3 attempt(s): HTTP 500",
        "📭 Notification failed: dead (health_down resolved) after 3 attempt(s)",
    ]);
    // Monitoring went on regardless.
    lines.wait_for("✅ Test");

    // The dashboard's /metrics, parsed as OpenMetrics, counts what happened.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let response = runtime.block_on(reqwest::get(&metrics_url)).unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let exposition = runtime.block_on(response.text()).unwrap();
    let samples = common::parse_openmetrics(&exposition);
    let count = |sink: &str, outcome: &str| {
        sample(&samples, "capwatch_monitor_notifications_total", &[("sink", sink), ("outcome", outcome)]).unwrap()
    };

    common::signal(monitor.id(), Signal::SIGINT);
    let status = monitor.wait().unwrap();
    let stdout = lines.rest().join("\n");
    let stderr = errors.rest().join("\n");
    assert_eq!(status.code(), Some(1), "warnings fired, so exit 1\n{stdout}\n{stderr}");

    // The alert episode as the metrics file recorded it: fired, repeated (≥ 1), resolved.
    let logs = dir.join("logs");
    let jsonl = std::fs::read_to_string(logs.join("service_metrics.jsonl")).unwrap();
    let records: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    common::assert_schema(&records);
    let episode: Vec<String> = records
        .iter()
        .filter(|r| r["type"] == "alert")
        .map(|r| {
            assert_eq!(r["rule"], "health_down", "{r}");
            r["transition"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(episode.first().map(String::as_str), Some("fired"), "{episode:?}");
    assert_eq!(episode.last().map(String::as_str), Some("resolved"), "{episode:?}");
    assert_eq!(episode.iter().filter(|t| *t == "fired").count(), 1, "{episode:?}");
    assert!(episode.iter().filter(|t| *t == "repeated").count() >= 1, "{episode:?}");

    // Each working sink got exactly that sequence, once each, in order.
    let slack: Vec<&str> =
        receiver.requests("/slack/").iter().map(|r| chat_transition(r.body["text"].as_str().unwrap())).collect();
    let telegram: Vec<&str> =
        receiver.requests("/bot").iter().map(|r| chat_transition(r.body["text"].as_str().unwrap())).collect();
    let hook: Vec<String> =
        receiver.requests("/hook").iter().map(|r| r.body["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(slack, episode, "slack");
    assert_eq!(telegram, episode, "telegram");
    assert_eq!(hook, episode, "webhook");
    let first = &receiver.requests("/hook")[0].body;
    assert_eq!(
        (first["rule"].as_str(), first["severity"].as_str(), first["state"].as_str()),
        (Some("health_down"), Some("warning"), Some("firing"))
    );
    assert_eq!(first["resolved"], false);
    let last = &receiver.requests("/hook").last().unwrap().body.clone();
    assert_eq!((last["state"].as_str(), last["resolved"].as_bool()), (Some("resolved"), Some(true)));
    // The critical-only sink heard nothing of a warning; the 500 sink was tried 3 times per notification.
    assert!(receiver.requests("/pager").is_empty());
    assert_eq!(receiver.requests("/fail").len(), episode.len() * 3);

    // Failures are events in the metrics file and counted in /metrics.
    let failed_of = |sink: &str| {
        records.iter().filter(|r| r["type"] == "notification" && r["sink"] == sink && r["outcome"] == "failed").count()
    };
    assert_eq!(failed_of("dead"), episode.len());
    assert_eq!(failed_of("flaky"), episode.len());
    let n = episode.len() as f64;
    assert_eq!(count("slack", "delivered"), n);
    assert_eq!(count("dead", "failed"), n);
    assert_eq!(count("pager", "delivered"), 0.0);
    assert!(
        sample(&samples, "capwatch_monitor_alert_events_total", &[("rule", "health_down"), ("reason", "fired")])
            == Some(1.0)
    );
    assert!(
        sample(&samples, "capwatch_monitor_probes_total", &[("probe", "health"), ("outcome", "timeout")]).unwrap()
            >= 1.0
    );

    // The session summary counts each sink's outcomes, and `capwatch report` agrees.
    let summary_path = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(summary_path).unwrap()).unwrap();
    let tally =
        |sink: &str| summary["notifications"].as_array().unwrap().iter().find(|t| t["sink"] == sink).unwrap().clone();
    assert_eq!(tally("slack")["delivered"].as_u64(), Some(episode.len() as u64), "{summary}");
    assert_eq!(tally("dead")["failed"].as_u64(), Some(episode.len() as u64), "{summary}");
    assert!(stdout.contains(&format!("| notifications | slack {} delivered", episode.len())), "{stdout}");
    let (_, report) = common::capwatch_report(&logs);
    assert!(report.contains(&format!("dead 0 delivered, {} failed", episode.len())), "{report}");

    // No secret in anything capwatch wrote or printed.
    assert_no_secrets("stdout", &stdout);
    assert_no_secrets("stderr", &stderr);
    assert_no_secrets("metrics file", &jsonl);
    assert_no_secrets("/metrics", &exposition);
    for entry in std::fs::read_dir(&logs).unwrap() {
        let path = entry.unwrap().path();
        assert_no_secrets(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The receiver is down, an alert fires, the dashboard is killed with SIGKILL, the receiver
/// comes up, the dashboard starts again: the notification arrives once, with its id, and the
/// metrics file records both attempts.
#[test]
fn a_notification_outlives_a_killed_dashboard() {
    // Nothing listens at the sink's address until the receiver starts there.
    let hook_url = refused_url();
    let address = hook_url.trim_start_matches("http://").trim_end_matches("/hook").to_owned();
    // Only health checks alert (refused: nothing listens at the watched URL either), once.
    let sinks = "  sinks:\n    - kind: webhook\n      url_env: T_HOOK_URL\n";
    let (dir, config) = common::monitor_config(
        "notify-spool",
        &[
            ("  sinks: []\n", sinks),
            ("health_interval_s: 30", "health_interval_s: 0.2"),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
            ("error_rate_percent: {warning: 10, critical: 25}", "error_rate_percent: {warning: 101, critical: 102}"),
            (
                "consecutive_failures: {warning: 3, critical: 5}",
                "consecutive_failures: {warning: 1000, critical: 2000}",
            ),
            ("health_failures: 3 ", "health_failures: 1000 "),
            ("timeout_s: 5 ", "timeout_s: 0.5 "),
            ("max_attempts: 4 ", "max_attempts: 1 "),
        ],
    );
    let env = vec![("T_HOOK_URL".to_owned(), format!("{hook_url}?key={HOOK_SECRET}"))];
    let watched = refused_url().replace("/hook", "");
    let args = ["monitor", "--url", &watched, "--headless", "--duration", "60s"];

    let (mut first, mut lines, _errors) = common::spawn_capwatch(&args, &config, &env);
    lines.wait_for("🚨 ALERT: health_down");
    lines.wait_for("📭 Notification failed: webhook (health_down WARNING) after 1 attempt(s)");
    // The log line comes first; the record follows it in the same step of the loop.
    let logs = dir.join("logs");
    let notifications =
        || -> Vec<Value> { common::read_records(&logs).into_iter().filter(|r| r["type"] == "notification").collect() };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while notifications().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    common::signal(first.id(), Signal::SIGKILL);
    first.wait().unwrap();
    let failed = notifications();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["outcome"], "failed");
    let id = failed[0]["id"].as_str().unwrap().to_owned();

    let receiver = Receiver::start_at(&address);
    let (mut second, mut lines, mut errors) = common::spawn_capwatch(&args, &config, &env);
    lines.wait_for("📨 Notified webhook (health_down WARNING, resent from the spool)");
    // This run's own alert goes out too, as a notification of its own.
    lines.wait_for("📨 Notified webhook (health_down WARNING) in");
    common::signal(second.id(), Signal::SIGINT);
    second.wait().unwrap();
    let stdout = lines.rest().join("\n");
    assert_no_secrets("stdout", &stdout);
    assert_no_secrets("stderr", &errors.rest().join("\n"));

    let received = receiver.requests("/hook");
    let resent: Vec<&Value> = received.iter().map(|r| &r.body).filter(|body| body["id"] == id.as_str()).collect();
    assert_eq!(resent.len(), 1, "the notification arrived once: {received:?}");
    assert_eq!((resent[0]["rule"].as_str(), resent[0]["resent"].as_bool()), (Some("health_down"), Some(true)));
    let fresh: Vec<&Value> = received.iter().map(|r| &r.body).filter(|body| body["id"] != id.as_str()).collect();
    assert_eq!(fresh.len(), 1, "{received:?}");
    assert!(fresh[0].get("resent").is_none(), "{}", fresh[0]);

    // The metrics file holds both attempts under the one id: failed, then delivered again.
    let records = common::read_records(&logs);
    common::assert_schema(&records);
    let attempts: Vec<(&str, bool)> = records
        .iter()
        .filter(|r| r["type"] == "notification" && r["id"] == id.as_str())
        .map(|r| (r["outcome"].as_str().unwrap(), r["resent"] == true))
        .collect();
    assert_eq!(attempts, [("failed", false), ("delivered", true)]);

    // Nothing is left to send: every notification in the spool was delivered.
    let spool = std::fs::read_to_string(logs.join("notification_spool.jsonl")).unwrap();
    assert_no_secrets("the spool", &spool);
    let lines: Vec<Value> = spool.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for queued in lines.iter().filter(|l| l["op"] == "queued") {
        let queued_id = &queued["notification"]["id"];
        assert!(
            lines
                .iter()
                .any(|l| l["op"] == "outcome" && l["id"] == *queued_id && l["result"]["outcome"] == "delivered"),
            "{queued_id} is still pending:\n{spool}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn https_sinks_verify_certificates_and_trust_the_configured_ca() {
    let (receiver, ca_pem) = Receiver::start_tls();
    let (dir, config) = common::monitor_config(
        "alert-test-tls",
        &[
            ("  sinks: []\n", "  sinks:\n    - kind: webhook\n      url_env: T_TLS_URL\n"),
            ("max_attempts: 4 ", "max_attempts: 3 "),
        ],
    );
    let env = [("T_TLS_URL".to_owned(), format!("{}/hook", receiver.url))];
    // A certificate from an unknown CA is refused, at once (retrying cannot help), and
    // nothing reaches the receiver.
    let (code, stdout, _) = alert_test(&config, &env);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("❌ webhook (webhook): failed after 1 attempt(s):")
            && stdout.contains("invalid peer certificate: UnknownIssuer"),
        "{stdout}"
    );
    assert!(receiver.requests("/hook").is_empty());
    // With that CA in delivery.ca_file, the same endpoint takes the notification over HTTPS.
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("queue_capacity: 32", &format!("queue_capacity: 32\n    ca_file: {}", ca_file.display()));
    std::fs::write(&config, text).unwrap();
    let (code, stdout, _) = alert_test(&config, &env);
    assert_eq!(code, Some(0), "{stdout}");
    let hook = receiver.requests("/hook");
    assert_eq!(hook.len(), 1);
    assert_eq!(hook[0].body["state"], "test");
    // A CA file that is not PEM is a config error.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let (code, _, _) = alert_test(&config, &env);
    assert_eq!(code, Some(2));
    let _ = std::fs::remove_dir_all(dir);
}
