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
    let p50 = format!(" · P50 {:.1}", window.latency.p50_ms);
    // Services that do not report a model time have none to show.
    let model = if window.model_time.count == 0 {
        String::new()
    } else {
        format!(" · model P95 {:.1}", window.model_time.p95_ms)
    };
    let title = first_fitting(
        area.width.saturating_sub(2),
        vec![format!("{last}{p50}{model} "), format!("{last}{p50} "), format!("{last} ")],
    );
    frame.render_widget(
        Sparkline::default().block(Block::bordered().title(title)).data(&shown).style(Style::default().fg(Color::Cyan)),
        area,
    );
}
