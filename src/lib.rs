//! capwatch: serve an ONNX image-captioning model over HTTP and watch it live.
//!
//! Layout, highest layer first (a room imports only rooms below it; `tools/check_layers.py`):
//! - [`commands`]: one file per subcommand, run by `main.rs`; [`cli`]: the flags.
//! - [`dash`]: the dashboard (supervisor, prober, statistics, the Elm loop, terminal UI).
//!   [`server`]: the axum HTTP API in front of the engine. [`export`]: Prometheus rules, a
//!   Grafana dashboard and Kubernetes objects from the config. [`plan`]: capacity planning.
//!   [`traffic`]: scenes sent to a server to move its drift verdict.
//! - [`notify`]: alert notifications (Slack, Telegram, webhooks). [`alerts`]: the rules and
//!   their state machines. [`protocol`]: wire types both the server and the monitor speak.
//! - [`engine`]: the only module that talks to ONNX Runtime. [`config`]: the one YAML file,
//!   validated with key paths and line numbers.
//! - [`drift`]: drift tests of live traffic against a reference. [`stats`]: A/B statistics.
//! - Leaves: [`clock`] (one reading of the clocks, passed to pure code), [`exit_code`],
//!   [`quality`] (caption quality scores), [`telemetry`] and [`shutdown`] (logging, signals),
//!   [`http_client`] (the reqwest client towards servers and receivers: CA file, API key).

pub mod alerts;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dash;
pub mod discovery;
pub mod drift;
pub mod engine;
pub mod exit_code;
pub mod export;
pub mod http_client;
pub mod notify;
pub mod plan;
pub mod protocol;
pub mod quality;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
pub mod traffic;
