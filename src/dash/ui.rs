//! The terminal UI: a pure view of [`DashModel`] drawn with ratatui, one function per pane.
//!
//! Colours carry meaning only where the issue asks: the status badge, the P95 and
//! error-rate gauges (green / yellow / red by the configured thresholds), keywords found
//! (green) and missing (red), and alert severities. Nothing here does I/O; the tests render
//! into a `TestBackend` buffer.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, List, ListItem, Paragraph, Sparkline, Wrap};
use tokio::time::Instant;

use super::alerts::{AlertTransition, Severity};
use super::model::{DashModel, ServiceStatus};
use super::stats::StatsSnapshot;
use crate::config::{Levels, ThresholdsConfig};

/// UI-only state (not part of the monitoring model).
#[derive(Debug, Clone)]
pub struct UiState {
    pub paused: bool,
    pub show_help: bool,
    /// Alert log lines scrolled up from the newest.
    pub alert_scroll: usize,
    /// Shown in the footer for a few seconds (e.g. why `r` does nothing).
    pub notice: Option<String>,
    pub model_name: String,
    pub thresholds: ThresholdsConfig,
    /// Whether `r` can restart the server (false when monitoring an external URL).
    pub can_restart: bool,
}

pub fn severity_colour(severity: Severity) -> Color {
    match severity {
        Severity::Ok => Color::Green,
        Severity::Warning => Color::Yellow,
        Severity::Critical => Color::Red,
    }
}

/// Where `value` stands against warning/critical levels (higher is worse).
pub fn level_of(value: f64, levels: Levels) -> Severity {
    if value >= levels.critical {
        Severity::Critical
    } else if value >= levels.warning {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

fn status_badge(model: &DashModel, ui: &UiState) -> Span<'static> {
    let (label, colour) = if ui.paused {
        ("PAUSED", Color::Blue)
    } else {
        match model.status() {
            ServiceStatus::Healthy => ("HEALTHY", Color::Green),
            ServiceStatus::Degraded => ("DEGRADED", Color::Yellow),
            ServiceStatus::Down => ("DOWN", Color::Red),
            ServiceStatus::Restarting => ("RESTARTING", Color::Magenta),
            ServiceStatus::Starting => ("STARTING", Color::Gray),
        }
    };
    Span::styled(format!(" {label} "), Style::default().fg(Color::Black).bg(colour).add_modifier(Modifier::BOLD))
}

fn uptime(model: &DashModel, now: Instant) -> String {
    let secs = now.saturating_duration_since(model.started).as_secs();
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &DashModel, window: &StatsSnapshot, ui: &UiState, now: Instant) {
    let [header, charts, caption, logs, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(4),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, model, ui, now);
    let [sparkline, gauges] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(charts);
    draw_latency(frame, sparkline, model, window);
    draw_gauges(frame, gauges, model, window, ui);
    draw_caption(frame, caption, model);
    let [alerts, log] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(logs);
    draw_alerts(frame, alerts, model, ui);
    frame.render_widget(
        tui_logger::TuiLoggerWidget::default()
            .block(Block::bordered().title(" Log (monitor + server) "))
            .output_target(false)
            .output_file(false)
            .output_line(false)
            .output_timestamp(Some("%H:%M:%S".to_owned()))
            .style_error(Style::default().fg(Color::Red))
            .style_warn(Style::default().fg(Color::Yellow)),
        log,
    );
    draw_footer(frame, footer, ui);
    if ui.show_help {
        draw_help(frame, frame.area(), ui);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, model: &DashModel, ui: &UiState, now: Instant) {
    let pid = model.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let url = model.url.clone().unwrap_or_else(|| "(starting)".to_owned());
    let line1 = Line::from(vec![
        status_badge(model, ui),
        Span::raw(format!(
            " PID {pid} · up {} · model {} · restarts {}",
            uptime(model, now),
            ui.model_name,
            model.restarts
        )),
    ]);
    let line2 = Line::from(format!(" {url}  (/health /docs /metrics)"));
    frame.render_widget(Paragraph::new(vec![line1, line2]).block(Block::bordered().title(" capwatch ")), area);
}

fn draw_latency(frame: &mut Frame, area: Rect, model: &DashModel, window: &StatsSnapshot) {
    let data: Vec<u64> = model.recent.iter().map(|(latency, _)| latency.round() as u64).collect();
    let title = format!(
        " Latency ms (last {}) · P50 {:.1} · model P95 {:.1} ",
        data.len(),
        window.latency.p50_ms,
        window.model_time.p95_ms
    );
    let width = usize::from(area.width.saturating_sub(2));
    let shown = &data[data.len().saturating_sub(width)..];
    frame.render_widget(
        Sparkline::default().block(Block::bordered().title(title)).data(shown).style(Style::default().fg(Color::Cyan)),
        area,
    );
}

fn draw_gauges(frame: &mut Frame, area: Rect, model: &DashModel, window: &StatsSnapshot, ui: &UiState) {
    let block = Block::bordered().title(" Window ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [p95_area, error_area, counts] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let t = &ui.thresholds;
    let p95 = window.latency.p95_ms;
    let p95_level = level_of(p95, t.p95_latency_ms);
    frame.render_widget(
        Gauge::default()
            .ratio((p95 / t.p95_latency_ms.critical).clamp(0.0, 1.0))
            .label(format!("P95 {p95:.1} ms"))
            .gauge_style(Style::default().fg(severity_colour(p95_level))),
        p95_area,
    );
    let error_percent = window.error_rate * 100.0;
    let error_level = level_of(error_percent, t.error_rate_percent);
    frame.render_widget(
        Gauge::default()
            .ratio((error_percent / t.error_rate_percent.critical).clamp(0.0, 1.0))
            .label(format!("errors {error_percent:.1}%"))
            .gauge_style(Style::default().fg(severity_colour(error_level))),
        error_area,
    );
    let failures_level = level_of(model.consecutive_failures as f64, t.consecutive_failures);
    let quality = window.quality_mean.map_or_else(|| "-".to_owned(), |q| format!("{q:.2}"));
    let lines = vec![
        Line::from(vec![
            Span::raw("consecutive failures "),
            Span::styled(model.consecutive_failures.to_string(), Style::default().fg(severity_colour(failures_level))),
            Span::raw(format!(" · {:.2} tests/s", window.throughput_per_s)),
        ]),
        Line::from(format!("tests {} · cycles {} · quality {quality}", model.tests, model.cycles)),
        Line::from(health_line(model)),
    ];
    frame.render_widget(Paragraph::new(lines), counts);
}

fn health_line(model: &DashModel) -> String {
    match &model.last_health {
        None => "health: not checked yet".to_owned(),
        Some(check) => {
            let state = if check.is_healthy() { "healthy" } else { "FAILING" };
            format!(
                "health {state} ({:.1} ms, {:.0} s ago)",
                check.latency.as_secs_f64() * 1000.0,
                Instant::now().saturating_duration_since(check.at).as_secs_f64()
            )
        }
    }
}

fn draw_caption(frame: &mut Frame, area: Rect, model: &DashModel) {
    let lines = match &model.latest {
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

fn draw_alerts(frame: &mut Frame, area: Rect, model: &DashModel, ui: &UiState) {
    let height = usize::from(area.height.saturating_sub(2));
    let total = model.alert_log.len();
    let end = total.saturating_sub(ui.alert_scroll.min(total.saturating_sub(1)));
    let start = end.saturating_sub(height);
    let items: Vec<ListItem> = model
        .alert_log
        .iter()
        .skip(start)
        .take(end - start)
        .map(|alert| {
            let colour = if alert.transition == AlertTransition::Resolved {
                Color::Green
            } else {
                severity_colour(alert.severity)
            };
            ListItem::new(Line::from(Span::styled(alert.to_string(), Style::default().fg(colour))))
        })
        .collect();
    let title = format!(" Alerts ({total}) ↑↓ PgUp PgDn ");
    let list = if items.is_empty() { List::new(vec![ListItem::new("no alerts")]) } else { List::new(items) };
    let mut block = Block::bordered().title(title);
    if !model.sinks.is_empty() {
        block = block.title_bottom(notification_line(model));
    }
    frame.render_widget(list.block(block), area);
}

/// A failed delivery's reason in a few characters: `HTTP 500`, `timeout`, `refused`.
fn short_reason(error: &str) -> String {
    const REASON_CHARS: usize = 16;
    if error.starts_with("HTTP ") {
        error.split([':', ' ']).take(2).collect::<Vec<_>>().join(" ")
    } else if error.starts_with("no answer") {
        "timeout".to_owned()
    } else if error.contains("Connection refused") {
        "refused".to_owned()
    } else if error.starts_with("queue full") {
        "queue full".to_owned()
    } else if error.chars().count() > REASON_CHARS {
        error.chars().take(REASON_CHARS).chain(['…']).collect()
    } else {
        error.to_owned()
    }
}

/// ` notify: slack ✓ · oncall ✗ HTTP 500 ` — each sink green when its latest notification
/// got through, red with a short reason when it did not, plain before the first one. The
/// full reason is in the log and the metrics file.
fn notification_line(model: &DashModel) -> Line<'static> {
    let mut spans = vec![Span::raw(" notify: ")];
    for (index, sink) in model.sinks.iter().enumerate() {
        if index > 0 {
            spans.push(Span::raw(" · "));
        }
        let (text, style) = match sink.last_ok {
            None => (sink.name.clone(), Style::default()),
            Some(true) => (format!("{} ✓", sink.name), Style::default().fg(Color::Green)),
            Some(false) => {
                let reason = short_reason(sink.last_error.as_deref().unwrap_or("failed"));
                (format!("{} ✗ {reason}", sink.name), Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
            }
        };
        spans.push(Span::styled(text, style));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

fn draw_footer(frame: &mut Frame, area: Rect, ui: &UiState) {
    let text = match &ui.notice {
        Some(notice) => notice.clone(),
        None => {
            let restart = if ui.can_restart { "r restart" } else { "r (disabled)" };
            format!(" p pause/resume · {restart} · t test now · ? help · ↑↓ scroll alerts · q quit")
        }
    };
    frame.render_widget(Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)), area);
}

fn draw_help(frame: &mut Frame, area: Rect, ui: &UiState) {
    let width = area.width.min(72);
    let height = area.height.min(10);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    let restart = if ui.can_restart {
        "r        restart the service now".to_owned()
    } else {
        "r        disabled: monitoring a server capwatch did not start".to_owned()
    };
    let lines = vec![
        Line::from("p        pause / resume probing"),
        Line::from(restart),
        Line::from("t        run a test cycle now"),
        Line::from("↑ ↓      scroll the alert log (PgUp PgDn: a page)"),
        Line::from("?        show / hide this help"),
        Line::from("q Ctrl+C quit (stops the server, writes the summary)"),
    ];
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Keys ")), popup);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::dash::model::Event;
    use crate::dash::prober::{CaptionResult, InferenceProbe};
    use crate::dash::supervisor::ServerEvent;
    use crate::quality::match_keywords;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::time::Duration;

    fn ui_state(config: &Config) -> UiState {
        UiState {
            paused: false,
            show_help: false,
            alert_scroll: 0,
            notice: None,
            model_name: "default".to_owned(),
            thresholds: config.thresholds.clone(),
            can_restart: true,
        }
    }

    fn probe(latency_ms: u64, caption: &str) -> Event {
        let keywords = vec!["red".to_owned(), "circle".to_owned(), "blue".to_owned()];
        Event::Probe(InferenceProbe {
            at: Instant::now(),
            image: "a.png".to_owned(),
            latency: Duration::from_millis(latency_ms),
            result: Ok(CaptionResult {
                caption: caption.to_owned(),
                model_time: Duration::from_millis(latency_ms / 2),
                server_total: Duration::from_millis(latency_ms - 1),
                quality: match_keywords(caption, &keywords),
            }),
        })
    }

    /// The colour of the first cell whose symbol starts `text` on screen.
    fn colour_of(buffer: &ratatui::buffer::Buffer, text: &str) -> Color {
        let area = buffer.area;
        for y in 0..area.height {
            let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol().to_owned()).collect();
            if let Some(index) = line.find(text) {
                let x = line[..index].chars().count() as u16;
                return buffer[(x, y)].fg;
            }
        }
        panic!("`{text}` not on screen");
    }

    fn render(model: &mut DashModel, ui: &UiState) -> ratatui::buffer::Buffer {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        let now = Instant::now();
        let window = model.window_snapshot(now);
        terminal.draw(|frame| draw(frame, model, &window, ui, now)).unwrap();
        terminal.backend().buffer().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn panes_show_status_caption_keywords_and_gauges_in_colour() {
        let mut config = Config::default();
        // Two of three keywords (0.67) is acceptable here, so the service shows healthy.
        config.thresholds.quality_score = crate::config::Levels { warning: 0.5, critical: 0.2 };
        let mut model = DashModel::new(&config, Instant::now());
        model.update(Event::Server(ServerEvent::Spawned { pid: 4242 }), Instant::now());
        model.update(
            Event::Server(ServerEvent::Listening { pid: 4242, url: "http://127.0.0.1:8000".to_owned() }),
            Instant::now(),
        );
        model.update(
            Event::Server(ServerEvent::Ready { pid: 4242, startup: Duration::from_millis(300) }),
            Instant::now(),
        );
        for _ in 0..5 {
            model.update(probe(20, "a red circle"), Instant::now());
        }
        model.update(Event::CycleDone, Instant::now());
        let ui = ui_state(&config);
        let buffer = render(&mut model, &ui);
        assert_eq!(colour_of(&buffer, "HEALTHY").clone(), Color::Black);
        assert_eq!(buffer[(1, 1)].bg, Color::Green, "status badge background");
        assert_eq!(colour_of(&buffer, "✓red"), Color::Green);
        assert_eq!(colour_of(&buffer, "✗blue"), Color::Red);
        let text: String = buffer.content().iter().map(|c| c.symbol()).collect();
        assert!(text.contains("PID 4242") && text.contains("http://127.0.0.1:8000"), "{text}");
        assert!(text.contains("\"a red circle\"") && text.contains("P95 20.0 ms"), "{text}");
        assert!(text.contains("q quit"));

        // Slow probes: the P95 gauge turns red; an alert line appears in red.
        for _ in 0..20 {
            model.update(probe(9000, "a red circle"), Instant::now());
        }
        model.update(Event::CycleDone, Instant::now());
        let buffer = render(&mut model, &ui);
        let gauge_cell = (56..99).map(|x| buffer[(x, 5)].clone()).find(|c| c.symbol() == "█" || c.bg == Color::Red);
        assert_eq!(colour_of(&buffer, "CRITICAL ALERT: p95_latency"), Color::Red);
        assert!(gauge_cell.is_some_and(|c| c.fg == Color::Red || c.bg == Color::Red), "P95 gauge not red");
        assert_eq!(buffer[(1, 1)].bg, Color::Yellow, "degraded badge");
    }

    #[tokio::test(start_paused = true)]
    async fn paused_badge_help_and_disabled_restart() {
        let config = Config::default();
        let mut model = DashModel::new(&config, Instant::now());
        let mut ui = ui_state(&config);
        ui.paused = true;
        ui.show_help = true;
        ui.can_restart = false;
        let buffer = render(&mut model, &ui);
        let text: String = buffer.content().iter().map(|c| c.symbol()).collect();
        assert!(text.contains("PAUSED"));
        assert_eq!(buffer[(1, 1)].bg, Color::Blue);
        assert!(text.contains("disabled: monitoring a server capwatch did not start"), "{text}");
        assert!(text.contains("r (disabled)"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_sink_shows_red_with_its_reason_and_a_working_one_green() {
        use crate::config::{MinSeverity, SinkConfig, SinkTarget, Sinks};
        use crate::dash::alerts::Severity;
        use crate::notify::{AlertState, DeliveryReport, Outcome};
        let mut config = Config::default();
        let sink = |name: &str| SinkConfig {
            name: name.to_owned(),
            min_severity: MinSeverity::Warning,
            target: SinkTarget::Webhook { url_env: "X".to_owned(), bearer_token_env: None },
        };
        config.alerts.sinks = Sinks(vec![sink("slack"), sink("pager")]);
        let mut model = DashModel::new(&config, Instant::now());
        let report = |sink: &str, outcome| {
            Event::Notification(DeliveryReport {
                sink: sink.to_owned(),
                kind: crate::config::SinkKind::Webhook,
                rule: "p95_latency".to_owned(),
                severity: Severity::Warning,
                state: AlertState::Firing,
                outcome,
            })
        };
        let delivered = Outcome::Delivered { attempts: 1, status: 200, elapsed: Duration::from_millis(5) };
        model.update(report("slack", delivered), Instant::now());
        let failed = Outcome::Failed { attempts: 4, error: "HTTP 500 Internal Server Error".to_owned() };
        let effects = model.update(report("pager", failed), Instant::now());
        assert!(effects.iter().any(|e| matches!(e, crate::dash::model::Effect::Log { message, .. } if message.contains("📭 Notification failed: pager"))));
        let buffer = render(&mut model, &ui_state(&config));
        assert_eq!(colour_of(&buffer, "slack ✓"), Color::Green);
        assert_eq!(colour_of(&buffer, "pager ✗ HTTP 500 "), Color::Red);
    }

    #[test]
    fn failure_reasons_are_shortened_for_the_panel_edge() {
        assert_eq!(short_reason("HTTP 500 Internal Server Error: upstream exploded"), "HTTP 500");
        assert_eq!(short_reason("HTTP 401: Telegram says: Unauthorized"), "HTTP 401");
        assert_eq!(short_reason("no answer within 5.0 s"), "timeout");
        assert_eq!(
            short_reason(
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "refused"
        );
        assert_eq!(short_reason("queue full (32 waiting)"), "queue full");
        assert_eq!(short_reason("something else entirely went wrong"), "something else e…");
    }
}
