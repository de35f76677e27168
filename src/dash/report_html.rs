//! The session as one self-contained HTML page (`capwatch report FILE --html OUT`, and
//! beside the summary when the dashboard quits): the summary's figures, then SVG charts drawn
//! with plotters — window P50/P95 with the thresholds, error rate, caption quality, each per
//! instance; with model variants, P95 and quality per variant; and an alert timeline (fired →
//! resolved bands) with restarts, faults and fleet changes marked. No script, no stylesheet or
//! font from elsewhere. Pure: records in, text out.

use plotters::prelude::*;

use super::record::{FleetChange, Record, ServerChange};
use super::summary::SessionSummary;
use crate::alerts::Severity;
use crate::config::Config;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 280;
/// Series colours, one per instance in the order they first appear.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
const WARNING: RGBColor = RGBColor(230, 170, 0);
const CRITICAL: RGBColor = RGBColor(214, 39, 40);
const MARK: RGBColor = RGBColor(90, 90, 90);
/// Axis labels and descriptions: one size, whatever the chart's height.
const LABELS: (&str, u32) = ("sans-serif", 13);

/// The rules' thresholds the charts draw (warning, critical).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub p95_ms: [f64; 2],
    pub error_rate: [f64; 2],
    pub quality: [f64; 2],
}

impl Thresholds {
    pub fn of(config: &Config) -> Self {
        let t = &config.thresholds;
        Self {
            p95_ms: [t.p95_latency_ms.warning, t.p95_latency_ms.critical],
            error_rate: [t.error_rate_percent.warning / 100.0, t.error_rate_percent.critical / 100.0],
            quality: [t.quality_score.warning, t.quality_score.critical],
        }
    }
}

/// One line of a chart: a value per cycle, None where nothing was measured (a gap).
struct Series {
    name: String,
    colour: RGBColor,
    width: u32,
    points: Vec<(f64, Option<f64>)>,
}

/// A moment worth a vertical mark: a restart, a fault starting, an instance joining or leaving.
struct Mark {
    at_s: f64,
    what: String,
}

/// Why the page could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the report: {0}")]
pub struct ReportError(String);

/// The page for `records` (one session's), or None when they hold no test cycle.
pub fn page(records: &[Record], thresholds: &Thresholds) -> Result<Option<String>, ReportError> {
    let Some(summary) = SessionSummary::from_records(records) else { return Ok(None) };
    let instances = instance_names(records);
    let x_max = records.iter().map(|r| r.stamp().uptime_s).fold(1.0_f64, f64::max);
    let per_instance = |value: &dyn Fn(&super::record::CycleRecord) -> Option<f64>, label: &str, width: u32| {
        instances
            .iter()
            .enumerate()
            .map(|(index, name)| Series {
                name: if name.is_empty() { label.to_owned() } else { format!("{name} {label}") },
                colour: PALETTE[index % PALETTE.len()],
                width,
                points: records
                    .iter()
                    .filter_map(|record| match record {
                        Record::Cycle(cycle) if cycle.stamp.instance.clone().unwrap_or_default() == *name => {
                            Some((cycle.stamp.uptime_s, value(cycle)))
                        }
                        _ => None,
                    })
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let mut latency = per_instance(&|c| c.window.latency_ms.map(|l| l.p95), "P95", 2);
    latency.extend(per_instance(&|c| c.window.latency_ms.map(|l| l.p50), "P50", 1));
    let errors = per_instance(&|c| (c.window.probes > 0).then_some(c.window.error_rate * 100.0), "errors", 2);
    let quality = per_instance(&|c| c.window.quality_mean, "quality", 2);
    let marks = marks(records);
    // Latency on a log scale: milliseconds and thresholds in seconds fit one chart.
    let charts = [
        ("Window latency (ms, log scale): P95 and P50", Scale::Log, latency, thresholds.p95_ms),
        (
            "Window error rate (%)",
            Scale::Linear { top: 100.0 },
            errors,
            [thresholds.error_rate[0] * 100.0, thresholds.error_rate[1] * 100.0],
        ),
        ("Window caption quality (mean keyword share)", Scale::Linear { top: 1.0 }, quality, thresholds.quality),
    ];
    // With model variants, each variant's figures from the A/B records (its answers so far, up
    // to the comparison's last 2,000).
    let per_variant_latency = per_variant(records, &|v| v.p95_ms.as_ref().map(|p95| p95.value), "P95");
    let per_variant_quality = per_variant(records, &|v| v.quality_mean, "quality");
    let variant_charts = [
        (
            "A/B: P95 per variant (ms, log scale; its answers so far)",
            Scale::Log,
            per_variant_latency,
            thresholds.p95_ms,
        ),
        (
            "A/B: mean caption quality per variant (its answers so far)",
            Scale::Linear { top: 1.0 },
            per_variant_quality,
            thresholds.quality,
        ),
    ];
    let mut body = String::new();
    let with_points = |chart: &(&str, Scale, Vec<Series>, [f64; 2])| !chart.2.is_empty();
    for (title, scale, series, lines) in charts.into_iter().chain(variant_charts.into_iter().filter(with_points)) {
        body.push_str(&format!("<h2>{}</h2>\n", escape(title)));
        body.push_str(&line_chart(scale, &series, lines, x_max, &marks)?);
    }
    body.push_str("<h2>Alerts</h2>\n");
    body.push_str(&timeline(records, x_max, &marks)?);
    Ok(Some(document(&summary, &body)))
}

/// One series per model variant (per instance, with several) from the A/B records: each
/// compared variant's own figures, and the baseline's from its first comparison (it is in all).
fn per_variant(
    records: &[Record],
    value: &dyn Fn(&crate::stats::comparison::VariantFigures) -> Option<f64>,
    label: &str,
) -> Vec<Series> {
    let comparisons: Vec<&super::record::AbRecord> = records
        .iter()
        .filter_map(|record| match record {
            Record::Ab(ab) => Some(ab.as_ref()),
            _ => None,
        })
        .collect();
    let mut first_compared: Vec<(&Option<String>, &str)> = Vec::new();
    for ab in &comparisons {
        if !first_compared.iter().any(|(instance, _)| **instance == ab.stamp.instance) {
            first_compared.push((&ab.stamp.instance, &ab.figures.b.name));
        }
    }
    let mut series: Vec<Series> = Vec::new();
    for ab in comparisons {
        let who = ab.stamp.instance.as_ref().map_or_else(String::new, |name| format!("{name} "));
        let with_baseline = first_compared.contains(&(&ab.stamp.instance, ab.figures.b.name.as_str()));
        let variants = if with_baseline { vec![&ab.figures.a, &ab.figures.b] } else { vec![&ab.figures.b] };
        for variant in variants {
            let name = format!("{who}{} {label}", variant.name);
            let point = (ab.stamp.uptime_s, value(variant));
            match series.iter_mut().find(|line| line.name == name) {
                Some(line) => line.points.push(point),
                None => {
                    let colour = PALETTE[series.len() % PALETTE.len()];
                    series.push(Series { name, colour, width: 2, points: vec![point] });
                }
            }
        }
    }
    series
}

/// Instance names in the order they first appear ("" for a session of one).
fn instance_names(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for record in records {
        if let Record::Cycle(cycle) = record {
            let name = cycle.stamp.instance.clone().unwrap_or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn marks(records: &[Record]) -> Vec<Mark> {
    let mut marks = Vec::new();
    for record in records {
        let at_s = record.stamp().uptime_s;
        let who = record.stamp().instance.as_ref().map_or_else(String::new, |name| format!("{name}: "));
        let what = match record {
            Record::Server(server) if matches!(server.event, ServerChange::Spawned { .. }) && server.restarts > 0 => {
                format!("{who}restart {}", server.restarts)
            }
            Record::Fault(fault) if fault.event == super::record::FaultPhase::Started => {
                format!("{who}fault: {}", fault.fault.kind.name())
            }
            Record::Fleet(change) => match change.change {
                FleetChange::Joined => format!("{who}joined"),
                FleetChange::Left => format!("{who}left"),
            },
            _ => continue,
        };
        marks.push(Mark { at_s, what });
    }
    marks
}

fn draw_error(err: impl std::fmt::Display) -> ReportError {
    ReportError(err.to_string())
}

/// How a chart's values are laid out upwards.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Powers of ten, from the smallest value to the highest value or threshold.
    Log,
    /// From zero to the highest value or threshold with a tenth more room, never past `top`
    /// (100 %, a score of 1) unless a value is.
    Linear { top: f64 },
}

impl Scale {
    fn to_axis(self, value: f64) -> f64 {
        match self {
            Self::Log => value.max(0.01).log10(),
            Self::Linear { .. } => value,
        }
    }
}

/// A line chart over the session's seconds, with the two threshold lines and the marks.
fn line_chart(
    scale: Scale,
    series: &[Series],
    [warning, critical]: [f64; 2],
    x_max: f64,
    marks: &[Mark],
) -> Result<String, ReportError> {
    let values = || series.iter().flat_map(|s| s.points.iter().filter_map(|(_, v)| *v));
    let highest = values().fold(warning.max(critical), f64::max);
    let (y_min, y_max) = match scale {
        Scale::Log => {
            let lowest = values().fold(highest, f64::min);
            (scale.to_axis(lowest).floor(), scale.to_axis(highest).ceil().max(scale.to_axis(lowest).floor() + 1.0))
        }
        Scale::Linear { top } => (0.0, (highest * 1.1).min(top.max(highest))),
    };
    let axis = |value: f64| scale.to_axis(value);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)
            .map_err(draw_error)?;
        let log_label = |y: &f64| short(10f64.powf(*y));
        let linear_label = |y: &f64| short(*y);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("seconds into the session").label_style(LABELS).axis_desc_style(LABELS);
        match scale {
            Scale::Log => {
                let decades = (y_max - y_min).round() as usize;
                mesh.y_labels(decades * 4 + 1).y_label_formatter(&log_label).draw().map_err(draw_error)?;
            }
            Scale::Linear { .. } => mesh.y_label_formatter(&linear_label).draw().map_err(draw_error)?,
        }
        for (level, colour, name) in [(warning, WARNING, "warning"), (critical, CRITICAL, "critical")] {
            let y = axis(level);
            chart
                .draw_series(LineSeries::new([(0.0, y), (x_max, y)], colour.stroke_width(1)))
                .map_err(draw_error)?
                .label(format!("{name} threshold"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        }
        for mark in marks {
            chart
                .draw_series(LineSeries::new([(mark.at_s, y_min), (mark.at_s, y_max)], MARK.mix(0.5)))
                .map_err(draw_error)?;
        }
        for line in series {
            let colour = line.colour;
            let mut first = true;
            // One path per run of measured values: a gap where nothing was measured.
            for run in line.points.split(|(_, value)| value.is_none()).filter(|run| !run.is_empty()) {
                let points: Vec<(f64, f64)> = run.iter().filter_map(|(x, v)| v.map(|v| (*x, axis(v)))).collect();
                let drawn =
                    chart.draw_series(LineSeries::new(points, colour.stroke_width(line.width))).map_err(draw_error)?;
                if first {
                    drawn
                        .label(line.name.clone())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
                    first = false;
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .label_font(LABELS)
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// One row per instance and rule that raised an alert: a band from each firing to its
/// resolve (yellow while WARNING, red while CRITICAL), open to the end if it never resolved.
fn timeline(records: &[Record], x_max: f64, marks: &[Mark]) -> Result<String, ReportError> {
    let mut rows: Vec<String> = Vec::new();
    // (row, from, to, severity)
    let mut bands: Vec<(usize, f64, f64, Severity)> = Vec::new();
    let mut open: Vec<(usize, f64, Severity)> = Vec::new();
    for record in records {
        let Record::Alert(alert) = record else { continue };
        let name = match &alert.stamp.instance {
            Some(instance) => format!("{instance} · {}", alert.rule.name()),
            None => alert.rule.name().to_owned(),
        };
        let row = rows.iter().position(|r| *r == name).unwrap_or_else(|| {
            rows.push(name);
            rows.len() - 1
        });
        let at = alert.stamp.uptime_s;
        if let Some(index) = open.iter().position(|(r, _, _)| *r == row) {
            let (_, from, severity) = open.remove(index);
            bands.push((row, from, at, severity));
        }
        // A firing, escalation, de-escalation or repeat starts a band at its severity.
        if !alert.transition.is_resolve() {
            open.push((row, at, alert.severity));
        }
    }
    bands.extend(open.into_iter().map(|(row, from, severity)| (row, from, x_max, severity)));
    if rows.is_empty() {
        return Ok("<p class=\"none\">No alert fired in this session.</p>\n".to_owned());
    }
    let height = 90 + 30 * u32::try_from(rows.len()).unwrap_or(40);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let count = rows.len();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(220)
            .build_cartesian_2d(0.0..x_max, 0.0..count as f64)
            .map_err(draw_error)?;
        let label = |y: &f64| {
            let index = y.floor() as usize;
            if (y - y.floor() - 0.5).abs() < 0.01 {
                rows.get(count - 1 - index).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .label_style(LABELS)
            .axis_desc_style(LABELS)
            .y_labels(count * 2 + 1)
            .y_label_formatter(&label)
            .x_desc("seconds into the session")
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(bands.iter().map(|&(row, from, to, severity)| {
                let y = (count - 1 - row) as f64;
                let colour = if severity == Severity::Critical { CRITICAL } else { WARNING };
                Rectangle::new([(from, y + 0.2), (to.max(from + x_max / 500.0), y + 0.8)], colour.filled())
            }))
            .map_err(draw_error)?;
        for mark in marks {
            chart
                .draw_series(LineSeries::new([(mark.at_s, 0.0), (mark.at_s, count as f64)], MARK.mix(0.5)))
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    let mut out = svg;
    if !marks.is_empty() {
        out.push_str("<p class=\"marks\">Grey lines: ");
        let list: Vec<String> = marks.iter().map(|m| format!("{:.0} s {}", m.at_s, escape(&m.what))).collect();
        out.push_str(&list.join(" · "));
        out.push_str("</p>\n");
    }
    Ok(out)
}

fn document(summary: &SessionSummary, body: &str) -> String {
    let ms = |value: Option<f64>| value.map_or_else(|| "— (no successful test)".to_owned(), |v| format!("{v:.2} ms"));
    let rows = [
        ("started", summary.started_at.clone()),
        ("ended", summary.ended_at.clone()),
        ("duration", format!("{:.1} s", summary.duration_s)),
        ("test cycles", summary.cycles.to_string()),
        ("tests", summary.tests.to_string()),
        ("error rate", format!("{:.1} %", summary.error_rate * 100.0)),
        ("mean P95", ms(summary.mean_p95_ms)),
        ("final P95", ms(summary.final_p95_ms)),
        ("last status", summary.last_status.to_string()),
        ("last caption", summary.last_caption.clone().unwrap_or_else(|| "—".to_owned())),
        ("alerts fired", format!("{} warning, {} critical", summary.alerts_warning, summary.alerts_critical)),
        ("restarts", summary.restarts.to_string()),
    ];
    let table: String =
        rows.iter().map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(k), escape(v))).collect();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>capwatch session report</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}}table{{border-collapse:collapse}}\
         th,td{{text-align:left;padding:2px 12px;border-bottom:1px solid #ddd}}svg{{display:block;margin:0.5em 0}}\
         .marks,.none{{color:#555}}</style>\n</head>\n<body>\n<h1>capwatch session report</h1>\n<table>\n{table}</table>\n{body}</body>\n</html>\n"
    )
}

/// An axis number in at most three significant digits: `0.3`, `15.8`, `4000`.
fn short(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let digits = (2 - value.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(uptime_s: f64, transition: &str, severity: &str) -> Record {
        serde_json::from_value(serde_json::json!({
            "type": "alert", "ts": "2026-12-06T00:00:00.000Z", "uptime_s": uptime_s, "instance": "a",
            "rule": "health_down", "severity": severity, "transition": transition, "value": 1.0,
            "threshold": 1.0, "message": "m",
        }))
        .unwrap()
    }

    #[test]
    fn alert_bands_run_from_each_change_to_the_next_and_stay_open_to_the_end() {
        let records = [
            alert(1.0, "fired", "warning"),
            alert(2.0, "escalated", "critical"),
            alert(5.0, "resolved", "ok"),
            alert(8.0, "fired", "warning"),
        ];
        let svg = timeline(&records, 10.0, &[]).unwrap();
        let yellow = svg.matches("#E6AA00").count() + svg.matches("#e6aa00").count();
        let red = svg.matches("#D62728").count() + svg.matches("#d62728").count();
        // 1–2 s warning, 2–5 s critical, 8 s to the end warning.
        assert_eq!((yellow, red), (2, 1), "{svg}");
        assert!(svg.contains("a · health_down"));
        assert!(timeline(&[], 10.0, &[]).unwrap().contains("No alert fired"));
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short(0.30000000000000004), "0.3");
        assert_eq!(short(15.848931924611133), "15.8");
        assert_eq!(short(4000.0), "4000");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn no_page_without_a_test_cycle() {
        let thresholds = Thresholds::of(&Config::default());
        assert!(page(&[alert(1.0, "fired", "warning")], &thresholds).unwrap().is_none());
    }
}
