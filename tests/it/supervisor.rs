//! The supervisor against the real `capwatch serve` binary: start-up, restart after
//! `kill -9`, manual restart, graceful stop with no process left behind, and the crash-loop
//! limit when the child cannot start.

use crate::common;

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
        env: Vec::new(),
        preflight: None,
        ready_client: reqwest::Client::new(),
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
    let _machine = common::whole_machine();
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
async fn a_child_that_cannot_load_its_model_is_not_restarted() {
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let supervisor = tokio::spawn(run(command("/nonexistent/model".into()), policy(5), events_tx, commands_rx));
    for attempt in 0..2 {
        assert!(matches!(next(&mut events_rx).await, ServerEvent::Spawned { .. }));
        let mut event = next(&mut events_rx).await;
        if matches!(event, ServerEvent::Listening { .. }) {
            event = next(&mut events_rx).await;
        }
        let ServerEvent::StartFailed { reason, .. } = event else { panic!("expected StartFailed, got {event:?}") };
        assert!(reason.starts_with("exit code 3: ") && reason.contains("no such directory"), "{reason}");
        let event = next(&mut events_rx).await;
        assert!(matches!(&event, ServerEvent::PermanentFailure { code: 3, reason: r } if *r == reason), "{event:?}");
        // Nothing more until someone asks: no backoff, no restart.
        let quiet = tokio::time::timeout(Duration::from_millis(500), next(&mut events_rx)).await;
        assert!(quiet.is_err(), "attempt {attempt}: {quiet:?}");
        // A manual restart tries once more.
        commands_tx.send(SupervisorCommand::Restart { reason: "test".to_owned() }).await.unwrap();
    }
    assert!(matches!(next(&mut events_rx).await, ServerEvent::Spawned { .. }));
    commands_tx.send(SupervisorCommand::Stop).await.unwrap();
    loop {
        if next(&mut events_rx).await == ServerEvent::Stopped {
            break;
        }
    }
    supervisor.await.unwrap();
}

#[tokio::test]
async fn a_server_that_keeps_dying_after_it_is_ready_ends_in_a_crash_loop() {
    let _machine = common::whole_machine();
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let supervisor = tokio::spawn(run(command(fixture("vit_gpt2_merged").into()), policy(2), events_tx, commands_rx));
    // The first start plus two restarts, each killed once it is ready.
    for _ in 0..3 {
        let pid = expect_start(&mut events_rx).await;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        let event = next(&mut events_rx).await;
        assert_eq!(event, ServerEvent::Exited { pid, code: None, signal: Some(9), expected: false });
        let event = next(&mut events_rx).await;
        if let ServerEvent::CrashLoop { restarts, .. } = event {
            assert_eq!(restarts, 2);
            commands_tx.send(SupervisorCommand::Stop).await.unwrap();
            assert_eq!(next(&mut events_rx).await, ServerEvent::Stopped);
            supervisor.await.unwrap();
            return;
        }
        assert!(matches!(event, ServerEvent::RestartScheduled { .. }), "{event:?}");
    }
    panic!("no crash loop after three deaths");
}

#[tokio::test]
async fn a_child_that_dies_before_it_listens_is_reported_with_its_own_words_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut command = command(fixture("vit_gpt2_merged").into());
    let at = command.args.iter().position(|a| a == "--port").unwrap();
    command.args[at + 1] = port.clone().into();
    let (events_tx, mut events_rx) = mpsc::channel(256);
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let started = std::time::Instant::now();
    let supervisor = tokio::spawn(run(command, policy(5), events_tx, commands_rx));
    assert!(matches!(next(&mut events_rx).await, ServerEvent::Spawned { .. }));
    let event = next(&mut events_rx).await;
    let ServerEvent::StartFailed { reason, .. } = &event else { panic!("expected StartFailed, got {event:?}") };
    assert!(reason.starts_with(&format!("exit code 5: cannot listen on 127.0.0.1:{port}: ")), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(20), "not reported at once: {:?}", started.elapsed());
    assert!(matches!(next(&mut events_rx).await, ServerEvent::PermanentFailure { code: 5, .. }));
    commands_tx.send(SupervisorCommand::Stop).await.unwrap();
    assert_eq!(next(&mut events_rx).await, ServerEvent::Stopped);
    supervisor.await.unwrap();
}
