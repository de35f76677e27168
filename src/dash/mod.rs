//! The monitoring side of capwatch (issue 4, in progress): statistics over probe results
//! and threshold alerts. Pure logic so far; the supervisor, prober, event loop and terminal
//! UI will build on these.
//!
//! Layout: [`stats`] (rolling window and session totals), [`alerts`] (rule state machines),
//! [`supervisor`] (the `capwatch serve` child process: start, watch, restart, stop),
//! [`prober`] (timed, classified health checks and inference tests over HTTP),
//! [`model`] (state + pure update → effects), [`runner`] (the event loop, headless mode),
//! [`sinks`] (JSON Lines metrics file), [`summary`] (session summary on quit).

pub mod alerts;
pub mod model;
pub mod prober;
pub mod runner;
pub mod sinks;
pub mod stats;
pub mod summary;
pub mod supervisor;
