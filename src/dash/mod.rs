//! The monitoring side of capwatch: the dashboard (full screen or headless) that launches
//! `capwatch serve` (or attaches to a running server), probes it, measures, alerts and
//! restarts. It follows The Elm Architecture: one event loop, a pure `update` that returns
//! effects, an executor that carries them out, and a pure view.
//!
//! Layout:
//! - Data in: [`event`] (every input, keys included), [`supervisor`] (the child process),
//!   [`restart_policy`] (backoff, crash loops), [`preflight`] (checks before a start),
//!   [`child_output`] (its URL and errors), [`contract`] (how to talk to the service),
//!   [`prober`] (timed, classified HTTP probes),
//!   [`probe_loops`] (their schedules), [`discovery_loop`] (instances that come and go),
//!   [`chaos_client`] (faults on a `--chaos` server), [`traffic_client`] (the demo's scenes and
//!   drift reference).
//! - Decisions: [`fleet`] (the watched instances, joins and leaves), [`state`] (one
//!   instance's dashboard state), [`update`] (event → effects, pure),
//!   [`stats`] (rolling window, totals), with the rules and their state machines in
//!   `crate::alerts`,
//!   [`ab`] (model variants compared on the same images).
//! - Data out: [`effect`] (what update decides), [`executor`] (carries it out), [`record`]
//!   (typed JSONL records), [`rehearsal`] (faults sized to trip the alerts), [`records_file`] (the JSONL writer), [`metrics`] (the
//!   dashboard's `/metrics`), [`console`] (headless lines, log file), [`summary`].
//! - Screen: [`ui`] (pure view, one module per pane), [`tui`] (terminal guard and input:
//!   the only raw-mode code).
//! - Wiring: [`target`] (what a session watches), [`app`] (the session: producers, the loop,
//!   the way out), [`drill`] (`capwatch drill`: the same session with a conductor that injects
//!   faults and checks the alerts),
//!   [`demo`] (`capwatch demo`: the same session with a director that plays scenes under a
//!   banner).

pub mod ab;
pub mod app;
pub mod chaos_client;
pub mod child_output;
pub mod console;
pub mod contract;
pub mod demo;
pub mod discovery_loop;
pub mod drill;
pub mod effect;
pub mod event;
pub mod executor;
pub mod fleet;
pub mod metrics;
pub mod preflight;
pub mod probe_loops;
pub mod prober;
pub mod record;
pub mod records_file;
pub mod rehearsal;
pub mod report_html;
pub mod restart_policy;
pub mod state;
pub mod stats;
pub mod summary;
pub mod supervisor;
pub mod target;
pub mod traffic_client;
pub mod tui;
pub mod ui;
pub mod update;
