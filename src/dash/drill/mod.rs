//! `capwatch drill`: a fire drill of the whole alert path. It launches a chaos-enabled server
//! under the real monitor (headless) with timings derived from the config ([`plan`]), injects
//! each fault in turn and checks, with the [`conductor`], that the expected rule fires at the
//! expected severity within its bound, repeats after the cooldown, resolves once the fault is
//! gone, that `hang`, `unready` and `crash` end in an automatic restart and a healthy
//! service, and that every configured sink received the (drill-marked) fired and resolved
//! notifications. The [`DrillReport`] is a table on stdout and, with `--report`, a Markdown file.

pub mod conductor;
pub mod plan;

use std::time::Duration;

use serde::Serialize;

pub use conductor::{Conductor, StepResult};
pub use plan::{ALL_FAULTS, DrillPlan, Timings, plan};

/// What a drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub started_at: String,
    pub duration_s: f64,
    /// The drill's timings, derived from the config.
    pub window_s: f64,
    pub cooldown_s: f64,
    pub interval_s: f64,
    pub probe_timeout_s: f64,
    pub steps: Vec<StepResult>,
}

impl DrillReport {
    pub fn new(timings: &Timings, steps: Vec<StepResult>, started_at: String, duration: Duration) -> Self {
        Self {
            started_at,
            duration_s: duration.as_secs_f64(),
            window_s: timings.window.as_secs_f64(),
            cooldown_s: timings.cooldown.as_secs_f64(),
            interval_s: timings.interval.as_secs_f64(),
            probe_timeout_s: timings.probe_timeout.as_secs_f64(),
            steps,
        }
    }

    /// Every step held (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(StepResult::passed)
    }

    /// The report as the file `path` holds it: JSON (the same data, for CI and dashboards)
    /// when its name ends in `.json`, else Markdown.
    pub fn file_text(&self, path: &std::path::Path) -> String {
        if path.extension().is_some_and(|ext| ext == "json") {
            serde_json::to_string_pretty(self)
                .map_or_else(|err| format!("{{\"error\": \"{err}\"}}"), |json| json + "\n")
        } else {
            self.markdown()
        }
    }

    /// The report as Markdown: the table, then what did not hold.
    pub fn markdown(&self) -> String {
        let mut text = format!(
            "# capwatch drill\n\n{} · {:.0} s · probes every {:.1} s, window {:.0} s, cooldown {:.0} s, probe timeout {:.1} s \
             (derived from the config; thresholds, min_samples, for_evaluations, restart policy and sinks as configured)\n\n\
             | fault | expected alert | fired after | repeated | resolved (crash: healthy) after | restart | notifications | result |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.started_at, self.duration_s, self.interval_s, self.window_s, self.cooldown_s, self.probe_timeout_s
        );
        for step in &self.steps {
            let fired = match (step.fired_after_s, step.expected_alert.starts_with('—')) {
                (_, true) => "—".to_owned(),
                (Some(after), false) => format!("{after:.1} s (≤ {:.0})", step.fire_within_s),
                (None, false) => format!("no (≤ {:.0})", step.fire_within_s),
            };
            let repeated = match (step.repeat_within_s, step.repeated_after_s) {
                (None, _) => "n/a".to_owned(),
                (Some(within), Some(after)) => format!("{after:.1} s (≤ {within:.0})"),
                (Some(within), None) => format!("no (≤ {within:.0})"),
            };
            let resolved = match step.resolved_after_s {
                Some(after) => format!("{after:.1} s (≤ {:.0})", step.resolve_within_s),
                None => format!("no (≤ {:.0})", step.resolve_within_s),
            };
            let restart = match (step.restart_expected, step.restart_after_s) {
                (true, Some(after)) => format!("{after:.1} s"),
                (true, None) => "no".to_owned(),
                (false, Some(_)) => "unexpected".to_owned(),
                (false, None) => "—".to_owned(),
            };
            let notifications = if step.expected_alert.starts_with('—') {
                "n/a".to_owned()
            } else if step.notifications.is_empty() {
                "no sinks configured".to_owned()
            } else {
                step.notifications
                    .iter()
                    .map(|sink| {
                        let mark = |got: bool| if got { "✓" } else { "✗" };
                        format!("{} fired {} resolved {}", sink.sink, mark(sink.fired), mark(sink.resolved))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let result = if step.passed() { "✅ held" } else { "❌ failed" };
            text.push_str(&format!(
                "| {} | {} | {fired} | {repeated} | {resolved} | {restart} | {notifications} | {result} |\n",
                step.fault, step.expected_alert
            ));
        }
        let also: Vec<String> = self
            .steps
            .iter()
            .filter(|step| !step.also_fired.is_empty())
            .map(|step| format!("- {}: {}", step.kind, step.also_fired.join(", ")))
            .collect();
        if !also.is_empty() {
            text.push_str(&format!("\nAlso fired (expected side effects):\n{}\n", also.join("\n")));
        }
        let problems: Vec<String> = self
            .steps
            .iter()
            .flat_map(|step| step.problems.iter().map(move |problem| format!("- {}: {problem}", step.kind)))
            .collect();
        if problems.is_empty() {
            text.push_str("\nEvery expectation held.\n");
        } else {
            text.push_str(&format!("\nWhat did not hold:\n{}\n", problems.join("\n")));
        }
        text
    }
}
