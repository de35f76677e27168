//! Text layout shared by the panes: wrapping at word boundaries, the newest entries that fit,
//! the first phrasing that fits a width. Pure functions of their arguments.

use ratatui::text::Line;

/// `text` wrapped at word boundaries to `width` columns, each row styled by `style_row`;
/// rows after the first are indented by `indent` columns.
pub(super) fn wrapped(text: &str, width: u16, indent: usize) -> Vec<String> {
    let width = usize::from(width.max(1));
    let pad = " ".repeat(indent.min(width.saturating_sub(1)));
    let options = textwrap::Options::new(width).subsequent_indent(&pad);
    textwrap::wrap(text, options).into_iter().map(|row| row.into_owned()).collect()
}

/// The newest entries whose rows all fit in `height` rows, oldest first: an entry is shown
/// whole or not at all.
pub(super) fn newest_whole(entries: Vec<Vec<Line<'static>>>, height: u16) -> Vec<Line<'static>> {
    let mut budget = usize::from(height);
    let mut shown = Vec::new();
    for entry in entries.into_iter().rev() {
        if entry.len() > budget {
            break;
        }
        budget -= entry.len();
        shown.push(entry);
    }
    shown.into_iter().rev().flatten().collect()
}

/// The first text that fits in `width` columns (the last one when none does).
pub(super) fn first_fitting(width: u16, candidates: Vec<String>) -> String {
    let fits = |text: &String| textwrap::core::display_width(text) <= usize::from(width);
    let last = candidates.last().cloned().unwrap_or_default();
    candidates.into_iter().find(fits).unwrap_or(last)
}
