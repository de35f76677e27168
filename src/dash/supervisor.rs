//! The supervisor: runs `capwatch serve` as a child process and keeps it running.
//!
//! It spawns the child (`kill_on_drop`, so no orphan survives the dashboard), learns its URL
//! from the child's first JSON log line, waits for `/ready`, and reports everything as
//! [`ServerEvent`]s. On an unexpected exit it restarts with exponential backoff; more than
//! `max_restarts` restarts within `window` stops the restarting ([`ServerEvent::CrashLoop`])
//! until a manual restart. A failed preflight check, or an exit code that says a restart
//! cannot help (`crate::exit_code`), is not retried ([`ServerEvent::PermanentFailure`]). Stopping is graceful: SIGTERM, then SIGKILL after a grace period.
//! It knows nothing about the UI; decisions based on health checks come in as commands.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};

use super::child_output::{describe_exit, exit_parts, listening_url};
use super::preflight::Preflight;
pub use super::restart_policy::{RestartHistory, RestartPolicy};

/// Lines of the child's stderr kept to explain a failed start.
const STDERR_TAIL: usize = 20;
/// How long to wait for the rest of a dead child's stderr.
const TAIL_WAIT: Duration = Duration::from_secs(2);

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServeCommand {
    pub program: PathBuf,
    /// Arguments after the program; must make it log JSON lines to stderr (`--log-format json`).
    pub args: Vec<OsString>,
    /// Environment variables set for the child, on top of the inherited ones.
    pub env: Vec<(OsString, OsString)>,
    /// Checked before every start; a failure is permanent.
    pub preflight: Option<Preflight>,
    /// Asks the child's `/ready`: trusting its certificate under `service.tls`, with a key when
    /// `service.auth.protect_all` closes `/ready` too.
    pub ready_client: reqwest::Client,
}

/// What the supervisor tells the event loop.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    Spawned {
        pid: u32,
    },
    /// The child said where it listens.
    Listening {
        pid: u32,
        url: String,
    },
    Ready {
        pid: u32,
        startup: Duration,
    },
    /// The child did not become ready (died, or timed out); `reason` quotes its stderr.
    StartFailed {
        pid: u32,
        reason: String,
    },
    Exited {
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
        expected: bool,
    },
    RestartScheduled {
        delay: Duration,
        reason: String,
    },
    /// It cannot start and a restart would not help (exit code 2–5, or a failed preflight
    /// check): no restart until a manual one.
    PermanentFailure {
        code: i32,
        reason: String,
    },
    /// Too many restarts: automatic restarting is off until a manual restart.
    CrashLoop {
        restarts: usize,
        window: Duration,
    },
    /// A line the child wrote to stderr.
    Log {
        line: String,
    },
    /// The supervisor has stopped the child for good.
    Stopped,
}

/// What the event loop asks of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorCommand {
    Restart { reason: String },
    Stop,
}

/// What the supervisor does after a child ends.
enum NextStep {
    /// Run another child (after an optional delay).
    Respawn {
        delay: Duration,
        reason: String,
    },
    /// Wait for a command before doing anything (crash loop, permanent failure).
    Idle,
    Stop,
}

/// Runs the child until `Stop` (or until the command channel closes). Events go out as `E`
/// (a [`ServerEvent`], or the dashboard's event type, so they join its one channel).
pub async fn run<E: From<ServerEvent> + Send + 'static>(
    command: ServeCommand,
    policy: RestartPolicy,
    events_tx: mpsc::Sender<E>,
    mut commands_rx: mpsc::Receiver<SupervisorCommand>,
) {
    let mut history = RestartHistory::default();
    let mut attempt = 0u32;
    let mut next = NextStep::Respawn { delay: Duration::ZERO, reason: String::new() };
    loop {
        match next {
            NextStep::Stop => break,
            NextStep::Idle => match commands_rx.recv().await {
                Some(SupervisorCommand::Restart { .. }) => {
                    history.clear();
                    attempt = 0;
                    next = NextStep::Respawn { delay: Duration::ZERO, reason: String::new() };
                    continue;
                }
                Some(SupervisorCommand::Stop) | None => break,
            },
            NextStep::Respawn { delay, reason } => {
                if !delay.is_zero() {
                    send(&events_tx, ServerEvent::RestartScheduled { delay, reason }).await;
                    tokio::select! {
                        () = sleep(delay) => {}
                        command = commands_rx.recv() => match command {
                            Some(SupervisorCommand::Stop) | None => break,
                            // A manual restart while waiting: go now.
                            Some(SupervisorCommand::Restart { .. }) => {}
                        },
                    }
                }
            }
        }
        let preflight = command.preflight.as_ref().map_or(Ok(()), Preflight::check);
        let (outcome, was_ready) = match preflight {
            Ok(()) => run_one(&command, &policy, &events_tx, &mut commands_rx).await,
            Err(failure) => {
                send(&events_tx, ServerEvent::StartFailed { pid: 0, reason: failure.reason.clone() }).await;
                (ChildEnd::Permanent { code: failure.code, reason: failure.reason }, false)
            }
        };
        if was_ready {
            attempt = 0;
        }
        next = match outcome {
            ChildEnd::Stop => NextStep::Stop,
            ChildEnd::ManualRestart => NextStep::Respawn { delay: Duration::ZERO, reason: String::new() },
            ChildEnd::Failed { reason } if policy.automatic => {
                if history.try_record(Instant::now(), &policy) {
                    let delay = policy.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    NextStep::Respawn { delay, reason }
                } else {
                    send(&events_tx, ServerEvent::CrashLoop { restarts: history.recent(), window: policy.window })
                        .await;
                    NextStep::Idle
                }
            }
            ChildEnd::Failed { .. } => NextStep::Idle,
            ChildEnd::Permanent { code, reason } => {
                send(&events_tx, ServerEvent::PermanentFailure { code, reason }).await;
                NextStep::Idle
            }
        };
    }
    send(&events_tx, ServerEvent::Stopped).await;
}

enum ChildEnd {
    Stop,
    ManualRestart,
    /// It died: worth a restart.
    Failed {
        reason: String,
    },
    /// It exited with a code that says a restart cannot help.
    Permanent {
        code: i32,
        reason: String,
    },
}

/// How a child that exited with `code` ended, for the restart decision.
fn child_end(code: Option<i32>, reason: String) -> ChildEnd {
    match code {
        Some(code) if crate::exit_code::is_permanent(code) => ChildEnd::Permanent { code, reason },
        _ => ChildEnd::Failed { reason },
    }
}

/// A child that exited before it was ready: reported with the last thing it said.
async fn start_failed<E: From<ServerEvent>>(
    pid: u32,
    status: Option<std::process::ExitStatus>,
    tail_rx: &mut mpsc::Receiver<Vec<String>>,
    events_tx: &mpsc::Sender<E>,
) -> (ChildEnd, bool) {
    let tail = timeout(TAIL_WAIT, tail_rx.recv()).await.ok().flatten().unwrap_or_default();
    let reason = describe_exit(status, &tail);
    send(events_tx, ServerEvent::StartFailed { pid, reason: reason.clone() }).await;
    (child_end(exit_parts(status).0, reason), false)
}

async fn send<E: From<ServerEvent>>(events_tx: &mpsc::Sender<E>, event: ServerEvent) {
    // The event loop owns the receiver; once it is gone nobody is listening and the
    // supervisor is being torn down anyway.
    let _ = events_tx.send(event.into()).await;
}

/// Spawns one child and supervises it until it ends; returns why, and whether it got ready.
async fn run_one<E: From<ServerEvent> + Send + 'static>(
    command: &ServeCommand,
    policy: &RestartPolicy,
    events_tx: &mpsc::Sender<E>,
    commands_rx: &mut mpsc::Receiver<SupervisorCommand>,
) -> (ChildEnd, bool) {
    let mut child_command = Command::new(&command.program);
    child_command
        .args(&command.args)
        .envs(command.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    ask_for_sigterm_when_parent_dies(&mut child_command);
    let spawned = child_command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            let reason = format!("cannot start {}: {err}", command.program.display());
            send(events_tx, ServerEvent::StartFailed { pid: 0, reason: reason.clone() }).await;
            return (ChildEnd::Failed { reason }, false);
        }
    };
    let pid = child.id().unwrap_or(0);
    send(events_tx, ServerEvent::Spawned { pid }).await;

    let (url_tx, mut url_rx) = mpsc::channel::<String>(1);
    let (tail_tx, mut tail_rx) = mpsc::channel::<Vec<String>>(1);
    // The stderr reader lives as long as this child: aborted on every way out of here.
    let mut reader = tokio::task::JoinSet::new();
    if let Some(stderr) = child.stderr.take() {
        let events_tx = events_tx.clone();
        reader.spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tail = VecDeque::with_capacity(STDERR_TAIL);
            let mut url_tx = Some(url_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if url_tx.is_some()
                    && let Some(url) = listening_url(&line)
                    && let Some(tx) = url_tx.take()
                {
                    // Capacity 1 and a single send: cannot be full; a closed receiver
                    // means the start-up wait is over and the URL is no longer needed.
                    let _ = tx.try_send(url);
                }
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                send(&events_tx, ServerEvent::Log { line }).await;
            }
            // Same as above: if nobody waits for the tail, the child's end is already explained.
            let _ = tail_tx.try_send(tail.into_iter().collect());
        });
    }

    // Start-up: the URL from the log, then /ready.
    let started = Instant::now();
    let startup = async {
        let url = url_rx.recv().await?;
        send(events_tx, ServerEvent::Listening { pid, url: url.clone() }).await;
        let client = &command.ready_client;
        loop {
            let ready = client.get(format!("{url}/ready")).timeout(Duration::from_secs(2)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Some(url);
            }
            sleep(Duration::from_millis(50)).await;
        }
    };
    let ready = tokio::select! {
        ready = timeout(policy.startup_timeout, startup) => match ready {
            Ok(Some(url)) => Some(url),
            // Its stderr closed before it said where it listens: it is exiting; say why.
            Ok(None) => match timeout(TAIL_WAIT, child.wait()).await {
                Ok(status) => return start_failed(pid, status.ok(), &mut tail_rx, events_tx).await,
                Err(_) => None,
            },
            Err(_) => None,
        },
        status = child.wait() => return start_failed(pid, status.ok(), &mut tail_rx, events_tx).await,
        command = commands_rx.recv() => {
            let end = match command {
                Some(SupervisorCommand::Restart { .. }) => ChildEnd::ManualRestart,
                Some(SupervisorCommand::Stop) | None => ChildEnd::Stop,
            };
            stop_child(&mut child, pid, policy.grace, events_tx).await;
            return (end, false);
        }
    };
    if ready.is_none() {
        let reason = format!("not ready within {} s", policy.startup_timeout.as_secs());
        send(events_tx, ServerEvent::StartFailed { pid, reason: reason.clone() }).await;
        stop_child(&mut child, pid, policy.grace, events_tx).await;
        return (ChildEnd::Failed { reason }, false);
    }
    send(events_tx, ServerEvent::Ready { pid, startup: started.elapsed() }).await;

    // Running, until it exits or we are told otherwise.
    tokio::select! {
        status = child.wait() => {
            let status = status.ok();
            // The reader sends the tail at end of file, which follows the exit at once.
            let tail = timeout(TAIL_WAIT, tail_rx.recv()).await.ok().flatten().unwrap_or_default();
            let (code, signal) = exit_parts(status);
            send(events_tx, ServerEvent::Exited { pid, code, signal, expected: false }).await;
            let reason = format!("server exited unexpectedly ({})", describe_exit(status, &tail));
            (child_end(code, reason), true)
        }
        command = commands_rx.recv() => {
            let end = match command {
                Some(SupervisorCommand::Restart { .. }) => ChildEnd::ManualRestart,
                Some(SupervisorCommand::Stop) | None => ChildEnd::Stop,
            };
            stop_child(&mut child, pid, policy.grace, events_tx).await;
            (end, true)
        }
    }
}

/// `kill_on_drop` covers every exit of the dashboard that runs destructors; if the dashboard
/// itself is killed with SIGKILL, Linux's parent-death signal still stops the child.
fn ask_for_sigterm_when_parent_dies(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// SIGTERM, wait up to `grace`, then SIGKILL; reports the exit as expected.
async fn stop_child<E: From<ServerEvent>>(child: &mut Child, pid: u32, grace: Duration, events_tx: &mpsc::Sender<E>) {
    if let Ok(raw) = i32::try_from(pid) {
        // The child may already be gone (ESRCH); waiting below settles it either way.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), nix::sys::signal::Signal::SIGTERM);
    }
    let status = match timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            // start_kill only fails if the child was already reaped.
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    let (code, signal) = exit_parts(status);
    send(events_tx, ServerEvent::Exited { pid, code, signal, expected: true }).await;
}
