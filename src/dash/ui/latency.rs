//! The latency sparkline: as many recent inference tests as the pane is wide.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Sparkline};

use super::first_fitting;
use crate::dash::state::DashState;
use crate::dash::stats::StatsSnapshot;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState, window: &StatsSnapshot) {
    let width = usize::from(area.width.saturating_sub(2));
    let skip = state.recent.len().saturating_sub(width);
    let shown: Vec<u64> = state.recent.iter().skip(skip).map(|probe| probe.latency_ms.round() as u64).collect();
    let last = format!(" Latency ms (last {})", shown.len());
    // Nothing measured, nothing shown: no successful probe in the window has no P50, and a
    // service that does not report a model time has none.
    let p50 = window.latency.map_or_else(String::new, |latency| format!(" · P50 {:.1}", latency.p50_ms));
    let model = window.model_time.map_or_else(String::new, |model| format!(" · model P95 {:.1}", model.p95_ms));
    let title = first_fitting(
        area.width.saturating_sub(2),
        vec![format!("{last}{p50}{model} "), format!("{last}{p50} "), format!("{last} ")],
    );
    frame.render_widget(
        Sparkline::default().block(Block::bordered().title(title)).data(&shown).style(Style::default().fg(Color::Cyan)),
        area,
    );
}
