//! Shared helpers for integration tests: fixture paths, an in-process server on
//! 127.0.0.1:0 with a real model, and test images drawn in memory.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

pub mod pki;
pub mod receiver;

use capwatch::config::ServiceConfig;
use capwatch::server::{self, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The Python with the test tools (openapi-spec-validator, prometheus_client): the venv
/// `make setup` makes (`.ort/test-venv`), else `python3` with `.ort/test-pylib` on its path
/// (where Python has no venv module), else plain `python3`.
pub fn python() -> std::process::Command {
    let venv = repo_path(".ort/test-venv/bin/python");
    if venv.exists() {
        return std::process::Command::new(venv);
    }
    let mut command = std::process::Command::new("python3");
    let lib = repo_path(".ort/test-pylib");
    if lib.exists() {
        command.env("PYTHONPATH", lib);
    }
    command
}

/// Runs the capwatch binary with `args` from the repository root, off the async workers: its
/// exit code, stdout and stderr.
pub async fn capwatch_cli(args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
            .args(args)
            .current_dir(repo_path(""))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

pub fn fixture(relative: &str) -> PathBuf {
    repo_path("tests/fixtures").join(relative)
}

/// A real server in this process, on a free loopback port.
pub struct TestServer {
    pub url: String,
    stop_tx: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server for `model_dir`, applies `tweak` to the config, waits for `/ready`.
    pub async fn start(model_dir: PathBuf, tweak: impl FnOnce(&mut ServiceConfig)) -> Self {
        let mut config = ServiceConfig { model_dir, port: 0, ..ServiceConfig::default() };
        config.workers = std::num::NonZeroUsize::new(1);
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(config, listener, async move {
            let _ = stop_rx.await;
        }));
        let server = Self { url, stop_tx: Some(stop_tx), handle: Some(handle) };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(response) = client.get(format!("{}/ready", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} never became ready", self.url);
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Graceful stop; returns what `server::run` returned.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }
}

pub fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// A colourful RGB test picture of the given size, as PNG bytes.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8])
    });
    encode(&image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png)
}

/// A large but well-compressible PNG (a smooth gradient): slow to decode, small to send.
pub fn smooth_png(width: u32, height: u32) -> Vec<u8> {
    let image =
        image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x / 32 % 256) as u8, (y / 32 % 256) as u8, 128]));
    encode(&image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png)
}

/// Held by a test that needs both cores: a dashboard with its child server, a drill, a
/// pseudo-terminal, the model under full load. Such tests run one at a time (beside the
/// light ones), so their probe timeouts and timing margins hold on a 2-core machine.
pub struct WholeMachine(());

static MACHINE_TAKEN: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
static MACHINE_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Waits until no other whole-machine test runs; the machine is free again when the
/// returned value is dropped (a failed test included).
pub fn whole_machine() -> WholeMachine {
    let mut taken = MACHINE_TAKEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while *taken {
        taken = MACHINE_FREED.wait(taken).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    *taken = true;
    WholeMachine(())
}

impl Drop for WholeMachine {
    fn drop(&mut self) {
        *MACHINE_TAKEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        MACHINE_FREED.notify_one();
    }
}

/// Whether a process is running (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// A fresh scratch directory holding a copy of the shipped config for a monitor test: port
/// 0, logs inside the directory, then each `(from, to)` replacement applied in order.
pub fn monitor_config(name: &str, replacements: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("capwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let logs = format!("  dir: {}", dir.join("logs").display());
    let mut text = std::fs::read_to_string(repo_path("config/monitoring_config.yaml")).unwrap();
    let own = [("port: 8000", "port: 0"), ("  dir: logs", logs.as_str())];
    for (from, to) in own.iter().chain(replacements) {
        assert!(text.contains(from), "the shipped config has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Every record of the monitor's metrics file in `logs`, parsed (each line must parse).
pub fn read_records(logs: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(logs.join("service_metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A child process (server, dashboard, Prometheus) killed on drop, so a failing test leaves
/// no orphan.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `capwatch serve --port 0` on `model` and reads the bound URL from its log; the
/// receiver yields the rest of its stderr lines.
pub fn spawn_server(
    model: &std::path::Path,
    extra: &[&str],
) -> (KillOnDrop, String, std::sync::mpsc::Receiver<String>) {
    spawn_server_with(model, extra, &[])
}

/// [`spawn_server`] with `env` set for the server.
pub fn spawn_server_with(
    model: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (KillOnDrop, String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    // Port 0 unless the caller names one.
    let port: &[&str] = if extra.contains(&"--port") { &[] } else { &["--port", "0"] };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .arg("serve")
        .args(port)
        .args(["--workers", "1", "--model"])
        .arg(model)
        .args(extra)
        .current_dir(repo_path(""))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = line_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("server printed no URL");
        if let Some(url) = loopback_url_in(&line) {
            return (child, url, line_rx);
        }
    }
}

/// The `http://127.x.y.z:PORT` (or `https://`) a server's log line announces, if it has one.
pub fn loopback_url_in(line: &str) -> Option<String> {
    let start = line.find("http://127.").or_else(|| line.find("https://127."))?;
    Some(line[start..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect())
}

/// A tool from Debian's prometheus package (`promtool`, `prometheus`): `env` if set, else
/// what `make setup` unpacked into `.ort/prometheus/`.
pub fn prometheus_tool(name: &str, env: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| repo_path(".ort/prometheus").join(name), PathBuf::from);
    assert!(path.exists(), "{} not found: run `make setup` (it unpacks Debian's prometheus package)", path.display());
    path
}

/// Waits (up to 60 s) until `url/ready` answers 200.
pub fn wait_ready(url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let ready = runtime.block_on(client.get(format!("{url}/ready")).send());
        if ready.map(|r| r.status() == 200).unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} never became ready");
}

/// Lines of a child's output, read on a thread, with what has been seen so far. Waits move a
/// cursor: each wait looks at the lines after the last line an earlier wait matched, so a
/// line read ahead while waiting for something else is still found.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
    cursor: usize,
}

impl Lines {
    pub fn read(stream: impl std::io::Read + Send + 'static) -> Self {
        use std::io::{BufRead, BufReader};
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new(), cursor: 0 }
    }

    /// The index of the first line at or after `from` that contains `needle`, reading more
    /// lines until `deadline`.
    fn find_from(&mut self, from: usize, needle: &str, deadline: std::time::Instant) -> usize {
        let mut index = from;
        loop {
            while index < self.seen.len() {
                if self.seen[index].contains(needle) {
                    return index;
                }
                index += 1;
            }
            let line =
                self.rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).unwrap_or_else(
                    |_| panic!("no line with `{needle}` within 60 s; output so far:\n{}", self.seen.join("\n")),
                );
            self.seen.push(line);
        }
    }

    /// Waits up to 60 s for a line after the cursor containing `needle`; returns it and moves
    /// the cursor past it. Use it only where the product promises that this line comes after
    /// the previous one waited for.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let index = self.find_from(self.cursor, needle, deadline);
        self.cursor = index + 1;
        self.seen[index].clone()
    }

    /// Waits up to 60 s until every needle has appeared after the cursor, in any order;
    /// returns the matching lines (in the order of `needles`) and moves the cursor past the
    /// last of them.
    pub fn wait_for_all(&mut self, needles: &[&str]) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let from = self.cursor;
        let indices: Vec<usize> = needles.iter().map(|needle| self.find_from(from, needle, deadline)).collect();
        self.cursor = indices.iter().max().map_or(from, |last| last + 1);
        indices.into_iter().map(|index| self.seen[index].clone()).collect()
    }

    /// Everything up to the end of the stream.
    pub fn rest(&mut self) -> &[String] {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(60)) {
            self.seen.push(line);
        }
        &self.seen
    }
}

/// Every record validates against `schemas/service_metrics.schema.json`.
pub fn assert_schema(records: &[serde_json::Value]) {
    let text = std::fs::read_to_string(repo_path("schemas/service_metrics.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for record in records {
        let errors: Vec<String> = validator.iter_errors(record).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{record}");
    }
}

/// Sample values from an OpenMetrics exposition, parsed by the Python reference parser
/// (`prometheus_client.openmetrics.parser`), which rejects malformed text.
pub fn parse_openmetrics(text: &str) -> Vec<(String, serde_json::Value, f64)> {
    let script = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = python()
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the OpenMetrics parser rejected the exposition (is prometheus_client installed? `make setup`):\n{}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<(String, serde_json::Value, f64)> = serde_json::from_slice(&output.stdout).unwrap();
    samples
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// Starts `capwatch ARGS --config CONFIG` from the repo root with `env` added; returns the
/// process and its stdout and stderr lines.
pub fn spawn_capwatch(
    args: &[&str],
    config: &std::path::Path,
    env: &[(String, String)],
) -> (std::process::Child, Lines, Lines) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(repo_path(""))
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Lines::read(child.stdout.take().unwrap());
    let stderr = Lines::read(child.stderr.take().unwrap());
    (child, stdout, stderr)
}

/// The session summary (`session_summary_*.json`) written under `logs`.
pub fn session_summary(logs: &std::path::Path) -> serde_json::Value {
    let path = std::fs::read_dir(logs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name().unwrap().to_string_lossy().starts_with("session_summary_")
                && path.extension().is_some_and(|x| x == "json")
        })
        .unwrap_or_else(|| panic!("no session summary in {}", logs.display()));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `capwatch report LOGS/service_metrics.jsonl`: whether it succeeded, and its stdout.
pub fn capwatch_report(logs: &std::path::Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .arg("report")
        .arg(logs.join("service_metrics.jsonl"))
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}
