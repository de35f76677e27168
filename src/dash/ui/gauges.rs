//! The window pane: P95 and error-rate gauges and the failure count, coloured as the alert
//! rules judge them (minimum samples included), then counts and the last health check.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph};

use super::{first_fitting, severity_colour};
use crate::alerts::{RuleKind, Severity};
use crate::clock::Clock;
use crate::dash::state::DashState;
use crate::dash::stats::StatsSnapshot;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState, window: &StatsSnapshot, clock: Clock) {
    let block = Block::bordered().title(" Window ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [p95_area, error_area, counts] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let judge = |kind, value, samples| {
        state.alerts.rule(kind).map_or((Severity::Ok, 1.0), |rule| (rule.judge(value, samples), rule.critical))
    };
    // No successful test in the window: no P95, and the gauge says so instead of showing 0.
    let p95_gauge = match &window.latency {
        Some(latency) => {
            let (level, critical) = judge(RuleKind::P95Latency, latency.p95_ms, window.successes);
            Gauge::default()
                .ratio((latency.p95_ms / critical).clamp(0.0, 1.0))
                .label(format!("P95 {:.1} ms", latency.p95_ms))
                .gauge_style(Style::default().fg(severity_colour(level)))
        }
        None => Gauge::default()
            .ratio(0.0)
            .label("P95 — (no success)")
            .gauge_style(Style::default().fg(severity_colour(state.alerts.severity(RuleKind::P95Latency)))),
    };
    frame.render_widget(p95_gauge, p95_area);
    let (error_level, error_critical) = judge(RuleKind::ErrorRate, window.error_rate, window.probes);
    frame.render_widget(
        Gauge::default()
            .ratio((window.error_rate / error_critical).clamp(0.0, 1.0))
            .label(format!("errors {:.1}%", window.error_rate * 100.0))
            .gauge_style(Style::default().fg(severity_colour(error_level))),
        error_area,
    );
    let (failures_level, _) = judge(RuleKind::ConsecutiveFailures, state.consecutive_failures as f64, u64::MAX);
    let rate = format!(" · {:.2} tests/s", window.throughput_per_s);
    let failures = state.consecutive_failures.to_string();
    let label = first_fitting(
        inner.width,
        vec![format!("consecutive failures {failures}{rate}"), format!("failures in a row {failures}{rate}")],
    );
    let label = label.split(&failures).next().unwrap_or_default().to_owned();
    let lines = vec![
        Line::from(vec![
            Span::raw(label),
            Span::styled(failures, Style::default().fg(severity_colour(failures_level))),
            Span::raw(rate),
        ]),
        Line::from(counts_line(state, window.quality_mean, inner.width)),
        Line::from(health_line(state, clock, inner.width)),
    ];
    frame.render_widget(Paragraph::new(lines), counts);
}

/// `tests 12 · cycles 3 · quality 0.94`; without a successful test in the window, the quality
/// is `— (no success)`, or `—` where that does not fit.
fn counts_line(state: &DashState, quality: Option<f64>, width: u16) -> String {
    let counts = format!("tests {} · cycles {} · quality", state.tests, state.cycles);
    match quality {
        Some(quality) => format!("{counts} {quality:.2}"),
        None => first_fitting(width, vec![format!("{counts} — (no success)"), format!("{counts} —")]),
    }
}

/// The last health check, and what the service said of itself (capwatch: workers, queue)
/// where there is room.
fn health_line(state: &DashState, clock: Clock, width: u16) -> String {
    match &state.last_health {
        None => "health: not checked yet".to_owned(),
        Some(check) => {
            let verdict = if check.is_healthy() { "healthy" } else { "FAILING" };
            let line = format!(
                "health {verdict} ({:.1} ms, {:.0} s ago)",
                check.latency.as_secs_f64() * 1000.0,
                clock.now.saturating_duration_since(check.at).as_secs_f64()
            );
            let body = check.result.as_ref().ok();
            let workers = body.and_then(|b| b.workers_alive).map(|n| format!(" · {n} workers"));
            let queue = body.and_then(|b| b.queue_depth).map(|n| format!(" · queue {n}"));
            let full = format!("{line}{}{}", workers.unwrap_or_default(), queue.unwrap_or_default());
            first_fitting(width, vec![full, line])
        }
    }
}
