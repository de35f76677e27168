//! The header: status badge, PID, uptime, model, restarts, and where the server listens (and,
//! with several instances, which one the panes show).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::clock::Clock;
use crate::dash::rehearsal::describe;
use crate::dash::state::{DashState, ServiceStatus};

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState, clock: Clock) {
    let pid = state.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let url = state.url.clone().unwrap_or_else(|| "(starting)".to_owned());
    let line1 = Line::from(vec![
        status_badge(state),
        Span::raw(format!(
            " PID {pid} · up {} · model {} · restarts {}",
            uptime(state, clock),
            model_name(state),
            state.restarts
        )),
    ]);
    let line2 = match state.lifecycle.gave_up() {
        Some(cause) => {
            let text = format!(" server stopped: {cause}");
            Line::styled(text, Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
        }
        _ if !state.faults.active.is_empty() => fault_banner(state, clock),
        _ => Line::from(format!(" {url}  (/health /docs /metrics)")),
    };
    let title = match &state.settings.instance {
        Some(name) => format!(" capwatch · {name} "),
        None => " capwatch ".to_owned(),
    };
    frame.render_widget(Paragraph::new(vec![line1, line2]).block(Block::bordered().title(title)), area);
}

/// Faults in force, each with its time left: ` ⚡ FAULT latency +10000 ms · 42 s left `.
fn fault_banner(state: &DashState, clock: Clock) -> Line<'static> {
    let faults: Vec<String> = state
        .faults
        .active
        .iter()
        .map(|tracked| {
            let left = tracked.remaining(clock.now).as_secs_f64().ceil();
            format!("{} · {left:.0} s left", describe(&tracked.fault.spec))
        })
        .collect();
    let style = Style::default().fg(Color::Black).bg(Color::Magenta).add_modifier(Modifier::BOLD);
    Line::from(vec![
        Span::styled(format!(" ⚡ FAULT {} ", faults.join(" | ")), style),
        Span::raw(" f menu · x there ends it"),
    ])
}

/// The model as the service names it on `/health`; else, for capwatch's own child, the
/// configured directory's name.
fn model_name(state: &DashState) -> &str {
    let reported = state.last_health.as_ref().and_then(|check| check.result.as_ref().ok()?.model.as_deref());
    match reported {
        Some(model) => model,
        None if state.supervised => &state.settings.model_name,
        None => "?",
    }
}

pub(super) fn status_badge(state: &DashState) -> Span<'static> {
    let (label, colour) = if state.view.paused {
        ("PAUSED", Color::Blue)
    } else {
        match state.status() {
            ServiceStatus::Healthy => ("HEALTHY", Color::Green),
            ServiceStatus::Degraded => ("DEGRADED", Color::Yellow),
            ServiceStatus::Down => ("DOWN", Color::Red),
            ServiceStatus::Restarting => ("RESTARTING", Color::Magenta),
            ServiceStatus::Starting => ("STARTING", Color::Gray),
            ServiceStatus::Failed => ("FAILED", Color::Red),
            ServiceStatus::CrashLoop => ("CRASH LOOP", Color::Red),
            ServiceStatus::Stopped => ("STOPPED", Color::Gray),
        }
    };
    Span::styled(format!(" {label} "), Style::default().fg(Color::Black).bg(colour).add_modifier(Modifier::BOLD))
}

fn uptime(state: &DashState, clock: Clock) -> String {
    let secs = clock.now.saturating_duration_since(state.started).as_secs();
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
