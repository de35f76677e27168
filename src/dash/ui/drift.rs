//! The drift pane (`d`): a capwatch server's live window against its reference, one bar per
//! feature — green well inside its threshold, yellow past half of it, red drifted — the
//! verdict, and the reference's size and age.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::clock::Clock;
use crate::drift::choose::{DISTANCE_THRESHOLD, P_THRESHOLD};
use crate::drift::report::{FeatureScore, NEW_WORDS_THRESHOLD};
use crate::protocol::drift::DriftStatus;

/// Bar cells for a feature exactly at its threshold.
const AT_THRESHOLD: f64 = 10.0;
const BAR_CELLS: usize = 20;

/// How far a feature is towards drift: 1 at its threshold. p-values count in decades
/// (p = 0.05 is 1, p = 0.0025 is 2), distances and shares as a multiple of their threshold.
pub fn strength(feature: &FeatureScore) -> f64 {
    if feature.test.is_p_value() {
        let p = feature.score.max(1e-300);
        (-p.log10()) / (-P_THRESHOLD.log10())
    } else {
        let threshold = if feature.test == crate::drift::choose::TestKind::NewWords {
            NEW_WORDS_THRESHOLD
        } else {
            DISTANCE_THRESHOLD
        };
        feature.score / threshold
    }
}

fn colour(feature: &FeatureScore) -> Color {
    if feature.drifted {
        Color::Red
    } else if strength(feature) >= 0.5 {
        Color::Yellow
    } else {
        Color::Green
    }
}

/// The reference's age at `clock`, in words.
fn age(created_at: &str, clock: Clock) -> String {
    let Ok(created) = humantime::parse_rfc3339(created_at) else { return created_at.to_owned() };
    let seconds = clock.wall.duration_since(created).map_or(0, |d| d.as_secs());
    match seconds {
        0..120 => format!("{seconds} s old"),
        120..7200 => format!("{} min old", seconds / 60),
        7200..172_800 => format!("{} h old", seconds / 3600),
        _ => format!("{} days old", seconds / 86_400),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, drift: Option<&DriftStatus>, clock: Clock) {
    let mut lines: Vec<Line> = Vec::new();
    match drift {
        None => lines.push(Line::from(" no drift status yet (a capwatch server answers GET /drift)")),
        Some(status) => {
            let reference = status.reference.as_ref().map_or_else(
                || "no reference yet: capwatch drift baseline".to_owned(),
                |r| format!("reference {} requests, {}", r.size, age(&r.created_at, clock)),
            );
            let minutes = status.window_minutes.map_or_else(String::new, |m| format!(" (last {m} min)"));
            lines.push(Line::from(format!(
                " live {} of {} requests{minutes} · {reference}",
                status.live_size, status.window_requests
            )));
            if let Some(report) = &status.report {
                lines.push(Line::from(""));
                for feature in &report.features {
                    let cells = ((strength(feature) * AT_THRESHOLD).round() as usize).min(BAR_CELLS);
                    lines.push(Line::from(vec![
                        Span::raw(format!(" {:<17} {:<22} ", feature.feature, feature.test.name())),
                        Span::styled("█".repeat(cells.max(1)), Style::default().fg(colour(feature))),
                        Span::raw(" ".repeat(BAR_CELLS - cells.max(1))),
                        Span::styled(format!(" {:.3e}", feature.score), Style::default().fg(Color::DarkGray)),
                    ]));
                }
                let drifted = report.features.iter().filter(|f| f.drifted).count();
                let (text, style) = if report.detected {
                    ("DRIFT", Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
                } else {
                    ("no drift", Style::default().fg(Color::Green).add_modifier(Modifier::BOLD))
                };
                lines.push(Line::from(""));
                lines.push(Line::from(vec![
                    Span::styled(format!(" {text}"), style),
                    Span::raw(format!(": {drifted} of {} features past their threshold", report.features.len())),
                ]));
            } else if status.reference.is_some() {
                lines.push(Line::from(""));
                lines.push(Line::from(" no verdict yet: too few requests in the live window to judge"));
            }
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(" the bar reaches the middle at the threshold · Esc or d close"));
    let width = area.width.min(80);
    let height = area.height.min(lines.len() as u16 + 2);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Drift ")), popup);
}
