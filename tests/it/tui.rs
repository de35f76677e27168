//! The full-screen dashboard end to end in a real pseudo-terminal: the caption and P95
//! appear, `p` shows PAUSED, `r` changes the server PID, `q` quits, restores the terminal,
//! prints and writes the session summary, and leaves no server process.

use crate::common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use common::{alive, repo_path};

const ROWS: u16 = 32;
const COLS: u16 = 120;

struct Pty {
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn screen(&self) -> String {
        let mut parser = vt100::Parser::new(ROWS, COLS, 0);
        parser.process(&self.output.lock().unwrap());
        parser.screen().contents()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the screen satisfies `check`; returns that screen.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Pty {
    /// Runs the dashboard with `config` (and extra environment) in a new pseudo-terminal.
    fn start(
        config: &std::path::Path,
        env: &[(&str, &str)],
    ) -> (Self, Box<dyn portable_pty::Child + Send + Sync>, Box<dyn Write + Send>) {
        Self::start_with(&[], config, env)
    }

    /// [`Pty::start`] with `args` before `--config`.
    fn start_with(
        args: &[&str],
        config: &std::path::Path,
        env: &[(&str, &str)],
    ) -> (Self, Box<dyn portable_pty::Child + Send + Sync>, Box<dyn Write + Send>) {
        let pair =
            native_pty_system().openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_capwatch"));
        command.args(args);
        command.args(["--config", config.to_str().unwrap()]);
        command.cwd(repo_path(""));
        command.env("TERM", "xterm-256color");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let keys = pair.master.take_writer().unwrap();
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
        (Self { output }, child, keys)
    }
}

/// Presses `q` and waits (30 s at most) for the dashboard to exit.
fn quit(
    pty: &Pty,
    child: &mut Box<dyn portable_pty::Child + Send + Sync>,
    keys: &mut Box<dyn Write + Send>,
) -> portable_pty::ExitStatus {
    keys.write_all(b"q").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the dashboard did not quit; screen:\n{}", pty.screen());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit code the session's summary calls for: 0 no alert fired, 1 only warnings, 2 a
/// critical one.
fn exit_code_for_summary(logs: &std::path::Path) -> u32 {
    let summary = common::session_summary(logs);
    match (summary["alerts_warning"].as_u64().unwrap(), summary["alerts_critical"].as_u64().unwrap()) {
        (_, critical) if critical > 0 => 2,
        (warning, _) if warning > 0 => 1,
        _ => 0,
    }
}

fn header_pid(screen: &str) -> Option<u32> {
    let start = screen.find("PID ")? + 4;
    screen[start..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

#[test]
fn dashboard_in_a_pseudo_terminal() {
    let _machine = common::whole_machine();
    let (dir, config) = common::monitor_config(
        "tui",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.5"),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ],
    );

    let (pty, mut child, mut keys) = Pty::start(&config, &[]);

    let screen = pty.wait_for("a caption and the P95 gauge", |s| {
        s.contains("HEALTHY") && s.contains("P95 ") && s.contains("quality 1.00")
    });
    assert!(screen.contains("Latest caption") && screen.contains("Alerts") && screen.contains("q quit"), "{screen}");
    let first = header_pid(&screen).expect("PID in the header");

    keys.write_all(b"p").unwrap();
    pty.wait_for("PAUSED", |s| s.contains("PAUSED"));
    keys.write_all(b"p").unwrap();
    pty.wait_for("resumed", |s| !s.contains("PAUSED"));

    keys.write_all(b"r").unwrap();
    let screen =
        pty.wait_for("a new server PID", |s| header_pid(s).is_some_and(|pid| pid != first) && s.contains("HEALTHY"));
    let second = header_pid(&screen).unwrap();
    assert!(!alive(first), "the old server survived the restart");

    let status = quit(&pty, &mut child, &mut keys);
    assert_eq!(status.exit_code(), exit_code_for_summary(&dir.join("logs")), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let raw = pty.raw();
    assert!(raw.contains("\x1b[?1049l"), "the alternate screen was never left");
    let after = raw.rsplit("\x1b[?1049l").next().unwrap();
    assert!(after.contains("capwatch session summary"), "no summary printed after restoring the terminal:\n{after}");
    assert!(!alive(second), "the server survived the dashboard");
    let summaries = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("session_summary_"))
        .count();
    assert_eq!(summaries, 3, "the summary (JSON, Markdown) and the report with charts (HTML)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dead_alert_sink_shows_on_the_dashboard() {
    let _machine = common::whole_machine();
    let sinks = "  sinks:\n    - kind: webhook\n      name: dead\n      url_env: T_DEAD_URL\n";
    let (dir, config) = common::monitor_config(
        "tui-sink",
        &[
            ("  sinks: []\n", sinks),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
            ("p95_latency_ms: {warning: 4000, critical: 8000}", "p95_latency_ms: {warning: 0.001, critical: 100000}"),
            ("min_samples: 5 ", "min_samples: 1 "),
            ("max_attempts: 4 ", "max_attempts: 1 "),
        ],
    );
    let dead_url = common::receiver::refused_url();
    let (pty, mut child, mut keys) = Pty::start(&config, &[("T_DEAD_URL", &dead_url)]);
    let screen = pty.wait_for("the dead sink marked on the alert panel", |s| s.contains("notify: dead ✗"));
    assert!(screen.contains("ALERT: p95_latency"), "{screen}");
    // Monitoring carries on: the test count keeps growing after the failure.
    let tests = |s: &str| {
        let start = s.find("tests ")? + 6;
        s[start..].chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u64>().ok()
    };
    let before = tests(&screen).unwrap();
    pty.wait_for("more tests", |s| tests(s).is_some_and(|n| n > before + 2));
    let status = quit(&pty, &mut child, &mut keys);
    // The P95 warning fired (its critical level is out of reach): exit code 1.
    assert_eq!(exit_code_for_summary(&dir.join("logs")), 1);
    assert_eq!(status.exit_code(), 1, "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_cannot_start_shows_why_and_r_tries_again() {
    let _machine = common::whole_machine();
    let (dir, config) =
        common::monitor_config("tui-cannot-start", &[("model_dir: models/default", "model_dir: /nonexistent")]);
    let (pty, mut child, mut keys) = Pty::start(&config, &[]);
    let screen = pty.wait_for("the failed state", |s| s.contains("FAILED") && s.contains("r to try again"));
    assert!(screen.contains("server stopped: cannot load model from /nonexistent: no such directory"), "{screen}");
    keys.write_all(b"r").unwrap();
    // The second try fails the same way, and the log says so twice.
    pty.wait_for("a second report", |s| s.matches("Server failed to start").count() >= 2 && s.contains("FAILED"));
    let status = quit(&pty, &mut child, &mut keys);
    assert_eq!(status.exit_code(), 2, "a critical start_failed alert fired");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_fault_menu_injects_a_fault_that_the_alerts_catch() {
    let _machine = common::whole_machine();
    let (dir, config) = common::monitor_config(
        "tui-chaos",
        &[
            ("  chaos: false ", "  chaos: true "),
            ("health_interval_s: 30", "health_interval_s: 0.5"),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
            ("min_samples: 5 ", "min_samples: 2 "),
        ],
    );
    let (pty, mut child, mut keys) = Pty::start(&config, &[]);
    pty.wait_for("a healthy service", |s| s.contains("HEALTHY") && s.contains("quality 1.00"));
    keys.write_all(b"f").unwrap();
    pty.wait_for("the fault menu", |s| s.contains("Inject a fault") && s.contains("2 errors: HTTP 500"));
    keys.write_all(b"2").unwrap();
    let screen = pty.wait_for("the fault banner and the alert it trips", |s| {
        s.contains("FAULT errors: HTTP 500") && s.contains("s left") && s.contains("error_rate")
    });
    assert!(!screen.contains("Inject a fault"), "the menu closes on a choice:\n{screen}");
    keys.write_all(b"f").unwrap();
    pty.wait_for("the fault menu", |s| s.contains("Inject a fault"));
    keys.write_all(b"x").unwrap();
    pty.wait_for("the banner gone", |s| !s.contains("FAULT errors") && s.contains("Faults cleared"));
    quit(&pty, &mut child, &mut keys);

    let records = common::read_records(&dir.join("logs"));
    let faults: Vec<_> = records.iter().filter(|r| r["type"] == "fault").collect();
    assert_eq!(faults.len(), 2, "{faults:#?}");
    assert_eq!((faults[0]["event"].as_str(), faults[0]["fault"]["kind"].as_str()), (Some("started"), Some("errors")));
    assert_eq!((faults[1]["event"].as_str(), faults[1]["ended_by"].as_str()), (Some("ended"), Some("cleared")));
    assert!(faults[1]["hits"].as_u64().unwrap() > 0);
    common::assert_schema(&records);
    let summary = common::session_summary(&dir.join("logs"));
    assert_eq!(summary["faults"][0]["kind"], "errors");
    assert_eq!(summary["faults"][0]["ended_by"], "cleared");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_model_variants_get_the_ab_pane() {
    let _machine = common::whole_machine();
    let (dir, config) = common::monitor_config(
        "tui-ab",
        &[
            (
                "  request_timeout_s: 30\n",
                "  request_timeout_s: 30\n  models:\n    - {name: base, dir: models/default}\n    - {name: canary, dir: models/default, weight: 0}\n",
            ),
            ("health_interval_s: 30", "health_interval_s: 0.5"),
            ("inference_interval_s: 10", "inference_interval_s: 0.3"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ],
    );
    let (pty, mut child, mut keys) = Pty::start(&config, &[]);
    // Three complete rounds at two tests per cycle: a cycle has ended with A/B on, so its
    // `ab` record is written (the pane itself shows from the first health check).
    let rounds =
        |s: &str| s.split("A/B · ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse::<u32>().ok());
    let screen = pty.wait_for("the A/B pane with both variants, a verdict line and three rounds", |s| {
        s.contains("canary vs base:") && s.contains("⚖ ") && s.contains("model base, canary") && rounds(s) >= Some(3)
    });
    assert!(screen.contains("P50 ms (95% CI)"), "{screen}");
    quit(&pty, &mut child, &mut keys);
    let records = common::read_records(&dir.join("logs"));
    common::assert_schema(&records);
    assert!(records.iter().any(|r| r["type"] == "ab" && r["b"]["name"] == "canary"), "no ab record");
    let summary = common::session_summary(&dir.join("logs"));
    assert_eq!(summary["ab"][0]["a"]["name"], "base", "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `monitor --url A --url B` in a real terminal: the instances pane lists both, Tab moves
/// the panes to the other instance, `q` quits and the summary breaks down by instance.
#[test]
fn two_instances_share_one_dashboard_and_tab_moves_the_focus() {
    let _machine = common::whole_machine();
    let (_first, first_url, _first_log) = common::spawn_server(&repo_path("models/default"), &[]);
    let (_second, second_url, _second_log) = common::spawn_server(&repo_path("models/default"), &[]);
    common::wait_ready(&first_url);
    common::wait_ready(&second_url);
    let (dir, config) = common::monitor_config(
        "tui-instances",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.5"),
            ("inference_interval_s: 10", "inference_interval_s: 0.3"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
        ],
    );
    let name = |url: &str| url.trim_start_matches("http://").to_owned();
    let (first, second) = (name(&first_url), name(&second_url));
    let args = ["monitor", "--url", first_url.as_str(), "--url", second_url.as_str()];
    let (pty, mut child, mut keys) = Pty::start_with(&args, &config, &[]);
    let header = |instance: &str| format!("capwatch · {instance}");
    pty.wait_for("the instances pane with both, the first one focused and captioning", |s| {
        s.contains("Instances (2)") && s.contains(&header(&first)) && s.contains(&second) && s.contains("HEALTHY")
    });
    keys.write_all(b"\t").unwrap();
    let screen = pty.wait_for("the second instance in the panes", |s| s.contains(&header(&second)));
    let marked = screen.lines().find(|line| line.contains('▶')).unwrap_or_default().to_owned();
    assert!(marked.contains(&second), "{screen}");
    let status = quit(&pty, &mut child, &mut keys);
    assert_eq!(status.exit_code(), exit_code_for_summary(&dir.join("logs")), "{}", pty.screen());
    let summary = common::session_summary(&dir.join("logs"));
    let names: Vec<&str> =
        summary["instances"].as_array().unwrap().iter().map(|i| i["instance"].as_str().unwrap()).collect();
    assert_eq!(names, [first.as_str(), second.as_str()], "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
