//! The log pane: the dashboard's own lines and the server's warnings, newest at the bottom,
//! wrapped at word boundaries under their `HH:MM:SS` time (UTC), coloured by level.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use super::{newest_whole, wrapped};
use crate::dash::state::DashState;
use crate::dash::state::LogLevel;

/// Columns of `HH:MM:SS `.
const TIME_COLUMNS: usize = 9;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState) {
    let width = area.width.saturating_sub(2);
    let height = area.height.saturating_sub(2);
    let mut entries = Vec::new();
    // Only the newest lines can be visible: each takes at least one row.
    let skip = state.log.len().saturating_sub(usize::from(height));
    for line in state.log.iter().skip(skip) {
        let stamp = humantime::format_rfc3339_seconds(line.wall).to_string();
        let time = stamp.get(11..19).unwrap_or("--:--:--");
        let style = match line.level {
            LogLevel::Info => Style::default(),
            LogLevel::Warn => Style::default().fg(Color::Yellow),
            LogLevel::Error => Style::default().fg(Color::Red),
        };
        let rows = wrapped(&format!("{time} {}", line.message), width, TIME_COLUMNS);
        entries.push(rows.into_iter().map(|row| Line::styled(row, style)).collect());
    }
    let block = Block::bordered().title(" Log (monitor + server) ");
    frame.render_widget(Paragraph::new(newest_whole(entries, height)).block(block), area);
}
