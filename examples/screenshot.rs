//! `make screenshots`: runs the real dashboard on the bundled model in a pseudo-terminal
//! (100×30, a test cycle every 2 s), lets it work for a while, and writes what the terminal
//! shows — text, colours, bold — as an SVG picture (`docs/src/images/dashboard.svg` by default), the
//! picture the README opens with. With `--demo` it runs `capwatch demo` instead and takes the
//! picture when the latency spike escalates to critical (`docs/src/images/demo.svg`). The
//! terminal is parsed by `vt100`, as the PTY tests do.
//!
//! Usage: cargo run --release --example screenshot -- [--demo] [OUT.svg] [SECONDS]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

const ROWS: u16 = 30;
const COLS: u16 = 100;
const CELL_W: f64 = 8.4;
const CELL_H: f64 = 17.0;
const FONT_SIZE: f64 = 14.0;
const BACKGROUND: &str = "#1e1e1e";
const FOREGROUND: &str = "#d4d4d4";

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let demo = args.first().is_some_and(|arg| arg == "--demo");
    if demo {
        args.remove(0);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let default_out = if demo { "docs/src/images/demo.svg" } else { "docs/src/images/dashboard.svg" };
    let out = args.first().map_or_else(|| root.join(default_out), PathBuf::from);
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(if demo { 120 } else { 25 });
    // The binary next to this example's directory (`cargo build --release` first).
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join("capwatch");
    assert!(binary.exists(), "{} is missing: build it first (make screenshots does)", binary.display());

    let scratch = std::env::temp_dir().join(format!("capwatch-screenshot-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let config = std::fs::read_to_string(root.join("config/monitoring_config.yaml"))
        .unwrap()
        .replace("port: 8000", "port: 0")
        .replace("inference_interval_s: 10", "inference_interval_s: 2")
        .replace("health_interval_s: 30", "health_interval_s: 5")
        .replace("  dir: logs", &format!("  dir: {}", scratch.join("logs").display()));
    let config_path = scratch.join("config.yaml");
    std::fs::write(&config_path, config).unwrap();

    let pair =
        native_pty_system().openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 }).unwrap();
    let mut command = CommandBuilder::new(&binary);
    if demo {
        command.arg("demo");
    }
    command.args(["--config", config_path.to_str().unwrap()]);
    command.cwd(&root);
    command.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(command).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut keys = pair.master.take_writer().unwrap();
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    let screen_now = || {
        let mut parser = vt100::Parser::new(ROWS, COLS, 0);
        parser.process(&output.lock().unwrap());
        parser.screen().clone()
    };
    // The dashboard: after a while. The demo: the moment the latency spike escalates to critical.
    let wanted = |contents: &str| !demo || (contents.contains("latency spike") && contents.contains("CRITICAL"));
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    if !demo {
        std::thread::sleep(Duration::from_secs(seconds));
    }
    let mut screen = screen_now();
    while !wanted(&screen.contents()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        screen = screen_now();
    }
    let expected = if demo { "CRITICAL" } else { "HEALTHY" };
    assert!(screen.contents().contains(expected), "no {expected} on the screen yet:\n{}", screen.contents());
    keys.write_all(b"q").unwrap();
    keys.flush().unwrap();
    child.wait().unwrap();
    std::fs::write(&out, svg(&screen)).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    println!("wrote {}", out.display());
}

/// The screen as SVG: one background rectangle per coloured cell run, one `<text>` per run of
/// cells with the same colours and weight, each placed at its column.
fn svg(screen: &vt100::Screen) -> String {
    let width = f64::from(COLS) * CELL_W + 16.0;
    let height = f64::from(ROWS) * CELL_H + 16.0;
    let mut out = String::new();
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT_SIZE}">"#
    )
    .unwrap();
    writeln!(out, r#"<title>capwatch dashboard on the bundled model (captured by make screenshots)</title>"#).unwrap();
    writeln!(out, r#"<rect width="100%" height="100%" rx="6" fill="{BACKGROUND}"/>"#).unwrap();
    for row in 0..ROWS {
        let y = 8.0 + f64::from(row) * CELL_H;
        let mut col = 0;
        while col < COLS {
            let Some(cell) = screen.cell(row, col) else { break };
            let style = Style::of(cell);
            let start = col;
            let mut text = String::new();
            while col < COLS {
                let Some(next) = screen.cell(row, col) else { break };
                if Style::of(next) != style {
                    break;
                }
                let contents = next.contents();
                text.push_str(if contents.is_empty() { " " } else { contents });
                col += if next.is_wide() { 2 } else { 1 };
            }
            let x = 8.0 + f64::from(start) * CELL_W;
            let cells = f64::from(col - start);
            if let Some(bg) = &style.bg {
                writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{CELL_H}" fill="{bg}"/>"#,
                    cells * CELL_W
                )
                .unwrap();
            }
            if !text.trim().is_empty() {
                let weight = if style.bold { r#" font-weight="bold""# } else { "" };
                writeln!(
                    out,
                    r#"<text x="{x:.1}" y="{:.1}" fill="{}"{weight} xml:space="preserve" textLength="{:.1}" lengthAdjust="spacingAndGlyphs">{}</text>"#,
                    y + CELL_H - 4.5,
                    style.fg,
                    cells * CELL_W,
                    escape(&text)
                )
                .unwrap();
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[derive(PartialEq)]
struct Style {
    fg: String,
    bg: Option<String>,
    bold: bool,
}

impl Style {
    fn of(cell: &vt100::Cell) -> Self {
        let (mut fg, mut bg) = (colour(cell.fgcolor()), colour(cell.bgcolor()));
        if cell.inverse() {
            std::mem::swap(&mut fg, &mut bg);
            fg = fg.or(Some(BACKGROUND.to_owned()));
            bg = bg.or(Some(FOREGROUND.to_owned()));
        }
        Self { fg: fg.unwrap_or_else(|| FOREGROUND.to_owned()), bg, bold: cell.bold() }
    }
}

/// A terminal colour as CSS (None: the default).
fn colour(colour: vt100::Color) -> Option<String> {
    const ANSI: [&str; 16] = [
        "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5", "#666666", "#f14c4c",
        "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
    ];
    match colour {
        vt100::Color::Default => None,
        vt100::Color::Idx(index) if index < 16 => Some(ANSI[usize::from(index)].to_owned()),
        vt100::Color::Idx(index) if index >= 232 => {
            let level = 8 + 10 * u32::from(index - 232);
            Some(format!("#{level:02x}{level:02x}{level:02x}"))
        }
        vt100::Color::Idx(index) => {
            let cube = index - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * u32::from(v) };
            Some(format!("#{:02x}{:02x}{:02x}", level(cube / 36), level((cube / 6) % 6), level(cube % 6)))
        }
        vt100::Color::Rgb(r, g, b) => Some(format!("#{r:02x}{g:02x}{b:02x}")),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
