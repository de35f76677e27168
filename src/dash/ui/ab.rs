//! The A/B pane (a server with two or more model variants): per variant n, P50 and P95 with
//! their 95 % bootstrap intervals, error rate and mean quality; per variant against the
//! baseline, the latency ratio, error and quality differences and caption agreement; the
//! verdict (red when a variant is worse than the baseline, green once decided otherwise) and
//! the server's shadow agreement.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::dash::ab::AbState;
use crate::stats::comparison::{Estimate, Figures, Verdict};

/// Rows the pane needs for `ab` at `width` columns (borders included): the column heads,
/// one row per variant, then per comparison its differences (wrapped) and its verdict.
pub fn height(ab: &AbState, width: u16) -> u16 {
    let inner = width.saturating_sub(2);
    let rows = |text: String| super::wrapped(&text, inner, 0).len().max(1) as u16;
    let comparisons: u16 =
        ab.figures.iter().map(|figures| rows(differences(figures, ab)) + rows(figures.verdict.to_string())).sum();
    2 + 1 + ab.variants.len() as u16 + comparisons
}

pub fn draw(frame: &mut Frame, area: Rect, ab: &AbState) {
    let dim = Style::default().fg(Color::DarkGray);
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{:<10}{:>6}  {:<20}{:<20}{:>7}{:>9}",
            "variant", "n", "P50 ms (95% CI)", "P95 ms (95% CI)", "errors", "quality"
        ),
        dim,
    ))];
    let mut rows: Vec<&crate::stats::comparison::VariantFigures> = Vec::new();
    if let Some(first) = ab.figures.first() {
        rows.push(&first.a);
    }
    rows.extend(ab.figures.iter().map(|figures| &figures.b));
    for variant in rows {
        lines.push(Line::from(format!(
            "{:<10}{:>6}  {:<20}{:<20}{:>6.1}%{:>9}",
            clip(&variant.name, 10),
            variant.answers,
            estimate(variant.p50_ms.as_ref()),
            estimate(variant.p95_ms.as_ref()),
            variant.error_rate * 100.0,
            variant.quality_mean.map_or_else(|| "—".to_owned(), |q| format!("{q:.2}")),
        )));
    }
    let inner = area.width.saturating_sub(2);
    for figures in &ab.figures {
        lines.extend(super::wrapped(&differences(figures, ab), inner, 0).into_iter().map(Line::from));
        lines.push(verdict_line(figures));
    }
    let title = format!(" A/B · {} rounds ", ab.rounds);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)).wrap(Wrap { trim: false }), area);
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(width - 1).collect();
        short.push('…');
        short
    }
}

fn estimate(estimate: Option<&Estimate>) -> String {
    estimate.map_or_else(|| "—".to_owned(), |e| format!("{:.1} ({:.1}–{:.1})", e.value, e.interval.lo, e.interval.hi))
}

/// `b vs a: ×1.43 (1.38–1.49) · errors +0.0 pts (−8.8–8.8) · quality +0.00 (…) · same 100% · shadow …`
fn differences(figures: &Figures, ab: &AbState) -> String {
    let mut parts = vec![format!("{} vs {}:", figures.b.name, figures.a.name)];
    if let Some(ratio) = &figures.latency_ratio {
        parts.push(format!("latency ×{:.2} ({:.2}–{:.2})", ratio.value, ratio.interval.lo, ratio.interval.hi));
    }
    if let Some(errors) = &figures.errors {
        parts.push(format!(
            "· errors {:+.1} pts ({:+.1}–{:+.1})",
            errors.difference * 100.0,
            errors.interval.lo * 100.0,
            errors.interval.hi * 100.0
        ));
    }
    if let Some(quality) = &figures.quality {
        parts.push(format!(
            "· quality {:+.2} ({:+.2}–{:+.2})",
            quality.difference, quality.interval.lo, quality.interval.hi
        ));
    } else if let (Some(a), Some(b)) = (figures.a.quality_mean, figures.b.quality_mean) {
        // Neither side varies: no interval, but the difference is plain.
        parts.push(format!("· quality {:+.2}", b - a));
    }
    if let Some(agreement) = figures.agreement {
        parts.push(format!("· same caption {:.0}%", agreement * 100.0));
    }
    if let Some(shadow) = ab.shadow.as_ref().filter(|shadow| shadow.model == figures.b.name) {
        let agreement = shadow.agreement.map_or_else(|| "—".to_owned(), |a| format!("{:.0}%", a * 100.0));
        parts.push(format!(
            "· shadow agrees {agreement} of {} ({} dropped)",
            shadow.agreed + shadow.differed,
            shadow.dropped
        ));
    }
    parts.join(" ")
}

fn verdict_line(figures: &Figures) -> Line<'static> {
    let colour = match &figures.verdict {
        Verdict::Undecided { .. } => None,
        Verdict::MoreErrors { worse, .. } | Verdict::LowerQuality { worse, .. } if *worse == figures.b.name => {
            Some(Color::Red)
        }
        _ => Some(Color::Green),
    };
    let style = colour.map_or_else(Style::default, |c| Style::default().fg(c).add_modifier(Modifier::BOLD));
    Line::from(Span::styled(format!("⚖ {}", figures.verdict), style))
}
