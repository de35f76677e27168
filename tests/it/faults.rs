//! Fault tests of the monitor with the real binary and child: `kill -9` of the child →
//! unexpected exit, alert and restart; `SIGSTOP` of the child → timeouts, failed health
//! checks, restart; `kill -9` of the dashboard itself → a metrics file that still parses
//! line by line, and no child left behind.

use crate::common;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use common::{alive, signal};

fn pid_in(line: &str) -> u32 {
    let start = line.find("PID ").unwrap() + 4;
    line[start..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

#[test]
fn kill_and_stop_of_the_child_are_survived_and_a_killed_dashboard_leaves_valid_metrics() {
    let _machine = common::whole_machine();
    let (dir, config) = common::monitor_config(
        "faults",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.3"),
            ("inference_interval_s: 10", "inference_interval_s: 0.3"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 2 "),
            ("probe_timeout_s: 30", "probe_timeout_s: 0.5"),
            ("health_failures: 3 ", "health_failures: 2 "),
            ("initial_backoff_s: 1 ", "initial_backoff_s: 0.1 "),
            ("grace_s: 5 ", "grace_s: 1 "),
        ],
    );

    let (mut dashboard, mut lines, _) = common::spawn_capwatch(&["--headless"], &config, &[]);

    // 1. kill -9 of the child: unexpected exit, restart with a new PID, probes succeed again.
    let first = pid_in(&lines.wait_for("Server ready"));
    lines.wait_for("✅ Test");
    signal(first, Signal::SIGKILL);
    let exited = lines.wait_for(&format!("Server PID {first} exited"));
    assert!(exited.contains("signal 9") && exited.contains("unexpectedly"), "{exited}");
    lines.wait_for("🔁 Restarting in");
    let second = pid_in(&lines.wait_for("Server ready"));
    assert_ne!(first, second);
    lines.wait_for("✅ Test");

    // 2. SIGSTOP: the server hangs; probes time out, health fails twice, the monitor restarts it.
    signal(second, Signal::SIGSTOP);
    // One loop writes the failed check and then the restart, before the supervisor hears of it.
    // (Which alert fires meanwhile, and when, depends on two probe loops: not waited for here.)
    lines.wait_for("🩺 Health check failed (timeout)");
    lines.wait_for("🔁 Restarting the server: 2 consecutive failed health checks");
    let third = pid_in(&lines.wait_for("Server ready"));
    assert_ne!(third, second);
    assert!(!alive(second), "the hung server must have been killed");
    lines.wait_for("✅ Test");

    // 3. kill -9 of the dashboard: every metrics line is whole, and the child goes too.
    dashboard.kill().unwrap();
    dashboard.wait().unwrap();
    let metrics = std::fs::read_to_string(dir.join("logs/service_metrics.jsonl")).unwrap();
    assert!(metrics.ends_with('\n'), "last line is not whole");
    let records: Vec<Value> = metrics.lines().map(|l| serde_json::from_str(l).expect("whole JSON line")).collect();
    let exits: Vec<&Value> = records.iter().filter(|r| r["event"]["kind"] == "exited").collect();
    assert!(
        exits
            .iter()
            .any(|r| r["event"]["pid"] == first && r["event"]["expected"] == false && r["event"]["signal"] == 9)
    );
    assert!(records.iter().any(|r| r["type"] == "alert" && r["rule"] == "health_down"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(third) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(third), "the child survived the dashboard");
    let _ = std::fs::remove_dir_all(&dir);
}
