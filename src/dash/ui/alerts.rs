//! The alert log (scrollable, newest at the bottom, wrapped at word boundaries) and, on its
//! bottom edge, how each notification sink is doing.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{first_fitting, newest_whole, severity_colour, wrapped};
use crate::dash::state::{DashState, SinkStatus};

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState) {
    let total = state.alert_log.len();
    let end = total.saturating_sub(state.view.alert_scroll.min(total.saturating_sub(1)));
    let width = area.width.saturating_sub(2);
    let height = area.height.saturating_sub(2);
    let start = end.saturating_sub(usize::from(height));
    let mut entries = Vec::new();
    for alert in state.alert_log.iter().take(end).skip(start) {
        let colour = if alert.transition.is_resolve() { Color::Green } else { severity_colour(alert.severity) };
        let rows = wrapped(&alert.to_string(), width, 2);
        entries.push(rows.into_iter().map(|row| Line::from(Span::styled(row, Style::default().fg(colour)))).collect());
    }
    let mut rows = newest_whole(entries, height);
    if rows.is_empty() {
        rows.push(Line::from("no alerts"));
    }
    let mut block = Block::bordered().title(format!(" Alerts ({total}) ↑↓ PgUp PgDn "));
    if !state.sinks.is_empty() {
        block = block.title_bottom(notification_line(state, area.width.saturating_sub(2)));
    }
    frame.render_widget(Paragraph::new(rows).block(block), area);
}

/// ` notify: slack ✓ · oncall ✗ HTTP 500 ` — each sink green when its latest notification
/// got through, red with a short reason when it did not, plain before the first one. The
/// full reason is in the log and the metrics file. Too narrow for all of it, the sinks that
/// work are counted instead of named (` notify: oncall ✗ HTTP 500 · 2 ok `), and then
/// the failing ones named without their reasons (` notify: oncall ✗ · mail ✗ · 2 ok `).
fn notification_line(state: &DashState, width: u16) -> Line<'static> {
    let failing = Style::default().fg(Color::Red).add_modifier(Modifier::BOLD);
    let all: Vec<(String, Style)> = state
        .sinks
        .iter()
        .map(|sink| match (sink.reported, sink.last_failure) {
            (false, _) => (sink.name.clone(), Style::default()),
            (true, None) => (format!("{} ✓", sink.name), Style::default().fg(Color::Green)),
            (true, Some(failure)) => (format!("{} ✗ {}", sink.name, failure.short()), failing),
        })
        .collect();
    let failed: Vec<&SinkStatus> =
        state.sinks.iter().filter(|sink| sink.reported && sink.last_failure.is_some()).collect();
    let ok = state.sinks.len() - failed.len();
    let with_ok = |mut parts: Vec<(String, Style)>| {
        if ok > 0 {
            parts.push((format!("{ok} ok"), Style::default()));
        }
        parts
    };
    let reasons = with_ok(all.iter().filter(|(_, style)| *style == failing).cloned().collect());
    let names = with_ok(failed.iter().map(|sink| (format!("{} ✗", sink.name), failing)).collect());
    let text = |parts: &[(String, Style)]| {
        format!(" notify: {} ", parts.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(" · "))
    };
    let candidates = [all, reasons, names];
    let fitting = first_fitting(width, candidates.iter().map(|parts| text(parts)).collect());
    let chosen = candidates.into_iter().find(|parts| text(parts) == fitting).unwrap_or_default();
    let mut spans = vec![Span::raw(" notify: ")];
    for (index, (part, style)) in chosen.into_iter().enumerate() {
        if index > 0 {
            spans.push(Span::raw(" · "));
        }
        spans.push(Span::styled(part, style));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}
