//! The supervisor against the real `capwatch serve` binary: start-up, restart after
//! `kill -9`, manual restart, graceful stop with no process left behind, and the crash-loop
//! limit when the child cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::time::Duration;

use capwatch::dash::supervisor::{RestartPolicy, ServeCommand, ServerEvent, SupervisorCommand, run};
use tokio::sync::mpsc;

use common::fixture;

fn command(model: OsString) -> ServeCommand {
    ServeCommand {
        program: env!("CARGO_BIN_EXE_capwatch").into(),
        args: ["serve", "--port", "0", "--workers", "1", "--log-format", "json", "--model"]
            .into_iter()
            .map(OsString::from)
            .chain([model])
            .collect(),
    }
}

fn policy(max_restarts: usize) -> RestartPolicy {
    RestartPolicy {
        automatic: true,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_restarts,
        window: Duration::from_secs(600),
        grace: Duration::from_secs(5),
        startup_timeout: Duration::from_secs(60),
    }
}

/// The next event that is not a log line.
async fn next(events_rx: &mut mpsc::Receiver<ServerEvent>) -> ServerEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events_rx.recv())
            .await
            .expect("no event in 60 s")
            .expect("supervisor ended");
        if !matches!(event, ServerEvent::Log { .. }) {
            return event;
        }
    }
}

async fn expect_start(events_rx: &mut mpsc::Receiver<ServerEvent>) -> u32 {
    let ServerEvent::Spawned { pid } = next(events_rx).await else { panic!("expected Spawned") };
    let event = next(events_rx).await;
    assert!(
        matches!(&event, ServerEvent::Listening { pid: p, url } if *p == pid && url.starts_with("http://127.0.0.1:")),
        "{event:?}"
    );
    let event = next(events_rx).await;
    assert!(matches!(event, ServerEvent::Ready { pid: p, .. } if p == pid), "{event:?}");
    pid
}

fn process_exists(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn restarts_after_kill_and_on_request_then_stops_cleanly() {
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let supervisor = tokio::spawn(run(command(fixture("vit_gpt2_merged").into()), policy(5), events_tx, commands_rx));

    let first = expect_start(&mut events_rx).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let event = next(&mut events_rx).await;
    assert_eq!(event, ServerEvent::Exited { pid: first, code: None, signal: Some(9), expected: false });
    let event = next(&mut events_rx).await;
    assert!(
        matches!(&event, ServerEvent::RestartScheduled { delay, .. } if *delay == Duration::from_millis(50)),
        "{event:?}"
    );
    let second = expect_start(&mut events_rx).await;
    assert_ne!(first, second);

    commands_tx.send(SupervisorCommand::Restart { reason: "test".to_owned() }).await.unwrap();
    let event = next(&mut events_rx).await;
    assert_eq!(
        event,
        ServerEvent::Exited { pid: second, code: Some(0), signal: None, expected: true },
        "SIGTERM must drain and exit 0"
    );
    let third = expect_start(&mut events_rx).await;

    commands_tx.send(SupervisorCommand::Stop).await.unwrap();
    assert_eq!(
        next(&mut events_rx).await,
        ServerEvent::Exited { pid: third, code: Some(0), signal: None, expected: true }
    );
    assert_eq!(next(&mut events_rx).await, ServerEvent::Stopped);
    supervisor.await.unwrap();
    for pid in [first, second, third] {
        assert!(!process_exists(pid), "process {pid} survived");
    }
}

#[tokio::test]
async fn a_child_that_cannot_start_ends_in_a_crash_loop() {
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let supervisor = tokio::spawn(run(command("/nonexistent/model".into()), policy(2), events_tx, commands_rx));
    let mut failures = 0;
    loop {
        match next(&mut events_rx).await {
            ServerEvent::StartFailed { reason, .. } => {
                assert!(reason.contains("exit code 1") && reason.contains("no such directory"), "{reason}");
                failures += 1;
            }
            ServerEvent::CrashLoop { restarts, .. } => {
                assert_eq!(restarts, 2);
                break;
            }
            ServerEvent::Spawned { .. } | ServerEvent::Listening { .. } | ServerEvent::RestartScheduled { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The first start plus two restarts.
    assert_eq!(failures, 3);
    commands_tx.send(SupervisorCommand::Stop).await.unwrap();
    assert_eq!(next(&mut events_rx).await, ServerEvent::Stopped);
    supervisor.await.unwrap();
}
