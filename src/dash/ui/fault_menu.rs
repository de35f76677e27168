//! The fault menu (`f`, with `capwatch --chaos`): the faults to inject, each sized to trip its
//! alert, and the rule it should set off.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::dash::rehearsal::{describe, expectation};
use crate::dash::state::DashState;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState) {
    let entries = &state.settings.fault_menu;
    let width = area.width.min(90);
    let height = area.height.min(entries.len() as u16 + 5);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    let mut lines: Vec<Line> = entries
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let expect = expectation(spec.kind);
            let sets_off = match (expect.rule, expect.restart) {
                (Some(rule), true) => format!("→ {} {}, restart", rule.name(), expect.severity),
                (Some(rule), false) => format!("→ {} {}", rule.name(), expect.severity),
                (None, _) => "→ restart".to_owned(),
            };
            Line::from(vec![
                Span::styled(format!(" {} ", index + 1), Style::default().fg(Color::Magenta)),
                Span::raw(format!("{}  ", describe(spec))),
                Span::styled(sets_off, Style::default().fg(Color::DarkGray)),
            ])
        })
        .collect();
    let duration = entries.first().map_or(0.0, |spec| spec.duration_s);
    lines.push(Line::from(""));
    lines.push(Line::from(format!(" each for {duration:.0} s · x clear every fault · Esc or f close")));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Inject a fault ")), popup);
}
