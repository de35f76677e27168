//! The banner across the top of the screen while `capwatch demo` plays: which scene, what is
//! happening now and what to look at. Pure: draws the [`Banner`] the demo's director wrote.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::text::wrapped;

/// What the banner says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `Scene 2/6 · A latency spike`.
    pub heading: String,
    /// What is happening now, in a sentence or two.
    pub happening: String,
    /// Where on the screen to look.
    pub look_at: String,
}

/// Rows the banner takes: a border round three rows of text.
pub const HEIGHT: u16 = 5;
const TEXT_ROWS: usize = 3;
const LOOK_AT: &str = "Look at: ";

/// What is happening, then where to look (at most two rows; what happens keeps one at least).
pub fn draw(frame: &mut Frame, area: Rect, banner: &Banner) {
    let width = area.width.saturating_sub(2);
    let look_at = wrapped(&format!("{LOOK_AT}{}", banner.look_at), width, LOOK_AT.chars().count());
    let look_rows = look_at.len().min(TEXT_ROWS - 1);
    let happening = wrapped(&banner.happening, width, 0);
    let mut lines: Vec<Line> = happening.into_iter().take(TEXT_ROWS - look_rows).map(Line::from).collect();
    while lines.len() < TEXT_ROWS - look_rows {
        lines.push(Line::default());
    }
    let accent = Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    for (index, row) in look_at.into_iter().take(look_rows).enumerate() {
        lines.push(match row.strip_prefix(LOOK_AT).filter(|_| index == 0) {
            Some(rest) => Line::from(vec![Span::styled(LOOK_AT, accent), Span::raw(rest.to_owned())]),
            None => Line::from(row),
        });
    }
    let title = Span::styled(format!(" 🎬 capwatch demo · {} ", banner.heading), accent);
    let block = Block::bordered().title(title).border_style(Style::default().fg(Color::Cyan));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
