//! The instances pane (several watched instances, or a fleet discovery lists): one row per
//! instance still watched, worst first — status, P95, error rate, quality, requests in
//! flight, restarts — with the focused one marked; its title says how many left and how
//! discovery goes. Tab moves the focus; the panes under it show the focused instance.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use super::header::status_badge;
use super::severity_colour;
use crate::alerts::RuleKind;
use crate::clock::Clock;
use crate::dash::fleet::Fleet;
use crate::dash::state::DashState;

/// Rows the pane takes on a screen `screen_rows` high: every instance if it can, and never
/// more than a third of the screen.
pub fn height(fleet: &Fleet, screen_rows: u16) -> u16 {
    let wanted = u16::try_from(fleet.live().count().max(1)).unwrap_or(u16::MAX).saturating_add(3);
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
    let longest =
        fleet.live().filter_map(|index| fleet.instances()[index].settings.instance.as_ref()).map(|n| n.chars().count());
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
    let mut title = format!(" Instances ({})", fleet.live().count());
    if fleet.left_count() > 0 {
        title.push_str(&format!(" · {} left", fleet.left_count()));
    }
    let mut block = Block::bordered().title(format!("{title} · Tab: focus the next "));
    if let Some(discovering) = fleet.discovering() {
        let (text, colour) = match &discovering.failing {
            Some(_) => (format!(" {} failing: last list kept ", discovering.source), Color::Yellow),
            None => (format!(" discovery: {} ", discovering.source), Color::Reset),
        };
        block = block.title_top(Line::from(Span::styled(text, Style::default().fg(colour))).right_aligned());
    }
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// Where the instance panes go while discovery has listed no instance.
pub fn draw_waiting(frame: &mut Frame, area: Rect, fleet: &Fleet) {
    let text = match fleet.discovering() {
        Some(discovering) => match (&discovering.failing, discovering.answered) {
            (Some(error), _) => format!("Discovery ({}) failed: {error}", discovering.source),
            (None, true) => format!("Discovery ({}) lists no instance yet; looking again soon.", discovering.source),
            (None, false) => format!("Asking discovery ({}) for the instances to watch…", discovering.source),
        },
        None => "No instance to watch.".to_owned(),
    };
    let paragraph = Paragraph::new(text).wrap(Wrap { trim: true }).block(Block::bordered().title(" Waiting "));
    frame.render_widget(paragraph, area);
}

fn row(state: &DashState, focused: bool, clock: Clock) -> Row<'static> {
    let window = state.window_snapshot(clock.now);
    let coloured = |text: String, rule: RuleKind| {
        Cell::from(Span::styled(text, Style::default().fg(severity_colour(state.alerts.severity(rule)))))
    };
    let p95 = window.latency.map_or_else(|| "—".to_owned(), |latency| format!("{:.1} ms", latency.p95_ms));
    let errors = if window.probes == 0 { "—".to_owned() } else { format!("{:.1}%", window.error_rate * 100.0) };
    let quality = window.quality_mean.map_or_else(|| "—".to_owned(), |q| format!("{q:.2}"));
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
