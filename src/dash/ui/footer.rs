//! The footer: the keys, or for a few seconds a notice (why `r` does nothing, "restarting…").

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::widgets::Paragraph;

use crate::clock::Clock;
use crate::dash::state::DashState;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState, clock: Clock) {
    let text = match state.notice(clock.now) {
        Some(notice) => notice.to_owned(),
        None => {
            let restart = if state.supervised { "r restart" } else { "r (disabled)" };
            format!(" p pause/resume · {restart} · t test now · ? help · ↑↓ scroll alerts · q quit")
        }
    };
    frame.render_widget(Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)), area);
}
