//! The session summary written on quit: `session_summary_<timestamp>.json` and `.md` under
//! the logs directory, and printed after the terminal is restored.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::time::Instant;

use super::model::{DashModel, snapshot_json};
use super::prober::InferenceProbe;

/// What a session amounted to.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    pub cycles: u64,
    pub tests: u64,
    pub successes: u64,
    pub success_rate: f64,
    pub error_rate: f64,
    /// Mean of the window P95 at the end of each cycle.
    pub mean_p95_ms: f64,
    /// Window P95 at the end.
    pub final_p95_ms: f64,
    pub session: serde_json::Value,
    pub last_status: String,
    pub last_caption: Option<String>,
    pub alerts_warning: u64,
    pub alerts_critical: u64,
    pub restarts: u32,
    /// How each alert sink fared (empty when none is configured).
    pub notifications: Vec<SinkTally>,
}

/// Notification outcomes at one sink over the session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkTally {
    pub sink: String,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
}

impl std::fmt::Display for SinkTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} delivered", self.sink, self.delivered)?;
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        if self.dropped > 0 {
            write!(f, ", {} dropped", self.dropped)?;
        }
        Ok(())
    }
}

impl SessionSummary {
    pub fn from_model(model: &mut DashModel, started_at: &str, now: Instant) -> Self {
        let session = model.session.snapshot(now);
        let window = model.window_snapshot(now);
        let mean_p95_ms = if model.cycle_p95_ms.is_empty() {
            0.0
        } else {
            model.cycle_p95_ms.iter().sum::<f64>() / model.cycle_p95_ms.len() as f64
        };
        Self {
            started_at: started_at.to_owned(),
            ended_at: super::model::timestamp(),
            duration_s: now.saturating_duration_since(model.started).as_secs_f64(),
            cycles: model.cycles,
            tests: session.probes,
            successes: session.successes,
            success_rate: if session.probes == 0 { 0.0 } else { session.successes as f64 / session.probes as f64 },
            error_rate: session.error_rate,
            mean_p95_ms,
            final_p95_ms: window.latency.p95_ms,
            session: snapshot_json(&session),
            last_status: model.status().label().to_owned(),
            last_caption: model.latest.as_ref().and_then(last_caption),
            alerts_warning: model.warnings_fired,
            alerts_critical: model.criticals_fired,
            restarts: model.restarts,
            notifications: model
                .sinks
                .iter()
                .map(|sink| SinkTally {
                    sink: sink.name.clone(),
                    delivered: sink.delivered,
                    failed: sink.failed,
                    dropped: sink.dropped,
                })
                .collect(),
        }
    }

    /// Rebuilds the summary of a past session from its metrics records (`capwatch report`).
    /// Returns `None` when there is no cycle record to summarise.
    pub fn from_records(records: &[serde_json::Value]) -> Option<Self> {
        let cycles: Vec<&serde_json::Value> = records.iter().filter(|r| r["type"] == "cycle").collect();
        let last = cycles.last()?;
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        let session = &last["session"];
        let p95s: Vec<f64> = cycles.iter().map(|c| number(&c["window"]["latency_ms"]["p95"])).collect();
        let fired = |severity: &str| {
            records
                .iter()
                .filter(|r| r["type"] == "alert" && r["severity"] == severity && r["transition"] != "resolved")
                .count() as u64
        };
        let probes = session["probes"].as_u64().unwrap_or(0);
        let successes = session["successes"].as_u64().unwrap_or(0);
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Some(Self {
            started_at: records.first().map(|r| text(&r["ts"])).unwrap_or_default(),
            ended_at: records.last().map(|r| text(&r["ts"])).unwrap_or_default(),
            duration_s: records.last().map_or(0.0, |r| number(&r["uptime_s"])),
            cycles: cycles.len() as u64,
            tests: probes,
            successes,
            success_rate: if probes == 0 { 0.0 } else { successes as f64 / probes as f64 },
            error_rate: number(&session["error_rate"]),
            mean_p95_ms: p95s.iter().sum::<f64>() / p95s.len() as f64,
            final_p95_ms: number(&last["window"]["latency_ms"]["p95"]),
            session: session.clone(),
            last_status: text(&last["status"]),
            last_caption: cycles.iter().rev().find_map(|c| c["latest"]["caption"].as_str().map(str::to_owned)),
            alerts_warning: fired("warning"),
            alerts_critical: fired("critical"),
            restarts: records.iter().filter_map(|r| r["restarts"].as_u64()).max().unwrap_or(0) as u32,
            notifications: tally_notifications(records),
        })
    }

    pub fn markdown(&self) -> String {
        let mut text = self.markdown_table();
        if !self.notifications.is_empty() {
            let tallies: Vec<String> = self.notifications.iter().map(ToString::to_string).collect();
            text.push_str(&format!("| notifications | {} |\n", tallies.join(" · ")));
        }
        text
    }

    fn markdown_table(&self) -> String {
        format!(
            "# capwatch session summary\n\n\
             | | |\n|---|---|\n\
             | started | {} |\n| ended | {} |\n| duration | {:.1} s |\n\
             | test cycles | {} |\n| tests | {} |\n| success rate | {:.1} % |\n| error rate | {:.1} % |\n\
             | mean P95 | {:.2} ms |\n| final P95 | {:.2} ms |\n\
             | last status | {} |\n| last caption | {} |\n\
             | alerts fired | {} warning, {} critical |\n| restarts | {} |\n",
            self.started_at,
            self.ended_at,
            self.duration_s,
            self.cycles,
            self.tests,
            self.success_rate * 100.0,
            self.error_rate * 100.0,
            self.mean_p95_ms,
            self.final_p95_ms,
            self.last_status,
            self.last_caption.as_deref().unwrap_or("-"),
            self.alerts_warning,
            self.alerts_critical,
            self.restarts,
        )
    }

    /// Writes `session_summary_<timestamp>.json` and `.md` into `dir`; returns both paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let stamp: String = self.ended_at.chars().map(|c| if c == ':' { '-' } else { c }).collect();
        let json_path = dir.join(format!("session_summary_{stamp}.json"));
        let md_path = dir.join(format!("session_summary_{stamp}.md"));
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json_path, json + "\n")?;
        std::fs::write(&md_path, self.markdown())?;
        Ok((json_path, md_path))
    }
}

/// Per-sink outcomes from `notification` records, in order of first appearance.
fn tally_notifications(records: &[serde_json::Value]) -> Vec<SinkTally> {
    let mut tallies: Vec<SinkTally> = Vec::new();
    for record in records.iter().filter(|r| r["type"] == "notification") {
        let sink = record["sink"].as_str().unwrap_or_default();
        let index = match tallies.iter().position(|t| t.sink == sink) {
            Some(index) => index,
            None => {
                tallies.push(SinkTally { sink: sink.to_owned(), ..SinkTally::default() });
                tallies.len() - 1
            }
        };
        let tally = &mut tallies[index];
        match record["outcome"].as_str() {
            Some("delivered") => tally.delivered += 1,
            Some("failed") => tally.failed += 1,
            Some("dropped") => tally.dropped += 1,
            _ => {}
        }
    }
    tallies
}

fn last_caption(probe: &InferenceProbe) -> Option<String> {
    probe.result.as_ref().ok().map(|r| r.caption.clone())
}
