//! The monitoring side of capwatch: the dashboard (full screen or headless) that launches
//! `capwatch serve`, probes it, measures, alerts and restarts.
//!
//! Layout: [`stats`] (rolling window and session totals), [`alerts`] (rule state machines),
//! [`supervisor`] (the `capwatch serve` child process: start, watch, restart, stop),
//! [`prober`] (timed, classified health checks and inference tests over HTTP),
//! [`model`] (state + pure update → effects), [`runner`] (the event loop, headless mode),
//! [`sinks`] (JSON Lines metrics file), [`metrics`] (the dashboard's Prometheus `/metrics`), [`summary`] (session summary on quit),
//! [`ui`] (pure ratatui view), [`tui`] (terminal guard: the only raw-mode code).

pub mod alerts;
pub mod metrics;
pub mod model;
pub mod prober;
pub mod runner;
pub mod sinks;
pub mod stats;
pub mod summary;
pub mod supervisor;
pub mod tui;
pub mod ui;
