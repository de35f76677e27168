//! A server that cannot start, or keeps dying, with the real binary: `capwatch serve` exits
//! with the documented code, and a headless dashboard says why at once, does not retry what
//! a restart cannot fix, stops within a bounded time with exit code 2, and writes a summary
//! whose status says what happened.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{KillOnDrop, repo_path};

/// Bound on how long a run that cannot go on may take to end (start, preflight or one child,
/// stop, summary); a hang would hit the test's own limit instead.
const PROMPT_EXIT: Duration = Duration::from_secs(30);

/// Fast probing and restarts, for a session in `name`'s scratch directory.
fn config(name: &str) -> (PathBuf, PathBuf) {
    common::monitor_config(
        name,
        &[
            ("health_interval_s: 30", "health_interval_s: 0.3"),
            ("inference_interval_s: 10", "inference_interval_s: 0.3"),
            ("initial_backoff_s: 1 ", "initial_backoff_s: 0.1 "),
            ("max_restarts: 5 ", "max_restarts: 2 "),
        ],
    )
}

/// `capwatch --headless --cycles 3 ARGS`: exit code, stdout, and how long it took.
fn headless(config: &Path, args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["--headless", "--cycles", "3", "--config"])
        .arg(config)
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), started.elapsed())
}

/// The first line that reports a failed start, and how many there were.
fn start_failures(stdout: &str) -> (String, usize) {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("💥 Server failed to start")).collect();
    (lines.first().map(|l| (*l).to_owned()).unwrap_or_default(), lines.len())
}

#[test]
fn serve_exits_with_a_code_that_names_the_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let listen_error = format!("cannot listen on 127.0.0.1:{port}: ");
    let no_env: &[(&str, &str)] = &[];
    let no_runtime: &[(&str, &str)] = &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")];
    let cases = [
        (
            ["--model", "/nonexistent", "--port", "0"],
            no_env,
            3,
            "cannot load model from /nonexistent: no such directory",
        ),
        (["--model", "models/default", "--port", port.as_str()], no_env, 5, listen_error.as_str()),
        (["--model", "models/default", "--port", "0"], no_runtime, 4, "ONNX Runtime library /nonexistent"),
    ];
    for (args, env, code, message) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_capwatch"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(repo_path(""))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("error: {message}")), "{args:?}: {stderr}");
        if code == 4 {
            assert!(stderr.contains("make setup"), "the fix is named: {stderr}");
        }
    }
}

#[test]
fn a_missing_model_is_reported_once_in_serves_words_and_ends_the_run() {
    let (dir, config) = config("start-missing-model");
    let (code, stdout, took) = headless(&config, &["--model", "/nonexistent"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(took < PROMPT_EXIT, "took {took:?}");
    let (first, count) = start_failures(&stdout);
    assert!(
        first.contains("💥 Server failed to start: cannot load model from /nonexistent: no such directory"),
        "{stdout}"
    );
    assert_eq!(count, 1, "retried:\n{stdout}");
    assert!(stdout.contains("⛔ Not restarting: the model directory is missing or invalid (exit code 3)"), "{stdout}");
    assert!(!stdout.contains("Restarting in"), "{stdout}");
    assert_eq!(common::session_summary(&dir.join("logs"))["last_status"], "failed");
    assert!(stdout.contains("| last status | failed |"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_model_fails_in_the_child_and_is_not_retried() {
    let (dir, config) = config("start-invalid-model");
    // Every file is there (so the preflight check passes), but the encoder is not ONNX.
    let model = dir.join("broken-model");
    std::fs::create_dir_all(&model).unwrap();
    for entry in std::fs::read_dir(repo_path("models/default")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), model.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(model.join("encoder_model.onnx"), b"not an onnx model").unwrap();
    let (code, stdout, took) = headless(&config, &["--model", model.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(took < PROMPT_EXIT, "took {took:?}");
    let (first, count) = start_failures(&stdout);
    assert!(first.contains("💥 Server failed to start: exit code 3: "), "{stdout}");
    assert!(first.contains(&format!("cannot load model from {}", model.display())), "{stdout}");
    assert_eq!(count, 1, "retried:\n{stdout}");
    assert_eq!(common::session_summary(&dir.join("logs"))["last_status"], "failed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_address_in_use_is_named_at_once() {
    let (dir, config) = config("start-address-in-use");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stdout, took) = headless(&config, &["--port", &port]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(took < PROMPT_EXIT, "took {took:?}");
    let (first, count) = start_failures(&stdout);
    assert!(first.contains(&format!("💥 Server failed to start: cannot listen on 127.0.0.1:{port}: ")), "{stdout}");
    assert!(!stdout.contains("not ready within"), "{stdout}");
    assert_eq!(count, 1, "retried:\n{stdout}");
    assert_eq!(common::session_summary(&dir.join("logs"))["last_status"], "failed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_keeps_dying_after_it_is_ready_ends_in_a_crash_loop() {
    let _machine = common::whole_machine();
    let (dir, config) = config("start-crash-loop");
    let (child, mut stdout, _stderr) = common::spawn_capwatch(&["--headless", "--duration", "10m"], &config, &[]);
    let mut dashboard = KillOnDrop(child);
    // max_restarts 2: the first start and two restarts die, then the supervisor gives up.
    for _ in 0..3 {
        let line = stdout.wait_for("🟢 Server ready (PID ");
        let pid: u32 = line.split("(PID ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        common::signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let started = Instant::now();
    stdout.wait_for("🧯 2 restarts within 600 s: automatic restarts stopped");
    let status = loop {
        if let Some(status) = dashboard.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < PROMPT_EXIT, "the run did not end after the crash loop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2), "{}", stdout.rest().join("\n"));
    let text = stdout.rest().join("\n");
    assert!(
        text.contains("server exited unexpectedly (killed by signal 9)")
            || text.contains("exited (signal 9) unexpectedly"),
        "{text}"
    );
    assert_eq!(common::session_summary(&dir.join("logs"))["last_status"], "crash_loop");
    let _ = std::fs::remove_dir_all(&dir);
}
