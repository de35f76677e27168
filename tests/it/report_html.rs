//! The HTML session report, end to end: a real headless session (one real server, one address
//! where nothing listens) writes `session_summary_*.html` beside the summary; its SVG charts
//! parse and carry the expected series (per instance, the thresholds, the alert bands);
//! `capwatch report FILE --html OUT` draws the same page from the records; headless Chromium
//! renders it (a screenshot that is not blank, no console error).

use crate::common;

use common::receiver::refused_url;
use common::repo_path;

fn svgs(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").unwrap() + start + "</svg>".len();
        out.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    out
}

/// The texts of an SVG (legend entries, axis labels), after parsing it as XML.
fn texts(svg: &str) -> Vec<String> {
    let document = roxmltree::Document::parse(svg).unwrap_or_else(|err| panic!("the SVG does not parse: {err}"));
    assert_eq!(document.root_element().tag_name().name(), "svg");
    document
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .collect()
}

fn count(svg: &str, tag: &str) -> usize {
    let document = roxmltree::Document::parse(svg).unwrap();
    document.descendants().filter(|n| n.has_tag_name(tag)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_report_charts_each_instance_and_renders_in_chromium() {
    let _machine = common::whole_machine();
    let server = common::TestServer::start(repo_path("models/default"), |_| {}).await;
    let gone = refused_url().trim_end_matches("/hook").to_owned();
    let targets =
        format!("  targets:\n    - {{url: \"{}\", name: alpha}}\n    - {{url: \"{gone}\", name: gone}}\n", server.url);
    let replacements = [
        ("  targets: []\n", targets.as_str()),
        ("health_interval_s: 30", "health_interval_s: 0.3"),
        ("inference_interval_s: 10", "inference_interval_s: 0.3"),
        ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ("probe_timeout_s: 30", "probe_timeout_s: 2"),
    ];
    let (dir, config) = common::monitor_config("report-html", &replacements);
    let (mut monitor, mut lines, _errors) =
        common::spawn_capwatch(&["monitor", "--headless", "--cycles", "5"], &config, &[]);
    let status = tokio::task::spawn_blocking(move || monitor.wait().unwrap()).await.unwrap();
    let stdout = lines.rest().join("\n");
    assert_eq!(status.code(), Some(2), "the dead instance's alert is critical: {stdout}");
    let line = stdout.lines().find(|l| l.starts_with("Report with charts: ")).unwrap_or_else(|| panic!("{stdout}"));
    let page_path = std::path::PathBuf::from(line.trim_start_matches("Report with charts: "));
    assert!(page_path.starts_with(dir.join("logs")), "beside the summary: {}", page_path.display());
    let page = std::fs::read_to_string(&page_path).unwrap();

    // Self-contained: no script, nothing fetched from elsewhere.
    assert!(page.starts_with("<!doctype html>") && !page.contains("<script"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http") && !page.contains("url(http"));
    let charts = svgs(&page);
    assert_eq!(charts.len(), 4, "latency, errors, quality, alerts");
    let latency = texts(&charts[0]);
    for series in ["alpha P95", "alpha P50", "warning threshold", "critical threshold"] {
        assert!(latency.iter().any(|t| t == series), "no `{series}` in the latency chart: {latency:?}");
    }
    // The dead instance never measured a latency: no line for it, not a line at zero.
    assert!(!latency.iter().any(|t| t.starts_with("gone P")), "{latency:?}");
    assert!(count(&charts[0], "polyline") >= 4, "two thresholds and two series");
    let errors = texts(&charts[1]);
    assert!(errors.iter().any(|t| t == "gone errors") && errors.iter().any(|t| t == "alpha errors"), "{errors:?}");
    // The alert timeline: a row per instance and rule that fired, with its bands.
    let timeline = texts(&charts[3]);
    assert!(timeline.iter().any(|t| t == "gone · health_down"), "{timeline:?}");
    assert!(!timeline.iter().any(|t| t.starts_with("alpha ·")), "{timeline:?}");
    assert!(count(&charts[3], "rect") >= 2, "the background and at least one band");

    // `capwatch report` draws the same page from the same records.
    let out = dir.join("again.html");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .arg("report")
        .arg(dir.join("logs/service_metrics.jsonl"))
        .arg("--html")
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), page);

    // A real browser renders it.
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| std::process::Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("Chromium is missing: `make setup` installs Debian's chromium package");
    let shot = dir.join("report.png");
    let profile = dir.join("chromium-profile");
    let rendered = std::process::Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,1600"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page_path.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "{log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let image = image::open(&shot).unwrap().to_rgb8();
    let inked = image.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    let total = (image.width() * image.height()) as usize;
    assert!(inked * 100 > total, "the screenshot is (nearly) blank: {inked} of {total} pixels inked");
    let red = image.pixels().filter(|p| p.0[0] > 180 && p.0[1] < 80 && p.0[2] < 80).count();
    assert!(red > 50, "the critical band and threshold are drawn in red: {red} red pixels");
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
