//! The help overlay (`?`): what every key does.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::dash::state::DashState;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState) {
    let width = area.width.min(72);
    let height = area.height.min(if state.settings.instance.is_some() { 13 } else { 12 });
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    let restart = if state.supervised {
        "r        restart the service now"
    } else {
        "r        disabled: monitoring a server capwatch did not start"
    };
    let mut lines = vec![
        Line::from("p        pause / resume probing"),
        Line::from(restart),
        Line::from("t        run a test cycle now"),
        Line::from(if state.settings.chaos {
            "f        fault menu: inject a fault to rehearse the alerts"
        } else {
            "f        fault menu (needs capwatch --chaos)"
        }),
        Line::from("d        drift: recent requests against the server's reference"),
        Line::from("↑ ↓      scroll the alert log (PgUp PgDn: a page)"),
    ];
    if state.settings.instance.is_some() {
        lines.push(Line::from("Tab      show the next instance in the panes (Shift+Tab: previous)"));
    }
    lines.extend([
        Line::from("?        show / hide this help"),
        Line::from("q Ctrl+C quit (stops the server, writes the summary)"),
    ]);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(" Keys ")),
        popup,
    );
}
