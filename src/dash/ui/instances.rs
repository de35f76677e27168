//! The instances pane (several watched instances): one row each, worst first — status,
//! P95, error rate, quality, requests in flight, restarts — with the focused one marked.
//! Tab moves the focus; the panes under it show the focused instance.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Row, Table};

use super::header::status_badge;
use super::severity_colour;
use crate::alerts::RuleKind;
use crate::clock::Clock;
use crate::dash::fleet::Fleet;
use crate::dash::state::DashState;

/// Rows the pane takes on a screen `screen_rows` high: every instance if it can, and never
/// more than a third of the screen.
pub fn height(fleet: &Fleet, screen_rows: u16) -> u16 {
    let wanted = u16::try_from(fleet.instances().len()).unwrap_or(u16::MAX).saturating_add(3);
    wanted.min((screen_rows / 3).max(4))
}

pub fn draw(frame: &mut Frame, area: Rect, fleet: &Fleet, clock: Clock) {
    let header = Row::new(["", "instance", "status", "P95", "errors", "quality", "in flight", "restarts"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = fleet
        .worst_first(clock.now)
        .into_iter()
        .map(|index| row(&fleet.instances()[index], index == fleet.focus(), clock))
        .collect();
    let longest = fleet.instances().iter().filter_map(|s| s.settings.instance.as_ref()).map(|n| n.chars().count());
    let name_width = u16::try_from(longest.max().unwrap_or(8)).unwrap_or(u16::MAX).clamp(8, 40);
    let widths = [
        Constraint::Length(1),
        Constraint::Length(name_width),
        Constraint::Length(12),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Min(0),
    ];
    let title = format!(" Instances ({}) · Tab: focus the next ", fleet.instances().len());
    frame.render_widget(Table::new(rows, widths).header(header).block(Block::bordered().title(title)), area);
}

fn row(state: &DashState, focused: bool, clock: Clock) -> Row<'static> {
    let window = state.window_snapshot(clock.now);
    let coloured = |text: String, rule: RuleKind| {
        Cell::from(Span::styled(text, Style::default().fg(severity_colour(state.alerts.severity(rule)))))
    };
    let p95 = window.latency.map_or_else(|| "-".to_owned(), |latency| format!("{:.1} ms", latency.p95_ms));
    let errors = if window.probes == 0 { "-".to_owned() } else { format!("{:.1}%", window.error_rate * 100.0) };
    let quality = window.quality_mean.map_or_else(|| "-".to_owned(), |q| format!("{q:.2}"));
    let in_flight = state
        .last_health
        .as_ref()
        .and_then(|check| check.result.as_ref().ok()?.in_flight)
        .map_or_else(|| "-".to_owned(), |n| n.to_string());
    let name = state.settings.instance.clone().unwrap_or_default();
    let marker = if focused { "▶" } else { " " };
    let style = if focused { Style::default().add_modifier(Modifier::BOLD) } else { Style::default() };
    Row::new(vec![
        Cell::from(marker),
        Cell::from(name),
        Cell::from(status_badge(state)),
        coloured(p95, RuleKind::P95Latency),
        coloured(errors, RuleKind::ErrorRate),
        coloured(quality, RuleKind::QualityScore),
        Cell::from(in_flight),
        Cell::from(Span::styled(
            state.restarts.to_string(),
            Style::default().fg(if state.restarts > 0 { Color::Yellow } else { Color::Reset }),
        )),
    ])
    .style(style)
}
