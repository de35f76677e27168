//! `capwatch serve` as a real process: it drains in-flight requests on SIGTERM/SIGINT and
//! exits 0; a missing ONNX Runtime, model or bad config stops it with a clear message.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{KillOnDrop, fixture, smooth_png, wait_ready};

const BINARY: &str = env!("CARGO_BIN_EXE_capwatch");

fn wait_exit(child: &mut KillOnDrop) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &KillOnDrop, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let _machine = common::whole_machine();
    for signal_name in ["TERM", "INT"] {
        let (mut child, url, _log) = common::spawn_server(&fixture("vit_gpt2_merged"), &[]);
        wait_ready(&url);
        // A large image keeps the request busy decoding while the signal arrives.
        let big = smooth_png(6000, 6000);
        let request_url = format!("{url}/caption");
        let request = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let response = reqwest::Client::new()
                    .post(request_url)
                    .header("content-type", "image/png")
                    .body(big)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, signal_name);
        let (status, body) = request.join().unwrap();
        assert_eq!(status, 200, "SIG{signal_name}: in-flight request was not drained: {body}");
        assert!(body.contains("\"caption\""), "{body}");
        let exit = wait_exit(&mut child);
        assert_eq!(exit.code(), Some(0), "SIG{signal_name}: exit status {exit:?}");
    }
}

#[test]
fn bad_config_names_key_and_line() {
    let path = std::env::temp_dir().join(format!("capwatch-bad-config-{}.yaml", std::process::id()));
    std::fs::write(&path, "service:\n  port: 8000\n  wokers: 2\n").unwrap();
    let output = Command::new(BINARY).args(["serve", "--config"]).arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":3:") && stderr.contains("service.wokers") && stderr.contains("unknown field"),
        "{stderr}"
    );
}
