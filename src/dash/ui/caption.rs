//! The latest caption, its quality and its keywords (found in green, missing in red).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::dash::state::DashState;

pub fn draw(frame: &mut Frame, area: Rect, state: &DashState) {
    let lines = match &state.latest {
        None => vec![Line::from("waiting for the first inference test…")],
        Some(probe) => match &probe.result {
            Ok(result) => {
                let mut keywords: Vec<Span> = vec![Span::raw("keywords ")];
                for found in &result.quality.found {
                    keywords.push(Span::styled(format!("✓{found} "), Style::default().fg(Color::Green)));
                }
                for missing in &result.quality.missing {
                    keywords.push(Span::styled(format!("✗{missing} "), Style::default().fg(Color::Red)));
                }
                keywords.push(Span::styled(format!(" ({})", probe.image), Style::default().fg(Color::DarkGray)));
                vec![
                    Line::from(vec![
                        Span::styled(format!("\"{}\"", result.caption), Style::default().add_modifier(Modifier::BOLD)),
                        Span::raw(format!("  quality {:.2}", result.quality.score())),
                    ]),
                    Line::from(keywords),
                ]
            }
            Err(error) => vec![Line::from(Span::styled(
                format!("last test failed: {error} ({})", probe.image),
                Style::default().fg(Color::Red),
            ))],
        },
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Latest caption ")).wrap(Wrap { trim: true }),
        area,
    );
}
