//! capwatch: serve an ONNX image-captioning model over HTTP and watch it live.
//!
//! Layout:
//! - [`config`]: the one YAML config file, validated with key paths and line numbers.
//! - [`engine`]: the only module that talks to ONNX Runtime (model layouts, preprocessing,
//!   greedy generation, worker threads behind a bounded queue).
//! - [`server`]: the axum HTTP API in front of the engine.
//! - [`quality`]: caption quality scores (expected keywords found).
//! - [`dash`]: the dashboard: supervisor, prober, statistics, alerts, terminal UI.
//! - [`notify`]: alert notifications (Slack, Telegram, generic webhook).
//! - [`export`]: Prometheus alerting rules and a Grafana dashboard from the config.
//! - [`stats`]: the A/B statistics (rank tests, proportions, means, bootstrap, sequential).
//! - [`drift`]: drift tests of live traffic against a reference (KS, Wasserstein, JS, PSI, MMD).
//! - [`plan`]: capacity planning from measured service times (queueing simulation, M/M/c).
//! - [`clock`]: one reading of the monotonic and wall clocks, passed to pure code.
//! - [`exit_code`]: the exit codes, and which of a server's mean "do not restart".
//! - [`telemetry`], [`shutdown`]: logging set-up and signal handling.
//!
//! `main.rs` is the only place that turns errors into exit codes.

pub mod cli;
pub mod clock;
pub mod config;
pub mod dash;
pub mod drift;
pub mod engine;
pub mod exit_code;
pub mod export;
pub mod notify;
pub mod plan;
pub mod quality;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
