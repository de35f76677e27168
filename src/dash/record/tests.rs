use super::*;
use crate::config::SinkKind;
use crate::notify::{AlertState, DeliveryOutcome, FailureKind};
use crate::protocol::faults::FaultKind;
use crate::stats::comparison::{Answer, Comparison};
use std::time::Duration;

fn stamp() -> Stamp {
    Stamp { ts: "2026-11-26T14:00:00.000Z".to_owned(), uptime_s: 12.5, instance: None }
}

/// One record of every kind and shape, as the dashboard writes them.
pub(crate) fn every_kind() -> Vec<Record> {
    let stats = StatsRecord::from(&StatsSnapshot::default());
    let report = |outcome| DeliveryReport {
        id: "0193a1b2-0000-7000-8000-000000000001".to_owned(),
        resent: false,
        sink: "pager".to_owned(),
        kind: SinkKind::Webhook,
        rule: "p95_latency".to_owned(),
        instance: None,
        severity: Severity::Critical,
        state: AlertState::Firing,
        outcome,
    };
    let alert = AlertEvent {
        rule: RuleKind::P95Latency,
        severity: Severity::Warning,
        transition: AlertTransition::Fired,
        value: 4200.5,
        threshold: 4000.0,
        instance: None,
    };
    let cycle = |latest| CycleRecord {
        stamp: stamp(),
        cycle: 3,
        tests: 15,
        window_s: 300.0,
        window: stats,
        session: stats,
        consecutive_failures: 0,
        health: Some(HealthRecord { healthy: true, latency_ms: 1.5, age_s: 2.0 }),
        latest,
        status: ServiceStatus::Healthy,
        pid: Some(42),
        restarts: 1,
        active_alerts: vec![ActiveAlert { rule: RuleKind::ErrorRate, severity: Severity::Critical }],
        service_ms: vec![12.5, 14.0],
        workers: Some(2),
    };
    let server = |event| Record::Server(ServerRecord { stamp: stamp(), event, restarts: 2 });
    let notification = |outcome| Record::Notification(NotificationRecord { stamp: stamp(), report: report(outcome) });
    vec![
        Record::Cycle(Box::new(cycle(Some(LatestProbe::Caption {
            image: "a.png".to_owned(),
            caption: "a red circle".to_owned(),
            quality: 0.5,
            keywords_found: vec!["red".to_owned()],
            keywords_missing: vec!["blue".to_owned()],
        })))),
        Record::Cycle(Box::new(cycle(Some(LatestProbe::Failed {
            image: "a.png".to_owned(),
            error: "timeout".to_owned(),
            error_kind: "timeout".to_owned(),
        })))),
        Record::Cycle(Box::new(CycleRecord { health: None, pid: None, ..cycle(None) })),
        Record::Alert(AlertRecord::new(stamp(), &alert)),
        server(ServerChange::Spawned { pid: 42 }),
        server(ServerChange::Exited { pid: 42, code: Some(1), signal: None, expected: false }),
        server(ServerChange::StartFailed { pid: 42, reason: "exit code 1: bad model".to_owned() }),
        server(ServerChange::CrashLoop { restarts: 5, window_s: 600 }),
        server(ServerChange::PermanentFailure {
            code: 3,
            reason: "cannot load model from /m: no such directory".to_owned(),
        }),
        notification(DeliveryOutcome::Delivered { attempts: 1, status: 200, elapsed: Duration::from_millis(12) }),
        notification(DeliveryOutcome::Failed {
            attempts: 4,
            error: "HTTP 500 Internal Server Error".to_owned(),
            failure: FailureKind::Http(500),
        }),
        notification(DeliveryOutcome::Failed {
            attempts: 1,
            error: "no answer within 5.0 s".to_owned(),
            failure: FailureKind::Timeout,
        }),
        notification(DeliveryOutcome::Dropped { queued: 32 }),
        Record::Fault(FaultRecord {
            stamp: stamp(),
            event: FaultPhase::Started,
            fault_id: 1,
            fault: FaultSpec::new(FaultKind::Latency),
            hits: None,
            active_s: None,
            ended_by: None,
        }),
        Record::Fault(FaultRecord {
            stamp: stamp(),
            event: FaultPhase::Ended,
            fault_id: 1,
            fault: FaultSpec { share: 0.5, ..FaultSpec::new(FaultKind::Errors) },
            hits: Some(12),
            active_s: Some(30.5),
            ended_by: Some(FaultEnd::Expired),
        }),
        Record::Fault(FaultRecord {
            stamp: stamp(),
            event: FaultPhase::Started,
            fault_id: 2,
            fault: FaultSpec { model: Some("b".to_owned()), ..FaultSpec::new(FaultKind::Latency) },
            hits: None,
            active_s: None,
            ended_by: None,
        }),
        ab_record(&Comparison::new("a", "b"), None),
        Record::Drift(Box::new(DriftRecord {
            stamp: stamp(),
            live_size: 500,
            reference_size: 400,
            drifted_share: 3.0 / 13.0,
            detected: true,
            features: vec![
                crate::drift::report::FeatureScore {
                    feature: "brightness_mean".to_owned(),
                    test: crate::drift::choose::TestKind::Ks,
                    score: 1e-30,
                    drifted: true,
                    psi: None,
                },
                crate::drift::report::FeatureScore {
                    feature: "hue".to_owned(),
                    test: crate::drift::choose::TestKind::JensenShannon,
                    score: 0.04,
                    drifted: false,
                    psi: Some(0.01),
                },
            ],
        })),
        ab_record(&decided(), Some(shadow_report())),
        Record::End(Box::new(EndRecord {
            stamp: stamp(),
            started_at: "2026-11-26T13:59:47.500Z".to_owned(),
            cycles: 3,
            window: stats,
            session: stats,
            status: ServiceStatus::Stopped,
            restarts: 1,
            latest: None,
            active_faults: vec![FaultHits { fault_id: 2, hits: 7 }],
            ab: vec![AbVerdict { verdict_text: "undecided".to_owned(), figures: decided().figures() }],
            shadow: Some(shadow_report()),
            sinks: vec!["pager".to_owned()],
        })),
    ]
}

fn decided() -> Comparison {
    let mut comparison = Comparison::new("a", "b");
    for i in 0..80 {
        let answer = |latency_ms: f64, ok: bool, quality: f64| Answer {
            latency_ms,
            caption: ok.then(|| if i % 3 == 0 { "a red circle" } else { "a circle" }.to_owned()),
            quality: ok.then_some(quality),
        };
        comparison.push(answer(100.0 + f64::from(i % 7), true, 1.0), answer(60.0 + f64::from(i % 5), i % 9 != 0, 0.5));
    }
    comparison
}

fn shadow_report() -> ShadowReport {
    ShadowReport {
        model: "b".to_owned(),
        share: 0.25,
        agreed: 30,
        differed: 2,
        failed: 0,
        dropped: 1,
        agreement: Some(30.0 / 32.0),
    }
}

fn ab_record(comparison: &Comparison, shadow: Option<ShadowReport>) -> Record {
    let figures = comparison.figures();
    let verdict_text = figures.verdict.to_string();
    Record::Ab(Box::new(AbRecord { stamp: stamp(), cycle: 4, figures, verdict_text, shadow }))
}

#[test]
fn every_record_kind_matches_the_published_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/service_metrics.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for record in every_kind() {
        let value = serde_json::to_value(&record).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{value}\n{errors:#?}");
    }
}

#[test]
fn records_read_back_as_written() {
    for record in every_kind() {
        let line = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record, "{line}");
    }
}
