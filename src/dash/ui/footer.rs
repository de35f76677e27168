//! The footer: the keys, or for a few seconds a notice (why `r` does nothing, "restarting…"),
//! or, while the supervisor has given up, what can be done about it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::Paragraph;

use crate::clock::Clock;
use crate::dash::state::DashState;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState, clock: Clock) {
    if state.lifecycle.gave_up().is_some() && state.notice(clock.now).is_none() {
        let text = " server stopped — r to try again · q to quit · ? help";
        let style = Style::default().fg(Color::Red).add_modifier(Modifier::REVERSED | Modifier::BOLD);
        frame.render_widget(Paragraph::new(text).style(style), area);
        return;
    }
    let text = match state.notice(clock.now) {
        Some(notice) => notice.to_owned(),
        None => {
            let restart = if state.supervised { "r restart" } else { "r (disabled)" };
            let faults = if state.settings.chaos { " · f faults" } else { "" };
            format!(" p pause/resume · {restart} · t test now{faults} · ? help · ↑↓ scroll alerts · q quit")
        }
    };
    frame.render_widget(Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)), area);
}
