//! The terminal UI: a pure view of [`DashState`] at one [`Clock`] reading, drawn with
//! ratatui, one module per pane. Nothing here does I/O, reads a clock or changes the
//! state; the tests render into a `TestBackend` buffer (snapshots at 80×24 and 120×36).
//!
//! Colours carry meaning only where it matters: the status badge, the P95 and error-rate
//! gauges and the failure count (green / yellow / red as the alert rules judge them),
//! keywords found (green) and missing (red), alert severities, log levels and failed sinks.

mod ab;
mod alerts;
mod banner;
mod caption;
mod drift;
mod fault_menu;
mod footer;
mod gauges;
mod header;
mod help;
mod instances;
mod latency;
mod log;
#[cfg(test)]
mod tests;
mod text;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;

use super::fleet::Fleet;
use super::state::DashState;
use crate::alerts::Severity;
use crate::clock::Clock;

pub use banner::Banner;
use text::{first_fitting, newest_whole, wrapped};

/// Draws the whole screen: the demo's banner when one plays; with several instances, the
/// instances pane on top and the focused instance's panes under it.
pub fn draw(frame: &mut Frame, fleet: &Fleet, banner: Option<&Banner>, clock: Clock) {
    let mut area = frame.area();
    if let Some(banner) = banner {
        let [top, rest] = Layout::vertical([Constraint::Length(banner::HEIGHT), Constraint::Min(0)]).areas(area);
        banner::draw(frame, top, banner);
        area = rest;
    }
    if !fleet.is_several()
        && let Some(state) = fleet.focused()
    {
        return draw_instance(frame, area, state, clock);
    }
    let rows = instances::height(fleet, area.height);
    let [instances_area, rest] = Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(area);
    instances::draw(frame, instances_area, fleet, clock);
    match fleet.focused() {
        Some(state) => draw_instance(frame, rest, state, clock),
        None => instances::draw_waiting(frame, rest, fleet),
    }
}

/// Draws one instance's panes in `area` (the overlays over the whole screen).
pub fn draw_instance(frame: &mut Frame, area: Rect, state: &DashState, clock: Clock) {
    // With model variants the A/B pane comes in under the charts; on a short terminal it
    // takes the latest caption's place.
    let ab_rows = state.ab.as_ref().map_or(0, |ab| ab::height(ab, area.width));
    let caption_rows = if ab_rows > 0 && area.height < 30 { 0 } else { 4 };
    let [header_area, charts, caption_area, ab_area, panes, footer_area] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(caption_rows),
        Constraint::Length(ab_rows),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    let window = state.window_snapshot(clock.now);
    header::draw(frame, header_area, state, clock);
    let [latency_area, gauges_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(charts);
    latency::draw(frame, latency_area, state, &window);
    gauges::draw(frame, gauges_area, state, &window, clock);
    if caption_rows > 0 {
        caption::draw(frame, caption_area, state);
    }
    if let Some(ab) = &state.ab {
        ab::draw(frame, ab_area, ab);
    }
    let [alerts_area, log_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(panes);
    alerts::draw(frame, alerts_area, state);
    log::draw(frame, log_area, state);
    footer::draw(frame, footer_area, state, clock);
    if state.view.fault_menu {
        fault_menu::draw(frame, frame.area(), state);
    }
    if state.view.drift_pane {
        drift::draw(frame, frame.area(), state.drift.as_ref(), clock);
    }
    if state.view.show_help {
        help::draw(frame, frame.area(), state);
    }
}

pub fn severity_colour(severity: Severity) -> Color {
    match severity {
        Severity::Ok => Color::Green,
        Severity::Warning => Color::Yellow,
        Severity::Critical => Color::Red,
    }
}
